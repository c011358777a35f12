//! The gateway link over QUIC: [`GatewayLink`] for
//! [`gateway::remote::GatewayConnection`].

use std::net::SocketAddr;

use gateway::remote::GatewayConnection;
use protocol::{NodeId, SphinxKeyPair};

use super::link::{GatewayConnector, GatewayDelivery, GatewayLink, LinkError};

/// Opens authenticated QUIC sessions with one gateway.
#[derive(Clone)]
pub struct RemoteConnector {
    /// The gateway's address for clients (its topology `client_address`).
    pub address: SocketAddr,
    /// The gateway's identity, pinned in the TLS handshake.
    pub gateway: NodeId,
    /// The client's Sphinx key pair, proven to the gateway.
    pub keys: SphinxKeyPair,
}

impl GatewayConnector for RemoteConnector {
    type Link = GatewayConnection;

    async fn connect(&self) -> Result<GatewayConnection, LinkError> {
        GatewayConnection::connect(self.address, self.gateway, &self.keys)
            .await
            .map_err(|e| LinkError::Connect(e.to_string()))
    }
}

impl GatewayLink for GatewayConnection {
    async fn send_packet(&mut self, first_hop: NodeId, packet: Vec<u8>) -> Result<(), LinkError> {
        GatewayConnection::send_packet(self, first_hop, packet)
            .await
            .map_err(|e| LinkError::Lost(e.to_string()))
    }

    async fn next_delivery(&mut self) -> Option<GatewayDelivery> {
        // Cancel-safe: a lock and an mpsc receive.
        let (mailbox_id, surb_id, payload) = GatewayConnection::next_delivery(self).await?;
        Some(GatewayDelivery {
            mailbox_id,
            surb_id,
            payload,
        })
    }

    async fn ack(&mut self, mailbox_id: u64) -> Result<(), LinkError> {
        GatewayConnection::ack(self, mailbox_id)
            .await
            .map_err(|e| LinkError::Lost(e.to_string()))
    }
}
