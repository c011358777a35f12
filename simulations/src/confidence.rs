//! Several seeds of one scenario, and 95 % confidence intervals over them.
//!
//! One run of a network simulation is one sample (Once is Never Enough,
//! USENIX Security 2021): `--seeds N` runs seeds s, s+1, …, s+N−1 of the
//! scenario on worker threads and reports, per metric, the mean over seeds
//! and Student's t interval mean ± t(0.975, N−1)·sd/√N. Each seed's mean is
//! one independent sample, so correlations between the packets of one run
//! do not narrow the interval falsely.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;
use serde::Serialize;

use crate::closed_form::student_t_975;
use crate::engine::run;
use crate::error::SimError;
use crate::metrics::{COUNT, METRICS, metrics_of};
use crate::output::{
    ENTROPY_LABELS, LATENCY_BINS, LATENCY_LABELS, entropy_cdf, histogram, latency_line, write_run,
};
use crate::page::{SourceFile, seeds_page, write_page};
use crate::plot::Chart;
use crate::report::RunOutput;
use crate::scenario::Scenario;

/// A mean and its 95 % confidence interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// The metric.
    pub metric: String,
    /// Samples (seeds) with a finite value.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Half-width of the 95 % interval (NaN with fewer than two samples).
    pub half_width: f64,
}

impl Interval {
    /// The interval of `samples` (NaN samples left out).
    pub fn of(metric: &str, samples: &[f64]) -> Interval {
        let finite: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            finite.iter().sum::<f64>() / n as f64
        };
        let half_width = if n < 2 {
            f64::NAN
        } else {
            let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
            student_t_975(n - 1) * (var / n as f64).sqrt()
        };
        Interval {
            metric: metric.to_string(),
            n,
            mean,
            half_width,
        }
    }

    /// Whether `value` lies inside the interval.
    pub fn contains(&self, value: f64) -> bool {
        (value - self.mean).abs() <= self.half_width
    }
}

/// The interval of every metric over `rows` (one row per seed).
pub fn intervals(rows: &[[f64; COUNT]]) -> Vec<Interval> {
    METRICS
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let samples: Vec<f64> = rows
                .iter()
                .map(|r| r.get(i).copied().unwrap_or(f64::NAN))
                .collect();
            Interval::of(m, &samples)
        })
        .collect()
}

/// Runs `f(0..n)` on `threads` worker threads (0: one per core); results in index order.
pub fn run_indexed<T: Send>(
    n: usize,
    threads: usize,
    progress: Option<&ProgressBar>,
    f: impl Fn(usize) -> Result<T, SimError> + Sync,
) -> Result<Vec<T>, SimError> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        t => t,
    }
    .min(n)
    .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T, SimError>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    if let Ok(mut all) = results.lock()
                        && let Some(slot) = all.get_mut(i)
                    {
                        *slot = Some(r);
                    }
                    if let Some(pb) = progress {
                        pb.inc(1);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(SimError::invalid("seeds", "a run did not finish"))))
        .collect()
}

/// Runs seeds `scenario.seed` … `scenario.seed + seeds − 1` on `threads` threads.
pub fn run_seeds(
    scenario: &Scenario,
    seeds: usize,
    threads: usize,
    progress: Option<&ProgressBar>,
) -> Result<Vec<RunOutput>, SimError> {
    run_indexed(seeds, threads, progress, |k| {
        let s = Scenario {
            seed: scenario.seed.wrapping_add(k as u64),
            ..scenario.clone()
        };
        run(&s, None)
    })
}

