#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! Client sessions: authentication, delivery with acknowledgements,
//! redelivery after a disconnect, throttling.

mod common;

use common::*;
use gateway_core::{
    FinalHop, GatewayAction, GatewayConfig, GatewayCore, GatewayDropReason, MemoryStore,
    ThrottleConfig,
};
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkMessage};
use protocol::packet::Delivery;
use protocol::packet::{PACKET_SIZE, SURB_ID_SIZE};
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const GW: NodeId = NodeId([42; 32]);

/// A sealed SURB reply for `client`: stored as it comes, no crypto needed.
fn reply_for(client: [u8; 32], n: u8) -> Delivery {
    Delivery {
        destination: client,
        surb_id: SurbId([n.max(1); SURB_ID_SIZE]),
        payload: vec![n; protocol::link::DELIVERY_PAYLOAD_SIZE],
    }
}

fn setup(seed: u64, config: GatewayConfig) -> (ChaCha20Rng, GatewayCore<MemoryStore>) {
    (ChaCha20Rng::seed_from_u64(seed), memory_core(GW, config))
}

fn ack(core: &mut GatewayCore<MemoryStore>, client: &LinkClient, id: u64) -> Vec<GatewayAction> {
    let bytes = ClientMessage::AckDelivery { mailbox_id: id }.encode();
    core.handle_client_bytes(Timestamp::ZERO, client.session, &bytes)
}

