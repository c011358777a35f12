//! The figures of a run as one row of numbers: what sweeps tabulate and
//! plot, and what `--seeds` puts confidence intervals on.
//!
//! A figure a run does not have (an attack it did not run, a naming that
//! never happened) is NaN, and is left out of means and intervals.

use crate::closed_form::{single_mix_entropy_bits, timing_single_mix_entropy_bits};
use crate::report::Report;

/// Number of metrics in a row.
pub const COUNT: usize = 27;

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
    "entropy_mean_bits_closed_form",
    "anonymity_set",
    "largest_mix_queue_mean",
    "packet_hops",
    "min_entropy_mean_bits",
    "true_sender_probability",
    "timing_entropy_mean_bits",
    "timing_entropy_mean_bits_closed_form",
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
    "unconstrained_entropy_mean_bits",
    "unconstrained_timing_entropy_mean_bits",
];

/// What each of [`METRICS`] measures and under which adversary model, in
/// row order: the report page's words for a metric (the summary's and
/// docs/simulations.md's).
pub const DESCRIPTIONS: [(&str, &str); COUNT] = [
    ("packet latency, mean (ms)", "none (network figure)"),
    (
        "packet latency, 99th percentile (ms)",
        "none (network figure)",
    ),
    ("message latency, mean (ms)", "none (network figure)"),
    ("messages delivered / measured", "none (network figure)"),
    ("cover bytes per real byte", "none (network figure)"),
    (
        "ack and retransmission bytes per real byte",
        "none (network figure)",
    ),
    (
        "sender entropy H, mean over targets (bits)",
        "pool observer",
    ),
    (
        "sender entropy H, closed form (bits)",
        "pool observer, one exponential mix",
    ),
    ("effective anonymity set 2^H", "pool observer"),
    (
        "packets held by the busiest mix, time mean",
        "none (network figure)",
    ),
    (
        "packets handed to a mixer (one per hop)",
        "none (network figure)",
    ),
    ("sender min-entropy H_min, mean (bits)", "pool observer"),
    (
        "P(true sender): sender–receiver linkability",
        "pool observer",
    ),
    (
        "sender entropy H, mean over targets (bits)",
        "timing observer",
    ),
    (
        "sender entropy H, closed form (bits)",
        "timing observer, one exponential mix",
    ),
    ("sender min-entropy H_min, mean (bits)", "timing observer"),
    (
        "P(true sender): sender–receiver linkability",
        "timing observer",
    ),
    ("share of targets whose output was named", "(n−1) attacker"),
    ("the same, closed form 1/(1 + λ_M·d)", "(n−1) attacker"),
    (
        "posterior on the target's true output, mean",
        "(n−1) attacker",
    ),
    (
        "share of attempts the mix noticed",
        "(n−1) attacker against the mix's loop alarm",
    ),
    (
        "time until the mix's alarm (s)",
        "(n−1) attacker against the mix's loop alarm",
    ),
    (
        "the same, closed form (s)",
        "(n−1) attacker against the mix's loop alarm",
    ),
    (
        "rounds until the correspondents are named",
        "intersection attacker",
    ),
    ("the same, reasoned estimate", "intersection attacker"),
    (
        "sender entropy H of unconstrained clients (bits)",
        "pool observer",
    ),
    (
        "sender entropy H of unconstrained clients (bits)",
        "timing observer",
    ),
];

/// The metrics of one run, in [`METRICS`] order. Under a region constraint
/// the anonymity metrics are the constrained clients' targets', and the
/// `unconstrained_` ones the other clients'.
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
    let unconstrained = r
        .regions
        .as_ref()
        .and_then(|g| g.unconstrained.as_ref())
        .filter(|u| u.targets_measured > 0);
    let rho = single_mix_load(r);
    let closed = |f: fn(f64) -> f64| match rho {
        Some(rho) if measured => f(rho),
        _ => f64::NAN,
    };
    [
        r.packet_latency_ms.mean,
        r.packet_latency_ms.p99,
        r.message_latency_ms.mean,
        r.delivery.message_ratio,
        r.bandwidth.cover_per_real,
        r.bandwidth.overhead_per_real,
        a.entropy_bits.mean,
        closed(single_mix_entropy_bits),
        a.effective_anonymity_set,
        queue,
        r.packet_hops as f64,
        anon(a.min_entropy_bits.mean),
        anon(a.true_sender_probability),
        anon(a.timing.entropy_bits.mean),
        closed(timing_single_mix_entropy_bits),
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
        unconstrained.map_or(f64::NAN, |u| u.entropy_bits.mean),
        unconstrained.map_or(f64::NAN, |u| u.timing.entropy_bits.mean),
    ]
}

/// ρ = λ·d, the clients' packets a mix holds on average, when the run is the
/// one exponential mix the closed forms describe: one mix, clients' packets
/// only (no loop cover of clients, mixes or gateways; the gateway's
/// SURB-acks are not clients' packets and leave a target's posterior alone).
fn single_mix_load(r: &Report) -> Option<f64> {
    let s = &r.scenario;
    let t = &s.traffic;
    let one_mix = s.topology.layers == 1 && s.topology.nodes_per_layer == 1;
    let no_cover = t.lambda_l <= 0.0 && t.lambda_m <= 0.0;
    (one_mix && no_cover).then(|| t.clients as f64 * t.lambda_p * t.mean_delay_ms / 1000.0)
}

/// The index of `name` in [`METRICS`].
pub fn index_of(name: &str) -> Option<usize> {
    METRICS.iter().position(|m| *m == name)
}
