//! The core's [`RouteSource`] over a signed topology.

use std::sync::Arc;

use protocol::NodeId;
use protocol::packet::RouteHop;
use rand::CryptoRng;
use topology::{RouteSelector, Topology};

use client_core::RouteSource;

/// Routes drawn with [`RouteSelector`] from the current [`Topology`].
#[derive(Clone, Debug)]
pub struct TopologyRoutes {
    topology: Arc<Topology>,
}

impl TopologyRoutes {
    /// Routes over `topology`.
    pub fn new(topology: Arc<Topology>) -> Self {
        TopologyRoutes { topology }
    }

    /// The topology routes are drawn from.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }
}

impl RouteSource for TopologyRoutes {
    fn route_to(&self, rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>> {
        RouteSelector::new(&self.topology)
            .select(rng, &exit_gateway)
            .ok()
    }

    fn random_gateway(&self, rng: &mut dyn CryptoRng) -> Option<NodeId> {
        RouteSelector::new(&self.topology)
            .select_gateway(rng)
            .ok()
            .map(|hop| hop.id)
    }
}
