//! Reports of an evaluation: a table for the terminal, JSON, and one self-contained HTML file
//! (inline CSS and SVG, no script, nothing fetched from anywhere, so that it works where a
//! Content-Security-Policy forbids scripts, as `temper serve` sends it).

use std::fmt::Write;

use serde_json::{json, Value};
use temper_core::GenerationParams;

use crate::VariantReport;

/// `{"variants": [...]}`: every variant with its rows.
pub fn json(reports: &[VariantReport]) -> Value {
    json!({ "variants": reports })
}

/// The parameters that are set, as `temperature=0 max_tokens=4` (`defaults` when none is).
pub fn params_label(params: &GenerationParams) -> String {
    params.describe(&GenerationParams::default())
}

/// The columns of a variant's line, in the table and the HTML report.
const COLUMNS: [&str; 8] =
    ["prompt", "model", "params", "score", "pass rate", "latency (median)", "cost", "calls"];

/// A variant's cells under `COLUMNS`, unescaped.
fn cells(r: &VariantReport) -> [String; 8] {
    [
        r.prompt.clone(),
        r.model.clone(),
        params_label(&r.params),
        format!("{:.3}", r.score),
        format!("{:.1}%", 100.0 * r.pass_rate),
        format!("{:.0} ms", r.latency_ms),
        format!("${}", format_number(r.cost_usd)),
        r.calls.to_string(),
    ]
}

/// One line per variant: prompt, model, parameters, score, pass rate, median latency, cost, calls.
pub fn table(reports: &[VariantReport]) -> String {
    let lines: Vec<[String; 8]> = reports.iter().map(cells).collect();
    let mut widths = COLUMNS.map(|h| h.chars().count());
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut row = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    row(&COLUMNS.map(String::from));
    for line in &lines {
        row(line);
    }
    // With several assertions, each one's pass rate: accuracy, citations and refusals apart.
    if reports.iter().any(|r| r.rows.first().is_some_and(|row| row.assertions.len() > 1)) {
        out.push_str("\npass rate by assertion:\n");
        for (report, line) in reports.iter().zip(&lines) {
            let rates: Vec<String> = assertion_pass_rates(report)
                .into_iter()
                .map(|(kind, rate)| format!("{kind} {:.1}%", rate * 100.0))
                .collect();
            out.push_str(&format!("{:<width$}  {}\n", line[0], rates.join("  "), width = widths[0]));
        }
    }
    out
}

/// Each assertion's share of passing rows, in the spec's order (rows without an answer fail).
fn assertion_pass_rates(report: &VariantReport) -> Vec<(String, f64)> {
    let Some(first) = report.rows.iter().find(|row| !row.assertions.is_empty()) else { return Vec::new() };
    let rows = report.rows.len().max(1) as f64;
    (0..first.assertions.len())
        .map(|i| {
            let passed =
                report.rows.iter().filter(|row| row.assertions.get(i).is_some_and(|a| a.pass)).count();
            (first.assertions[i].kind.clone(), passed as f64 / rows)
        })
        .collect()
}

