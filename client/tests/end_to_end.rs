//! End to end on a local network of real processes (a directory, 3 × 2 mix
//! nodes, two gateways): two in-process `Client`s talk through it.
//! Needs the node binaries built beside the test (`cargo build --bins`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Real processes run on the real clock: deadlines for their start-up.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::shell::ShellStats;
use client::{Client, ClientOptions};
use localnet::{LocalNet, NetworkSpec};

mod on_localnet;

fn spec() -> NetworkSpec {
    NetworkSpec {
        mix_per_layer: 2,
        gateways: 2,
        mean_delay_ms: 10,
        lambda_p: 100.0,
        lambda_l: 2.0,
        lambda_m: 1.0,
        refresh_ms: 300,
        ..NetworkSpec::default()
    }
}

fn options() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.core.ack_margin = Duration::from_millis(1500);
    o.topology_refresh = Duration::from_secs(1);
    o
}

fn message(i: usize, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|j| (i * 31 + j * 7) as u8).collect();
    if let Some(first) = m.first_mut() {
        *first = i as u8;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_messages_arrive_once_intact_and_every_reply_comes_back() {
    let net = LocalNet::start(spec()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (root.path().join("alice"), root.path().join("bob"));
    let alice_card = on_localnet::init(&net, &alice_dir, 0);
    let bob_card = on_localnet::init(&net, &bob_dir, 1);
    let bob_address = bob_card.address;
    let alice = on_localnet::connect(&alice_dir, options()).await;
    let bob = on_localnet::connect(&bob_dir, options()).await;
    alice.add_contact(&bob_card).await.unwrap();

    // 50 sizes from 1 byte to 100 KiB, geometrically spaced.
    let sizes: Vec<usize> = (0..50)
        .map(|i| (102_400f64.powf(i as f64 / 49.0)).round() as usize)
        .collect();
    let mut expected = BTreeMap::new();
    let mut outgoing = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let m = message(i, *len);
        outgoing.push(alice.send(&bob_address, m.clone()).await.unwrap());
        expected.insert(i, m);
    }

    // Bob gets each exactly once, intact, and answers through its SURBs.
    let mut received = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, bob.recv())
            .await
            .expect("50 messages in time")
            .unwrap();
        let i = usize::from(m.bytes[0]);
        // Decrypted in the session Alice started from Bob's card.
        assert_eq!(m.from, Some(alice_card.address));
        assert!(
            received.insert(i, m.bytes.clone()).is_none(),
            "message {i} twice"
        );
        let reply = m.reply.expect("the sender attached SURBs");
        bob.reply(reply, format!("re {i}").into_bytes())
            .await
            .unwrap();
    }
    assert_eq!(received, expected);
    for o in outgoing {
        tokio::time::timeout(Duration::from_secs(60), o.delivered())
            .await
            .unwrap()
            .unwrap();
    }

    // Alice gets every reply.
    let mut replies = std::collections::BTreeSet::new();
    while replies.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, alice.recv())
            .await
            .expect("50 replies in time")
            .unwrap();
        assert!(r.in_reply_to.is_some());
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(replies.insert(text), "reply twice");
    }
    assert_eq!(replies, (0..50).map(|i| format!("re {i}")).collect());
    // Nothing more comes: exactly once.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), bob.recv())
            .await
            .is_err()
    );
    let alice_identity = received_peer(&bob, &alice, &bob_address).await;

    // Both clients restart: the sessions come back from their sealed books.
    // Alice has read Bob's replies, so she now sends plain ratchet messages
    // that only Bob's stored session opens; Bob writes to Alice's address,
    // which he learned inside the session, without a card.
    alice.shutdown().await;
    bob.shutdown().await;
    let alice = on_localnet::connect(&alice_dir, options()).await;
    let bob = on_localnet::connect(&bob_dir, options()).await;
    assert_eq!(
        received_peer(&bob, &alice, &bob_address).await,
        alice_identity
    );
    let o = bob
        .send(&alice_card.address, b"after the restart".to_vec())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(60), alice.recv())
        .await
        .expect("Bob's message after the restart")
        .unwrap();
    assert_eq!(m.bytes, b"after the restart");
    assert_eq!(m.from, Some(bob_address));
    o.delivered().await.unwrap();
    assert_eq!(ShellStats::get(&alice.stats().undecryptable), 0);
    assert_eq!(ShellStats::get(&bob.stats().undecryptable), 0);
    alice.shutdown().await;
    bob.shutdown().await;
}

