//! No message leaves unless the session state that sealed it is saved: a
//! crash, or a restored backup, must never make the client encrypt a new
//! message under a key it already used.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod mixnet;

use std::path::Path;
use std::time::Duration;

use client::shell::{ClientParts, DataFolder, ShellStats, StateSealing, StoredSettings};
use client::{Client, ClientError, ClientOptions};
use client_core::sessions::{SessionBook, SessionBookError};
use mixnet::TestMixnet;
use protocol::SphinxKeyPair;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(60);

fn options() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_millis(500);
    options.min_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_secs(1);
    options
}

/// Starts a client on gateway `gateway`, with its session book sealed in
/// the data folder `dir` when one is given.
fn start(net: &mut TestMixnet, gateway: usize, seed: u64, dir: Option<&Path>) -> Client {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys = SphinxKeyPair::generate(&mut rng);
    net.register(&keys, gateway);
    let (sessions, book_file) = match dir {
        Some(dir) => {
            let settings = StoredSettings {
                directory_url: "http://127.0.0.1:9".into(),
                directory_key: net.gateways[gateway].id.to_base58(),
                authorities: Vec::new(),
                authority_threshold: None,
                gateway: net.gateways[gateway].id.to_base58(),
                state_sealing: StateSealing::KeyFile,
                route_regions: Vec::new(),
                mailbox_region: None,
                prekey_rotation_secs: None,
                prekey_grace_secs: None,
            };
            let folder = DataFolder::new(dir)
                .init(&mut rng, &settings, &keys, None)
                .unwrap();
            (folder.book, Some(folder.book_file))
        }
        None => (SessionBook::generate(&mut rng), None),
    };
    let (_publish, topology) = watch::channel(net.topology.clone());
    let slot = &mut net.gateways[gateway];
    Client::start(ClientParts {
        keys,
        gateway: slot.id,
        topology,
        connector: slot.connector.take().expect("one client per gateway"),
        options: options(),
        seed: [seed as u8; 32],
        sessions,
        book_file,
        journal: None,
        folder_lock: None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_message_is_refused_and_never_sent_when_its_session_state_cannot_be_saved() {
    let mut net = TestMixnet::start(1, 2);
    let dir = tempfile::tempdir().unwrap();
    let alice = start(&mut net, 0, 30, Some(dir.path()));
    let bob = start(&mut net, 1, 31, None);
    timeout(PATIENCE, alice.wait_connected())
        .await
        .unwrap()
        .unwrap();
    timeout(PATIENCE, bob.wait_connected())
        .await
        .unwrap()
        .unwrap();
    alice.add_contact(&bob.card()).await.unwrap();
    bob.add_contact(&alice.card()).await.unwrap();

    // The book's atomic write goes through `sessions.tmp`: a directory
    // there makes every save fail.
    let book_path = DataFolder::new(dir.path()).sessions_path();
    let saved = std::fs::read(&book_path).unwrap();
    let blocker = dir.path().join("sessions.tmp");
    std::fs::create_dir(&blocker).unwrap();

    let refused = alice
        .send(&bob.address(), b"must not leave".to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        ClientError::Session(SessionBookError::StateNotSaved)
    );
    let contact_refused = alice.add_contact(&bob.card()).await.unwrap_err();
    assert_eq!(
        contact_refused,
        ClientError::Session(SessionBookError::StateNotSaved)
    );
    assert!(ShellStats::get(&alice.stats().state_write_failures) >= 2);
    // Nothing was queued, nothing arrives, and the book on disk is the old one.
    assert!(timeout(Duration::from_secs(20), bob.recv()).await.is_err());
    assert_eq!(alice.core_stats().await.unwrap().real_sent, 0);
    assert_eq!(std::fs::read(&book_path).unwrap(), saved);

    // Once the book can be saved again, messages leave.
    std::fs::remove_dir(&blocker).unwrap();
    let sent = alice
        .send(&bob.address(), b"now it goes".to_vec())
        .await
        .unwrap();
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"now it goes");
    assert_eq!(got.from, Some(alice.address()));
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    assert_ne!(std::fs::read(&book_path).unwrap(), saved);
    alice.shutdown().await;
    bob.shutdown().await;
}
