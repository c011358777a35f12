//! How one layer of a packet is taken off.
//!
//! The mixing logic (keys, replay, delays, cover) is the same whether a packet
//! is real Sphinx or a simulator's cleartext stand-in; only the unwrapping
//! differs. A [`HopCodec`] splits unwrapping in two so that the [`Mixer`]
//! can check the replay tag between them: [`HopCodec::open`] does the cheap
//! part that identifies the packet (for Sphinx: one X25519 and the header MAC),
//! [`HopCodec::finish`] the expensive rest (blinding and payload). A replayed
//! or forged packet therefore costs one scalar multiplication, not two.
//!
//! Real Sphinx comes in two implementations that read and write the same
//! bytes: [`SphinxCodec`], our own (`protocol::sphinx`, on curve25519-dalek),
//! the default; and [`ReferenceSphinxCodec`], over the `sphinx-packet` crate
//! it is tested against. A node picks one at start with
//! [`ConfiguredSphinxCodec`] (`sphinx_codec` in its config), so an operator
//! can fall back to the reference with one line.
//!
//! [`Mixer`]: crate::Mixer

use std::str::FromStr;
use std::time::Duration;

use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::packet::{PACKET_SIZE, SPHINX_VERSION};
use protocol::sphinx::{OpenedPacket, ReceivedPacket, SphinxError, UnwrappedPacket};
use protocol::surb::SurbId;
use serde::{Deserialize, Serialize};
use sphinx_packet::header::shared_secret::ExpandedSharedSecret;
use sphinx_packet::{ProcessedPacketData, SphinxPacket};

use crate::drop_reason::DropReason;

/// What is left of a packet after one layer came off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopOutput {
    /// Forward `packet` to `next_hop` after `delay`.
    Forward {
        /// The next node.
        next_hop: NodeId,
        /// The delay the sender chose for this hop.
        delay: Duration,
        /// The packet for the next hop.
        packet: Vec<u8>,
    },
    /// This node is the final hop.
    Final {
        /// The destination the sender named (a client key, or a node's own id).
        destination: [u8; 32],
        /// The SURB id (all zero for forward packets).
        surb_id: SurbId,
        /// The payload, still sealed for SURB replies.
        payload: Vec<u8>,
    },
}

/// Takes one layer off a packet, in two steps around the replay check.
pub trait HopCodec: Send + Sync {
    /// A packet whose header is authentic under a key, waiting for [`HopCodec::finish`].
    type Opened;

    /// Length of every packet this codec reads.
    fn packet_size(&self) -> usize {
        PACKET_SIZE
    }

    /// Parses `packet` and authenticates its header under `key`; returns the
    /// opened packet and its replay tag. `Err(UnknownKey)` means "not this key".
    fn open(
        &self,
        key: &SphinxKeyPair,
        packet: &[u8],
    ) -> Result<(Self::Opened, [u8; 32]), DropReason>;

    /// Finishes unwrapping an opened packet.
    fn finish(&self, opened: Self::Opened) -> Result<HopOutput, DropReason>;
}

/// Our own Sphinx (`protocol::sphinx`): byte for byte `sphinx-packet`'s
/// packets, in less time. The default codec of every node.
#[derive(Debug, Clone, Copy, Default)]
pub struct SphinxCodec;

/// The drop reason of a refusal by our Sphinx.
fn drop_reason(error: SphinxError) -> DropReason {
    match error {
        SphinxError::TooShort { .. } => DropReason::WrongSize,
        SphinxError::NonCanonicalAlpha
        | SphinxError::AlphaNotOnCurve
        | SphinxError::SmallOrderAlpha
        | SphinxError::UnknownFlag(_) => DropReason::Malformed,
        SphinxError::BadMac => DropReason::UnknownKey,
        SphinxError::UnknownVersion(_) => DropReason::UnknownVersion,
        SphinxError::RouteLength(_)
        | SphinxError::DelayCount { .. }
        | SphinxError::BadNodeKey
        | SphinxError::PayloadSize(_)
        | SphinxError::MessageTooLong { .. }
        | SphinxError::BadPadding
        | SphinxError::SurbLength { .. }
        | SphinxError::SurbVersion(_)
        | SphinxError::ZeroSurbId
        | SphinxError::KeyDerivation => DropReason::BadPayload,
    }
}

