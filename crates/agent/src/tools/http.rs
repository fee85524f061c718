//! `http_get`: GET requests to the hosts the user allows, and nowhere else.
//!
//! An allow-list entry is a host name or an IP address, matched exactly and without regard to
//! case (`example.com` allows neither `www.example.com` nor `evil-example.com`), or
//! `*.example.com`, which allows every name below `example.com` but not `example.com`
//! itself. Any port of an allowed host may be used. Redirects are followed only to allowed
//! hosts. The request goes straight to the host: proxies from the environment are not used.
//! Names are checked, not the addresses they resolve to.

use std::io;
use std::time::Duration;
use temper_core::error_chain;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{redirect, Url};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tool::{arguments, schema_of, Tool, ToolError};

/// How long a call may take, redirects and body included.
const TIME_LIMIT: Duration = Duration::from_secs(20);
const CONNECT_TIME_LIMIT: Duration = Duration::from_secs(10);
/// The most bytes of a body returned.
const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Fetches web pages and APIs on the hosts of an allow-list.
pub struct HttpGet {
    client: reqwest::Client,
    allowed: Vec<Allowed>,
    /// The allow-list as the user wrote it, for refusals.
    listed: String,
}

enum Allowed {
    /// This host and no other.
    Host(String),
    /// Every name that ends with this: a domain after a dot.
    Below(String),
}

impl HttpGet {
    /// Allows GET requests to `allowed_hosts` (see the module's documentation for the forms);
    /// an empty list, or an entry that is not a host, is an error.
    pub fn new(allowed_hosts: Vec<String>) -> io::Result<Self> {
        if allowed_hosts.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "http_get needs at least one allowed host (e.g. `docs.rs` or `*.wikipedia.org`)",
            ));
        }
        let allowed = allowed_hosts.iter().map(|entry| parse_entry(entry)).collect::<io::Result<_>>()?;
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIME_LIMIT)
            .user_agent(concat!("temper-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                io::Error::other(format!("http_get: cannot make an HTTP client: {}", error_chain(&e)))
            })?;
        Ok(HttpGet { client, allowed, listed: allowed_hosts.join(", ") })
    }

    fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        self.allowed.iter().any(|allowed| match allowed {
            Allowed::Host(allowed) => host == allowed,
            Allowed::Below(domain) => host.ends_with(domain.as_str()),
        })
    }

    /// Refuses a URL this tool must not fetch; `context` says how the call came to it.
    fn check(&self, url: &Url, context: &str) -> Result<(), ToolError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::Refused(format!(
                "{context}`{url}`: only http and https URLs can be fetched"
            )));
        }
        if !self.allows(url) {
            let host = url.host_str().unwrap_or("");
            return Err(ToolError::Refused(format!(
                "{context}`{url}`: the host `{host}` is not allowed; the allowed hosts are: {}",
                self.listed
            )));
        }
        Ok(())
    }

    async fn fetch(&self, mut url: Url) -> Result<Value, ToolError> {
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| ToolError::Failed(format!("GET {url}: {}", error_chain(&e))))?;
            let location = response.headers().get(LOCATION);
            match location {
                Some(location) if response.status().is_redirection() => {
                    let next =
                        location.to_str().ok().and_then(|location| url.join(location).ok()).ok_or_else(
                            || ToolError::Failed(format!("GET {url}: a redirect to a bad URL")),
                        )?;
                    self.check(&next, &format!("`{url}` redirects to "))?;
                    url = next;
                }
                _ => return read(url, response).await,
            }
        }
        Err(ToolError::Failed(format!("GET {url}: more than {MAX_REDIRECTS} redirects")))
    }
}

/// An allow-list entry, normalized as URLs are (lower case, punycode, IPv6 in brackets).
fn parse_entry(entry: &str) -> io::Result<Allowed> {
    let bad =
        |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("allowed host `{entry}`: {why}"));
    let (below, host) = match entry.trim().strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, entry.trim()),
    };
    let url = Url::parse(&format!("http://{host}/")).map_err(|e| bad(&e.to_string()))?;
    // A default port would vanish from the parsed URL: look for any port in the text.
    let has_port = host.contains(':') && !(host.starts_with('[') && host.ends_with(']'));
    let only_a_host = !has_port
        && url.path() == "/"
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    let Some(normal) = url.host_str().filter(|_| only_a_host) else {
        return Err(bad(
            "give a host name or address alone, like `example.com`, without scheme, port or path",
        ));
    };
    if below {
        if url.domain().is_none() {
            return Err(bad("`*.` goes before a domain name, not an address"));
        }
        return Ok(Allowed::Below(format!(".{normal}")));
    }
    Ok(Allowed::Host(normal.to_owned()))
}

