//! What inference costs: prices per token, the local log of calls, the report per model and
//! day, and the estimate that compares paying per token with a VM at a fixed price.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temper_core::Usage;

/// The log of calls, a JSON object per line, under `$TEMPER_HOME`.
pub const CALL_LOG_FILE: &str = "calls.jsonl";
/// An average month: 365 / 12 days.
pub const DAYS_PER_MONTH: f64 = 365.0 / 12.0;

/// A model's prices in USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Prices {
    /// What `usage` costs in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.per_request(f64::from(usage.prompt_tokens), f64::from(usage.completion_tokens))
    }

    /// What one request of `input` prompt and `output` completion tokens costs in USD.
    pub fn per_request(&self, input: f64, output: f64) -> f64 {
        (input * self.input_per_mtok + output * self.output_per_mtok) / 1e6
    }
}

/// One request, as the log keeps it: answered, or failed with the error (the trace of a
/// fallback chain is its members' records: each failure, then the answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Seconds since the Unix epoch (UTC).
    pub unix_time: u64,
    /// The profile (or catalog name) that answered.
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Why the request failed; `None` for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CallRecord {
    /// A record of `usage` and `cost` by `model`, now.
    pub fn now(model: &str, usage: &Usage, cost: Option<f64>) -> CallRecord {
        let unix_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CallRecord {
            unix_time,
            model: model.to_owned(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost,
            error: None,
        }
    }

    /// A record of a request to `model` that failed with `error`, now.
    pub fn failed(model: &str, error: &str) -> CallRecord {
        CallRecord { error: Some(error.to_owned()), ..CallRecord::now(model, &Usage::default(), None) }
    }

    /// The record's UTC day, `YYYY-MM-DD`.
    pub fn day(&self) -> String {
        civil_date(self.unix_time / 86_400)
    }
}

/// The JSONL file of answered requests.
#[derive(Clone, Debug, PartialEq)]
pub struct CallLog {
    path: PathBuf,
}

/// The call log could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallLogError {
    #[error("cannot {action} the call log {}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

/// A line of the log that is not a record: skipped when reading, and counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// What the log holds: its records, and the lines that are not records (a line torn by a full
/// disk or a crash, or one edited by hand). One bad line loses only itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallLogContents {
    pub records: Vec<CallRecord>,
    pub bad_lines: Vec<BadLine>,
}

impl CallLog {
    /// The log under the store's root (`$TEMPER_HOME`).
    pub fn in_home(home: &Path) -> CallLog {
        CallLog { path: home.join(CALL_LOG_FILE) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one whole line (one `write`, so concurrent writers do not
    /// interleave). A last line left without its newline (by a crash or a full disk) is ended
    /// first, so the record is not glued to it.
    pub fn append(&self, record: &CallRecord) -> Result<(), CallLogError> {
        let io = |action| move |source| CallLogError::Io { action, path: self.path.clone(), source };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
        }
        let mut file =
            OpenOptions::new().create(true).read(true).append(true).open(&self.path).map_err(io("open"))?;
        let mut line = String::new();
        if !ends_with_newline(&mut file).map_err(io("read"))? {
            line.push('\n');
        }
        // A record is plain data: it always serializes.
        line.push_str(&serde_json::to_string(record).unwrap_or_default());
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io("write to"))
    }

    /// Every record, and the lines that are not records; no file means no calls yet.
    pub fn read(&self) -> Result<CallLogContents, CallLogError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CallLogContents::default()),
            Err(source) => return Err(CallLogError::Io { action: "read", path: self.path.clone(), source }),
        };
        let mut contents = CallLogContents::default();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(record) => contents.records.push(record),
                Err(e) => contents.bad_lines.push(BadLine { line: i + 1, reason: e.to_string() }),
            }
        }
        Ok(contents)
    }
}

/// True when `file` is empty or its last byte is a newline.
fn ends_with_newline(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// The calls of one model on one day.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DayTotal {
    pub day: String,
    pub model: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The sum over the calls with a known cost.
    pub cost: f64,
    /// Calls whose cost is unknown (no prices in their profile).
    pub unpriced_calls: u64,
    /// Requests that failed (counted apart from `calls`).
    pub failed_calls: u64,
}

