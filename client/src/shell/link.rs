//! The client's side of its gateway link, as a trait.
//!
//! The driver needs exactly three operations from a link: forward a packet,
//! wait for the next mailbox delivery, and acknowledge a delivery once the
//! core has taken it. A [`GatewayDialer`] opens links, so the driver can
//! reconnect after one drops. [`QuicDialer`] opens the real QUIC link
//! ([`QuicGatewayLink`], in `transport`); [`super::memory`] holds an in-memory
//! one for tests and benchmarks.

use std::future::Future;
use std::net::SocketAddr;

use protocol::{NodeId, SphinxKeyPair};
pub use transport::gateway_link::{
    GatewayDelivery, GatewayLinkError, PrekeyStock, QuicGatewayLink,
};

/// An open link with the client's gateway.
pub trait GatewayLink: Send + 'static {
    /// Hands `packet` to the gateway, to forward to `first_hop`.
    fn send_packet(
        &mut self,
        first_hop: NodeId,
        packet: Vec<u8>,
    ) -> impl Future<Output = Result<(), GatewayLinkError>> + Send;

    /// The next delivery from the mailbox; `None` once the link has ended.
    /// Must be cancel-safe: the driver races it against its timers.
    fn next_delivery(&mut self) -> impl Future<Output = Option<GatewayDelivery>> + Send;

    /// Tells the gateway that the delivery `mailbox_id` is taken and may be deleted.
    fn ack(&mut self, mailbox_id: u64)
    -> impl Future<Output = Result<(), GatewayLinkError>> + Send;

    /// Uploads this client's published bundle (when `published` is some)
    /// under its identity `fingerprint`, and one-time prekeys `(id, bytes)`.
    /// A link to a gateway without a prekey service takes them and does nothing.
    fn publish_prekeys(
        &mut self,
        fingerprint: [u8; protocol::prekeys::FINGERPRINT_SIZE],
        published: Option<Vec<u8>>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), GatewayLinkError>> + Send {
        let _ = (fingerprint, published, one_time);
        std::future::ready(Ok(()))
    }

    /// The gateway's latest report of this client's prekeys, once: `None`
    /// when nothing new came since the last call.
    fn take_prekey_stock(&mut self) -> Option<PrekeyStock> {
        None
    }

    /// Why the gateway ended the session, if it said so.
    fn close_reason(&self) -> Option<protocol::link::CloseReason> {
        None
    }
}

/// Opens links with the client's gateway (again after one drops).
pub trait GatewayDialer: Send + Sync + 'static {
    /// The link type.
    type Link: GatewayLink;

    /// Opens a new link.
    fn dial(&self) -> impl Future<Output = Result<Self::Link, GatewayLinkError>> + Send;
}

/// Opens authenticated QUIC links with one gateway.
#[derive(Clone)]
pub struct QuicDialer {
    /// The gateway's address for clients (its topology `client_address`).
    pub address: SocketAddr,
    /// The gateway's identity, pinned in the TLS handshake.
    pub gateway: NodeId,
    /// The client's Sphinx key pair, proven to the gateway.
    pub keys: SphinxKeyPair,
}

impl GatewayDialer for QuicDialer {
    type Link = QuicGatewayLink;

    async fn dial(&self) -> Result<QuicGatewayLink, GatewayLinkError> {
        QuicGatewayLink::connect(self.address, self.gateway, &self.keys).await
    }
}

impl GatewayLink for QuicGatewayLink {
    async fn send_packet(
        &mut self,
        first_hop: NodeId,
        packet: Vec<u8>,
    ) -> Result<(), GatewayLinkError> {
        QuicGatewayLink::send_packet(self, first_hop, packet).await
    }

    async fn next_delivery(&mut self) -> Option<GatewayDelivery> {
        // Cancel-safe: a lock and an mpsc receive.
        QuicGatewayLink::next_delivery(self).await
    }

    async fn ack(&mut self, mailbox_id: u64) -> Result<(), GatewayLinkError> {
        QuicGatewayLink::ack(self, mailbox_id).await
    }

    async fn publish_prekeys(
        &mut self,
        fingerprint: [u8; protocol::prekeys::FINGERPRINT_SIZE],
        published: Option<Vec<u8>>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> Result<(), GatewayLinkError> {
        QuicGatewayLink::publish_prekeys(self, fingerprint, published, one_time).await
    }

    fn take_prekey_stock(&mut self) -> Option<PrekeyStock> {
        QuicGatewayLink::take_prekey_stock(self)
    }

    fn close_reason(&self) -> Option<protocol::link::CloseReason> {
        QuicGatewayLink::close_reason(self)
    }
}
