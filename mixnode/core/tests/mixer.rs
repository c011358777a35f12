//! Behaviour of the mixing state machine across hops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use mixnode_core::{Action, DropReason, Mixer, MixerConfig, MixerRole, SphinxCodec, Transmit};
use protocol::ClientAddress;
use protocol::epoch::Epoch;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::{FRAGMENT_CAPACITY, ForwardFrame, Frame, LifetimeBucket};
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::packet::{
    DelaySampler, PACKET_SIZE, RouteHop, SURB_ID_SIZE, build_packet, build_packet_with_version,
};
use protocol::replay::ReplayFilterConfig;
use protocol::seal::SEALED_SIZE;
use protocol::sphinx::HeaderVersion;
use protocol::surb::{build_surb, open_forward_payload, use_surb};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Node {
    mixer: Mixer,
    hop: RouteHop,
    key: SphinxKeyPair,
}

fn small_replay() -> ReplayFilterConfig {
    ReplayFilterConfig {
        min_tags_per_epoch: 10_000,
        false_positive_rate: 1e-6,
    }
}

fn node(rng: &mut ChaCha20Rng, role: MixerRole) -> Node {
    let id = IdentityKeyPair::generate(rng).node_id();
    let key = SphinxKeyPair::generate(rng);
    let hop = RouteHop {
        id,
        sphinx_key: key.public(),
    };
    let mixer = Mixer::new(
        id,
        SphinxCodec,
        MixerConfig {
            role,
            replay: small_replay(),
            loop_cover_rate: 10.0,
            ..MixerConfig::default()
        },
    );
    mixer.install_key(Epoch(0), key.clone());
    mixer.rotate(Epoch(0));
    Node { mixer, hop, key }
}

/// Three mix nodes and an exit gateway.
fn network(rng: &mut ChaCha20Rng) -> Vec<Node> {
    let mut nodes: Vec<Node> = (0..3).map(|_| node(rng, MixerRole::Mix)).collect();
    nodes.push(node(rng, MixerRole::Exit));
    nodes
}

fn route(nodes: &[Node]) -> Vec<RouteHop> {
    nodes.iter().map(|n| n.hop).collect()
}

fn client_address(rng: &mut ChaCha20Rng, gateway: NodeId) -> (SphinxKeyPair, ClientAddress) {
    let key = SphinxKeyPair::generate(rng);
    let address = ClientAddress {
        client_key: key.public().to_bytes(),
        gateway,
    };
    (key, address)
}

/// Feeds `packet` through `nodes` starting at `start`, each hop at the
/// instant the previous one released it; returns the release instants and the exit's action.
fn traverse(nodes: &[Node], start: Timestamp, packet: Vec<u8>) -> (Vec<Timestamp>, Action) {
    let mut now = start;
    let mut packet = packet;
    let mut releases = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.mixer.handle_packet(now, &packet).expect("accepted") {
            Action::Forward(Transmit {
                next_hop,
                send_at,
                packet: next,
            }) => {
                assert_eq!(next_hop, nodes[i + 1].hop.id, "forwarded to the next hop");
                assert_eq!(next.len(), PACKET_SIZE);
                releases.push(send_at);
                now = send_at;
                packet = next;
            }
            other => {
                assert_eq!(i, nodes.len() - 1, "only the last hop ends the route");
                return (releases, other);
            }
        }
    }
    panic!("route did not end");
}

fn data_frame(message: &[u8], seed: u8) -> Vec<u8> {
    let fragment = fragment_message(MessageId([seed; 16]), message)
        .unwrap()
        .remove(0);
    Frame::Reply {
        surb_ack: None,
        lifetime: None,
        fragment,
    }
    .encode()
    .unwrap()
}

