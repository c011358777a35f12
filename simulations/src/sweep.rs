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

use indicatif::ProgressBar;
use serde::Deserialize;

use crate::confidence::{Interval, run_indexed};
use crate::engine::run;
use crate::error::SimError;
use crate::metrics::{COUNT, METRICS, index_of, metrics_of};
use crate::page::{SourceFile, SweepPage, SweepPoint, sweep_page, write_page};
use crate::plot::{Chart, Labels, Series};
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

/// One run of a sweep: a grid point under one of its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRun {
    /// Grid point.
    pub point: usize,
    /// Seed index (the run's seed is the base seed plus this).
    pub seed: usize,
    /// Values of [`METRICS`].
    pub metrics: [f64; COUNT],
}

/// One point of the grid and what it measured, over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    /// Parameter values, in grid-key order.
    pub params: Vec<(String, f64)>,
    /// Mean over seeds of each of [`METRICS`].
    pub metrics: [f64; COUNT],
    /// Half-width of each one's 95 % interval (NaN with one seed).
    pub ci95: [f64; COUNT],
}

/// Which runs a shard does: run `j` (point-major, seeds fastest) belongs to
/// shard `j mod count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected i/n, such as 0/4"))?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|e| format!("`{text}`: {e}"))?,
            n.trim().parse().map_err(|e| format!("`{text}`: {e}"))?,
        );
        if count == 0 || index >= count {
            return Err(format!("`{text}`: need 0 ≤ i < n"));
        }
        Ok(Shard { index, count })
    }
}

/// A loaded sweep: base scenario and grid.
#[derive(Clone, Debug)]
pub struct Sweep {
    base: Scenario,
    grid: Vec<(String, Vec<toml::Value>)>,
    x: String,
    threads: usize,
    source: SourceFile,
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
        let mut sweep = Sweep::new(base, spec)?;
        sweep.source = SourceFile::of(path);
        Ok(sweep)
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
            source: SourceFile::named("sweep"),
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

    /// Runs every point under `seeds` seeds, or only `shard`'s share of
    /// those runs, on worker threads; runs in (point, seed) order.
    pub fn run(
        &self,
        seeds: usize,
        shard: Option<Shard>,
        progress: Option<&ProgressBar>,
    ) -> Result<Vec<SweepRun>, SimError> {
        let seeds = seeds.max(1);
        let mine: Vec<usize> = (0..self.len() * seeds)
            .filter(|j| shard.is_none_or(|s| j % s.count == s.index))
            .collect();
        if let Some(pb) = progress {
            pb.set_length(mine.len() as u64);
        }
        run_indexed(mine.len(), self.threads, progress, |k| {
            let j = mine.get(k).copied().unwrap_or(0);
            let (point, seed) = (j / seeds, j % seeds);
            let (mut scenario, _) = self.point(point)?;
            scenario.seed = scenario.seed.wrapping_add(seed as u64);
            run(&scenario, None).map(|out| SweepRun {
                point,
                seed,
                metrics: metrics_of(&out.report),
            })
        })
    }

    /// Means and intervals per point, from every run of every point.
    pub fn rows(&self, runs: &[SweepRun]) -> Result<Vec<SweepRow>, SimError> {
        (0..self.len())
            .map(|point| {
                let (_, params) = self.point(point)?;
                let mine: Vec<&SweepRun> = runs.iter().filter(|r| r.point == point).collect();
                let mut metrics = [f64::NAN; COUNT];
                let mut ci95 = [f64::NAN; COUNT];
                for (m, name) in METRICS.iter().enumerate() {
                    let samples: Vec<f64> = mine
                        .iter()
                        .map(|r| r.metrics.get(m).copied().unwrap_or(f64::NAN))
                        .collect();
                    let i = Interval::of(name, &samples);
                    if let (Some(a), Some(b)) = (metrics.get_mut(m), ci95.get_mut(m)) {
                        (*a, *b) = (i.mean, i.half_width);
                    }
                }
                Ok(SweepRow {
                    params,
                    metrics,
                    ci95,
                })
            })
            .collect()
    }

