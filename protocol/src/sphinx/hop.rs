//! A node's side: take one layer off a packet.
//!
//! In three steps, so that a node rejects cheaply and checks the replay tag
//! before the expensive half:
//!
//! 1. [`ReceivedPacket::parse`]: length and alpha (canonical, on the curve,
//!    of large order), decoded once to an Edwards point — public work, shared
//!    by every key the node tries;
//! 2. [`ReceivedPacket::open`]: the first scalar multiplication (the shared
//!    secret), the KDF, and the header MAC; gives the replay tag;
//! 3. [`OpenedPacket::finish`]: decrypt the routing information, check the
//!    version, the second multiplication (blinding alpha for the next hop)
//!    and the payload layer, written in place into the packet's own buffer.
//!
//! The output is byte for byte what `sphinx-packet` 0.8's `process` gives.

use std::time::Duration;

use curve25519_dalek::EdwardsPoint;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::sphinx::cipher::mac_matches;
use crate::sphinx::error::SphinxError;
use crate::sphinx::geometry::{
    DESTINATION_SIZE, HEADER_SIZE, HeaderVersion, MIN_PAYLOAD_SIZE, NODE_ADDRESS_SIZE,
    REPLAY_TAG_SIZE, SURB_ID_SIZE, split_packet, split_packet_mut,
};
use crate::sphinx::group::{decode_point, x25519};
use crate::sphinx::kdf::HopSecrets;
use crate::sphinx::payload::remove_layer;
use crate::sphinx::routing::{Instruction, read};

/// Smallest packet a hop accepts: a header and the smallest Lioness block.
pub const MIN_PACKET_SIZE: usize = HEADER_SIZE + MIN_PAYLOAD_SIZE;

/// A packet whose alpha decoded: ready to be opened under a key.
pub struct ReceivedPacket<'a> {
    bytes: &'a [u8],
    alpha: EdwardsPoint,
}

impl<'a> ReceivedPacket<'a> {
    /// Checks the length and decodes alpha. Any length from
    /// [`MIN_PACKET_SIZE`] up is a packet here; a node that has one packet
    /// size checks it before.
    pub fn parse(bytes: &'a [u8]) -> Result<ReceivedPacket<'a>, SphinxError> {
        let too_short = SphinxError::TooShort {
            len: bytes.len(),
            min: MIN_PACKET_SIZE,
        };
        if bytes.len() < MIN_PACKET_SIZE {
            return Err(too_short);
        }
        let parts = split_packet(bytes).ok_or(too_short)?;
        let alpha = decode_point(parts.alpha)?;
        Ok(ReceivedPacket { bytes, alpha })
    }

    /// Derives this hop's secrets under `key` and checks the header MAC
    /// (in constant time). `Err(BadMac)` is also what a packet built for
    /// another key gives, so a node with several live keys tries each.
    pub fn open(&self, key: &StaticSecret) -> Result<OpenedPacket, SphinxError> {
        let parts = split_packet(self.bytes).ok_or(SphinxError::TooShort {
            len: self.bytes.len(),
            min: MIN_PACKET_SIZE,
        })?;
        let secret = Zeroizing::new(key.to_bytes());
        let shared = x25519(&self.alpha, &secret);
        let secrets = HopSecrets::expand(&shared)?;
        if !mac_matches(secrets.mac_key(), parts.routing, parts.mac) {
            return Err(SphinxError::BadMac);
        }
        Ok(OpenedPacket {
            bytes: self.bytes.to_vec(),
            alpha: self.alpha,
            secrets,
        })
    }
}

/// A packet whose header MAC verified under a key, waiting for
/// [`OpenedPacket::finish`]; owns a copy of the packet, which `finish`
/// turns into the next hop's packet in place.
pub struct OpenedPacket {
    bytes: Vec<u8>,
    alpha: EdwardsPoint,
    secrets: HopSecrets,
}

impl std::fmt::Debug for OpenedPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenedPacket({} bytes)", self.bytes.len())
    }
}

impl OpenedPacket {
    /// The replay tag of this packet under the key that opened it.
    pub fn replay_tag(&self) -> &[u8; REPLAY_TAG_SIZE] {
        self.secrets.replay_tag()
    }

    /// Takes the layer off: routing information, version, blinding, payload.
    pub fn finish(self) -> Result<UnwrappedPacket, SphinxError> {
        self.finish_checked(None)
    }

    /// [`OpenedPacket::finish`] for a node that speaks one version only: a
    /// packet of any other is refused before the blinding and the payload.
    pub fn finish_at(self, version: HeaderVersion) -> Result<UnwrappedPacket, SphinxError> {
        self.finish_checked(Some(version))
    }

