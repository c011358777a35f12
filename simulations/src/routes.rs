//! Where simulated clients take their routes from.
//!
//! A real client draws routes from the signed topology with
//! `topology::RouteSelector`; a simulated one draws them from the simulated
//! network through the same trait, [`RouteSource`]: one uniformly random mix
//! node per layer, then the exit gateway. The table is shared by every
//! client of a run.

use std::rc::Rc;

use client_core::RouteSource;
use protocol::NodeId;
use protocol::packet::RouteHop;
use rand::{CryptoRng, RngExt};

/// Every node's route entry, mix nodes layer by layer, then gateways.
#[derive(Debug)]
pub struct RouteTable {
    hops: Vec<RouteHop>,
    layers: usize,
    per_layer: usize,
}

impl RouteTable {
    /// A table over `hops` (`layers` × `per_layer` mix nodes, then gateways).
    pub fn new(hops: Vec<RouteHop>, layers: usize, per_layer: usize) -> Self {
        RouteTable {
            hops,
            layers,
            per_layer,
        }
    }

    fn gateways(&self) -> &[RouteHop] {
        self.hops.get(self.layers * self.per_layer..).unwrap_or(&[])
    }
}

/// A client's [`RouteSource`] over the shared [`RouteTable`].
#[derive(Clone, Debug)]
pub struct SimRoutes {
    table: Rc<RouteTable>,
}

impl SimRoutes {
    /// Routes over `table`.
    pub fn new(table: Rc<RouteTable>) -> Self {
        SimRoutes { table }
    }
}

impl RouteSource for SimRoutes {
    fn route_to(&self, rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>> {
        let t = &self.table;
        let exit = t.gateways().iter().find(|g| g.id == exit_gateway)?;
        if t.per_layer == 0 {
            return None;
        }
        let mut route = Vec::with_capacity(t.layers + 1);
        for layer in 0..t.layers {
            let n = layer * t.per_layer + rng.random_range(0..t.per_layer);
            route.push(*t.hops.get(n)?);
        }
        route.push(*exit);
        Some(route)
    }

    fn random_gateway(&self, rng: &mut dyn CryptoRng) -> Option<NodeId> {
        let gateways = self.table.gateways();
        if gateways.is_empty() {
            return None;
        }
        gateways
            .get(rng.random_range(0..gateways.len()))
            .map(|g| g.id)
    }
}
