//! Packet-hops per second of the simulator on one core.
//!
//! Prints a table rather than timing a test: throughput depends on the
//! machine. Run with `cargo bench -p simulations`. The figure is wall time of
//! a whole single-threaded run (client cores, gateway cores and their
//! sessions, links, mixers, bookkeeping) divided by the packets handed to a
//! mixer. The last row runs real Sphinx on a smaller network, for the price
//! of the cryptography the trace codec stands in for.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use simulations::scenario::{CodecKind, Scenario};

// The bench reads the real clock to measure wall time, which the cores never do.
#[allow(clippy::disallowed_methods)]
fn measure(name: &str, scenario: &Scenario) {
    let name = format!("{name} ({:?})", scenario.codec).to_lowercase();
    let start = std::time::Instant::now();
    let out = simulations::run(scenario, None).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let hops = out.report.packet_hops;
    println!(
        "{name:<44} {hops:>11} {secs:>8.2} {:>14.0}",
        hops as f64 / secs
    );
}

fn main() {
    let mut s = Scenario {
        codec: CodecKind::Trace,
        duration_secs: 60.0,
        warmup_secs: 5.0,
        drain_secs: 2.0,
        ..Scenario::default()
    };
    s.topology.layers = 3;
    s.topology.nodes_per_layer = 10;
    s.topology.gateways = 5;
    s.traffic.clients = 1000;
    s.traffic.lambda_p = 2.0;
    s.traffic.lambda_l = 1.0;
    s.traffic.lambda_m = 1.0;
    s.traffic.message_rate = 0.5;
    println!(
        "{:<44} {:>11} {:>8} {:>14}",
        "scenario (codec)", "packet-hops", "secs", "hops/sec"
    );
    s.adversary.target_messages = 0;
    measure("1000 clients, 3x10, no targets", &s);
    s.topology.replay_false_positive_rate = 1e-3;
    measure("  same, replay filter fp 1e-3", &s);
    s.topology.replay_false_positive_rate = 1e-6;
    s.adversary.target_messages = 1000;
    measure("  same, 1000 targets tracked", &s);
    s.adversary.target_messages = 0;
    s.link.loss = 0.1;
    measure("  same, no targets, link loss 0.1", &s);
    s.link.loss = 0.0;
    s.codec = CodecKind::Sphinx;
    s.traffic.clients = 100;
    s.duration_secs = 20.0;
    measure("100 clients, 3x10, 20 s, no targets", &s);
}
