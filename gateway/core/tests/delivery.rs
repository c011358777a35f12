#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! Final-hop handling: a data packet through three mix layers and the exit
//! mixer into the gateway core, stored, and acknowledged through its SURB-ack
//! back to the sender's side.

mod common;

use common::*;
use gateway_core::error::MailboxError;
use gateway_core::mailbox::{ClientKey, MailboxUsage, RegistrationDay, RemovedMessage};
use gateway_core::{
    FinalHop, GatewayConfig, GatewayCore, GatewayDropReason, Mailbox, MailboxConfig, MailboxId,
    MailboxStore, MemoryStore, StoredMessage,
};
use mixnode_core::MixerRole;
use protocol::address::DROP_DESTINATION;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::{ForwardFrame, Frame, SURB_ACK_HOLD, SealedContent};
use protocol::keys::SphinxKeyPair;
use protocol::link::{DELIVERY_PAYLOAD_SIZE, GatewayMessage};
use protocol::packet::Delivery;
use protocol::packet::{DelaySampler, SURB_ID_SIZE, build_packet};
use protocol::surb::{SurbId, build_surb};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Duration;

struct World {
    rng: ChaCha20Rng,
    mixes: Vec<Node>,
    /// Exit mixer of Alice's gateway (A) and of Bob's gateway (B).
    exit_a: Node,
    exit_b: Node,
    gw_a: GatewayCore<MemoryStore>,
    gw_b: GatewayCore<MemoryStore>,
    alice: SphinxKeyPair,
    bob: SphinxKeyPair,
}

fn world(seed: u64) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mixes: Vec<Node> = (0..3).map(|_| node(&mut rng, MixerRole::Mix)).collect();
    let exit_a = node(&mut rng, MixerRole::Exit);
    let exit_b = node(&mut rng, MixerRole::Exit);
    let mut gw_a = memory_core(exit_a.hop.id, GatewayConfig::default());
    let mut gw_b = memory_core(exit_b.hop.id, GatewayConfig::default());
    let alice = SphinxKeyPair::generate(&mut rng);
    let bob = SphinxKeyPair::generate(&mut rng);
    gw_a.register_client(Timestamp::ZERO, &alice.public().to_bytes())
        .unwrap();
    gw_b.register_client(Timestamp::ZERO, &bob.public().to_bytes())
        .unwrap();
    World {
        rng,
        mixes,
        exit_a,
        exit_b,
        gw_a,
        gw_b,
        alice,
        bob,
    }
}

/// Alice sends one fragment to Bob with a SURB-ack back to herself; returns
/// the delivery at Bob's gateway, the fragment id and Alice's SURB recovery.
fn alice_sends_to_bob(
    w: &mut World,
    text: &[u8],
) -> (
    Delivery,
    protocol::fragment::FragmentId,
    protocol::surb::SurbRecovery,
) {
    let delays = DelaySampler::new(MEAN_DELAY).route_delays(4, &mut w.rng);
    let ack_route: Vec<_> = w
        .mixes
        .iter()
        .map(|n| n.hop)
        .chain([w.exit_a.hop])
        .collect();
    let (surb_ack, recovery) = build_surb(
        &mut w.rng,
        &ack_route,
        &delays,
        sphinx_packet::route::DestinationAddressBytes::from_bytes(w.alice.public().to_bytes()),
    )
    .unwrap();
    let fragment = fragment_message(MessageId([7; 16]), text)
        .unwrap()
        .remove(0);
    let fragment_id = fragment.id;
    let content = SealedContent::Data {
        lifetime: None,
        fragment,
    };
    let frame = Frame::Forward(
        ForwardFrame::seal(&content, &w.bob.public(), surb_ack.0, &mut w.rng).unwrap(),
    )
    .encode()
    .unwrap();
    let route: Vec<_> = w
        .mixes
        .iter()
        .map(|n| n.hop)
        .chain([w.exit_b.hop])
        .collect();
    let packet = build_packet(
        &mut w.rng,
        &route,
        &delays,
        sphinx_packet::route::DestinationAddressBytes::from_bytes(w.bob.public().to_bytes()),
        [0; SURB_ID_SIZE],
        &frame,
    )
    .unwrap();
    let hops: Vec<&Node> = w.mixes.iter().chain([&w.exit_b]).collect();
    let (_, action) = traverse(&hops, Timestamp::from_millis(1_000), packet.bytes);
    (delivery(action), fragment_id, recovery)
}

