#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! The prekey service with the real core and real Sphinx: a client uploads
//! its bundle and one-time prekeys over its link; a request through the
//! mixes to the gateway's reserved destination is answered through its
//! SURBs with the bundle and one one-time prekey, each handed out once;
//! what cannot be answered is dropped and counted.

mod common;

use std::collections::BTreeSet;

use common::*;
use gateway_core::{
    FinalHop, GatewayConfig, GatewayCore, MemoryStore, PrekeyRequestOutcome, PrekeyUploadKind,
    PrekeyUploadOutcome,
};
use mixnode_core::MixerRole;
use protocol::address::PREKEY_SERVICE_DESTINATION;
use protocol::fragment::Fragment;
use protocol::frame::{BundleRequestFrame, FRAGMENT_CAPACITY, ForwardFrame, Frame, SealedContent};
use protocol::keys::SphinxKeyPair;
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkMessage};
use protocol::packet::{DelaySampler, Delivery, OutgoingPacket, SURB_ID_SIZE, build_packet};
use protocol::prekeys::{
    BUNDLE_ANSWER_OVERHEAD, BundleAnswer, FINGERPRINT_SIZE, MAX_ONE_TIME_PREKEY_SIZE,
    MAX_ONE_TIME_PREKEYS_PER_CLIENT, MAX_PUBLISHED_BUNDLE_SIZE,
};
use protocol::surb::{Surb, SurbId, SurbRecovery, build_surb};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sphinx_packet::route::DestinationAddressBytes;

const ALICE_FP: [u8; FINGERPRINT_SIZE] = [0xA1; FINGERPRINT_SIZE];
/// The asker's own client key, where its SURBs deliver.
const ASKER: [u8; 32] = [9; 32];

struct World {
    rng: ChaCha20Rng,
    mixes: Vec<Node>,
    exit: Node,
    gateway: GatewayCore<MemoryStore>,
}

/// What came of one request: its outcome, the answer packets, and the
/// asker's recoveries for its SURBs.
struct Asked {
    outcome: FinalHop,
    packets: Vec<OutgoingPacket>,
    recoveries: Vec<SurbRecovery>,
}

fn world(seed: u64) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mixes: Vec<Node> = (0..3).map(|_| node(&mut rng, MixerRole::Mix)).collect();
    let exit = node(&mut rng, MixerRole::Exit);
    let gateway = memory_core(exit.hop.id, GatewayConfig::default());
    World {
        rng,
        mixes,
        exit,
        gateway,
    }
}

fn stock(published: bool, one_time_left: u32) -> GatewayMessage {
    GatewayMessage::PrekeyStock {
        published,
        one_time_left,
    }
}

fn publish(fingerprint: [u8; FINGERPRINT_SIZE], published: Vec<u8>) -> ClientMessage {
    ClientMessage::PublishBundle {
        fingerprint,
        published,
    }
}

fn one_time(keys: &[(u32, Vec<u8>)]) -> ClientMessage {
    ClientMessage::AddOneTimePrekeys {
        keys: keys.to_vec(),
    }
}

/// A one-time prekey of the typical size, marked by its id.
fn key(id: u32) -> (u32, Vec<u8>) {
    let mut bytes = vec![id as u8; 1284];
    bytes[..4].copy_from_slice(&id.to_be_bytes());
    (id, bytes)
}

impl World {
    fn client(&mut self) -> LinkClient {
        let key = SphinxKeyPair::generate(&mut self.rng);
        let (client, _) = connect(&mut self.gateway, &mut self.rng, Timestamp::ZERO, &key);
        client
    }

    /// Sends `message` on `client`'s session; returns what came back.
    fn send(&mut self, client: &mut LinkClient, message: &ClientMessage) -> Vec<GatewayMessage> {
        let actions =
            self.gateway
                .handle_client_bytes(Timestamp::ZERO, client.session, &message.encode());
        client.receive(&actions)
    }

    fn route(&self) -> Vec<protocol::packet::RouteHop> {
        self.mixes
            .iter()
            .map(|n| n.hop)
            .chain([self.exit.hop])
            .collect()
    }

    /// A SURB back through the mixes and the gateway to the asker.
    fn surb(&mut self) -> (Surb, SurbRecovery) {
        let delays = DelaySampler::new(MEAN_DELAY).route_delays(4, &mut self.rng);
        let route = self.route();
        build_surb(
            &mut self.rng,
            &route,
            &delays,
            DestinationAddressBytes::from_bytes(ASKER),
        )
        .unwrap()
    }

