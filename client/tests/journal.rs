//! The reassembly journal across a restart: a message (or a reply) whose
//! fragments were only partly taken (and acknowledged to the gateway) when
//! the client stopped is complete after the next start, exactly once. In-memory
//! gateways joined by an in-process mixnet, in tokio's paused time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod mixnet;

use std::path::Path;
use std::time::Duration;

use client::shell::{ClientParts, ShellStats};
use client::{Client, ClientOptions};
use client_core::sessions::SessionBook;
use mixnet::{TestMixnet, introduce, wait_connected};
use protocol::SphinxKeyPair;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

/// Virtual time allowed for one exchange.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a partial message waits for its next fragment (short, so that
/// the tests see it abandoned without simulating minutes of traffic).
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(10);
const ALICE: usize = 0;
const BOB: usize = 1;

fn options() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_millis(500);
    options.core.reassembly.timeout = REASSEMBLY_TIMEOUT;
    options.min_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_secs(1);
    options
}

fn start_alice(net: &mut TestMixnet) -> Client {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let keys = SphinxKeyPair::generate(&mut rng);
    net.register(&keys, ALICE);
    let (_publish, topology) = watch::channel(net.topology.clone());
    Client::start(ClientParts {
        keys,
        gateway: net.gateways[ALICE].id,
        topology,
        connector: net.gateways[ALICE].connector.take().unwrap(),
        options: options(),
        seed: [10; 32],
        sessions: SessionBook::generate(&mut rng),
        book_file: None,
        journal: None,
        folder_lock: None,
    })
}

/// Starts Bob from his data folder `dir` (the same key every time), with a
/// reassembly journal in `dir/partial` when `journal` is set.
fn start_bob(net: &TestMixnet, dir: &Path, journal: bool) -> Client {
    net.start_from_folder(BOB, 11, dir, options(), journal)
}

