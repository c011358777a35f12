//! The report page: `report.html`, one self-contained file beside the other
//! outputs of a run, a set of seeds or a sweep, for a researcher to open in
//! a browser.
//!
//! It shows the scenario as run (TOML that reproduces it), every headline
//! figure with the adversary model it holds under (and its 95 % interval
//! when there are several seeds), the plots inlined as SVG, links to the CSV
//! and JSON files beside it, and the seeds, the tool's version and the
//! command that reproduces it. It loads nothing: no script, no external
//! style sheet or font, and a Content-Security-Policy that forbids any
//! fetch, so it opens offline from any folder. Like every other output it is
//! a function of the results alone (no clock, no absolute path), so the same
//! scenario and seeds write the same bytes. Every string that comes from a
//! user (file names, region labels, grid keys) goes through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::confidence::Interval;
use crate::error::SimError;
use crate::metrics::{DESCRIPTIONS, METRICS};
use crate::plot::Chart;
use crate::scenario::Scenario;

/// The page's file name.
pub const PAGE: &str = "report.html";

/// The tool's version, as `mixsim --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `text` made safe for HTML element content and quoted attribute values.
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

/// `word` as one POSIX shell word (quoted only when it needs to be).
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/+=:,@".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The scenario or sweep file a page reports on, by name only: no directory,
/// so that a page does not depend on where the command was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The file name without its extension: the page's title (`small`).
    pub name: String,
    /// The file name the reproducing command reads (`small.toml`).
    pub file: String,
}

impl SourceFile {
    /// The file at `path`, named by its last component.
    pub fn of(path: &Path) -> SourceFile {
        let file = path
            .file_name()
            .map_or_else(|| "scenario.toml".into(), |f| f.to_string_lossy());
        let name = path
            .file_stem()
            .map_or_else(|| "scenario".into(), |f| f.to_string_lossy());
        SourceFile {
            name: name.into_owned(),
            file: file.into_owned(),
        }
    }

    /// A file called `<name>.toml`.
    pub fn named(name: &str) -> SourceFile {
        SourceFile {
            name: name.to_string(),
            file: format!("{name}.toml"),
        }
    }

