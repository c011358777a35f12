//! Hostile bytes into our Sphinx hop: typed errors, never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use curve25519_dalek::MontgomeryPoint;
use proptest::prelude::*;
use protocol::sphinx::{
    self, Destination, HEADER_SIZE, HeaderVersion, MIN_PACKET_SIZE, NodePublicKey, PacketGeometry,
    PacketRandomness, ReceivedPacket, RouteNode, SphinxError, UnwrappedPacket, unwrap_packet,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use x25519_dalek::{PublicKey, StaticSecret};

const PACKET_SIZE: usize = 2413;

struct Net {
    secrets: Vec<StaticSecret>,
    route: Vec<RouteNode>,
}

fn net(seed: u64) -> (Net, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut secrets = Vec::new();
    let mut route = Vec::new();
    for _ in 0..4 {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        let secret = StaticSecret::from(b);
        rng.fill_bytes(&mut b);
        route.push(RouteNode {
            address: b,
            key: NodePublicKey::try_from(&PublicKey::from(&secret)).unwrap(),
        });
        secrets.push(secret);
    }
    (Net { secrets, route }, rng)
}

fn packet_with(net: &Net, rng: &mut ChaCha20Rng, version: HeaderVersion) -> Vec<u8> {
    sphinx::build_packet_with_rng(
        rng,
        &net.route,
        &[Duration::from_millis(5); 4],
        &Destination {
            address: [1; 32],
            surb_id: [0; 16],
        },
        b"hello",
        PacketGeometry {
            version,
            payload_size: PACKET_SIZE - HEADER_SIZE,
        },
    )
    .unwrap()
}

fn packet() -> (Net, Vec<u8>) {
    let (net, mut rng) = net(5);
    let p = packet_with(&net, &mut rng, HeaderVersion::SINGLE_SEED_SURB);
    (net, p)
}

fn with_alpha(packet: &[u8], alpha: [u8; 32]) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[..32].copy_from_slice(&alpha);
    p
}

#[test]
fn an_intact_packet_goes_all_the_way() {
    let (net, mut p) = packet();
    for (i, secret) in net.secrets.iter().enumerate() {
        match unwrap_packet(secret, &p).unwrap() {
            UnwrappedPacket::Forward { packet, .. } => {
                assert!(i < 3);
                assert_eq!(packet.len(), PACKET_SIZE);
                p = packet;
            }
            UnwrappedPacket::Final { payload, .. } => {
                assert_eq!(i, 3);
                assert_eq!(sphinx::decode_payload(&payload).unwrap(), b"hello");
            }
        }
    }
}

#[test]
fn short_packets_are_refused_by_length() {
    let (net, p) = packet();
    for len in [0, 1, 31, 32, HEADER_SIZE, MIN_PACKET_SIZE - 1] {
        assert_eq!(
            unwrap_packet(&net.secrets[0], &p[..len]).unwrap_err(),
            SphinxError::TooShort {
                len,
                min: MIN_PACKET_SIZE
            }
        );
    }
}

#[test]
fn non_canonical_alphas_are_refused() {
    let (net, p) = packet();
    // The same point with the top bit set: x25519 would accept it as the same packet.
    let mut top = p.clone();
    top[31] ^= 0x80;
    assert_eq!(
        unwrap_packet(&net.secrets[0], &top).unwrap_err(),
        SphinxError::NonCanonicalAlpha
    );
    // u + p for a small u: x25519 would reduce it.
    let mut above = [0xffu8; 32];
    above[0] = 0xed + 9;
    above[31] = 0x7f;
    assert_eq!(
        unwrap_packet(&net.secrets[0], &with_alpha(&p, above)).unwrap_err(),
        SphinxError::NonCanonicalAlpha
    );
}

