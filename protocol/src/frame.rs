//! The fixed-size frame inside every Sphinx payload.
//!
//! Whatever a packet carries (a fragment of a message, an ack, cover) it is
//! one [`FRAME_SIZE`]-byte frame, so nothing but the final recipient can tell
//! kinds apart, and every packet on the wire has the same length.
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
//! Bodies: a data fragment and a reply carry
//!
//! | bytes | field |
//! |---|---|
//! | 1 | flags: bit 0 = SURB-ack present, bit 1 = lifetime present, other bits zero |
//! | 4 if bit 1 | lifetime: seconds the recipient's gateway may keep the fragment (u32) |
//! | [`SURB_ACK_SIZE`] if bit 0 | SURB-ack |
//! | rest | fragment |
//!
//! an ack carries the acknowledged [`FragmentId`]; cover frames carry nothing.
//! A frame with an unknown flag bit set is refused. [`FRAGMENT_CAPACITY`]
//! leaves room for both the lifetime and the SURB-ack, so a fragment's
//! capacity does not depend on which of them a frame carries.

use crate::error::ProtocolError;
use crate::fragment::{FRAGMENT_HEADER_SIZE, Fragment, FragmentId};
use crate::packet::FRAME_SIZE;
use crate::surb::SURB_SIZE;

/// Version byte of the frame format.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the body: version, kind, body length.
pub const FRAME_HEADER_SIZE: usize = 4;
/// Bytes a SURB-ack takes inside a frame.
pub const SURB_ACK_SIZE: usize = SURB_SIZE;
/// Bytes a lifetime takes inside a frame.
pub const LIFETIME_SIZE: usize = 4;
/// Bytes of message data one fragment carries.
pub const FRAGMENT_CAPACITY: usize =
    FRAME_SIZE - FRAME_HEADER_SIZE - 1 - LIFETIME_SIZE - SURB_ACK_SIZE - FRAGMENT_HEADER_SIZE;

/// Flag bit: the frame carries a SURB-ack.
const FLAG_SURB_ACK: u8 = 1;
/// Flag bit: the frame carries a lifetime.
const FLAG_LIFETIME: u8 = 2;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A fragment of a message sent to a client's address.
    DataFragment = 1,
    /// An acknowledgement that came back through a SURB-ack.
    Ack = 2,
    /// Cover that returns to its sender.
    LoopCover = 3,
    /// Cover that the recipient's gateway drops.
    DropCover = 4,
    /// A fragment of a reply sent through a SURB.
    Reply = 5,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => FrameKind::DataFragment,
            2 => FrameKind::Ack,
            3 => FrameKind::LoopCover,
            4 => FrameKind::DropCover,
            5 => FrameKind::Reply,
            _ => return None,
        })
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A fragment of a message, with the SURB-ack its recipient's gateway sends back.
    DataFragment {
        /// Serialized SURB the recipient's gateway uses to ack the fragment.
        surb_ack: Option<Vec<u8>>,
        /// Seconds the recipient's gateway may keep the fragment, counted
        /// from its arrival there (`None`: the gateway's retention).
        lifetime: Option<u32>,
        /// The fragment.
        fragment: Fragment,
    },
    /// An acknowledgement of one fragment.
    Ack {
        /// The fragment acknowledged.
        fragment: FragmentId,
    },
    /// Loop cover.
    LoopCover,
    /// Drop cover.
    DropCover,
    /// A fragment of a reply sent through a SURB.
    Reply {
        /// Serialized SURB the recipient's gateway uses to ack the fragment.
        surb_ack: Option<Vec<u8>>,
        /// Seconds the recipient's gateway may keep the fragment, counted
        /// from its arrival there (`None`: the gateway's retention).
        lifetime: Option<u32>,
        /// The fragment.
        fragment: Fragment,
    },
}

