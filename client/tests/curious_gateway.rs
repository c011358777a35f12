//! A curious recipient's gateway, through real processes: what it stores for
//! a conversation (a first contact, 50 messages each way, replies) holds no
//! identity key, no address card material and nothing two records share (a
//! session header, a routing tag or a ratchet key in clear would repeat),
//! and every record has the same size.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::HashMap;
use std::time::Duration;

use client::{AddressCard, ClientOptions};
use gateway::RedbStore;
use gateway_core::{MailboxStore, StoredMessage};
use localnet::{LocalNet, NetworkSpec};

use protocol::link::DELIVERY_PAYLOAD_SIZE;

mod on_localnet;

const WINDOW: usize = 16;

fn spec() -> NetworkSpec {
    NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        mean_delay_ms: 5,
        lambda_p: 100.0,
        lambda_l: 2.0,
        lambda_m: 1.0,
        refresh_ms: 300,
        ..NetworkSpec::default()
    }
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_secs(3);
    options.core.max_retransmissions = 8;
    options.topology_refresh = Duration::from_secs(1);
    options
}

/// Every 16-byte window of `bytes` with at least half its bytes not zero
/// (the zero padding after a sealed body, and its edge, are alike in every
/// record; any 8 random bytes are not).
fn windows(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .windows(WINDOW)
        .filter(|w| w.iter().filter(|b| **b != 0).count() >= WINDOW / 2)
}

/// What gateway `g` (stopped) keeps for `client`, then starts it again.
fn stored(net: &mut LocalNet, g: usize, client: &[u8; 32]) -> Vec<StoredMessage> {
    net.kill_gateway(g);
    let store = RedbStore::open(net.gateways[g].dir.join("mailbox.redb")).unwrap();
    let records = store.list(client, None, 10_000).unwrap();
    drop(store);
    net.restart_gateway(g).unwrap();
    records
}

/// The checks of a curious gateway's view, against the material of `cards`.
fn check(records: &[StoredMessage], cards: &[&AddressCard], at_least: usize) {
    assert!(records.len() >= at_least, "{} records", records.len());
    for r in records {
        assert_eq!(r.payload.len(), DELIVERY_PAYLOAD_SIZE, "one size for all");
    }
    let mut secret_material: Vec<Vec<u8>> = Vec::new();
    for card in cards {
        secret_material.push(card.bundle.encode());
        secret_material.push(card.address.client_key.to_vec());
    }
    let forbidden: std::collections::HashSet<&[u8]> =
        secret_material.iter().flat_map(|m| windows(m)).collect();
    // Which record each window was first seen in.
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        for w in windows(&r.payload) {
            assert!(
                !forbidden.contains(w),
                "record {i} holds address card material"
            );
            if let Some(j) = seen.insert(w, i) {
                let at = |r: &StoredMessage| r.payload.windows(WINDOW).position(|x| x == w);
                assert_eq!(
                    j,
                    i,
                    "records {j} and {i} share 16 bytes at {:?} and {:?} ({:?}, {:?}): {w:?}",
                    at(&records[j]),
                    at(r),
                    records[j].surb_id,
                    r.surb_id
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipients_gateway_stores_only_sealed_bodies_of_one_size() {
    let mut net = LocalNet::start(spec()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (root.path().join("alice"), root.path().join("bob"));
    let alice_card = on_localnet::init(&net, &alice_dir, 0);
    let bob_card = on_localnet::init(&net, &bob_dir, 1);
    let cards = [&alice_card, &bob_card];

    // Each connects once (its gateway registers it), then Bob goes offline.
    let alice = on_localnet::connect(&alice_dir, options()).await;
    let bob = on_localnet::connect(&bob_dir, options()).await;
    bob.shutdown().await;

    // First contact and 50 messages, stored while Bob is away.
    alice.add_contact(&bob_card).await.unwrap();
    let mut outgoing = Vec::new();
    for i in 0..50u8 {
        let text = format!("message {i} from alice").into_bytes();
        outgoing.push(alice.send(&bob_card.address, text).await.unwrap());
    }
    for o in outgoing {
        tokio::time::timeout(Duration::from_secs(90), o.delivered())
            .await
            .expect("stored at Bob's gateway in time")
            .unwrap();
    }
    let at_bob = stored(&mut net, 1, &bob_card.address.client_key);
    check(&at_bob, &cards, 50);

    // Bob comes back, reads Alice's messages, writes 50 of his own and
    // answers each of hers through its SURBs, while Alice is away. (His own
    // come first in his sending chain: Alice, restarted, cannot read the
    // replies, and had they come first, a message of his more than 64
    // numbers past the last one she read would not be found: docs/e2ee.md,
    // "Routing tags".)
    alice.shutdown().await;
    let bob = on_localnet::connect(&bob_dir, options()).await;
    let mut replies = Vec::new();
    for _ in 0..50 {
        let m = tokio::time::timeout(Duration::from_secs(60), bob.recv())
            .await
            .expect("every message")
            .unwrap();
        replies.push(m.reply.expect("the sender attached SURBs"));
    }
    let mut outgoing = Vec::new();
    for i in 0..50u8 {
        let text = format!("message {i} from bob").into_bytes();
        outgoing.push(bob.send(&alice_card.address, text).await.unwrap());
    }
    for reply in replies {
        bob.reply(reply, b"re".to_vec()).await.unwrap();
    }
    for o in outgoing {
        tokio::time::timeout(Duration::from_secs(90), o.delivered())
            .await
            .expect("stored at Alice's gateway in time")
            .unwrap();
    }
    // Replies come through SURBs: give the last ones time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    bob.shutdown().await;
    let at_alice = stored(&mut net, 0, &alice_card.address.client_key);
    check(&at_alice, &cards, 100);

    // And Alice still reads Bob's messages. (Not the replies: the keys of
    // the reply SURBs she handed out live in her client's memory, and she
    // restarted since.)
    let alice = on_localnet::connect(&alice_dir, options()).await;
    let mut from_bob = 0;
    while from_bob < 50 {
        let m = tokio::time::timeout(Duration::from_secs(60), alice.recv())
            .await
            .expect("every message")
            .unwrap();
        if m.in_reply_to.is_none() {
            from_bob += 1;
        }
    }
    alice.shutdown().await;
}
