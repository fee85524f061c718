//! `GET /metrics` in Prometheus' text format: requests by route and status, tokens, queue
//! depth, and histograms of time to first token and of generation time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bucket bounds in seconds, from a fast first token on a small model to a long answer.
const BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    ttft: Histogram,
    generation: Histogram,
}

struct Histogram {
    counts: Vec<AtomicU64>,
    /// The sum in microseconds, so that it can be atomic.
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: (0..=BOUNDS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = BOUNDS.get(i).map_or("+Inf".to_owned(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

impl Metrics {
    /// One answered request; `route` is the matched route, not the raw path, so that clients
    /// cannot grow the label set.
    pub fn request(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock().expect("never poisoned");
        *requests.entry((route.to_owned(), status)).or_default() += 1;
    }

    pub fn tokens(&self, prompt: u32, completion: u32) {
        self.prompt_tokens.fetch_add(u64::from(prompt), Ordering::Relaxed);
        self.completion_tokens.fetch_add(u64::from(completion), Ordering::Relaxed);
    }

    pub fn first_token(&self, after: Duration) {
        self.ttft.observe(after);
    }

    pub fn generation(&self, took: Duration) {
        self.generation.observe(took);
    }

    /// The text format, with the queue depth of every loaded model.
    pub fn render(&self, queues: &[(String, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP temper_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE temper_requests_total counter\n");
        for ((route, status), count) in self.requests.lock().expect("never poisoned").iter() {
            let _ = writeln!(
                out,
                "temper_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
        for (name, help, value) in [
            ("temper_prompt_tokens_total", "Prompt tokens read.", &self.prompt_tokens),
            ("temper_completion_tokens_total", "Tokens generated.", &self.completion_tokens),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP temper_queue_depth Requests running or waiting, per loaded model.\n");
        out.push_str("# TYPE temper_queue_depth gauge\n");
        for (model, depth) in queues {
            let _ = writeln!(out, "temper_queue_depth{{model=\"{}\"}} {depth}", escape(model));
        }
        self.ttft.render(
            &mut out,
            "temper_time_to_first_token_seconds",
            "From the request to the first generated token.",
        );
        self.generation.render(
            &mut out,
            "temper_generation_duration_seconds",
            "From the request to the last generated token.",
        );
        out
    }
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let metrics = Metrics::default();
        metrics.request("/v1/chat/completions", 200);
        metrics.request("/v1/chat/completions", 200);
        metrics.request("/v1/models", 401);
        metrics.tokens(10, 5);
        metrics.first_token(Duration::from_millis(30));
        metrics.first_token(Duration::from_secs(500));
        let text = metrics.render(&[("a\"b".into(), 3)]);
        assert!(
            text.contains("temper_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("temper_requests_total{route=\"/v1/models\",status=\"401\"} 1"));
        assert!(
            text.contains("temper_prompt_tokens_total 10\n")
                && text.contains("temper_completion_tokens_total 5\n")
        );
        assert!(text.contains("temper_queue_depth{model=\"a\\\"b\"} 3"));
        assert!(text.contains("temper_time_to_first_token_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("temper_time_to_first_token_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("temper_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("temper_time_to_first_token_seconds_count 2"));
        assert!(text.contains("temper_generation_duration_seconds_count 0"));
    }
}
