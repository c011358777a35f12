//! Our Sphinx against `sphinx-packet` 0.8, byte for byte.
//!
//! Random routes of 3 and 4 hops, forward packets and SURB replies. Every
//! round builds one packet with each implementation: the reference's packet
//! is rebuilt by ours from the same randomness (the initial secret, and the
//! final padding read back out of the packet) and must come out identical;
//! ours is handed to the reference. Then both implementations process every
//! packet hop by hop, and at each hop the replay tag, the next hop, the
//! delay and the whole next packet (or the final hop's destination, SURB id
//! and payload) must be the same. 1 250 rounds per case, four cases: 10 000
//! packets, each processed by both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use aes::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use proptest::prelude::*;
use protocol::sphinx::{
    self, Destination, HeaderVersion, NodePublicKey, PacketGeometry, PacketRandomness,
    ReceivedPacket, ReplyBlock, ReplyKeys, RouteNode, UnwrappedPacket,
};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::payload::Payload;
use sphinx_packet::route::{self, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::version::Version;
use sphinx_packet::{
    ProcessedPacketData, SURB, SURBMaterial, SphinxPacket, SphinxPacketBuilder, SurbReplyRecovery,
};
use x25519_dalek::{PublicKey, StaticSecret};

const ROUNDS_PER_TEST: usize = 625;
const PAYLOAD_SIZE: usize = 2_065;
const VERSION: HeaderVersion = HeaderVersion::SINGLE_SEED_SURB;

/// A route, as both implementations want it, with its nodes' secret keys.
struct Route {
    secrets: Vec<StaticSecret>,
    theirs: Vec<Node>,
    ours: Vec<RouteNode>,
    delays: Vec<Duration>,
}

fn bytes32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

fn random_delay(rng: &mut ChaCha20Rng) -> Duration {
    match rng.random_range(0..10u32) {
        0 => Duration::ZERO,
        1 => Duration::from_nanos(rng.next_u64()),
        _ => Duration::from_nanos(rng.random_range(0..10_000_000_000u64)),
    }
}

fn route_from(
    secrets: Vec<StaticSecret>,
    addresses: Vec<[u8; 32]>,
    delays: Vec<Duration>,
) -> Route {
    let theirs = secrets
        .iter()
        .zip(&addresses)
        .map(|(s, a)| Node::new(NodeAddressBytes::from_bytes(*a), PublicKey::from(s)))
        .collect();
    let ours = secrets
        .iter()
        .zip(&addresses)
        .map(|(s, a)| RouteNode {
            address: *a,
            key: NodePublicKey::try_from(&PublicKey::from(s)).unwrap(),
        })
        .collect();
    Route {
        secrets,
        theirs,
        ours,
        delays,
    }
}

fn random_route(rng: &mut ChaCha20Rng, hops: usize) -> Route {
    let secrets = (0..hops)
        .map(|_| StaticSecret::from(bytes32(rng)))
        .collect();
    let addresses = (0..hops).map(|_| bytes32(rng)).collect();
    let delays = (0..hops).map(|_| random_delay(rng)).collect();
    route_from(secrets, addresses, delays)
}

fn their_delays(route: &Route) -> Vec<Delay> {
    route
        .delays
        .iter()
        .map(|d| Delay::new_from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
        .collect()
}

fn format() -> PacketGeometry {
    PacketGeometry {
        version: VERSION,
        payload_size: PAYLOAD_SIZE,
    }
}

/// The final padding the reference drew for `packet` (from its thread RNG):
/// decrypt the final hop's routing information with an independent
/// HKDF + AES-CTR and read the bytes after its 52-byte instruction.
fn final_padding(route: &Route, packet: &[u8]) -> Vec<u8> {
    let mut packet = packet.to_vec();
    for secret in &route.secrets[..route.secrets.len() - 1] {
        let p = SphinxPacket::from_bytes(&packet).unwrap();
        match p.process(secret).unwrap().data {
            ProcessedPacketData::ForwardHop {
                next_hop_packet, ..
            } => packet = next_hop_packet.to_bytes(),
            ProcessedPacketData::FinalHop { .. } => panic!("final hop too early"),
        }
    }
    let last = route.secrets.last().unwrap();
    let alpha: [u8; 32] = packet[..32].try_into().unwrap();
    let shared = last.diffie_hellman(&PublicKey::from(alpha));
    let mut okm = [0u8; 288];
    Hkdf::<Sha256>::new(Some(b""), shared.as_bytes())
        .expand(
            sphinx_packet::constants::EXPANDED_SHARED_SECRET_HKDF_INFO,
            &mut okm,
        )
        .unwrap();
    let key: [u8; 16] = okm[..16].try_into().unwrap();
    let mut routing = packet[48..348].to_vec();
    ctr::Ctr64BE::<aes::Aes128>::new((&key).into(), (&[0u8; 16]).into())
        .apply_keystream(&mut routing);
    let padding_len = 300 - 60 * (route.secrets.len() - 1) - 52;
    routing[52..52 + padding_len].to_vec()
}

/// What one hop made of a packet, in a form both implementations share.
#[derive(Debug, PartialEq, Eq)]
enum Hop {
    Forward {
        next_hop: [u8; 32],
        delay: Duration,
        packet: Vec<u8>,
    },
    Final {
        destination: [u8; 32],
        surb_id: [u8; 16],
        payload: Vec<u8>,
    },
}

fn their_hop(secret: &StaticSecret, packet: &[u8]) -> ([u8; 32], Hop) {
    let p = SphinxPacket::from_bytes(packet).unwrap();
    let expanded = p.header.compute_expanded_shared_secret(secret);
    p.header.ensure_header_integrity(&expanded).unwrap();
    let processed = p.process_with_expanded_secret(&expanded).unwrap();
    assert_eq!(processed.version.value(), VERSION.0);
    let hop = match processed.data {
        ProcessedPacketData::ForwardHop {
            next_hop_packet,
            next_hop_address,
            delay,
        } => Hop::Forward {
            next_hop: next_hop_address.to_bytes(),
            delay: delay.to_duration(),
            packet: next_hop_packet.to_bytes(),
        },
        ProcessedPacketData::FinalHop {
            destination,
            identifier,
            payload,
        } => Hop::Final {
            destination: destination.as_bytes(),
            surb_id: identifier,
            payload: payload.into_bytes(),
        },
    };
    (*expanded.replay_tag(), hop)
}

fn our_hop(secret: &StaticSecret, packet: &[u8]) -> ([u8; 32], Hop) {
    let opened = ReceivedPacket::parse(packet).unwrap().open(secret).unwrap();
    let tag = *opened.replay_tag();
    let hop = match opened.finish().unwrap() {
        UnwrappedPacket::Forward {
            version,
            next_hop,
            delay,
            packet,
        } => {
            assert_eq!(version, VERSION);
            Hop::Forward {
                next_hop,
                delay,
                packet,
            }
        }
        UnwrappedPacket::Final {
            version,
            destination,
            surb_id,
            payload,
        } => {
            assert_eq!(version, VERSION);
            Hop::Final {
                destination,
                surb_id,
                payload,
            }
        }
    };
    (tag, hop)
}

/// Processes `packet` along `route` with both implementations, asserting
/// they agree at every hop; returns the final hop's payload.
fn walk_both(route: &Route, destination: &Destination, packet: Vec<u8>) -> Vec<u8> {
    let mut packet = packet;
    for (i, secret) in route.secrets.iter().enumerate() {
        let theirs = their_hop(secret, &packet);
        let ours = our_hop(secret, &packet);
        assert_eq!(ours, theirs, "hop {i} of {}", route.secrets.len());
        match ours.1 {
            Hop::Forward {
                next_hop,
                delay,
                packet: next,
            } => {
                assert_eq!(next_hop, route.ours[i + 1].address);
                assert_eq!(delay, route.delays[i].min(Duration::from_nanos(u64::MAX)));
                packet = next;
            }
            Hop::Final {
                destination: d,
                surb_id,
                payload,
            } => {
                assert_eq!(i + 1, route.secrets.len());
                assert_eq!(d, destination.address);
                assert_eq!(surb_id, destination.surb_id);
                return payload;
            }
        }
    }
    panic!("no final hop");
}

fn their_destination(d: &Destination) -> route::Destination {
    route::Destination::new(DestinationAddressBytes::from_bytes(d.address), d.surb_id)
}

fn random_message(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let len = match rng.random_range(0..4u32) {
        0 => PAYLOAD_SIZE - 17,
        _ => rng.random_range(0..=PAYLOAD_SIZE - 17),
    };
    let mut m = vec![0u8; len];
    rng.fill_bytes(&mut m);
    m
}

/// One forward round: a packet from each implementation, both processed by both.
fn forward_round(rng: &mut ChaCha20Rng, route: &Route) {
    let destination = Destination {
        address: bytes32(rng),
        surb_id: [0u8; 16],
    };
    let message = random_message(rng);

    // Built by the reference, rebuilt by us from the same randomness.
    let initial = bytes32(rng);
    let theirs = SphinxPacketBuilder::new()
        .with_version(Version::new(VERSION.0))
        .with_payload_size(PAYLOAD_SIZE)
        .with_initial_secret(&StaticSecret::from(initial))
        .build_packet(
            &message,
            &route.theirs,
            &their_destination(&destination),
            &their_delays(route),
        )
        .unwrap()
        .to_bytes();
    let randomness = PacketRandomness::from_parts(initial, &final_padding(route, &theirs));
    let ours = sphinx::build_packet(
        &randomness,
        &route.ours,
        &route.delays,
        &destination,
        &message,
        format(),
    )
    .unwrap();
    assert_eq!(ours, theirs, "rebuilt packet differs");
    let payload = walk_both(route, &destination, theirs);
    assert_eq!(sphinx::decode_payload(&payload).unwrap(), message);

    // Built by us with fresh randomness, read by the reference.
    let ours = sphinx::build_packet_with_rng(
        rng,
        &route.ours,
        &route.delays,
        &destination,
        &message,
        format(),
    )
    .unwrap();
    let payload = walk_both(route, &destination, ours);
    let theirs = Payload::from_bytes(&payload)
        .unwrap()
        .recover_plaintext()
        .unwrap();
    assert_eq!(theirs, message);
}

/// One SURB round: a SURB from each implementation, used by the other,
/// the reply processed by both and opened by both.
fn surb_round(rng: &mut ChaCha20Rng, route: &Route) {
    let mut surb_id = [0u8; 16];
    while surb_id == [0u8; 16] {
        rng.fill_bytes(&mut surb_id);
    }
    let destination = Destination {
        address: bytes32(rng),
        surb_id,
    };
    let message = random_message(rng);

    // The reference's SURB, rebuilt by us.
    let initial = bytes32(rng);
    let material = SURBMaterial::new(
        route.theirs.clone(),
        their_delays(route),
        their_destination(&destination),
        Version::new(VERSION.0),
    );
    let (their_surb, their_keys) =
        SURB::new_recoverable(StaticSecret::from(initial), material).unwrap();
    let their_surb_bytes = their_surb.to_bytes();
    let (reply, first_hop) = their_surb.use_surb(&message, PAYLOAD_SIZE).unwrap();
    assert_eq!(first_hop.to_bytes(), route.ours[0].address);
    let reply = reply.to_bytes();
    let randomness = PacketRandomness::from_parts(initial, &final_padding(route, &reply));
    let (block, keys) = sphinx::build_surb(
        &randomness,
        &route.ours,
        &route.delays,
        &destination,
        VERSION,
    )
    .unwrap();
    let keys = keys.unwrap();
    assert_eq!(block.to_bytes(), their_surb_bytes, "rebuilt SURB differs");
    assert_eq!(keys.to_bytes(), their_keys.to_bytes(), "SURB keys differ");
    let ours_reply = ReplyBlock::from_bytes(&their_surb_bytes)
        .unwrap()
        .seal(&message, PAYLOAD_SIZE)
        .unwrap();
    assert_eq!(ours_reply, reply, "reply through the SURB differs");
    let sealed = walk_both(route, &destination, reply);
    assert_eq!(keys.open(&sealed).unwrap(), message);
    assert_eq!(
        their_keys
            .recover_plaintext(Payload::from_bytes(&sealed).unwrap())
            .unwrap(),
        message
    );

    // Our SURB with fresh randomness, used and opened by the reference.
    let randomness = PacketRandomness::draw(rng);
    let (block, keys) = sphinx::build_surb(
        &randomness,
        &route.ours,
        &route.delays,
        &destination,
        VERSION,
    )
    .unwrap();
    let keys = keys.unwrap();
    let (their_reply, _) = SURB::from_bytes(&block.to_bytes())
        .unwrap()
        .use_surb(&message, PAYLOAD_SIZE)
        .unwrap();
    let their_reply = their_reply.to_bytes();
    assert_eq!(block.seal(&message, PAYLOAD_SIZE).unwrap(), their_reply);
    let sealed = walk_both(route, &destination, their_reply);
    let their_keys = SurbReplyRecovery::from_bytes(&keys.to_bytes()).unwrap();
    assert_eq!(
        their_keys
            .recover_plaintext(Payload::from_bytes(&sealed).unwrap())
            .unwrap(),
        message
    );
    assert_eq!(
        ReplyKeys::from_bytes(&keys.to_bytes())
            .unwrap()
            .open(&sealed)
            .unwrap(),
        message
    );
}

fn run_case(seed: u64, hops: usize, round: fn(&mut ChaCha20Rng, &Route)) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for _ in 0..ROUNDS_PER_TEST {
        // A fresh route every round: keys, addresses and delays vary too.
        let route = random_route(&mut rng, hops);
        round(&mut rng, &route);
    }
}

#[test]
fn forward_packets_of_3_hops_are_identical() {
    run_case(3, 3, forward_round);
}

#[test]
fn forward_packets_of_3_hops_are_identical_again() {
    run_case(103, 3, forward_round);
}

#[test]
fn forward_packets_of_4_hops_are_identical() {
    run_case(4, 4, forward_round);
}

#[test]
fn forward_packets_of_4_hops_are_identical_again() {
    run_case(104, 4, forward_round);
}

#[test]
fn surb_replies_of_3_hops_are_identical() {
    run_case(13, 3, surb_round);
}

#[test]
fn surb_replies_of_3_hops_are_identical_again() {
    run_case(113, 3, surb_round);
}

#[test]
fn surb_replies_of_4_hops_are_identical() {
    run_case(14, 4, surb_round);
}

#[test]
fn surb_replies_of_4_hops_are_identical_again() {
    run_case(114, 4, surb_round);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any keys, any route of 1 to 5 hops, any delays (nanosecond
    /// extremes included), any addresses and SURB id, any payload size:
    /// same packet, same processing.
    #[test]
    fn any_route_any_keys_any_delays(
        secrets in prop::collection::vec(any::<[u8; 32]>(), 1..=5),
        addresses in prop::collection::vec(any::<[u8; 32]>(), 5),
        delays in prop::collection::vec(any::<u64>(), 5),
        initial in any::<[u8; 32]>(),
        padding in prop::collection::vec(any::<u8>(), sphinx::MAX_FINAL_PADDING),
        destination in any::<[u8; 32]>(),
        surb_id in any::<[u8; 16]>(),
        payload_size in 33usize..3000,
        message_seed in any::<u64>(),
    ) {
        let hops = secrets.len();
        let route = route_from(
            secrets.into_iter().map(StaticSecret::from).collect(),
            addresses[..hops].to_vec(),
            delays[..hops].iter().map(|d| Duration::from_nanos(*d)).collect(),
        );
        let destination = Destination { address: destination, surb_id };
        let mut rng = ChaCha20Rng::seed_from_u64(message_seed);
        let mut message = vec![0u8; rng.random_range(0..=payload_size - 17)];
        rng.fill_bytes(&mut message);
        let format = PacketGeometry { version: VERSION, payload_size };

        let theirs = SphinxPacketBuilder::new()
            .with_version(Version::new(VERSION.0))
            .with_payload_size(payload_size)
            .with_initial_secret(&StaticSecret::from(initial))
            .build_packet(&message, &route.theirs, &their_destination(&destination), &their_delays(&route))
            .unwrap()
            .to_bytes();
        let their_padding = final_padding(&route, &theirs);
        let ours = sphinx::build_packet(
            &PacketRandomness::from_parts(initial, &their_padding),
            &route.ours, &route.delays, &destination, &message, format,
        ).unwrap();
        prop_assert_eq!(&ours, &theirs);

        // And ours with arbitrary padding, read by both.
        let ours = sphinx::build_packet(
            &PacketRandomness::from_parts(initial, &padding),
            &route.ours, &route.delays, &destination, &message, format,
        ).unwrap();
        let payload = walk_both(&route, &destination, ours);
        prop_assert_eq!(sphinx::decode_payload(&payload).unwrap(), message);
    }
}
