//! Writing a run's results: JSON, CSV, SVG, the text summary and the
//! report page.
//!
//! Every file is a function of the [`RunOutput`] alone (no timestamps, no
//! host names, no hash-map order), so two runs of the same scenario and seed
//! write byte-identical directories.

use std::fmt::Write as _;
use std::path::Path;

use crate::confidence::Interval;
use crate::error::SimError;
use crate::metrics::{METRICS, metrics_of};
use crate::page::{SourceFile, run_page, write_page};
use crate::plot::{Chart, Labels, Series};
use crate::report::RunOutput;

/// Bins of the latency histogram.
pub(crate) const LATENCY_BINS: usize = 60;

fn write(dir: &Path, name: &str, text: &str) -> Result<(), SimError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| SimError::io(&path, e))
}

/// `(bin start, bin end, count)` of `sorted` over [0, its 99.9th percentile].
pub fn histogram(sorted: &[f64], bins: usize) -> Vec<(f64, f64, u64)> {
    let Some(top) = sorted
        .get((sorted.len() as f64 * 0.999) as usize)
        .or(sorted.last())
        .copied()
    else {
        return Vec::new();
    };
    let width = (top / bins as f64).max(1e-9);
    let mut counts = vec![0u64; bins];
    // The slowest 0.1 % would stretch the axis for a few points: not binned.
    for v in sorted.iter().filter(|v| **v <= top) {
        let i = ((v / width) as usize).min(bins - 1);
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as f64 * width, (i + 1) as f64 * width, c))
        .collect()
}

/// Writes `report.json`, `summary.txt`, the CSV tables, the SVG plots and
/// `report.html` (titled after `source`) into `dir`.
pub fn write_run(out: &RunOutput, source: &SourceFile, dir: &Path) -> Result<(), SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
    let mut files = vec![
        "report.json".to_string(),
        "summary.txt".to_string(),
        "latency_histogram.csv".to_string(),
        "nodes.csv".to_string(),
        "bandwidth.csv".to_string(),
        "targets.csv".to_string(),
    ];
    let report = &out.report;
    let json = serde_json::to_string_pretty(report)?;
    write(dir, "report.json", &(json + "\n"))?;
    write(dir, "summary.txt", &report.summary())?;

    let hist = histogram(&out.packet_latencies_ms, LATENCY_BINS);
    let mut csv = String::from("bin_start_ms,bin_end_ms,packets\n");
    for (a, b, c) in &hist {
        let _ = writeln!(csv, "{a:.3},{b:.3},{c}");
    }
    write(dir, "latency_histogram.csv", &csv)?;

    let mut csv = String::from(
        "node,layer,corrupt,queue_mean,queue_max,sojourn_mean_ms,received,forwarded,delivered,cover_sent,loops_returned,client_packets,stored,pushed,acks_sent,dropped\n",
    );
    for n in &report.nodes {
        let dropped: u64 = n.dropped.values().sum();
        let _ = writeln!(
            csv,
            "{},{},{},{:.4},{},{:.4},{},{},{},{},{},{},{},{},{},{}",
            n.name,
            n.layer,
            n.corrupt,
            n.queue_mean,
            n.queue_max,
            n.sojourn_mean_ms,
            n.received,
            n.forwarded,
            n.delivered,
            n.cover_sent,
            n.loops_returned,
            n.client_packets,
            n.stored,
            n.pushed,
            n.acks_sent,
            dropped
        );
    }
    write(dir, "nodes.csv", &csv)?;

    let b = &report.bandwidth;
    let mut csv = String::from("kind,packets,bytes\n");
    for (kind, t) in [
        ("real", &b.real),
        ("retransmission", &b.retransmission),
        ("reply", &b.reply),
        ("ack", &b.ack),
        ("loop_cover", &b.loop_cover),
        ("drop_cover", &b.drop_cover),
        ("mix_cover", &b.mix_cover),
        ("gateway_cover", &b.gateway_cover),
        ("mailbox", &b.mailbox),
    ] {
        let _ = writeln!(csv, "{kind},{},{}", t.packets, t.bytes);
    }
    write(dir, "bandwidth.csv", &csv)?;

    let mut csv = String::from(
        "target,entropy_bits,anonymity_set,min_entropy_bits,true_sender,guessed,\
         timing_entropy_bits,timing_min_entropy_bits,timing_true_sender,timing_guessed\n",
    );
    for (i, [pool, timing]) in out.target_posteriors.iter().enumerate() {
        let _ = writeln!(
            csv,
            "{i},{:.6},{:.4},{:.6},{:.6},{:.4},{:.6},{:.6},{:.6},{:.4}",
            pool.entropy_bits,
            pool.entropy_bits.exp2(),
            pool.min_entropy_bits,
            pool.true_sender,
            pool.guessed,
            timing.entropy_bits,
            timing.min_entropy_bits,
            timing.true_sender,
            timing.guessed,
        );
    }
    write(dir, "targets.csv", &csv)?;
    if let Some(n) = &report.n_minus_one {
        let mut csv = String::from(
            "attempt,start_secs,wait_for_target_ms,candidates,true_output,guessed,noticed,notice_after_secs\n",
        );
        for (i, a) in n.attempts.iter().enumerate() {
            let _ = writeln!(
                csv,
                "{i},{:.6},{:.3},{},{:.6},{:.4},{},{:.4}",
                a.start_secs,
                a.wait_for_target_ms,
                a.candidates,
                a.true_output,
                a.guessed,
                a.noticed,
                a.notice_after_secs
            );
        }
        write(dir, "n_minus_one.csv", &csv)?;
        files.push("n_minus_one.csv".into());
    }
    if let Some(x) = &report.intersection {
        let mut csv = String::from("round,named\n");
        for (i, named) in x.named.iter().enumerate() {
            let _ = writeln!(csv, "{},{}", i + 1, named);
        }
        write(dir, "intersection.csv", &csv)?;
        files.push("intersection.csv".into());
    }

    let charts = plots(out, &hist)?;
    for c in &charts {
        c.write(dir)?;
        files.push(c.file.clone());
    }
    let figures: Vec<Interval> = METRICS
        .iter()
        .zip(metrics_of(report))
        .map(|(m, v)| Interval::of(m, &[v]))
        .collect();
    let html = run_page(
        &report.scenario,
        source,
        &figures,
        &report.summary(),
        &charts,
        &files,
    )?;
    write_page(dir, &html)
}

