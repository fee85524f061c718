//! `https://…`: a GGUF file at any URL. Plain `http://` is accepted only where nobody between
//! could change the file: a loopback address, or with `--sha256`, which checks every byte.

use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// A URL to download a model from.
#[derive(Debug, Clone)]
pub(crate) struct ModelUrl {
    pub url: Url,
}

impl ModelUrl {
    /// Parses `text`, refusing plain HTTP to another machine unless the file's hash is known.
    pub(crate) fn parse(text: &str, sha256_given: bool) -> Result<ModelUrl, StoreError> {
        let bad = |reason: String| StoreError::BadSourceName { name: text.to_owned(), reason };
        let url = Url::parse(text).map_err(|e| bad(format!("not a URL: {e}")))?;
        if url.path_segments().and_then(|mut s| s.next_back()).is_none_or(str::is_empty) {
            return Err(bad("the URL names no file (its path ends with `/`)".to_owned()));
        }
        let host = url.host_str().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => Ok(ModelUrl { url }),
            "http" if loopback || sha256_given => Ok(ModelUrl { url }),
            "http" => Err(bad(
                "plain http:// lets anyone on the way change the file; use https://, or give --sha256 to \
                 `temper models pull` so that every byte is checked"
                    .to_owned(),
            )),
            other => Err(bad(format!("the scheme `{other}` is not http(s)"))),
        }
    }

    /// The file's name: the URL's last path segment (so a download keeps the name it had).
    pub(crate) fn file_name(&self) -> String {
        let last = self.url.path_segments().and_then(|mut s| s.next_back()).unwrap_or("model.gguf");
        let decoded = percent_decode(last);
        match decoded.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
            && !decoded.starts_with('.')
        {
            true => decoded,
            false => decoded
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
                .collect(),
        }
    }

    /// The model's directory in the store: `url--HOST--FILE-<8 hex of the URL's SHA-256>`, so
    /// that two URLs of files with one name do not meet.
    pub(crate) fn dir_name(&self) -> String {
        let digest = format!("{:x}", Sha256::digest(self.url.as_str().as_bytes()));
        let host = self.url.host_str().unwrap_or("host").replace(':', "_");
        let file = self.file_name();
        let stem = file.strip_suffix(".gguf").unwrap_or(&file);
        format!("url--{host}--{stem}-{}", &digest[..8])
    }
}

/// `%XX` escapes decoded, as far as they make UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_where_nothing_can_change_the_file() {
        assert!(ModelUrl::parse("https://example.org/m.gguf", false).is_ok());
        assert!(ModelUrl::parse("http://127.0.0.1:8080/m.gguf", false).is_ok());
        assert!(ModelUrl::parse("http://localhost/m.gguf", false).is_ok());
        assert!(ModelUrl::parse("http://example.org/m.gguf", false).is_err());
        assert!(ModelUrl::parse("http://example.org/m.gguf", true).is_ok());
        assert!(ModelUrl::parse("https://example.org/", false).is_err());
    }

    #[test]
    fn names_come_from_the_url() {
        let url = ModelUrl::parse("https://example.org/a/My%20Model.Q4.gguf?download=1", false).unwrap();
        assert_eq!(url.file_name(), "My_Model.Q4.gguf");
        assert!(url.dir_name().starts_with("url--example.org--My_Model.Q4-"), "{}", url.dir_name());
    }
}