    /// A real Sphinx packet carrying `frame` to the prekey service, through
    /// the mixes and the gateway's exit mixer: the delivery it makes.
    fn through_mixes(&mut self, frame: &Frame) -> Delivery {
        let delays = DelaySampler::new(MEAN_DELAY).route_delays(4, &mut self.rng);
        let route = self.route();
        let packet = build_packet(
            &mut self.rng,
            &route,
            &delays,
            DestinationAddressBytes::from_bytes(PREKEY_SERVICE_DESTINATION),
            [0; SURB_ID_SIZE],
            &frame.encode().unwrap(),
        )
        .unwrap();
        let nodes: Vec<&Node> = self.mixes.iter().chain([&self.exit]).collect();
        let (_, action) = traverse(&nodes, Timestamp::ZERO, packet.bytes);
        let delivery = delivery(action);
        assert_eq!(delivery.destination, PREKEY_SERVICE_DESTINATION);
        delivery
    }

    /// Asks for `fingerprint`'s bundle with `surbs` SURBs.
    fn ask(&mut self, fingerprint: [u8; FINGERPRINT_SIZE], surbs: usize) -> Asked {
        let (surbs, recoveries): (Vec<Surb>, Vec<SurbRecovery>) =
            (0..surbs).map(|_| self.surb()).unzip();
        let frame = Frame::BundleRequest(BundleRequestFrame { fingerprint, surbs });
        let delivery = self.through_mixes(&frame);
        let report = self.gateway.handle_delivery(Timestamp::ZERO, delivery);
        assert_eq!(report.outcomes.len(), 1);
        Asked {
            outcome: report.outcomes[0],
            packets: forwards(&report.actions),
            recoveries,
        }
    }

    /// What the asker reads: every answer packet through the mixes back to
    /// the gateway, opened with its SURB's recovery, reassembled.
    fn read(&self, asked: &Asked) -> BundleAnswer {
        let nodes: Vec<&Node> = self.mixes.iter().chain([&self.exit]).collect();
        let mut fragments: Vec<Fragment> = Vec::new();
        for packet in &asked.packets {
            assert_eq!(packet.first_hop, self.mixes[0].hop.id);
            let (_, action) = traverse(&nodes, Timestamp::ZERO, packet.bytes.clone());
            let delivery = delivery(action);
            assert_eq!(delivery.destination, ASKER);
            let recovery = asked
                .recoveries
                .iter()
                .find(|r| r.id() == delivery.surb_id)
                .expect("a SURB of the request");
            let frame = Frame::decode(&recovery.open(&delivery.payload).unwrap()).unwrap();
            let Frame::Reply {
                surb_ack: None,
                lifetime: None,
                fragment,
            } = frame
            else {
                panic!("a bare reply, got {frame:?}");
            };
            fragments.push(fragment);
        }
        fragments.sort_by_key(|f| f.id.index);
        let count = fragments.first().expect("an answer").count;
        assert_eq!(usize::from(count), fragments.len());
        assert!(
            fragments
                .iter()
                .all(|f| f.id.message == fragments[0].id.message)
        );
        let bytes: Vec<u8> = fragments.into_iter().flat_map(|f| f.data).collect();
        BundleAnswer::decode(&bytes).unwrap()
    }

    fn requests(&self, outcome: PrekeyRequestOutcome) -> u64 {
        self.gateway.stats().snapshot().prekey_requests(outcome)
    }

    fn uploads(&self, kind: PrekeyUploadKind, outcome: PrekeyUploadOutcome) -> u64 {
        self.gateway
            .stats()
            .snapshot()
            .prekey_uploads(kind, outcome)
    }
}

#[test]
fn the_stock_follows_the_welcome_and_every_upload() {
    let mut w = world(1);
    let keys = SphinxKeyPair::generate(&mut w.rng);
    let (mut alice, messages) = connect_as(
        &mut w.gateway,
        &mut w.rng,
        Timestamp::ZERO,
        &keys,
        keys.public().to_bytes(),
    );
    assert_eq!(messages[..2], [GatewayMessage::Welcome, stock(false, 0)]);
    assert_eq!(
        w.send(&mut alice, &publish(ALICE_FP, vec![1; 1200])),
        [stock(true, 0)]
    );
    assert_eq!(
        w.send(&mut alice, &one_time(&[key(1), key(2)])),
        [stock(true, 2)]
    );
    // The next session hears it again.
    w.gateway.close_session(alice.session);
    let (_, messages) = connect_as(
        &mut w.gateway,
        &mut w.rng,
        Timestamp::ZERO,
        &keys,
        keys.public().to_bytes(),
    );
    assert_eq!(messages[..2], [GatewayMessage::Welcome, stock(true, 2)]);
    assert_eq!(w.gateway.stats().snapshot().published_bundles, 1);
}

