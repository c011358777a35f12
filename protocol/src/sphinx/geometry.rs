//! The layout of a Sphinx packet, byte for byte that of `sphinx-packet` 0.8.
//!
//! ```text
//! header  = alpha (32) | gamma: MAC (16) | beta: routing information (300)
//! beta    = one 60-byte slot per hop, 5 slots
//! forward = flag 1 (1) | version (3) | next hop (32) | delay (8, BE ns) | next MAC (16) | next beta[..240]
//! final   = flag 2 (1) | version (3) | destination (32) | SURB id (16) | padding, then the filler
//! payload = Lioness layers over 0^16 | message | 1 | 0*
//! ```

use crate::sphinx::error::SphinxError;

/// Sphinx's security parameter k, in bytes.
pub const SECURITY_PARAMETER: usize = 16;
/// Most hops a route may have (r in the Sphinx paper).
pub const MAX_HOPS: usize = 5;
/// Bytes of alpha, the packet's group element (an X25519 u-coordinate).
pub const ALPHA_SIZE: usize = 32;
/// Bytes of gamma, the header MAC (HMAC-SHA256 truncated).
pub const MAC_SIZE: usize = SECURITY_PARAMETER;
/// Bytes of a node's routing address.
pub const NODE_ADDRESS_SIZE: usize = 2 * SECURITY_PARAMETER;
/// Bytes of a final destination's address.
pub const DESTINATION_SIZE: usize = 2 * SECURITY_PARAMETER;
/// Bytes of a SURB identifier, read in the clear by the final hop.
pub const SURB_ID_SIZE: usize = SECURITY_PARAMETER;
/// Bytes of a per-hop delay (nanoseconds, big endian).
pub const DELAY_SIZE: usize = 8;
/// Bytes of the header version field.
pub const VERSION_SIZE: usize = 3;
/// Bytes of the routing flag.
pub const FLAG_SIZE: usize = 1;
/// Bytes of a payload key seed.
pub const PAYLOAD_KEY_SEED_SIZE: usize = SECURITY_PARAMETER;
/// Bytes of a replay tag.
pub const REPLAY_TAG_SIZE: usize = 2 * SECURITY_PARAMETER;

/// What a forward hop reads besides the next MAC: flag, version, address, delay.
pub(crate) const NODE_META_SIZE: usize = FLAG_SIZE + VERSION_SIZE + NODE_ADDRESS_SIZE + DELAY_SIZE;
/// What the final hop reads: flag, version, destination, SURB id.
pub(crate) const FINAL_META_SIZE: usize =
    FLAG_SIZE + VERSION_SIZE + DESTINATION_SIZE + SURB_ID_SIZE;
/// One hop's slot in beta.
pub(crate) const HOP_SLOT_SIZE: usize = NODE_META_SIZE + MAC_SIZE;
/// Bytes of beta, the encrypted routing information.
pub const ROUTING_INFO_SIZE: usize = HOP_SLOT_SIZE * MAX_HOPS;
/// Bytes of beta a hop passes on from its own (the rest is keystream).
pub(crate) const TRUNCATED_ROUTING_INFO_SIZE: usize = ROUTING_INFO_SIZE - HOP_SLOT_SIZE;
/// Bytes of keystream a hop draws: beta plus one slot of padding.
pub(crate) const KEYSTREAM_SIZE: usize = HOP_SLOT_SIZE * (MAX_HOPS + 1);
/// Bytes of a Sphinx header.
pub const HEADER_SIZE: usize = ALPHA_SIZE + MAC_SIZE + ROUTING_INFO_SIZE;
/// Bytes a payload adds to its message: k zero bytes and the `1` that ends it.
pub const PAYLOAD_OVERHEAD_SIZE: usize = SECURITY_PARAMETER + 1;
/// Smallest payload Lioness can encrypt: more than one hash output.
pub const MIN_PAYLOAD_SIZE: usize = 33;
/// Most random padding the final hop's routing information takes (a 1-hop route).
pub const MAX_FINAL_PADDING: usize = ROUTING_INFO_SIZE - FINAL_META_SIZE;

