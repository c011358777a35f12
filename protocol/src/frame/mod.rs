//! The fixed-size frame inside every Sphinx payload.
//!
//! Whatever a packet carries (a fragment of a message, an ack, cover) it is
//! one [`FRAME_SIZE`]-byte frame, so every packet on the wire has the same
//! length and nothing but its final hop can tell kinds apart.
//!
//! Layout (big endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version ([`FRAME_VERSION`]) |
//! | 1 | kind ([`FrameKind`]) |
//! | 2 | body length |
//! | n | body |
//! | rest | zero padding |
//!
//! Bodies:
//! - **forward** (every packet a client sends to a client address: data,
//!   loop cover, drop cover): `lifetime bucket (1) | recall tag (32) |
//!   SURB-ack (396) | sealed body (`[`SEALED_SIZE`]`)`. This is all the
//!   recipient's gateway reads: the SURB-ack it sends back
//!   [`SURB_ACK_HOLD`] after the packet arrived, once the body is stored or
//!   taken by its client, a coarse [`LifetimeBucket`], the [`RecallTag`] a recall may
//!   later name the body by (random bytes in cover and in messages sent
//!   without recall, [`crate::recall`]), and a body sealed to the recipient
//!   ([`SealedContent`], [`crate::seal`]) that is the same size whatever it
//!   holds. Every forward frame is exactly this long.
//! - **recall** (a sender recalls a message it sent, [`RecallFrame`]):
//!   `recall secret (32) | fragment count (2) | SURB-ack (396) | sealed body
//!   (`[`SEALED_SIZE`]`)`, as long as a forward body. The gateway reads the
//!   secret and the count, deletes the bodies whose tags they give, and
//!   stores the sealed body (the recall notice, for the recipient) unless it
//!   deleted every fragment.
//! - **ack** (inside a SURB): empty. The SURB it came through tells its
//!   creator what it acknowledges; the gateway that sends it cannot know
//!   (it never sees inside a sealed body).
//! - **reply** (inside a SURB, which only the SURB's creator opens):
//!   `flags (1) | lifetime (4) if bit 1 | SURB-ack (396) if bit 0 | fragment`;
//!   flags bit 0 = SURB-ack present, bit 1 = lifetime present, other bits zero.
//! - **node loop** (a mix node's or gateway's own loop cover, which returns to
//!   the node that made it): empty.
//! - **bundle request** (to a gateway's prekey service, at
//!   [`PREKEY_SERVICE_DESTINATION`](crate::address::PREKEY_SERVICE_DESTINATION),
//!   [`BundleRequestFrame`]): `fingerprint (20) | SURB count (1) | SURBs
//!   (396 each, 1 to `[`BUNDLE_REQUEST_SURBS`]`)`. The gateway reads the
//!   fingerprint and answers through the SURBs ([`crate::prekeys`]); the
//!   body's length, like every body's, is read by the final hop alone.
//!
//! [`FRAGMENT_CAPACITY`] is what the smaller of a sealed body and a reply
//! leaves for a fragment, so a fragment's capacity does not depend on how it
//! travels.

mod sealed;

pub use sealed::{LifetimeBucket, SealedContent, SealedContentKind};

use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::error::ProtocolError;
use crate::fragment::{FRAGMENT_HEADER_SIZE, Fragment};
use crate::link::DELIVERY_PAYLOAD_SIZE;
use crate::packet::FRAME_SIZE;
use crate::prekeys::{BUNDLE_REQUEST_SURBS, FINGERPRINT_SIZE};
use crate::recall::{RECALL_SECRET_SIZE, RECALL_TAG_SIZE, RecallSecret, RecallTag};
use crate::seal::{SEALED_PLAINTEXT_SIZE, SEALED_SIZE};
use crate::surb::{SURB_SIZE, Surb};

