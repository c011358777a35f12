//! The async `Client` over in-memory gateways joined by an in-process
//! mixnet, in tokio's paused time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod mixnet;

use std::time::Duration;

use client::shell::{ClientParts, SendStatus};
use client::{Client, ClientError, ClientOptions};
use client_core::DeliveryDrop;
use client_core::sessions::SessionBook;
use mixnet::{TestMixnet, introduce, wait_connected};
use protocol::SphinxKeyPair;
use protocol::surb::SurbId;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use tokio::time::timeout;

/// Virtual time allowed for one exchange.
const PATIENCE: Duration = Duration::from_secs(60);

fn options() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_millis(500);
    options.core.reply_ack_timeout = Duration::from_secs(2);
    options.min_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_secs(1);
    options
}

/// Starts a client on gateway `gateway` of `net`.
fn start_client(net: &mut TestMixnet, gateway: usize, seed: u64, options: ClientOptions) -> Client {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys = SphinxKeyPair::generate(&mut rng);
    net.register(&keys, gateway);
    let (_publish, topology) = watch::channel(net.topology.clone());
    let slot = &mut net.gateways[gateway];
    Client::start(ClientParts {
        keys,
        gateway: slot.id,
        topology,
        connector: slot.connector.take().expect("one client per gateway"),
        options,
        seed: [seed as u8; 32],
        sessions: SessionBook::generate(&mut rng),
        book_file: None,
        journal: None,
        folder_lock: None,
    })
}

/// An address card for `address` with prekeys nobody holds.
fn stranger_card(address: protocol::ClientAddress) -> client::AddressCard {
    SessionBook::generate(&mut ChaCha20Rng::seed_from_u64(99)).card(address)
}