/// Alice sends one message to Bob; returns the identity Bob saw it from.
async fn received_peer(
    bob: &Client,
    alice: &Client,
    bob_address: &protocol::ClientAddress,
) -> client::PeerIdentityKey {
    let o = alice
        .send(bob_address, b"still here".to_vec())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(60), bob.recv())
        .await
        .expect("Alice's message")
        .unwrap();
    assert_eq!(m.bytes, b"still here");
    o.delivered().await.unwrap();
    m.peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_when_a_mix_node_dies_in_flight_and_across_a_gateway_crash() {
    let mut net = LocalNet::start(spec()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (root.path().join("alice"), root.path().join("bob"));
    on_localnet::init(&net, &alice_dir, 0);
    let bob_card = on_localnet::init(&net, &bob_dir, 1);
    let bob_address = bob_card.address;
    let alice = on_localnet::connect(&alice_dir, options()).await;
    let bob = on_localnet::connect(&bob_dir, options()).await;
    alice.add_contact(&bob_card).await.unwrap();

    // A mix node dies while messages are in flight: retransmission on fresh
    // routes gets every one through.
    let mut outgoing = Vec::new();
    for i in 0..10 {
        outgoing.push(alice.send(&bob_address, message(i, 3000)).await.unwrap());
    }
    net.kill_mixnode(2);
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 10 {
        let m = tokio::time::timeout(Duration::from_secs(90), bob.recv())
            .await
            .expect("all 10")
            .unwrap();
        assert_eq!(m.bytes, message(usize::from(m.bytes[0]), 3000));
        got.insert(m.bytes[0]);
    }
    // The sender learns it too: every message acknowledged, with the
    // default retransmissions, as routes turn away from the dead node.
    for o in outgoing {
        tokio::time::timeout(Duration::from_secs(90), o.delivered())
            .await
            .expect("acknowledged in time")
            .expect("delivered despite the dead node");
    }
    net.restart_mixnode(2).unwrap();

    // Bob goes offline; what his gateway acknowledged survives its crash.
    bob.shutdown().await;
    let mut outgoing = Vec::new();
    for i in 20..25 {
        outgoing.push(alice.send(&bob_address, message(i, 100)).await.unwrap());
    }
    for o in outgoing {
        tokio::time::timeout(Duration::from_secs(90), o.delivered())
            .await
            .unwrap()
            .unwrap();
    }
    net.kill_gateway(1);
    net.restart_gateway(1).unwrap();
    let bob = on_localnet::connect(&bob_dir, options()).await;
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 5 {
        let m = tokio::time::timeout(Duration::from_secs(60), bob.recv())
            .await
            .expect("all 5")
            .unwrap();
        assert!(got.insert(m.bytes[0]), "each exactly once");
        assert_eq!(m.bytes, message(usize::from(m.bytes[0]), 100));
    }
    assert_eq!(got, (20..25).collect());
    assert!(
        tokio::time::timeout(Duration::from_secs(2), bob.recv())
            .await
            .is_err()
    );

    // A message with a sender-set lifetime is never shown once it passed,
    // though Bob was offline; one without stays. The gateway reads only the
    // lifetime's coarse bucket (an hour here) and deletes the sealed body
    // when that runs out; Bob's client refuses it at once.
    bob.shutdown().await;
    let short = alice
        .send_expiring(
            &bob_address,
            b"short-lived".to_vec(),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    let long = alice.send(&bob_address, b"kept".to_vec()).await.unwrap();
    for o in [short, long] {
        tokio::time::timeout(Duration::from_secs(60), o.delivered())
            .await
            .unwrap()
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let bob = on_localnet::connect(&bob_dir, options()).await;
    let m = tokio::time::timeout(Duration::from_secs(60), bob.recv())
        .await
        .expect("the message without a lifetime")
        .unwrap();
    assert_eq!(m.bytes, b"kept");
    assert!(
        tokio::time::timeout(Duration::from_secs(3), bob.recv())
            .await
            .is_err(),
        "the expired message was not kept"
    );
    // Refused by Bob's client, after his gateway handed it over sealed.
    assert!(
        ShellStats::get(&bob.stats().undecryptable) >= 1,
        "the expired message reached Bob's client and was refused there"
    );
    alice.shutdown().await;
    bob.shutdown().await;
}