/// Version byte of the frame format.
pub const FRAME_VERSION: u8 = 3;
/// Bytes before the body: version, kind, body length.
pub const FRAME_HEADER_SIZE: usize = 4;
/// Bytes a SURB-ack takes inside a frame.
pub const SURB_ACK_SIZE: usize = SURB_SIZE;
/// How long after a forward packet reaches its final gateway that gateway
/// sends the packet's SURB-ack back: the same for every packet (mail, loop
/// or drop cover, a recall) whether its recipient is online or not, so the
/// ack's timing tells its sender nothing about the recipient; senders add it
/// to the round trip they wait for (docs/gateway.md, "Final-hop handling").
pub const SURB_ACK_HOLD: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes a lifetime takes inside a frame.
pub const LIFETIME_SIZE: usize = 4;
/// Bytes of a forward frame's body: lifetime bucket, recall tag, SURB-ack, sealed body.
pub const FORWARD_BODY_SIZE: usize = 1 + RECALL_TAG_SIZE + SURB_ACK_SIZE + SEALED_SIZE;
/// Bytes of a recall frame's body: recall secret, fragment count, SURB-ack, sealed body.
pub const RECALL_BODY_SIZE: usize = RECALL_SECRET_SIZE + 2 + SURB_ACK_SIZE + SEALED_SIZE;
/// Bytes of message data one fragment carries.
pub const FRAGMENT_CAPACITY: usize = {
    let sealed = SEALED_PLAINTEXT_SIZE - sealed::CONTENT_HEADER_SIZE - FRAGMENT_HEADER_SIZE;
    let reply =
        FRAME_SIZE - FRAME_HEADER_SIZE - 1 - LIFETIME_SIZE - SURB_ACK_SIZE - FRAGMENT_HEADER_SIZE;
    if sealed < reply { sealed } else { reply }
};

const _: () = assert!(FRAME_HEADER_SIZE + FORWARD_BODY_SIZE <= FRAME_SIZE);
const _: () = assert!(FRAME_HEADER_SIZE + RECALL_BODY_SIZE <= FRAME_SIZE);
const _: () = assert!(FRAME_HEADER_SIZE + BUNDLE_REQUEST_BODY_MAX <= FRAME_SIZE);

/// Bytes of the largest bundle request body: fingerprint, SURB count, SURBs.
pub const BUNDLE_REQUEST_BODY_MAX: usize = FINGERPRINT_SIZE + 1 + BUNDLE_REQUEST_SURBS * SURB_SIZE;

/// Flag bit: the frame carries a SURB-ack.
const FLAG_SURB_ACK: u8 = 1;
/// Flag bit: the frame carries a lifetime.
const FLAG_LIFETIME: u8 = 2;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A packet to a client address: SURB-ack, lifetime bucket, sealed body.
    Forward = 1,
    /// An acknowledgement that came back through a SURB-ack.
    Ack = 2,
    /// A node's own loop cover.
    NodeLoop = 3,
    /// A fragment of a reply sent through a SURB.
    Reply = 5,
    /// A sender's recall of a message it sent: secret, count, SURB-ack, sealed notice.
    Recall = 6,
    /// A request for a client's prekey bundle, to a gateway's prekey service.
    BundleRequest = 7,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => FrameKind::Forward,
            2 => FrameKind::Ack,
            3 => FrameKind::NodeLoop,
            5 => FrameKind::Reply,
            6 => FrameKind::Recall,
            7 => FrameKind::BundleRequest,
            _ => return None,
        })
    }
}

/// What the recipient's gateway reads of a packet to one of its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardFrame {
    /// How long the gateway may keep the body, rounded up to a coarse bucket.
    pub lifetime: LifetimeBucket,
    /// What a recall may name the body by (random bytes if nothing may).
    pub recall_tag: RecallTag,
    /// The serialized SURB the gateway sends back once the body is stored.
    pub surb_ack: Vec<u8>,
    /// The body, sealed to the recipient's address key.
    pub sealed: Box<[u8; SEALED_SIZE]>,
}

/// A sender's recall, as the recipient's gateway reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecallFrame {
    /// The recalled message's recall secret.
    pub secret: RecallSecret,
    /// How many fragments the message has (the gateway checks the cap,
    /// [`crate::recall::MAX_RECALL_FRAGMENTS`]).
    pub fragments: u16,
    /// The serialized SURB the gateway sends back once the recall is done.
    pub surb_ack: Vec<u8>,
    /// The recall notice, sealed to the recipient like a forward body.
    pub sealed: Box<[u8; SEALED_SIZE]>,
}

/// A request for the prekey bundle kept under a fingerprint, as the
/// gateway's prekey service reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleRequestFrame {
    /// The identity fingerprint whose bundle is asked for.
    pub fingerprint: [u8; FINGERPRINT_SIZE],
    /// SURBs to answer through, in order (1 to [`BUNDLE_REQUEST_SURBS`]).
    pub surbs: Vec<Surb>,
}

impl RecallFrame {
    /// What the gateway stores and delivers of the notice (as
    /// [`ForwardFrame::delivery_payload`]).
    pub fn delivery_payload(&self) -> Vec<u8> {
        padded_delivery(self.sealed.as_slice())
    }
}