#[tokio::test(start_paused = true)]
async fn send_receive_and_reply_between_two_clients() {
    let mut net = TestMixnet::start(1, 2);
    let alice = start_client(&mut net, 0, 10, options());
    let bob = start_client(&mut net, 1, 11, options());
    wait_connected(&[&alice, &bob], PATIENCE).await;

    introduce(&alice, &bob).await;
    // Large enough for three fragments (with the session's first-message
    // handshake and three reply SURBs), so progress has steps.
    let text: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let mut sent = alice.send(&bob.address(), text.clone()).await.unwrap();
    assert_eq!(sent.status(), SendStatus::Progress { acked: 0, total: 3 });

    let id = sent.id();
    // Watch the progress while the message travels (a watch keeps only the
    // latest status, so steps may be skipped, never reordered).
    let watcher = tokio::spawn(async move {
        let mut steps = Vec::new();
        while let Some(status) = sent.changed().await {
            steps.push(status);
            if status == SendStatus::Delivered {
                break;
            }
        }
        steps
    });

    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, text);
    assert_eq!(got.id, id);
    let handle = got.reply.clone().expect("messages carry reply SURBs");

    let steps = timeout(PATIENCE, watcher).await.unwrap().unwrap();
    assert_eq!(steps.last(), Some(&SendStatus::Delivered));
    let acked: Vec<usize> = steps
        .iter()
        .filter_map(|s| match s {
            SendStatus::Progress { acked, total: 3 } => Some(*acked),
            SendStatus::Progress { .. } => panic!("wrong total: {steps:?}"),
            _ => None,
        })
        .collect();
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "{steps:?}");

    let answer = bob.reply(handle, b"got it".to_vec()).await.unwrap();
    let back = timeout(PATIENCE, alice.recv()).await.unwrap().unwrap();
    assert_eq!(back.bytes, b"got it");
    assert_eq!(back.in_reply_to, Some(id));
    timeout(PATIENCE, answer.delivered())
        .await
        .unwrap()
        .unwrap();

    // Every delivery the clients took was acknowledged to their gateways.
    for g in &net.gateways {
        assert!(!g.control.acked().is_empty());
    }
    assert!(
        alice
            .stats()
            .packets_sent
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[tokio::test(start_paused = true)]
async fn deliveries_the_core_did_not_take_stay_unacked_at_the_gateway() {
    let mut net = TestMixnet::start(2, 2);
    let alice = start_client(&mut net, 0, 20, options());
    let bob_options = ClientOptions {
        receive_queue: 1,
        ..options()
    };
    let bob = start_client(&mut net, 1, 21, bob_options);
    introduce(&alice, &bob).await;
    timeout(PATIENCE, bob.wait_connected())
        .await
        .unwrap()
        .unwrap();

    let mut pending = Vec::new();
    for i in 0..4u8 {
        pending.push(alice.send(&bob.address(), vec![i; 10]).await.unwrap());
    }
    // Bob does not read: one message fills his queue, one waits in his task,
    // and the task stops taking deliveries, so the rest wait, unacked, in
    // his gateway's mailbox.
    let bob_gateway = net.gateways[1].control.clone();
    timeout(PATIENCE, async {
        while bob_gateway.mailbox_len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mailbox_before = bob_gateway.mailbox_len();
    assert!(mailbox_before >= 2, "{mailbox_before}");
    let acked_before = bob_gateway.acked().len();

    // Once Bob reads, the rest are taken, acked, and delivered once each.
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(timeout(PATIENCE, bob.recv()).await.unwrap().unwrap().bytes[0]);
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert!(bob_gateway.acked().len() >= acked_before + 2);
    for sent in pending {
        timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn reconnects_after_the_link_drops_and_gets_the_mailbox_again() {
    let mut net = TestMixnet::start(3, 2);
    let alice = start_client(&mut net, 0, 30, options());
    let bob = start_client(&mut net, 1, 31, options());
    introduce(&alice, &bob).await;
    timeout(PATIENCE, bob.wait_connected())
        .await
        .unwrap()
        .unwrap();
    let bob_gateway = net.gateways[1].control.clone();
    assert_eq!(bob_gateway.sessions(), 1);

    // The session drops and the gateway refuses Bob for a while.
    bob_gateway.refuse_sessions(true);
    bob_gateway.drop_session();
    let sent = alice
        .send(&bob.address(), b"while away".to_vec())
        .await
        .unwrap();
    timeout(PATIENCE, async {
        while bob.is_connected() || bob_gateway.mailbox_len() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    // The message waits in the mailbox while Bob is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!bob.is_connected());
    assert!(bob_gateway.mailbox_len() >= 1);

    bob_gateway.refuse_sessions(false);
    timeout(PATIENCE, bob.wait_connected())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_gateway.sessions(), 2);
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"while away");
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    assert!(
        bob.stats()
            .disconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(start_paused = true)]
async fn calls_fail_cleanly_after_shutdown_and_unknown_gateways_are_refused() {
    let mut net = TestMixnet::start(4, 1);
    let alice = start_client(&mut net, 0, 40, options());
    let mut nowhere = alice.address();
    nowhere.gateway = protocol::NodeId([0xEE; 32]);
    alice.add_contact(&stranger_card(nowhere)).await.unwrap();
    assert!(matches!(
        alice.send(&nowhere, b"x".to_vec()).await,
        Err(ClientError::NoRoute(_))
    ));
    let sent = alice
        .send(&alice.address(), b"to myself".to_vec())
        .await
        .unwrap();
    let got = timeout(PATIENCE, alice.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"to myself");
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    timeout(PATIENCE, alice.shutdown()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_topology_replaces_the_routes() {
    let mut net = TestMixnet::start(5, 2);
    let bob = start_client(&mut net, 1, 51, options());
    // Alice starts with a topology that lists only her own gateway.
    let mut partial = (*net.topology).clone();
    partial.gateways.truncate(1);
    let mut rng = ChaCha20Rng::seed_from_u64(50);
    let keys = SphinxKeyPair::generate(&mut rng);
    net.register(&keys, 0);
    let (publish, topology) = watch::channel(std::sync::Arc::new(partial));
    let alice = Client::start(ClientParts {
        keys,
        gateway: net.gateways[0].id,
        topology,
        connector: net.gateways[0].connector.take().unwrap(),
        options: options(),
        seed: [50; 32],
        sessions: SessionBook::generate(&mut rng),
        book_file: None,
        journal: None,
        folder_lock: None,
    });
    introduce(&alice, &bob).await;
    assert!(matches!(
        alice.send(&bob.address(), b"too early".to_vec()).await,
        Err(ClientError::NoRoute(_))
    ));
    publish.send_replace(net.topology.clone());
    // The next call is handled after the task saw the new topology.
    timeout(PATIENCE, async {
        while alice
            .stats()
            .topology_updates
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let sent = alice.send(&bob.address(), b"now".to_vec()).await.unwrap();
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"now");
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn malformed_deliveries_are_counted_acked_and_do_not_stop_the_client() {
    let mut net = TestMixnet::start(6, 1);
    let alice = start_client(&mut net, 0, 60, options());
    timeout(PATIENCE, alice.wait_connected())
        .await
        .unwrap()
        .unwrap();
    let gateway = net.gateways[0].control.clone();
    let junk = [
        (SurbId([0; 16]), vec![]),
        (SurbId([0; 16]), vec![0xFF; 2048]),
        (SurbId([7; 16]), vec![1, 2, 3]),
    ];
    let ids: Vec<u64> = junk
        .iter()
        .map(|(surb, payload)| gateway.deliver(*surb, payload.clone()))
        .collect();
    timeout(PATIENCE, async {
        while gateway.mailbox_len() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    // Taken by the core (as drops), so acknowledged: the gateway forgets them.
    for id in ids {
        assert!(gateway.acked().contains(&id));
    }
    let stats = alice.core_stats().await.unwrap();
    assert_eq!(stats.dropped_total(), 3, "{stats:?}");
    assert_eq!(stats.dropped_for(DeliveryDrop::UnknownSurb), 1);
    // Still working.
    let sent = alice
        .send(&alice.address(), b"still here".to_vec())
        .await
        .unwrap();
    let got = timeout(PATIENCE, alice.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"still here");
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_message_nobody_acknowledges_fails() {
    let mut net = TestMixnet::start(7, 1);
    let alice = start_client(&mut net, 0, 70, options());
    // A client key no gateway knows: the fragments are never stored, never acked.
    let nobody = protocol::ClientAddress {
        client_key: [0x42; 32],
        gateway: net.gateways[0].id,
    };
    alice.add_contact(&stranger_card(nobody)).await.unwrap();
    let mut sent = alice
        .send(&nobody, b"into the void".to_vec())
        .await
        .unwrap();
    let id = sent.id();
    let last = timeout(Duration::from_secs(600), async {
        loop {
            match sent.changed().await {
                Some(SendStatus::Progress { .. }) => {}
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    // The sender is told that no ack came back from the recipient's gateway,
    // after every try (one copy and the default five retransmissions).
    let Some(SendStatus::Failed(client::SendFailure::NoAck { tries, over })) = last else {
        panic!("message {id:?} ended with {last:?}");
    };
    assert_eq!(tries, 6);
    assert!(over > Duration::ZERO);
    // And the status stays failed.
    assert_eq!(sent.status(), last.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_complete_message_no_session_opens_is_dropped_and_counted() {
    use client::shell::ShellStats;
    use client_core::envelope::{Envelope, EnvelopeKind};
    use protocol::fragment::{MessageId, fragment_message};
    use protocol::frame::{ForwardFrame, SealedContent};

    let mut net = TestMixnet::start(8, 2);
    let alice = start_client(&mut net, 0, 80, options());
    let bob = start_client(&mut net, 1, 81, options());
    introduce(&alice, &bob).await;
    timeout(PATIENCE, bob.wait_connected())
        .await
        .unwrap()
        .unwrap();
    // Well-formed frames and envelope around content that is no session
    // message: random bytes, and an initial-looking header.
    let gateway = net.gateways[1].control.clone();
    let bob_key = x25519_dalek::PublicKey::from(bob.address().client_key);
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut initial_like = vec![1u8, 1];
    initial_like.extend_from_slice(&[7; 1300]);
    for (n, content) in [vec![0xAB; 300], initial_like].into_iter().enumerate() {
        let envelope = Envelope {
            kind: EnvelopeKind::Message,
            reply_surbs: Vec::new(),
            content,
        };
        for fragment in fragment_message(MessageId([n as u8; 16]), &envelope.encode()).unwrap() {
            let content = SealedContent::Data {
                lifetime: None,
                fragment,
            };
            let surb_ack = vec![0; protocol::frame::SURB_ACK_SIZE];
            let frame = ForwardFrame::seal(&content, &bob_key, surb_ack, &mut rng).unwrap();
            let frame = frame.delivery_payload();
            gateway.deliver(SurbId([0; 16]), frame);
        }
    }
    timeout(PATIENCE, async {
        while ShellStats::get(&bob.stats().undecryptable) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    // Nothing reached the application, and a real message still does.
    let sent = alice.send(&bob.address(), b"real".to_vec()).await.unwrap();
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"real");
    assert_eq!(got.from, Some(alice.address()));
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    assert_eq!(ShellStats::get(&bob.stats().undecryptable), 2);
}

#[tokio::test(start_paused = true)]
async fn an_expired_topology_refuses_new_messages_and_cover_goes_on() {
    let mut net = TestMixnet::start(9, 1);
    // The test network's topology as if its epoch had started three epochs ago.
    let mut expired = (*net.topology).clone();
    let length = expired.params.epoch_length.as_secs();
    expired.params.genesis_unix_secs -= 3 * length;
    net.topology = std::sync::Arc::new(expired);
    let alice = start_client(&mut net, 0, 90, options());
    alice.add_contact(&alice.card()).await.unwrap();
    let refused = alice.send(&alice.address(), b"late".to_vec()).await;
    let Err(ClientError::TopologyExpired { epoch, .. }) = refused else {
        panic!("sent on an expired topology: {refused:?}");
    };
    assert_eq!(epoch, 0);
    // The Poisson ticks go on: drop and loop cover keep the rate.
    let before = alice.core_stats().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = alice.core_stats().await.unwrap();
    let cover = |s: &client_core::ClientStats| s.drop_cover_sent + s.loop_cover_sent;
    assert!(
        cover(&after) > cover(&before) + 10,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.real_sent, 0);
    timeout(PATIENCE, alice.shutdown()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_recall_after_delivery_reaches_the_application_and_a_notice_for_an_unknown_message_is_counted()
 {
    use std::sync::atomic::Ordering::Relaxed;
    let mut net = TestMixnet::start(3, 2);
    let alice = start_client(&mut net, 0, 30, options());
    let bob = start_client(&mut net, 1, 31, options());
    for c in [&alice, &bob] {
        timeout(PATIENCE, c.wait_connected())
            .await
            .unwrap()
            .unwrap();
    }
    introduce(&alice, &bob).await;

    // Delivered, then recalled: Bob's application hears of it, from Alice.
    let sent = alice.send(&bob.address(), b"oops".to_vec()).await.unwrap();
    let id = sent.id();
    timeout(PATIENCE, sent.delivered()).await.unwrap().unwrap();
    let got = timeout(PATIENCE, bob.recv()).await.unwrap().unwrap();
    assert_eq!(got.id, id);
    let recall = alice.recall(id).await.unwrap();
    timeout(PATIENCE, recall.delivered())
        .await
        .unwrap()
        .unwrap();
    let recalled = timeout(PATIENCE, bob.recalled()).await.unwrap().unwrap();
    assert_eq!((recalled.id, recalled.peer), (id, got.peer));
    assert_eq!(bob.stats().recalls_received.load(Relaxed), 1);
    // Its record is gone once the recall was delivered.
    assert!(matches!(
        alice.recall(id).await,
        Err(ClientError::Recall(
            client_core::sessions::RecallError::Unknown
        ))
    ));

    // A message Bob never completed (its last fragments held back): the
    // notice names an id Bob does not know, and is dropped and counted.
    net.hold_fragments(1, 1);
    let big: Vec<u8> = vec![3; 3000];
    let partial = alice.send(&bob.address(), big).await.unwrap();
    let partial_id = partial.id();
    timeout(PATIENCE, partial.delivered())
        .await
        .unwrap()
        .unwrap();
    let recall = alice.recall(partial_id).await.unwrap();
    timeout(PATIENCE, recall.delivered())
        .await
        .unwrap()
        .unwrap();
    timeout(PATIENCE, async {
        while bob.stats().recall_notices_unknown.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the notice is dropped and counted");
    assert_eq!(bob.stats().recalls_received.load(Relaxed), 1);
}
