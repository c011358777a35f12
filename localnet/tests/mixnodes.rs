//! A directory and six mix nodes (3 layers × 2) as separate processes on
//! loopback, driven by a stand-in gateway that injects at layer 1 and sinks
//! what layer 3 delivers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    // The order test reads the real clock: the nodes run on it.
    clippy::disallowed_methods
)]

mod common;

use std::time::Duration;

use common::{TestGateway, layers, metric, wait_until_nodes_see, warm_up_links, within};
use localnet::{LocalNet, NetworkSpec};
use protocol::packet::RouteHop;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn spec() -> NetworkSpec {
    NetworkSpec {
        epoch_secs: 600,
        lambda_m: 0.0,
        ..NetworkSpec::default()
    }
}

/// Splits `total` into three per-hop delays at random.
fn split(total: Duration, rng: &mut ChaCha20Rng) -> Vec<Duration> {
    let a = rng.random_range(0.0..1.0f64);
    let b = rng.random_range(0.0..1.0f64);
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    [lo, hi - lo, 1.0 - hi]
        .iter()
        .map(|f| total.mul_f64(*f))
        .collect()
}

/// The sum of the three hop delays of the order test's packet `i`.
fn total(i: u8) -> Duration {
    Duration::from_millis(200 + 150 * u64::from(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_packet_arrives_in_the_order_of_its_scheduled_instant_and_never_before_it() {
    let net = LocalNet::start(spec()).unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 1).await;
    let topology = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    let layers = layers(&topology);
    assert!(layers.iter().all(|l| l.len() == 2), "3 layers × 2");
    warm_up_links(&mut gw, &topology).await;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    // 30 packets whose total delays are 150 ms apart, sent in a shuffled order
    // at the same time: they must come out in the order of their instants.
    let n = 30u8;
    let mut packets = Vec::new();
    for i in 0..n {
        let route: Vec<RouteHop> = layers
            .iter()
            .map(|l| l[rng.random_range(0..l.len())])
            .collect();
        let delays = split(total(i), &mut rng);
        packets.push((route[0].id, gw.packet(&route, &delays, i)));
    }
    packets.shuffle(&mut rng);
    let start = std::time::Instant::now();
    for (first, p) in packets {
        gw.send(&topology, first, p);
    }
    let mut got = Vec::new();
    for _ in 0..n {
        let tag = within("a delivery", 20, gw.receive_tag()).await;
        // Each of the three mixes may release a packet half a timer tick
        // before its instant, never earlier.
        let early = (start + total(tag)).saturating_duration_since(std::time::Instant::now());
        assert!(
            early <= Duration::from_micros(1500),
            "packet {tag} arrived {early:?} before the sum of its delays"
        );
        got.push(tag);
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let forwarded: f64 = {
        let mut sum = 0.0;
        for m in &net.mixnodes {
            sum += metric(&m.metrics_url, "mixnode_packets_forwarded_total").await;
        }
        sum
    };
    assert_eq!(
        forwarded,
        f64::from(n + 8) * 3.0,
        "each packet forwarded at each of 3 layers"
    );
    // Every node timed its first unwrap and one in sixteen after it, by
    // its CPU clock: some time, but not whole seconds.
    for m in &net.mixnodes {
        let received = metric(&m.metrics_url, "mixnode_packets_received_total").await;
        let timed = metric(&m.metrics_url, "mixnode_unwraps_timed_total").await;
        let cpu = metric(&m.metrics_url, "mixnode_unwrap_cpu_seconds_total").await;
        assert!(
            received >= 1.0 && timed >= (received / 16.0).floor() && timed <= received,
            "{timed} unwraps timed of {received}"
        );
        assert!(
            cpu > 0.0 && cpu < timed * 0.5,
            "{cpu} s for {timed} unwraps"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_layer_two_node_is_routed_around_and_heals_after_restart() {
    let mut net = LocalNet::start(spec()).unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 2).await;
    let topology = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    let l = layers(&topology);
    let (dead, alive) = (l[1][0], l[1][1]);
    let dead_index = net.mixnodes.iter().position(|m| m.id == dead.id).unwrap();
    let l1_metrics: Vec<String> = net
        .mixnodes
        .iter()
        .filter(|m| topology.layers[0].iter().any(|e| e.id == m.id))
        .map(|m| m.metrics_url.clone())
        .collect();
    net.kill_mixnode(dead_index);

    // Through the live layer-2 node every packet arrives.
    let d = [Duration::from_millis(5); 3];
    for i in 0..10u8 {
        let p = gw.packet(&[l[0][0], alive, l[2][0]], &d, i);
        gw.send(&topology, l[0][0].id, p);
    }
    let mut got: Vec<u8> = Vec::new();
    for _ in 0..10 {
        got.push(within("delivery around the dead node", 20, gw.receive_tag()).await);
    }
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());

    // Through the dead one nothing arrives, and layer 1 shows the dead link.
    for i in 100..110u8 {
        let p = gw.packet(&[l[0][0], dead, l[2][0]], &d, i);
        gw.send(&topology, l[0][0].id, p);
    }
    within("the dead link shows in metrics", 20, async {
        loop {
            let mut failed = 0.0;
            for url in &l1_metrics {
                failed += metric(url, "mixnode_link_packets_dropped_total").await;
                failed += metric(url, "mixnode_packets_dropped_total{reason=\"link_down\"}").await;
            }
            // Packets for the dead node wait in its link queue or are dropped;
            // either way the connection attempts fail.
            let mut dials_failing = 0.0;
            for url in &l1_metrics {
                dials_failing += metric(url, "mixnode_links_open").await;
            }
            if failed > 0.0 || dials_failing < 4.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    // Restarted with its keys and address, it heals without operator action.
    net.restart_mixnode(dead_index).unwrap();
    let mut healed = false;
    for round in 0..20u8 {
        let p = gw.packet(&[l[0][0], dead, l[2][0]], &d, 200 + round);
        gw.send(&topology, l[0][0].id, p);
        if let Ok(tag) = tokio::time::timeout(Duration::from_millis(1500), gw.receive_tag()).await {
            assert!(tag >= 100, "a packet routed through the restarted node");
            healed = true;
            break;
        }
    }
    assert!(healed, "packets flow through the restarted node again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_forwarding_on_the_cached_topology_when_the_directory_stops() {
    let mut net = LocalNet::start(spec()).unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 3).await;
    let topology = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    let l = layers(&topology);
    net.stop_directory();
    tokio::time::sleep(Duration::from_millis(1500)).await; // past a refresh period
    let d = [Duration::from_millis(5); 3];
    for i in 0..8u8 {
        let route = [
            l[0][usize::from(i) % 2],
            l[1][usize::from(i / 2) % 2],
            l[2][usize::from(i / 4) % 2],
        ];
        let p = gw.packet(&route, &d, i);
        gw.send(&topology, route[0].id, p);
    }
    let mut got: Vec<u8> = Vec::new();
    for _ in 0..8 {
        got.push(within("delivery without the directory", 20, gw.receive_tag()).await);
    }
    got.sort_unstable();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    for m in &mut net.mixnodes {
        assert!(m.process.is_running(), "{} still running", m.process.name());
    }
    // SIGTERM: each node shuts down gracefully and exits with success.
    for m in &mut net.mixnodes {
        assert!(
            m.process.stop(Duration::from_secs(5)),
            "{} exits cleanly on SIGTERM",
            m.process.name()
        );
    }
}
