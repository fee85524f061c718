//! The results table, printed and kept in `docs/benchmarks.md` (one section per model).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::serve::{median, Serving, SERVER_SEQUENCES};
use crate::{Peer, Sample};

/// One figure of a sample.
type Metric = fn(&Sample) -> f64;

pub struct ThreadRow {
    pub threads: usize,
    /// Per peer (in `Section::peers` order), one sample per measured pair.
    pub samples: Vec<Vec<Sample>>,
    /// Per peer, the aggregate tg tokens/s of `Section::batch` sequences decoding together, one
    /// per pair (empty when not measured).
    pub batched: Vec<Vec<f64>>,
    /// Per peer, tg of one sequence after the same prompt as the batched one (empty when the
    /// batch had no prompt: tg is then the baseline).
    pub alone: Vec<Vec<f64>>,
}

pub struct Section {
    pub model: String,
    pub file: String,
    pub pp: usize,
    pub tg: usize,
    pub ctx: usize,
    pub pairs: usize,
    /// Sequences of the batched tg and the prompt tokens each read first, when it was measured.
    pub batch: Option<(usize, usize)>,
    pub peers: Vec<Peer>,
    pub rows: Vec<ThreadRow>,
    pub serving: Serving,
    pub load: String,
}

fn peer_name(peer: Peer) -> &'static str {
    match peer {
        Peer::Temper => "Temper",
        Peer::Llamacpp => "llama.cpp",
    }
}

const HEADER: &str = "# Engine benchmarks\n\nWritten by `temper-bench engine` (crates/bench); each \
section says the command that produced it. `scripts/bench` builds llama.cpp for this CPU's \
features and runs the comparison. Figures are medians; ratios are Temper / llama.cpp.\n";

impl Section {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {} ({})\n", self.model, self.file);
        let _ = writeln!(
            s,
            "pp{} and tg{} on synthetic token ids, context {}, medians of {} pairs after a warm-up pair, \
             each measurement in its own process; Temper's kernels at CPU level `{}`; load average {}.\n",
            self.pp,
            self.tg,
            self.ctx,
            self.pairs,
            temper_kernels::cpu_level(),
            self.load
        );
        let names: Vec<&str> = self.peers.iter().map(|&p| peer_name(p)).collect();
        let ratio_header = if self.peers.len() > 1 { " | Temper / llama.cpp" } else { "" };
        let _ = writeln!(s, "| threads | test | {}{ratio_header} |", names.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(2 + names.len() + usize::from(self.peers.len() > 1)));
        for row in &self.rows {
            let tests: [(String, Metric, usize); 3] = [
                (format!("pp{} (tok/s)", self.pp), |s| s.pp_tps, 1),
                (format!("tg{} (tok/s)", self.tg), |s| s.tg_tps, 1),
                ("peak RSS (MiB)".into(), |s| s.rss_kib.map_or(f64::NAN, |k| k as f64 / 1024.0), 0),
            ];
            for (label, value, decimals) in tests {
                let medians: Vec<f64> = row
                    .samples
                    .iter()
                    .map(|samples| median(&mut samples.iter().map(value).collect::<Vec<_>>()))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {label} | {}{} |",
                    row.threads,
                    cells(&medians, decimals),
                    ratio(&medians)
                );
            }
            if let Some((batch, prompt)) = self.batch {
                let medians = |values: &[Vec<f64>]| -> Vec<f64> {
                    values.iter().map(|v| median(&mut v.clone())).collect()
                };
                let single: Vec<f64> = if prompt > 0 {
                    let alone = medians(&row.alone);
                    let label = format!("tg{}, 1 sequence after {prompt} prompt tokens (tok/s)", self.tg);
                    let _ =
                        writeln!(s, "| {} | {label} | {}{} |", row.threads, cells(&alone, 1), ratio(&alone));
                    alone
                } else {
                    row.samples
                        .iter()
                        .map(|v| median(&mut v.iter().map(|s| s.tg_tps).collect::<Vec<_>>()))
                        .collect()
                };
                let together = medians(&row.batched);
                let cells: Vec<String> = together
                    .iter()
                    .zip(&single)
                    .map(|(m, one)| format!("{m:.1} ({:.2}× one)", m / one))
                    .collect();
                let after = if prompt > 0 { format!(" after {prompt} prompt tokens") } else { String::new() };
                let label = format!("tg{}, {batch} sequences together{after} (tok/s, all)", self.tg);
                let _ =
                    writeln!(s, "| {} | {label} | {}{} |", row.threads, cells.join(" | "), ratio(&together));
            }
        }
        let serving = &self.serving;
        if serving.single.is_some() || serving.prefix.is_some() || serving.local.is_some() {
            let _ = writeln!(
                s,
                "\nServing through `LocalModel` ({} threads, greedy, medians of 3 rounds):\n",
                serving.threads
            );
            let _ = writeln!(s, "| measurement | value |\n| --- | --- |");
            if let Some((one, many)) = serving.local {
                let tg = self.rows.iter().find(|r| r.threads == serving.threads).map(|row| {
                    median(&mut row.samples[0].iter().map(|sample| sample.tg_tps).collect::<Vec<_>>())
                });
                let of_tg = |value: f64| {
                    tg.map_or(String::new(), |tg| format!(" ({:.0}% of tg{})", 100.0 * value / tg, self.tg))
                };
                for (sequences, value) in [(1, one), (SERVER_SEQUENCES, many)] {
                    let _ = writeln!(
                        s,
                        "| 1 request, {} tokens, loaded with {sequences} sequence{}: decode (tok/s, as it reports) | {value:.1}{} |",
                        self.tg,
                        if sequences == 1 { "" } else { "s" },
                        of_tg(value)
                    );
                }
            }
            if let Some(single) = serving.single {
                let _ = writeln!(s, "| 1 request, {} tokens (tok/s) | {single:.1} |", self.tg);
                for &(n, many) in &serving.concurrent {
                    let _ = writeln!(
                        s,
                        "| {n} concurrent requests, {} tokens each, aggregate (tok/s) | {many:.1} ({:.2}× one) |",
                        self.tg,
                        many / single
                    );
                }
            }
            if let Some((tokens, first, second)) = serving.prefix {
                let _ = writeln!(s, "| TTFT, {tokens}-token prompt prefix, cold (ms) | {first:.1} |");
                let _ = writeln!(
                    s,
                    "| TTFT, next request sharing that prefix (ms) | {second:.1} ({:.0}% of cold) |",
                    100.0 * second / first
                );
            }
        }
        s
    }
}

