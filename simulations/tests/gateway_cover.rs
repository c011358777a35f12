//! Gateways send loop cover at λ_M, as real gateways do, and it comes home.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::scenario::{CodecKind, Scenario};

/// 3 layers × 2 mixes, 3 gateways, 6 quiet clients; gateways loop at `lambda_m`.
fn small(codec: CodecKind, duration_secs: f64, lambda_m: f64) -> Scenario {
    let mut s = Scenario {
        seed: 11,
        codec,
        duration_secs,
        warmup_secs: 1.0,
        drain_secs: 5.0,
        ..Scenario::default()
    };
    s.topology.nodes_per_layer = 2;
    s.topology.gateways = 3;
    s.traffic.clients = 6;
    s.traffic.message_rate = 0.2;
    s.traffic.lambda_p = 1.0;
    s.traffic.lambda_l = 0.5;
    s.traffic.lambda_m = lambda_m;
    s.adversary.target_messages = 20;
    s
}

/// Checks every gateway's loop cover against λ_M and the bandwidth figures.
fn check_gateway_cover(s: &Scenario) {
    let out = simulations::run(s, None).unwrap();
    let r = &out.report;
    assert!(r.drops.is_empty(), "{:?}", r.drops);
    // Cover runs over the whole virtual time, traffic plus drain.
    let expected = s.traffic.lambda_m * (s.duration_secs + s.drain_secs);
    // A gateway's cover count is Poisson(λ_M T): standard deviation
    // √(λ_M T). Four of them: a run of a random seed fails with chance
    // about 6e-5 per gateway.
    let tolerance = 4.0 * expected.sqrt();
    let gateways: Vec<_> = r.nodes.iter().filter(|n| n.layer == 0).collect();
    assert_eq!(gateways.len(), s.topology.gateways);
    let mut sent_total = 0;
    let mut returned_total = 0;
    for g in &gateways {
        let sent = g.cover_sent as f64;
        eprintln!(
            "{}: sent {} returned {} (λ_M T = {expected})",
            g.name, g.cover_sent, g.loops_returned
        );
        assert!(
            (sent - expected).abs() < tolerance,
            "{} sent {sent}, expected {expected} ± {tolerance}",
            g.name
        );
        // A gateway's mixer counts a loop as returned only when the final hop
        // names the gateway itself; anything else addressed to a gateway
        // would be delivered or dropped. Only the loops still in flight when
        // the run ends (a loop lasts ~3 × 50 ms + 4 links) may be missing.
        assert!(g.loops_returned <= g.cover_sent, "{}", g.name);
        assert!(g.cover_sent - g.loops_returned <= 5, "{}", g.name);
        sent_total += g.cover_sent;
        returned_total += g.loops_returned;
    }
    // Mix nodes keep their own cover at the same rate.
    let mixes: Vec<_> = r.nodes.iter().filter(|n| n.layer > 0).collect();
    let mix_sent: u64 = mixes.iter().map(|n| n.cover_sent).sum();
    let mix_expected = expected * mixes.len() as f64;
    assert!(
        (mix_sent as f64 - mix_expected).abs() < 4.0 * mix_expected.sqrt(),
        "{mix_sent} vs {mix_expected}"
    );
    // Bandwidth: a gateway loop crosses layers + 1 links (gateway → L1, …, Ln → gateway).
    let b = &r.bandwidth;
    let links = (s.topology.layers + 1) as u64;
    assert!(
        b.gateway_cover.packets >= links * returned_total
            && b.gateway_cover.packets <= links * sent_total,
        "{} crossings for {sent_total} sent, {returned_total} returned",
        b.gateway_cover.packets
    );
    let cover = b.loop_cover.bytes + b.drop_cover.bytes + b.mix_cover.bytes + b.gateway_cover.bytes;
    assert!((b.cover_per_real - cover as f64 / b.real.bytes as f64).abs() < 1e-12);
    assert!(b.gateway_cover.bytes > 0 && b.mix_cover.bytes > 0);
    assert_eq!(r.delivery.message_ratio, 1.0);
}

#[test]
fn trace_gateways_send_loop_cover_at_lambda_m_and_it_returns_home() {
    // λ_M T = 4 × 125 = 500 per gateway, ± 89.
    check_gateway_cover(&small(CodecKind::Trace, 120.0, 4.0));
}

#[test]
fn sphinx_gateways_send_loop_cover_at_lambda_m_and_it_returns_home() {
    // Through `Mixer::poll_cover` itself: λ_M T = 4 × 25 = 100 per gateway, ± 40.
    check_gateway_cover(&small(CodecKind::Sphinx, 20.0, 4.0));
}

#[test]
fn gateway_cover_can_be_turned_off() {
    let mut s = small(CodecKind::Trace, 30.0, 2.0);
    s.traffic.gateway_cover = false;
    let r = simulations::run(&s, None).unwrap().report;
    for g in r.nodes.iter().filter(|n| n.layer == 0) {
        assert_eq!((g.cover_sent, g.loops_returned), (0, 0), "{}", g.name);
    }
    assert_eq!(r.bandwidth.gateway_cover.packets, 0);
    assert!(
        r.nodes
            .iter()
            .filter(|n| n.layer > 0)
            .all(|n| n.cover_sent > 0)
    );
}