#[test]
fn data_is_stored_then_acked_and_the_ack_reaches_the_sender() {
    let mut w = world(1);
    let (d, fragment_id, recovery) = alice_sends_to_bob(&mut w, b"hello bob");
    assert!(d.surb_id.is_forward());

    let now = Timestamp::from_millis(2_000);
    let report = w.gw_b.handle_delivery(now, d);
    // Bob is offline: stored at once.
    assert_eq!(report.outcomes, [FinalHop::Stored { acked: true }]);
    assert_eq!(w.gw_b.mailbox().usage().messages, 1);
    // The ack leaves at its fixed instant, not before.
    assert!(forwards(&report.actions).is_empty(), "{:?}", report.actions);
    let early = w
        .gw_b
        .handle_timeout(now.saturating_add(SURB_ACK_HOLD - Duration::from_millis(1)));
    assert!(forwards(&early).is_empty(), "{early:?}");
    let actions = w.gw_b.handle_timeout(now.saturating_add(SURB_ACK_HOLD));
    let acks = forwards(&actions);
    assert_eq!(w.gw_b.stats().snapshot().acks_late, 0, "on its instant");
    assert_eq!(acks.len(), 1, "exactly one SURB-ack: {actions:?}");
    assert_eq!(
        acks[0].first_hop, w.mixes[0].hop.id,
        "the ack enters layer 1"
    );
    let s = w.gw_b.stats().snapshot();
    assert_eq!((s.stored, s.acks_sent, s.mailbox_messages), (1, 1, 1));

    // The ack travels L1 → L2 → L3 → Alice's gateway, which stores it sealed for Alice.
    let hops: Vec<&Node> = w.mixes.iter().chain([&w.exit_a]).collect();
    let (at, action) = traverse(&hops, now, acks[0].bytes.clone());
    let ack_delivery = delivery(action);
    assert_eq!(ack_delivery.destination, w.alice.public().to_bytes());
    assert_eq!(ack_delivery.surb_id, recovery.id());
    let alice = w.alice.clone();
    let (_, _) = connect(&mut w.gw_a, &mut w.rng, at, &alice);
    let actions = w.gw_a.handle_delivery(at, ack_delivery).actions;
    assert!(forwards(&actions).is_empty(), "a sealed reply is not acked");
    let pushed: Vec<GatewayMessage> = actions
        .iter()
        .filter_map(|a| match a {
            gateway_core::GatewayAction::Send { bytes, .. } => {
                let mut dec = protocol::link::LinkDecoder::<GatewayMessage>::new();
                dec.push(bytes);
                dec.next_message().unwrap()
            }
            _ => None,
        })
        .collect();
    let [
        GatewayMessage::Deliver {
            surb_id, payload, ..
        },
    ] = pushed.as_slice()
    else {
        panic!("alice is online: the ack is pushed to her, got {pushed:?}");
    };
    assert_eq!(*surb_id, recovery.id());
    let frame = Frame::decode(&recovery.open(payload).unwrap()).unwrap();
    assert_eq!(frame, Frame::Ack);

    // Bob connects and gets the sealed body (the gateway never read it), at
    // the one delivery size.
    let bob = w.bob.clone();
    let (_, messages) = connect(&mut w.gw_b, &mut w.rng, at, &bob);
    let [
        GatewayMessage::Deliver {
            surb_id, payload, ..
        },
    ] = messages.as_slice()
    else {
        panic!("bob gets his message, got {messages:?}");
    };
    assert!(surb_id.is_forward());
    assert_eq!(payload.len(), DELIVERY_PAYLOAD_SIZE);
    let Ok(SealedContent::Data { fragment, .. }) = ForwardFrame::open(w.bob.secret(), payload)
    else {
        panic!("a data fragment sealed to bob");
    };
    assert_eq!(fragment.id, fragment_id);
    assert_eq!(fragment.data, b"hello bob");
}

/// A store whose commits fail.
#[derive(Default)]
struct BrokenStore(MemoryStore);

