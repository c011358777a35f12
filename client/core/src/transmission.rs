//! What [`ClientCore::poll_transmit`](super::ClientCore::poll_transmit) hands
//! out: a packet for the gateway, and what the core made it for.
//!
//! On the wire every packet looks the same; the kind is the core's own
//! knowledge, told to its shell so that nobody has to infer it (the async
//! client counts packets by kind, the simulator measures acks,
//! retransmissions and cover separately).

use protocol::fragment::FragmentId;
use protocol::packet::OutgoingPacket;

/// A packet the client sends through its gateway, and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmission {
    /// The packet, for the gateway to forward to its first hop.
    pub packet: OutgoingPacket,
    /// What the packet is.
    pub kind: TransmissionKind,
}

/// Why the client sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmissionKind {
    /// A copy of a fragment of a message sent to a client address, over a
    /// fresh route with a fresh SURB-ack.
    Fragment {
        /// The fragment.
        id: FragmentId,
        /// Which copy: 1 for the first, 2 and up for retransmissions.
        copy: u32,
    },
    /// A copy of a fragment of a reply, through one of the SURBs the message
    /// answered carried.
    ReplyFragment {
        /// The fragment.
        id: FragmentId,
        /// Which copy: 1 for the first, 2 and up for retransmissions.
        copy: u32,
    },
    /// The ack of a reply fragment this client received, through the SURB-ack
    /// the reply carried.
    ReplyAck {
        /// The fragment acknowledged.
        id: FragmentId,
    },
    /// A request for a correspondent's bundle to its gateway's prekey
    /// service, on a λ_P tick.
    BundleRequest,
    /// Drop cover: a λ_P tick with nothing queued.
    DropCover,
    /// Loop cover to the client itself (λ_L).
    LoopCover,
}

impl TransmissionKind {
    /// Whether this is a copy after the first of a fragment.
    pub fn is_retransmission(self) -> bool {
        match self {
            TransmissionKind::Fragment { copy, .. }
            | TransmissionKind::ReplyFragment { copy, .. } => copy > 1,
            _ => false,
        }
    }
}