#[test]
fn twist_and_small_order_alphas_are_refused() {
    let (net, p) = packet();
    let twist = (2u8..=255)
        .map(|u| {
            let mut b = [0u8; 32];
            b[0] = u;
            b
        })
        .find(|b| MontgomeryPoint(*b).to_edwards(0).is_none())
        .unwrap();
    assert_eq!(
        unwrap_packet(&net.secrets[0], &with_alpha(&p, twist)).unwrap_err(),
        SphinxError::AlphaNotOnCurve
    );
    for t in curve25519_dalek::constants::EIGHT_TORSION {
        let u = t.to_montgomery().to_bytes();
        assert_eq!(
            unwrap_packet(&net.secrets[0], &with_alpha(&p, u)).unwrap_err(),
            SphinxError::SmallOrderAlpha,
            "torsion point {u:?}"
        );
    }
}

#[test]
fn wrong_key_and_tampered_headers_fail_the_mac() {
    let (net, p) = packet();
    assert_eq!(
        unwrap_packet(&net.secrets[1], &p).unwrap_err(),
        SphinxError::BadMac
    );
    for pos in [32, 40, 47, 48, 100, 200, HEADER_SIZE - 1] {
        let mut bad = p.clone();
        bad[pos] ^= 0x10;
        assert_eq!(
            unwrap_packet(&net.secrets[0], &bad).unwrap_err(),
            SphinxError::BadMac,
            "byte {pos}"
        );
    }
}

#[test]
fn a_tampered_payload_is_noise_at_the_end() {
    let (net, mut p) = packet();
    p[HEADER_SIZE + 100] ^= 1;
    for secret in &net.secrets {
        match unwrap_packet(secret, &p).unwrap() {
            UnwrappedPacket::Forward { packet, .. } => p = packet,
            UnwrappedPacket::Final { payload, .. } => {
                assert_eq!(
                    sphinx::decode_payload(&payload).unwrap_err(),
                    SphinxError::BadPadding
                );
            }
        }
    }
}

#[test]
fn unknown_versions_are_refused_before_blinding() {
    let (net, mut rng) = net(6);
    let p = packet_with(&net, &mut rng, HeaderVersion(999));
    let opened = ReceivedPacket::parse(&p)
        .unwrap()
        .open(&net.secrets[0])
        .unwrap();
    assert_eq!(
        opened.finish().unwrap_err(),
        SphinxError::UnknownVersion([0, 3, 231])
    );
}

#[test]
fn a_node_of_one_version_refuses_the_others() {
    let (net, mut rng) = net(10);
    let p = packet_with(&net, &mut rng, HeaderVersion::PAYLOAD_KEY_SEEDS);
    let open = || {
        ReceivedPacket::parse(&p)
            .unwrap()
            .open(&net.secrets[0])
            .unwrap()
    };
    assert_eq!(
        open()
            .finish_at(HeaderVersion::SINGLE_SEED_SURB)
            .unwrap_err(),
        SphinxError::UnknownVersion([0, 1, 3])
    );
    assert!(open().finish_at(HeaderVersion::PAYLOAD_KEY_SEEDS).is_ok());
}

#[test]
fn legacy_and_seeded_versions_are_processed() {
    for version in HeaderVersion::KNOWN {
        let (net, mut rng) = net(7);
        let mut p = packet_with(&net, &mut rng, version);
        for secret in &net.secrets {
            match unwrap_packet(secret, &p).unwrap() {
                UnwrappedPacket::Forward {
                    packet, version: v, ..
                } => {
                    assert_eq!(v, version);
                    p = packet;
                }
                UnwrappedPacket::Final {
                    payload,
                    version: v,
                    ..
                } => {
                    assert_eq!(v, version);
                    assert_eq!(sphinx::decode_payload(&payload).unwrap(), b"hello");
                }
            }
        }
    }
}

#[test]
fn replay_tags_name_a_packet_under_a_key() {
    let (net, mut rng) = net(8);
    let a = packet_with(&net, &mut rng, HeaderVersion::SINGLE_SEED_SURB);
    let b = packet_with(&net, &mut rng, HeaderVersion::SINGLE_SEED_SURB);
    let tag = |p: &[u8], key: &StaticSecret| {
        *ReceivedPacket::parse(p)
            .unwrap()
            .open(key)
            .unwrap()
            .replay_tag()
    };
    assert_eq!(tag(&a, &net.secrets[0]), tag(&a, &net.secrets[0]));
    assert_ne!(tag(&a, &net.secrets[0]), tag(&b, &net.secrets[0]));
    // The same packet twice is the same tag however its payload changed.
    let mut a2 = a.clone();
    a2[HEADER_SIZE + 5] ^= 0xff;
    assert_eq!(tag(&a, &net.secrets[0]), tag(&a2, &net.secrets[0]));
}

