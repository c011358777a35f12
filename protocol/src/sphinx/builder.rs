//! A sender's side: build a packet (or a SURB's header) for a route.
//!
//! The header is built as `sphinx-packet` 0.8 builds it — filler, then the
//! layers from the final hop outwards, then one payload layer per hop — from
//! the same two pieces of randomness ([`PacketRandomness`]): the initial
//! secret x and the random padding after the final hop's instruction. The
//! hop secrets come from [`BlindingProduct`]: one multiplication per hop
//! (and one by the base point for alpha) instead of i + 1 at hop i.

use std::time::Duration;

use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::sphinx::error::SphinxError;
use crate::sphinx::geometry::{
    DESTINATION_SIZE, HEADER_SIZE, HeaderVersion, MAX_FINAL_PADDING, MAX_HOPS, NODE_ADDRESS_SIZE,
    SURB_ID_SIZE, final_padding_size, split_packet_mut,
};
use crate::sphinx::group::{BlindingProduct, NodePublicKey};
use crate::sphinx::kdf::{HopSecrets, PayloadKey};
use crate::sphinx::payload::{add_layer, encode_payload};
use crate::sphinx::routing::{Layer, filler, seal_final, seal_forward};

/// One hop of a route: where it is and its public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteNode {
    /// The node's routing address (what the previous hop forwards to).
    pub address: [u8; NODE_ADDRESS_SIZE],
    /// The node's Sphinx public key, decoded.
    pub key: NodePublicKey,
}

/// Where the final hop delivers: an address and a SURB identifier (zero
/// for forward packets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The destination address the final hop reads.
    pub address: [u8; DESTINATION_SIZE],
    /// The SURB identifier the final hop reads in the clear.
    pub surb_id: [u8; SURB_ID_SIZE],
}

/// The version and payload size of the packets to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketGeometry {
    /// The header version written into every hop's routing information.
    pub version: HeaderVersion,
    /// Bytes of the Sphinx payload.
    pub payload_size: usize,
}

/// The randomness of a packet: the initial secret and the final padding.
///
/// Drawn from the caller's RNG in that order ([`PacketRandomness::draw`]),
/// or given whole (tests that rebuild a `sphinx-packet` packet bit for bit).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PacketRandomness {
    initial_secret: [u8; 32],
    padding: [u8; MAX_FINAL_PADDING],
}

impl PacketRandomness {
    /// 32 bytes of initial secret, then the padding, from `rng`.
    pub fn draw(rng: &mut (impl CryptoRng + ?Sized)) -> PacketRandomness {
        let mut r = PacketRandomness {
            initial_secret: [0u8; 32],
            padding: [0u8; MAX_FINAL_PADDING],
        };
        rng.fill_bytes(&mut r.initial_secret);
        rng.fill_bytes(&mut r.padding);
        r
    }

    /// Explicit randomness: the initial secret, and the padding (a route of
    /// n hops uses its first 300 − 60(n − 1) − 52 bytes; missing bytes are zero).
    pub fn from_parts(initial_secret: [u8; 32], padding: &[u8]) -> PacketRandomness {
        let mut r = PacketRandomness {
            initial_secret,
            padding: [0u8; MAX_FINAL_PADDING],
        };
        for (p, b) in r.padding.iter_mut().zip(padding) {
            *p = *b;
        }
        r
    }
}

/// A header and the secrets of its hops, in route order.
pub(crate) struct BuiltHeader {
    pub(crate) header: [u8; HEADER_SIZE],
    pub(crate) secrets: Vec<HopSecrets>,
}

impl BuiltHeader {
    /// The payload key of every hop, in route order.
    pub(crate) fn payload_keys(
        &self,
        version: HeaderVersion,
    ) -> Result<Vec<PayloadKey>, SphinxError> {
        self.secrets
            .iter()
            .map(|s| s.payload_key(version))
            .collect()
    }
}

/// Checks a route and its delays.
fn check_route(route: &[RouteNode], delays: &[Duration]) -> Result<(), SphinxError> {
    if route.is_empty() || route.len() > MAX_HOPS {
        return Err(SphinxError::RouteLength(route.len()));
    }
    if delays.len() != route.len() {
        return Err(SphinxError::DelayCount {
            hops: route.len(),
            delays: delays.len(),
        });
    }
    Ok(())
}

/// A delay as the header carries it: nanoseconds, saturating.
fn delay_nanos(delay: &Duration) -> u64 {
    u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX)
}

/// Builds the header for `route` (the last hop gets no delay of its own;
/// its delay entry is ignored, as in `sphinx-packet`).
pub(crate) fn build_header(
    randomness: &PacketRandomness,
    route: &[RouteNode],
    delays: &[Duration],
    destination: &Destination,
    version: HeaderVersion,
) -> Result<BuiltHeader, SphinxError> {
    check_route(route, delays)?;
    let (mut product, alpha) = BlindingProduct::start(&randomness.initial_secret);
    let mut secrets = Vec::with_capacity(route.len());
    for (i, node) in route.iter().enumerate() {
        let hop = HopSecrets::expand(&product.shared_secret(&node.key))?;
        if i + 1 < route.len() {
            product.absorb(hop.blinding_factor());
        }
        secrets.push(hop);
    }
    let (last, before_last) = secrets
        .split_last()
        .ok_or(SphinxError::RouteLength(route.len()))?;
    let padding = randomness
        .padding
        .get(..final_padding_size(route.len()))
        .unwrap_or_default();
    let mut layer: Layer = seal_final(
        last,
        version,
        &destination.address,
        &destination.surb_id,
        padding,
        &filler(before_last),
    );
    // Wrap from the inside out: hop i tells the way to hop i + 1.
    let outward = before_last
        .iter()
        .zip(route.iter().skip(1))
        .zip(delays)
        .rev();
    for ((hop, next), delay) in outward {
        layer = seal_forward(hop, version, &next.address, delay_nanos(delay), &layer);
    }
    let mut header = [0u8; HEADER_SIZE];
    let parts = split_packet_mut(&mut header).ok_or(SphinxError::TooShort {
        len: HEADER_SIZE,
        min: HEADER_SIZE,
    })?;
    *parts.alpha = alpha;
    *parts.mac = layer.mac;
    *parts.routing = layer.routing;
    Ok(BuiltHeader { header, secrets })
}

/// Builds a packet carrying `message` along `route` to `destination`.
/// `delays[i]` is hop i's delay; the last hop's is not used.
pub fn build_packet(
    randomness: &PacketRandomness,
    route: &[RouteNode],
    delays: &[Duration],
    destination: &Destination,
    message: &[u8],
    format: PacketGeometry,
) -> Result<Vec<u8>, SphinxError> {
    let mut payload = encode_payload(message, format.payload_size)?;
    let built = build_header(randomness, route, delays, destination, format.version)?;
    for key in built.payload_keys(format.version)?.iter().rev() {
        add_layer(key, &mut payload)?;
    }
    let mut packet = Vec::with_capacity(HEADER_SIZE + payload.len());
    packet.extend_from_slice(&built.header);
    packet.extend_from_slice(&payload);
    Ok(packet)
}

/// Builds a packet with fresh randomness from `rng`.
pub fn build_packet_with_rng(
    rng: &mut (impl CryptoRng + ?Sized),
    route: &[RouteNode],
    delays: &[Duration],
    destination: &Destination,
    message: &[u8],
    format: PacketGeometry,
) -> Result<Vec<u8>, SphinxError> {
    let randomness = PacketRandomness::draw(rng);
    build_packet(&randomness, route, delays, destination, message, format)
}
