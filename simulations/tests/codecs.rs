//! Sphinx and trace packets through the same client cores, gateway cores and
//! mixers give the same figures: the trace codec stands in for Sphinx only
//! because of this.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::scenario::{CodecKind, LatencySpec, Scenario};

fn small(codec: CodecKind) -> Scenario {
    let mut s = Scenario {
        seed: 3,
        codec,
        duration_secs: 14.0,
        warmup_secs: 3.0,
        drain_secs: 5.0,
        ..Scenario::default()
    };
    s.topology.nodes_per_layer = 2;
    s.traffic.clients = 12;
    s.traffic.message_rate = 1.0;
    s.traffic.lambda_p = 2.0;
    s.traffic.lambda_l = 0.3;
    s.traffic.mean_delay_ms = 40.0;
    s.adversary.target_messages = 50;
    s
}

#[test]
fn without_mix_cover_both_codecs_give_identical_latencies() {
    // The codecs draw their secrets from a stream of their own, so with no
    // mix cover (whose Sphinx clock shares its stream with packet secrets)
    // every route, delay and latency is the same draw in both runs.
    let mut trace = small(CodecKind::Trace);
    trace.traffic.lambda_m = 0.0;
    let mut sphinx = trace.clone();
    sphinx.codec = CodecKind::Sphinx;
    let t = simulations::run(&trace, None).unwrap();
    let s = simulations::run(&sphinx, None).unwrap();
    assert!(t.packet_latencies_ms.len() > 110);
    assert_eq!(t.packet_latencies_ms, s.packet_latencies_ms);
    assert_eq!(t.report.delivery, s.report.delivery);
    assert_eq!(t.target_entropies_bits, s.target_entropies_bits);
    assert_eq!(t.report.packet_hops, s.report.packet_hops);
    assert_eq!(t.report.bandwidth, s.report.bandwidth);
}

#[test]
fn with_loss_and_replies_both_codecs_retransmit_and_answer_the_same_packets() {
    // Acks, retransmissions on fresh routes, duplicates and SURB replies:
    // the same draws and the same decisions in both codecs, packet for packet.
    let mut trace = small(CodecKind::Trace);
    trace.traffic.lambda_m = 0.0;
    trace.link.loss = 0.05;
    trace.drain_secs = 15.0;
    // Two SURBs (one spare for a retransmission) and 500 bytes: one fragment.
    trace.traffic.message_rate = 0.5;
    trace.traffic.message_size = 500;
    trace.traffic.reply_surbs = 2;
    trace.traffic.reply_probability = 0.5;
    let mut sphinx = trace.clone();
    sphinx.codec = CodecKind::Sphinx;
    let t = simulations::run(&trace, None).unwrap();
    let s = simulations::run(&sphinx, None).unwrap();
    let d = &t.report.delivery;
    eprintln!("{}", t.report.summary());
    assert!(d.retransmissions > 10 && d.replies_delivered > 10, "{d:?}");
    assert!(d.message_ratio > 0.95, "{d:?}");
    assert_eq!(t.report.delivery, s.report.delivery);
    assert_eq!(t.packet_latencies_ms, s.packet_latencies_ms);
    assert_eq!(t.report.message_latency_ms, s.report.message_latency_ms);
    assert_eq!(t.report.reply_latency_ms, s.report.reply_latency_ms);
    assert_eq!(t.report.bandwidth, s.report.bandwidth);
    assert_eq!(t.report.drops, s.report.drops);
    assert_eq!(t.target_entropies_bits, s.target_entropies_bits);
}

#[test]
fn with_mix_cover_figures_agree_within_noise() {
    let mut trace = small(CodecKind::Trace);
    trace.traffic.lambda_m = 1.0;
    trace.link.latency = LatencySpec::Uniform {
        min_ms: 5.0,
        max_ms: 15.0,
    };
    let mut sphinx = trace.clone();
    sphinx.codec = CodecKind::Sphinx;
    let t = simulations::run(&trace, None).unwrap().report;
    let s = simulations::run(&sphinx, None).unwrap().report;
    // Mix cover timing differs between the codecs (see docs/simulations.md),
    // so latencies are two samples of one distribution: mean within 5 %.
    let (lt, ls) = (t.packet_latency_ms.mean, s.packet_latency_ms.mean);
    eprintln!(
        "trace {lt} ms, sphinx {ls} ms over {} packets",
        t.packet_latency_ms.count
    );
    assert!((lt - ls).abs() / lt < 0.05, "trace {lt} ms, sphinx {ls} ms");
    assert_eq!(t.delivery.message_ratio, 1.0);
    assert_eq!(s.delivery.message_ratio, 1.0);
    assert_eq!(t.delivery.messages_measured, s.delivery.messages_measured);
    // Both mixers returned their own loops and dropped nothing.
    assert!(s.nodes.iter().map(|n| n.loops_returned).sum::<u64>() > 40);
    assert!(
        s.drops.is_empty() && t.drops.is_empty(),
        "{:?} {:?}",
        s.drops,
        t.drops
    );
}
