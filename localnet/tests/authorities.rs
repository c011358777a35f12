//! Three directory authorities as separate processes, with 3 × 2 mix nodes
//! and two gateways: one consensus signed by all three, the same bytes at
//! every authority; messages flow; with one authority killed the network
//! still agrees (2 of 3) and rotates keys; with two killed no new consensus
//! is published, that shows in the survivor's metrics, and the network keeps
//! running on the last one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{TestGateway, layers, metric, wait_until_nodes_see, within};
use localnet::{LocalNet, NetworkSpec};
use protocol::Epoch;
use topology::{Authority, AuthoritySet, SignedTopology, Topology};

fn spec() -> NetworkSpec {
    NetworkSpec {
        gateways: 2,
        epoch_secs: 12,
        round_secs: 1,
        authorities: 3,
        lambda_m: 0.0,
        ..NetworkSpec::default()
    }
}

fn authority_set(net: &LocalNet) -> AuthoritySet {
    let authorities = net
        .authorities()
        .into_iter()
        .map(|(url, id)| Authority { id, url })
        .collect();
    AuthoritySet::new(authorities, None).unwrap()
}

/// What authority `url` serves for `epoch`, if anything.
async fn served(url: &str, epoch: Epoch) -> Option<SignedTopology> {
    let r = reqwest::get(format!("{url}/v1/topology/{}", epoch.0))
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    SignedTopology::from_json(&r.text().await.ok()?).ok()
}

/// Sends one packet along each of the 8 paths and waits for all of them.
async fn messages_flow(gw: &mut TestGateway, topology: &Topology, tag: u8) {
    let l = layers(topology);
    let d = [Duration::from_millis(5); 3];
    for i in 0..8usize {
        let route = [l[0][i % 2], l[1][(i / 2) % 2], l[2][(i / 4) % 2]];
        let p = gw.packet(&route, &d, tag);
        gw.send(topology, route[0].id, p);
    }
    for _ in 0..8 {
        assert_eq!(within("a delivery", 20, gw.receive_tag()).await, tag);
    }
}

/// Waits for a topology of an epoch after `after` that lists the probe, and
/// re-registers the probe for it.
async fn next_epoch(gw: &mut TestGateway, after: Epoch) -> Topology {
    let t = within("a later epoch", 30, async {
        loop {
            let t = gw.topology().await;
            if t.epoch > after {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    gw.register(t.epoch).await;
    gw.topology().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_agree_and_the_network_survives_losing_two() {
    let mut net = LocalNet::start(spec()).unwrap();
    let set = authority_set(&net);
    let mut gw = TestGateway::join_authorities(set.clone(), 1).await;
    let topology = within("the whole network listed", 30, async {
        loop {
            let t = gw.topology().await;
            if t.layers.iter().all(|l| l.len() == 2) && t.gateways.len() == 3 {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    // Every authority serves the same bytes for one epoch and revision, and
    // the documents carry all three signatures once the round is complete.
    let urls: Vec<String> = net.authorities().into_iter().map(|(u, _)| u).collect();
    within("three signatures everywhere", 30, async {
        loop {
            let mut docs = Vec::new();
            for url in &urls {
                docs.extend(served(url, topology.epoch).await);
            }
            let parsed: Vec<Topology> = docs.iter().map(|d| d.verify(&set).unwrap()).collect();
            for (i, t) in parsed.iter().enumerate() {
                for (j, u) in parsed.iter().enumerate() {
                    if t.serial == u.serial {
                        assert_eq!(docs[i].body, docs[j].body, "byte-identical");
                    }
                }
            }
            let complete = parsed.len() == 3
                && parsed.iter().all(|t| t.serial == parsed[0].serial)
                && docs.iter().all(|d| d.valid_signers(&set).len() == 3);
            if complete {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    wait_until_nodes_see(&net, 9).await;
    messages_flow(&mut gw, &topology, 1).await;

    // One authority killed: 2 of 3 still sign, keys rotate, messages flow.
    net.kill_authority(2);
    let rotated = next_epoch(&mut gw, topology.epoch).await;
    let doc = within("a consensus of the new epoch", 10, async {
        loop {
            if let Some(d) = served(&urls[0], rotated.epoch).await {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(doc.valid_signers(&set).len(), 2);
    assert_eq!(
        doc.verify(&set).unwrap().all_peer_ids().len(),
        topology.all_peer_ids().len()
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the nodes rotate too
    let current = gw.topology().await;
    messages_flow(&mut gw, &current, 2).await;

    // Two killed: no new consensus; counted at the survivor; still running.
    net.kill_authority(1);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let failed = metric(
        &format!("{}/metrics", urls[0]),
        "directory_consensus_failed_total{reason=\"too_few_votes\"}",
    )
    .await;
    assert!(failed >= 1.0, "rounds without a consensus are counted");
    let last = gw.topology().await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let still = gw.topology().await;
    assert_eq!(
        (still.epoch, still.serial),
        (last.epoch, last.serial),
        "no new consensus"
    );
    messages_flow(&mut gw, &still, 3).await;
}