impl Frame {
    /// The kind of this frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::DataFragment { .. } => FrameKind::DataFragment,
            Frame::Ack { .. } => FrameKind::Ack,
            Frame::LoopCover => FrameKind::LoopCover,
            Frame::DropCover => FrameKind::DropCover,
            Frame::Reply { .. } => FrameKind::Reply,
        }
    }

    /// Encodes the frame to exactly [`FRAME_SIZE`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut body = Vec::new();
        match self {
            Frame::DataFragment {
                surb_ack,
                lifetime,
                fragment,
            }
            | Frame::Reply {
                surb_ack,
                lifetime,
                fragment,
            } => {
                if let Some(ack) = surb_ack
                    && ack.len() != SURB_ACK_SIZE
                {
                    return Err(ProtocolError::BadFrame(format!(
                        "a SURB-ack is {SURB_ACK_SIZE} bytes, got {}",
                        ack.len()
                    )));
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
            Frame::Ack { fragment } => fragment.encode_into(&mut body),
            Frame::LoopCover | Frame::DropCover => {}
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
            FrameKind::DataFragment | FrameKind::Reply => {
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
                Ok(if kind == FrameKind::Reply {
                    Frame::Reply {
                        surb_ack,
                        lifetime,
                        fragment,
                    }
                } else {
                    Frame::DataFragment {
                        surb_ack,
                        lifetime,
                        fragment,
                    }
                })
            }
            FrameKind::Ack => Ok(Frame::Ack {
                fragment: FragmentId::decode(body)?,
            }),
            FrameKind::LoopCover => Ok(Frame::LoopCover),
            FrameKind::DropCover => Ok(Frame::DropCover),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::MessageId;
    use proptest::prelude::*;

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

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let ack = proptest::option::of(proptest::collection::vec(
            any::<u8>(),
            SURB_ACK_SIZE..=SURB_ACK_SIZE,
        ));
        let lifetime = proptest::option::of(any::<u32>());
        prop_oneof![
            (ack.clone(), lifetime.clone(), arb_fragment()).prop_map(
                |(surb_ack, lifetime, fragment)| Frame::DataFragment {
                    surb_ack,
                    lifetime,
                    fragment,
                }
            ),
            (ack, lifetime, arb_fragment()).prop_map(|(surb_ack, lifetime, fragment)| {
                Frame::Reply {
                    surb_ack,
                    lifetime,
                    fragment,
                }
            }),
            arb_fragment().prop_map(|f| Frame::Ack { fragment: f.id }),
            Just(Frame::LoopCover),
            Just(Frame::DropCover),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_has_the_same_length_and_round_trips(frame in arb_frame()) {
            let bytes = frame.encode().unwrap();
            prop_assert_eq!(bytes.len(), FRAME_SIZE);
            prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn corrupted_frames_never_panic(frame in arb_frame(), pos in 0usize..FRAME_SIZE, bit in 0u8..8) {
            let mut bytes = frame.encode().unwrap();
            bytes[pos] ^= 1 << bit;
            let _ = Frame::decode(&bytes);
        }
    }

    #[test]
    fn wrong_sizes_and_unknown_kinds_are_refused() {
        assert!(Frame::decode(&[0u8; 10]).is_err());
        let mut bytes = Frame::LoopCover.encode().unwrap();
        bytes[1] = 99;
        assert!(Frame::decode(&bytes).is_err());
        bytes[1] = FrameKind::LoopCover as u8;
        bytes[0] = 7;
        assert!(Frame::decode(&bytes).is_err());
        let too_long = Frame::DataFragment {
            surb_ack: None,
            lifetime: None,
            fragment: Fragment {
                id: FragmentId {
                    message: MessageId([0; 16]),
                    index: 0,
                },
                count: 1,
                data: vec![0; FRAME_SIZE],
            },
        };
        assert!(too_long.encode().is_err());
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
    fn lifetime_and_ack_round_trip_in_every_combination() {
        assert_eq!(FRAGMENT_CAPACITY, 1623);
        for surb_ack in [None, Some(vec![0xab; SURB_ACK_SIZE])] {
            for lifetime in [None, Some(0), Some(1), Some(86_400), Some(u32::MAX)] {
                let frames = [
                    Frame::DataFragment {
                        surb_ack: surb_ack.clone(),
                        lifetime,
                        fragment: full_fragment(),
                    },
                    Frame::Reply {
                        surb_ack: surb_ack.clone(),
                        lifetime,
                        fragment: full_fragment(),
                    },
                ];
                for frame in frames {
                    let bytes = frame.encode().unwrap();
                    assert_eq!(bytes.len(), FRAME_SIZE);
                    let flags = bytes[FRAME_HEADER_SIZE];
                    assert_eq!(flags & FLAG_SURB_ACK != 0, surb_ack.is_some());
                    assert_eq!(flags & FLAG_LIFETIME != 0, lifetime.is_some());
                    if let Some(l) = lifetime {
                        // The lifetime comes right after the flags byte.
                        let at = FRAME_HEADER_SIZE + 1;
                        assert_eq!(bytes[at..at + LIFETIME_SIZE], l.to_be_bytes());
                    }
                    assert_eq!(Frame::decode(&bytes).unwrap(), frame);
                }
            }
        }
    }

    #[test]
    fn a_full_fragment_with_lifetime_and_ack_fits_exactly() {
        let frame = Frame::DataFragment {
            surb_ack: Some(vec![1; SURB_ACK_SIZE]),
            lifetime: Some(60),
            fragment: full_fragment(),
        };
        let bytes = frame.encode().unwrap();
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        assert_eq!(len, FRAME_SIZE - FRAME_HEADER_SIZE, "no byte to spare");
        let mut bigger = full_fragment();
        bigger.data.push(0);
        let too_long = Frame::DataFragment {
            surb_ack: Some(vec![1; SURB_ACK_SIZE]),
            lifetime: Some(60),
            fragment: bigger,
        };
        assert!(too_long.encode().is_err());
    }

    #[test]
    fn unknown_flag_bits_are_refused() {
        for frame in [
            Frame::DataFragment {
                surb_ack: None,
                lifetime: None,
                fragment: full_fragment(),
            },
            Frame::Reply {
                surb_ack: Some(vec![2; SURB_ACK_SIZE]),
                lifetime: Some(5),
                fragment: full_fragment(),
            },
        ] {
            let good = frame.encode().unwrap();
            for bit in 2..8 {
                let mut bytes = good.clone();
                bytes[FRAME_HEADER_SIZE] |= 1 << bit;
                assert!(
                    matches!(Frame::decode(&bytes), Err(ProtocolError::BadFrame(_))),
                    "flag bit {bit} refused"
                );
            }
        }
    }

    #[test]
    fn a_truncated_lifetime_is_refused() {
        // Flags say "lifetime" but the body ends after two bytes of it.
        let mut bytes = vec![FRAME_VERSION, FrameKind::DataFragment as u8, 0, 3];
        bytes.extend_from_slice(&[FLAG_LIFETIME, 0, 0]);
        bytes.resize(FRAME_SIZE, 0);
        assert!(Frame::decode(&bytes).is_err());
    }
}