#[test]
fn each_answer_carries_the_bundle_and_another_one_time_key_until_none_is_left() {
    let mut w = world(2);
    let mut alice = w.client();
    let bundle: Vec<u8> = (0..1200).map(|i| i as u8).collect();
    w.send(&mut alice, &publish(ALICE_FP, bundle.clone()));
    let uploaded = [key(10), key(11), key(12)];
    assert_eq!(w.send(&mut alice, &one_time(&uploaded)), [stock(true, 3)]);

    let mut handed = BTreeSet::new();
    for left in (0..3u32).rev() {
        let asked = w.ask(ALICE_FP, 2);
        assert_eq!(
            asked.outcome,
            FinalHop::Prekey(PrekeyRequestOutcome::Served)
        );
        assert_eq!(
            asked.packets.len(),
            2,
            "an answer of about 2.5 KB: two fragments"
        );
        let answer = w.read(&asked);
        assert_eq!(answer.published, bundle);
        let given = answer.one_time.expect("a one-time key");
        assert!(uploaded.iter().any(|(_, k)| *k == given));
        assert!(handed.insert(given), "each key handed out once");
        // The stock drops with each answer.
        assert_eq!(w.send(&mut alice, &one_time(&[])), [stock(true, left)]);
    }
    assert_eq!(handed.len(), 3);

    // None left: the bundle alone, in one fragment.
    let asked = w.ask(ALICE_FP, 2);
    assert_eq!(
        asked.outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::ServedWithoutOneTime)
    );
    assert_eq!(asked.packets.len(), 1);
    let answer = w.read(&asked);
    assert_eq!((answer.published, answer.one_time), (bundle, None));

    let s = w.gateway.stats().snapshot();
    assert_eq!(s.prekey_requests(PrekeyRequestOutcome::Served), 3);
    assert_eq!(
        s.prekey_requests(PrekeyRequestOutcome::ServedWithoutOneTime),
        1
    );
    assert_eq!(s.one_time_handed, 3);
    assert_eq!(
        s.prekey_uploads(PrekeyUploadKind::OneTime, PrekeyUploadOutcome::Stored),
        3
    );
    assert_eq!(s.acks_sent, 0, "answers are not SURB-acks");
}

#[test]
fn an_unknown_fingerprint_gets_no_answer_and_is_counted() {
    let mut w = world(3);
    let mut alice = w.client();
    w.send(&mut alice, &publish(ALICE_FP, vec![1; 100]));
    let asked = w.ask([0xEE; FINGERPRINT_SIZE], 2);
    assert_eq!(
        asked.outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::Unknown)
    );
    assert!(asked.packets.is_empty());
    assert_eq!(w.requests(PrekeyRequestOutcome::Unknown), 1);
    assert_eq!(w.gateway.stats().snapshot().dropped_total(), 0);
}

#[test]
fn a_second_client_cannot_claim_a_held_fingerprint() {
    let mut w = world(4);
    let mut alice = w.client();
    let mut mallory = w.client();
    w.send(&mut alice, &publish(ALICE_FP, vec![1; 100]));
    assert_eq!(
        w.send(&mut mallory, &publish(ALICE_FP, vec![2; 100])),
        [stock(false, 0)]
    );
    assert_eq!(
        w.uploads(
            PrekeyUploadKind::Published,
            PrekeyUploadOutcome::FingerprintTaken
        ),
        1
    );
    let asked = w.ask(ALICE_FP, 2);
    assert_eq!(w.read(&asked).published, vec![1; 100], "still Alice's");
    // Alice moving to a new fingerprint releases the old one, and drops the
    // one-time keys of the old identity.
    w.send(&mut alice, &one_time(&[key(1)]));
    assert_eq!(
        w.send(&mut alice, &publish([0xA2; FINGERPRINT_SIZE], vec![3; 100])),
        [stock(true, 0)]
    );
    assert_eq!(
        w.send(&mut mallory, &publish(ALICE_FP, vec![2; 100])),
        [stock(true, 0)]
    );
    assert_eq!(w.gateway.stats().snapshot().published_bundles, 2);
}

