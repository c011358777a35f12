//! The simulated network: its nodes, their mixers, routes and links.
//!
//! Nodes are numbered: mix nodes first, layer by layer, then gateways. A
//! node's [`NodeId`] encodes its number, so the engine maps a mixer's
//! `next_hop` back to a node without a lookup table. Every mix node and every
//! gateway (as exit) is a real [`Mixer`] with a real Sphinx key; only the
//! codec differs between trace and Sphinx runs. A gateway's client sessions
//! and mailboxes are its [`gateway_core::GatewayCore`], which the engine owns
//! beside the gateway's mixer.

use std::rc::Rc;
use std::time::Duration;

use mixnode_core::{Mixer, MixerConfig, MixerRole};
use protocol::epoch::Epoch;
use protocol::keys::{NodeId, SphinxKeyPair, random_bytes};
use protocol::packet::RouteHop;
use protocol::replay::ReplayFilterConfig;
use rand::RngExt;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Exp};

use crate::routes::RouteTable;
use crate::scenario::{LatencySpec, Scenario, parse_node_name};
use crate::sim_codec::SimCodec;

const MIX_TAG: u8 = b'M';
const GATEWAY_TAG: u8 = b'G';

/// A 32-byte name: a tag byte and a number.
fn tagged(tag: u8, n: u32) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = tag;
    b[1..5].copy_from_slice(&n.to_le_bytes());
    b
}

/// Link latency sampler.
#[derive(Clone, Copy, Debug)]
pub struct LinkModel {
    latency: LatencySpec,
    exp: Option<Exp<f64>>,
    loss: f64,
}

impl LinkModel {
    /// Links as the scenario describes them.
    pub fn new(latency: LatencySpec, loss: f64) -> Self {
        let exp = match latency {
            LatencySpec::Exponential { mean_ms } if mean_ms > 0.0 => Exp::new(1.0 / mean_ms).ok(),
            _ => None,
        };
        LinkModel { latency, exp, loss }
    }

    /// One crossing of a link: its latency, or `None` if the packet is lost.
    pub fn cross(&self, rng: &mut ChaCha20Rng) -> Option<Duration> {
        if self.loss > 0.0 && rng.random::<f64>() < self.loss {
            return None;
        }
        Some(self.latency(rng))
    }

    /// One message's latency on a reliable stream (a client's session with
    /// its gateway), which loses nothing.
    pub fn latency(&self, rng: &mut ChaCha20Rng) -> Duration {
        let ms = match self.latency {
            LatencySpec::Constant { ms } => ms,
            LatencySpec::Uniform { min_ms, max_ms } if max_ms > min_ms => {
                rng.random_range(min_ms..max_ms)
            }
            LatencySpec::Uniform { min_ms, .. } => min_ms,
            LatencySpec::Exponential { .. } => self.exp.map_or(0.0, |e| e.sample(rng)),
        };
        Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::ZERO)
    }
}

/// All nodes of a run.
pub struct Network<C: SimCodec> {
    /// One mixer per node: mix nodes layer by layer, then gateways.
    pub mixers: Vec<Mixer<C>>,
    /// Each node's route entry (id and Sphinx public key).
    pub hops: Vec<RouteHop>,
    /// The same entries, shared with the clients' route sources.
    pub routes: Rc<RouteTable>,
    /// Whether the node colludes with the observer.
    pub corrupt: Vec<bool>,
    /// Mix layers.
    pub layers: usize,
    /// Mix nodes per layer.
    pub per_layer: usize,
    /// Gateways.
    pub gateways: usize,
    /// The links.
    pub link: LinkModel,
}

