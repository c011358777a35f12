//! Single-use reply blocks.
//!
//! A SURB is a pre-built Sphinx header for a route that ends at its creator,
//! plus the one payload key its user needs. Whoever holds it can send one
//! packet to the creator without learning who or where the creator is. We use
//! SURBs twice:
//!
//! - **SURB-acks**: every data fragment carries a SURB to its sender; the
//!   recipient's gateway sends an [`Ack`](crate::frame::Frame::Ack) frame back
//!   through it once the fragment is stored.
//! - **Replies**: a sender attaches SURBs to a message so the recipient can
//!   answer without knowing the sender's address.
//!
//! SURBs are built at Sphinx version 260 ("single seed"): the SURB carries only
//! the last hop's payload key seed, and the creator keeps a [`SurbRecovery`] with
//! every hop's seed. Only the creator can read what comes back.

use std::time::Duration;

use rand::CryptoRng;
use sphinx_packet::route::DestinationAddressBytes;

use crate::error::ProtocolError;
use crate::keys::NodeId;
use crate::packet::{
    FRAME_SIZE, OutgoingPacket, RouteHop, SPHINX_PAYLOAD_SIZE, SPHINX_VERSION, SURB_ID_SIZE,
    check_route, to_route_nodes,
};
use crate::sphinx::{
    self, Destination, HEADER_SIZE, NODE_ADDRESS_SIZE, PAYLOAD_KEY_SEED_SIZE, PacketRandomness,
    ReplyBlock, ReplyKeys,
};

/// Bytes of a serialized SURB: header, first hop, one payload key seed.
pub const SURB_SIZE: usize = HEADER_SIZE + NODE_ADDRESS_SIZE + PAYLOAD_KEY_SEED_SIZE;

/// The identifier a SURB's final hop reads in the clear; its creator looks the
/// [`SurbRecovery`] up by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SurbId(pub [u8; SURB_ID_SIZE]);

impl SurbId {
    /// Whether this is the all-zero id that marks a forward (non-SURB) packet.
    pub fn is_forward(&self) -> bool {
        self.0 == [0u8; SURB_ID_SIZE]
    }
}

/// What a SURB's creator keeps to read the packet that comes back.
pub struct SurbRecovery {
    inner: ReplyKeys,
}

impl std::fmt::Debug for SurbRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SurbRecovery({:?})", SurbId(*self.inner.surb_id()))
    }
}

impl SurbRecovery {
    /// The id of the SURB this recovers.
    pub fn id(&self) -> SurbId {
        SurbId(*self.inner.surb_id())
    }

    /// Reads the frame that came back through the SURB.
    pub fn open(&self, sealed_payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let frame = self.inner.open(sealed_payload)?;
        if frame.len() != FRAME_SIZE {
            return Err(ProtocolError::BadFrame(format!(
                "reply of {} bytes",
                frame.len()
            )));
        }
        Ok(frame)
    }

    /// Serialized form, for a client's SURB store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    /// Reads the serialized form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        Ok(SurbRecovery {
            inner: ReplyKeys::from_bytes(bytes)?,
        })
    }
}

/// A serialized SURB ready to hand to someone else.
#[derive(Clone, PartialEq, Eq)]
pub struct Surb(pub Vec<u8>);

impl std::fmt::Debug for Surb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Surb({} bytes)", self.0.len())
    }
}

/// Builds a SURB for `route` (which ends at the creator's gateway), delivering
/// to `destination` (the creator's own client key). Returns the SURB to hand
/// out and the recovery to keep.
pub fn build_surb(
    rng: &mut (impl CryptoRng + ?Sized),
    route: &[RouteHop],
    delays: &[Duration],
    destination: DestinationAddressBytes,
) -> Result<(Surb, SurbRecovery), ProtocolError> {
    check_route(route, delays)?;
    let mut id = [0u8; SURB_ID_SIZE];
    while id == [0u8; SURB_ID_SIZE] {
        rng.fill_bytes(&mut id);
    }
    let (surb, recovery) = sphinx::build_surb(
        &PacketRandomness::draw(rng),
        &to_route_nodes(route)?,
        delays,
        &Destination {
            address: destination.as_bytes(),
            surb_id: id,
        },
        SPHINX_VERSION,
    )?;
    let recovery = recovery
        .ok_or_else(|| ProtocolError::BadSurb("a single-seed SURB came without its keys".into()))?;
    let bytes = surb.to_bytes();
    if bytes.len() != SURB_SIZE {
        return Err(ProtocolError::BadSurb(format!(
            "built a SURB of {} bytes",
            bytes.len()
        )));
    }
    Ok((Surb(bytes), SurbRecovery { inner: recovery }))
}

/// Uses a SURB to send `frame` (exactly [`FRAME_SIZE`] bytes) to its creator.
pub fn use_surb(surb: &Surb, frame: &[u8]) -> Result<OutgoingPacket, ProtocolError> {
    if frame.len() != FRAME_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "a frame is {FRAME_SIZE} bytes, got {}",
            frame.len()
        )));
    }
    if surb.0.len() != SURB_SIZE {
        return Err(ProtocolError::BadSurb(format!(
            "a SURB is {SURB_SIZE} bytes, got {}",
            surb.0.len()
        )));
    }
    let surb = ReplyBlock::from_bytes(&surb.0)?;
    Ok(OutgoingPacket {
        first_hop: NodeId(*surb.first_hop()),
        bytes: surb.seal(frame, SPHINX_PAYLOAD_SIZE)?,
    })
}

/// Reads the frame of a forward packet at its final hop.
pub fn open_forward_payload(payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let frame = sphinx::decode_payload(payload)?;
    if frame.len() != FRAME_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "payload of {} bytes",
            frame.len()
        )));
    }
    Ok(frame)
}
