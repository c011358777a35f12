//! The passive observers against their closed forms, over several seeds:
//! the pool observer (Shannon and min-entropy, the true sender's
//! probability) and the timing observer, in one exponential mix; and the
//! bounds every target must satisfy in a whole network.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::closed_form::{
    single_mix_entropy_bits, single_mix_true_sender_probability, timing_single_mix_entropy_bits,
    timing_single_mix_true_sender_probability,
};
use simulations::confidence::intervals;
use simulations::metrics::{index_of, metrics_of};
use simulations::scenario::{LatencySpec, Scenario};

/// One mix fed by 5 000 rare senders at λ = 100/s, d = 50 ms: ρ = 5. Short
/// runs, many seeds. The closed forms assume every packet in a mix has a
/// sender of its own; the timing observer weighs some 20 recent inputs, and
/// with 1 000 senders two of them share one about a fifth of the time, which
/// lowers its entropy by some 0.03 bits: 5 000 senders make that negligible.
fn single_mix() -> Scenario {
    let clients = 5000;
    let mut s = Scenario {
        seed: 1,
        duration_secs: 40.0,
        warmup_secs: 5.0,
        drain_secs: 1.0,
        ..Scenario::default()
    };
    s.topology.layers = 1;
    s.topology.nodes_per_layer = 1;
    s.topology.gateways = 1;
    s.traffic.clients = clients;
    s.traffic.lambda_p = 100.0 / clients as f64;
    s.traffic.lambda_l = 0.0;
    s.traffic.lambda_m = 0.0;
    s.traffic.gateway_cover = false;
    s.traffic.message_rate = s.traffic.lambda_p / 2.0;
    s.traffic.mean_delay_ms = 50.0;
    s.link.latency = LatencySpec::Constant { ms: 1.0 };
    s.adversary.target_messages = 400;
    s
}

#[test]
fn ten_seeds_give_intervals_that_contain_the_single_mix_closed_forms() {
    let runs = simulations::run_seeds(&single_mix(), 10, 0, None).unwrap();
    let rows: Vec<_> = runs.iter().map(|r| metrics_of(&r.report)).collect();
    let ci = intervals(&rows);
    let rho = 5.0;
    for (metric, closed) in [
        ("entropy_mean_bits", single_mix_entropy_bits(rho)),
        // The pool observer's posterior is uniform: min-entropy = Shannon.
        ("min_entropy_mean_bits", single_mix_entropy_bits(rho)),
        (
            "true_sender_probability",
            single_mix_true_sender_probability(rho),
        ),
        (
            "timing_entropy_mean_bits",
            timing_single_mix_entropy_bits(rho),
        ),
        (
            "timing_true_sender_probability",
            timing_single_mix_true_sender_probability(rho),
        ),
    ] {
        let i = &ci[index_of(metric).unwrap()];
        eprintln!(
            "{metric}: {:.4} ± {:.4} (closed form {closed:.4})",
            i.mean, i.half_width
        );
        assert_eq!(i.n, 10);
        assert!(i.half_width > 0.0 && i.half_width < 0.1 * closed, "{i:?}");
        assert!(i.contains(closed), "{metric}: {i:?} vs {closed}");
    }
    // Mean sojourn is d in every seed (Little's law is in closed_forms.rs).
    for r in &runs {
        let sojourn = r.report.nodes[0].sojourn_mean_ms;
        assert!((sojourn - 50.0).abs() < 3.0, "{sojourn}");
    }
}

#[test]
fn every_target_obeys_the_bounds_of_both_observers() {
    let mut s = Scenario {
        seed: 3,
        duration_secs: 30.0,
        warmup_secs: 5.0,
        drain_secs: 3.0,
        ..Scenario::default()
    };
    s.traffic.clients = 30;
    s.adversary.target_messages = 300;
    let out = simulations::run(&s, None).unwrap();
    assert!(out.target_posteriors.len() > 250);
    let log_n = (s.traffic.clients as f64).log2();
    for [pool, timing] in &out.target_posteriors {
        for p in [pool, timing] {
            assert!(p.min_entropy_bits <= p.entropy_bits + 1e-9, "{p:?}");
            assert!(p.entropy_bits <= log_n + 1e-9, "{p:?}");
            // The min-entropy bounds the true sender's share from above.
            assert!(
                p.true_sender <= (-p.min_entropy_bits).exp2() + 1e-9,
                "{p:?}"
            );
            assert!(p.true_sender > 0.0, "the truth is never ruled out: {p:?}");
        }
    }
    // Knowing only times, the timing observer is less sure on average.
    let a = &out.report.anonymity;
    assert!(
        a.timing.entropy_bits.mean > a.entropy_bits.mean,
        "{} vs {}",
        a.timing.entropy_bits.mean,
        a.entropy_bits.mean
    );
    // Every mix corrupt: both observers follow every packet.
    s.adversary.corrupt_mixes = 9;
    let out = simulations::run(&s, None).unwrap();
    let a = &out.report.anonymity;
    assert_eq!(a.timing.entropy_bits.max, 0.0);
    assert_eq!(a.true_sender_probability, 1.0);
    assert_eq!(a.timing.guess_success, 1.0);
}