impl<C: SimCodec> Network<C> {
    /// Builds the nodes of `scenario`, drawing keys and the corrupt set from `rng`.
    pub fn new(scenario: &Scenario, codec: &C, rng: &mut ChaCha20Rng) -> Self {
        let topo = &scenario.topology;
        let mixes = topo.layers * topo.nodes_per_layer;
        let total = mixes + topo.gateways;
        let replay = ReplayFilterConfig {
            min_tags_per_epoch: expected_tags_per_node(scenario),
            false_positive_rate: topo.replay_false_positive_rate,
        };
        let mut mixers = Vec::with_capacity(total);
        let mut hops = Vec::with_capacity(total);
        for n in 0..total {
            let (id, role) = if n < mixes {
                (NodeId(tagged(MIX_TAG, n as u32)), MixerRole::Mix)
            } else {
                (
                    NodeId(tagged(GATEWAY_TAG, (n - mixes) as u32)),
                    MixerRole::Exit,
                )
            };
            let key = SphinxKeyPair::from_secret_bytes(random_bytes(rng));
            let config = MixerConfig {
                role,
                max_delay: Duration::from_secs(10),
                replay,
                loop_cover_rate: if role == MixerRole::Mix || scenario.traffic.gateway_cover {
                    scenario.traffic.lambda_m
                } else {
                    0.0
                },
                cover_mean_delay: scenario.mean_delay(),
            };
            hops.push(RouteHop {
                id,
                sphinx_key: key.public(),
            });
            let mixer = Mixer::new(id, codec.clone(), config);
            mixer.install_key(Epoch(0), key);
            mixer.rotate(Epoch(0));
            mixers.push(mixer);
        }
        let mut corrupt = vec![false; total];
        for i in rand::seq::index::sample(rng, mixes, scenario.adversary.corrupt_mixes) {
            if let Some(c) = corrupt.get_mut(i) {
                *c = true;
            }
        }
        for i in rand::seq::index::sample(rng, topo.gateways, scenario.adversary.corrupt_gateways) {
            if let Some(c) = corrupt.get_mut(mixes + i) {
                *c = true;
            }
        }
        for name in &scenario.adversary.corrupt_nodes {
            if let Some(c) = parse_node_name(name, topo).and_then(|n| corrupt.get_mut(n)) {
                *c = true;
            }
        }
        Network {
            mixers,
            routes: Rc::new(RouteTable::new(
                hops.clone(),
                topo.layers,
                topo.nodes_per_layer,
            )),
            hops,
            corrupt,
            layers: topo.layers,
            per_layer: topo.nodes_per_layer,
            gateways: topo.gateways,
            link: LinkModel::new(scenario.link.latency, scenario.link.loss),
        }
    }

    /// Number of mix nodes.
    pub fn mixes(&self) -> usize {
        self.layers * self.per_layer
    }

    /// Node number of gateway `g`.
    pub fn gateway_node(&self, g: usize) -> usize {
        self.mixes() + g
    }

    /// The node a mixer's `next_hop` names, if it is one of ours.
    pub fn node_of(&self, id: &NodeId) -> Option<usize> {
        let b = id.as_bytes();
        if b.get(5..).is_some_and(|rest| rest.iter().any(|x| *x != 0)) {
            return None;
        }
        let n = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize;
        let node = match b[0] {
            MIX_TAG if n < self.mixes() => n,
            GATEWAY_TAG if n < self.gateways => self.mixes() + n,
            _ => return None,
        };
        Some(node)
    }

    /// The id of gateway `g`.
    pub fn gateway_id(&self, g: usize) -> NodeId {
        NodeId(tagged(GATEWAY_TAG, g as u32))
    }

    /// The ids of the mix nodes of layer 1.
    pub fn layer1_ids(&self) -> Vec<NodeId> {
        (0..self.per_layer)
            .map(|n| NodeId(tagged(MIX_TAG, n as u32)))
            .collect()
    }

    /// Whether `node` is a gateway.
    pub fn is_gateway(&self, node: usize) -> bool {
        node >= self.mixes()
    }

