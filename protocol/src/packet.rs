//! Sphinx packets of the one size the network uses.
//!
//! Every packet on every link is [`PACKET_SIZE`] bytes: a 348-byte Sphinx
//! header and a Sphinx payload that carries one [`FRAME_SIZE`]-byte
//! [`Frame`](crate::frame::Frame) plus the payload's own overhead. A packet for
//! a client travels the route `[L1, L2, L3, exit gateway]`; the sender draws an
//! exponential delay for each mix hop and seals it in the header (Loopix).

use std::time::Duration;

use rand::CryptoRng;

use crate::surb::SurbId;
use rand_distr::{Distribution, Exp};
use sphinx_packet::route::DestinationAddressBytes;
use x25519_dalek::PublicKey;

use crate::error::ProtocolError;
use crate::keys::NodeId;
use crate::sphinx::{
    self, Destination, HEADER_SIZE, HeaderVersion, NodePublicKey, PAYLOAD_OVERHEAD_SIZE,
    PacketGeometry, PacketRandomness, RouteNode,
};

/// Bytes of plaintext a Sphinx payload carries: one frame.
pub const FRAME_SIZE: usize = 2048;
/// Bytes of the Sphinx payload, frame plus the payload's own overhead.
pub const SPHINX_PAYLOAD_SIZE: usize = FRAME_SIZE + PAYLOAD_OVERHEAD_SIZE;
/// Bytes of every packet on every link.
pub const PACKET_SIZE: usize = HEADER_SIZE + SPHINX_PAYLOAD_SIZE;
/// Most hops a Sphinx route may have.
pub const MAX_HOPS: usize = sphinx::MAX_HOPS;
/// Sphinx header version this network builds and accepts.
pub const SPHINX_VERSION: HeaderVersion = HeaderVersion::SINGLE_SEED_SURB;
/// Length of the SURB identifier a final hop reads in the clear.
pub const SURB_ID_SIZE: usize = sphinx::SURB_ID_SIZE;
/// Version and payload size of every packet of the network.
pub const PACKET_GEOMETRY: PacketGeometry = PacketGeometry {
    version: SPHINX_VERSION,
    payload_size: SPHINX_PAYLOAD_SIZE,
};

/// One hop of a route: the node and its Sphinx key for the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHop {
    /// The node.
    pub id: NodeId,
    /// Its Sphinx public key for the epoch the packet is built in.
    pub sphinx_key: PublicKey,
}

impl RouteHop {
    /// This hop as the Sphinx builder takes it (its key decoded).
    pub fn to_route_node(self) -> Result<RouteNode, ProtocolError> {
        Ok(RouteNode {
            address: self.id.0,
            key: NodePublicKey::try_from(&self.sphinx_key)?,
        })
    }
}

/// Decodes the keys of a route for the Sphinx builder.
pub(crate) fn to_route_nodes(route: &[RouteHop]) -> Result<Vec<RouteNode>, ProtocolError> {
    route.iter().map(|h| h.to_route_node()).collect()
}

/// Draws per-hop delays: exponential with a given mean.
#[derive(Clone, Copy, Debug)]
pub struct DelaySampler {
    mean: Duration,
    exp: Option<Exp<f64>>,
}

impl DelaySampler {
    /// Delays with mean `mean` (zero means no delay at all).
    pub fn new(mean: Duration) -> Self {
        let secs = mean.as_secs_f64();
        let exp = if secs > 0.0 {
            Exp::new(1.0 / secs).ok()
        } else {
            None
        };
        DelaySampler { mean, exp }
    }

    /// The mean delay.
    pub fn mean(&self) -> Duration {
        self.mean
    }

    /// One delay.
    pub fn sample(&self, rng: &mut (impl CryptoRng + ?Sized)) -> Duration {
        match &self.exp {
            Some(exp) => Duration::try_from_secs_f64(exp.sample(rng)).unwrap_or(Duration::MAX),
            None => Duration::ZERO,
        }
    }