impl MailboxStore for BrokenStore {
    fn put(&mut self, _: &StoredMessage) -> Result<(), MailboxError> {
        Err(MailboxError::database(std::io::Error::other("disk full")))
    }
    fn list(
        &self,
        c: &ClientKey,
        a: Option<MailboxId>,
        l: usize,
    ) -> Result<Vec<StoredMessage>, MailboxError> {
        self.0.list(c, a, l)
    }
    fn delete(
        &mut self,
        c: &ClientKey,
        id: MailboxId,
    ) -> Result<Option<RemovedMessage>, MailboxError> {
        self.0.delete(c, id)
    }
    fn delete_tagged(
        &mut self,
        c: &ClientKey,
        t: &[protocol::recall::RecallTag],
    ) -> Result<Vec<(protocol::recall::RecallTag, RemovedMessage)>, MailboxError> {
        self.0.delete_tagged(c, t)
    }
    fn expire(&mut self, n: Timestamp, l: usize) -> Result<Vec<RemovedMessage>, MailboxError> {
        self.0.expire(n, l)
    }
    fn next_expiry(&self) -> Result<Option<Timestamp>, MailboxError> {
        self.0.next_expiry()
    }
    fn usage_by_client(&self) -> Result<Vec<(ClientKey, MailboxUsage)>, MailboxError> {
        self.0.usage_by_client()
    }
    fn next_id(&self) -> Result<MailboxId, MailboxError> {
        self.0.next_id()
    }
    fn register_client(
        &mut self,
        c: &ClientKey,
        seen: RegistrationDay,
    ) -> Result<(), MailboxError> {
        self.0.register_client(c, seen)
    }
    fn clients(&self) -> Result<Vec<(ClientKey, Option<RegistrationDay>)>, MailboxError> {
        self.0.clients()
    }
    fn unregister_client(&mut self, c: &ClientKey) -> Result<Vec<RemovedMessage>, MailboxError> {
        self.0.unregister_client(c)
    }
}

#[test]
fn no_ack_leaves_the_gateway_unless_the_message_was_stored() {
    // A failing store: no ack, drop counted.
    let mut w = world(2);
    let (d, _, _) = alice_sends_to_bob(&mut w, b"lost?");
    let mailbox = Mailbox::open(BrokenStore::default(), MailboxConfig::default()).unwrap();
    let mut broken = GatewayCore::new(w.exit_b.hop.id, GatewayConfig::default(), mailbox).unwrap();
    broken
        .register_client(Timestamp::ZERO, &w.bob.public().to_bytes())
        .unwrap();
    let actions = broken.handle_delivery(Timestamp::ZERO, d.clone()).actions;
    assert!(forwards(&actions).is_empty());
    let s = broken.stats().snapshot();
    assert_eq!(s.dropped(GatewayDropReason::StoreFailed), 1);
    assert_eq!((s.stored, s.acks_sent), (0, 0));

    // A full mailbox: no ack either, so the sender retransmits later.
    let mailbox = Mailbox::open(
        MemoryStore::new(),
        MailboxConfig {
            max_messages_per_client: 0,
            ..MailboxConfig::default()
        },
    )
    .unwrap();
    let mut full = GatewayCore::new(w.exit_b.hop.id, GatewayConfig::default(), mailbox).unwrap();
    full.register_client(Timestamp::ZERO, &w.bob.public().to_bytes())
        .unwrap();
    assert!(forwards(&full.handle_delivery(Timestamp::ZERO, d).actions).is_empty());
    assert_eq!(
        full.stats()
            .snapshot()
            .dropped(GatewayDropReason::MailboxFull),
        1
    );
}