#[test]
fn builder_refuses_bad_routes_and_sizes() {
    let (net, mut rng) = net(9);
    let destination = Destination {
        address: [0; 32],
        surb_id: [0; 16],
    };
    let format = PacketGeometry {
        version: HeaderVersion::SINGLE_SEED_SURB,
        payload_size: 100,
    };
    let r = PacketRandomness::draw(&mut rng);
    let d = [Duration::ZERO; 6];
    assert_eq!(
        sphinx::build_packet(&r, &[], &[], &destination, b"", format).unwrap_err(),
        SphinxError::RouteLength(0)
    );
    let six: Vec<RouteNode> = net.route.iter().cycle().take(6).cloned().collect();
    assert_eq!(
        sphinx::build_packet(&r, &six, &d, &destination, b"", format).unwrap_err(),
        SphinxError::RouteLength(6)
    );
    assert_eq!(
        sphinx::build_packet(&r, &net.route, &d[..3], &destination, b"", format).unwrap_err(),
        SphinxError::DelayCount { hops: 4, delays: 3 }
    );
    assert_eq!(
        sphinx::build_packet(&r, &net.route, &d[..4], &destination, &[0; 84], format).unwrap_err(),
        SphinxError::MessageTooLong { len: 84, max: 83 }
    );
    let tiny = PacketGeometry {
        payload_size: 32,
        ..format
    };
    assert_eq!(
        sphinx::build_packet(&r, &net.route, &d[..4], &destination, b"", tiny).unwrap_err(),
        SphinxError::PayloadSize(32)
    );
    assert_eq!(
        NodePublicKey::from_bytes([0; 32]).unwrap_err(),
        SphinxError::BadNodeKey
    );
    assert_eq!(
        sphinx::build_surb(
            &r,
            &net.route,
            &d[..4],
            &destination,
            HeaderVersion::SINGLE_SEED_SURB
        )
        .unwrap_err(),
        SphinxError::ZeroSurbId
    );
    assert_eq!(
        sphinx::build_surb(&r, &net.route, &d[..4], &destination, HeaderVersion(258)).unwrap_err(),
        SphinxError::SurbVersion(258)
    );
    assert!(sphinx::ReplyBlock::from_bytes(&[0; 395]).is_err());
    assert!(sphinx::ReplyBlock::from_bytes(&[0; 397]).is_err());
    assert!(sphinx::ReplyKeys::from_bytes(&[0; 16]).is_err());
    assert!(sphinx::ReplyKeys::from_bytes(&[0; 16 + 6 * 16]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_give_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let (net, _) = packet();
        prop_assert!(unwrap_packet(&net.secrets[0], &bytes).is_err());
    }

    #[test]
    fn any_mutation_gives_an_error_or_a_packet(
        edits in prop::collection::vec((0usize..PACKET_SIZE, any::<u8>()), 1..8),
        cut in prop::option::of(0usize..PACKET_SIZE),
    ) {
        let (net, mut p) = packet();
        for (pos, value) in edits {
            p[pos] = value;
        }
        if let Some(cut) = cut {
            p.truncate(cut);
        }
        let mut current = p;
        for secret in &net.secrets {
            match unwrap_packet(secret, &current) {
                Ok(UnwrappedPacket::Forward { packet, .. }) => current = packet,
                Ok(UnwrappedPacket::Final { payload, .. }) => {
                    let _ = sphinx::decode_payload(&payload);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn surb_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(block) = sphinx::ReplyBlock::from_bytes(&bytes) {
            prop_assert_eq!(block.to_bytes(), bytes.clone());
            let _ = block.seal(b"x", 100);
        }
        if let Ok(keys) = sphinx::ReplyKeys::from_bytes(&bytes) {
            prop_assert_eq!(keys.to_bytes(), bytes.clone());
            let _ = keys.open(&[0u8; 100]);
        }
    }
}