    /// Delays for a route of `hops` hops: one per mix hop, none at the final hop.
    pub fn route_delays(&self, hops: usize, rng: &mut (impl CryptoRng + ?Sized)) -> Vec<Duration> {
        (0..hops)
            .map(|i| {
                if i + 1 == hops {
                    Duration::ZERO
                } else {
                    self.sample(rng)
                }
            })
            .collect()
    }
}

/// Checks a route and its delays before building.
pub(crate) fn check_route(route: &[RouteHop], delays: &[Duration]) -> Result<(), ProtocolError> {
    if route.is_empty() || route.len() > MAX_HOPS {
        return Err(ProtocolError::BadRoute(format!(
            "a route has 1 to {MAX_HOPS} hops, this one has {}",
            route.len()
        )));
    }
    if route.len() != delays.len() {
        return Err(ProtocolError::BadRoute(format!(
            "{} hops but {} delays",
            route.len(),
            delays.len()
        )));
    }
    Ok(())
}

/// A packet ready to send: its first hop and its [`PACKET_SIZE`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingPacket {
    /// The node to hand the packet to.
    pub first_hop: NodeId,
    /// The packet on the wire.
    pub bytes: Vec<u8>,
}

/// Wraps `frame` (exactly [`FRAME_SIZE`] bytes) in Sphinx for `route`,
/// delivering to `destination` (a client key, or a node's own id for loop
/// cover) with SURB identifier `surb_id` (zero for forward packets).
pub fn build_packet(
    rng: &mut (impl CryptoRng + ?Sized),
    route: &[RouteHop],
    delays: &[Duration],
    destination: DestinationAddressBytes,
    surb_id: [u8; SURB_ID_SIZE],
    frame: &[u8],
) -> Result<OutgoingPacket, ProtocolError> {
    build_packet_with_version(
        rng,
        route,
        delays,
        destination,
        surb_id,
        frame,
        SPHINX_VERSION,
    )
}

/// [`build_packet`] with an explicit Sphinx header version (tests of refusal).
pub fn build_packet_with_version(
    rng: &mut (impl CryptoRng + ?Sized),
    route: &[RouteHop],
    delays: &[Duration],
    destination: DestinationAddressBytes,
    surb_id: [u8; SURB_ID_SIZE],
    frame: &[u8],
    version: HeaderVersion,
) -> Result<OutgoingPacket, ProtocolError> {
    check_route(route, delays)?;
    if frame.len() != FRAME_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "a frame is {FRAME_SIZE} bytes, got {}",
            frame.len()
        )));
    }
    let first_hop = route
        .first()
        .map(|h| h.id)
        .ok_or_else(|| ProtocolError::BadRoute("empty route".into()))?;
    let bytes = sphinx::build_packet(
        &PacketRandomness::draw(rng),
        &to_route_nodes(route)?,
        delays,
        &Destination {
            address: destination.as_bytes(),
            surb_id,
        },
        frame,
        PacketGeometry {
            version,
            ..PACKET_GEOMETRY
        },
    )?;
    debug_assert_eq!(bytes.len(), PACKET_SIZE);
    Ok(OutgoingPacket { first_hop, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn packet_geometry_matches_the_design() {
        assert_eq!(HEADER_SIZE, 348);
        assert_eq!(PACKET_SIZE, 2413);
    }

    #[test]
    fn delay_sampler_mean_is_close_to_configured() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let s = DelaySampler::new(Duration::from_millis(50));
        let n = 20_000;
        let total: f64 = (0..n).map(|_| s.sample(&mut rng).as_secs_f64()).sum();
        let mean = total / n as f64;
        assert!((mean - 0.050).abs() < 0.002, "mean {mean}");
        let d = s.route_delays(4, &mut rng);
        assert_eq!(d.len(), 4);
        assert_eq!(d[3], Duration::ZERO);
        assert_eq!(
            DelaySampler::new(Duration::ZERO).sample(&mut rng),
            Duration::ZERO
        );
    }
}

/// A final-hop packet handed out at an exit gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The destination client key.
    pub destination: [u8; 32],
    /// The SURB id (all zero for forward packets).
    pub surb_id: SurbId,
    /// The payload (sealed, for SURB replies).
    pub payload: Vec<u8>,
}
