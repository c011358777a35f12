#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! Property tests of the client link codec: every message round-trips
//! however the stream is cut, and no byte string panics the decoder or the
//! gateway core.

mod common;

use common::*;
use gateway_core::{GatewayAction, GatewayConfig};
use proptest::prelude::*;
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkDecoder, LinkMessage};
use protocol::link::{DELIVERY_PAYLOAD_SIZE, LENGTH_PREFIX_SIZE, MAX_BODY_LEN};
use protocol::packet::{PACKET_SIZE, SURB_ID_SIZE};
use protocol::prekeys::{FINGERPRINT_SIZE, MAX_ONE_TIME_PREKEY_SIZE, MAX_PUBLISHED_BUNDLE_SIZE};
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn close_reason() -> impl Strategy<Value = CloseReason> {
    proptest::sample::select(CloseReason::ALL.to_vec())
}

fn gateway_message() -> impl Strategy<Value = GatewayMessage> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(g, e)| GatewayMessage::Challenge {
            gateway: NodeId(g),
            ephemeral: e
        }),
        Just(GatewayMessage::Welcome),
        (
            any::<u64>(),
            any::<[u8; SURB_ID_SIZE]>(),
            proptest::collection::vec(any::<u8>(), DELIVERY_PAYLOAD_SIZE..=DELIVERY_PAYLOAD_SIZE)
        )
            .prop_map(|(id, s, payload)| GatewayMessage::Deliver {
                mailbox_id: id,
                surb_id: SurbId(s),
                payload
            }),
        close_reason().prop_map(|reason| GatewayMessage::Close { reason }),
        (any::<bool>(), any::<u32>()).prop_map(|(published, one_time_left)| {
            GatewayMessage::PrekeyStock {
                published,
                one_time_left,
            }
        }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(k, p)| ClientMessage::Authenticate {
            client_key: k,
            proof: p
        }),
        (any::<[u8; 32]>(), any::<u8>(), any::<u8>()).prop_map(|(h, fill, last)| {
            let mut packet = Box::new([fill; PACKET_SIZE]);
            packet[PACKET_SIZE - 1] = last;
            ClientMessage::SendPacket {
                first_hop: NodeId(h),
                packet,
            }
        }),
        any::<u64>().prop_map(|id| ClientMessage::AckDelivery { mailbox_id: id }),
        any::<[u8; 16]>().prop_map(|invite| ClientMessage::Enroll { invite }),
        (
            any::<[u8; FINGERPRINT_SIZE]>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_PUBLISHED_BUNDLE_SIZE)
        )
            .prop_map(|(fingerprint, published)| ClientMessage::PublishBundle {
                fingerprint,
                published
            }),
        proptest::collection::vec(
            (
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_ONE_TIME_PREKEY_SIZE)
            ),
            0..=2
        )
        .prop_map(|keys| ClientMessage::AddOneTimePrekeys { keys }),
    ]
}

/// Feeds `bytes` to a decoder in chunks of the given sizes; returns what came out.
fn decode_chunked<M: LinkMessage>(
    bytes: &[u8],
    cuts: &[usize],
) -> Result<Vec<M>, protocol::link::LinkDecodeError> {
    let mut decoder = LinkDecoder::<M>::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap_or(&1)).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        decoder.push(chunk);
        while let Some(m) = decoder.next_message()? {
            out.push(m);
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn gateway_messages_round_trip_however_cut(
        messages in proptest::collection::vec(gateway_message(), 1..5),
        cuts in proptest::collection::vec(1usize..3000, 1..8),
    ) {
        let bytes: Vec<u8> = messages.iter().flat_map(|m| m.encode()).collect();
        for m in &messages {
            prop_assert!(m.encode().len() <= LENGTH_PREFIX_SIZE + MAX_BODY_LEN);
        }
        prop_assert_eq!(decode_chunked::<GatewayMessage>(&bytes, &cuts), Ok(messages));
    }

    #[test]
    fn client_messages_round_trip_however_cut(
        messages in proptest::collection::vec(client_message(), 1..5),
        cuts in proptest::collection::vec(1usize..3000, 1..8),
    ) {
        let bytes: Vec<u8> = messages.iter().flat_map(|m| m.encode()).collect();
        for m in &messages {
            prop_assert!(m.fits());
        }
        prop_assert_eq!(decode_chunked::<ClientMessage>(&bytes, &cuts), Ok(messages));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..6000),
        cuts in proptest::collection::vec(1usize..100, 1..4),
    ) {
        let _ = decode_chunked::<ClientMessage>(&bytes, &cuts);
        let _ = decode_chunked::<GatewayMessage>(&bytes, &cuts);
    }

    #[test]
    fn a_corrupted_byte_is_refused_or_read_never_panics(
        message in client_message(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut bytes = message.encode();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(decoded) = decode_chunked::<ClientMessage>(&bytes, &[bytes.len()]) {
            // Only a change in the kind (at LENGTH_PREFIX_SIZE + 1: between
            // kinds of variable length) or in a field's value can still
            // decode, to a different message.
            prop_assert!(i > LENGTH_PREFIX_SIZE || decoded.is_empty());
            prop_assert!(decoded != vec![message]);
        }
    }

    /// Hostile bytes on an authenticated session: the core never panics, and a
    /// session it closes for them is counted as malformed.
    #[test]
    fn the_core_survives_hostile_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        authenticate in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut core = memory_core(NodeId([3; 32]), GatewayConfig::default());
        let key = SphinxKeyPair::generate(&mut rng);
        let session = if authenticate {
            connect(&mut core, &mut rng, Timestamp::ZERO, &key).0.session
        } else {
            core.open_session(Timestamp::ZERO, LOOPBACK, &mut rng).0
        };
        let actions = core.handle_client_bytes(Timestamp::ZERO, session, &bytes);
        let closed = actions.iter().any(|a| matches!(a, GatewayAction::Close { .. }));
        let s = core.stats().snapshot();
        if closed {
            prop_assert_eq!(s.malformed + s.auth_refused, 1);
            prop_assert_eq!(core.session_count(), 0);
        } else {
            prop_assert_eq!(s.malformed, 0);
        }
    }
}