    /// Writes a shard's runs to `path`, every value exactly (so that a merge
    /// reproduces an unsharded sweep to the byte).
    pub fn write_shard(
        &self,
        runs: &[SweepRun],
        seeds: usize,
        shard: Shard,
        path: &Path,
    ) -> Result<(), SimError> {
        let mut text = format!(
            "# mixsim shard {}/{} seeds {} points {}\npoint,seed,{}\n",
            shard.index,
            shard.count,
            seeds.max(1),
            self.len(),
            METRICS.join(",")
        );
        for r in runs {
            let cells: Vec<String> = r.metrics.iter().map(|v| format!("{v:?}")).collect();
            let _ = writeln!(text, "{},{},{}", r.point, r.seed, cells.join(","));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| SimError::io(parent, e))?;
        }
        std::fs::write(path, text).map_err(|e| SimError::io(path, e))
    }

    /// Reads shard files back into every run of the sweep, checking that
    /// they are shards of this sweep, that no shard is missing and that
    /// every run is there exactly once; returns the runs and the seed count.
    pub fn merge(&self, files: &[PathBuf]) -> Result<(Vec<SweepRun>, usize), SimError> {
        let bad = |file: &Path, message: String| SimError::Parse {
            file: file.display().to_string(),
            message,
        };
        let mut runs = Vec::new();
        let mut seen_shards = Vec::new();
        let mut layout: Option<(usize, usize)> = None;
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|e| SimError::io(file, e))?;
            let mut lines = text.lines();
            let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
            let (Some(shard), Some(seeds), Some(points)) = (
                head.get(3).and_then(|s| s.parse::<Shard>().ok()),
                head.get(5).and_then(|s| s.parse::<usize>().ok()),
                head.get(7).and_then(|s| s.parse::<usize>().ok()),
            ) else {
                return Err(bad(file, "not a mixsim shard file".into()));
            };
            if points != self.len() {
                return Err(bad(
                    file,
                    format!("{points} points, the sweep has {}", self.len()),
                ));
            }
            if layout.is_some_and(|l| l != (shard.count, seeds)) {
                return Err(bad(
                    file,
                    "shards of different splits or seed counts".into(),
                ));
            }
            layout = Some((shard.count, seeds));
            seen_shards.push(shard.index);
            if lines.next() != Some(&format!("point,seed,{}", METRICS.join(","))[..]) {
                return Err(bad(
                    file,
                    "columns differ from this mixsim's metrics".into(),
                ));
            }
            for line in lines {
                let cells: Vec<&str> = line.split(',').collect();
                let number = |i: usize| cells.get(i).and_then(|c| c.parse::<usize>().ok());
                let (Some(point), Some(seed)) = (number(0), number(1)) else {
                    return Err(bad(file, format!("bad row `{line}`")));
                };
                let mut metrics = [f64::NAN; COUNT];
                for (m, slot) in metrics.iter_mut().enumerate() {
                    *slot = cells
                        .get(m + 2)
                        .and_then(|c| c.parse::<f64>().ok())
                        .ok_or_else(|| bad(file, format!("bad row `{line}`")))?;
                }
                runs.push(SweepRun {
                    point,
                    seed,
                    metrics,
                });
            }
        }
        let (count, seeds) = layout.unwrap_or((0, 1));
        seen_shards.sort_unstable();
        if seen_shards != (0..count).collect::<Vec<_>>() {
            return Err(SimError::invalid(
                "merge",
                format!("need each of the {count} shards once, got {seen_shards:?}"),
            ));
        }
        runs.sort_by_key(|r| (r.point, r.seed));
        let expected: Vec<(usize, usize)> = (0..self.len() * seeds)
            .map(|j| (j / seeds, j % seeds))
            .collect();
        let got: Vec<(usize, usize)> = runs.iter().map(|r| (r.point, r.seed)).collect();
        if got != expected {
            return Err(SimError::invalid(
                "merge",
                "the shards do not hold every run exactly once",
            ));
        }
        Ok((runs, seeds))
    }

    /// Writes `sweep.csv` (means, and with several seeds each metric's 95 %
    /// half-width in a `_ci95` column), `runs.csv` (every run), one
    /// `sweep_<metric>.svg` per metric that has a value, with error bars
    /// and, where one exists, the closed form, and `report.html`.
    pub fn write(&self, runs: &[SweepRun], seeds: usize, dir: &Path) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
        let rows = self.rows(runs)?;
        let several = seeds > 1;
        let keys: Vec<&str> = self.grid.iter().map(|(k, _)| k.as_str()).collect();
        let header: Vec<String> = METRICS
            .iter()
            .flat_map(|m| {
                let mut cols = vec![m.to_string()];
                if several {
                    cols.push(format!("{m}_ci95"));
                }
                cols
            })
            .collect();
        let mut csv = String::new();
        let _ = writeln!(csv, "{},{}", keys.join(","), header.join(","));
        for row in &rows {
            let params: Vec<String> = row.params.iter().map(|(_, v)| format!("{v}")).collect();
            let cells: Vec<String> = row
                .metrics
                .iter()
                .zip(&row.ci95)
                .flat_map(|(v, h)| {
                    let mut c = vec![format!("{v:.6}")];
                    if several {
                        c.push(format!("{h:.6}"));
                    }
                    c
                })
                .collect();
            let _ = writeln!(csv, "{},{}", params.join(","), cells.join(","));
        }
        let path = dir.join("sweep.csv");
        std::fs::write(&path, csv).map_err(|e| SimError::io(&path, e))?;
        let mut files = vec!["sweep.csv".to_string()];
        if several {
            let mut csv = format!("{},seed,{}\n", keys.join(","), METRICS.join(","));
            for r in runs {
                let params: Vec<String> = rows
                    .get(r.point)
                    .map(|row| row.params.iter().map(|(_, v)| format!("{v}")).collect())
                    .unwrap_or_default();
                let cells: Vec<String> = r.metrics.iter().map(|v| format!("{v:.6}")).collect();
                let _ = writeln!(csv, "{},{},{}", params.join(","), r.seed, cells.join(","));
            }
            let path = dir.join("runs.csv");
            std::fs::write(&path, csv).map_err(|e| SimError::io(&path, e))?;
            files.push("runs.csv".into());
        }
        let x_at = keys.iter().position(|k| *k == self.x).unwrap_or(0);
        let lines_of = |m: usize, prefix: &str| -> Vec<Series> {
            // One line per combination of the other parameters.
            let mut lines: BTreeMap<String, Series> = BTreeMap::new();
            for row in &rows {
                let label: Vec<String> = row
                    .params
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != x_at)
                    .map(|(_, (k, v))| format!("{k}={v}"))
                    .collect();
                let name = format!("{prefix}{}", label.join(", "));
                let x = row.params.get(x_at).map_or(0.0, |p| p.1);
                let y = row.metrics.get(m).copied().unwrap_or(f64::NAN);
                let h = row.ci95.get(m).copied().unwrap_or(f64::NAN);
                let s = lines.entry(name.clone()).or_insert_with(|| Series {
                    name,
                    points: Vec::new(),
                    ci95: Vec::new(),
                });
                s.points.push((x, y));
                s.ci95.push(if prefix.is_empty() { h } else { f64::NAN });
            }
            lines.into_values().collect()
        };
        let mut charts = Vec::new();
        for (m, metric) in METRICS.iter().enumerate() {
            if metric.ends_with("_closed_form") || metric.ends_with("_estimate") {
                continue;
            }
            if !rows
                .iter()
                .any(|r| r.metrics.get(m).is_some_and(|v| v.is_finite()))
            {
                continue;
            }
            let mut series = lines_of(m, "");
            for companion in ["_closed_form", "_estimate"] {
                if let Some(c) = index_of(&format!("{metric}{companion}")) {
                    series.extend(lines_of(c, &format!("{} ", &companion[1..])));
                }
            }
            let chart = Chart::line(
                &format!("sweep_{metric}.svg"),
                Labels {
                    title: metric,
                    x: &self.x,
                    y: metric,
                },
                &series,
            )?;
            chart.write(dir)?;
            files.push(chart.file.clone());
            charts.push(chart);
        }
        let html = sweep_page(&SweepPage {
            source: &self.source,
            base: &self.base,
            grid: &self.grid,
            x: &self.x,
            seeds,
            points: rows
                .iter()
                .map(|r| SweepPoint {
                    params: &r.params,
                    metrics: &r.metrics,
                    ci95: &r.ci95,
                })
                .collect(),
            charts: &charts,
            files: &files,
        })?;
        write_page(dir, &html)
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
