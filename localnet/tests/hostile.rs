//! Hostile and faulty input against real mix node processes: every bad packet
//! is dropped and counted under its reason, the node never panics, its memory
//! stays bounded, and other links keep flowing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    TestGateway, layers, metric, promtool_check, wait_until_nodes_see, warm_up_links, within,
};
use localnet::{LocalNet, NetworkSpec};
use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, NodeId};
use protocol::packet::{PACKET_SIZE, RouteHop, build_packet_with_version};
use protocol::sphinx::HeaderVersion;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sphinx_packet::route::DestinationAddressBytes;
use topology::Topology;
use transport::{LinkConfig, NodeIdentity, PeerId, PeerSet};

fn spec() -> NetworkSpec {
    NetworkSpec {
        lambda_m: 0.0,
        input_queue: 64,
        ..NetworkSpec::default()
    }
}

/// A raw QUIC connection to `to` with the gateway's pinned identity, for
/// writing bytes that the transport API would never send.
async fn raw_connection(gw: &TestGateway, topology: &Topology, to: NodeId) -> quinn::Connection {
    let identity = NodeIdentity::new(gw.identity.signing_key()).unwrap();
    let crypto = transport::tls::client_crypto(
        &identity,
        PeerId(to.0),
        PeerSet::new([PeerId(to.0)]),
        Arc::new(transport::LinkStats::default()),
    )
    .unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = topology.entry(&to).unwrap().address;
    within(
        "raw handshake",
        10,
        client
            .connect_with(quinn::ClientConfig::new(crypto), addr, "mixnet-node")
            .unwrap(),
    )
    .await
    .unwrap()
}

async fn write_stream(connection: &quinn::Connection, bytes: &[u8]) {
    let mut s = connection.open_uni().await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.finish().unwrap();
    let _ = within("stream consumed", 10, s.stopped()).await;
}

