//! Lossy links: the real client core's SURB-acks and retransmissions get
//! every message through, and the report says what that cost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::scenario::Scenario;

/// 12 clients for 30 virtual seconds, every hop losing `loss` of its packets.
fn lossy(loss: f64) -> Scenario {
    let mut s = Scenario {
        seed: 17,
        duration_secs: 30.0,
        warmup_secs: 2.0,
        // Thirteen copies of a fragment, each ~2.5 s apart at worst.
        drain_secs: 60.0,
        ..Scenario::default()
    };
    s.topology.nodes_per_layer = 2;
    s.traffic.clients = 12;
    s.traffic.message_rate = 0.5;
    s.traffic.lambda_p = 2.0;
    s.traffic.lambda_l = 1.0;
    s.traffic.lambda_m = 1.0;
    s.link.loss = loss;
    s.adversary.target_messages = 0;
    // With loss 0.1 a copy reaches the recipient's gateway with chance
    // 0.9^5 = 0.59 (client → gateway → L1 → L2 → L3 → gateway) and its ack
    // comes back with chance 0.9^4 more (gateway → L1 → L2 → L3 → gateway;
    // the mailbox push is a reliable stream). Thirteen copies (12
    // retransmissions) leave a fragment undelivered with chance
    // 0.41^13 ≈ 1e-5, so ~170 messages all arrive but for a chance of ~0.2 %.
    s.client.max_retransmissions = 12;
    s
}

#[test]
fn with_ten_percent_loss_on_every_hop_retransmission_delivers_every_message() {
    let out = simulations::run(&lossy(0.1), None).unwrap();
    let r = &out.report;
    let d = &r.delivery;
    let b = &r.bandwidth;
    eprintln!("{}", r.summary());
    assert!(d.messages_measured > 120, "{}", d.messages_measured);
    assert_eq!(d.messages_delivered, d.messages_measured, "{d:?}");
    assert_eq!(d.message_ratio, 1.0);
    // The loss is real: a tenth of all crossings, about.
    let lost = r.drops.get("link_loss").copied().unwrap_or(0);
    assert!(lost > 1000, "{:?}", r.drops);
    // A copy arrives with chance 0.59 and is acked with chance 0.59 × 0.66 =
    // 0.387, so a fragment takes 1 / 0.387 = 2.6 copies on average.
    let copies = d.packets_sent as f64 / d.messages_measured as f64;
    assert!((2.1..3.1).contains(&copies), "{copies} copies per fragment");
    assert!(
        (d.packet_ratio - 0.59).abs() < 0.07,
        "{} of copies arrived",
        d.packet_ratio
    );
    assert!(d.retransmissions as f64 > 1.1 * d.messages_measured as f64);
    // Lost acks make the recipient get a fragment twice: its core drops the copy.
    assert!(d.duplicates_removed > 0);
    // Nearly every sender saw its acks (0.613^13 ≈ 0.2 % do not).
    assert!(d.messages_acknowledged + d.messages_failed >= d.messages_measured - 2);
    assert!(d.messages_failed <= 2, "{d:?}");
    // Acks and retransmissions are in the bandwidth, and cost more than the
    // first copies themselves.
    assert!(b.retransmission.packets > b.real.packets, "{b:?}");
    assert!(b.ack.packets > b.real.packets / 2, "{b:?}");
    assert!(b.overhead_per_real > 1.0, "{b:?}");
    let overhead = (b.ack.bytes + b.retransmission.bytes) as f64 / b.real.bytes as f64;
    assert!((b.overhead_per_real - overhead).abs() < 1e-12);

    // And in every output file.
    let dir = std::env::temp_dir().join(format!("mixsim-loss-{}", std::process::id()));
    simulations::write_run(&out, &simulations::SourceFile::named("lossy"), &dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    for kind in ["ack", "retransmission"] {
        assert_eq!(
            json["bandwidth"][kind]["bytes"].as_u64().unwrap(),
            if kind == "ack" {
                b.ack.bytes
            } else {
                b.retransmission.bytes
            }
        );
    }
    assert!(json["bandwidth"]["overhead_per_real"].as_f64().unwrap() > 1.0);
    let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap();
    assert!(summary.contains("retransmission") && summary.contains("ack"));
    let csv = std::fs::read_to_string(dir.join("bandwidth.csv")).unwrap();
    assert!(csv.contains(&format!("ack,{},{}", b.ack.packets, b.ack.bytes)));
    assert!(csv.contains(&format!(
        "retransmission,{},{}",
        b.retransmission.packets, b.retransmission.bytes
    )));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_loss_nothing_is_sent_twice() {
    let out = simulations::run(&lossy(0.0), None).unwrap();
    let r = &out.report;
    let d = &r.delivery;
    assert_eq!(d.message_ratio, 1.0);
    assert_eq!(d.messages_acknowledged, d.messages_measured);
    assert_eq!((d.retransmissions, d.duplicates_removed), (0, 0));
    assert_eq!(r.bandwidth.retransmission.packets, 0);
    assert_eq!(d.packets_sent, d.messages_measured);
    // One ack per stored fragment, four links each (three layers + 1).
    assert!(r.bandwidth.ack.packets >= 4 * d.messages_measured);
    assert!(r.drops.is_empty(), "{:?}", r.drops);
}
