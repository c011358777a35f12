//! `report.html`: the page `mixsim run` and `mixsim sweep` write beside
//! their other files holds their figures, intervals, plots and recipe,
//! escapes what users wrote, and opens in a real browser.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use simulations::metrics::METRICS;
use simulations::{Scenario, SourceFile, run, write_run};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mixsim-page-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mixsim(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_mixsim"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "mixsim {args:?} failed");
}

fn small() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/small.toml")
}

/// The structure a browser needs: one document, closed elements, nothing
/// that fetches or runs.
fn assert_well_formed(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(html.ends_with("</body>\n</html>\n"));
    for tag in [
        "table", "tr", "thead", "tbody", "pre", "svg", "figure", "ul",
    ] {
        let open =
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        let close = html.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}> opened {open} times, closed {close}");
    }
    for fetches in [
        "<script", "<link", "<img", "<iframe", "src=", "@import", "url(",
    ] {
        assert!(!html.contains(fetches), "the page has {fetches}");
    }
}

#[test]
fn several_seeds_write_a_page_with_every_interval_of_confidence_json() {
    let dir = tmp("seeds");
    let out = dir.join("out");
    mixsim(&[
        "run",
        small().to_str().unwrap(),
        "--seeds",
        "3",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_well_formed(&html);
    assert!(html.contains("<title>mixsim: small</title>"));
    assert!(html.contains("<table id=\"figures-table\">"));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("confidence.json")).unwrap())
            .unwrap();
    let mut rows = 0;
    for i in json.as_array().unwrap() {
        let metric = i["metric"].as_str().unwrap();
        let n = i["n"].as_u64().unwrap();
        if n == 0 {
            // A metric without a value (no attack ran) has no row.
            assert!(
                !html.contains(&format!("<code>{metric}</code>")),
                "{metric}"
            );
            continue;
        }
        rows += 1;
        let (mean, h) = (
            i["mean"].as_f64().unwrap(),
            i["half_width"].as_f64().unwrap(),
        );
        let line = html
            .lines()
            .find(|l| l.contains(&format!("<td><code>{metric}</code></td>")))
            .unwrap_or_else(|| panic!("no row for {metric}"));
        let tail = format!(
            "<td class=\"num\">{mean:.4} ± {h:.4}</td><td class=\"num\">[{:.4}, {:.4}]</td><td class=\"num\">{n}</td></tr>",
            mean - h,
            mean + h
        );
        assert!(line.ends_with(&tail), "{metric}: {line}\nexpected {tail}");
    }
    assert!(rows >= 10, "{rows} rows");
    // The models are named beside the metrics.
    for model in ["pool observer", "timing observer"] {
        assert!(html.contains(&format!("<td>{model}</td>")), "{model}");
    }
    // The plots are inline, and written beside the page too.
    for chart in ["latency.svg", "entropy.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap();
        assert!(html.contains(svg.trim()), "{chart} is not inline");
        assert!(svg.contains("seed 9"), "{chart} has no line for seed 9");
    }
    // Links to the files beside it, each of which exists.
    for file in [
        "confidence.csv",
        "confidence.json",
        "seeds.csv",
        "summary.txt",
        "seed-7/report.html",
        "seed-9/report.json",
    ] {
        assert!(html.contains(&format!("<a href=\"{file}\">")), "{file}");
        assert!(out.join(file).exists(), "{file}");
    }
    // Seeds, version and the command that reproduces it.
    assert!(html.contains("3 seeds, 7 to 9"));
    assert!(html.contains(&format!("mixsim {}", env!("CARGO_PKG_VERSION"))));
    assert!(html.contains("mixsim run small.toml --seeds 3 --out results/small"));
    // No absolute path: the page does not say where it ran.
    assert!(!html.contains(dir.to_str().unwrap()));
    assert!(!html.contains(env!("CARGO_MANIFEST_DIR")));
    // The scenario as run: every section of the TOML, parsed back to the
    // scenario of the first seed.
    let toml = between(&html, "<h2 id=\"scenario\">Scenario</h2>", "</pre>");
    let toml = unescape(toml.split_once("<pre>").unwrap().1);
    let back: Scenario = toml::from_str(&toml).unwrap();
    assert_eq!(back, Scenario::from_file(&small()).unwrap());

    // Each seed's own page: its figures equal its report.json.
    let page = std::fs::read_to_string(out.join("seed-8/report.html")).unwrap();
    assert_well_formed(&page);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("seed-8/report.json")).unwrap())
            .unwrap();
    for (metric, value) in [
        (
            "packet_latency_mean_ms",
            report["packet_latency_ms"]["mean"].as_f64().unwrap(),
        ),
        (
            "entropy_mean_bits",
            report["anonymity"]["entropy_bits"]["mean"]
                .as_f64()
                .unwrap(),
        ),
        (
            "delivery_ratio",
            report["delivery"]["message_ratio"].as_f64().unwrap(),
        ),
    ] {
        let line = page
            .lines()
            .find(|l| l.contains(&format!("<td><code>{metric}</code></td>")))
            .unwrap();
        assert!(
            line.ends_with(&format!("<td class=\"num\">{value:.4}</td></tr>")),
            "{line}"
        );
    }
    for chart in ["latency.svg", "queues.svg", "entropy.svg"] {
        let svg = std::fs::read_to_string(out.join("seed-8").join(chart)).unwrap();
        assert!(page.contains(svg.trim()), "{chart} is not inline");
    }
    assert!(page.contains("mixsim run small.toml --out results/small"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text.find(from).unwrap() + from.len();
    let len = text[start..].find(to).unwrap();
    &text[start..start + len]
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A run short enough for a test that only looks at the page.
fn quick() -> Scenario {
    let mut s = Scenario::from_file(&small()).unwrap();
    s.duration_secs = 10.0;
    s.warmup_secs = 1.0;
    s.drain_secs = 2.0;
    s.traffic.clients = 8;
    s.adversary.target_messages = 30;
    s
}

#[test]
fn user_text_comes_out_escaped() {
    let dir = tmp("escape");
    let mut s = quick();
    // Region labels are free text, and show in the scenario's TOML.
    s.regions.mixes = vec!["<b>eu</b>".into()];
    let out = run(&s, None).unwrap();
    let name = "<script>alert('x')</script> & co";
    write_run(&out, &SourceFile::named(name), &dir).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_well_formed(&html);
    assert!(!html.contains("<script>") && !html.contains("<b>"));
    assert!(
        html.contains("<h1>mixsim: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</h1>")
    );
    assert!(html.contains("&lt;b&gt;eu&lt;/b&gt;"));
    // The command quotes it for a shell, and the page escapes that.
    assert!(html.contains(
        "mixsim run &#39;&lt;script&gt;alert(&#39;\\&#39;&#39;x&#39;\\&#39;&#39;)&lt;/script&gt; &amp; co.toml&#39;"
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_same_run_writes_the_same_page_wherever_it_is_written() {
    let (a, b) = (tmp("same-a"), tmp("same-b"));
    let out = run(&quick(), None).unwrap();
    write_run(&out, &SourceFile::of(Path::new("/x/quick.toml")), &a).unwrap();
    write_run(
        &out,
        &SourceFile::of(Path::new("quick.toml")),
        &b.join("deeper"),
    )
    .unwrap();
    let pa = std::fs::read(a.join("report.html")).unwrap();
    assert_eq!(pa, std::fs::read(b.join("deeper/report.html")).unwrap());
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn a_sweep_page_has_a_row_per_point_with_intervals_and_every_plot() {
    let dir = tmp("sweep");
    let sweep = dir.join("delays.toml");
    std::fs::write(
        &sweep,
        "threads = 2\n[scenario]\nduration_secs = 8.0\nwarmup_secs = 1.0\ndrain_secs = 2.0\n\
         [scenario.traffic]\nclients = 8\n[scenario.adversary]\ntarget_messages = 30\n\
         [grid]\n\"traffic.mean_delay_ms\" = [20.0, 80.0]\n",
    )
    .unwrap();
    let out = dir.join("out");
    mixsim(&[
        "sweep",
        sweep.to_str().unwrap(),
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_well_formed(&html);
    assert!(html.contains("<title>mixsim: delays</title>"));
    let table = between(&html, "<table id=\"figures-table\">", "</table>");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let body: Vec<&str> = table.lines().filter(|l| l.starts_with("<tr><td")).collect();
    assert_eq!(body.len(), 2, "{table}");
    for (row, line) in body.iter().zip(csv.lines().skip(1)) {
        let cells: Vec<&str> = line.split(',').collect();
        let value = |name: &str| -> f64 {
            let at = header.iter().position(|h| *h == name).unwrap();
            cells[at].parse().unwrap()
        };
        let (m, h) = (value("entropy_mean_bits"), value("entropy_mean_bits_ci95"));
        assert!(
            row.contains(&format!("{m:.4} ± {h:.4}</td>")),
            "{row}\nexpected {m:.4} ± {h:.4}"
        );
        assert!(row.starts_with(&format!(
            "<tr><td class=\"num\">{}</td>",
            value("traffic.mean_delay_ms")
        )));
    }
    // A column per metric with a value at some point, and none for the others.
    for metric in METRICS {
        let at = header.iter().position(|h| *h == metric).unwrap();
        let some = csv.lines().skip(1).any(|l| {
            l.split(',')
                .nth(at)
                .unwrap()
                .parse::<f64>()
                .unwrap()
                .is_finite()
        });
        let column = format!("<th><code>{metric}</code><br>");
        assert_eq!(html.contains(&column), some, "{metric}");
    }
    let svgs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".svg"))
        .collect();
    assert!(!svgs.is_empty());
    for f in &svgs {
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(html.contains(svg.trim()), "{f} is not inline");
        assert!(html.contains(&format!("<a href=\"{f}\">")), "{f}");
    }
    assert_eq!(html.matches("<svg ").count(), svgs.len());
    assert!(html.contains("mixsim sweep delays.toml --seeds 2 --out results/delays"));
    // The sweep as written out on the page runs on its own.
    let text = between(&html, "<h2 id=\"scenario\">Sweep</h2>", "</pre>");
    let text = unescape(text.split_once("<pre>").unwrap().1);
    let again = dir.join("again.toml");
    std::fs::write(&again, &text).unwrap();
    let spec = simulations::Sweep::from_file(&again).unwrap();
    assert_eq!(spec.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Headless Chromium opens the page from disk and builds its DOM: the
/// figures table and the inline plots are there, and the browser logged no
/// console message (a script error, a blocked fetch). Skipped, saying why,
/// when no `chromium` is on PATH; CI installs it (`.ci/run`).
#[cfg(unix)]
#[test]
fn headless_chromium_renders_the_page_without_errors() {
    let Some(chromium) = find_on_path("chromium") else {
        eprintln!(
            "skipped: no `chromium` on PATH (Debian package `chromium`; .ci/run installs it)"
        );
        return;
    };
    let dir = tmp("chromium");
    let out = dir.join("out");
    mixsim(&[
        "run",
        small().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let page = out.join("report.html").canonicalize().unwrap();
    let (dom, log) = (dir.join("dom.html"), dir.join("chromium.log"));
    let profile = dir.join("profile");
    let mut child = {
        use std::os::unix::process::CommandExt as _;
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&dom).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            // Its own process group, so that a timeout kills its helpers too.
            .process_group(0)
            .spawn()
            .unwrap()
    };
    // Up to 60 s, in polls of 100 ms.
    let mut status = None;
    for _ in 0..600 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever happened, nothing of the browser outlives the test.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let dom = std::fs::read_to_string(&dom).unwrap_or_default();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    let status = status.unwrap_or_else(|| panic!("chromium took over 60 s; its log:\n{log}"));
    assert!(status.success(), "chromium failed: {status}\n{log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    assert!(dom.contains("<title>mixsim: small</title>"), "{dom}");
    let table = between(&dom, "<table id=\"figures-table\">", "</table>");
    assert!(table.contains("<tbody>") && table.contains("<code>entropy_mean_bits</code>"));
    assert!(table.contains("<td>pool observer</td>"));
    // Three inline plots, each with its drawn lines.
    assert_eq!(dom.matches("<svg ").count(), 3, "{dom}");
    assert!(dom.contains("<polyline") || dom.contains("<path"), "{dom}");
    assert!(dom.contains("End-to-end packet latency"));
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