/// A forward packet to `to` at Bob's gateway carrying `content` sealed to
/// `to` (to a throwaway key for the drop address), with a SURB-ack to Alice.
fn forward_delivery(w: &mut World, to: [u8; 32], content: &SealedContent) -> Delivery {
    let delays = DelaySampler::new(MEAN_DELAY).route_delays(4, &mut w.rng);
    let ack_route: Vec<_> = w
        .mixes
        .iter()
        .map(|n| n.hop)
        .chain([w.exit_a.hop])
        .collect();
    let (surb_ack, _) = build_surb(
        &mut w.rng,
        &ack_route,
        &delays,
        sphinx_packet::route::DestinationAddressBytes::from_bytes(w.alice.public().to_bytes()),
    )
    .unwrap();
    let seal_to = if to == DROP_DESTINATION {
        SphinxKeyPair::generate(&mut w.rng).public()
    } else {
        x25519_dalek::PublicKey::from(to)
    };
    let frame =
        Frame::Forward(ForwardFrame::seal(content, &seal_to, surb_ack.0, &mut w.rng).unwrap());
    let route: Vec<_> = w
        .mixes
        .iter()
        .map(|n| n.hop)
        .chain([w.exit_b.hop])
        .collect();
    let packet = build_packet(
        &mut w.rng,
        &route,
        &delays,
        sphinx_packet::route::DestinationAddressBytes::from_bytes(to),
        [0; SURB_ID_SIZE],
        &frame.encode().unwrap(),
    )
    .unwrap();
    let hops: Vec<&Node> = w.mixes.iter().chain([&w.exit_b]).collect();
    delivery(traverse(&hops, Timestamp::ZERO, packet.bytes).1)
}

#[test]
fn cover_unknown_clients_and_garbage_are_sorted_and_counted() {
    let mut w = world(3);
    let bob = w.bob.public().to_bytes();
    let stranger = SphinxKeyPair::generate(&mut w.rng).public().to_bytes();

    // Drop cover is acknowledged like mail (at the same instant), then discarded.
    let drop_cover = forward_delivery(&mut w, DROP_DESTINATION, &SealedContent::DropCover);
    let report = w.gw_b.handle_delivery(Timestamp::ZERO, drop_cover);
    assert!(forwards(&report.actions).is_empty());
    let released = w
        .gw_b
        .handle_timeout(Timestamp::ZERO.saturating_add(SURB_ACK_HOLD));
    assert_eq!(forwards(&released).len(), 1, "its SURB-ack goes back");
    assert_eq!(report.outcomes, [FinalHop::Discarded { acked: true }]);
    // Loop cover is mail: stored, acknowledged.
    let loop_cover = SealedContent::LoopCover { id: [4; 16] };
    let looped = forward_delivery(&mut w, bob, &loop_cover);
    let report = w.gw_b.handle_delivery(Timestamp::ZERO, looped);
    let released = w
        .gw_b
        .handle_timeout(Timestamp::ZERO.saturating_add(SURB_ACK_HOLD));
    assert_eq!(forwards(&released).len(), 1);
    assert_eq!(report.outcomes, [FinalHop::Stored { acked: true }]);
    let to_stranger = forward_delivery(&mut w, stranger, &loop_cover);
    let garbage = Delivery {
        destination: bob,
        surb_id: SurbId([0; SURB_ID_SIZE]),
        payload: vec![0xAB; 100],
    };
    let report = w
        .gw_b
        .handle_deliveries(Timestamp::ZERO, [to_stranger, garbage]);
    assert_eq!(
        report.outcomes,
        [
            FinalHop::Dropped(GatewayDropReason::UnknownClient),
            FinalHop::Dropped(GatewayDropReason::BadPayload)
        ]
    );

    let s = w.gw_b.stats().snapshot();
    assert_eq!(s.dropped(GatewayDropReason::DropCover), 1);
    assert_eq!(s.dropped(GatewayDropReason::UnknownClient), 1);
    assert_eq!(s.dropped(GatewayDropReason::BadPayload), 1);
    assert_eq!(s.dropped_total(), 3);
    assert_eq!(s.stored, 1, "only the loop cover is kept");

    // The loop comes to Bob like data, so he can count it.
    let key = w.bob.clone();
    let (_, messages) = connect(&mut w.gw_b, &mut w.rng, Timestamp::ZERO, &key);
    let [GatewayMessage::Deliver { payload, .. }] = messages.as_slice() else {
        panic!("one message, got {messages:?}");
    };
    assert_eq!(
        ForwardFrame::open(w.bob.secret(), payload).unwrap(),
        loop_cover
    );
}