/// Sums `records` per day and model, in day then model order.
pub fn report(records: &[CallRecord]) -> Vec<DayTotal> {
    let mut totals: BTreeMap<(String, String), DayTotal> = BTreeMap::new();
    for record in records {
        let key = (record.day(), record.model.clone());
        let total = totals.entry(key.clone()).or_insert_with(|| DayTotal {
            day: key.0,
            model: key.1,
            ..Default::default()
        });
        if record.error.is_some() {
            total.failed_calls += 1;
            continue;
        }
        total.calls += 1;
        total.prompt_tokens += u64::from(record.prompt_tokens);
        total.completion_tokens += u64::from(record.completion_tokens);
        match record.cost {
            Some(cost) => total.cost += cost,
            None => total.unpriced_calls += 1,
        }
    }
    totals.into_values().collect()
}

/// Traffic to price: requests per day, and tokens per request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Traffic {
    pub requests_per_day: f64,
    pub input_tokens: f64,
    pub output_tokens: f64,
}

/// Paying per token against a VM at a fixed hourly price, for one profile's prices.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// USD per month at the given traffic, paying per token.
    pub api_monthly: f64,
    /// USD per month for the VM, whatever the traffic.
    pub vm_monthly: f64,
    /// Requests per day at which both cost the same; `None` when requests cost nothing.
    pub break_even_requests_per_day: Option<f64>,
}

impl Estimate {
    pub fn new(prices: &Prices, traffic: &Traffic, vm_hourly: f64) -> Estimate {
        let per_request = prices.per_request(traffic.input_tokens, traffic.output_tokens);
        let api_monthly = traffic.requests_per_day * DAYS_PER_MONTH * per_request;
        let vm_monthly = vm_hourly * 24.0 * DAYS_PER_MONTH;
        let break_even_requests_per_day =
            (per_request > 0.0).then(|| vm_monthly / (DAYS_PER_MONTH * per_request));
        Estimate { api_monthly, vm_monthly, break_even_requests_per_day }
    }

