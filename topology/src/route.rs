//! Route selection: one mix per layer, then the recipient's gateway.
//!
//! A client draws a fresh route for every packet (and for every
//! retransmission). Each mix is drawn independently, uniformly or in
//! proportion to its reliability score; a region filter keeps the mixes (and
//! gateways drawn with [`RouteSelector::select_gateway`]) inside chosen
//! jurisdictions. The exit gateway is never filtered: it is fixed by the
//! recipient's address.

use protocol::NodeId;
use protocol::packet::RouteHop;
use rand::{CryptoRng, RngExt};

use crate::document::{NodeEntry, Topology};
use crate::error::RouteError;

/// How mixes are drawn within a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Weighting {
    /// Every eligible node equally likely.
    #[default]
    Uniform,
    /// In proportion to each node's reliability score.
    ByScore,
}

/// Draws routes from one topology.
#[derive(Clone, Debug)]
pub struct RouteSelector<'a> {
    topology: &'a Topology,
    weighting: Weighting,
    regions: Option<Vec<String>>,
}

impl<'a> RouteSelector<'a> {
    /// A uniform selector over all of `topology`.
    pub fn new(topology: &'a Topology) -> Self {
        RouteSelector {
            topology,
            weighting: Weighting::Uniform,
            regions: None,
        }
    }

    /// Draws mixes with `weighting`.
    pub fn weighting(mut self, weighting: Weighting) -> Self {
        self.weighting = weighting;
        self
    }

    /// Keeps only nodes whose region label is one of `regions`.
    pub fn regions(mut self, regions: impl IntoIterator<Item = String>) -> Self {
        self.regions = Some(regions.into_iter().collect());
        self
    }

    /// A route [L1, L2, L3, exit gateway] for a packet to a client of `exit_gateway`.
    pub fn select(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        exit_gateway: &NodeId,
    ) -> Result<Vec<RouteHop>, RouteError> {
        let exit = self
            .topology
            .gateways
            .iter()
            .find(|g| g.id == *exit_gateway)
            .ok_or(RouteError::UnknownGateway(*exit_gateway))?;
        let mut route = Vec::with_capacity(self.topology.layers.len() + 1);
        for (i, layer) in self.topology.layers.iter().enumerate() {
            let node = self
                .pick(rng, layer)
                .ok_or(RouteError::EmptyLayer { layer: i + 1 })?;
            route.push(node.hop());
        }
        route.push(exit.hop());
        Ok(route)
    }

    /// Draws a gateway (e.g. the destination of a drop-cover packet).
    pub fn select_gateway(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<RouteHop, RouteError> {
        self.pick(rng, &self.topology.gateways)
            .map(NodeEntry::hop)
            .ok_or(RouteError::NoGateway)
    }

    fn eligible(&self, entry: &NodeEntry) -> bool {
        match (&self.regions, &entry.region) {
            (None, _) => true,
            (Some(allowed), Some(region)) => allowed.iter().any(|r| r == region),
            (Some(_), None) => false,
        }
    }

    fn pick<'t>(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        nodes: &'t [NodeEntry],
    ) -> Option<&'t NodeEntry> {
        let eligible: Vec<&NodeEntry> = nodes.iter().filter(|e| self.eligible(e)).collect();
        let weight = |e: &NodeEntry| match self.weighting {
            Weighting::Uniform => 1.0,
            Weighting::ByScore if e.score.is_finite() && e.score > 0.0 => e.score,
            Weighting::ByScore => 0.0,
        };
        let total: f64 = eligible.iter().map(|e| weight(e)).sum();
        if total <= 0.0 {
            return None;
        }
        let mut point = rng.random::<f64>() * total;
        for entry in &eligible {
            let w = weight(entry);
            if point < w {
                return Some(entry);
            }
            point -= w;
        }
        // Rounding can leave `point` a hair above the last weight.
        eligible.into_iter().rev().find(|e| weight(e) > 0.0)
    }
}

impl Topology {
    /// A loop cover route (Loopix λ_M) for node `me`: one uniformly drawn node
    /// of every mix layer, in route order, except the layer `me` is in; a
    /// gateway therefore crosses all three layers. The caller appends `me` as
    /// the final hop (`mixnode_core::Mixer::poll_cover` does).
    pub fn loop_route(
        &self,
        me: &NodeId,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<RouteHop>, RouteError> {
        let selector = RouteSelector::new(self);
        let mut route = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.iter().any(|e| e.id == *me) {
                continue;
            }
            let node = selector
                .pick(rng, layer)
                .ok_or(RouteError::EmptyLayer { layer: i + 1 })?;
            route.push(node.hop());
        }
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::tests::sample;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    proptest! {
        #[test]
        fn every_route_has_one_node_per_layer_in_order(seed: u64, per_layer in 1usize..6, gateways in 1usize..4) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let t = sample(&mut rng, per_layer, gateways);
            let exit = t.gateways[gateways - 1].id;
            for weighting in [Weighting::Uniform, Weighting::ByScore] {
                let route = RouteSelector::new(&t).weighting(weighting).select(&mut rng, &exit).unwrap();
                prop_assert_eq!(route.len(), 4);
                for (i, hop) in route.iter().take(3).enumerate() {
                    prop_assert_eq!(t.layer_of(&hop.id), Some(i));
                    prop_assert_eq!(t.hop(&hop.id), Some(*hop));
                }
                prop_assert_eq!(route[3], t.gateways[gateways - 1].hop());
            }
        }
    }