/// Writes every seed's files into `seed-<seed>/` under `dir`, and beside
/// them `seeds.csv` (one row per seed), `confidence.csv`, `confidence.json`,
/// `summary.txt` (the intervals), `latency.svg` and `entropy.svg` (a line
/// per seed) and `report.html` (titled after `source`).
pub fn write_seeds(
    outputs: &[RunOutput],
    source: &SourceFile,
    dir: &Path,
) -> Result<Vec<Interval>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
    let mut rows = Vec::with_capacity(outputs.len());
    let mut csv = format!("seed,{}\n", METRICS.join(","));
    for out in outputs {
        let seed = out.report.scenario.seed;
        write_run(out, source, &dir.join(format!("seed-{seed}")))?;
        let row = metrics_of(&out.report);
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
        let _ = writeln!(csv, "{seed},{}", cells.join(","));
        rows.push(row);
    }
    let path = dir.join("seeds.csv");
    std::fs::write(&path, csv).map_err(|e| SimError::io(&path, e))?;
    let ci = intervals(&rows);
    let mut csv = String::from("metric,n,mean,ci95_half_width,ci95_low,ci95_high\n");
    let mut text = format!(
        "mixsim: {} seeds ({}..={}), mean and 95 % confidence interval (Student's t)\n\n",
        outputs.len(),
        outputs.first().map_or(0, |o| o.report.scenario.seed),
        outputs.last().map_or(0, |o| o.report.scenario.seed),
    );
    for i in &ci {
        let _ = writeln!(
            csv,
            "{},{},{:.6},{:.6},{:.6},{:.6}",
            i.metric,
            i.n,
            i.mean,
            i.half_width,
            i.mean - i.half_width,
            i.mean + i.half_width
        );
        if i.n > 0 {
            let _ = writeln!(
                text,
                "{:<34} {:>14.4} ± {:<10.4} (n={})",
                i.metric, i.mean, i.half_width, i.n
            );
        }
    }
    let path = dir.join("confidence.csv");
    std::fs::write(&path, csv).map_err(|e| SimError::io(&path, e))?;
    let path = dir.join("confidence.json");
    let json = serde_json::to_string_pretty(&ci)?;
    std::fs::write(&path, json + "\n").map_err(|e| SimError::io(&path, e))?;
    let path = dir.join("summary.txt");
    std::fs::write(&path, &text).map_err(|e| SimError::io(&path, e))?;

    let mut files: Vec<String> = [
        "summary.txt",
        "confidence.csv",
        "confidence.json",
        "seeds.csv",
    ]
    .map(String::from)
    .into();
    let charts = seed_charts(outputs)?;
    for c in &charts {
        c.write(dir)?;
        files.push(c.file.clone());
    }
    files.extend(outputs.iter().flat_map(|o| {
        let seed = o.report.scenario.seed;
        [
            format!("seed-{seed}/report.html"),
            format!("seed-{seed}/report.json"),
        ]
    }));
    if let Some(first) = outputs.first() {
        let html = seeds_page(
            &first.report.scenario,
            source,
            outputs.len(),
            &ci,
            &charts,
            &files,
        )?;
        write_page(dir, &html)?;
    }
    Ok(ci)
}

/// The latency histogram and the entropy CDF of every seed, a line each.
fn seed_charts(outputs: &[RunOutput]) -> Result<Vec<Chart>, SimError> {
    let name = |o: &RunOutput| format!("seed {}", o.report.scenario.seed);
    let latency: Vec<_> = outputs
        .iter()
        .map(|o| latency_line(&histogram(&o.packet_latencies_ms, LATENCY_BINS), &name(o)))
        .collect();
    let entropy: Vec<_> = outputs.iter().map(|o| entropy_cdf(o, &name(o))).collect();
    Ok(vec![
        Chart::line("latency.svg", LATENCY_LABELS, &latency)?,
        Chart::line("entropy.svg", ENTROPY_LABELS, &entropy)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_student_t_over_the_finite_samples() {
        let i = Interval::of("m", &[1.0, 2.0, 3.0, f64::NAN]);
        assert_eq!(i.n, 3);
        assert!((i.mean - 2.0).abs() < 1e-12);
        // sd = 1, t(0.975, 2) = 4.303: half-width 4.303/√3.
        assert!((i.half_width - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert!(i.contains(4.4) && !i.contains(4.5));
        assert!(Interval::of("m", &[1.0]).half_width.is_nan());
    }
}
