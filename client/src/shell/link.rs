//! The client's side of its gateway session, as a trait.
//!
//! The driver needs exactly three operations from a session: forward a
//! packet, wait for the next mailbox delivery, and acknowledge a delivery once
//! the core has taken it. [`GatewayConnector`] opens such sessions, so the
//! driver can reconnect after a session drops. The QUIC session to a real
//! gateway implements these; [`super::memory`] holds an in-memory one for
//! tests and benchmarks.

use std::future::Future;

use protocol::NodeId;
use protocol::surb::SurbId;
use thiserror::Error;

/// Why a gateway session could not be opened or was lost.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The gateway could not be reached or refused the session.
    #[error("cannot connect to the gateway: {0}")]
    Connect(String),
    /// The session ended (the gateway closed it or the network failed).
    #[error("gateway session lost: {0}")]
    Lost(String),
}

/// One message the gateway hands over from the client's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayDelivery {
    /// The gateway's id of the stored message, to acknowledge it by.
    pub mailbox_id: u64,
    /// The SURB id the packet arrived under (all zero for forward packets).
    pub surb_id: SurbId,
    /// The recovered frame (forward packets) or the sealed payload (SURB packets).
    pub payload: Vec<u8>,
}

/// An open session with the client's gateway.
pub trait GatewayLink: Send + 'static {
    /// Hands `packet` to the gateway, to forward to `first_hop`.
    fn send_packet(
        &mut self,
        first_hop: NodeId,
        packet: Vec<u8>,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// The next delivery from the mailbox; `None` once the session has ended.
    /// Must be cancel-safe: the driver races it against its timers.
    fn next_delivery(&mut self) -> impl Future<Output = Option<GatewayDelivery>> + Send;

    /// Tells the gateway that the delivery `mailbox_id` is taken and may be deleted.
    fn ack(&mut self, mailbox_id: u64) -> impl Future<Output = Result<(), LinkError>> + Send;
}

/// Opens sessions with the client's gateway (again after one drops).
pub trait GatewayConnector: Send + Sync + 'static {
    /// The session type.
    type Link: GatewayLink;

    /// Opens a new session.
    fn connect(&self) -> impl Future<Output = Result<Self::Link, LinkError>> + Send;
}