    fn finish_checked(self, only: Option<HeaderVersion>) -> Result<UnwrappedPacket, SphinxError> {
        let OpenedPacket {
            mut bytes,
            alpha,
            secrets,
        } = self;
        let len = bytes.len();
        let parts = split_packet_mut(&mut bytes).ok_or(SphinxError::TooShort {
            len,
            min: MIN_PACKET_SIZE,
        })?;
        let instruction = read(secrets.stream_key(), parts.routing)?;
        let version = instruction.version();
        if only.is_some_and(|only| only != version) {
            return Err(SphinxError::UnknownVersion(version.to_bytes()));
        }
        let payload_key = secrets.payload_key(version)?;
        remove_layer(&payload_key, parts.payload)?;
        match instruction {
            Instruction::Forward {
                next_hop,
                delay_nanos,
                next_mac,
                next_routing,
                ..
            } => {
                *parts.alpha = *x25519(&alpha, secrets.blinding_factor());
                *parts.mac = next_mac;
                *parts.routing = next_routing;
                Ok(UnwrappedPacket::Forward {
                    version,
                    next_hop,
                    delay: Duration::from_nanos(delay_nanos),
                    packet: bytes,
                })
            }
            Instruction::Final {
                destination,
                surb_id,
                ..
            } => Ok(UnwrappedPacket::Final {
                version,
                destination,
                surb_id,
                payload: bytes.split_off(HEADER_SIZE),
            }),
        }
    }
}

/// A packet with one layer taken off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnwrappedPacket {
    /// Send `packet` to `next_hop` after `delay`.
    Forward {
        /// The version the sender wrote.
        version: HeaderVersion,
        /// The next node's address.
        next_hop: [u8; NODE_ADDRESS_SIZE],
        /// The delay the sender chose for this hop.
        delay: Duration,
        /// The packet for the next hop, as long as the one received.
        packet: Vec<u8>,
    },
    /// This node is the final hop.
    Final {
        /// The version the sender wrote.
        version: HeaderVersion,
        /// The destination the sender named.
        destination: [u8; DESTINATION_SIZE],
        /// The SURB identifier (all zero for forward packets).
        surb_id: [u8; SURB_ID_SIZE],
        /// The payload with this hop's layer removed: the padded message of
        /// a forward packet, still sealed for a SURB reply.
        payload: Vec<u8>,
    },
}

/// Parses, opens and finishes in one call, for callers without a replay filter.
pub fn unwrap_packet(key: &StaticSecret, packet: &[u8]) -> Result<UnwrappedPacket, SphinxError> {
    ReceivedPacket::parse(packet)?.open(key)?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sphinx::builder::{Destination, PacketRandomness, RouteNode, build_header};
    use crate::sphinx::cipher::header_mac;
    use crate::sphinx::group::NodePublicKey;
    use x25519_dalek::PublicKey;

    /// A one-hop packet whose routing information decrypts to the final
    /// instruction with byte `at` XORed by `flip`, under a valid MAC: what
    /// only a sender holding the node's public key can make.
    fn forged(at: usize, flip: u8) -> (StaticSecret, Vec<u8>) {
        let secret = StaticSecret::from([9u8; 32]);
        let route = [RouteNode {
            address: [1; 32],
            key: NodePublicKey::try_from(&PublicKey::from(&secret)).unwrap(),
        }];
        let built = build_header(
            &PacketRandomness::from_parts([3; 32], &[]),
            &route,
            &[Duration::ZERO],
            &Destination {
                address: [2; 32],
                surb_id: [0; 16],
            },
            HeaderVersion::SINGLE_SEED_SURB,
        )
        .unwrap();
        let mut packet = built.header.to_vec();
        packet[48 + at] ^= flip;
        let mac = header_mac(built.secrets[0].mac_key(), &packet[48..HEADER_SIZE]);
        packet[32..48].copy_from_slice(&mac);
        packet.extend_from_slice(&[0u8; 100]);
        (secret, packet)
    }

    #[test]
    fn an_unknown_flag_is_refused() {
        let (secret, packet) = forged(0, 2 ^ 3);
        assert_eq!(
            unwrap_packet(&secret, &packet).unwrap_err(),
            SphinxError::UnknownFlag(3)
        );
    }

    #[test]
    fn a_non_zero_first_version_byte_is_refused() {
        // `sphinx-packet` only debug_asserts this byte.
        let (secret, packet) = forged(1, 1);
        assert_eq!(
            unwrap_packet(&secret, &packet).unwrap_err(),
            SphinxError::UnknownVersion([1, 1, 4])
        );
    }

    #[test]
    fn the_forgery_is_otherwise_valid() {
        let (secret, packet) = forged(0, 0);
        assert!(matches!(
            unwrap_packet(&secret, &packet).unwrap(),
            UnwrappedPacket::Final { .. }
        ));
    }
}