/// The response, with at most [`MAX_BODY_BYTES`] of its body, as text when it is text.
async fn read(url: Url, mut response: reqwest::Response) -> Result<Value, ToolError> {
    let status = response.status().as_u16();
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) =
        response.chunk().await.map_err(|e| ToolError::Failed(format!("GET {url}: {}", error_chain(&e))))?
    {
        let room = MAX_BODY_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let size = body.len();
    let text = match String::from_utf8(body) {
        Ok(text) => Some(text),
        // The cut may split a character.
        Err(e) if truncated && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).ok()
        }
        Err(_) => None,
    };
    let mut result = json!({
        "url": url.as_str(),
        "status": status,
        "content_type": content_type,
        "truncated": truncated,
    });
    match text.filter(|text| !text.contains('\0')) {
        Some(text) => result["body"] = json!(text),
        None => {
            result["body"] = Value::Null;
            result["note"] =
                json!(format!("the body is {size} bytes of binary data, not UTF-8 text; not shown"));
        }
    }
    Ok(result)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Arguments {
    /// The full URL to fetch, starting with `https://` or `http://`.
    url: String,
}

#[async_trait]
impl Tool for HttpGet {
    fn name(&self) -> &str {
        "http_get"
    }

    fn description(&self) -> &str {
        "Fetches a URL with an HTTP GET and returns the status and up to 256 KiB of the body as \
         text. Only some hosts are allowed; others are refused."
    }

