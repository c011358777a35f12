//! Where simulated clients take their routes from.
//!
//! A real client draws routes from the signed topology with
//! `topology::RouteSelector`; a simulated one draws them from the simulated
//! network through the same trait, [`RouteSource`]: one uniformly random mix
//! node per layer, then the exit gateway. The table is shared by every
//! client of a run. A client constrained to some regions draws from the
//! [`AllowedNodes`] only, and has no route at all to a gateway outside them.

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

/// The nodes in a constrained client's allowed regions: per layer, the
/// node numbers of its allowed mix nodes, and the allowed gateways.
#[derive(Debug)]
pub struct AllowedNodes {
    by_layer: Vec<Vec<usize>>,
    gateways: Vec<usize>,
    mixes: usize,
}

impl AllowedNodes {
    /// `by_layer[l]`: allowed node numbers of layer l; `gateways`: allowed
    /// gateway numbers (from 0); `mixes`: the number of mix nodes.
    pub fn new(by_layer: Vec<Vec<usize>>, gateways: Vec<usize>, mixes: usize) -> Self {
        AllowedNodes {
            by_layer,
            gateways,
            mixes,
        }
    }

    /// The allowed gateways, by gateway number.
    pub fn gateways(&self) -> &[usize] {
        &self.gateways
    }

    /// Whether node `n` (mix nodes, then gateways) is allowed.
    pub fn contains(&self, n: usize) -> bool {
        match n.checked_sub(self.mixes) {
            Some(g) => self.gateways.contains(&g),
            None => self.by_layer.iter().any(|l| l.contains(&n)),
        }
    }
}

/// A client's [`RouteSource`] over the shared [`RouteTable`], restricted to
/// [`AllowedNodes`] for a client constrained to some regions.
#[derive(Clone, Debug)]
pub struct SimRoutes {
    table: Rc<RouteTable>,
    allowed: Option<Rc<AllowedNodes>>,
}

impl SimRoutes {
    /// Routes over `table`, every node allowed.
    pub fn new(table: Rc<RouteTable>) -> Self {
        SimRoutes {
            table,
            allowed: None,
        }
    }

    /// Routes over `table` that cross only `allowed` nodes.
    pub fn constrained(table: Rc<RouteTable>, allowed: Rc<AllowedNodes>) -> Self {
        SimRoutes {
            table,
            allowed: Some(allowed),
        }
    }

    /// A route through the allowed nodes only; none to a gateway outside them.
    fn allowed_route(
        &self,
        allowed: &AllowedNodes,
        rng: &mut dyn CryptoRng,
        exit_gateway: NodeId,
    ) -> Option<Vec<RouteHop>> {
        let t = &self.table;
        let g = t.gateways().iter().position(|g| g.id == exit_gateway)?;
        if !allowed.gateways.contains(&g) {
            return None;
        }
        let mut route = Vec::with_capacity(t.layers + 1);
        for layer in 0..t.layers {
            let nodes = allowed.by_layer.get(layer)?;
            if nodes.is_empty() {
                return None;
            }
            let n = *nodes.get(rng.random_range(0..nodes.len()))?;
            route.push(*t.hops.get(n)?);
        }
        route.push(*t.gateways().get(g)?);
        Some(route)
    }
}

impl RouteSource for SimRoutes {
    fn route_to(&self, rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>> {
        if let Some(allowed) = &self.allowed {
            return self.allowed_route(allowed, rng, exit_gateway);
        }
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
        if let Some(allowed) = &self.allowed {
            let g = *allowed
                .gateways
                .get(rng.random_range(0..allowed.gateways.len().max(1)))?;
            return self.table.gateways().get(g).map(|h| h.id);
        }
        let gateways = self.table.gateways();
        if gateways.is_empty() {
            return None;
        }
        gateways
            .get(rng.random_range(0..gateways.len()))
            .map(|g| g.id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::events::rng_stream;
    use crate::network::Network;
    use crate::residency::Residency;
    use crate::scenario::Scenario;
    use crate::trace_codec::TraceCodec;

    #[test]
    fn constrained_routes_cross_only_allowed_nodes_and_reach_every_one() {
        let s = Scenario::from_toml(
            "[topology]\nnodes_per_layer = 5\ngateways = 4\n[regions]\n\
             mixes = [\"eu\", \"us\", \"us\"]\ngateways = [\"eu\", \"us\"]\n\
             constrained_fraction = 0.5\nallowed = [\"eu\"]",
            "t",
        )
        .unwrap();
        let net = Network::new(&s, &TraceCodec::new().unwrap(), &mut rng_stream(1, 0));
        let r = Residency::new(&s).unwrap().unwrap();
        let constrained = SimRoutes::constrained(net.routes.clone(), r.allowed_nodes());
        let free = SimRoutes::new(net.routes.clone());
        let mut rng = rng_stream(3, 0);
        let node = |h: &RouteHop| net.node_of(&h.id).unwrap();
        let (mut drawn, mut free_outside) = (BTreeSet::new(), 0);
        for i in 0..2_000 {
            // G0 and G2 are "eu".
            let exit = net.gateway_id(2 * (i % 2));
            let route = constrained.route_to(&mut rng, exit).unwrap();
            assert_eq!(route.len(), s.topology.layers + 1);
            for hop in &route {
                assert!(r.is_allowed(node(hop)), "{}", net.name(node(hop)));
                drawn.insert(node(hop));
            }
            let drop_to = constrained.random_gateway(&mut rng).unwrap();
            let g = net.node_of(&drop_to).unwrap();
            assert!(r.is_allowed(g));
            drawn.insert(g);
            let route = free.route_to(&mut rng, exit).unwrap();
            free_outside += route.iter().filter(|h| !r.is_allowed(node(h))).count();
        }
        // Per layer L.0 and L.3 are "eu": 6 mix nodes, and 2 gateways.
        let allowed: BTreeSet<usize> = (0..net.mixers.len()).filter(|n| r.is_allowed(*n)).collect();
        assert_eq!(allowed.len(), 8);
        assert_eq!(drawn, allowed);
        assert!(free_outside > 1_000, "{free_outside}");
        // No route at all to a gateway outside the allowed regions.
        assert!(constrained.route_to(&mut rng, net.gateway_id(1)).is_none());
        assert!(free.route_to(&mut rng, net.gateway_id(1)).is_some());
    }
}
