//! Data residency: region labels on nodes, and clients whose packets may
//! cross only nodes of some regions.
//!
//! A scenario's [`RegionSpec`] labels every mix node and gateway and names
//! the allowed regions of its constrained clients; [`Residency`] is what the
//! engine makes of it. It places constrained clients on allowed gateways,
//! lets them write only to clients on allowed gateways, gives them route
//! sources that draw only allowed nodes ([`AllowedNodes`]), and tells the
//! observers what a packet's next hop reveals about its sender: a packet
//! that goes on to a node outside the allowed regions is not a constrained
//! client's, and one that goes on to an allowed node is more likely one than
//! its share of the pool says ([`Residency::constrained_weight`]).

use std::rc::Rc;

use crate::error::SimError;
use crate::routes::AllowedNodes;
use crate::scenario::{RegionSpec, Scenario};

/// Region labels of a run's nodes and the constrained clients' allowed set.
#[derive(Debug)]
pub struct Residency {
    /// Per node (mix nodes layer by layer, then gateways): whether its region is allowed.
    allowed_node: Vec<bool>,
    /// Per node: its region label ("" when the scenario labels none).
    labels: Vec<String>,
    /// The allowed nodes, as constrained clients' route sources draw them.
    allowed: Rc<AllowedNodes>,
    /// Clients 0..constrained are constrained.
    constrained: usize,
    /// Per node: nodes of its layer (gateways: gateways) over allowed ones
    /// among them, the likelihood ratio of an allowed next hop.
    weight_allowed: Vec<f64>,
    gateways: usize,
}

impl Residency {
    /// The residency of `scenario`; `None` when no client is constrained
    /// (then nothing in the run differs from a run without regions). An
    /// error names what makes a constraint impossible to keep.
    pub fn new(scenario: &Scenario) -> Result<Option<Residency>, SimError> {
        let spec = &scenario.regions;
        let topo = &scenario.topology;
        check_labels(spec)?;
        let f = spec.constrained_fraction;
        if !(0.0..=1.0).contains(&f) {
            return Err(SimError::invalid(
                "regions.constrained_fraction",
                format!("must be in [0, 1], got {f}"),
            ));
        }
        let clients = scenario.traffic.clients;
        let constrained = if f > 0.0 {
            ((f * clients as f64).round() as usize).clamp(1, clients)
        } else {
            0
        };
        if constrained == 0 {
            return Ok(None);
        }
        if spec.allowed.is_empty() {
            return Err(SimError::invalid(
                "regions.allowed",
                "names no region, but constrained_fraction > 0",
            ));
        }
        if spec.mixes.is_empty() || spec.gateways.is_empty() {
            return Err(SimError::invalid(
                "regions",
                "constrained clients need region labels on the mix nodes (`mixes`) and on the gateways (`gateways`)",
            ));
        }
        for region in &spec.allowed {
            if !spec.mixes.contains(region) && !spec.gateways.contains(region) {
                return Err(SimError::invalid(
                    "regions.allowed",
                    format!("no mix node or gateway is labelled `{region}`"),
                ));
            }
        }
        if scenario.attack.intersection.is_some() {
            return Err(SimError::invalid(
                "regions.constrained_fraction",
                "must be 0 under the intersection attack (Alice's correspondents are drawn among all clients)",
            ));
        }
        let label = |labels: &[String], i: usize| {
            labels
                .get(i % labels.len().max(1))
                .cloned()
                .unwrap_or_default()
        };
        let mut labels = Vec::with_capacity(topo.layers * topo.nodes_per_layer + topo.gateways);
        let mut by_layer = Vec::with_capacity(topo.layers);
        for layer in 0..topo.layers {
            let mut nodes = Vec::new();
            for j in 0..topo.nodes_per_layer {
                let region = label(&spec.mixes, j);
                if spec.allowed.contains(&region) {
                    nodes.push(layer * topo.nodes_per_layer + j);
                }
                labels.push(region);
            }
            if nodes.is_empty() {
                return Err(SimError::invalid(
                    "regions.allowed",
                    format!(
                        "layer {} has no mix node in the allowed regions {:?}: a constrained client could not route",
                        layer + 1,
                        spec.allowed
                    ),
                ));
            }
            by_layer.push(nodes);
        }
        let mut gateways = Vec::new();
        for g in 0..topo.gateways {
            let region = label(&spec.gateways, g);
            if spec.allowed.contains(&region) {
                gateways.push(g);
            }
            labels.push(region);
        }
        if gateways.is_empty() {
            return Err(SimError::invalid(
                "regions.allowed",
                format!(
                    "no gateway is in the allowed regions {:?}: a constrained client would have none",
                    spec.allowed
                ),
            ));
        }
        let allowed_node: Vec<bool> = labels.iter().map(|l| spec.allowed.contains(l)).collect();
        let mixes = topo.layers * topo.nodes_per_layer;
        let weight_allowed = (0..labels.len())
            .map(|n| {
                let (all, allowed) = match n.checked_sub(mixes) {
                    Some(_) => (topo.gateways, gateways.len()),
                    None => (
                        topo.nodes_per_layer,
                        by_layer
                            .get(n / topo.nodes_per_layer.max(1))
                            .map_or(0, Vec::len),
                    ),
                };
                all as f64 / allowed.max(1) as f64
            })
            .collect();
        Ok(Some(Residency {
            allowed_node,
            labels,
            allowed: Rc::new(AllowedNodes::new(by_layer, gateways, mixes)),
            constrained,
            weight_allowed,
            gateways: topo.gateways,
        }))
    }