    proptest! {
        #[test]
        fn loop_routes_skip_only_the_senders_own_layer(seed: u64, per_layer in 1usize..5) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let t = sample(&mut rng, per_layer, 2);
            // A gateway's loop crosses layers 1, 2, 3 in order.
            let gw = t.gateways[1].id;
            let route = t.loop_route(&gw, &mut rng).unwrap();
            prop_assert_eq!(route.len(), 3);
            for (i, hop) in route.iter().enumerate() {
                prop_assert_eq!(t.layer_of(&hop.id), Some(i));
                prop_assert_eq!(t.hop(&hop.id), Some(*hop));
            }
            // A mix node's loop crosses the two other layers, in order, never itself.
            for own in 0..3 {
                let me = t.layers[own][per_layer - 1].id;
                let route = t.loop_route(&me, &mut rng).unwrap();
                let crossed: Vec<_> = route.iter().map(|h| t.layer_of(&h.id)).collect();
                let expected: Vec<_> = (0..3).filter(|l| *l != own).map(Some).collect();
                prop_assert_eq!(crossed, expected);
                prop_assert!(route.iter().all(|h| h.id != me));
            }
        }
    }

    #[test]
    fn loop_routes_draw_uniformly_and_refuse_an_empty_layer() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let mut t = sample(&mut rng, 2, 1);
        // Scores do not weight loop cover: each node of a layer half the time.
        for layer in &mut t.layers {
            layer[0].score = 0.9;
            layer[1].score = 0.1;
        }
        let gw = t.gateways[0].id;
        let draws = 4_000;
        let mut firsts = [0usize; 3];
        for _ in 0..draws {
            let route = t.loop_route(&gw, &mut rng).unwrap();
            for (i, hit) in firsts.iter_mut().enumerate() {
                *hit += usize::from(route[i].id == t.layers[i][0].id);
            }
        }
        for hits in firsts {
            // 4σ of a binomial(4000, 0.5) share is about 0.032.
            let share = hits as f64 / draws as f64;
            assert!((share - 0.5).abs() < 0.035, "share {share}");
        }
        let l1 = t.layers[0][0].id;
        t.layers[1].clear();
        assert_eq!(
            t.loop_route(&gw, &mut rng),
            Err(RouteError::EmptyLayer { layer: 2 })
        );
        assert_eq!(
            t.loop_route(&l1, &mut rng),
            Err(RouteError::EmptyLayer { layer: 2 })
        );
    }

    #[test]
    fn score_weights_are_respected() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let mut t = sample(&mut rng, 2, 1);
        for layer in &mut t.layers {
            layer[0].score = 0.8;
            layer[1].score = 0.2;
        }
        let exit = t.gateways[0].id;
        let draws = 20_000;
        let count_first = |sel: &RouteSelector, rng: &mut ChaCha20Rng| {
            let mut hits = [0usize; 3];
            for _ in 0..draws {
                let route = sel.select(rng, &exit).unwrap();
                for (i, hit) in hits.iter_mut().enumerate() {
                    *hit += usize::from(route[i].id == t.layers[i][0].id);
                }
            }
            hits.map(|h| h as f64 / draws as f64)
        };
        // 4σ of a binomial(20000, 0.8) share is about 0.011.
        for share in count_first(
            &RouteSelector::new(&t).weighting(Weighting::ByScore),
            &mut rng,
        ) {
            assert!((share - 0.8).abs() < 0.012, "weighted share {share}");
        }
        for share in count_first(&RouteSelector::new(&t), &mut rng) {
            assert!((share - 0.5).abs() < 0.015, "uniform share {share}");
        }
    }

    #[test]
    fn regions_restrict_mixes_and_empty_layers_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let mut t = sample(&mut rng, 3, 2);
        for layer in &mut t.layers {
            layer[1].region = Some("eu".into());
            layer[2].region = Some("us".into());
        }
        t.gateways[1].region = Some("eu".into());
        let exit = t.gateways[0].id;
        let eu = RouteSelector::new(&t).regions(["eu".to_string()]);
        for _ in 0..50 {
            let route = eu.select(&mut rng, &exit).unwrap();
            for (i, hop) in route.iter().take(3).enumerate() {
                assert_eq!(hop.id, t.layers[i][1].id);
            }
            assert_eq!(route[3].id, exit, "the exit gateway is never filtered");
            assert_eq!(eu.select_gateway(&mut rng).unwrap().id, t.gateways[1].id);
        }
        t.layers[1][1].region = Some("us".into());
        let eu = RouteSelector::new(&t).regions(["eu".to_string()]);
        assert_eq!(
            eu.select(&mut rng, &exit),
            Err(RouteError::EmptyLayer { layer: 2 })
        );
        let ch = RouteSelector::new(&t).regions(["ch".to_string()]);
        assert_eq!(ch.select_gateway(&mut rng), Err(RouteError::NoGateway));
        let stranger = t.layers[0][0].id;
        assert_eq!(
            RouteSelector::new(&t).select(&mut rng, &stranger),
            Err(RouteError::UnknownGateway(stranger))
        );
        t.layers[2].clear();
        assert_eq!(
            RouteSelector::new(&t).select(&mut rng, &exit),
            Err(RouteError::EmptyLayer { layer: 3 })
        );
    }
}