/// Escapes text for HTML, in elements and attributes alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}pre{white-space:pre-wrap;margin:0;max-width:40em}.fail{background:#fff0f0}\
.pass{background:#f0fff0}.charts{display:flex;flex-wrap:wrap;gap:2em}svg text{font-size:11px}\
body:has(#failing-only:checked) .rows tr.pass{display:none}details{margin:1em 0}summary{cursor:pointer;font-weight:bold}";

/// The whole report as one HTML page: a score per variant, latency and cost against score, and
/// every row with its output and failing assertions.
pub fn html(title: &str, reports: &[VariantReport]) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style>\
         </head><body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    let lines: Vec<[String; 8]> = reports.iter().map(cells).collect();
    page.push_str("<table><tr><th>#</th>");
    for column in COLUMNS {
        let _ = write!(page, "<th>{column}</th>");
    }
    page.push_str("</tr>\n");
    for (i, line) in lines.iter().enumerate() {
        let _ = write!(page, "<tr><td>V{}</td>", i + 1);
        for cell in line {
            let _ = write!(page, "<td>{}</td>", escape(cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n<div class=\"charts\">\n");
    page.push_str(&score_bars(reports));
    let points = |x: fn(&VariantReport) -> f64| reports.iter().map(|r| (x(r), r.score)).collect::<Vec<_>>();
    page.push_str(&scatter("median latency (ms) against score", &points(|r| r.latency_ms)));
    page.push_str(&scatter("cost (USD) against score", &points(|r| r.cost_usd)));
    page.push_str("</div>\n<p><label><input type=\"checkbox\" id=\"failing-only\"> show failing rows only</label></p>\n");
    for (i, (r, line)) in reports.iter().zip(&lines).enumerate() {
        let _ = writeln!(
            page,
            "<details><summary>V{}: {} on {} ({}): score {:.3}, {} of {} rows pass</summary>",
            i + 1,
            escape(&r.prompt),
            escape(&r.model),
            escape(&line[2]),
            r.score,
            r.rows.iter().filter(|row| row.pass).count(),
            r.rows.len()
        );
        page.push_str(
            "<table class=\"rows\"><tr><th>row</th><th>variables</th><th>expected</th><th>output</th>\
                       <th>score</th><th>failing assertions</th></tr>\n",
        );
        for row in &r.rows {
            let vars = serde_json::to_string_pretty(&row.vars).unwrap_or_default();
            let expected = row.expected.as_ref().map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let mut failing: Vec<String> = row
                .assertions
                .iter()
                .filter(|a| !a.pass)
                .map(|a| format!("<b>{}</b>: {}", escape(&a.kind), escape(&a.reason)))
                .collect();
            if let Some(error) = &row.error {
                failing.push(format!("<b>no answer</b>: {}", escape(error)));
            }
            let _ = writeln!(
                page,
                "<tr class=\"{}\"><td>{}{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td><td><pre>{}</pre></td>\
                 <td>{:.3}</td><td>{}</td></tr>",
                if row.pass { "pass" } else { "fail" },
                row.index,
                if row.cached { " (cached)" } else { "" },
                escape(&vars),
                escape(expected.as_deref().unwrap_or("")),
                escape(&row.output),
                row.score,
                failing.join("<br>")
            );
        }
        page.push_str("</table></details>\n");
    }
    page.push_str("</body></html>\n");
    page
}

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 240.0;
const MARGIN: f64 = 40.0;

/// A horizontal bar per variant, its length the score.
fn score_bars(reports: &[VariantReport]) -> String {
    let bar = 18.0;
    let height = MARGIN + bar * 1.5 * reports.len() as f64;
    let mut svg = format!(
        "<figure><svg width=\"{WIDTH}\" height=\"{height}\" role=\"img\"><text x=\"0\" y=\"14\">score per variant</text>"
    );
    for (i, r) in reports.iter().enumerate() {
        let y = 24.0 + bar * 1.5 * i as f64;
        let length = (WIDTH - 2.0 * MARGIN) * r.score.clamp(0.0, 1.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">V{}</text><rect x=\"{MARGIN}\" y=\"{y:.1}\" width=\"{length:.1}\" height=\"{bar}\" fill=\"#4a7ebb\">\
             <title>{}</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{:.3}</text>",
            y + 13.0,
            i + 1,
            escape(&format!("{} on {}", r.prompt, r.model)),
            MARGIN + length + 4.0,
            y + 13.0,
            r.score
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// Points (x, score) with the variants' numbers, on axes from 0.
fn scatter(title: &str, points: &[(f64, f64)]) -> String {
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let max_x = if max_x > 0.0 { max_x } else { 1.0 };
    let (left, bottom, right, top) = (MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, 24.0);
    let mut svg = format!(
        "<figure><svg width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\"><text x=\"0\" y=\"14\">{}</text>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#888\"/>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{left}\" y2=\"{top}\" stroke=\"#888\"/>\
         <text x=\"{left}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"4\" y=\"{bottom}\">0</text><text x=\"4\" y=\"{}\">1</text>",
        escape(title),
        bottom + 14.0,
        right,
        bottom + 14.0,
        escape(&format_number(max_x)),
        top + 4.0,
    );
    for (i, (x, score)) in points.iter().enumerate() {
        let px = left + (right - left) * (x / max_x);
        let py = bottom - (bottom - top) * score.clamp(0.0, 1.0);
        let _ = write!(
            svg,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"5\" fill=\"#c0504d\"><title>V{}: {} → {:.3}</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\">V{}</text>",
            i + 1,
            escape(&format_number(*x)),
            score,
            px + 7.0,
            py - 6.0,
            i + 1
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// A number with digits enough for a fraction of a cent.
fn format_number(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("{x:.6}")
    } else {
        format!("{x:.2}")
    }
}
