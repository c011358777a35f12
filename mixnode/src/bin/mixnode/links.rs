//! The node's QUIC links, as the rest of the shell sees them.
//!
//! Peers are named by their `NodeId` in the topology; the transport pins
//! their Ed25519 keys. Sending to a node absent from the topology is a drop,
//! never a dial to an unauthenticated address.

use std::sync::Arc;

use anyhow::Result;
use mixnode_core::DropReason;
use protocol::keys::{IdentityKeyPair, NodeId};
use tokio::sync::mpsc;
use topology::Topology;
use transport::{Endpoint, LinkConfig, LinkStats, PeerId, Received, SendError};

use crate::config::Config;

/// The node's endpoint.
pub struct Links {
    endpoint: Endpoint,
}

fn pins(topology: &Topology) -> Vec<PeerId> {
    topology
        .all_peer_ids()
        .into_iter()
        .map(|id| PeerId(id.0))
        .collect()
}

impl Links {
    /// Binds the endpoint, pinned to the nodes of `topology`.
    pub fn bind(
        config: &Config,
        identity: &IdentityKeyPair,
        topology: &Topology,
    ) -> Result<(Self, mpsc::Receiver<Received>)> {
        let mut link = LinkConfig::new(config.node.listen, topology.params.packet_size);
        link.queue_capacity = config.mixing.link_queue.max(1);
        link.incoming_capacity = config.mixing.input_queue.max(1);
        let (endpoint, incoming) = Endpoint::bind(identity.signing_key(), pins(topology), link)?;
        Ok((Links { endpoint }, incoming))
    }

    /// Sends `packet` to `next_hop` as listed in `topology`.
    pub fn send(
        &self,
        topology: &Topology,
        next_hop: NodeId,
        packet: Vec<u8>,
    ) -> Result<(), DropReason> {
        let entry = topology
            .entry(&next_hop)
            .ok_or(DropReason::UnknownNextHop)?;
        self.endpoint
            .send(PeerId(next_hop.0), entry.address, packet)
            .map_err(|e| match e {
                SendError::QueueFull(_) => DropReason::QueueFull,
                SendError::NotPinned(_) => DropReason::UnknownNextHop,
                _ => DropReason::LinkDown,
            })
    }

    /// Pins exactly the nodes of `topology`.
    pub fn set_pins(&self, topology: &Topology) {
        self.endpoint.set_pins(pins(topology));
    }

    /// The transport's counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        self.endpoint.stats()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.endpoint.local_addr()
    }

    /// Delivers what is queued, then closes every link.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}