#[test]
fn a_client_with_the_wrong_key_is_refused_and_reads_nothing() {
    let (mut rng, mut core) = setup(1, GatewayConfig::default());
    let bob = SphinxKeyPair::generate(&mut rng);
    let bob_key = bob.public().to_bytes();
    core.register_client(Timestamp::ZERO, &bob_key).unwrap();
    core.handle_delivery(Timestamp::ZERO, reply_for(bob_key, 1));

    // Mallory claims Bob's key but holds another secret.
    let mallory = SphinxKeyPair::generate(&mut rng);
    let (mut m, messages) = connect_as(&mut core, &mut rng, Timestamp::ZERO, &mallory, bob_key);
    assert_eq!(
        messages,
        vec![GatewayMessage::Close {
            reason: CloseReason::AuthFailed
        }]
    );
    assert!(m.closed);
    assert!(!core.is_online(&bob_key));
    assert_eq!(core.session_count(), 0);
    // Whatever it sends after that goes nowhere, and Bob's message is untouched.
    let after = ack(&mut core, &m, 0);
    assert!(m.receive(&after).is_empty());
    assert_eq!(core.mailbox().client_usage(&bob_key).messages, 1);
    let s = core.stats().snapshot();
    assert_eq!((s.auth_refused, s.authenticated, s.delivered), (1, 0, 0));

    // A low-order key with an all-zero proof is refused too.
    let (_, messages) = connect_as(&mut core, &mut rng, Timestamp::ZERO, &mallory, [0; 32]);
    assert!(matches!(
        messages.as_slice(),
        [GatewayMessage::Close {
            reason: CloseReason::AuthFailed
        }]
    ));

    // Bob himself gets in.
    let (_, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    assert_eq!(mailbox_ids(&messages).len(), 1);
}

#[test]
fn packets_before_authentication_close_the_session() {
    let (mut rng, mut core) = setup(2, GatewayConfig::default());
    let (session, _) = core.open_session(Timestamp::ZERO, LOOPBACK, &mut rng);
    let send = ClientMessage::SendPacket {
        first_hop: NodeId([1; 32]),
        packet: Box::new([0; PACKET_SIZE]),
    };
    let actions = core.handle_client_bytes(Timestamp::ZERO, session, &send.encode());
    assert!(forwards(&actions).is_empty());
    assert!(actions.contains(&GatewayAction::Close {
        session,
        reason: CloseReason::Malformed
    }));
    let s = core.stats().snapshot();
    assert_eq!(s.dropped(GatewayDropReason::Unauthenticated), 1);
    assert_eq!(s.malformed, 1);
}

#[test]
fn disconnect_mid_delivery_redelivers_each_unacked_message_exactly_once() {
    let (mut rng, mut core) = setup(3, GatewayConfig::default());
    let bob = SphinxKeyPair::generate(&mut rng);
    let key = bob.public().to_bytes();
    core.register_client(Timestamp::ZERO, &key).unwrap();
    for n in 1..=5 {
        core.handle_delivery(Timestamp::ZERO, reply_for(key, n));
    }

    // First session: all five pushed in order; Bob acks two, then drops.
    let (first, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    let ids = mailbox_ids(&messages);
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    ack(&mut core, &first, ids[0]);
    ack(&mut core, &first, ids[3]);
    // One more arrives while Bob is connected: pushed once, at once, and
    // held in memory rather than stored.
    let report = core.handle_delivery(Timestamp::ZERO, reply_for(key, 6));
    assert_eq!(report.outcomes, [FinalHop::Pushed { acked: false }]);
    let mut first = first;
    let late = mailbox_ids(&first.receive(&report.actions));
    assert_eq!(late.len(), 1);
    assert!(late[0] > ids[4], "its id follows the stored ones");
    core.close_session(first.session);
    assert!(!core.is_online(&key));
    assert_eq!(core.mailbox().client_usage(&key).messages, 3);
    assert_eq!(core.stats().snapshot().held, 1);

    // Second session (before the held one's hold ended: Bob's return stores
    // it): exactly the four unacked ones, each once, in order.
    let (second, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    assert_eq!(core.stats().snapshot().held, 0);
    let again = mailbox_ids(&messages);
    assert_eq!(again, vec![ids[1], ids[2], ids[4], late[0]]);
    for id in &again {
        let actions = ack(&mut core, &second, *id);
        assert!(
            mailbox_ids(&LinkClient::receive_all(&actions)).is_empty(),
            "an ack never triggers a second push"
        );
    }
    assert_eq!(core.mailbox().usage().messages, 0);
    core.close_session(second.session);

    // Third session: nothing left.
    let (_, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    assert!(messages.is_empty());
    let s = core.stats().snapshot();
    assert_eq!(s.acknowledged, 6);
    assert_eq!(s.delivered, 6 + 4);
    assert_eq!(s.mailbox_messages, 0);
}

#[test]
fn the_delivery_window_bounds_unacked_pushes() {
    let config = GatewayConfig {
        delivery_window: 2,
        ..GatewayConfig::default()
    };
    let (mut rng, mut core) = setup(4, config);
    let bob = SphinxKeyPair::generate(&mut rng);
    let key = bob.public().to_bytes();
    core.register_client(Timestamp::ZERO, &key).unwrap();
    for n in 1..=5 {
        core.handle_delivery(Timestamp::ZERO, reply_for(key, n));
    }
    let (mut c, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    let ids = mailbox_ids(&messages);
    assert_eq!(ids.len(), 2);
    // Acking an id that is not Bob's, or twice, frees nothing and deletes nothing.
    let actions = ack(&mut core, &c, 999);
    assert!(mailbox_ids(&c.receive(&actions)).is_empty());
    let actions = ack(&mut core, &c, ids[0]);
    assert_eq!(mailbox_ids(&c.receive(&actions)).len(), 1);
    let actions = ack(&mut core, &c, ids[0]);
    assert!(mailbox_ids(&c.receive(&actions)).is_empty());
    assert_eq!(core.mailbox().client_usage(&key).messages, 4);
}

#[test]
fn a_new_session_replaces_the_old_one_and_late_auth_times_out() {
    let (mut rng, mut core) = setup(5, GatewayConfig::default());
    let bob = SphinxKeyPair::generate(&mut rng);
    let key = bob.public().to_bytes();
    let (mut old, _) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    assert!(core.is_registered(&key), "open registration");
    let (session, actions) = core.open_session(Timestamp::ZERO, LOOPBACK, &mut rng);
    let mut new = LinkClient {
        key: bob.clone(),
        session,
        decoder: protocol::link::LinkDecoder::new(),
        closed: false,
    };
    let [GatewayMessage::Challenge { gateway, ephemeral }] = new.receive(&actions)[..] else {
        panic!("challenge");
    };
    let proof = protocol::link::auth::prove(bob.secret(), &gateway, &ephemeral);
    let auth = ClientMessage::Authenticate {
        client_key: key,
        proof,
    };
    let actions = core.handle_client_bytes(Timestamp::ZERO, session, &auth.encode());
    assert_eq!(
        old.receive(&actions),
        vec![GatewayMessage::Close {
            reason: CloseReason::Replaced
        }]
    );
    assert!(old.closed);
    assert_eq!(
        new.receive(&actions),
        vec![
            GatewayMessage::Welcome,
            GatewayMessage::PrekeyStock {
                published: false,
                one_time_left: 0
            }
        ]
    );
    assert_eq!(core.session_count(), 1);
    let s = core.stats().snapshot();
    assert_eq!((s.sessions, s.online_clients), (1, 1));

    // A connection that never answers its challenge is closed at the deadline.
    let (silent, _) = core.open_session(Timestamp::ZERO, LOOPBACK, &mut rng);
    let deadline = core.next_timeout();
    assert_eq!(deadline, Timestamp::ZERO, "the first sweep is due at once");
    core.handle_timeout(Timestamp::ZERO);
    assert_eq!(core.next_timeout(), Timestamp::from_millis(10_000));
    assert!(
        core.handle_timeout(Timestamp::from_millis(9_999))
            .is_empty()
    );
    let actions = core.handle_timeout(Timestamp::from_millis(10_000));
    assert!(actions.contains(&GatewayAction::Close {
        session: silent,
        reason: CloseReason::AuthTimeout
    }));
    assert_eq!(core.session_count(), 1);
    core.close_session(new.session);
    let s = core.stats().snapshot();
    assert_eq!((s.sessions, s.online_clients), (0, 0));
}

#[test]
fn throttling_drops_a_flooding_client_without_touching_a_normal_one() {
    let config = GatewayConfig {
        throttle: ThrottleConfig {
            rate: 10.0,
            burst: 5.0,
        },
        ..GatewayConfig::default()
    };
    let (mut rng, mut core) = setup(6, config);
    let flooder = SphinxKeyPair::generate(&mut rng);
    let normal = SphinxKeyPair::generate(&mut rng);
    let (f, _) = connect(&mut core, &mut rng, Timestamp::ZERO, &flooder);
    let (n, _) = connect(&mut core, &mut rng, Timestamp::ZERO, &normal);
    let packet = |tag: u8| {
        ClientMessage::SendPacket {
            first_hop: NodeId([tag; 32]),
            packet: Box::new([tag; PACKET_SIZE]),
        }
        .encode()
    };
    let (mut from_flooder, mut from_normal) = (0, 0);
    // Two seconds: the flooder sends 50 packets every 100 ms, the normal client 1 every 200 ms (5/s).
    for tick in 0..=20u64 {
        let now = Timestamp::from_millis(tick * 100);
        let burst: Vec<u8> = (0..50).flat_map(|_| packet(1)).collect();
        let actions = core.handle_client_bytes(now, f.session, &burst);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, GatewayAction::Close { .. }))
        );
        from_flooder += forwards(&actions).len();
        if tick % 2 == 0 {
            let actions = core.handle_client_bytes(now, n.session, &packet(2));
            let out = forwards(&actions);
            assert_eq!(out.len(), 1, "the normal client is never throttled");
            assert_eq!(out[0].first_hop, NodeId([2; 32]));
            assert_eq!(out[0].bytes, vec![2u8; PACKET_SIZE]);
            from_normal += 1;
        }
    }
    // Burst of 5, then 10 per second for 2 s.
    assert_eq!(from_flooder, 5 + 20);
    assert_eq!(from_normal, 11);
    let s = core.stats().snapshot();
    assert_eq!(s.forwarded, 25 + 11);
    assert_eq!(s.throttled, 21 * 50 - 25);
    assert_eq!(s.dropped(GatewayDropReason::Throttled), s.throttled);

    // Reconnecting does not refill the bucket.
    core.close_session(f.session);
    let now = Timestamp::from_millis(2_000);
    let (f2, _) = connect(&mut core, &mut rng, now, &flooder);
    assert!(forwards(&core.handle_client_bytes(now, f2.session, &packet(1))).is_empty());
}

#[test]
fn packets_for_a_node_outside_layer_1_are_dropped_once_layer_1_is_known() {
    let (mut rng, mut core) = setup(7, GatewayConfig::default());
    let alice = SphinxKeyPair::generate(&mut rng);
    let (a, _) = connect(&mut core, &mut rng, Timestamp::ZERO, &alice);
    let to = |hop: u8| {
        ClientMessage::SendPacket {
            first_hop: NodeId([hop; 32]),
            packet: Box::new([hop; PACKET_SIZE]),
        }
        .encode()
    };
    // Before the topology is known every first hop is accepted.
    assert_eq!(
        forwards(&core.handle_client_bytes(Timestamp::ZERO, a.session, &to(9))).len(),
        1
    );
    core.set_layer1([NodeId([1; 32]), NodeId([2; 32])]);
    assert_eq!(
        forwards(&core.handle_client_bytes(Timestamp::ZERO, a.session, &to(2))).len(),
        1
    );
    assert!(forwards(&core.handle_client_bytes(Timestamp::ZERO, a.session, &to(9))).is_empty());
    let s = core.stats().snapshot();
    assert_eq!(s.dropped(GatewayDropReason::NotLayer1), 1);
    assert_eq!(s.forwarded, 2);
}

/// Same seed, same inputs ⇒ the same actions, byte for byte (the simulator relies on it).
#[test]
fn the_core_is_deterministic_for_a_seed() {
    fn run(seed: u64) -> Vec<GatewayAction> {
        let (mut rng, mut core) = setup(seed, GatewayConfig::default());
        let bob = SphinxKeyPair::generate(&mut rng);
        let key = bob.public().to_bytes();
        core.register_client(Timestamp::ZERO, &key).unwrap();
        let mut trace = Vec::new();
        trace.extend(
            core.handle_delivery(Timestamp::ZERO, reply_for(key, 1))
                .actions,
        );
        let (session, actions) = core.open_session(Timestamp::ZERO, LOOPBACK, &mut rng);
        trace.extend(actions.clone());
        let [GatewayMessage::Challenge { gateway, ephemeral }] =
            LinkClient::receive_all(&actions)[..]
        else {
            panic!("challenge");
        };
        let auth = ClientMessage::Authenticate {
            client_key: key,
            proof: protocol::link::auth::prove(bob.secret(), &gateway, &ephemeral),
        };
        trace.extend(core.handle_client_bytes(Timestamp::ZERO, session, &auth.encode()));
        trace.extend(
            core.handle_delivery(Timestamp::ZERO, reply_for(key, 2))
                .actions,
        );
        trace.extend(core.handle_timeout(Timestamp::from_millis(20_000)));
        trace
    }
    assert_eq!(run(8), run(8));
    assert_ne!(run(8), run(9));
}

#[test]
fn acks_read_without_a_commit_go_with_the_next_commit_and_then_push_more() {
    let config = GatewayConfig {
        delivery_window: 1,
        ..GatewayConfig::default()
    };
    let (mut rng, mut core) = setup(40, config);
    let bob = SphinxKeyPair::generate(&mut rng);
    let carol = SphinxKeyPair::generate(&mut rng);
    let (bob_key, carol_key) = (bob.public().to_bytes(), carol.public().to_bytes());
    core.register_client(Timestamp::ZERO, &bob_key).unwrap();
    core.register_client(Timestamp::ZERO, &carol_key).unwrap();
    for n in 1..=2 {
        core.handle_delivery(Timestamp::ZERO, reply_for(bob_key, n));
        core.handle_delivery(Timestamp::ZERO, reply_for(carol_key, n));
    }
    let (mut b, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &bob);
    let bob_first = mailbox_ids(&messages);
    let (mut c, messages) = connect(&mut core, &mut rng, Timestamp::ZERO, &carol);
    let carol_first = mailbox_ids(&messages);
    assert_eq!((bob_first.len(), carol_first.len()), (1, 1));

    // Both acks read: nothing deleted, nothing pushed yet.
    for (client, id) in [(&b, bob_first[0]), (&c, carol_first[0])] {
        let bytes = ClientMessage::AckDelivery { mailbox_id: id }.encode();
        let actions = core.read_client_bytes(Timestamp::ZERO, client.session, &bytes);
        assert!(actions.is_empty());
    }
    assert_eq!(core.mailbox().usage().messages, 4);

    // The next delivery batch deletes them in its commit, then pushes the
    // next message of each session that acknowledged.
    let report = core.handle_deliveries(Timestamp::ZERO, [reply_for(bob_key, 3)]);
    assert_eq!(core.mailbox().usage().messages, 3);
    assert_eq!(core.stats().snapshot().acknowledged, 2);
    assert_eq!(mailbox_ids(&b.receive(&report.actions)).len(), 1);
    assert_eq!(mailbox_ids(&c.receive(&report.actions)).len(), 1);
    assert!(core.commit_acks().is_empty());
}