async fn wait_metric(url: &str, needle: &str, at_least: f64) -> f64 {
    within(&format!("{needle} reaches {at_least}"), 20, async {
        loop {
            let v = metric(url, needle).await;
            if v >= at_least {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dropped_and_counted_under_its_reason() {
    let mut net = LocalNet::start(spec()).unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 11).await;
    let topology = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    warm_up_links(&mut gw, &topology).await;
    let l = layers(&topology);
    let target = l[0][0];
    let node = net.mixnodes.iter().position(|m| m.id == target.id).unwrap();
    let url = net.mixnodes[node].metrics_url.clone();
    let d = [Duration::from_millis(1); 3];
    let route = [target, l[1][0], l[2][0]];
    let raw = raw_connection(&gw, &topology, target.id).await;

    // Wrong size and truncated: the link layer drops the partial packet.
    write_stream(&raw, &vec![0u8; 1000]).await;
    write_stream(&raw, &vec![0u8; PACKET_SIZE - 1]).await;
    wait_metric(
        &url,
        "mixnode_link_packets_dropped_total{reason=\"truncated\"}",
        2.0,
    )
    .await;
    // Longer than a packet: the first 2413 bytes are one (garbage) packet, the rest is truncated.
    // That packet's alpha is zero, a point of small order: malformed before any MAC.
    write_stream(&raw, &vec![0u8; PACKET_SIZE + 500]).await;
    wait_metric(
        &url,
        "mixnode_link_packets_dropped_total{reason=\"truncated\"}",
        3.0,
    )
    .await;
    wait_metric(
        &url,
        "mixnode_packets_dropped_total{reason=\"malformed\"}",
        1.0,
    )
    .await;

    // A flipped header bit.
    let mut flipped = gw.packet(&route, &d, 1);
    flipped[40] ^= 0x10;
    gw.send(&topology, target.id, flipped);
    wait_metric(
        &url,
        "mixnode_packets_dropped_total{reason=\"unknown_key\"}",
        1.0,
    )
    .await;

    // An unknown Sphinx version.
    let mut full: Vec<RouteHop> = route.to_vec();
    full.push(gw.hop());
    let frame = Frame::Ack.encode().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let client = DestinationAddressBytes::from_bytes([7; 32]);
    let v999 = build_packet_with_version(
        &mut rng,
        &full,
        &[Duration::ZERO; 4],
        client,
        [0; 16],
        &frame,
        HeaderVersion(999),
    )
    .unwrap();
    gw.send(&topology, target.id, v999.bytes);
    wait_metric(
        &url,
        "mixnode_packets_dropped_total{reason=\"unknown_version\"}",
        1.0,
    )
    .await;

    // A delay of u64::MAX nanoseconds.
    let huge = gw.packet(
        &route,
        &[
            Duration::from_nanos(u64::MAX),
            Duration::ZERO,
            Duration::ZERO,
        ],
        2,
    );
    gw.send(&topology, target.id, huge);
    wait_metric(
        &url,
        "mixnode_packets_dropped_total{reason=\"delay_too_long\"}",
        1.0,
    )
    .await;

    // The same packet twice: forwarded once, the second counted as a replay.
    let twice = gw.packet(&route, &d, 3);
    gw.send(&topology, target.id, twice.clone());
    gw.send(&topology, target.id, twice);
    assert_eq!(within("the first copy", 20, gw.receive_tag()).await, 3);
    wait_metric(&url, "mixnode_replays_total", 1.0).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), gw.receive_tag())
            .await
            .is_err()
    );

    // A burst far beyond the input bound: dropped as queue_full, memory bounded,
    // and another layer-1 node keeps forwarding meanwhile.
    let pid = net.mixnodes[node].process.pid();
    let before = rss_kib(pid);
    let garbage = vec![0x5au8; PACKET_SIZE];
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(raw_connection(&gw, &topology, target.id).await);
    }
    let bursts = conns.into_iter().map(|c| {
        let g = garbage.clone();
        tokio::spawn(async move {
            let mut s = c.open_uni().await.unwrap();
            for _ in 0..2_000 {
                if s.write_all(&g).await.is_err() {
                    break;
                }
            }
            let _ = s.finish();
            let _ = s.stopped().await;
        })
    });
    let bursts: Vec<_> = bursts.collect();
    let other = [l[0][1], l[1][1], l[2][1]];
    for i in 0..10u8 {
        let p = gw.packet(&other, &d, 100 + i);
        gw.send(&topology, other[0].id, p);
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(within("other links keep flowing", 30, gw.receive_tag()).await);
    }
    got.sort_unstable();
    assert_eq!(got, (100..110).collect::<Vec<u8>>());
    for b in bursts {
        within("burst written", 60, b).await.unwrap();
    }
    let full_drops = metric(&url, "mixnode_packets_dropped_total{reason=\"queue_full\"}").await
        + metric(
            &url,
            "mixnode_link_packets_dropped_total{reason=\"incoming_full\"}",
        )
        .await;
    assert!(
        full_drops > 0.0,
        "a burst beyond the bound is dropped and counted"
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(net.mixnodes[node].process.is_running(), "the node survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_refuses_a_packet_it_processed_before() {
    let mut net = LocalNet::start(spec()).unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 12).await;
    let topology = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    let l = layers(&topology);
    let route = [l[0][0], l[1][0], l[2][0]];
    let node = net
        .mixnodes
        .iter()
        .position(|m| m.id == route[0].id)
        .unwrap();
    let packet = gw.packet(&route, &[Duration::from_millis(1); 3], 9);
    gw.send(&topology, route[0].id, packet.clone());
    assert_eq!(within("first delivery", 20, gw.receive_tag()).await, 9);

    net.kill_mixnode(node);
    net.restart_mixnode(node).unwrap();
    wait_until_nodes_see(&net, 7).await;
    let url = net.mixnodes[node].metrics_url.clone();
    // The link reconnects by itself; resend until the node has seen the packet.
    for _ in 0..40 {
        gw.send(&topology, route[0].id, packet.clone());
        if metric(&url, "mixnode_replays_total").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if metric(&url, "mixnode_replays_total").await < 1.0 {
        let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let st = gw.endpoint.stats();
        eprintln!(
            "gateway link stats: sent {} attempts {} failures {} handshake failures {} out open {} dropped {}",
            st.packets_sent(),
            st.connection_attempts(),
            st.connect_failures(),
            st.handshake_failures(),
            st.outbound_links_open(),
            st.dropped_total()
        );
        panic!(
            "the replay was not refused:\n{}",
            page.lines()
                .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(metric(&url, "mixnode_packets_forwarded_total").await, 0.0);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), gw.receive_tag())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_topology_cannot_open_a_link_and_metrics_pass_promtool() {
    let net = LocalNet::start(spec()).unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 13).await;
    let topology = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    let l = layers(&topology);
    let target = l[0][0];
    let url = net
        .mixnodes
        .iter()
        .find(|m| m.id == target.id)
        .unwrap()
        .metrics_url
        .clone();

    // A stranger pins the node and tries to send it a valid packet.
    let stranger = IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(99));
    let (endpoint, _rx) = transport::Endpoint::bind(
        stranger.signing_key(),
        [PeerId(target.id.0)],
        LinkConfig::new("127.0.0.1:0".parse().unwrap(), PACKET_SIZE),
    )
    .unwrap();
    let packet = gw.packet(
        &[target, l[1][0], l[2][0]],
        &[Duration::from_millis(1); 3],
        42,
    );
    let addr = topology.entry(&target.id).unwrap().address;
    endpoint.send(PeerId(target.id.0), addr, packet).unwrap();
    wait_metric(&url, "mixnode_links_unpinned_refused_total", 1.0).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(800), gw.receive_tag())
            .await
            .is_err()
    );
    assert_eq!(metric(&url, "mixnode_packets_received_total").await, 0.0);

    // The live /metrics page passes promtool.
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_for_a_retired_key_is_refused_after_the_overlap() {
    let net = LocalNet::start(NetworkSpec {
        epoch_secs: 3,
        refresh_ms: 200,
        ..spec()
    })
    .unwrap();
    let mut gw = TestGateway::join(&net.directory_url, net.directory_key, 14).await;
    let first = gw.topology().await;
    let l = layers(&first);
    let route = [l[0][0], l[1][0], l[2][0]];
    let url = net
        .mixnodes
        .iter()
        .find(|m| m.id == route[0].id)
        .unwrap()
        .metrics_url
        .clone();
    // Built now, for the layer-1 node's key of this epoch.
    let old = gw.packet(&route, &[Duration::from_millis(1); 3], 1);
    let retired_at = first.epoch.0 + 2;
    // Follow the epochs (re-registering so that the nodes keep the gateway pinned)
    // until the layer-1 node has retired the first key.
    within("two key rotations", 30, async {
        let mut registered = first.epoch;
        loop {
            let t = gw.topology().await;
            if t.epoch > registered {
                gw.register(t.epoch).await;
                registered = t.epoch;
            }
            if metric(&url, "mixnode_epoch").await >= retired_at as f64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let now = gw.topology().await;
    wait_until_nodes_see(&net, 7).await;
    let before = metric(
        &url,
        "mixnode_packets_dropped_total{reason=\"unknown_key\"}",
    )
    .await;
    gw.send(&now, route[0].id, old);
    wait_metric(
        &url,
        "mixnode_packets_dropped_total{reason=\"unknown_key\"}",
        before + 1.0,
    )
    .await;
    assert_eq!(metric(&url, "mixnode_packets_forwarded_total").await, 0.0);
}
