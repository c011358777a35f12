//! Sphinx, our own: hop processing and packet building on `curve25519-dalek`
//! that make and accept byte for byte the packets of `sphinx-packet` 0.8.
//!
//! Why: a node's throughput is its unwrap rate, and most of a
//! `sphinx-packet` hop is two X25519 functions through x25519-dalek's
//! Montgomery ladder (serial field arithmetic). Here the same values come
//! from curve25519-dalek's Edwards arithmetic on its vector backends (see
//! [Group arithmetic](#group-arithmetic)), and a sender derives the hop
//! secrets with one multiplication per hop instead of i + 1 at hop i.
//! Everything else is the reference's construction with the reference's
//! primitives, from the same crates at the same versions: HKDF-SHA256 for
//! the hop secrets, AES-128-CTR and HMAC-SHA256 truncated to 16 bytes for
//! the header, Lioness over ChaCha20 and keyed BLAKE2b for the payload.
//! `sphinx-packet` stays the reference: `tests/sphinx_compat.rs` builds
//! packets with one and processes them with the other, both ways, and
//! compares every byte at every hop.
//!
//! What it is not: a general Sphinx library. The geometry is the one of
//! `sphinx-packet` 0.8 (348-byte header, at most 5 hops); the payload size
//! is the caller's. Packet sizes, delay caps and replay filtering are the
//! node's business, not this module's.
//!
//! Where it is stricter than the reference, on input no honest sender
//! produces: alpha must be the canonical encoding of a point of
//! Curve25519 (not of its twist) of large order, and the routing
//! information must name a known version with a zero first byte.
//!
//! Constant time: the node key, shared secrets, blinding factors and the
//! sender's running product only meet constant-time code
//! (curve25519-dalek's scalar multiplications and scalar arithmetic,
//! `subtle` for the MAC comparison). Branches depend on public bytes only:
//! alpha's encoding, the MAC's verdict, the decrypted flag and version,
//! which the hop's own node may learn.
//!
//! # Use
//!
//! A node: [`ReceivedPacket::parse`] → [`ReceivedPacket::open`] (the replay
//! tag, one multiplication) → [`OpenedPacket::finish`] (the other). A
//! sender: [`build_packet`] with [`PacketRandomness`] over [`RouteNode`]s
//! (keys decoded once, [`NodePublicKey::precompute`]d for the keys it uses
//! often); a SURB: [`build_surb`], then [`ReplyBlock::seal`] by its user
//! and [`ReplyKeys::open`] by its creator; the final hop of a forward
//! packet: [`decode_payload`].
//!
//! # Group arithmetic
//!
//! X25519(k, u) is the u-coordinate of [clamp(k)]·P for a point P with
//! that u-coordinate; clamping makes k a multiple of 8 below 2^255. A hop
//! decodes alpha once to an Edwards point (either sign: \[k\](−P) = −\[k\]P has
//! the same u), multiplies it by the same clamped integer with
//! `EdwardsPoint::mul_clamped` (constant time, on the vector backend
//! curve25519-dalek picks at run time: AVX2, or AVX-512 IFMA when built
//! with `--cfg curve25519_dalek_backend="avx512"`), and maps the result back
//! with one inversion. Once for the shared secret, once for the blinded
//! alpha of the next hop: the same bytes as the ladder.
//!
//! A sender never needs the intermediate alphas. Hop i's shared secret is
//! X25519 applied i + 1 times, u([c_x·c_0 ⋯ c_{i−1}]·Y_i), with c_x the
//! clamped initial secret, c_j the clamped blinding factors and Y_i the
//! hop's key. Every c is a multiple of 8, so the product kills any torsion
//! of Y_i and equals [K/8 mod ℓ]·(8·Y_i): the sender keeps K/8 mod ℓ as one
//! scalar and pays one multiplication per hop (plus one by the base point
//! for alpha), where `sphinx-packet` pays i + 1 at hop i.

mod builder;
mod cipher;
mod error;
mod geometry;
mod group;
mod hop;
mod kdf;
mod payload;
mod routing;
mod surb;

pub use builder::{
    Destination, PacketGeometry, PacketRandomness, RouteNode, build_packet, build_packet_with_rng,
};
pub use error::SphinxError;
pub use geometry::{
    ALPHA_SIZE, DELAY_SIZE, DESTINATION_SIZE, HEADER_SIZE, HeaderVersion, MAC_SIZE,
    MAX_FINAL_PADDING, MAX_HOPS, MIN_PAYLOAD_SIZE, NODE_ADDRESS_SIZE, PAYLOAD_KEY_SEED_SIZE,
    PAYLOAD_OVERHEAD_SIZE, REPLAY_TAG_SIZE, ROUTING_INFO_SIZE, SECURITY_PARAMETER, SURB_ID_SIZE,
};
pub use group::NodePublicKey;
pub use hop::{MIN_PACKET_SIZE, OpenedPacket, ReceivedPacket, UnwrappedPacket, unwrap_packet};
pub use kdf::HopSecrets;
pub use payload::{decode_payload, encode_payload};
pub use surb::{ReplyBlock, ReplyKeys, build_surb};