/// With no SURB-ack hold (so no pushing before storing), as a gateway that
/// commits every delivery before its ack.
#[test]
fn a_batch_of_deliveries_is_committed_once_then_acked() {
    let mut w = world(4);
    let mut batch = Vec::new();
    let mut fragments = Vec::new();
    for text in [b"one".as_slice(), b"two", b"three"] {
        let (d, id, _) = alice_sends_to_bob(&mut w, text);
        batch.push(d);
        fragments.push(id);
    }
    let bob = w.bob.public().to_bytes();
    batch.push(forward_delivery(
        &mut w,
        DROP_DESTINATION,
        &SealedContent::DropCover,
    ));
    batch.push(reply_to_stranger());

    let store = CountingStore::default();
    let commits = store.commits.clone();
    let mailbox = Mailbox::open(store, MailboxConfig::default()).unwrap();
    let config = GatewayConfig {
        surb_ack_hold: Duration::ZERO,
        ..GatewayConfig::default()
    };
    let mut core = GatewayCore::new(w.exit_b.hop.id, config, mailbox).unwrap();
    core.register_client(Timestamp::ZERO, &bob).unwrap();
    let key = w.bob.clone();
    let (mut c, _) = connect(&mut core, &mut w.rng, Timestamp::ZERO, &key);

    let actions = core.handle_deliveries(Timestamp::ZERO, batch).actions;
    assert_eq!(commits.get(), 1, "one commit for the whole batch");
    assert_eq!(
        forwards(&actions).len(),
        4,
        "one ack per stored fragment, and one for the drop cover"
    );
    let pushed = c.receive(&actions);
    assert_eq!(mailbox_ids(&pushed).len(), 3);
    let s = core.stats().snapshot();
    assert_eq!((s.stored, s.acks_sent), (3, 4));
    assert_eq!(s.dropped(GatewayDropReason::DropCover), 1);
    assert_eq!(s.dropped(GatewayDropReason::UnknownClient), 1);

    // Acks that arrive together are deleted together.
    let bytes: Vec<u8> = mailbox_ids(&pushed)
        .into_iter()
        .flat_map(|id| {
            protocol::link::LinkMessage::encode(&protocol::link::ClientMessage::AckDelivery {
                mailbox_id: id,
            })
        })
        .collect();
    core.handle_client_bytes(Timestamp::ZERO, c.session, &bytes);
    assert_eq!(commits.get(), 2);
    let s = core.stats().snapshot();
    assert_eq!((s.acknowledged, s.mailbox_messages), (3, 0));
}

fn reply_to_stranger() -> Delivery {
    Delivery {
        destination: [0xEE; 32],
        surb_id: SurbId([3; SURB_ID_SIZE]),
        payload: vec![1; 10],
    }
}

#[test]
fn a_sender_lifetime_shortens_retention_and_expiry_is_counted() {
    let mut w = world(5);
    let bob = w.bob.public().to_bytes();
    let data = |text: &[u8], seed: u8, lifetime| SealedContent::Data {
        lifetime,
        fragment: fragment_message(MessageId([seed; 16]), text)
            .unwrap()
            .remove(0),
    };
    let short = forward_delivery(&mut w, bob, &data(b"gone soon", 1, Some(1)));
    let long = forward_delivery(&mut w, bob, &data(b"stays", 2, None));
    // Retention 24 h (the default), sweeps every 60 s (the default).
    assert_eq!(
        w.gw_b.mailbox().config().retention,
        std::time::Duration::from_secs(24 * 3600)
    );
    let arrival = Timestamp::from_millis(5_000);
    w.gw_b.handle_deliveries(arrival, [short, long]);
    assert_eq!(w.gw_b.mailbox().usage().messages, 2);

    // Drive the core by its own timer, as the shell would.
    let mut now = arrival;
    let mut expired_at = None;
    while now <= arrival.saturating_add(std::time::Duration::from_secs(7_200)) {
        w.gw_b.handle_timeout(now);
        if expired_at.is_none() && w.gw_b.stats().snapshot().expired > 0 {
            expired_at = Some(now);
        }
        now = w
            .gw_b
            .next_timeout()
            .max(now.saturating_add(std::time::Duration::from_millis(1)));
    }
    assert_eq!(
        expired_at,
        Some(arrival.saturating_add(std::time::Duration::from_secs(3_600))),
        "the 1 s lifetime is read as its bucket (one hour) and expires then, \
         not at the next 60 s sweep"
    );
    let s = w.gw_b.stats().snapshot();
    assert_eq!((s.expired, s.mailbox_messages), (1, 1));

    // Bob comes back to the message without a lifetime only.
    let key = w.bob.clone();
    let (_, messages) = connect(&mut w.gw_b, &mut w.rng, now, &key);
    let [GatewayMessage::Deliver { payload, .. }] = messages.as_slice() else {
        panic!("one message left, got {messages:?}");
    };
    let Ok(SealedContent::Data { lifetime, fragment }) =
        ForwardFrame::open(w.bob.secret(), payload)
    else {
        panic!("a data fragment");
    };
    assert_eq!(lifetime, None);
    assert_eq!(fragment.data, b"stays");
}