impl HopCodec for SphinxCodec {
    type Opened = OpenedPacket;

    fn open(
        &self,
        key: &SphinxKeyPair,
        packet: &[u8],
    ) -> Result<(OpenedPacket, [u8; 32]), DropReason> {
        if packet.len() != PACKET_SIZE {
            return Err(DropReason::WrongSize);
        }
        // Parsing refuses non-canonical, twist and small-order alphas: a
        // second encoding of a packet would otherwise dodge the replay filter.
        let opened = ReceivedPacket::parse(packet)
            .and_then(|p| p.open(key.secret()))
            .map_err(drop_reason)?;
        let tag = *opened.replay_tag();
        Ok((opened, tag))
    }

    fn finish(&self, opened: OpenedPacket) -> Result<HopOutput, DropReason> {
        Ok(
            match opened.finish_at(SPHINX_VERSION).map_err(drop_reason)? {
                UnwrappedPacket::Forward {
                    next_hop,
                    delay,
                    packet,
                    ..
                } => HopOutput::Forward {
                    next_hop: NodeId(next_hop),
                    delay,
                    packet,
                },
                UnwrappedPacket::Final {
                    destination,
                    surb_id,
                    payload,
                    ..
                } => HopOutput::Final {
                    destination,
                    surb_id: SurbId(surb_id),
                    payload,
                },
            },
        )
    }
}

/// Whether `u` (little endian) is a canonical X25519 u-coordinate: below
/// the field prime 2^255 − 19 (so in particular with the top bit clear).
fn is_canonical_point(u: &[u8; 32]) -> bool {
    let [low, middle @ .., high] = u;
    if *high & 0x80 != 0 {
        return false;
    }
    // The only encodings at or above the prime: 0x7f, thirty 0xff, and a low byte ≥ 0xed.
    !(*high == 0x7f && middle.iter().all(|b| *b == 0xff) && *low >= 0xed)
}

/// Sphinx through the `sphinx-packet` crate: the reference our own is
/// tested against, and the fallback an operator can choose.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceSphinxCodec;

/// A Sphinx packet whose header MAC checked out, with its expanded secret.
pub struct OpenedReference {
    packet: SphinxPacket,
    secret: ExpandedSharedSecret,
}

impl HopCodec for ReferenceSphinxCodec {
    type Opened = OpenedReference;

    fn open(
        &self,
        key: &SphinxKeyPair,
        packet: &[u8],
    ) -> Result<(OpenedReference, [u8; 32]), DropReason> {
        if packet.len() != PACKET_SIZE {
            return Err(DropReason::WrongSize);
        }
        // X25519 ignores the top bit of a point and reduces values above the
        // field prime, so a non-canonical alpha would be a second encoding of
        // the same packet: refuse it before any arithmetic.
        match packet.get(..32).and_then(|a| <&[u8; 32]>::try_from(a).ok()) {
            Some(alpha) if is_canonical_point(alpha) => {}
            _ => return Err(DropReason::Malformed),
        }
        let packet = SphinxPacket::from_bytes(packet).map_err(|_| DropReason::Malformed)?;
        let secret = packet.header.compute_expanded_shared_secret(key.secret());
        packet
            .header
            .ensure_header_integrity(&secret)
            .map_err(|_| DropReason::UnknownKey)?;
        let tag = *secret.replay_tag();
        Ok((OpenedReference { packet, secret }, tag))
    }