    /// The mix route of `node`'s own loop cover, before the node itself (the
    /// final hop): a gateway crosses one random node of every layer in order
    /// [L1, …, Ln], as `Topology::loop_route` draws it; a mix node crosses one
    /// random node of each other layer, starting after its own.
    pub fn cover_route(&self, node: usize, rng: &mut ChaCha20Rng) -> Vec<usize> {
        if self.is_gateway(node) {
            return (0..self.layers)
                .map(|l| self.random_in_layer(l, rng))
                .collect();
        }
        let layer = node / self.per_layer;
        (1..self.layers)
            .map(|k| self.random_in_layer((layer + k) % self.layers, rng))
            .collect()
    }

    /// A uniformly random node of `layer`.
    pub fn random_in_layer(&self, layer: usize, rng: &mut ChaCha20Rng) -> usize {
        layer * self.per_layer + rng.random_range(0..self.per_layer)
    }

    /// Human-readable node name: `L1.0` (layer 1, first node) or `G0`.
    pub fn name(&self, node: usize) -> String {
        if node < self.mixes() {
            format!("L{}.{}", node / self.per_layer + 1, node % self.per_layer)
        } else {
            format!("G{}", node - self.mixes())
        }
    }

    /// Layer of a mix node (1-based), 0 for gateways.
    pub fn layer_of(&self, node: usize) -> usize {
        if node < self.mixes() {
            node / self.per_layer + 1
        } else {
            0
        }
    }
}

/// Replay-filter sizing: the busiest node's expected packets over the run, with margin.
fn expected_tags_per_node(s: &Scenario) -> u64 {
    let t = &s.traffic;
    let topo = &s.topology;
    // Every real packet may bring a SURB-ack back: at most λ_P more.
    let client_rate = t.clients as f64 * (2.0 * t.lambda_p + t.lambda_l);
    let covering =
        topo.layers * topo.nodes_per_layer + if t.gateway_cover { topo.gateways } else { 0 };
    let total = client_rate + covering as f64 * t.lambda_m;
    let per_node = total / topo.nodes_per_layer.min(topo.gateways).max(1) as f64;
    let tags = per_node * (s.duration_secs + s.drain_secs) * 1.5;
    (tags as u64).clamp(10_000, 500_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::rng_stream;
    use crate::trace_codec::TraceCodec;

    #[test]
    fn node_ids_map_back_and_foreign_ids_do_not() {
        let s = Scenario::default();
        let net = Network::new(&s, &TraceCodec::new().unwrap(), &mut rng_stream(1, 0));
        for (n, hop) in net.hops.iter().enumerate() {
            assert_eq!(net.node_of(&hop.id), Some(n));
        }
        assert_eq!(net.name(0), "L1.0");
        assert_eq!(net.name(net.gateway_node(1)), "G1");
        assert_eq!(net.node_of(&NodeId(tagged(b'C', 0))), None);
        assert_eq!(net.gateway_id(1), net.hops[net.gateway_node(1)].id);
        assert_eq!(net.layer1_ids()[2], net.hops[2].id);
        assert_eq!(net.node_of(&NodeId(tagged(MIX_TAG, 9))), None);
        assert_eq!(net.node_of(&NodeId([b'M'; 32])), None);
    }

    #[test]
    fn link_latency_means_and_loss() {
        let mut rng = rng_stream(2, 0);
        for spec in [
            LatencySpec::Constant { ms: 10.0 },
            LatencySpec::Uniform {
                min_ms: 5.0,
                max_ms: 15.0,
            },
            LatencySpec::Exponential { mean_ms: 10.0 },
        ] {
            let link = LinkModel::new(spec, 0.0);
            let n = 20_000;
            let total: f64 = (0..n)
                .map(|_| link.cross(&mut rng).unwrap().as_secs_f64() * 1000.0)
                .sum();
            assert!((total / n as f64 - 10.0).abs() < 0.3, "{spec:?}");
        }
        let lossy = LinkModel::new(LatencySpec::Constant { ms: 1.0 }, 0.25);
        let lost = (0..10_000)
            .filter(|_| lossy.cross(&mut rng).is_none())
            .count();
        assert!((2_200..2_800).contains(&lost), "{lost}");
    }
}