#[test]
fn oversize_empty_and_surplus_uploads_are_refused_and_counted() {
    let mut w = world(5);
    let mut alice = w.client();
    assert_eq!(
        w.send(
            &mut alice,
            &publish(ALICE_FP, vec![1; MAX_PUBLISHED_BUNDLE_SIZE + 1])
        ),
        [stock(false, 0)]
    );
    assert_eq!(
        w.send(&mut alice, &publish(ALICE_FP, Vec::new())),
        [stock(false, 0)]
    );
    assert_eq!(
        w.uploads(PrekeyUploadKind::Published, PrekeyUploadOutcome::BadSize),
        2
    );
    assert_eq!(
        w.send(
            &mut alice,
            &publish(ALICE_FP, vec![1; MAX_PUBLISHED_BUNDLE_SIZE])
        ),
        [stock(true, 0)]
    );
    let batch = [
        (1, vec![1; MAX_ONE_TIME_PREKEY_SIZE + 1]),
        (2, Vec::new()),
        (3, vec![3; MAX_ONE_TIME_PREKEY_SIZE]),
    ];
    assert_eq!(w.send(&mut alice, &one_time(&batch)), [stock(true, 1)]);
    assert_eq!(
        w.uploads(PrekeyUploadKind::OneTime, PrekeyUploadOutcome::BadSize),
        2
    );
    // The cap, and ids already kept.
    for first in (10..).step_by(3).take(40) {
        let keys: Vec<_> = (first..first + 3).map(|id| (id, vec![7; 10])).collect();
        w.send(&mut alice, &one_time(&keys));
    }
    assert_eq!(
        w.send(&mut alice, &one_time(&[(3, vec![1; 10])])),
        [stock(true, MAX_ONE_TIME_PREKEYS_PER_CLIENT as u32)]
    );
    assert_eq!(
        w.uploads(PrekeyUploadKind::OneTime, PrekeyUploadOutcome::Full),
        120 + 1 - MAX_ONE_TIME_PREKEYS_PER_CLIENT as u64
    );
    assert_eq!(
        w.uploads(PrekeyUploadKind::OneTime, PrekeyUploadOutcome::Duplicate),
        1
    );
    assert!(!alice.closed, "a refused upload keeps the session");
}

#[test]
fn uploads_before_authentication_and_broken_uploads_close_the_session() {
    let mut w = world(6);
    for message in [publish(ALICE_FP, vec![1; 10]), one_time(&[key(1)])] {
        let (session, _) = w
            .gateway
            .open_session(Timestamp::ZERO, LOOPBACK, &mut w.rng);
        let actions = w
            .gateway
            .handle_client_bytes(Timestamp::ZERO, session, &message.encode());
        assert!(actions.iter().any(|a| matches!(
            a,
            gateway_core::GatewayAction::Close {
                reason: CloseReason::Malformed,
                ..
            }
        )));
    }
    let mut alice = w.client();
    // A batch whose second entry is cut short, and a bundle with no fingerprint.
    let mut broken = one_time(&[key(1), key(2)]).encode();
    broken.truncate(broken.len() - 1);
    let len = u16::try_from(broken.len() - 2).unwrap();
    broken[..2].copy_from_slice(&len.to_be_bytes());
    let actions = w
        .gateway
        .handle_client_bytes(Timestamp::ZERO, alice.session, &broken);
    alice.receive(&actions);
    assert!(alice.closed);
    let mut bob = w.client();
    let actions = w.gateway.handle_client_bytes(
        Timestamp::ZERO,
        bob.session,
        &[
            0,
            12,
            protocol::link::LINK_VERSION,
            0x85,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
        ],
    );
    bob.receive(&actions);
    assert!(bob.closed);
    let s = w.gateway.stats().snapshot();
    assert_eq!(s.malformed, 4);
    assert_eq!(s.prekey_uploads.iter().sum::<u64>(), 0, "nothing uploaded");
    assert_eq!(w.gateway.prekeys().published_count().unwrap(), 0);
}