fn padded_delivery(sealed: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(DELIVERY_PAYLOAD_SIZE);
    payload.extend_from_slice(sealed);
    payload.resize(DELIVERY_PAYLOAD_SIZE, 0);
    payload
}

impl ForwardFrame {
    /// Seals `content` to `recipient`, with the SURB-ack to send back and a
    /// random recall tag (set [`ForwardFrame::recall_tag`] to make it recallable).
    pub fn seal(
        content: &SealedContent,
        recipient: &PublicKey,
        surb_ack: Vec<u8>,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Self, ProtocolError> {
        let plaintext = content.encode()?;
        let sealed = crate::seal::seal(recipient, &plaintext, rng)?;
        Ok(ForwardFrame {
            lifetime: LifetimeBucket::covering(content.lifetime()),
            recall_tag: RecallTag::random(rng),
            surb_ack,
            sealed,
        })
    }

    /// What the gateway stores and delivers for this frame: the sealed body,
    /// zero-padded to the one delivery size of the client link.
    pub fn delivery_payload(&self) -> Vec<u8> {
        padded_delivery(self.sealed.as_slice())
    }

    /// Opens a sealed body (as stored and delivered by the gateway, padding
    /// or not) with the recipient's secret.
    pub fn open(secret: &StaticSecret, sealed: &[u8]) -> Result<SealedContent, ProtocolError> {
        let sealed = sealed.get(..SEALED_SIZE).unwrap_or(sealed);
        let plaintext = crate::seal::open(secret, sealed)?;
        SealedContent::decode(plaintext.as_slice())
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A packet to a client address (data, loop cover or drop cover, sealed).
    Forward(ForwardFrame),
    /// An acknowledgement (of whatever the SURB it came through was made for).
    Ack,
    /// A node's own loop cover.
    NodeLoop,
    /// A fragment of a reply sent through a SURB.
    Reply {
        /// Serialized SURB the recipient sends back once it holds the fragment.
        surb_ack: Option<Vec<u8>>,
        /// Seconds the recipient may keep the fragment (`None`: no limit set).
        lifetime: Option<u32>,
        /// The fragment.
        fragment: Fragment,
    },
    /// A sender's recall of a message it sent.
    Recall(RecallFrame),
    /// A request for a client's prekey bundle.
    BundleRequest(BundleRequestFrame),
}

impl Frame {
    /// The kind of this frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Forward(_) => FrameKind::Forward,
            Frame::Ack => FrameKind::Ack,
            Frame::NodeLoop => FrameKind::NodeLoop,
            Frame::Reply { .. } => FrameKind::Reply,
            Frame::Recall(_) => FrameKind::Recall,
            Frame::BundleRequest(_) => FrameKind::BundleRequest,
        }
    }