    fn finish(&self, opened: OpenedReference) -> Result<HopOutput, DropReason> {
        let OpenedReference { packet, secret } = opened;
        let processed = packet
            .process_with_expanded_secret(&secret)
            .map_err(|_| DropReason::BadPayload)?;
        if processed.version.value() != SPHINX_VERSION.0 {
            return Err(DropReason::UnknownVersion);
        }
        Ok(match processed.data {
            ProcessedPacketData::ForwardHop {
                next_hop_packet,
                next_hop_address,
                delay,
            } => HopOutput::Forward {
                next_hop: NodeId::from_sphinx_address(&next_hop_address),
                delay: delay.to_duration(),
                packet: next_hop_packet.to_bytes(),
            },
            ProcessedPacketData::FinalHop {
                destination,
                identifier,
                payload,
            } => HopOutput::Final {
                destination: destination.as_bytes(),
                surb_id: SurbId(identifier),
                payload: payload.into_bytes(),
            },
        })
    }
}

/// Which Sphinx implementation a node unwraps with (`sphinx_codec` in its
/// config): `"native"`, our own (the default), or `"reference"`,
/// `sphinx-packet`. Both read and write the same bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SphinxCodecKind {
    /// [`SphinxCodec`].
    #[default]
    Native,
    /// [`ReferenceSphinxCodec`].
    Reference,
}

impl SphinxCodecKind {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            SphinxCodecKind::Native => "native",
            SphinxCodecKind::Reference => "reference",
        }
    }
}

impl std::fmt::Display for SphinxCodecKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SphinxCodecKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "native" => Ok(SphinxCodecKind::Native),
            "reference" => Ok(SphinxCodecKind::Reference),
            other => Err(format!(
                "`{other}` is not a Sphinx codec; expected \"native\" or \"reference\""
            )),
        }
    }
}

/// The Sphinx codec a node chose at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfiguredSphinxCodec(pub SphinxCodecKind);

/// A packet opened by a [`ConfiguredSphinxCodec`].
pub enum OpenedConfigured {
    /// Opened by [`SphinxCodec`].
    Native(OpenedPacket),
    /// Opened by [`ReferenceSphinxCodec`].
    Reference(OpenedReference),
}

impl HopCodec for ConfiguredSphinxCodec {
    type Opened = OpenedConfigured;

    fn open(
        &self,
        key: &SphinxKeyPair,
        packet: &[u8],
    ) -> Result<(OpenedConfigured, [u8; 32]), DropReason> {
        match self.0 {
            SphinxCodecKind::Native => SphinxCodec
                .open(key, packet)
                .map(|(o, tag)| (OpenedConfigured::Native(o), tag)),
            SphinxCodecKind::Reference => ReferenceSphinxCodec
                .open(key, packet)
                .map(|(o, tag)| (OpenedConfigured::Reference(o), tag)),
        }
    }

    fn finish(&self, opened: OpenedConfigured) -> Result<HopOutput, DropReason> {
        match opened {
            OpenedConfigured::Native(o) => SphinxCodec.finish(o),
            OpenedConfigured::Reference(o) => ReferenceSphinxCodec.finish(o),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_kinds_parse_and_print() {
        for kind in [SphinxCodecKind::Native, SphinxCodecKind::Reference] {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        assert_eq!(SphinxCodecKind::default(), SphinxCodecKind::Native);
        assert!("fast".parse::<SphinxCodecKind>().is_err());
    }

    #[test]
    fn only_canonical_points_are_accepted() {
        let mut p = [0u8; 32];
        assert!(is_canonical_point(&p));
        p[31] = 0x80;
        assert!(!is_canonical_point(&p), "top bit set");
        let mut prime = [0xffu8; 32];
        prime[0] = 0xed;
        prime[31] = 0x7f;
        assert!(!is_canonical_point(&prime), "the prime itself");
        prime[0] = 0xec;
        assert!(is_canonical_point(&prime), "prime − 1");
        prime[0] = 0xff;
        assert!(!is_canonical_point(&prime), "2^255 − 1");
    }
}