fn journal_files(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("partial")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Alice sends Bob a three-fragment message; Bob's gateway holds back
/// fragments 1 and 2, Bob takes fragment 0 (acknowledged, gone from the
/// gateway) and stops. Returns the message id and content.
async fn half_receive(
    net: &mut TestMixnet,
    dir: &Path,
    journal: bool,
) -> (protocol::fragment::MessageId, Vec<u8>) {
    let alice = start_alice(net);
    let bob = start_bob(net, dir, journal);
    wait_connected(&[&alice, &bob], PATIENCE).await;
    introduce(&alice, &bob).await;

    net.hold_fragments(BOB, 1);
    let text: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let sent = alice.send(&bob.address(), text.clone()).await.unwrap();
    let id = sent.id();
    // Bob's gateway acknowledged every fragment to Alice.
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    let control = net.gateways[BOB].control.clone();
    timeout(PATIENCE, async {
        while net.held() < 2 || control.mailbox_len() > 0 || control.acked().is_empty() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("Bob takes the fragment that was not held back");
    // Whatever Bob took is gone from his gateway.
    assert_eq!(control.mailbox_len(), 0);
    let stats = bob.core_stats().await.unwrap();
    assert_eq!(stats.messages_received, 0);
    bob.shutdown().await;
    alice.shutdown().await;
    (id, text)
}

#[tokio::test(start_paused = true)]
async fn a_partly_received_message_is_complete_after_a_restart_exactly_once() {
    let mut net = TestMixnet::start(7, 2);
    let dir = tempfile::tempdir().unwrap();
    let (id, text) = half_receive(&mut net, dir.path(), true).await;

    // The fragment Bob took is journaled under its message id.
    let files = journal_files(dir.path());
    let hex: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(files, vec![hex]);

    let bob = start_bob(&net, dir.path(), true);
    assert_eq!(ShellStats::get(&bob.stats().journal_replayed), 1);
    assert_eq!(ShellStats::get(&bob.stats().journal_discarded), 0);
    net.release_held();

    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.bytes, text);
    // Exactly once (a duplicate would come at once), and the journal is
    // empty again.
    assert!(timeout(Duration::from_secs(5), bob.recv()).await.is_err());
    assert!(journal_files(dir.path()).is_empty());
    let stats = bob.core_stats().await.unwrap();
    assert_eq!(stats.messages_received, 1);
    assert_eq!(stats.reassembly_timeouts, 0);
    assert_eq!(ShellStats::get(&bob.stats().journal_full), 0);
    assert_eq!(ShellStats::get(&bob.stats().journal_write_failures), 0);
    bob.shutdown().await;

    // A later start finds nothing to replay.
    let bob = start_bob(&net, dir.path(), true);
    assert_eq!(ShellStats::get(&bob.stats().journal_replayed), 0);
    bob.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_the_journal_the_partly_received_message_is_lost() {
    let mut net = TestMixnet::start(7, 2);
    let dir = tempfile::tempdir().unwrap();
    let _ = half_receive(&mut net, dir.path(), false).await;
    assert!(journal_files(dir.path()).is_empty());

    let bob = start_bob(&net, dir.path(), false);
    net.release_held();
    // Fragment 0 is gone from everywhere: the message never completes, and
    // the core abandons it after the reassembly timeout.
    assert!(timeout(REASSEMBLY_TIMEOUT * 2, bob.recv()).await.is_err());
    let stats = bob.core_stats().await.unwrap();
    assert_eq!(stats.messages_received, 0);
    assert_eq!(stats.reassembly_timeouts, 1);
    bob.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_abandoned_by_the_core_loses_its_journal_file() {
    let mut net = TestMixnet::start(8, 2);
    let dir = tempfile::tempdir().unwrap();
    let _ = half_receive(&mut net, dir.path(), true).await;
    assert_eq!(journal_files(dir.path()).len(), 1);

    // The held fragments never come: the replayed message times out.
    let bob = start_bob(&net, dir.path(), true);
    assert_eq!(ShellStats::get(&bob.stats().journal_replayed), 1);
    assert!(timeout(REASSEMBLY_TIMEOUT * 2, bob.recv()).await.is_err());
    let stats = bob.core_stats().await.unwrap();
    assert_eq!(stats.reassembly_timeouts, 1);
    assert!(journal_files(dir.path()).is_empty());
    bob.shutdown().await;
}

/// Bob (from his folder, with the journal) asks Alice; her two-fragment
/// reply comes back through the SURBs his question carried. Bob takes the
/// first fragment to arrive (journaled, sealed, and acknowledged to his
/// gateway, which deletes it) and stops; after the restart the reply is
/// complete, exactly once.
#[tokio::test(start_paused = true)]
async fn a_partly_received_reply_is_complete_after_a_restart_exactly_once() {
    let mut net = TestMixnet::start(9, 2);
    let dir = tempfile::tempdir().unwrap();
    let alice = start_alice(&mut net);
    let bob = start_bob(&net, dir.path(), true);
    wait_connected(&[&alice, &bob], PATIENCE).await;
    introduce(&alice, &bob).await;

    let question = bob
        .send(&alice.address(), b"question".to_vec())
        .await
        .unwrap();
    let question_id = question.id();
    let asked = timeout(PATIENCE, alice.recv()).await.unwrap().unwrap();
    let handle = asked.reply.clone().expect("messages carry reply SURBs");
    timeout(PATIENCE, question.delivered())
        .await
        .unwrap()
        .unwrap();
    assert!(journal_files(dir.path()).is_empty());

    // Two fragments (the session's overhead is under half a fragment).
    let len = protocol::frame::FRAGMENT_CAPACITY * 3 / 2;
    let text: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
    let answer = alice.reply(handle, text.clone()).await.unwrap();
    timeout(PATIENCE, async {
        while journal_files(dir.path()).is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("Bob journals the first fragment of the reply");
    // Still partial when Bob stops.
    assert_eq!(bob.core_stats().await.unwrap().messages_received, 0);
    bob.shutdown().await;

    // One file, whose record is a reply sealed under the folder's key.
    let files = journal_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(dir.path().join("partial").join(&files[0])).unwrap();
    assert_eq!(bytes[0] & 0x80, 0x80, "the record is marked a reply");
    assert_eq!(&bytes[4..8], &e2ee::SEALED_MAGIC, "the reply is sealed");

    let bob = start_bob(&net, dir.path(), true);
    assert_eq!(ShellStats::get(&bob.stats().journal_replayed), 1);
    assert_eq!(ShellStats::get(&bob.stats().journal_discarded), 0);
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, text);
    assert_eq!(got.in_reply_to, Some(question_id));
    // Exactly once, and the journal is empty again.
    assert!(timeout(Duration::from_secs(5), bob.recv()).await.is_err());
    assert!(journal_files(dir.path()).is_empty());
    let stats = bob.core_stats().await.unwrap();
    assert_eq!(stats.messages_received, 1);
    assert_eq!(stats.reassembly_timeouts, 0);
    assert_eq!(ShellStats::get(&bob.stats().journal_write_failures), 0);
    // Alice's reply is acknowledged: the journaled fragment's ack went
    // before the stop, or her copy sent again was acknowledged after it.
    timeout(PATIENCE, answer.delivered())
        .await
        .unwrap()
        .unwrap();
    bob.shutdown().await;
    alice.shutdown().await;
}