#[test]
fn four_hops_deliver_the_message_at_the_chosen_instants() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let delays = vec![
        Duration::from_millis(12),
        Duration::from_millis(70),
        Duration::from_micros(3_456),
        Duration::ZERO,
    ];
    let frame = data_frame(b"hello mixnet", 1);
    let packet = build_packet(
        &mut rng,
        &route(&nodes),
        &delays,
        bob.destination(),
        [0; SURB_ID_SIZE],
        &frame,
    )
    .unwrap();
    assert_eq!(packet.first_hop, nodes[0].hop.id);
    let start = Timestamp::from_millis(1_000);
    let (releases, action) = traverse(&nodes, start, packet.bytes);
    let mut expected = start;
    let expected: Vec<Timestamp> = delays[..3]
        .iter()
        .map(|d| {
            expected = expected.saturating_add(*d);
            expected
        })
        .collect();
    assert_eq!(releases, expected);
    let Action::Deliver(delivery) = action else {
        panic!("exit must deliver, got {action:?}");
    };
    assert_eq!(delivery.destination, bob.client_key);
    assert!(delivery.surb_id.is_forward());
    let opened = open_forward_payload(&delivery.payload).unwrap();
    assert_eq!(opened, frame);
    let Frame::Reply { fragment, .. } = Frame::decode(&opened).unwrap() else {
        panic!("kind changed");
    };
    assert_eq!(fragment.data, b"hello mixnet");
}

#[test]
fn every_kind_of_packet_has_the_same_length() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let nodes = network(&mut rng);
    let (_, alice) = client_address(&mut rng, nodes[3].hop.id);
    let r = route(&nodes);
    let delays = DelaySampler::new(Duration::from_millis(50)).route_delays(4, &mut rng);
    let (surb_ack, ack_recovery) = build_surb(&mut rng, &r, &delays, alice.destination()).unwrap();
    let fragment = fragment_message(MessageId([3; 16]), &vec![5u8; FRAGMENT_CAPACITY])
        .unwrap()
        .remove(0);
    let frames = [
        Frame::Forward(ForwardFrame {
            lifetime: LifetimeBucket::Unset,
            recall_tag: protocol::recall::RecallTag([8; 32]),
            surb_ack: surb_ack.0.clone(),
            sealed: Box::new([9; SEALED_SIZE]),
        }),
        Frame::Ack,
        Frame::NodeLoop,
        Frame::Reply {
            surb_ack: None,
            lifetime: None,
            fragment,
        },
    ];
    let mut lengths = Vec::new();
    for f in &frames {
        let bytes = f.encode().unwrap();
        lengths.push(bytes.len());
        let p = build_packet(&mut rng, &r, &delays, alice.destination(), [0; 16], &bytes).unwrap();
        lengths.push(p.bytes.len());
    }
    // The ack and the reply go through SURBs.
    let ack = use_surb(&surb_ack, &frames[1].encode().unwrap()).unwrap();
    lengths.push(ack.bytes.len());
    assert_eq!(ack_recovery.id().0.len(), SURB_ID_SIZE);
    let mut sorted = lengths.clone();
    sorted.dedup();
    assert_eq!(
        lengths
            .iter()
            .filter(|l| **l == PACKET_SIZE || **l == protocol::packet::FRAME_SIZE)
            .count(),
        lengths.len()
    );
    assert!(lengths.iter().filter(|l| **l == PACKET_SIZE).count() == frames.len() + 1);
}

#[test]
fn surb_reply_reaches_its_creator_and_only_it_can_read_it() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let nodes = network(&mut rng);
    let (_, alice) = client_address(&mut rng, nodes[3].hop.id);
    let delays = DelaySampler::new(Duration::from_millis(50)).route_delays(4, &mut rng);
    let (surb, recovery) =
        build_surb(&mut rng, &route(&nodes), &delays, alice.destination()).unwrap();
    let (_, other_recovery) =
        build_surb(&mut rng, &route(&nodes), &delays, alice.destination()).unwrap();

    // Bob answers without knowing Alice's address.
    let fragment = fragment_message(MessageId([4; 16]), b"a reply")
        .unwrap()
        .remove(0);
    let reply = Frame::Reply {
        surb_ack: None,
        lifetime: None,
        fragment,
    }
    .encode()
    .unwrap();
    let packet = use_surb(&surb, &reply).unwrap();
    assert_eq!(packet.first_hop, nodes[0].hop.id);
    let (releases, action) = traverse(&nodes, Timestamp::ZERO, packet.bytes);
    assert_eq!(releases.len(), 3);
    let Action::Deliver(delivery) = action else {
        panic!("exit must deliver");
    };
    assert_eq!(delivery.destination, alice.client_key);
    assert_eq!(delivery.surb_id, recovery.id());
    // The gateway cannot read it as a forward packet; another SURB's recovery cannot either.
    assert!(open_forward_payload(&delivery.payload).is_err());
    assert!(other_recovery.open(&delivery.payload).is_err());
    assert_eq!(recovery.open(&delivery.payload).unwrap(), reply);
}