/// The latency histogram as a line: (bin middle, packets).
pub(crate) fn latency_line(hist: &[(f64, f64, u64)], name: &str) -> Series {
    Series {
        name: name.into(),
        points: hist
            .iter()
            .map(|(a, b, c)| ((a + b) / 2.0, *c as f64))
            .collect(),
        ci95: Vec::new(),
    }
}

/// The CDF of the targets' sender entropy: (bits, fraction of targets).
pub(crate) fn entropy_cdf(out: &RunOutput, name: &str) -> Series {
    let mut sorted = out.target_entropies_bits.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len().max(1) as f64;
    Series {
        name: name.into(),
        points: sorted
            .iter()
            .enumerate()
            .map(|(i, h)| (*h, (i + 1) as f64 / n))
            .collect(),
        ci95: Vec::new(),
    }
}

/// Title and axes of the latency chart.
pub(crate) const LATENCY_LABELS: Labels<'static> = Labels {
    title: "End-to-end packet latency",
    x: "latency (ms)",
    y: "packets",
};

/// Title and axes of the entropy chart.
pub(crate) const ENTROPY_LABELS: Labels<'static> = Labels {
    title: "Sender entropy of target packets (CDF)",
    x: "entropy (bits)",
    y: "fraction of targets",
};

/// The latency, queue and entropy charts of one run.
fn plots(out: &RunOutput, hist: &[(f64, f64, u64)]) -> Result<Vec<Chart>, SimError> {
    let report = &out.report;
    let latency = Chart::line(
        "latency.svg",
        LATENCY_LABELS,
        &[latency_line(hist, "real packets")],
    )?;
    let mixes: Vec<_> = report
        .nodes
        .iter()
        .filter(|n| n.layer > 0)
        .enumerate()
        .collect();
    let queues = [
        Series {
            name: "mean held".into(),
            points: mixes
                .iter()
                .map(|(i, n)| (*i as f64, n.queue_mean))
                .collect(),
            ci95: Vec::new(),
        },
        Series {
            name: "max held".into(),
            points: mixes
                .iter()
                .map(|(i, n)| (*i as f64, n.queue_max as f64))
                .collect(),
            ci95: Vec::new(),
        },
    ];
    let queues = Chart::line(
        "queues.svg",
        Labels {
            title: "Packets held per mix node (L1.0, L1.1, ..., L2.0, ...)",
            x: "mix node (layer-major order)",
            y: "packets",
        },
        &queues,
    )?;
    let entropy = Chart::line(
        "entropy.svg",
        ENTROPY_LABELS,
        &[entropy_cdf(out, "targets")],
    )?;
    Ok(vec![latency, queues, entropy])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_sample() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        let h = histogram(&v, 10);
        assert_eq!(h.len(), 10);
        assert_eq!(h.iter().map(|x| x.2).sum::<u64>(), 1000);
        let mut tail: Vec<f64> = vec![1.0; 2000];
        tail.push(1e6);
        let h = histogram(&tail, 10);
        assert_eq!(h.iter().map(|x| x.2).sum::<u64>(), 2000);
        assert!(h.last().unwrap().1 <= 1.0 + 1e-9);
        assert!(histogram(&[], 10).is_empty());
    }
}