    /// `mixsim <command> <file> [--seeds N] --out results/<name>`.
    fn command(&self, command: &str, seeds: usize) -> String {
        let seeds = if seeds > 1 {
            format!(" --seeds {seeds}")
        } else {
            String::new()
        };
        format!(
            "mixsim {command} {}{seeds} --out {}",
            shell_word(&self.file),
            shell_word(&format!("results/{}", self.name))
        )
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;\
padding:0 1em;color:#222;background:#fff}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.wide{overflow-x:auto}.model{color:#555;font-weight:normal}\
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}\
figure{margin:1.5em 0}figcaption{color:#555}svg{max-width:100%;height:auto}";

/// A page being written: sections appended in order to one string.
struct Page {
    html: String,
}

impl Page {
    /// The head and the title.
    fn new(title: &str, subtitle: &str) -> Page {
        let mut html = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n");
        html += "<meta charset=\"utf-8\">\n";
        html += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n";
        html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
        let _ = writeln!(html, "<title>mixsim: {}</title>", escape(title));
        let _ = writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>");
        let _ = writeln!(html, "<h1>mixsim: {}</h1>", escape(title));
        let _ = writeln!(html, "<p>{}</p>", escape(subtitle));
        Page { html }
    }

    fn heading(&mut self, id: &str, text: &str) {
        let _ = writeln!(self.html, "<h2 id=\"{id}\">{}</h2>", escape(text));
    }

    /// A paragraph of already-escaped HTML.
    fn paragraph(&mut self, html: &str) {
        let _ = writeln!(self.html, "<p>{html}</p>");
    }

    fn preformatted(&mut self, text: &str) {
        let _ = writeln!(self.html, "<pre>{}</pre>", escape(text.trim_end()));
    }

    /// The headline figures: one row per metric with a value.
    fn figures(&mut self, intervals: &[Interval], several: bool) {
        self.heading("figures", "Figures");
        if several {
            self.paragraph(
                "Mean over the seeds and Student&#39;s t 95 % confidence interval, \
                 mean ± t(0.975, n−1)·sd/√n; n is the number of seeds with a value.",
            );
        }
        let _ = writeln!(
            self.html,
            "<table id=\"figures-table\">\n<thead><tr><th>figure</th><th>metric</th><th>adversary model</th>{}</tr></thead>\n<tbody>",
            if several {
                "<th>mean ± 95 % half-width</th><th>95 % interval</th><th>n</th>"
            } else {
                "<th>value</th>"
            }
        );
        for (i, (describe, model)) in intervals.iter().zip(DESCRIPTIONS) {
            if i.n == 0 {
                continue;
            }
            let _ = write!(
                self.html,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td>",
                escape(describe),
                escape(&i.metric),
                escape(model)
            );
            if several {
                let (ci, range) = if i.half_width.is_finite() {
                    (
                        format!("{:.4} ± {:.4}", i.mean, i.half_width),
                        format!(
                            "[{:.4}, {:.4}]",
                            i.mean - i.half_width,
                            i.mean + i.half_width
                        ),
                    )
                } else {
                    (format!("{:.4}", i.mean), "—".to_string())
                };
                let _ = writeln!(
                    self.html,
                    "<td class=\"num\">{ci}</td><td class=\"num\">{range}</td><td class=\"num\">{}</td></tr>",
                    i.n
                );
            } else {
                let _ = writeln!(self.html, "<td class=\"num\">{:.4}</td></tr>", i.mean);
            }
        }
        self.html += "</tbody>\n</table>\n";
        self.paragraph(
            "Metrics without a value in this run (an attack it did not run, a closed form \
             that does not apply) are left out.",
        );
        self.models();
    }

    /// What the adversary models in the tables mean.
    fn models(&mut self) {
        self.paragraph(
            "<em>Pool observer</em>: a global passive observer that also knows which packets \
             are inside each mix, colluding with the scenario&#39;s corrupt nodes; \
             <em>timing observer</em>: sees only when packets enter and leave each node. \
             docs/simulations.md, &quot;Anonymity model&quot;, states both, and the attacks.",
        );
    }

    /// The scenario as TOML.
    fn scenario(&mut self, toml: &str, file: &str) {
        self.heading("scenario", "Scenario");
        self.paragraph(&format!(
            "Every field, defaults included; saved as <code>{}</code> it reproduces this page.",
            escape(file)
        ));
        self.preformatted(toml);
    }

    /// The charts, inline.
    fn plots(&mut self, charts: &[Chart], note: &str) {
        if charts.is_empty() {
            return;
        }
        self.heading("plots", "Plots");
        if !note.is_empty() {
            self.paragraph(&escape(note));
        }
        for c in charts {
            let svg = c.svg.trim();
            let svg = svg
                .strip_prefix("<?xml")
                .and_then(|rest| rest.split_once("?>"))
                .map_or(svg, |(_, rest)| rest.trim_start());
            let _ = writeln!(
                self.html,
                "<figure>\n{svg}\n<figcaption><a href=\"{f}\">{f}</a></figcaption>\n</figure>",
                f = escape(&c.file)
            );
        }
    }

    /// Links to the files beside the page.
    fn files(&mut self, files: &[String]) {
        self.heading("files", "Files");
        self.html += "<ul>\n";
        for f in files {
            let _ = writeln!(self.html, "<li><a href=\"{f}\">{f}</a></li>", f = escape(f));
        }
        self.html += "</ul>\n";
    }

    /// Seeds, version and the command.
    fn reproduce(&mut self, seeds: &str, file: &str, command: &str) {
        self.heading("reproduce", "Reproduce");
        self.html += "<table id=\"provenance\">\n";
        for (k, v) in [
            ("tool", format!("mixsim {VERSION}")),
            ("seeds", seeds.to_string()),
            ("scenario file", file.to_string()),
            ("command", command.to_string()),
        ] {
            let _ = writeln!(
                self.html,
                "<tr><th>{k}</th><td><code>{}</code></td></tr>",
                escape(&v)
            );
        }
        self.html += "</table>\n";
        self.paragraph(&format!(
            "Save the TOML above as <code>{}</code> and run the command: it writes these \
             files again, byte for byte.",
            escape(file)
        ));
        self.preformatted(command);
    }

    fn finish(mut self) -> String {
        self.html += "</body>\n</html>\n";
        self.html
    }
}

/// `seeds` seeds from `first`, in words.
fn seeds_text(first: u64, seeds: usize) -> String {
    match seeds {
        0 | 1 => format!("{first}"),
        n => format!("{n} seeds, {first} to {}", first.wrapping_add(n as u64 - 1)),
    }
}

/// The page of one run: its figures, its summary and its plots.
pub fn run_page(
    scenario: &Scenario,
    source: &SourceFile,
    figures: &[Interval],
    summary: &str,
    charts: &[Chart],
    files: &[String],
) -> Result<String, SimError> {
    let mut page = Page::new(
        &source.name,
        &format!("One run of {}, seed {}.", source.file, scenario.seed),
    );
    page.figures(figures, false);
    page.heading("summary", "Summary");
    page.preformatted(summary);
    page.plots(charts, "");
    page.scenario(&toml::to_string(scenario)?, &source.file);
    page.files(files);
    page.reproduce(
        &seeds_text(scenario.seed, 1),
        &source.file,
        &source.command("run", 1),
    );
    Ok(page.finish())
}

/// The page of several seeds of one scenario: the intervals, and plots
/// that draw every seed.
pub fn seeds_page(
    scenario: &Scenario,
    source: &SourceFile,
    seeds: usize,
    intervals: &[Interval],
    charts: &[Chart],
    files: &[String],
) -> Result<String, SimError> {
    let mut page = Page::new(
        &source.name,
        &format!(
            "{seeds} seeds of {}, seeds {} to {}: means with 95 % confidence intervals.",
            source.file,
            scenario.seed,
            scenario.seed.wrapping_add(seeds.max(1) as u64 - 1)
        ),
    );
    page.figures(intervals, true);
    page.plots(
        charts,
        "One line per seed; each seed's own page, figures and plots are in its seed-<seed>/ folder.",
    );
    page.scenario(&toml::to_string(scenario)?, &source.file);
    page.files(files);
    page.reproduce(
        &seeds_text(scenario.seed, seeds),
        &source.file,
        &source.command("run", seeds),
    );
    Ok(page.finish())
}

/// One grid point of a sweep on its page: parameter values, and each
/// metric's mean and 95 % half-width.
pub struct SweepPoint<'a> {
    /// Parameter values, in grid-key order.
    pub params: &'a [(String, f64)],
    /// Mean of each of [`METRICS`].
    pub metrics: &'a [f64],
    /// Half-width of each one's interval (NaN: none).
    pub ci95: &'a [f64],
}

/// A sweep file written out whole: the base scenario inline, so that it
/// does not depend on another file.
#[derive(Serialize)]
struct SweepFile<'a> {
    x: &'a str,
    grid: BTreeMap<&'a str, &'a [toml::Value]>,
    scenario: &'a Scenario,
}

