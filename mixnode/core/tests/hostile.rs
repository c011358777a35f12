//! Hostile input never panics the mixer and is always counted, whichever
//! Sphinx implementation it unwraps with: every test runs with our own
//! (`native`, the default) and with `sphinx-packet` (`reference`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use mixnode_core::{ConfiguredSphinxCodec, DropReason, Mixer, MixerConfig, SphinxCodecKind};
use proptest::prelude::*;
use protocol::epoch::Epoch;
use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{PACKET_SIZE, RouteHop, build_packet};
use protocol::replay::ReplayFilterConfig;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const KINDS: [SphinxCodecKind; 2] = [SphinxCodecKind::Native, SphinxCodecKind::Reference];

type NodeMixer = Mixer<ConfiguredSphinxCodec>;

fn mixer_and_packet(kind: SphinxCodecKind) -> (NodeMixer, Vec<u8>) {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut hops = Vec::new();
    let mut first = None;
    for _ in 0..4 {
        let id = IdentityKeyPair::generate(&mut rng).node_id();
        let key = SphinxKeyPair::generate(&mut rng);
        hops.push(RouteHop {
            id,
            sphinx_key: key.public(),
        });
        first.get_or_insert((id, key));
    }
    let (id, key) = first.unwrap();
    let mixer = Mixer::new(
        id,
        ConfiguredSphinxCodec(kind),
        MixerConfig {
            replay: ReplayFilterConfig {
                min_tags_per_epoch: 1_000,
                false_positive_rate: 1e-6,
            },
            ..MixerConfig::default()
        },
    );
    mixer.install_key(Epoch(0), key);
    mixer.rotate(Epoch(0));
    let packet = build_packet(
        &mut rng,
        &hops,
        &[Duration::from_millis(1); 4],
        hops[3].id.to_destination(),
        [0; 16],
        &Frame::Ack.encode().unwrap(),
    )
    .unwrap();
    (mixer, packet.bytes)
}

fn assert_dropped_and_counted(mixer: &NodeMixer, bytes: &[u8]) -> DropReason {
    let before = mixer.stats().snapshot();
    let reason = mixer
        .handle_packet(Timestamp::ZERO, bytes)
        .expect_err("hostile input must be dropped");
    let after = mixer.stats().snapshot();
    assert_eq!(after.dropped_total(), before.dropped_total() + 1);
    assert_eq!(after.dropped(reason), before.dropped(reason) + 1);
    assert_eq!(after.forwarded, before.forwarded);
    reason
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_are_dropped_as_malformed(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        for kind in KINDS {
            let (mixer, _) = mixer_and_packet(kind);
            let reason = assert_dropped_and_counted(&mixer, &bytes);
            if bytes.len() == PACKET_SIZE {
                prop_assert!(matches!(reason, DropReason::UnknownKey | DropReason::Malformed));
            } else {
                prop_assert_eq!(reason, DropReason::WrongSize);
            }
        }
    }

    #[test]
    fn random_packets_of_the_right_size_are_dropped(bytes in proptest::collection::vec(any::<u8>(), PACKET_SIZE)) {
        for kind in KINDS {
            let (mixer, _) = mixer_and_packet(kind);
            let reason = assert_dropped_and_counted(&mixer, &bytes);
            prop_assert!(matches!(reason, DropReason::UnknownKey | DropReason::Malformed));
        }
    }

    #[test]
    fn truncated_and_extended_packets_are_dropped(cut in 0usize..PACKET_SIZE, extra in proptest::collection::vec(any::<u8>(), 1..64)) {
        for kind in KINDS {
            let (mixer, packet) = mixer_and_packet(kind);
            prop_assert_eq!(assert_dropped_and_counted(&mixer, &packet[..cut]), DropReason::WrongSize);
            let mut longer = packet.clone();
            longer.extend_from_slice(&extra);
            prop_assert_eq!(assert_dropped_and_counted(&mixer, &longer), DropReason::WrongSize);
            // The intact packet still goes through afterwards.
            prop_assert!(mixer.handle_packet(Timestamp::ZERO, &packet).is_ok());
        }
    }

    #[test]
    fn a_flipped_header_bit_is_dropped(pos in 0usize..sphinx_packet::header::HEADER_SIZE, bit in 0u8..8) {
        for kind in KINDS {
            let (mixer, mut packet) = mixer_and_packet(kind);
            packet[pos] ^= 1 << bit;
            let reason = assert_dropped_and_counted(&mixer, &packet);
            prop_assert!(matches!(reason, DropReason::UnknownKey | DropReason::Malformed));
        }
    }
}

#[test]
fn a_second_encoding_of_the_same_alpha_is_refused() {
    // X25519 ignores the top bit: without a canonical-encoding check this
    // would be the same packet under another name.
    for kind in KINDS {
        let (mixer, mut packet) = mixer_and_packet(kind);
        packet[31] ^= 0x80;
        assert_eq!(
            assert_dropped_and_counted(&mixer, &packet),
            DropReason::Malformed,
            "{kind}"
        );
    }
}

#[test]
fn a_replayed_packet_is_dropped_by_both() {
    for kind in KINDS {
        let (mixer, packet) = mixer_and_packet(kind);
        assert!(mixer.handle_packet(Timestamp::ZERO, &packet).is_ok());
        assert_eq!(
            assert_dropped_and_counted(&mixer, &packet),
            DropReason::Replay,
            "{kind}"
        );
    }
}

#[test]
fn small_order_alphas_are_dropped_by_both() {
    // The reference computes an all-zero shared secret for these (anyone
    // could then forge a MAC); ours refuses them while parsing.
    for kind in KINDS {
        let (mixer, packet) = mixer_and_packet(kind);
        for u in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            let mut p = packet.clone();
            p[..32].copy_from_slice(&u);
            let reason = assert_dropped_and_counted(&mixer, &p);
            assert!(
                matches!(reason, DropReason::UnknownKey | DropReason::Malformed),
                "{kind}: {reason}"
            );
        }
    }
}

#[test]
fn a_packet_from_each_implementation_is_read_by_the_other() {
    // The packet is built by our builder; the reference codec reads it,
    // and both agree on the output bytes.
    let (native, packet) = mixer_and_packet(SphinxCodecKind::Native);
    let (reference, _) = mixer_and_packet(SphinxCodecKind::Reference);
    assert_eq!(
        native.handle_packet(Timestamp::ZERO, &packet),
        reference.handle_packet(Timestamp::ZERO, &packet)
    );
}