/// A row's figures, one cell per peer.
fn cells(medians: &[f64], decimals: usize) -> String {
    medians.iter().map(|m| format!("{m:.decimals$}")).collect::<Vec<_>>().join(" | ")
}

/// The Temper / llama.cpp cell, when both were measured.
fn ratio(medians: &[f64]) -> String {
    match medians {
        [ours, peer] => format!(" | {:.2}×", ours / peer),
        _ => String::new(),
    }
}

/// Replaces this model's section of `path` (or adds it), leaving the others.
pub fn write(path: &Path, section: &Section, command: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let (begin, end) =
        (format!("<!-- bench: {} -->", section.model), format!("<!-- /bench: {} -->", section.model));
    let body = format!("{begin}\n{}\nCommand: `{command}`\n{end}", section.render());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(from), Some(to)) if to > from => format!("{}{body}{}", &old[..from], &old[to + end.len()..]),
        _ if old.trim().is_empty() => format!("{HEADER}\n{body}\n"),
        _ => format!("{}\n{body}\n", old.trim_end()),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(model: &str, pp: f64) -> Section {
        let sample = |pp_tps| Sample { pp_tps, tg_tps: 100.0, rss_kib: Some(200 * 1024) };
        Section {
            model: model.into(),
            file: "m.gguf".into(),
            pp: 512,
            tg: 128,
            ctx: 2048,
            pairs: 3,
            batch: Some((4, 0)),
            peers: vec![Peer::Temper, Peer::Llamacpp],
            rows: vec![ThreadRow {
                threads: 2,
                samples: vec![
                    vec![sample(pp), sample(pp + 30.0), sample(pp - 30.0)],
                    vec![sample(2.0 * pp); 3],
                ],
                batched: vec![vec![250.0, 200.0, 300.0], vec![125.0; 3]],
                alone: vec![Vec::new(), Vec::new()],
            }],
            serving: Serving {
                threads: 2,
                single: Some(100.0),
                concurrent: vec![(4, 250.0), (8, 300.0)],
                prefix: Some((400, 1000.0, 50.0)),
                local: Some((95.0, 90.0)),
            },
            load: "1 1 1".into(),
        }
    }

    #[test]
    fn the_table_gives_medians_and_ratios() {
        let table = section("m", 300.0).render();
        assert!(table.contains("| 2 | pp512 (tok/s) | 300.0 | 600.0 | 0.50× |"), "{table}");
        assert!(table.contains("| 2 | tg128 (tok/s) | 100.0 | 100.0 | 1.00× |"), "{table}");
        assert!(table.contains("| 2 | peak RSS (MiB) | 200 | 200 | 1.00× |"), "{table}");
        assert!(
            table.contains(
                "| 2 | tg128, 4 sequences together (tok/s, all) | 250.0 (2.50× one) | 125.0 (1.25× one) | 2.00× |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| 4 concurrent requests, 128 tokens each, aggregate (tok/s) | 250.0 (2.50× one) |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| 8 concurrent requests, 128 tokens each, aggregate (tok/s) | 300.0 (3.00× one) |"
            ),
            "{table}"
        );
        assert!(table.contains("(ms) | 50.0 (5% of cold) |"), "{table}");
        let decode = "| 1 request, 128 tokens, loaded with 8 sequences: decode (tok/s, as it reports) | 90.0 (90% of tg128) |";
        assert!(table.contains(decode), "{table}");
        assert!(
            table.contains("loaded with 1 sequence: decode (tok/s, as it reports) | 95.0 (95% of tg128) |"),
            "{table}"
        );
    }

    #[test]
    fn after_a_prompt_the_batch_is_compared_with_one_sequence_after_it() {
        let mut section = section("m", 300.0);
        section.batch = Some((7, 300));
        section.rows[0].alone = vec![vec![80.0; 3], vec![100.0, 90.0, 110.0]];
        let table = section.render();
        assert!(
            table
                .contains("| 2 | tg128, 1 sequence after 300 prompt tokens (tok/s) | 80.0 | 100.0 | 0.80× |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| 2 | tg128, 7 sequences together after 300 prompt tokens (tok/s, all) | 250.0 (3.12× one) | 125.0 (1.25× one) | 2.00× |"
            ),
            "{table}"
        );
    }

    #[test]
    fn writing_replaces_a_models_section_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs/benchmarks.md");
        write(&path, &section("a", 300.0), "cmd a").unwrap();
        write(&path, &section("b", 300.0), "cmd b").unwrap();
        write(&path, &section("a", 400.0), "cmd a2").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Engine benchmarks"));
        assert_eq!(text.matches("<!-- bench: a -->").count(), 1);
        assert!(text.contains("| 400.0 |") && !text.contains("cmd a`") && text.contains("cmd a2"), "{text}");
        assert!(text.contains("Command: `cmd b`"));
        assert!(text.find("bench: a").unwrap() < text.find("bench: b").unwrap());
    }
}