const _: () = assert!(HEADER_SIZE == 348);
const _: () = assert!(KEYSTREAM_SIZE == 360);
const _: () = assert!(FINAL_META_SIZE <= ROUTING_INFO_SIZE - HOP_SLOT_SIZE * (MAX_HOPS - 1));

/// Bytes of random padding after the final hop's routing information on a
/// route of `hops` hops (1 to [`MAX_HOPS`]).
pub(crate) fn final_padding_size(hops: usize) -> usize {
    ROUTING_INFO_SIZE
        .saturating_sub(HOP_SLOT_SIZE * hops.saturating_sub(1))
        .saturating_sub(FINAL_META_SIZE)
}

/// The version a sender writes into every hop's routing information; it
/// decides how a hop derives its payload key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeaderVersion(pub u16);

impl HeaderVersion {
    /// The first released version (payload key taken whole from the KDF).
    pub const INITIAL_LEGACY: HeaderVersion = HeaderVersion(1);
    /// The second legacy version (same processing).
    pub const UPDATED_LEGACY: HeaderVersion = HeaderVersion(257);
    /// X25519 with explicit payload keys (same processing).
    pub const EXPLICIT_PAYLOAD_KEYS: HeaderVersion = HeaderVersion(258);
    /// Payload keys derived from a 16-byte seed; SURBs carry every hop's seed.
    pub const PAYLOAD_KEY_SEEDS: HeaderVersion = HeaderVersion(259);
    /// As 259, but a SURB carries only the last hop's seed and only its
    /// creator can read the reply. The version this network builds.
    pub const SINGLE_SEED_SURB: HeaderVersion = HeaderVersion(260);
    /// Every version a hop knows how to process.
    pub const KNOWN: [HeaderVersion; 5] = [
        Self::INITIAL_LEGACY,
        Self::UPDATED_LEGACY,
        Self::EXPLICIT_PAYLOAD_KEYS,
        Self::PAYLOAD_KEY_SEEDS,
        Self::SINGLE_SEED_SURB,
    ];

    /// Whether a hop takes its payload key whole from the KDF output
    /// (legacy) rather than deriving it from a seed.
    pub fn uses_full_payload_keys(self) -> bool {
        self == Self::INITIAL_LEGACY
            || self == Self::UPDATED_LEGACY
            || self == Self::EXPLICIT_PAYLOAD_KEYS
    }

    /// The three bytes on the wire: a zero, then the version big endian.
    pub fn to_bytes(self) -> [u8; VERSION_SIZE] {
        let [high, low] = self.0.to_be_bytes();
        [0, high, low]
    }

    /// Reads a known version; anything else (including a non-zero first
    /// byte, which `sphinx-packet` only `debug_assert`s) is refused.
    pub fn from_bytes(bytes: [u8; VERSION_SIZE]) -> Result<HeaderVersion, SphinxError> {
        let [zero, high, low] = bytes;
        let version = HeaderVersion(u16::from_be_bytes([high, low]));
        if zero == 0 && Self::KNOWN.contains(&version) {
            Ok(version)
        } else {
            Err(SphinxError::UnknownVersion(bytes))
        }
    }
}

/// `N` bytes of `source` from offset `at`, zero-filled past its end.
///
/// Only for buffers whose size the caller fixed itself (keystreams, KDF
/// output, decrypted routing information), at constant offsets that the
/// unit tests pin; hostile input is read with `split_first_chunk` instead.
pub(crate) fn array_at<const N: usize>(source: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(source.iter().skip(at)) {
        *o = *b;
    }
    out
}

/// XORs `other` into `target`, as far as both reach.
pub(crate) fn xor_into(target: &mut [u8], other: &[u8]) {
    for (t, o) in target.iter_mut().zip(other) {
        *t ^= o;
    }
}

/// The header of a packet, borrowed from its bytes.
pub(crate) struct PacketParts<'a> {
    pub(crate) alpha: &'a [u8; ALPHA_SIZE],
    pub(crate) mac: &'a [u8; MAC_SIZE],
    pub(crate) routing: &'a [u8; ROUTING_INFO_SIZE],
}

