//! Data residency on a local network of real processes: mixes and gateways
//! labelled "eu" and "us", two clients made with `init --region eu
//! --regions eu` exchange 200 messages, and every node labelled "us" sees
//! none of their packets (the nodes' own cover is off, so the "us" nodes'
//! counters would show any). Needs the node binaries built beside the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Real processes run on the real clock: deadlines for their start-up.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use client::{AddressCard, ClientError, ClientOptions};
use localnet::probe::metric;
use localnet::{LocalNet, NetworkSpec};

mod on_localnet;

const MESSAGES: usize = 200;

/// `mixnet-client init` with `extra` flags, again while no gateway of the
/// region is listed yet (the gateways register one after the other).
fn init(net: &LocalNet, dir: &Path, extra: &[&str]) -> Result<(AddressCard, String), String> {
    on_localnet::init_with(net, dir, extra, |stderr| {
        stderr.contains("no gateway for clients in region")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_kept_in_eu_never_touch_a_node_in_us() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 2,
        gateways: 2,
        mean_delay_ms: 10,
        lambda_p: 50.0,
        lambda_l: 2.0,
        // No node cover: every packet a node counts is a client's.
        lambda_m: 0.0,
        refresh_ms: 300,
        mix_regions: vec!["eu".into(), "us".into()],
        gateway_regions: vec!["eu".into(), "us".into()],
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let eu = ["--region", "eu", "--regions", "eu"];
    let (alice_card, said) = init(&net, &root.path().join("alice"), &eu).unwrap();
    assert!(said.contains("region eu"), "{said}");
    assert!(said.contains("routes kept inside: eu"), "{said}");
    let (bob_card, _) = init(&net, &root.path().join("bob"), &eu).unwrap();
    // A client in "us" (never connected: its own cover would cross "us").
    let (carol_card, _) = init(&net, &root.path().join("carol"), &["--region", "us"]).unwrap();
    // A region without a gateway, and a mailbox outside the allowed regions.
    let err = on_localnet::init_with(&net, &root.path().join("x"), &["--region", "mars"], |_| {
        false
    })
    .unwrap_err();
    assert!(
        err.contains("region \"mars\" (regions with one: eu, us)"),
        "{err}"
    );
    let err = init(
        &net,
        &root.path().join("y"),
        &["--region", "us", "--regions", "eu"],
    )
    .unwrap_err();
    assert!(err.contains("outside the allowed regions eu"), "{err}");

    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_millis(1500);
    let alice = on_localnet::connect(&root.path().join("alice"), options.clone()).await;
    let bob = on_localnet::connect(&root.path().join("bob"), options).await;
    alice.add_contact(&bob_card).await.unwrap();
    alice.add_contact(&carol_card).await.unwrap();

    // Carol's mailbox is in "us": refused before anything is queued.
    let refused = alice.send(&carol_card.address, b"hi".to_vec()).await;
    match refused {
        Err(ClientError::OutsideRegions(why)) => {
            assert!(why.contains("region \"us\""), "{why}")
        }
        other => panic!("expected a residency refusal, got {other:?}"),
    }

    for i in 0..MESSAGES {
        let text = format!("message {i}").into_bytes();
        alice.send(&bob_card.address, text).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, bob.recv())
            .await
            .expect("200 messages in time")
            .unwrap();
        assert_eq!(m.from, Some(alice_card.address));
        seen.insert(m.bytes);
    }

    // Per node: "us" nodes received no packet at all, "eu" nodes many.
    let topology = directory::DirectoryClient::new(&net.directory_url, net.directory_key, None)
        .unwrap()
        .topology()
        .await
        .unwrap();
    let region_of = |id| {
        topology
            .entry(id)
            .and_then(|e| e.region.clone())
            .unwrap_or_default()
    };
    let (mut eu_total, mut us_nodes) = (0.0, 0);
    for node in net.mixnodes.iter().chain(&net.gateways) {
        let prefix = if net.gateways.iter().any(|g| g.id == node.id) {
            "gateway_packets_received_total"
        } else {
            "mixnode_packets_received_total"
        };
        let received = metric(&node.metrics_url, prefix).await;
        match region_of(&node.id).as_str() {
            "us" => {
                us_nodes += 1;
                assert_eq!(received, 0.0, "node {} in us received packets", node.id);
            }
            "eu" => eu_total += received,
            other => panic!("node {} has region {other:?}", node.id),
        }
    }
    assert_eq!(us_nodes, 4, "three us mixes and one us gateway");
    assert!(
        eu_total >= (4 * MESSAGES) as f64,
        "eu nodes carried {eu_total}"
    );
    eprintln!("eu nodes received {eu_total} packets; the 4 us nodes none");
}