#[test]
fn a_packet_fed_twice_is_forwarded_once_and_counted_as_replay() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let delays = DelaySampler::new(Duration::from_millis(50)).route_delays(4, &mut rng);
    let p = build_packet(
        &mut rng,
        &route(&nodes),
        &delays,
        bob.destination(),
        [0; 16],
        &data_frame(b"x", 9),
    )
    .unwrap();
    let m = &nodes[0].mixer;
    assert!(matches!(
        m.handle_packet(Timestamp::ZERO, &p.bytes),
        Ok(Action::Forward(_))
    ));
    assert_eq!(
        m.handle_packet(Timestamp::from_millis(5), &p.bytes),
        Err(DropReason::Replay)
    );
    let s = m.stats().snapshot();
    assert_eq!(s.forwarded, 1);
    assert_eq!(s.dropped(DropReason::Replay), 1);
    assert_eq!(s.received, 2);
}

#[test]
fn previous_key_works_during_overlap_and_is_refused_after() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let delays = DelaySampler::new(Duration::from_millis(50)).route_delays(4, &mut rng);
    let build = |rng: &mut ChaCha20Rng, nodes: &[Node]| {
        build_packet(
            rng,
            &route(nodes),
            &delays,
            bob.destination(),
            [0; 16],
            &data_frame(b"k", 1),
        )
        .unwrap()
        .bytes
    };
    let old1 = build(&mut rng, &nodes);
    let old2 = build(&mut rng, &nodes);
    // Epoch 1 begins: the new key is installed and becomes current.
    let new_key = SphinxKeyPair::generate(&mut rng);
    nodes[0].mixer.install_key(Epoch(1), new_key.clone());
    nodes[0].mixer.rotate(Epoch(1));
    nodes[0].hop.sphinx_key = new_key.public();
    let fresh = build(&mut rng, &nodes);
    let l1 = &nodes[0].mixer;
    assert!(matches!(
        l1.handle_packet(Timestamp::ZERO, &old1),
        Ok(Action::Forward(_))
    ));
    assert!(matches!(
        l1.handle_packet(Timestamp::ZERO, &fresh),
        Ok(Action::Forward(_))
    ));
    // Epoch 2: epoch 0's key is retired with its replay tags.
    l1.install_key(Epoch(2), SphinxKeyPair::generate(&mut rng));
    l1.rotate(Epoch(2));
    assert_eq!(l1.live_epochs(), vec![Epoch(1), Epoch(2)]);
    assert_eq!(
        l1.handle_packet(Timestamp::ZERO, &old2),
        Err(DropReason::UnknownKey)
    );
    assert_eq!(l1.stats().snapshot().dropped(DropReason::UnknownKey), 1);
}

#[test]
fn next_key_announced_ahead_is_accepted_before_rotation() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let next = SphinxKeyPair::generate(&mut rng);
    nodes[0].mixer.install_key(Epoch(1), next.clone());
    nodes[0].hop.sphinx_key = next.public();
    let delays = DelaySampler::new(Duration::from_millis(50)).route_delays(4, &mut rng);
    let p = build_packet(
        &mut rng,
        &route(&nodes),
        &delays,
        bob.destination(),
        [0; 16],
        &data_frame(b"n", 2),
    )
    .unwrap();
    assert!(matches!(
        nodes[0].mixer.handle_packet(Timestamp::ZERO, &p.bytes),
        Ok(Action::Forward(_))
    ));
}

