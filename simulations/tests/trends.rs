//! Sender entropy moves the right way: up with mean delay and with traffic,
//! down as mix nodes are corrupted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::scenario::Scenario;

/// A 3 × 3 network with 40 clients; 200 target packets.
fn base() -> Scenario {
    let mut s = Scenario {
        seed: 21,
        duration_secs: 40.0,
        warmup_secs: 5.0,
        drain_secs: 5.0,
        ..Scenario::default()
    };
    s.traffic.clients = 40;
    s.traffic.message_rate = 0.5;
    s.traffic.lambda_p = 2.0;
    s.traffic.lambda_l = 0.5;
    s.traffic.lambda_m = 0.5;
    s.traffic.mean_delay_ms = 50.0;
    s.adversary.target_messages = 200;
    s
}

fn entropy(s: &Scenario) -> f64 {
    let out = simulations::run(s, None).unwrap();
    assert!(out.report.anonymity.targets_measured >= 195);
    out.report.anonymity.entropy_bits.mean
}

#[test]
fn entropy_grows_with_mean_delay() {
    let hs: Vec<f64> = [10.0, 40.0, 160.0]
        .iter()
        .map(|d| {
            let mut s = base();
            s.traffic.mean_delay_ms = *d;
            entropy(&s)
        })
        .collect();
    eprintln!("entropies {hs:?}");
    assert!(hs[0] + 0.3 < hs[1] && hs[1] + 0.3 < hs[2], "{hs:?}");
}

#[test]
fn entropy_grows_with_traffic_rate() {
    let hs: Vec<f64> = [0.5, 2.0, 8.0]
        .iter()
        .map(|rate| {
            let mut s = base();
            s.traffic.lambda_p = *rate;
            s.traffic.message_rate = 0.2;
            s.traffic.mean_delay_ms = 20.0;
            entropy(&s)
        })
        .collect();
    eprintln!("entropies {hs:?}");
    assert!(hs[0] + 0.3 < hs[1] && hs[1] + 0.3 < hs[2], "{hs:?}");
}

#[test]
fn entropy_falls_as_mix_nodes_are_corrupted() {
    let hs: Vec<f64> = [0, 3, 6, 9]
        .iter()
        .map(|n| {
            let mut s = base();
            s.adversary.corrupt_mixes = *n;
            entropy(&s)
        })
        .collect();
    eprintln!("entropies {hs:?}");
    assert!(hs[0] > hs[1] + 0.1 && hs[1] > hs[2] + 0.1, "{hs:?}");
    // Every mix corrupt: the observer follows each packet from its sender.
    assert_eq!(hs[3], 0.0, "{hs:?}");
    // The same, with the nodes named instead of drawn.
    let mut s = base();
    s.adversary.corrupt_nodes = (1..=3)
        .flat_map(|l| (0..3).map(move |n| format!("L{l}.{n}")))
        .collect();
    assert_eq!(entropy(&s), 0.0);
    // One named corrupt layer still leaves two honest ones.
    s.adversary.corrupt_nodes.truncate(3);
    let one_layer = entropy(&s);
    assert!(one_layer > 0.5 && one_layer < hs[0], "{one_layer}");
}
