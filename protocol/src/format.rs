//! How packets are made and read at the two ends of a route.
//!
//! A client builds forward packets and SURBs and reads what comes back
//! through them; a gateway reads the frame of a forward packet at its final
//! hop and answers through the SURB-ack it carries. Those are the only
//! points where the client and gateway cores touch the packet format: the
//! hops in between are the mixer's `HopCodec` (crate `mixnode`).
//! [`PacketFormat`] names them, so that the cores take the format as a type
//! parameter ([`SphinxFormat`] by default, the only one a real node speaks)
//! and the simulator can run the very same cores over a cleartext stand-in
//! that costs a copy per hop instead of two scalar multiplications. The
//! bodies sealed to a recipient's address key (one X25519 multiplication to
//! seal, one to open) go through it too, for the same reason.

use std::fmt::Debug;
use std::time::Duration;

use rand::CryptoRng;
/// The final-hop destination of a packet (a client key, or a node's own id).
pub use sphinx_packet::route::DestinationAddressBytes;

use crate::SphinxKeyPair;
use crate::error::ProtocolError;
use crate::frame::{ForwardFrame, SealedContent};
use crate::packet::{OutgoingPacket, RouteHop, SURB_ID_SIZE, build_packet};
use crate::surb::{Surb, SurbId, SurbRecovery, build_surb, open_forward_payload, use_surb};
use x25519_dalek::PublicKey;

/// What a SURB's creator keeps to read the packet that comes back through it.
pub trait ReplyRecovery: Debug {
    /// The id of the SURB this recovers (what the final hop reads).
    fn id(&self) -> SurbId;
    /// Reads the frame that came back through the SURB.
    fn open(&self, sealed_payload: &[u8]) -> Result<Vec<u8>, ProtocolError>;
    /// Its serialized form ([`PacketFormat::recovery_from_bytes`] reads it);
    /// secret, since it opens what comes back.
    fn to_bytes(&self) -> Vec<u8>;
}

impl ReplyRecovery for SurbRecovery {
    fn id(&self) -> SurbId {
        SurbRecovery::id(self)
    }

    fn open(&self, sealed_payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        SurbRecovery::open(self, sealed_payload)
    }

    fn to_bytes(&self) -> Vec<u8> {
        SurbRecovery::to_bytes(self)
    }
}

/// The packet format at the ends of a route: building forward packets and
/// SURBs, using a SURB, reading a forward packet's frame at its final hop.
///
/// Every packet it builds is [`PACKET_SIZE`](crate::packet::PACKET_SIZE)
/// bytes and every SURB [`SURB_SIZE`](crate::surb::SURB_SIZE) bytes, whatever
/// the format, so frames, envelopes and the client link are the same.
pub trait PacketFormat {
    /// What a SURB's creator keeps.
    type Recovery: ReplyRecovery;

    /// Wraps `frame` for `route` (one delay per hop), delivering to
    /// `destination` as a forward packet (SURB id all zero).
    fn build_packet(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
        delays: &[Duration],
        destination: DestinationAddressBytes,
        frame: &[u8],
    ) -> Result<OutgoingPacket, ProtocolError>;

    /// A SURB over `route` to `destination`, and its recovery.
    fn build_surb(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
        delays: &[Duration],
        destination: DestinationAddressBytes,
    ) -> Result<(Surb, Self::Recovery), ProtocolError>;

    /// Sends `frame` back through `surb`.
    fn use_surb(&self, surb: &Surb, frame: &[u8]) -> Result<OutgoingPacket, ProtocolError>;

    /// Reads a recovery that [`ReplyRecovery::to_bytes`] wrote.
    fn recovery_from_bytes(&self, bytes: &[u8]) -> Result<Self::Recovery, ProtocolError>;

    /// The frame of a forward packet, from the payload its final hop read.
    fn open_forward_payload(&self, payload: &[u8]) -> Result<Vec<u8>, ProtocolError>;

    /// A forward frame: `content` sealed to `recipient` (only its key opens
    /// it, [`crate::seal`]), with the SURB-ack its gateway sends back.
    fn seal_frame(
        &self,
        content: &SealedContent,
        recipient: &PublicKey,
        surb_ack: Vec<u8>,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<ForwardFrame, ProtocolError> {
        ForwardFrame::seal(content, recipient, surb_ack, rng)
    }

    /// Opens a body sealed to `keys` (as its gateway delivered it).
    fn open_frame(
        &self,
        keys: &SphinxKeyPair,
        sealed: &[u8],
    ) -> Result<SealedContent, ProtocolError> {
        ForwardFrame::open(keys.secret(), sealed)
    }

    /// A fresh public key whose secret nobody keeps (drop cover is sealed to one).
    fn throwaway_key(&self, rng: &mut (impl CryptoRng + ?Sized)) -> PublicKey {
        SphinxKeyPair::generate(rng).public()
    }
}

/// Sphinx, as every node of the network speaks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SphinxFormat;

impl PacketFormat for SphinxFormat {
    type Recovery = SurbRecovery;

    fn build_packet(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
        delays: &[Duration],
        destination: DestinationAddressBytes,
        frame: &[u8],
    ) -> Result<OutgoingPacket, ProtocolError> {
        build_packet(rng, route, delays, destination, [0; SURB_ID_SIZE], frame)
    }

    fn build_surb(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        route: &[RouteHop],
        delays: &[Duration],
        destination: DestinationAddressBytes,
    ) -> Result<(Surb, SurbRecovery), ProtocolError> {
        build_surb(rng, route, delays, destination)
    }

    fn use_surb(&self, surb: &Surb, frame: &[u8]) -> Result<OutgoingPacket, ProtocolError> {
        use_surb(surb, frame)
    }

    fn recovery_from_bytes(&self, bytes: &[u8]) -> Result<SurbRecovery, ProtocolError> {
        SurbRecovery::from_bytes(bytes)
    }

    fn open_forward_payload(&self, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        open_forward_payload(payload)
    }
}
