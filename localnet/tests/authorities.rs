//! Three directory authorities as separate processes, with 3 × 2 mix nodes
//! and two gateways: one consensus signed by all three, the same bytes at
//! every authority; messages flow; with one authority killed the network
//! still agrees (2 of 3) and rotates keys; with two killed no new consensus
//! is published, that shows in the survivor's metrics, and the network keeps
//! running on the last one until it expires, which then shows in every
//! node's metrics and log; a gateway mirrors the consensus. An authority
//! restarted mid-round fetches the votes it missed and signs that round's
//! consensus. An authority key replaced through a consensus is followed by
//! clients and nodes; the retired key alone is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    // The real processes run on the real clock; the test reads it too.
    clippy::disallowed_methods,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{TestGateway, layers, metric, wait_until_nodes_see, within};
use localnet::{LocalNet, NetworkSpec};
use protocol::Epoch;
use topology::{
    Authority, AuthoritySet, AuthoritySignature, Phase, SignedTopology, Topology, VotingSchedule,
};

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

    // The gateway mirrors the consensus it holds: the same body, verified
    // under the authorities' keys, whoever serves it.
    let mirror = net.gateways[0].metrics_url.replace("/metrics", "");
    let mirrored = within("the gateway's mirror", 10, async {
        loop {
            if let Ok(r) = reqwest::get(format!("{mirror}/v1/topology")).await
                && r.status().is_success()
            {
                return SignedTopology::from_json(&r.text().await.unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let at_authority = served(&urls[0], still.epoch).await.unwrap();
    assert_eq!(mirrored.verify(&set).unwrap().epoch, still.epoch);
    assert_eq!(mirrored.body, at_authority.body);

    // Then the last consensus expires: every node says so in its metrics
    // and its log, and still forwards what senders keyed for it.
    let until = still.valid_until();
    let wait = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .as_secs()
        + 30;
    within("the expiry in every node's metrics", wait, async {
        loop {
            let mut expired = 0;
            for node in net.mixnodes.iter().chain(&net.gateways) {
                let prefix = if node.client_address.is_some() {
                    "gateway"
                } else {
                    "mixnode"
                };
                let value = metric(&node.metrics_url, &format!("{prefix}_topology_expired ")).await;
                expired += usize::from(value == 1.0);
            }
            if expired == net.mixnodes.len() + net.gateways.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(std::time::SystemTime::now() >= until);
    for node in net.mixnodes.iter().chain(&net.gateways) {
        let log = std::fs::read_dir(&node.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>();
        assert!(
            log.contains("expired at unix") && log.contains("still forwarding"),
            "{}: no expiry in the log",
            node.dir.display()
        );
    }
    messages_flow(&mut gw, &still, 4).await;

    // With the last authority gone too, a client with no cache still gets
    // the consensus from the gateway's mirror, and verifies it.
    net.kill_authority(0);
    let fresh = directory::DirectoryClient::with_authorities(set.clone(), None)
        .unwrap()
        .with_mirrors(vec![mirror]);
    let from_mirror = fresh.refresh().await.unwrap();
    assert_eq!(
        (from_mirror.epoch, from_mirror.serial),
        (still.epoch, still.serial)
    );
}

/// The voting schedule of the network `topology` belongs to.
fn schedule(topology: &Topology, round_secs: u64) -> VotingSchedule {
    VotingSchedule::new(topology.params.epoch_clock(), round_secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_restarted_mid_round_fetches_the_votes_and_signs() {
    let round_secs = 6;
    let mut net = LocalNet::start(NetworkSpec {
        epoch_secs: 60,
        round_secs,
        ..spec()
    })
    .unwrap();
    let set = authority_set(&net);
    let urls: Vec<String> = net.authorities().into_iter().map(|(u, _)| u).collect();
    let gw = TestGateway::join_authorities(set.clone(), 2).await;
    let topology = gw.topology().await;
    let schedule = schedule(&topology, round_secs);
    // One second into a round's vote half (of three seconds), after the
    // others posted their votes to it: authority 2 crashes and comes back.
    let round = within("a vote half", 30, async {
        loop {
            let t = schedule.at(std::time::SystemTime::now());
            let left = t
                .phase_ends
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            if t.phase == Phase::Vote
                && left < Duration::from_millis(2_000)
                && left > Duration::from_millis(1_500)
            {
                return t.round;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    net.kill_authority(2);
    net.restart_authority(2).unwrap();
    // That round's consensus carries all three signatures.
    let doc = within("the round's consensus with three signatures", 30, async {
        loop {
            if let Some(d) = served(&urls[0], round.epoch).await {
                let t = d.verify(&set).unwrap();
                assert!(
                    t.serial <= round.serial,
                    "round {round} ended without its third signature"
                );
                if t.serial == round.serial && d.valid_signers(&set).len() == 3 {
                    return d;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(doc.valid_signers(&set).len(), 3);
    let pulled = metric(
        &format!("{}/metrics", urls[2]),
        "directory_votes_pulled_total",
    )
    .await;
    assert!(
        pulled >= 2.0,
        "the restarted authority fetched the others' votes ({pulled})"
    );
}

/// A one-connection-at-a-time HTTP server answering every request with
/// `body` (200) when set, 404 otherwise: a mirror that serves forgeries.
async fn forging_mirror(body: std::sync::Arc<std::sync::Mutex<Option<String>>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer = body.lock().unwrap().clone();
            let response = match answer {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .into(),
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_authority_key_is_followed_and_the_retired_one_refused() {
    let mut net = LocalNet::start(spec()).unwrap();
    let old_set = authority_set(&net);
    let mut gw = TestGateway::join_authorities(old_set.clone(), 3).await;
    within("a first consensus", 30, gw.topology()).await;
    wait_until_nodes_see(&net, 9).await;
    let retired = net.authorities()[2].1;

    // The operators replace authority 2's key and restart with the new set.
    let new = net.replace_authority_key(2).unwrap();
    let new_set = authority_set(&net);
    assert!(new_set.contains(&new) && !new_set.contains(&retired));
    // A client pinned to the old set follows, through a consensus the old
    // set's majority signed, without being re-pinned.
    let forgery = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let mirror = forging_mirror(forgery.clone()).await;
    let cache = tempfile::tempdir().unwrap();
    let client = directory::DirectoryClient::with_authorities(
        old_set.clone(),
        Some(cache.path().join("topology.json")),
    )
    .unwrap()
    .with_mirrors(vec![mirror]);
    let followed = within("the client follows the new set", 60, async {
        loop {
            if let Ok(t) = client.refresh().await
                && client.authorities() == new_set
            {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(followed.authorities.as_ref(), Some(&new_set));
    assert_eq!(client.authority_set_changes(), 1);
    // So do the probe gateway's client and every node (their followed set
    // is written next to their topology cache).
    within("the probe follows", 30, async {
        while gw.directory.authorities() != new_set {
            let _ = gw.directory.refresh().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    within("every node follows", 30, async {
        loop {
            let following = net
                .mixnodes
                .iter()
                .chain(&net.gateways)
                .filter(|n| {
                    std::fs::read_to_string(n.dir.join("topology.authorities.json")).is_ok_and(
                        |t| t.contains(&new.to_base58()) && !t.contains(&retired.to_base58()),
                    )
                })
                .count();
            if following == net.mixnodes.len() + net.gateways.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let current = next_epoch(&mut gw, followed.epoch).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the nodes rotate too
    messages_flow(&mut gw, &current, 5).await;

    // A newer document signed by the retired key alone, or by the retired
    // key and one current authority, is refused and counted.
    let retired_key =
        directory::config::read_key_file(&net.authority_dir(2).join("directory.key.retired"))
            .unwrap();
    let first_key =
        directory::config::read_key_file(&net.authority_dir(0).join("directory.key")).unwrap();
    let held = client.refresh().await.unwrap();
    let mut forged = (*held).clone();
    forged.serial += 100;
    let alone = forged.sign(&retired_key).unwrap();
    let mut with_one = alone.clone();
    with_one.add_signature(AuthoritySignature::sign(&with_one.body, &first_key));
    for (i, doc) in [alone, with_one].into_iter().enumerate() {
        *forgery.lock().unwrap() = Some(doc.to_json());
        let before = client.bad_signatures();
        let got = client.refresh().await.unwrap();
        assert_eq!(client.bad_signatures(), before + 1, "forgery {i} counted");
        assert!(got.serial < forged.serial, "forgery {i} refused");
    }
}