    /// Encodes the frame to exactly [`FRAME_SIZE`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut body = Vec::new();
        match self {
            Frame::Forward(forward) => {
                check_surb_ack(&forward.surb_ack)?;
                body.push(forward.lifetime as u8);
                body.extend_from_slice(&forward.recall_tag.0);
                body.extend_from_slice(&forward.surb_ack);
                body.extend_from_slice(forward.sealed.as_slice());
            }
            Frame::Recall(recall) => {
                check_surb_ack(&recall.surb_ack)?;
                body.extend_from_slice(&recall.secret.0);
                body.extend_from_slice(&recall.fragments.to_be_bytes());
                body.extend_from_slice(&recall.surb_ack);
                body.extend_from_slice(recall.sealed.as_slice());
            }
            Frame::BundleRequest(request) => {
                let count = request.surbs.len();
                if count == 0 || count > BUNDLE_REQUEST_SURBS {
                    return Err(ProtocolError::BadFrame(format!(
                        "a bundle request carries 1 to {BUNDLE_REQUEST_SURBS} SURBs, got {count}"
                    )));
                }
                body.extend_from_slice(&request.fingerprint);
                body.push(count as u8);
                for surb in &request.surbs {
                    check_surb_ack(&surb.0)?;
                    body.extend_from_slice(&surb.0);
                }
            }
            Frame::Reply {
                surb_ack,
                lifetime,
                fragment,
            } => {
                if let Some(ack) = surb_ack {
                    check_surb_ack(ack)?;
                }
                let mut flags = 0;
                if surb_ack.is_some() {
                    flags |= FLAG_SURB_ACK;
                }
                if lifetime.is_some() {
                    flags |= FLAG_LIFETIME;
                }
                body.push(flags);
                if let Some(lifetime) = lifetime {
                    body.extend_from_slice(&lifetime.to_be_bytes());
                }
                if let Some(ack) = surb_ack {
                    body.extend_from_slice(ack);
                }
                fragment.encode_into(&mut body);
            }
            Frame::Ack | Frame::NodeLoop => {}
        }
        if body.len() > FRAME_SIZE - FRAME_HEADER_SIZE {
            return Err(ProtocolError::BadFrame(format!(
                "body of {} bytes does not fit a frame",
                body.len()
            )));
        }
        let mut out = Vec::with_capacity(FRAME_SIZE);
        out.push(FRAME_VERSION);
        out.push(self.kind() as u8);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out.resize(FRAME_SIZE, 0);
        Ok(out)
    }

    /// Decodes a frame; any length other than [`FRAME_SIZE`] is refused.
    pub fn decode(bytes: &[u8]) -> Result<Frame, ProtocolError> {
        if bytes.len() != FRAME_SIZE {
            return Err(ProtocolError::BadFrame(format!(
                "a frame is {FRAME_SIZE} bytes, got {}",
                bytes.len()
            )));
        }
        let (header, rest) = bytes.split_at(FRAME_HEADER_SIZE);
        let [version, kind, len_hi, len_lo] = <[u8; 4]>::try_from(header)
            .map_err(|_| ProtocolError::BadFrame("short header".into()))?;
        if version != FRAME_VERSION {
            return Err(ProtocolError::BadFrame(format!(
                "unknown frame version {version}"
            )));
        }
        let kind = FrameKind::from_byte(kind)
            .ok_or_else(|| ProtocolError::BadFrame(format!("unknown frame kind {kind}")))?;
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        let body = rest
            .get(..len)
            .ok_or_else(|| ProtocolError::BadFrame(format!("body length {len} too long")))?;
        match kind {
            FrameKind::Forward => decode_forward(body),
            FrameKind::Reply => decode_reply(body),
            FrameKind::Recall => decode_recall(body),
            FrameKind::BundleRequest => decode_bundle_request(body),
            FrameKind::Ack if body.is_empty() => Ok(Frame::Ack),
            FrameKind::NodeLoop if body.is_empty() => Ok(Frame::NodeLoop),
            FrameKind::Ack | FrameKind::NodeLoop => Err(ProtocolError::BadFrame(
                "an ack or node loop with a body".into(),
            )),
        }
    }
}

fn check_surb_ack(ack: &[u8]) -> Result<(), ProtocolError> {
    if ack.len() == SURB_ACK_SIZE {
        Ok(())
    } else {
        Err(ProtocolError::BadFrame(format!(
            "a SURB-ack is {SURB_ACK_SIZE} bytes, got {}",
            ack.len()
        )))
    }
}

fn decode_forward(body: &[u8]) -> Result<Frame, ProtocolError> {
    if body.len() != FORWARD_BODY_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "a forward body is {FORWARD_BODY_SIZE} bytes, got {}",
            body.len()
        )));
    }
    let (&bucket, rest) = body
        .split_first()
        .ok_or_else(|| ProtocolError::BadFrame("empty body".into()))?;
    let lifetime = LifetimeBucket::from_byte(bucket)
        .ok_or_else(|| ProtocolError::BadFrame(format!("unknown lifetime bucket {bucket}")))?;
    let (tag, rest) = rest
        .split_first_chunk::<RECALL_TAG_SIZE>()
        .ok_or_else(|| ProtocolError::BadFrame("truncated recall tag".into()))?;
    let (surb_ack, sealed) = split_ack_and_sealed(rest)?;
    Ok(Frame::Forward(ForwardFrame {
        lifetime,
        recall_tag: RecallTag(*tag),
        surb_ack,
        sealed,
    }))
}

type AckAndSealed = (Vec<u8>, Box<[u8; SEALED_SIZE]>);

fn split_ack_and_sealed(rest: &[u8]) -> Result<AckAndSealed, ProtocolError> {
    let (surb_ack, sealed) = rest.split_at(SURB_ACK_SIZE.min(rest.len()));
    let sealed: [u8; SEALED_SIZE] = sealed
        .try_into()
        .map_err(|_| ProtocolError::BadFrame("truncated sealed body".into()))?;
    Ok((surb_ack.to_vec(), Box::new(sealed)))
}