/// What a sweep's page is made of.
pub struct SweepPage<'a> {
    /// The sweep file.
    pub source: &'a SourceFile,
    /// The base scenario.
    pub base: &'a Scenario,
    /// The grid: field and values, in key order.
    pub grid: &'a [(String, Vec<toml::Value>)],
    /// The plots' x axis.
    pub x: &'a str,
    /// Seeds per point.
    pub seeds: usize,
    /// Every point, in grid order.
    pub points: Vec<SweepPoint<'a>>,
    /// The sweep's charts.
    pub charts: &'a [Chart],
    /// The files beside the page.
    pub files: &'a [String],
}

/// The page of a sweep: one row per point, and the sweep's plots.
pub fn sweep_page(s: &SweepPage<'_>) -> Result<String, SimError> {
    let several = s.seeds > 1;
    let mut page = Page::new(
        &s.source.name,
        &format!(
            "Sweep {}: {} points{}.",
            s.source.file,
            s.points.len(),
            if several {
                format!(
                    ", {} seeds each: means with 95 % confidence intervals",
                    s.seeds
                )
            } else {
                String::new()
            }
        ),
    );
    page.heading("figures", "Figures");
    page.paragraph(if several {
        "One row per grid point: each metric&#39;s mean over the seeds ± the half-width of \
         its Student&#39;s t 95 % confidence interval (hover a cell for the interval). \
         Metrics without a value at any point are left out."
    } else {
        "One row per grid point. Metrics without a value at any point are left out."
    });
    let shown: Vec<usize> = (0..METRICS.len())
        .filter(|m| {
            s.points
                .iter()
                .any(|p| p.metrics.get(*m).is_some_and(|v| v.is_finite()))
        })
        .collect();
    page.html += "<div class=\"wide\">\n<table id=\"figures-table\">\n<thead><tr>";
    for (key, _) in s.grid {
        let _ = write!(page.html, "<th><code>{}</code></th>", escape(key));
    }
    for m in &shown {
        let (metric, (_, model)) = (
            METRICS.get(*m).copied().unwrap_or_default(),
            DESCRIPTIONS.get(*m).copied().unwrap_or_default(),
        );
        let _ = write!(
            page.html,
            "<th><code>{}</code><br><span class=\"model\">{}</span></th>",
            escape(metric),
            escape(model)
        );
    }
    page.html += "</tr></thead>\n<tbody>\n";
    for p in &s.points {
        page.html += "<tr>";
        for (_, v) in p.params {
            let _ = write!(page.html, "<td class=\"num\">{v}</td>");
        }
        for m in &shown {
            let v = p.metrics.get(*m).copied().unwrap_or(f64::NAN);
            let h = p.ci95.get(*m).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                page.html += "<td class=\"num\">—</td>";
            } else if several && h.is_finite() {
                let _ = write!(
                    page.html,
                    "<td class=\"num\" title=\"95 % interval [{:.4}, {:.4}]\">{v:.4} ± {h:.4}</td>",
                    v - h,
                    v + h
                );
            } else {
                let _ = write!(page.html, "<td class=\"num\">{v:.4}</td>");
            }
        }
        page.html += "</tr>\n";
    }
    page.html += "</tbody>\n</table>\n</div>\n";
    page.html += "<table id=\"metrics\">\n<thead><tr><th>metric</th><th>figure</th><th>adversary model</th></tr></thead>\n<tbody>\n";
    for m in &shown {
        let (metric, (describe, model)) = (
            METRICS.get(*m).copied().unwrap_or_default(),
            DESCRIPTIONS.get(*m).copied().unwrap_or_default(),
        );
        let _ = writeln!(
            page.html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(metric),
            escape(describe),
            escape(model)
        );
    }
    page.html += "</tbody>\n</table>\n";
    page.models();
    page.plots(
        s.charts,
        &format!(
            "x axis: {}; one line per combination of the other parameters{}.",
            s.x,
            if several {
                ", error bars: 95 % intervals"
            } else {
                ""
            }
        ),
    );
    let file = SweepFile {
        x: s.x,
        grid: s
            .grid
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect(),
        scenario: s.base,
    };
    page.heading("scenario", "Sweep");
    page.paragraph(&format!(
        "The grid and its base scenario (every field, defaults included); saved as \
         <code>{}</code> it reproduces this page. Every point keeps the base seed (common \
         random numbers).",
        escape(&s.source.file)
    ));
    page.preformatted(&toml::to_string(&file)?);
    page.files(s.files);
    page.reproduce(
        &format!("{} at every point", seeds_text(s.base.seed, s.seeds.max(1))),
        &s.source.file,
        &s.source.command("sweep", s.seeds),
    );
    Ok(page.finish())
}

/// Writes `html` as [`PAGE`] into `dir`.
pub fn write_page(dir: &Path, html: &str) -> Result<(), SimError> {
    let path = dir.join(PAGE);
    std::fs::write(&path, html).map_err(|e| SimError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("entropy_mean_bits"), "entropy_mean_bits");
    }

    #[test]
    fn the_command_names_the_file_only_and_quotes_what_a_shell_would_read() {
        let s = SourceFile::of(Path::new("/home/someone/sims/small.toml"));
        assert_eq!(s, SourceFile::named("small"));
        assert_eq!(
            s.command("run", 4),
            "mixsim run small.toml --seeds 4 --out results/small"
        );
        let odd = SourceFile::named("it's $HOME");
        assert_eq!(
            odd.command("sweep", 1),
            r"mixsim sweep 'it'\''s $HOME.toml' --out 'results/it'\''s $HOME'"
        );
    }
}
