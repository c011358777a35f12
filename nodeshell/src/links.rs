//! The node's QUIC links with other nodes, as the runtime and roles see them.
//!
//! Peers are named by their `NodeId` in the topology; the transport pins
//! their Ed25519 keys to exactly the nodes of the current topology. Sending
//! to a node absent from the topology is a drop, never a dial to an
//! unauthenticated address.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use mixnode_core::DropReason;
use protocol::keys::{IdentityKeyPair, NodeId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use topology::Topology;
use transport::{Endpoint, LinkConfig, LinkStats, PeerId, Received, SendError};

use crate::config::NodeConfig;
use crate::shutdown::LINGER;

/// The node's endpoint for links with other nodes.
pub struct Links {
    endpoint: Endpoint,
}

/// The peers to pin: every node of `topology`.
fn pins(topology: &Topology) -> Vec<PeerId> {
    topology
        .all_peer_ids()
        .into_iter()
        .map(|id| PeerId(id.0))
        .collect()
}

impl Links {
    /// Binds `node.listen`, pinned to the nodes of `topology`, with the
    /// queue sizes of the processing section; returns the packets that arrive.
    pub fn bind(
        config: &NodeConfig,
        identity: &IdentityKeyPair,
        topology: &Topology,
    ) -> Result<(Self, mpsc::Receiver<Received>)> {
        let mut link = LinkConfig::new(config.node.listen, topology.params.packet_size);
        link.queue_capacity = config.processing.link_queue.max(1);
        link.incoming_capacity = config.processing.input_queue.max(1);
        // Draining queued packets at shutdown is a courtesy bounded by the
        // node's linger time, not the transport's default.
        link.drain_timeout = LINGER / 2;
        let (endpoint, incoming) = Endpoint::bind(identity.signing_key(), pins(topology), link)
            .with_context(|| format!("node.listen = {}: cannot start QUIC", config.node.listen))?;
        Ok((Links { endpoint }, incoming))
    }

    /// Hands `packet` to the link towards `next_hop` as listed in `topology`.
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
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// Delivers what is queued and closes every link, or gives up at
    /// `deadline` (the links then close at once, when the endpoint drops).
    pub async fn close(&self, deadline: Instant) {
        if tokio::time::timeout_at(deadline, self.endpoint.close())
            .await
            .is_err()
        {
            tracing::debug!("links still draining at the shutdown deadline; closing them");
        }
    }
}