#[test]
fn an_answer_that_needs_more_surbs_than_given_is_not_sent() {
    let mut w = world(7);
    let mut alice = w.client();
    // Bundle and key fit two fragments, not one.
    w.send(&mut alice, &publish(ALICE_FP, vec![1; 1200]));
    w.send(&mut alice, &one_time(&[key(1)]));
    let asked = w.ask(ALICE_FP, 1);
    assert_eq!(
        asked.outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::ServedWithoutOneTime),
        "one SURB: the bundle alone, the key kept for an asker with room"
    );
    assert_eq!(w.read(&asked).one_time, None);
    assert_eq!(w.send(&mut alice, &one_time(&[])), [stock(true, 1)]);
    // A bundle that does not fit one fragment: no answer at all.
    let big = FRAGMENT_CAPACITY - BUNDLE_ANSWER_OVERHEAD + 1;
    w.send(&mut alice, &publish(ALICE_FP, vec![1; big]));
    let asked = w.ask(ALICE_FP, 1);
    assert_eq!(
        asked.outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::TooFewSurbs)
    );
    assert!(asked.packets.is_empty());
    assert_eq!(w.send(&mut alice, &one_time(&[])), [stock(true, 1)]);
    // With two SURBs it is served, key included.
    let asked = w.ask(ALICE_FP, 2);
    assert_eq!(
        asked.outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::Served)
    );
    assert_eq!(w.read(&asked).published.len(), big);
}

#[test]
fn anything_else_at_the_service_is_malformed_and_unanswered() {
    let mut w = world(8);
    let mut alice = w.client();
    w.send(&mut alice, &publish(ALICE_FP, vec![1; 100]));
    w.send(&mut alice, &one_time(&[key(1)]));
    // A forward frame (mail) to the service's address.
    let (surb, _) = w.surb();
    let mail = ForwardFrame::seal(
        &SealedContent::DropCover,
        &alice.key.public(),
        surb.0,
        &mut w.rng,
    )
    .unwrap();
    let delivery = w.through_mixes(&Frame::Forward(mail));
    let mut deliveries = vec![delivery.clone()];
    // A SURB packet to it, and a payload that does not open.
    deliveries.push(Delivery {
        surb_id: SurbId([5; SURB_ID_SIZE]),
        ..delivery.clone()
    });
    deliveries.push(Delivery {
        payload: vec![0; 10],
        ..delivery
    });
    let report = w.gateway.handle_deliveries(Timestamp::ZERO, deliveries);
    assert_eq!(
        report.outcomes,
        [FinalHop::Prekey(PrekeyRequestOutcome::Malformed); 3]
    );
    assert!(report.actions.is_empty());
    // A bundle request sent to a client's address is no request.
    let (surb, _) = w.surb();
    let request = Frame::BundleRequest(BundleRequestFrame {
        fingerprint: ALICE_FP,
        surbs: vec![surb],
    });
    let misaddressed = Delivery {
        destination: alice.client_key(),
        ..w.through_mixes(&request)
    };
    let report = w.gateway.handle_delivery(Timestamp::ZERO, misaddressed);
    assert_eq!(
        report.outcomes,
        [FinalHop::Dropped(
            gateway_core::GatewayDropReason::BadPayload
        )]
    );
    assert_eq!(w.requests(PrekeyRequestOutcome::Malformed), 3);
    assert_eq!(
        w.send(&mut alice, &one_time(&[])),
        [stock(true, 1)],
        "no key spent"
    );
}

#[test]
fn a_revoked_client_takes_its_prekeys_along() {
    let mut w = world(9);
    let mut alice = w.client();
    w.send(&mut alice, &publish(ALICE_FP, vec![1; 100]));
    w.send(&mut alice, &one_time(&[key(1)]));
    assert_eq!(w.gateway.stats().snapshot().published_bundles, 1);
    let mut actions = Vec::new();
    assert!(w.gateway.revoke(&alice.client_key(), &mut actions));
    assert_eq!(w.gateway.stats().snapshot().published_bundles, 0);
    assert_eq!(
        w.gateway.prekeys().stock(&alice.client_key()).unwrap(),
        (false, 0)
    );
    let asked = w.ask(ALICE_FP, 2);
    assert_eq!(
        asked.outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::Unknown)
    );
}

#[test]
fn a_client_unused_past_the_expiry_takes_its_prekeys_along() {
    let mut w = world(10);
    let mut alice = w.client();
    w.send(&mut alice, &publish(ALICE_FP, vec![1; 100]));
    w.gateway.close_session(alice.session);
    let later = Timestamp::ZERO.saturating_add(std::time::Duration::from_secs(200 * 86_400));
    assert_eq!(w.gateway.expire_registrations(later), 1);
    assert_eq!(w.gateway.prekeys().published_count().unwrap(), 0);
    assert_eq!(
        w.ask(ALICE_FP, 2).outcome,
        FinalHop::Prekey(PrekeyRequestOutcome::Unknown)
    );
}