    /// Whether paying per token costs no more than the VM at this traffic.
    pub fn api_is_cheaper(&self) -> bool {
        self.api_monthly <= self.vm_monthly
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (UTC); days beyond the calendar's range (year 9999)
/// are shown as the count itself.
fn civil_date(days: u64) -> String {
    let seconds = i64::try_from(days).ok().and_then(|d| d.checked_mul(86_400));
    match seconds.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) {
        Some(moment) => moment.date().to_string(),
        None => format!("day {days}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPT_MINI: Prices = Prices { input_per_mtok: 0.15, output_per_mtok: 0.60 };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn cost_of_a_request_by_hand() {
        // 1200 × 0.15 / 1e6 + 350 × 0.60 / 1e6 = 0.00018 + 0.00021 = 0.00039
        let usage = Usage { prompt_tokens: 1200, completion_tokens: 350 };
        assert!(close(GPT_MINI.cost(&usage), 0.000_39), "{}", GPT_MINI.cost(&usage));
        // A million of each at 3 and 15 USD: 18 USD.
        let sonnet = Prices { input_per_mtok: 3.0, output_per_mtok: 15.0 };
        assert!(close(sonnet.cost(&Usage { prompt_tokens: 1_000_000, completion_tokens: 1_000_000 }), 18.0));
        assert_eq!(GPT_MINI.cost(&Usage::default()), 0.0);
    }

    #[test]
    fn estimate_by_hand() {
        // 1000 requests a day of 500 in + 200 out: 195e-6 USD each, 0.195 USD a day,
        // × 365/12 days = 5.93125 USD a month. A 0.50 USD/h VM: 0.5 × 24 × 365/12 = 365 USD.
        // Break-even: 365 / (365/12 × 195e-6) = 12 / 195e-6 = 61538.46… requests a day.
        let traffic = Traffic { requests_per_day: 1000.0, input_tokens: 500.0, output_tokens: 200.0 };
        let estimate = Estimate::new(&GPT_MINI, &traffic, 0.5);
        assert!(close(estimate.api_monthly, 5.931_25), "{estimate:?}");
        assert!(close(estimate.vm_monthly, 365.0), "{estimate:?}");
        assert!(close(estimate.break_even_requests_per_day.unwrap(), 12.0 / 195e-6), "{estimate:?}");
        assert!(estimate.api_is_cheaper());
    }

    #[test]
    fn break_even_at_its_edges() {
        let traffic = Traffic { requests_per_day: 0.0, input_tokens: 500.0, output_tokens: 200.0 };
        let even = Estimate::new(&GPT_MINI, &traffic, 0.5).break_even_requests_per_day.unwrap();
        // At the break-even both cost the same; just below the API wins, just above the VM.
        let at = Estimate::new(&GPT_MINI, &Traffic { requests_per_day: even, ..traffic }, 0.5);
        assert!(close(at.api_monthly, at.vm_monthly), "{at:?}");
        assert!(Estimate::new(&GPT_MINI, &Traffic { requests_per_day: even * 0.999, ..traffic }, 0.5)
            .api_is_cheaper());
        assert!(!Estimate::new(&GPT_MINI, &Traffic { requests_per_day: even * 1.001, ..traffic }, 0.5)
            .api_is_cheaper());
        // A free VM breaks even at zero traffic; free requests never do.
        assert_eq!(Estimate::new(&GPT_MINI, &traffic, 0.0).break_even_requests_per_day, Some(0.0));
        let free = Prices { input_per_mtok: 0.0, output_per_mtok: 0.0 };
        assert_eq!(Estimate::new(&free, &traffic, 0.5).break_even_requests_per_day, None);
        let empty = Traffic { input_tokens: 0.0, output_tokens: 0.0, ..traffic };
        assert_eq!(Estimate::new(&GPT_MINI, &empty, 0.5).break_even_requests_per_day, None);
    }

    #[test]
    fn days_of_the_calendar() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(59), "1970-03-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(20_147), "2025-02-28");
        assert_eq!(civil_date(u64::MAX / 86_400), format!("day {}", u64::MAX / 86_400));
    }

    #[test]
    fn log_and_report() {
        let home = tempfile::tempdir().unwrap();
        let log = CallLog::in_home(home.path());
        assert_eq!(log.read().unwrap(), CallLogContents::default());
        let day1 = 19_723 * 86_400;
        let record = |t: u64, model: &str, p: u32, c: u32, cost: Option<f64>| CallRecord {
            unix_time: t,
            model: model.into(),
            prompt_tokens: p,
            completion_tokens: c,
            cost,
            error: None,
        };
        let records = [
            record(day1 + 10, "gpt-mini", 100, 20, Some(0.000_027)),
            CallRecord { unix_time: day1 + 11, ..CallRecord::failed("gpt-mini", "openai answered HTTP 500") },
            record(day1 + 86_399, "gpt-mini", 200, 40, Some(0.000_054)),
            record(day1 + 50, "local", 10, 5, None),
            record(day1 + 86_400, "gpt-mini", 1, 1, Some(0.000_000_75)),
        ];
        for r in &records {
            log.append(r).unwrap();
        }
        assert_eq!(log.read().unwrap().records, records);
        let totals = report(&log.read().unwrap().records);
        assert_eq!(totals.len(), 3);
        assert_eq!((totals[0].day.as_str(), totals[0].model.as_str()), ("2024-01-01", "gpt-mini"));
        assert_eq!((totals[0].calls, totals[0].prompt_tokens, totals[0].completion_tokens), (2, 300, 60));
        assert_eq!(totals[0].failed_calls, 1);
        assert!(close(totals[0].cost, 0.000_081));
        assert_eq!((totals[1].model.as_str(), totals[1].unpriced_calls), ("local", 1));
        assert_eq!((totals[2].day.as_str(), totals[2].calls), ("2024-01-02", 1));
    }

    #[test]
    fn bad_lines_are_skipped_and_counted_and_a_torn_line_is_not_glued_to_the_next() {
        let home = tempfile::tempdir().unwrap();
        let log = CallLog::in_home(home.path());
        let good = CallRecord::now("local", &Usage { prompt_tokens: 3, completion_tokens: 4 }, None);
        // A record without its model, control bytes, bytes that are not UTF-8, and a last line
        // torn mid-record.
        std::fs::write(log.path(), b"{\"unix_time\": 1}\n\x00\x01\n\xff\xfe\n{\"unix_time\": 5, \"mod")
            .unwrap();
        log.append(&good).unwrap();
        log.append(&good).unwrap();
        let contents = log.read().unwrap();
        assert_eq!(contents.records, vec![good.clone(), good]);
        let lines: Vec<usize> = contents.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
        assert!(contents.bad_lines[0].reason.contains("model"), "{:?}", contents.bad_lines);
        let bytes = std::fs::read(log.path()).unwrap();
        assert!(bytes.ends_with(b"\n") && bytes.split(|&b| b == b'\n').count() == 7, "whole lines only");
    }
}