fn decode_recall(body: &[u8]) -> Result<Frame, ProtocolError> {
    if body.len() != RECALL_BODY_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "a recall body is {RECALL_BODY_SIZE} bytes, got {}",
            body.len()
        )));
    }
    let (secret, rest) = body
        .split_first_chunk::<RECALL_SECRET_SIZE>()
        .ok_or_else(|| ProtocolError::BadFrame("truncated recall secret".into()))?;
    let (count, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| ProtocolError::BadFrame("truncated fragment count".into()))?;
    let (surb_ack, sealed) = split_ack_and_sealed(rest)?;
    Ok(Frame::Recall(RecallFrame {
        secret: RecallSecret(*secret),
        fragments: u16::from_be_bytes(*count),
        surb_ack,
        sealed,
    }))
}

fn decode_bundle_request(body: &[u8]) -> Result<Frame, ProtocolError> {
    let (fingerprint, rest) = body
        .split_first_chunk::<FINGERPRINT_SIZE>()
        .ok_or_else(|| ProtocolError::BadFrame("truncated fingerprint".into()))?;
    let (&count, surbs) = rest
        .split_first()
        .ok_or_else(|| ProtocolError::BadFrame("truncated SURB count".into()))?;
    let count = usize::from(count);
    if count == 0 || count > BUNDLE_REQUEST_SURBS {
        return Err(ProtocolError::BadFrame(format!(
            "a bundle request carries 1 to {BUNDLE_REQUEST_SURBS} SURBs, got {count}"
        )));
    }
    if surbs.len() != count * SURB_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "{count} SURBs in {} bytes",
            surbs.len()
        )));
    }
    Ok(Frame::BundleRequest(BundleRequestFrame {
        fingerprint: *fingerprint,
        surbs: surbs
            .chunks_exact(SURB_SIZE)
            .map(|s| Surb(s.to_vec()))
            .collect(),
    }))
}

