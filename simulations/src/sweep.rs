//! Parameter sweeps: one scenario, a grid of values, every core.
//!
//! A sweep file names a base scenario and, for any scenario fields (dotted
//! paths such as `traffic.mean_delay_ms`), the values to try. Every point of
//! the grid is an independent run, so points go to worker threads; results
//! are put back in grid order, so the table and plots do not depend on which
//! thread finished first. Every point keeps the base seed (common random
//! numbers), so differences between points come from the parameters, not
//! from luck.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;
use serde::Deserialize;

use crate::engine::run;
use crate::error::SimError;
use crate::plot::{Labels, Series, write_line_chart};
use crate::report::Report;
use crate::scenario::Scenario;

/// A sweep file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Scenario file the grid modifies, relative to the sweep file; without it, `scenario`.
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// Inline base scenario (used when `base` is absent; defaults otherwise).
    #[serde(default)]
    pub scenario: Option<Scenario>,
    /// Dotted scenario field → values to try. The grid is their product.
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Field on the plots' x axis (default: the first grid key in sorted order).
    #[serde(default)]
    pub x: Option<String>,
    /// Worker threads (default 0: one per core).
    #[serde(default)]
    pub threads: usize,
}

/// The metrics of one sweep point, in table order.
pub const METRICS: [&str; 10] = [
    "packet_latency_mean_ms",
    "packet_latency_p99_ms",
    "message_latency_mean_ms",
    "delivery_ratio",
    "cover_per_real",
    "overhead_per_real",
    "entropy_mean_bits",
    "anonymity_set",
    "largest_mix_queue_mean",
    "packet_hops",
];

fn metrics_of(r: &Report) -> [f64; 10] {
    let queue = r
        .nodes
        .iter()
        .filter(|n| n.layer > 0)
        .map(|n| n.queue_mean)
        .fold(0.0, f64::max);
    [
        r.packet_latency_ms.mean,
        r.packet_latency_ms.p99,
        r.message_latency_ms.mean,
        r.delivery.message_ratio,
        r.bandwidth.cover_per_real,
        r.bandwidth.overhead_per_real,
        r.anonymity.entropy_bits.mean,
        r.anonymity.effective_anonymity_set,
        queue,
        r.packet_hops as f64,
    ]
}

/// One point of the grid and what it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    /// Parameter values, in grid-key order.
    pub params: Vec<(String, f64)>,
    /// Values of [`METRICS`].
    pub metrics: [f64; 10],
}

/// A loaded sweep: base scenario and grid.
#[derive(Clone, Debug)]
pub struct Sweep {
    base: Scenario,
    grid: Vec<(String, Vec<toml::Value>)>,
    x: String,
    threads: usize,
}

fn set_path(
    value: &mut serde_json::Value,
    path: &str,
    to: serde_json::Value,
) -> Result<(), SimError> {
    let mut at = value;
    for part in path.split('.') {
        at = at
            .get_mut(part)
            .ok_or_else(|| SimError::invalid("grid", format!("no scenario field `{path}`")))?;
    }
    *at = to;
    Ok(())
}

