//! The figures of a run as one row of numbers: what sweeps tabulate and
//! plot, and what `--seeds` puts confidence intervals on.
//!
//! A figure a run does not have (an attack it did not run, a naming that
//! never happened) is NaN, and is left out of means and intervals.

use crate::report::Report;

/// Number of metrics in a row.
pub const COUNT: usize = 23;

/// Names of the metrics, in row order. A metric `m` with a companion
/// `m_closed_form` is plotted with it on one chart.
pub const METRICS: [&str; COUNT] = [
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
    "min_entropy_mean_bits",
    "true_sender_probability",
    "timing_entropy_mean_bits",
    "timing_min_entropy_mean_bits",
    "timing_true_sender_probability",
    "n1_guess_success",
    "n1_guess_success_closed_form",
    "n1_true_output_probability",
    "n1_noticed",
    "n1_notice_after_secs",
    "n1_notice_after_secs_closed_form",
    "intersection_rounds",
    "intersection_rounds_estimate",
];

/// The metrics of one run, in [`METRICS`] order.
pub fn metrics_of(r: &Report) -> [f64; COUNT] {
    let queue = r
        .nodes
        .iter()
        .filter(|n| n.layer > 0)
        .map(|n| n.queue_mean)
        .fold(0.0, f64::max);
    let a = &r.anonymity;
    let measured = a.targets_measured > 0;
    let anon = |v: f64| if measured { v } else { f64::NAN };
    let n1 = r.n_minus_one.as_ref();
    let n1f = |f: fn(&crate::report::NMinusOneReport) -> f64| n1.map_or(f64::NAN, f);
    let x = r.intersection.as_ref();
    [
        r.packet_latency_ms.mean,
        r.packet_latency_ms.p99,
        r.message_latency_ms.mean,
        r.delivery.message_ratio,
        r.bandwidth.cover_per_real,
        r.bandwidth.overhead_per_real,
        a.entropy_bits.mean,
        a.effective_anonymity_set,
        queue,
        r.packet_hops as f64,
        anon(a.min_entropy_bits.mean),
        anon(a.true_sender_probability),
        anon(a.timing.entropy_bits.mean),
        anon(a.timing.min_entropy_bits.mean),
        anon(a.timing.true_sender_probability),
        n1f(|n| n.guess_success),
        n1f(|n| n.predicted_guess_success),
        n1f(|n| n.true_output_probability),
        n1f(|n| n.noticed),
        n1f(|n| n.notice_after_secs),
        n1f(|n| n.predicted_notice_after_secs),
        x.and_then(|i| i.rounds_to_name)
            .map_or(f64::NAN, |r| r as f64),
        x.map_or(f64::NAN, |i| i.predicted_rounds),
    ]
}

/// The index of `name` in [`METRICS`].
pub fn index_of(name: &str) -> Option<usize> {
    METRICS.iter().position(|m| *m == name)
}