/// Bob's gateway over a store that counts commits, with Bob registered.
fn counting_core(w: &World, config: MailboxConfig) -> (GatewayCore<CountingStore>, CommitCount) {
    let store = CountingStore::default();
    let commits = store.commits.clone();
    let mailbox = Mailbox::open(store, config).unwrap();
    let mut core = GatewayCore::new(w.exit_b.hop.id, GatewayConfig::default(), mailbox).unwrap();
    core.register_client(Timestamp::ZERO, &w.bob.public().to_bytes())
        .unwrap();
    (core, commits)
}

type CommitCount = std::rc::Rc<std::cell::Cell<usize>>;

/// A one-fragment message, "hi", of message id `[seed; 16]`.
fn hi(seed: u8) -> SealedContent {
    SealedContent::Data {
        lifetime: None,
        fragment: fragment_message(MessageId([seed; 16]), b"hi")
            .unwrap()
            .remove(0),
    }
}

fn ack_bytes(ids: &[u64]) -> Vec<u8> {
    ids.iter()
        .flat_map(|id| {
            protocol::link::LinkMessage::encode(&protocol::link::ClientMessage::AckDelivery {
                mailbox_id: *id,
            })
        })
        .collect()
}

/// Drives `core` by its own timer from `from` to `until`; returns the
/// instants at which SURB-acks left, one entry per ack.
fn ack_instants<S: MailboxStore>(
    core: &mut GatewayCore<S>,
    from: Timestamp,
    until: Timestamp,
) -> Vec<Timestamp> {
    let mut instants = Vec::new();
    let mut now = from;
    while now <= until {
        let actions = core.handle_timeout(now);
        instants.extend(forwards(&actions).iter().map(|_| now));
        now = core
            .next_timeout()
            .max(now.saturating_add(Duration::from_millis(1)));
    }
    instants
}

#[test]
fn an_online_clients_message_is_pushed_at_once_and_never_stored_once_taken() {
    let mut w = world(6);
    let (mut core, commits) = counting_core(&w, MailboxConfig::default());
    let key = w.bob.clone();
    let start = Timestamp::from_millis(1_000);
    let (mut c, _) = connect(&mut core, &mut w.rng, start, &key);
    let before = commits.get();

    let (d, _, _) = alice_sends_to_bob(&mut w, b"hello bob");
    let report = core.handle_deliveries(start, [d]);
    assert_eq!(report.outcomes, [FinalHop::Pushed { acked: true }]);
    let ids = mailbox_ids(&c.receive(&report.actions));
    assert_eq!(ids.len(), 1, "pushed in the same call");
    assert!(forwards(&report.actions).is_empty(), "its ack waits");
    assert_eq!(commits.get(), before, "nothing written");
    assert_eq!(core.stats().snapshot().held, 1);

    // Bob takes it 20 ms later: still nothing written, ever.
    let taken = start.saturating_add(Duration::from_millis(20));
    core.handle_client_bytes(taken, c.session, &ack_bytes(&ids));
    let instants = ack_instants(&mut core, taken, start.saturating_add(SURB_ACK_HOLD * 2));
    assert_eq!(instants, [start.saturating_add(SURB_ACK_HOLD)]);
    assert_eq!(
        commits.get(),
        before,
        "taken before its store: never written"
    );
    let s = core.stats().snapshot();
    assert_eq!((s.taken_unstored, s.held, s.stored), (1, 0, 0));
    assert_eq!((s.acks_sent, s.mailbox_messages), (1, 0));
}