/// The header parts of a packet; `None` if it is shorter than a header.
pub(crate) fn split_packet(bytes: &[u8]) -> Option<PacketParts<'_>> {
    let (alpha, rest) = bytes.split_first_chunk::<ALPHA_SIZE>()?;
    let (mac, rest) = rest.split_first_chunk::<MAC_SIZE>()?;
    let (routing, _payload) = rest.split_first_chunk::<ROUTING_INFO_SIZE>()?;
    Some(PacketParts {
        alpha,
        mac,
        routing,
    })
}

/// The parts of a packet, borrowed mutably from its bytes.
pub(crate) struct PacketPartsMut<'a> {
    pub(crate) alpha: &'a mut [u8; ALPHA_SIZE],
    pub(crate) mac: &'a mut [u8; MAC_SIZE],
    pub(crate) routing: &'a mut [u8; ROUTING_INFO_SIZE],
    pub(crate) payload: &'a mut [u8],
}

/// Splits a packet into its parts for writing; `None` if it is shorter than a header.
pub(crate) fn split_packet_mut(bytes: &mut [u8]) -> Option<PacketPartsMut<'_>> {
    let (alpha, rest) = bytes.split_first_chunk_mut::<ALPHA_SIZE>()?;
    let (mac, rest) = rest.split_first_chunk_mut::<MAC_SIZE>()?;
    let (routing, payload) = rest.split_first_chunk_mut::<ROUTING_INFO_SIZE>()?;
    Some(PacketPartsMut {
        alpha,
        mac,
        routing,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_that_of_sphinx_packet() {
        use sphinx_packet::constants as c;
        assert_eq!(HEADER_SIZE, sphinx_packet::header::HEADER_SIZE);
        assert_eq!(
            ROUTING_INFO_SIZE,
            sphinx_packet::header::routing::ENCRYPTED_ROUTING_INFO_SIZE
        );
        assert_eq!(KEYSTREAM_SIZE, c::STREAM_CIPHER_OUTPUT_LENGTH);
        assert_eq!(NODE_META_SIZE, c::NODE_META_INFO_SIZE);
        assert_eq!(FINAL_META_SIZE, c::FINAL_NODE_META_INFO_LENGTH);
        assert_eq!(MAX_HOPS, c::MAX_PATH_LENGTH);
        assert_eq!(
            PAYLOAD_OVERHEAD_SIZE,
            sphinx_packet::payload::PAYLOAD_OVERHEAD_SIZE
        );
        assert_eq!(SURB_ID_SIZE, c::IDENTIFIER_LENGTH);
        assert_eq!(PAYLOAD_KEY_SEED_SIZE, c::PAYLOAD_KEY_SEED_SIZE);
        assert_eq!(final_padding_size(1), MAX_FINAL_PADDING);
        assert_eq!(final_padding_size(4), 300 - 180 - 52);
        assert_eq!(final_padding_size(5), 8);
    }

    #[test]
    fn versions_are_those_of_sphinx_packet() {
        use sphinx_packet::version as v;
        let theirs = v::KNOWN_VERSIONS.iter().map(|v| v.value());
        let ours = HeaderVersion::KNOWN.iter().map(|v| v.0);
        assert!(theirs.eq(ours));
        for version in v::KNOWN_VERSIONS {
            let ours = HeaderVersion(version.value());
            assert_eq!(ours.to_bytes(), version.to_bytes());
            assert_eq!(
                ours.uses_full_payload_keys(),
                version.expects_legacy_full_payload_keys()
            );
            assert_eq!(HeaderVersion::from_bytes(ours.to_bytes()), Ok(ours));
        }
        assert_eq!(
            HeaderVersion::from_bytes([0, 1, 5]),
            Err(SphinxError::UnknownVersion([0, 1, 5]))
        );
        assert_eq!(
            HeaderVersion::from_bytes([1, 1, 4]),
            Err(SphinxError::UnknownVersion([1, 1, 4]))
        );
    }

    #[test]
    fn array_at_reads_and_zero_fills() {
        let bytes = [1u8, 2, 3, 4];
        assert_eq!(array_at::<2>(&bytes, 1), [2, 3]);
        assert_eq!(array_at::<3>(&bytes, 2), [3, 4, 0]);
        assert_eq!(array_at::<2>(&bytes, 9), [0, 0]);
    }
}
