//! Datasets: rows of template variables with an optional expected value, read from JSONL or
//! CSV (chosen by the file's extension), and a deterministic split into train and held-out rows.
//! Every error names the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use temper_prompt::schema::describe;

use crate::{EvalError, Result};

/// The field holding a row's expected value unless the caller names another.
pub const DEFAULT_EXPECTED_FIELD: &str = "expected";

/// The optional field that puts a row in the train or the held-out (test) split.
pub const SPLIT_FIELD: &str = "split";

/// Which part of a dataset a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// One case: the variables a prompt is rendered with, and what the output should be.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub vars: BTreeMap<String, Value>,
    pub expected: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Where the row comes from (`reviews.jsonl:12`), for errors.
    #[serde(skip)]
    pub source: String,
}

impl Row {
    /// An error about this row.
    pub fn error(&self, reason: impl Into<String>) -> EvalError {
        EvalError::invalid(&self.source, reason)
    }
}

/// Reads the rows of a JSONL (`.jsonl`, `.ndjson`: one JSON object a line) or CSV (`.csv`, with
/// a header line) file. `expected` names the field of the expected value; the `split` field,
/// when present, must be `train` or `test`. Every other field is a variable.
pub fn load(path: &Path, expected: &str) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).map_err(|e| {
        EvalError::invalid(path.display().to_string(), format!("cannot read the dataset: {e}"))
    })?;
    parse(path, &bytes, expected)
}

/// The rows of `bytes`, the contents of the dataset file at `path` (its extension says the
/// format; it is named in errors), as [`load`] reads them.
pub fn parse(path: &Path, bytes: &[u8], expected: &str) -> Result<Vec<Row>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let rows = match extension.as_str() {
        "jsonl" | "ndjson" => jsonl(path, bytes, expected)?,
        "csv" => csv(path, bytes, expected)?,
        _ => {
            return Err(EvalError::invalid(
                path.display().to_string(),
                format!("unknown dataset format `.{extension}`: use .jsonl (one JSON object a line) or .csv"),
            ))
        }
    };
    if rows.is_empty() {
        return Err(EvalError::invalid(path.display().to_string(), "the dataset has no rows"));
    }
    Ok(rows)
}

fn jsonl(path: &Path, bytes: &[u8], expected: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (number, line) in (1..).zip(bytes.split(|b| *b == b'\n')) {
        let at = |reason: String| EvalError::at_line(path, number, reason);
        let line = std::str::from_utf8(line)
            .map_err(|e| at(format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            at(format!("malformed JSON at column {}: {message}", e.column()))
        })?;
        let found = describe(&value);
        let Value::Object(fields) = value else {
            return Err(at(format!("expected a JSON object, found {found}")));
        };
        rows.push(row(fields, expected, format!("{}:{number}", path.display()))?);
    }
    Ok(rows)
}

fn csv(path: &Path, bytes: &[u8], expected: &str) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader.headers().map_err(|e| csv_error(path, &e))?.clone();
    for (i, name) in headers.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(EvalError::at_line(path, 1, format!("column {} has no name", i + 1)));
        }
        if headers.iter().take(i).any(|earlier| earlier == name) {
            return Err(EvalError::at_line(path, 1, format!("the column `{name}` appears twice")));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        let fields: Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        rows.push(row(fields, expected, format!("{}:{line}", path.display()))?);
    }
    Ok(rows)
}

fn csv_error(path: &Path, error: &csv::Error) -> EvalError {
    let line = error.position().map_or(0, |p| p.line() as usize);
    let reason = match error.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields, but the header has {expected_len}")
        }
        _ => error.to_string(),
    };
    EvalError::at_line(path, line, reason)
}

/// A row from its fields: the expected value and the split taken out, the rest variables.
fn row(mut fields: Map<String, Value>, expected: &str, source: String) -> Result<Row> {
    let expected = fields.remove(expected);
    let split = match fields.remove(SPLIT_FIELD) {
        None => None,
        Some(Value::String(s)) if s == "train" => Some(Split::Train),
        Some(Value::String(s)) if s == "test" => Some(Split::Test),
        Some(other) => {
            return Err(EvalError::invalid(
                source,
                format!("`{SPLIT_FIELD}` must be \"train\" or \"test\", found {other}"),
            ))
        }
    };
    Ok(Row { vars: fields.into_iter().collect(), expected, split, source })
}

/// Rows divided into the part to learn from and the held-out part to report on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partition {
    pub train: Vec<Row>,
    pub test: Vec<Row>,
}