#[test]
fn a_message_not_taken_in_time_is_stored_and_acked_when_an_offline_clients_is() {
    let mut w = world(7);
    let (mut core, commits) = counting_core(&w, MailboxConfig::default());
    let carol = SphinxKeyPair::generate(&mut w.rng);
    let carol_key = carol.public().to_bytes();
    core.register_client(Timestamp::ZERO, &carol_key).unwrap();
    let bob = w.bob.clone();
    let start = Timestamp::from_millis(1_000);
    let (mut c, _) = connect(&mut core, &mut w.rng, start, &bob);
    let to_bob = forward_delivery(&mut w, bob.public().to_bytes(), &hi(1));
    let to_carol = forward_delivery(&mut w, carol_key, &hi(2));

    // Bob is online, Carol is not: his is pushed, hers stored at once.
    let report = core.handle_deliveries(start, [to_bob, to_carol]);
    assert_eq!(
        report.outcomes,
        [
            FinalHop::Pushed { acked: true },
            FinalHop::Stored { acked: true }
        ]
    );
    let ids = mailbox_ids(&c.receive(&report.actions));
    assert_eq!(ids.len(), 1);
    assert_eq!(core.mailbox().client_usage(&carol_key).messages, 1);

    // Bob never acknowledges: at half the hold his is written.
    let half = start.saturating_add(SURB_ACK_HOLD / 2);
    let written = commits.get();
    core.handle_timeout(Timestamp::from_nanos(half.as_nanos() - 1));
    assert_eq!(commits.get(), written, "not before half the hold");
    core.handle_timeout(half);
    assert_eq!(commits.get(), written + 1, "one commit");
    assert_eq!(
        core.mailbox()
            .client_usage(&bob.public().to_bytes())
            .messages,
        1
    );
    assert_eq!(core.stats().snapshot().held, 0);

    // Both acks leave at the same instant, whoever was online.
    let instants = ack_instants(&mut core, half, start.saturating_add(SURB_ACK_HOLD * 2));
    let at = start.saturating_add(SURB_ACK_HOLD);
    assert_eq!(instants, [at, at]);

    // His late acknowledgement deletes the stored copy; nothing is pushed again.
    let actions = core.handle_client_bytes(at, c.session, &ack_bytes(&ids));
    assert!(mailbox_ids(&c.receive(&actions)).is_empty());
    let s = core.stats().snapshot();
    assert_eq!((s.acknowledged, s.taken_unstored), (1, 0));
    assert_eq!(
        core.mailbox()
            .client_usage(&bob.public().to_bytes())
            .messages,
        0
    );
}

#[test]
fn a_held_message_that_cannot_be_stored_is_never_acked() {
    let mut w = world(8);
    let config = MailboxConfig {
        max_messages_per_client: 1,
        ..MailboxConfig::default()
    };
    let (mut core, _) = counting_core(&w, config);
    let bob = w.bob.clone();
    // One message waits while Bob is offline: his quota is full.
    let first = forward_delivery(&mut w, bob.public().to_bytes(), &hi(1));
    core.handle_delivery(Timestamp::ZERO, first);
    let sent = ack_instants(&mut core, Timestamp::ZERO, Timestamp::from_millis(3_000));
    assert_eq!(sent.len(), 1);

    // He connects and gets it, does not acknowledge it; a second is pushed.
    let start = Timestamp::from_millis(5_000);
    let (mut c, pushed) = connect(&mut core, &mut w.rng, start, &bob);
    assert_eq!(mailbox_ids(&pushed).len(), 1);
    let second = forward_delivery(&mut w, bob.public().to_bytes(), &hi(2));
    let report = core.handle_delivery(start, second);
    assert_eq!(report.outcomes, [FinalHop::Pushed { acked: true }]);
    assert_eq!(mailbox_ids(&c.receive(&report.actions)).len(), 1);

    // Not taken, and no room to store it: dropped, and its ack withdrawn.
    let sent = ack_instants(&mut core, start, start.saturating_add(SURB_ACK_HOLD * 2));
    assert!(sent.is_empty(), "{sent:?}");
    let s = core.stats().snapshot();
    assert_eq!(s.dropped(GatewayDropReason::MailboxFull), 1);
    assert_eq!((s.held, s.acks_sent), (0, 1));
}