    fn parameters(&self) -> Value {
        schema_of::<Arguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let Arguments { url } = arguments(value)?;
        let url =
            Url::parse(url.trim()).map_err(|e| ToolError::Arguments(format!("`{url}` is not a URL: {e}")))?;
        self.check(&url, "")?;
        tokio::time::timeout(TIME_LIMIT, self.fetch(url))
            .await
            .map_err(|_| ToolError::TimedOut(TIME_LIMIT))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server of canned responses by path; it counts the connections it takes.
    async fn serve() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    // The client may hang up before a long body is all written.
                    let _ = socket.write_all(&respond(&path, address)).await;
                });
            }
        });
        (address, connections)
    }

    fn respond(path: &str, address: SocketAddr) -> Vec<u8> {
        let (status, headers, body): (&str, String, Vec<u8>) = match path {
            "/hello" => {
                ("200 OK", "Content-Type: text/plain; charset=utf-8\r\n".into(), b"hello there".to_vec())
            }
            "/big" => ("200 OK", "Content-Type: text/plain\r\n".into(), vec![b'a'; 300 * 1024]),
            "/image" => {
                ("200 OK", "Content-Type: image/png\r\n".into(), vec![0x89, b'P', b'N', b'G', 0xff, 0])
            }
            "/to-hello" => ("302 Found", "Location: /hello\r\n".into(), Vec::new()),
            "/away" => {
                ("302 Found", format!("Location: http://localhost:{}/hello\r\n", address.port()), Vec::new())
            }
            "/loop" => ("302 Found", "Location: /loop\r\n".into(), Vec::new()),
            _ => ("404 Not Found", String::new(), b"no such page".to_vec()),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        response
    }

    fn tool() -> HttpGet {
        HttpGet::new(vec!["127.0.0.1".into()]).unwrap()
    }

    async fn get(tool: &HttpGet, url: &str) -> Result<Value, ToolError> {
        tool.call(json!({ "url": url })).await
    }

    #[tokio::test]
    async fn fetches_an_allowed_host_and_follows_redirects_on_it() {
        let (address, _) = serve().await;
        let result = get(&tool(), &format!("http://{address}/hello")).await.unwrap();
        assert_eq!(
            result,
            json!({
                "url": format!("http://{address}/hello"),
                "status": 200,
                "content_type": "text/plain; charset=utf-8",
                "truncated": false,
                "body": "hello there",
            })
        );
        let redirected = get(&tool(), &format!("http://{address}/to-hello")).await.unwrap();
        assert_eq!(redirected["url"], format!("http://{address}/hello"));
        assert_eq!(redirected["body"], "hello there");
        let missing = get(&tool(), &format!("http://{address}/nothing")).await.unwrap();
        assert_eq!(missing["status"], 404);
        let err = get(&tool(), &format!("http://{address}/loop")).await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.ends_with("more than 5 redirects")), "{err}");
    }

    #[tokio::test]
    async fn a_host_not_allowed_is_refused_without_connecting() {
        let (address, connections) = serve().await;
        let err = get(&tool(), &format!("http://localhost:{}/hello", address.port())).await.unwrap_err();
        assert_eq!(
            err,
            ToolError::Refused(format!(
                "`http://localhost:{}/hello`: the host `localhost` is not allowed; the allowed hosts are: 127.0.0.1",
                address.port()
            ))
        );
        assert_eq!(connections.load(Ordering::SeqCst), 0);
        for url in ["file:///etc/passwd", "ftp://127.0.0.1/file"] {
            let err = get(&tool(), url).await.unwrap_err();
            assert!(
                matches!(&err, ToolError::Refused(m) if m.contains("only http and https")),
                "{url}: {err}"
            );
        }
        let err = get(&tool(), "not a url").await.unwrap_err();
        assert!(matches!(err, ToolError::Arguments(_)), "{err}");
    }

    #[tokio::test]
    async fn a_redirect_to_a_host_not_allowed_is_refused() {
        let (address, connections) = serve().await;
        let err = get(&tool(), &format!("http://{address}/away")).await.unwrap_err();
        assert!(
            matches!(&err, ToolError::Refused(m)
                if m.starts_with(&format!("`http://{address}/away` redirects to `http://localhost:"))
                && m.contains("the host `localhost` is not allowed")),
            "{err}"
        );
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_long_body_is_cut_and_a_binary_one_is_not_shown() {
        let (address, _) = serve().await;
        let big = get(&tool(), &format!("http://{address}/big")).await.unwrap();
        assert_eq!(big["body"].as_str().unwrap().len(), MAX_BODY_BYTES);
        assert_eq!(big["truncated"], true);
        let image = get(&tool(), &format!("http://{address}/image")).await.unwrap();
        assert_eq!(image["body"], Value::Null);
        assert_eq!(image["content_type"], "image/png");
        assert!(image["note"].as_str().unwrap().contains("6 bytes of binary data"), "{image}");
    }

    #[test]
    fn hosts_match_exactly_or_below_a_starred_domain() {
        let tool = HttpGet::new(vec!["Example.com".into(), "*.docs.rs".into(), "[::1]".into()]).unwrap();
        let allows = |url: &str| tool.allows(&Url::parse(url).unwrap());
        assert!(allows("https://example.com/page"));
        assert!(allows("https://EXAMPLE.COM:8443/"));
        assert!(!allows("https://evil-example.com/"));
        assert!(!allows("https://sub.example.com/"));
        assert!(!allows("https://example.com.evil.net/"));
        assert!(allows("https://serde.docs.rs/"));
        assert!(allows("https://a.b.docs.rs/"));
        assert!(!allows("https://docs.rs/"));
        assert!(!allows("https://evildocs.rs/"));
        assert!(allows("http://[::1]:8080/"));
        assert!(!allows("http://127.0.0.1/"));
    }

    #[test]
    fn the_allow_list_must_name_hosts() {
        let err = HttpGet::new(Vec::new()).err().unwrap();
        assert!(err.to_string().contains("at least one allowed host"), "{err}");
        for entry in ["https://example.com", "example.com/path", "example.com:80", "*.127.0.0.1", ""] {
            let err = HttpGet::new(vec![entry.into()]).err().unwrap_or_else(|| panic!("{entry} was taken"));
            assert!(err.to_string().starts_with(&format!("allowed host `{entry}`")), "{err}");
        }
    }
}