#[test]
fn unknown_version_and_excessive_delays_are_dropped_with_their_reason() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let r = route(&nodes);
    let frame = data_frame(b"v", 3);
    let delays = vec![Duration::from_millis(1); 4];
    let m = &nodes[0].mixer;
    // Unknown to every hop, and known (259) but not this network's.
    for version in [HeaderVersion(999), HeaderVersion::PAYLOAD_KEY_SEEDS] {
        let p = build_packet_with_version(
            &mut rng,
            &r,
            &delays,
            bob.destination(),
            [0; 16],
            &frame,
            version,
        )
        .unwrap();
        assert_eq!(
            m.handle_packet(Timestamp::ZERO, &p.bytes),
            Err(DropReason::UnknownVersion)
        );
    }

    for huge in [Duration::from_secs(11), Duration::from_nanos(u64::MAX)] {
        let delays = vec![huge, Duration::ZERO, Duration::ZERO, Duration::ZERO];
        let p = build_packet(&mut rng, &r, &delays, bob.destination(), [0; 16], &frame).unwrap();
        assert_eq!(
            m.handle_packet(Timestamp::MAX, &p.bytes),
            Err(DropReason::DelayTooLong)
        );
    }
    // At the cap exactly, the instant saturates instead of overflowing.
    let delays = vec![
        Duration::from_secs(10),
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    ];
    let p = build_packet(&mut rng, &r, &delays, bob.destination(), [0; 16], &frame).unwrap();
    let Ok(Action::Forward(t)) = m.handle_packet(Timestamp::MAX, &p.bytes) else {
        panic!("at the cap the packet is forwarded");
    };
    assert_eq!(t.send_at, Timestamp::MAX);
    let s = m.stats().snapshot();
    assert_eq!(s.dropped(DropReason::UnknownVersion), 2);
    assert_eq!(s.dropped(DropReason::DelayTooLong), 2);
}

#[test]
fn a_mix_node_refuses_final_hop_packets_for_others() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let r = vec![nodes[0].hop];
    let p = build_packet(
        &mut rng,
        &r,
        &[Duration::ZERO],
        bob.destination(),
        [0; 16],
        &data_frame(b"f", 4),
    )
    .unwrap();
    assert_eq!(
        nodes[0].mixer.handle_packet(Timestamp::ZERO, &p.bytes),
        Err(DropReason::UnexpectedFinalHop)
    );
}

#[test]
fn loop_cover_is_emitted_at_rate_and_comes_back_home() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let nodes = network(&mut rng);
    // Layer-1 node 0 sends cover through the other two mix nodes and back to itself.
    let me = &nodes[0];
    me.mixer.start_cover(Timestamp::ZERO, &mut rng);
    let path = [nodes[1].hop, nodes[2].hop];
    let mut sent = 0;
    let mut first = None;
    let end = Timestamp::from_millis(30_000);
    while let Some(due) = me.mixer.next_cover_at() {
        if due > end {
            break;
        }
        assert!(
            me.mixer
                .poll_cover(Timestamp::from_nanos(due.as_nanos() - 1), &mut rng, &path)
                .is_none()
        );
        let t = me.mixer.poll_cover(due, &mut rng, &path).expect("due");
        assert_eq!(t.send_at, due);
        assert_eq!(t.packet.len(), PACKET_SIZE);
        first.get_or_insert(t);
        sent += 1;
    }
    // λ_M = 10/s over 30 s: 300 expected, standard deviation ~17.
    assert!((240..=360).contains(&sent), "{sent}");
    let t = first.unwrap();
    assert_eq!(t.next_hop, nodes[1].hop.id);
    let mut loop_nodes: Vec<&Node> = vec![&nodes[1], &nodes[2], me];
    let mut packet = t.packet;
    let mut now = t.send_at;
    let last = loop_nodes.pop().unwrap();
    for n in loop_nodes {
        let Ok(Action::Forward(f)) = n.mixer.handle_packet(now, &packet) else {
            panic!("cover forwarded");
        };
        now = f.send_at;
        packet = f.packet;
    }
    assert_eq!(
        last.mixer.handle_packet(now, &packet),
        Ok(Action::LoopReturned)
    );
    let s = me.mixer.stats().snapshot();
    assert_eq!(s.loops_returned, 1);
    assert_eq!(s.cover_sent, sent);
}