fn decode_reply(body: &[u8]) -> Result<Frame, ProtocolError> {
    let (&flags, rest) = body
        .split_first()
        .ok_or_else(|| ProtocolError::BadFrame("empty body".into()))?;
    if flags & !(FLAG_SURB_ACK | FLAG_LIFETIME) != 0 {
        return Err(ProtocolError::BadFrame(format!(
            "unknown flags {flags:#04x}"
        )));
    }
    let (lifetime, rest) = if flags & FLAG_LIFETIME != 0 {
        let (bytes, rest) = rest
            .split_first_chunk::<LIFETIME_SIZE>()
            .ok_or_else(|| ProtocolError::BadFrame("truncated lifetime".into()))?;
        (Some(u32::from_be_bytes(*bytes)), rest)
    } else {
        (None, rest)
    };
    let (surb_ack, rest) = if flags & FLAG_SURB_ACK != 0 {
        if rest.len() < SURB_ACK_SIZE {
            return Err(ProtocolError::BadFrame("truncated SURB-ack".into()));
        }
        let (ack, rest) = rest.split_at(SURB_ACK_SIZE);
        (Some(ack.to_vec()), rest)
    } else {
        (None, rest)
    };
    let fragment = Fragment::decode(rest)?;
    Ok(Frame::Reply {
        surb_ack,
        lifetime,
        fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{FragmentId, MessageId};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn arb_fragment() -> impl Strategy<Value = Fragment> {
        (
            any::<[u8; 16]>(),
            1u16..,
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..=FRAGMENT_CAPACITY),
        )
            .prop_map(|(id, count, index, data)| Fragment {
                id: FragmentId {
                    message: MessageId(id),
                    index: index % count,
                },
                count,
                data,
            })
    }

    fn arb_content() -> impl Strategy<Value = SealedContent> {
        prop_oneof![
            (proptest::option::of(any::<u32>()), arb_fragment())
                .prop_map(|(lifetime, fragment)| SealedContent::Data { lifetime, fragment }),
            any::<[u8; 16]>().prop_map(|id| SealedContent::LoopCover { id }),
            Just(SealedContent::DropCover),
        ]
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let ack = proptest::option::of(proptest::collection::vec(
            any::<u8>(),
            SURB_ACK_SIZE..=SURB_ACK_SIZE,
        ));
        let lifetime = proptest::option::of(any::<u32>());
        prop_oneof![
            (
                0u8..=5,
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<u8>(), SURB_ACK_SIZE..=SURB_ACK_SIZE),
                any::<u8>()
            )
                .prop_map(|(bucket, tag, surb_ack, fill)| Frame::Forward(
                    ForwardFrame {
                        lifetime: LifetimeBucket::from_byte(bucket).unwrap(),
                        recall_tag: RecallTag(tag),
                        surb_ack,
                        sealed: Box::new([fill; SEALED_SIZE]),
                    }
                )),
            (
                any::<[u8; 32]>(),
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), SURB_ACK_SIZE..=SURB_ACK_SIZE),
                any::<u8>()
            )
                .prop_map(|(secret, fragments, surb_ack, fill)| Frame::Recall(
                    RecallFrame {
                        secret: RecallSecret(secret),
                        fragments,
                        surb_ack,
                        sealed: Box::new([fill; SEALED_SIZE]),
                    }
                )),
            (ack, lifetime, arb_fragment()).prop_map(|(surb_ack, lifetime, fragment)| {
                Frame::Reply {
                    surb_ack,
                    lifetime,
                    fragment,
                }
            }),
            Just(Frame::Ack),
            Just(Frame::NodeLoop),
            arb_bundle_request().prop_map(Frame::BundleRequest),
        ]
    }

    fn arb_bundle_request() -> impl Strategy<Value = BundleRequestFrame> {
        (
            any::<[u8; FINGERPRINT_SIZE]>(),
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), SURB_SIZE..=SURB_SIZE).prop_map(Surb),
                1..=BUNDLE_REQUEST_SURBS,
            ),
        )
            .prop_map(|(fingerprint, surbs)| BundleRequestFrame { fingerprint, surbs })
    }

    proptest! {
        #[test]
        fn every_frame_has_the_same_length_and_round_trips(frame in arb_frame()) {
            let bytes = frame.encode().unwrap();
            prop_assert_eq!(bytes.len(), FRAME_SIZE);
            prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
        }

        #[test]
        fn sealed_content_round_trips_at_one_size(content in arb_content()) {
            let bytes = content.encode().unwrap();
            prop_assert_eq!(bytes.len(), SEALED_PLAINTEXT_SIZE);
            prop_assert_eq!(SealedContent::decode(&bytes).unwrap(), content);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = Frame::decode(&bytes);
            let _ = SealedContent::decode(&bytes);
        }

        #[test]
        fn corrupted_frames_never_panic(frame in arb_frame(), pos in 0usize..FRAME_SIZE, bit in 0u8..8) {
            let mut bytes = frame.encode().unwrap();
            bytes[pos] ^= 1 << bit;
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn every_truncated_bundle_request_body_is_refused(request in arb_bundle_request()) {
            let bytes = Frame::BundleRequest(request).encode().unwrap();
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            for cut in 0..len {
                let mut short = bytes.clone();
                short[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
                prop_assert!(Frame::decode(&short).is_err(), "body cut to {}", cut);
            }
        }

        #[test]
        fn a_lifetime_bucket_never_shortens_the_lifetime(secs in any::<u32>()) {
            match LifetimeBucket::covering(Some(secs)).duration() {
                Some(d) => prop_assert!(d.as_secs() >= u64::from(secs)),
                None => prop_assert!(u64::from(secs) > 30 * 24 * 3600),
            }
        }
    }

    fn full_fragment() -> Fragment {
        Fragment {
            id: FragmentId {
                message: MessageId([9; 16]),
                index: 1,
            },
            count: 3,
            data: (0..FRAGMENT_CAPACITY).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn data_and_cover_seal_to_forward_frames_of_one_length_that_only_the_recipient_opens() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let recipient = crate::keys::SphinxKeyPair::generate(&mut rng);
        let other = crate::keys::SphinxKeyPair::generate(&mut rng);
        let contents = [
            SealedContent::Data {
                lifetime: Some(90),
                fragment: full_fragment(),
            },
            SealedContent::Data {
                lifetime: None,
                fragment: Fragment {
                    data: vec![1],
                    ..full_fragment()
                },
            },
            SealedContent::LoopCover { id: [5; 16] },
        ];
        for content in contents {
            let frame = ForwardFrame::seal(
                &content,
                &recipient.public(),
                vec![3; SURB_ACK_SIZE],
                &mut rng,
            )
            .unwrap();
            let bytes = Frame::Forward(frame.clone()).encode().unwrap();
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert_eq!(len, FORWARD_BODY_SIZE, "one body length for every kind");
            let Frame::Forward(decoded) = Frame::decode(&bytes).unwrap() else {
                panic!("kind changed");
            };
            assert_eq!(decoded, frame);
            assert_eq!(
                ForwardFrame::open(recipient.secret(), decoded.sealed.as_slice()).unwrap(),
                content
            );
            assert!(ForwardFrame::open(other.secret(), decoded.sealed.as_slice()).is_err());
        }
    }

    #[test]
    fn the_gateway_reads_only_a_coarse_lifetime() {
        assert_eq!(LifetimeBucket::covering(None), LifetimeBucket::Unset);
        assert_eq!(LifetimeBucket::covering(Some(1)), LifetimeBucket::Hour);
        assert_eq!(
            LifetimeBucket::covering(Some(3_601)),
            LifetimeBucket::SixHours
        );
        assert_eq!(LifetimeBucket::covering(Some(86_400)), LifetimeBucket::Day);
        assert_eq!(
            LifetimeBucket::covering(Some(u32::MAX)),
            LifetimeBucket::Unset
        );
    }

    #[test]
    fn wrong_sizes_and_unknown_kinds_are_refused() {
        assert!(Frame::decode(&[0u8; 10]).is_err());
        let mut bytes = Frame::NodeLoop.encode().unwrap();
        bytes[1] = 99;
        assert!(Frame::decode(&bytes).is_err());
        bytes[1] = FrameKind::NodeLoop as u8;
        bytes[0] = 1;
        assert!(Frame::decode(&bytes).is_err(), "version 1 is gone");
        // A forward body one byte short, or with an unknown bucket.
        let forward = Frame::Forward(ForwardFrame {
            lifetime: LifetimeBucket::Day,
            recall_tag: RecallTag([0; 32]),
            surb_ack: vec![0; SURB_ACK_SIZE],
            sealed: Box::new([0; SEALED_SIZE]),
        })
        .encode()
        .unwrap();
        let mut short = forward.clone();
        short[3] -= 1;
        assert!(Frame::decode(&short).is_err());
        let mut bucket = forward;
        bucket[FRAME_HEADER_SIZE] = 9;
        assert!(Frame::decode(&bucket).is_err());
        let mut bigger = full_fragment();
        bigger.data.push(0);
        assert!(
            SealedContent::Data {
                lifetime: Some(1),
                fragment: bigger,
            }
            .encode()
            .is_err()
        );
    }

    #[test]
    fn a_full_fragment_fits_a_sealed_body_and_a_reply() {
        assert_eq!(FRAGMENT_CAPACITY, 1538);
        assert!(
            SealedContent::Data {
                lifetime: Some(60),
                fragment: full_fragment(),
            }
            .encode()
            .is_ok()
        );
        let reply = Frame::Reply {
            surb_ack: Some(vec![1; SURB_ACK_SIZE]),
            lifetime: Some(60),
            fragment: full_fragment(),
        };
        assert_eq!(Frame::decode(&reply.encode().unwrap()).unwrap(), reply);
    }

    #[test]
    fn unknown_flag_bits_are_refused() {
        let good = Frame::Reply {
            surb_ack: Some(vec![2; SURB_ACK_SIZE]),
            lifetime: Some(5),
            fragment: full_fragment(),
        }
        .encode()
        .unwrap();
        for bit in 2..8 {
            let mut bytes = good.clone();
            bytes[FRAME_HEADER_SIZE] |= 1 << bit;
            assert!(
                matches!(Frame::decode(&bytes), Err(ProtocolError::BadFrame(_))),
                "flag bit {bit} refused"
            );
        }
        let content = SealedContent::LoopCover { id: [1; 16] }.encode().unwrap();
        let mut flagged = content;
        flagged[1] = 1;
        assert!(SealedContent::decode(&flagged).is_err());
    }

    /// Found by the `sealed_content` fuzz target: a lifetime field that was
    /// not zero while its flag said "absent" decoded, so two plaintexts read
    /// as the same content (the format says the field is zero when absent).
    #[test]
    fn a_lifetime_without_its_flag_is_refused() {
        let mut bytes = SealedContent::DropCover.encode().unwrap();
        assert!(SealedContent::decode(&bytes).is_ok());
        bytes[2..6].copy_from_slice(&[0xff; 4]);
        assert!(SealedContent::decode(&bytes).is_err());
    }

    #[test]
    fn a_recall_frame_is_as_long_as_a_forward_frame_and_refuses_a_short_body() {
        // The recall body fills the frame; a forward body leaves one byte.
        assert_eq!(FRAME_HEADER_SIZE + RECALL_BODY_SIZE, FRAME_SIZE);
        assert_eq!(FORWARD_BODY_SIZE + 1, RECALL_BODY_SIZE);
        let recall = Frame::Recall(RecallFrame {
            secret: RecallSecret([4; 32]),
            fragments: 3,
            surb_ack: vec![5; SURB_ACK_SIZE],
            sealed: Box::new([6; SEALED_SIZE]),
        });
        let bytes = recall.encode().unwrap();
        assert_eq!(bytes.len(), FRAME_SIZE);
        assert_eq!(bytes[1], FrameKind::Recall as u8);
        assert_eq!(Frame::decode(&bytes).unwrap(), recall);
        let mut short = bytes.clone();
        short[3] -= 1;
        assert!(Frame::decode(&short).is_err());
        let mut bad_ack = Frame::Recall(RecallFrame {
            secret: RecallSecret([4; 32]),
            fragments: 3,
            surb_ack: vec![5; 3],
            sealed: Box::new([6; SEALED_SIZE]),
        });
        assert!(bad_ack.encode().is_err());
        if let Frame::Recall(r) = &mut bad_ack {
            r.surb_ack = vec![5; SURB_ACK_SIZE];
        }
        assert!(bad_ack.encode().is_ok());
    }

    #[test]
    fn sealing_draws_a_fresh_random_tag_each_time() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let recipient = crate::keys::SphinxKeyPair::generate(&mut rng);
        let seal = |rng: &mut ChaCha20Rng| {
            ForwardFrame::seal(
                &SealedContent::DropCover,
                &recipient.public(),
                vec![0; SURB_ACK_SIZE],
                rng,
            )
            .unwrap()
            .recall_tag
        };
        assert_ne!(seal(&mut rng), seal(&mut rng));
    }

    #[test]
    fn a_truncated_lifetime_is_refused() {
        // Flags say "lifetime" but the body ends after two bytes of it.
        let mut bytes = vec![FRAME_VERSION, FrameKind::Reply as u8, 0, 3];
        bytes.extend_from_slice(&[FLAG_LIFETIME, 0, 0]);
        bytes.resize(FRAME_SIZE, 0);
        assert!(Frame::decode(&bytes).is_err());
    }
}

#[cfg(test)]
mod bundle_request_tests {
    use super::*;

    fn request(surbs: usize) -> Frame {
        Frame::BundleRequest(BundleRequestFrame {
            fingerprint: [0xAB; FINGERPRINT_SIZE],
            surbs: (0..surbs).map(|i| Surb(vec![i as u8; SURB_SIZE])).collect(),
        })
    }

    #[test]
    fn a_bundle_request_is_fingerprint_count_and_surbs_in_one_frame() {
        let bytes = request(2).encode().unwrap();
        assert_eq!(bytes.len(), FRAME_SIZE);
        assert_eq!(bytes[1], FrameKind::BundleRequest as u8);
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            BUNDLE_REQUEST_BODY_MAX
        );
        assert_eq!(&bytes[4..24], &[0xAB; FINGERPRINT_SIZE]);
        assert_eq!(bytes[24], 2);
        assert_eq!(bytes[25], 0);
        assert_eq!(bytes[25 + SURB_SIZE], 1);
        assert_eq!(Frame::decode(&bytes).unwrap(), request(2));
        assert_eq!(
            Frame::decode(&request(1).encode().unwrap()).unwrap(),
            request(1)
        );
    }

    #[test]
    fn no_surb_too_many_surbs_or_a_short_surb_is_refused() {
        assert!(request(0).encode().is_err());
        assert!(request(BUNDLE_REQUEST_SURBS + 1).encode().is_err());
        let short = Frame::BundleRequest(BundleRequestFrame {
            fingerprint: [1; FINGERPRINT_SIZE],
            surbs: vec![Surb(vec![0; SURB_SIZE - 1])],
        });
        assert!(short.encode().is_err());
        // A count that the SURBs do not match, and counts 0 and 3.
        let good = request(2).encode().unwrap();
        for count in [0u8, 1, 3] {
            let mut bytes = good.clone();
            bytes[24] = count;
            assert!(Frame::decode(&bytes).is_err(), "count {count}");
        }
        // A body one byte longer than its SURBs.
        let mut longer = good;
        let len = u16::from_be_bytes([longer[2], longer[3]]) + 1;
        longer[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(Frame::decode(&longer).is_err());
    }
}
