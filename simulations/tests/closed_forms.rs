//! The simulator against closed forms: one exponential mix, and a whole route.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::anonymity::single_mix_entropy_bits;
use simulations::scenario::{LatencySpec, Scenario};

/// One mix (one layer of one node) fed by 1 000 clients, no cover other than
/// λ_P's drop cover: Poisson arrivals at λ = clients × λ_P from the clients,
/// plus the gateway's SURB-acks of the real messages (which cross the mix on
/// their way back, and which the observer knows are not clients' packets).
fn single_mix(lambda: f64, mean_delay_ms: f64) -> Scenario {
    let clients = 1000;
    let mut s = Scenario {
        seed: 5,
        duration_secs: 400.0,
        warmup_secs: 20.0,
        drain_secs: 2.0,
        ..Scenario::default()
    };
    s.topology.layers = 1;
    s.topology.nodes_per_layer = 1;
    s.topology.gateways = 1;
    s.traffic.clients = clients;
    s.traffic.lambda_p = lambda / clients as f64;
    s.traffic.lambda_l = 0.0;
    s.traffic.lambda_m = 0.0;
    // The closed form counts only the clients' packets in the mix: no
    // gateway loop cover either (λ_M = 0 already silences it; said outright
    // so that the check stays valid if λ_M changes).
    s.traffic.gateway_cover = false;
    s.traffic.message_rate = s.traffic.lambda_p / 2.0;
    s.traffic.mean_delay_ms = mean_delay_ms;
    s.link.latency = LatencySpec::Constant { ms: 1.0 };
    s.adversary.target_messages = 1500;
    s
}

#[test]
fn one_exponential_mix_matches_mean_sojourn_and_pool_entropy() {
    let (lambda, d_ms) = (100.0, 50.0);
    let out = simulations::run(&single_mix(lambda, d_ms), None).unwrap();
    let mix = &out.report.nodes[0];
    assert_eq!(mix.name, "L1.0");
    assert!(mix.forwarded > 35_000, "{}", mix.forwarded);
    let sojourn_err = (mix.sojourn_mean_ms - d_ms).abs() / d_ms;
    assert!(
        sojourn_err < 0.02,
        "sojourn {} vs {d_ms}",
        mix.sojourn_mean_ms
    );
    // Little's law: mean held = λ d, λ counting every packet the mix took
    // (the clients' and the SURB-acks).
    let arrivals = mix.received as f64 / out.report.virtual_secs;
    assert!(
        arrivals > lambda * 1.3,
        "{arrivals}/s: acks cross the mix too"
    );
    let held = arrivals * d_ms / 1000.0;
    assert!(
        (mix.queue_mean - held).abs() / held < 0.05,
        "held {} vs {held}",
        mix.queue_mean
    );

    // A target's entropy counts only the clients' packets in the pool: the
    // observer knows a SURB-ack leaving the gateway is the gateway's, so the
    // acks change nothing (a Poisson stream thinned to the clients' packets
    // is still Poisson, at λ = clients × λ_P): ρ = λ d.
    let rho = lambda * d_ms / 1000.0;
    let a = &out.report.anonymity;
    assert_eq!(a.targets_measured, 1500);
    let analytic = single_mix_entropy_bits(rho);
    let measured = a.entropy_bits.mean;
    eprintln!(
        "sojourn {} held {} entropy {measured} analytic {analytic}",
        mix.sojourn_mean_ms, mix.queue_mean
    );
    assert!(
        (measured - analytic).abs() / analytic < 0.05,
        "entropy {measured} vs analytic {analytic}"
    );
}

#[test]
fn end_to_end_latency_is_sum_of_hop_delays_and_link_latencies() {
    for latency in [
        LatencySpec::Uniform {
            min_ms: 5.0,
            max_ms: 15.0,
        },
        LatencySpec::Exponential { mean_ms: 10.0 },
    ] {
        let mut s = Scenario {
            seed: 9,
            duration_secs: 100.0,
            warmup_secs: 5.0,
            // Client queues are M/M/1 at load 1/3: 10 s leaves ~e^-20 behind.
            drain_secs: 10.0,
            ..Scenario::default()
        };
        s.traffic.clients = 100;
        s.traffic.message_rate = 1.0;
        s.traffic.lambda_p = 3.0;
        s.traffic.mean_delay_ms = 50.0;
        s.link.latency = latency;
        s.adversary.target_messages = 0;
        let out = simulations::run(&s, None).unwrap();
        // client→gateway, gateway→L1, L1→L2, L2→L3, L3→exit: five links; three mix delays.
        let expected = 3.0 * 50.0 + 5.0 * latency.mean_ms();
        let l = &out.report.packet_latency_ms;
        eprintln!("{latency:?}: mean {} ms vs {expected}", l.mean);
        assert!(l.count > 8_000, "{}", l.count);
        assert!(
            (l.mean - expected).abs() / expected < 0.02,
            "{latency:?}: mean {} vs {expected}",
            l.mean
        );
        assert_eq!(
            out.report.delivery.message_ratio, 1.0,
            "{:?}",
            out.report.drops
        );
    }
}