    /// Whether client `c` is constrained to the allowed regions.
    pub fn is_constrained(&self, c: usize) -> bool {
        c < self.constrained
    }

    /// Number of constrained clients.
    pub fn constrained_clients(&self) -> usize {
        self.constrained
    }

    /// Whether node `n` (mix nodes, then gateways) is in an allowed region.
    pub fn is_allowed(&self, n: usize) -> bool {
        self.allowed_node.get(n).copied().unwrap_or(false)
    }

    /// The region label of node `n`.
    pub fn label(&self, n: usize) -> &str {
        self.labels.get(n).map_or("", String::as_str)
    }

    /// The nodes a constrained client's routes may draw.
    pub fn allowed_nodes(&self) -> Rc<AllowedNodes> {
        self.allowed.clone()
    }

    /// The gateway of client `c`: the (c mod a)-th allowed one for a
    /// constrained client, else c mod gateways, as without regions.
    pub fn gateway_of(&self, c: usize) -> usize {
        let allowed = self.allowed.gateways();
        if self.is_constrained(c) && !allowed.is_empty() {
            allowed
                .get(c % allowed.len())
                .copied()
                .unwrap_or(c % self.gateways.max(1))
        } else {
            c % self.gateways.max(1)
        }
    }

    /// How much more likely a constrained client's packet is than another
    /// sender's to go on from a mix to node `next`: a packet of a
    /// constrained client picks among the allowed nodes of the next layer
    /// (or the allowed gateways), anyone else's among all of them; 0 for a
    /// node outside the allowed regions.
    pub fn constrained_weight(&self, next: usize) -> f64 {
        if self.is_allowed(next) {
            self.weight_allowed.get(next).copied().unwrap_or(1.0)
        } else {
            0.0
        }
    }
}

/// Labels are non-empty words, and labels without a constraint are fine.
fn check_labels(spec: &RegionSpec) -> Result<(), SimError> {
    for (field, labels) in [
        ("regions.mixes", &spec.mixes),
        ("regions.gateways", &spec.gateways),
        ("regions.allowed", &spec.allowed),
    ] {
        if labels.iter().any(|l| l.trim().is_empty()) {
            return Err(SimError::invalid(field, "a region label is empty"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(regions: &str) -> Result<Scenario, SimError> {
        Scenario::from_toml(
            &format!(
                "[topology]\nnodes_per_layer = 3\ngateways = 4\n[traffic]\nclients = 20\n[regions]\n{regions}"
            ),
            "t",
        )
    }

    #[test]
    fn labels_repeat_by_position_and_constrained_clients_sit_on_allowed_gateways() {
        let s = scenario(
            "mixes = [\"eu\", \"us\"]\ngateways = [\"us\", \"eu\"]\nconstrained_fraction = 0.25\nallowed = [\"eu\"]",
        )
        .unwrap();
        let r = Residency::new(&s).unwrap().unwrap();
        assert_eq!(r.constrained_clients(), 5);
        // Layer 2: L2.0 eu, L2.1 us, L2.2 eu; gateways G0 us, G1 eu, G2 us, G3 eu.
        assert_eq!(
            (r.label(3), r.label(4), r.label(5), r.label(9), r.label(10)),
            ("eu", "us", "eu", "us", "eu")
        );
        assert!(r.is_allowed(3) && !r.is_allowed(4) && r.is_allowed(10));
        for c in 0..5 {
            assert!(r.is_allowed(9 + r.gateway_of(c)), "client {c}");
        }
        assert_eq!(
            (r.gateway_of(0), r.gateway_of(1), r.gateway_of(2)),
            (1, 3, 1)
        );
        // Unconstrained clients keep their gateway.
        assert_eq!((r.gateway_of(5), r.gateway_of(6)), (1, 2));
        // Next hops: 3 mixes per layer, 2 allowed; 4 gateways, 2 allowed.
        assert_eq!(r.constrained_weight(3), 1.5);
        assert_eq!(r.constrained_weight(4), 0.0);
        assert_eq!(r.constrained_weight(10), 2.0);
    }

    #[test]
    fn no_constraint_is_no_residency_and_bad_constraints_say_why() {
        assert!(
            Residency::new(&scenario("mixes = [\"eu\"]").unwrap())
                .unwrap()
                .is_none()
        );
        let err = |regions: &str| scenario(regions).unwrap_err().to_string();
        let e = err(
            "mixes = [\"us\"]\ngateways = [\"eu\"]\nconstrained_fraction = 0.5\nallowed = [\"eu\"]",
        );
        assert!(e.contains("layer 1 has no mix node"), "{e}");
        let e = err(
            "mixes = [\"eu\"]\ngateways = [\"us\"]\nconstrained_fraction = 0.5\nallowed = [\"eu\"]",
        );
        assert!(e.contains("no gateway is in the allowed"), "{e}");
        let e = err(
            "mixes = [\"eu\"]\ngateways = [\"eu\"]\nconstrained_fraction = 0.5\nallowed = [\"asia\"]",
        );
        assert!(e.contains("`asia`"), "{e}");
        let e = err("constrained_fraction = 0.5\nallowed = [\"eu\"]");
        assert!(e.contains("region labels"), "{e}");
        let e = err(
            "mixes = [\"eu\"]\ngateways = [\"eu\"]\nconstrained_fraction = 1.5\nallowed = [\"eu\"]",
        );
        assert!(e.contains("[0, 1]"), "{e}");
        let e = err("mixes = [\"eu\", \"\"]");
        assert!(e.contains("empty"), "{e}");
    }
}
