//! What can go wrong in Sphinx processing and building.

use thiserror::Error;

use crate::sphinx::geometry::{MAX_HOPS, MIN_PAYLOAD_SIZE, VERSION_SIZE};

/// Why a packet was refused, or a packet or SURB could not be built.
///
/// Every variant a hop can return on hostile bytes is cheap to produce and
/// names what was wrong, so a node can count it under a drop reason.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SphinxError {
    /// Fewer bytes than a header and the smallest payload.
    #[error("packet of {len} bytes is shorter than the {min} bytes of the smallest Sphinx packet")]
    TooShort {
        /// Length received.
        len: usize,
        /// Smallest length accepted.
        min: usize,
    },
    /// Alpha has its top bit set or is at least the field prime: a second
    /// encoding of some point, refused so that a packet has one form only.
    #[error("alpha is not the canonical encoding of a curve coordinate")]
    NonCanonicalAlpha,
    /// Alpha is the u-coordinate of a point on the quadratic twist.
    #[error("alpha is not a point of Curve25519 (it lies on the twist)")]
    AlphaNotOnCurve,
    /// Alpha has order dividing 8: its shared secret would be known to anyone.
    #[error("alpha is a point of small order")]
    SmallOrderAlpha,
    /// The header MAC does not verify: forged, corrupted, or built for another key.
    #[error("header MAC does not verify under this key")]
    BadMac,
    /// The decrypted routing information has a flag other than forward or final.
    #[error("routing information has the unknown flag {0}")]
    UnknownFlag(u8),
    /// The decrypted routing information names a version no hop knows.
    #[error("unknown Sphinx header version {0:?}")]
    UnknownVersion([u8; VERSION_SIZE]),
    /// A route with no hop or more than [`MAX_HOPS`].
    #[error("a route has 1 to {MAX_HOPS} hops, this one has {0}")]
    RouteLength(usize),
    /// Not one delay per hop.
    #[error("a route of {hops} hops needs {hops} delays, got {delays}")]
    DelayCount {
        /// Hops in the route.
        hops: usize,
        /// Delays given.
        delays: usize,
    },
    /// A node's public key is not a canonical point of Curve25519 of large order.
    #[error("a node public key is not a usable Curve25519 point")]
    BadNodeKey,
    /// A payload too small for Lioness (or a packet whose payload is).
    #[error("a payload has at least {MIN_PAYLOAD_SIZE} bytes, asked for {0}")]
    PayloadSize(usize),
    /// A message longer than a payload of the chosen size carries.
    #[error("message of {len} bytes does not fit a payload that carries {max}")]
    MessageTooLong {
        /// Length of the message.
        len: usize,
        /// Most a payload of this size carries.
        max: usize,
    },
    /// A decrypted payload lacks its leading zeros or its end marker: wrong
    /// keys, or a payload tampered with on the way.
    #[error("payload padding is malformed")]
    BadPadding,
    /// SURB or SURB key bytes of a length no SURB has.
    #[error("{len} bytes are not a serialized SURB or SURB keys")]
    SurbLength {
        /// Length received.
        len: usize,
    },
    /// A SURB was asked for at a version that has no SURBs.
    #[error("SURBs are built at version 259 or 260, not {0}")]
    SurbVersion(u16),
    /// A single-seed SURB needs a non-zero identifier to be found again.
    #[error("a single-seed SURB needs a non-zero identifier")]
    ZeroSurbId,
    /// HKDF refused an output length (never, for the fixed lengths used here).
    #[error("key derivation refused its output length")]
    KeyDerivation,
}
