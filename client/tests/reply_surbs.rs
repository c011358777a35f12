//! Reply SURBs across a restart: a reply through a SURB the client handed
//! out before it stopped is read after it starts again from its data
//! folder. In-memory gateways joined by an in-process mixnet, in tokio's
//! paused time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod mixnet;

use std::path::Path;
use std::time::Duration;

use client::shell::{ClientParts, DataFolder, ShellStats};
use client::{Client, ClientOptions};
use mixnet::{TestMixnet, introduce, wait_connected};
use protocol::SphinxKeyPair;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use tokio::time::timeout;

/// Virtual time allowed for one exchange.
const PATIENCE: Duration = Duration::from_secs(60);
const ALICE: usize = 0;
const BOB: usize = 1;

fn options() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_millis(500);
    options.min_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_secs(1);
    options
}

/// Alice, from her data folder `dir` (made on the first start).
fn start_alice(net: &TestMixnet, dir: &Path) -> Client {
    net.start_from_folder(ALICE, 20, dir, options(), false)
}

fn start_bob(net: &mut TestMixnet) -> Client {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let keys = SphinxKeyPair::generate(&mut rng);
    net.register(&keys, BOB);
    let (_publish, topology) = watch::channel(net.topology.clone());
    Client::start(ClientParts {
        keys,
        gateway: net.gateways[BOB].id,
        topology,
        connector: net.gateways[BOB].connector.take().unwrap(),
        options: options(),
        seed: [21; 32],
        sessions: client_core::sessions::SessionBook::generate(&mut rng),
        book_file: None,
        journal: None,
        folder_lock: None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_reply_through_a_surb_handed_out_before_a_restart_is_read_after_it() {
    let mut net = TestMixnet::start(12, 2);
    let dir = tempfile::tempdir().unwrap();
    let alice = start_alice(&net, dir.path());
    let bob = start_bob(&mut net);
    wait_connected(&[&alice, &bob], PATIENCE).await;
    introduce(&alice, &bob).await;

    let sent = alice
        .send(&bob.address(), b"question".to_vec())
        .await
        .unwrap();
    let id = sent.id();
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    let handle = got.reply.clone().expect("messages carry reply SURBs");
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();

    // Alice stops and starts again from her folder.
    alice.shutdown().await;
    assert!(DataFolder::new(dir.path()).replies_path().exists());
    let alice = start_alice(&net, dir.path());
    let restored = ShellStats::get(&alice.stats().reply_surbs_restored);
    assert!(restored >= 3, "the message's three reply SURBs: {restored}");
    timeout(PATIENCE, alice.wait_connected())
        .await
        .unwrap()
        .unwrap();

    // Bob answers through the SURBs she handed out before.
    let answer = bob.reply(handle, b"answer".to_vec()).await.unwrap();
    let back = timeout(PATIENCE, alice.recv()).await.unwrap().unwrap();
    assert_eq!(back.bytes, b"answer");
    assert_eq!(back.in_reply_to, Some(id));
    timeout(PATIENCE, answer.delivered())
        .await
        .unwrap()
        .unwrap();
    // Read through the first SURB it took: had Alice dropped it under an
    // unknown SURB id, Bob would have sent it again. (Acks of what Alice
    // sent in the second before she stopped do come back under SURB ids her
    // new core does not know: her gateway holds each ack for
    // `SURB_ACK_HOLD`.)
    assert_eq!(bob.core_stats().await.unwrap().retransmissions, 0);
    alice.shutdown().await;
    bob.shutdown().await;
}