#[test]
fn a_client_back_before_the_hold_ends_gets_what_its_last_session_did_not_take() {
    let mut w = world(9);
    let (mut core, _) = counting_core(&w, MailboxConfig::default());
    let bob = w.bob.clone();
    let key = bob.public().to_bytes();
    let start = Timestamp::from_millis(1_000);
    let (mut c, _) = connect(&mut core, &mut w.rng, start, &bob);
    let pushed = forward_delivery(&mut w, key, &hi(1));
    let report = core.handle_delivery(start, pushed);
    let held = mailbox_ids(&c.receive(&report.actions));
    assert_eq!(held.len(), 1);
    core.close_session(c.session);

    // One more while he is away (stored at once), then he is back, 100 ms
    // after the first arrived: both come, in the order they arrived.
    let later = start.saturating_add(Duration::from_millis(50));
    let stored = forward_delivery(&mut w, key, &hi(2));
    assert_eq!(
        core.handle_delivery(later, stored).outcomes,
        [FinalHop::Stored { acked: true }]
    );
    let back = start.saturating_add(Duration::from_millis(100));
    let (c, pushed) = connect(&mut core, &mut w.rng, back, &bob);
    let ids = mailbox_ids(&pushed);
    assert_eq!(ids.len(), 2, "{pushed:?}");
    assert_eq!(
        ids[0], held[0],
        "the held one first, under the id it was pushed with"
    );
    assert!(ids[0] < ids[1]);
    core.handle_client_bytes(back, c.session, &ack_bytes(&ids));
    assert_eq!(core.mailbox().client_usage(&key).messages, 0);
    let sent = ack_instants(&mut core, back, start.saturating_add(SURB_ACK_HOLD * 2));
    assert_eq!(
        sent,
        [
            start.saturating_add(SURB_ACK_HOLD),
            later.saturating_add(SURB_ACK_HOLD)
        ]
    );
}

#[test]
fn a_revoked_clients_held_messages_are_neither_stored_nor_acked() {
    let mut w = world(10);
    let (mut core, _) = counting_core(&w, MailboxConfig::default());
    let bob = w.bob.clone();
    let key = bob.public().to_bytes();
    let start = Timestamp::from_millis(1_000);
    let (mut c, _) = connect(&mut core, &mut w.rng, start, &bob);
    let (d, _, _) = alice_sends_to_bob(&mut w, b"hello bob");
    let report = core.handle_delivery(start, d);
    assert_eq!(report.outcomes, [FinalHop::Pushed { acked: true }]);
    assert_eq!(mailbox_ids(&c.receive(&report.actions)).len(), 1);

    let mut actions = Vec::new();
    assert!(core.revoke(&key, &mut actions));
    c.receive(&actions);
    assert!(c.closed, "his session is closed");
    let sent = ack_instants(&mut core, start, start.saturating_add(SURB_ACK_HOLD * 2));
    assert!(sent.is_empty(), "no ack for what he never took: {sent:?}");
    let s = core.stats().snapshot();
    assert_eq!((s.held, s.stored, s.mailbox_messages), (0, 0, 0));
}

#[test]
fn an_ack_released_well_past_its_instant_is_counted_late() {
    let mut w = world(11);
    let (d, _, _) = alice_sends_to_bob(&mut w, b"hello bob");
    let now = Timestamp::from_millis(2_000);
    w.gw_b.handle_delivery(now, d);
    // The core's timer ran late (a stalled loop, a slow disk).
    let late = now
        .saturating_add(SURB_ACK_HOLD)
        .saturating_add(gateway_core::core::ACK_LATE_AFTER)
        .saturating_add(Duration::from_millis(1));
    let actions = w.gw_b.handle_timeout(late);
    assert_eq!(forwards(&actions).len(), 1, "it still leaves");
    let s = w.gw_b.stats().snapshot();
    assert_eq!((s.acks_sent, s.acks_late), (1, 1));
}