fn as_number(v: &toml::Value) -> f64 {
    match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

impl Sweep {
    /// Reads a sweep file.
    pub fn from_file(path: &Path) -> Result<Sweep, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
        let spec: SweepSpec = toml::from_str(&text).map_err(|e| SimError::Parse {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = match &spec.base {
            Some(file) => Scenario::from_file(&path.parent().unwrap_or(Path::new(".")).join(file))?,
            None => spec.scenario.clone().unwrap_or_default(),
        };
        Sweep::new(base, spec)
    }

    /// A sweep over `spec.grid` starting from `base`.
    pub fn new(base: Scenario, spec: SweepSpec) -> Result<Sweep, SimError> {
        let grid: Vec<_> = spec.grid.into_iter().collect();
        if grid.is_empty() || grid.iter().any(|(_, v)| v.is_empty()) {
            return Err(SimError::invalid(
                "grid",
                "needs at least one field with values",
            ));
        }
        let x = spec
            .x
            .or_else(|| grid.first().map(|(k, _)| k.clone()))
            .unwrap_or_default();
        if !grid.iter().any(|(k, _)| *k == x) {
            return Err(SimError::invalid("x", format!("`{x}` is not a grid field")));
        }
        let sweep = Sweep {
            base,
            grid,
            x,
            threads: spec.threads,
        };
        // Check every point now, before any thread starts.
        for i in 0..sweep.len() {
            sweep.point(i)?;
        }
        Ok(sweep)
    }

    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.grid.iter().map(|(_, v)| v.len()).product()
    }

    /// Whether the grid is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scenario and parameter values of point `i` (last key varies fastest).
    pub fn point(&self, i: usize) -> Result<(Scenario, Vec<(String, f64)>), SimError> {
        let mut value = serde_json::to_value(&self.base)
            .map_err(|e| SimError::invalid("grid", e.to_string()))?;
        let mut rest = i;
        let mut params = Vec::with_capacity(self.grid.len());
        for (key, values) in self.grid.iter().rev() {
            let v = values
                .get(rest % values.len())
                .cloned()
                .unwrap_or(toml::Value::Integer(0));
            rest /= values.len();
            let json =
                serde_json::to_value(&v).map_err(|e| SimError::invalid("grid", e.to_string()))?;
            set_path(&mut value, key, json)?;
            params.push((key.clone(), as_number(&v)));
        }
        params.reverse();
        let scenario: Scenario = serde_json::from_value(value)
            .map_err(|e| SimError::invalid("grid", format!("point {i}: {e}")))?;
        scenario.validate()?;
        Ok((scenario, params))
    }

    /// Runs every point on worker threads.
    pub fn run(&self, progress: Option<&ProgressBar>) -> Result<Vec<SweepRow>, SimError> {
        let n = self.len();
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            t => t,
        }
        .min(n)
        .max(1);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<SweepRow, SimError>>>> =
            Mutex::new((0..n).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let row = self.point(i).and_then(|(scenario, params)| {
                            run(&scenario, None).map(|out| SweepRow {
                                params,
                                metrics: metrics_of(&out.report),
                            })
                        });
                        if let Ok(mut r) = results.lock()
                            && let Some(slot) = r.get_mut(i)
                        {
                            *slot = Some(row);
                        }
                        if let Some(pb) = progress {
                            pb.inc(1);
                        }
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SimError::invalid("grid", "a point did not run"))))
            .collect()
    }

    /// Writes `sweep.csv` and one `sweep_<metric>.svg` per metric into `dir`.
    pub fn write(&self, rows: &[SweepRow], dir: &Path) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
        let mut csv = String::new();
        let keys: Vec<&str> = self.grid.iter().map(|(k, _)| k.as_str()).collect();
        let _ = writeln!(csv, "{},{}", keys.join(","), METRICS.join(","));
        for row in rows {
            let params: Vec<String> = row.params.iter().map(|(_, v)| format!("{v}")).collect();
            let metrics: Vec<String> = row.metrics.iter().map(|v| format!("{v:.6}")).collect();
            let _ = writeln!(csv, "{},{}", params.join(","), metrics.join(","));
        }
        let path = dir.join("sweep.csv");
        std::fs::write(&path, csv).map_err(|e| SimError::io(&path, e))?;
        let x_at = keys.iter().position(|k| *k == self.x).unwrap_or(0);
        for (m, metric) in METRICS.iter().enumerate() {
            // One line per combination of the other parameters.
            let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for row in rows {
                let label: Vec<String> = row
                    .params
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != x_at)
                    .map(|(_, (k, v))| format!("{k}={v}"))
                    .collect();
                let x = row.params.get(x_at).map_or(0.0, |p| p.1);
                let y = row.metrics.get(m).copied().unwrap_or(f64::NAN);
                lines.entry(label.join(", ")).or_default().push((x, y));
            }
            let series: Vec<Series> = lines
                .into_iter()
                .map(|(name, points)| Series { name, points })
                .collect();
            write_line_chart(
                &dir.join(format!("sweep_{metric}.svg")),
                Labels {
                    title: metric,
                    x: &self.x,
                    y: metric,
                },
                &series,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(grid: &str) -> SweepSpec {
        toml::from_str(&format!("[grid]\n{grid}")).unwrap()
    }

    #[test]
    fn points_enumerate_the_product_last_key_fastest() {
        let sweep = Sweep::new(
            Scenario::default(),
            spec("\"traffic.lambda_p\" = [1.0, 2.0]\n\"seed\" = [5, 6, 7]"),
        )
        .unwrap();
        assert_eq!(sweep.len(), 6);
        let (s, params) = sweep.point(4).unwrap();
        // Keys sort: "seed" before "traffic.lambda_p"; the last varies fastest.
        assert_eq!(
            params,
            vec![
                ("seed".to_string(), 7.0),
                ("traffic.lambda_p".to_string(), 1.0)
            ]
        );
        assert_eq!((s.seed, s.traffic.lambda_p), (7, 1.0));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_before_running() {
        let err =
            Sweep::new(Scenario::default(), spec("\"traffic.lambda_q\" = [1.0]")).unwrap_err();
        assert!(err.to_string().contains("traffic.lambda_q"), "{err}");
        assert!(Sweep::new(Scenario::default(), spec("\"topology.layers\" = [9]")).is_err());
        assert!(Sweep::new(Scenario::default(), spec("\"seed\" = []")).is_err());
    }
}