#[test]
fn an_exit_gateways_own_loop_cover_crosses_three_layers_and_returns_home() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let nodes = network(&mut rng);
    let gateway = &nodes[3];
    gateway.mixer.start_cover(Timestamp::ZERO, &mut rng);
    let due = gateway.mixer.next_cover_at().expect("λ_M above zero");
    let t = gateway
        .mixer
        .poll_cover(due, &mut rng, &route(&nodes[..3]))
        .expect("due");
    assert_eq!(t.next_hop, nodes[0].hop.id, "into layer 1");
    let (releases, action) = traverse(&nodes, t.send_at, t.packet);
    assert_eq!(releases.len(), 3, "through the three mix layers");
    // Classified as the exit's own loop, not delivered to a client.
    assert_eq!(action, Action::LoopReturned);
    let s = gateway.mixer.stats().snapshot();
    assert_eq!((s.cover_sent, s.loops_returned, s.delivered), (1, 1, 0));

    // A client's packet still reaches its mailbox at the same exit...
    let (_, bob) = client_address(&mut rng, gateway.hop.id);
    let delays = DelaySampler::new(Duration::from_millis(5)).route_delays(4, &mut rng);
    let p = build_packet(
        &mut rng,
        &route(&nodes),
        &delays,
        bob.destination(),
        [0; SURB_ID_SIZE],
        &Frame::NodeLoop.encode().unwrap(),
    )
    .unwrap();
    let (_, action) = traverse(&nodes, Timestamp::ZERO, p.bytes);
    assert!(
        matches!(&action, Action::Deliver(d) if d.destination == bob.client_key),
        "a client's loop is the client's: {action:?}"
    );
    // ...and a packet addressed to the gateway itself that is not loop cover is dropped.
    let p = build_packet(
        &mut rng,
        &route(&nodes),
        &delays,
        gateway.hop.id.to_destination(),
        [0; SURB_ID_SIZE],
        &data_frame(b"not a loop", 6),
    )
    .unwrap();
    let mut now = Timestamp::ZERO;
    let mut packet = p.bytes;
    for n in &nodes[..3] {
        let Ok(Action::Forward(f)) = n.mixer.handle_packet(now, &packet) else {
            panic!("forwarded");
        };
        now = f.send_at;
        packet = f.packet;
    }
    assert_eq!(
        gateway.mixer.handle_packet(now, &packet),
        Err(DropReason::BadPayload)
    );
}

#[test]
fn a_skipped_cover_tick_passes_without_a_packet() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let nodes = network(&mut rng);
    let me = &nodes[3].mixer;
    assert!(
        !me.skip_cover(Timestamp::MAX, &mut rng),
        "cover not started"
    );
    me.start_cover(Timestamp::ZERO, &mut rng);
    let due = me.next_cover_at().unwrap();
    assert!(!me.skip_cover(Timestamp::from_nanos(due.as_nanos() - 1), &mut rng));
    assert!(me.skip_cover(due, &mut rng));
    let next = me.next_cover_at().unwrap();
    assert!(next > due, "the clock moved on");
    assert_eq!(me.stats().snapshot().cover_sent, 0);
}

#[test]
fn replay_state_survives_a_restart() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let nodes = network(&mut rng);
    let (_, bob) = client_address(&mut rng, nodes[3].hop.id);
    let delays = DelaySampler::new(Duration::from_millis(50)).route_delays(4, &mut rng);
    let p = build_packet(
        &mut rng,
        &route(&nodes),
        &delays,
        bob.destination(),
        [0; 16],
        &data_frame(b"r", 5),
    )
    .unwrap();
    let old = &nodes[0].mixer;
    assert!(old.handle_packet(Timestamp::ZERO, &p.bytes).is_ok());
    let saved = old.replay_state();
    // A new process with the same key and the saved filter refuses it.
    let restarted = Mixer::new(old.id(), SphinxCodec, *old.config());
    restarted.install_key(Epoch(0), nodes[0].key.clone());
    restarted.rotate(Epoch(0));
    restarted.restore_replay_state(&saved).unwrap();
    assert_eq!(
        restarted.handle_packet(Timestamp::ZERO, &p.bytes),
        Err(DropReason::Replay)
    );
    // Without the saved filter it would have been accepted again.
    let amnesiac = Mixer::new(old.id(), SphinxCodec, *old.config());
    amnesiac.install_key(Epoch(0), nodes[0].key.clone());
    amnesiac.rotate(Epoch(0));
    assert!(amnesiac.handle_packet(Timestamp::ZERO, &p.bytes).is_ok());
}