/// Splits `rows` by their `split` field when they have one; otherwise puts `test_fraction` of
/// them, chosen by `seed`, in the held-out part. The same rows and seed always give the same
/// split, and each part keeps the rows' order.
pub fn split(rows: &[Row], test_fraction: f64, seed: u64) -> Result<Partition> {
    let marked = rows.iter().filter(|r| r.split.is_some()).count();
    if rows.is_empty() {
        return Ok(Partition::default());
    }
    if marked == rows.len() {
        let (test, train): (Vec<Row>, Vec<Row>) =
            rows.iter().cloned().partition(|r| r.split == Some(Split::Test));
        return Ok(Partition { train, test });
    }
    if marked > 0 {
        let unmarked = rows.iter().find(|r| r.split.is_none()).expect("some row has no split");
        return Err(unmarked.error(format!(
            "this row has no `{SPLIT_FIELD}` while others have one: mark every row or none"
        )));
    }
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(EvalError::invalid(
            "test_fraction",
            format!("must be between 0 and 1, not {test_fraction}"),
        ));
    }
    // Rows ordered by a hash of the seed and their index: a shuffle that depends on nothing else.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| splitmix64(seed ^ splitmix64(i as u64)));
    let held_out =
        ((rows.len() as f64 * test_fraction).round() as usize).clamp(1, rows.len().saturating_sub(1).max(1));
    let mut in_test = vec![false; rows.len()];
    order[..held_out].iter().for_each(|&i| in_test[i] = true);
    let mut parts = Partition::default();
    for (row, test) in rows.iter().zip(in_test) {
        (if test { &mut parts.test } else { &mut parts.train }).push(row.clone());
    }
    Ok(parts)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn error(name: &str, bytes: &[u8]) -> String {
        let (_dir, path) = write(name, bytes);
        let err = load(&path, DEFAULT_EXPECTED_FIELD).unwrap_err().to_string();
        err.replace(&path.display().to_string(), name)
    }

    #[test]
    fn reads_jsonl_rows_with_vars_expected_and_split() {
        let text = b"{\"review\": \"Great\", \"expected\": \"positive\", \"split\": \"train\"}\n\n{\"review\": \"Bad\", \"n\": 2}\n";
        let (_dir, path) = write("d.jsonl", text);
        let rows = load(&path, DEFAULT_EXPECTED_FIELD).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].vars, BTreeMap::from([("review".to_owned(), json!("Great"))]));
        assert_eq!((rows[0].expected.clone(), rows[0].split), (Some(json!("positive")), Some(Split::Train)));
        assert_eq!((rows[1].expected.clone(), rows[1].vars["n"].clone()), (None, json!(2)));
        assert!(rows[1].source.ends_with("d.jsonl:3"), "{}", rows[1].source);
    }

    #[test]
    fn reads_csv_rows_with_a_chosen_expected_column() {
        let (_dir, path) =
            write("d.csv", b"text,label,split\n\"Fine, really\",positive,test\nMeh,neutral,train\n");
        let rows = load(&path, "label").unwrap();
        assert_eq!(rows[0].vars["text"], json!("Fine, really"));
        assert_eq!(rows[0].expected, Some(json!("positive")));
        assert_eq!(rows[1].split, Some(Split::Train));
        assert!(rows[1].source.ends_with("d.csv:3"), "{}", rows[1].source);
    }

    #[test]
    fn bad_files_name_the_line_and_what_is_wrong() {
        assert_eq!(
            error("d.jsonl", b"{\"a\": 1}\n{\"a\": 2,}\n"),
            "d.jsonl:2: malformed JSON at column 9: trailing comma"
        );
        assert_eq!(
            error("d.jsonl", b"{\"a\": 1}\n[1]\n"),
            "d.jsonl:2: expected a JSON object, found an array"
        );
        assert_eq!(
            error("d.jsonl", b"{\"a\": 1}\n{\"a\": \"caf\xe9\"}\n"),
            "d.jsonl:2: invalid UTF-8 at byte 11 of the line"
        );
        assert_eq!(
            error("d.jsonl", b"{\"a\": 1, \"split\": \"dev\"}\n"),
            "d.jsonl:1: `split` must be \"train\" or \"test\", found \"dev\""
        );
        assert_eq!(error("d.jsonl", b"\n\n"), "d.jsonl: the dataset has no rows");
        assert_eq!(error("d.csv", b"a,b\n1,2\n3\n"), "d.csv:3: 1 fields, but the header has 2");
        assert_eq!(error("d.csv", b"a,b\n1,caf\xe9\n"), "d.csv:2: invalid UTF-8 in field 2");
        assert_eq!(error("d.csv", b"a,a\n1,2\n"), "d.csv:1: the column `a` appears twice");
        assert_eq!(error("d.csv", b"a,b\n"), "d.csv: the dataset has no rows");
        assert!(error("d.txt", b"x").starts_with("d.txt: unknown dataset format `.txt`"));
        let err = load(Path::new("/no/such/d.jsonl"), "expected").unwrap_err().to_string();
        assert!(err.starts_with("/no/such/d.jsonl: cannot read the dataset: "), "{err}");
    }

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                vars: BTreeMap::from([("i".to_owned(), json!(i))]),
                expected: None,
                split: None,
                source: format!("d.jsonl:{}", i + 1),
            })
            .collect()
    }

    #[test]
    fn a_fraction_split_is_deterministic_and_keeps_order() {
        let all = rows(20);
        let a = split(&all, 0.25, 7).unwrap();
        assert_eq!((a.train.len(), a.test.len()), (15, 5));
        assert_eq!(a, split(&all, 0.25, 7).unwrap());
        assert_ne!(a.test, split(&all, 0.25, 8).unwrap().test, "another seed picks other rows");
        let index = |r: &Row| r.vars["i"].as_u64().unwrap();
        assert!(a.test.windows(2).all(|w| index(&w[0]) < index(&w[1])));
        let err = split(&all, 1.5, 7).unwrap_err().to_string();
        assert_eq!(err, "test_fraction: must be between 0 and 1, not 1.5");
    }

    #[test]
    fn a_split_column_decides_and_must_mark_every_row() {
        let mut all = rows(3);
        all[0].split = Some(Split::Test);
        let err = split(&all, 0.5, 0).unwrap_err().to_string();
        assert!(err.starts_with("d.jsonl:2: this row has no `split`"), "{err}");
        all[1].split = Some(Split::Train);
        all[2].split = Some(Split::Train);
        let parts = split(&all, 0.5, 0).unwrap();
        assert_eq!((parts.train.len(), parts.test.len()), (2, 1));
        assert_eq!(parts.test[0].source, "d.jsonl:1");
    }
}
