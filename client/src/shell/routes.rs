//! The core's [`RouteSource`] over a signed topology, kept inside the
//! client's allowed regions when it has some (data residency).
//!
//! With regions set, every route this client builds (forward routes, the
//! routes home of its SURB-acks and reply SURBs, loop and drop cover) draws
//! its mixes only among nodes labelled with an allowed region, and ends only
//! at a gateway labelled with one. A route that cannot stay inside is not
//! built at all: the core sends nothing rather than leave the regions, and
//! [`TopologyRoutes::check_route_to`] says why before a message is queued.

use std::sync::Arc;

use protocol::NodeId;
use protocol::packet::RouteHop;
use rand::CryptoRng;
use topology::{NodeEntry, RouteSelector, Topology};

use client_core::RouteSource;

/// Why a route would leave the allowed regions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResidencyError {
    /// The gateway is labelled with another region, or with none.
    #[error(
        "gateway {gateway} is in {region}, outside the allowed regions {allowed} \
         (data residency: nothing is sent there)"
    )]
    Gateway {
        /// The gateway (base58).
        gateway: String,
        /// `region "us"` or `no region`.
        region: String,
        /// The allowed regions, comma-separated.
        allowed: String,
    },
    /// A mix layer has no node in the allowed regions.
    #[error(
        "no mix node of layer {layer} is in the allowed regions {allowed} (data residency: \
         no route can stay inside them until one is)"
    )]
    EmptyLayer {
        /// The layer, from 1.
        layer: usize,
        /// The allowed regions, comma-separated.
        allowed: String,
    },
    /// A reply travels the route the other client chose for its SURBs.
    #[error(
        "a reply goes through the SURBs the other client built, on routes it chose: not sent \
         under the allowed regions {allowed}; send a message to its address instead"
    )]
    Reply {
        /// The allowed regions, comma-separated.
        allowed: String,
    },
}

/// Routes drawn with [`RouteSelector`] from the current [`Topology`],
/// inside `regions` when set.
#[derive(Clone, Debug)]
pub struct TopologyRoutes {
    topology: Arc<Topology>,
    regions: Option<Arc<[String]>>,
}

impl TopologyRoutes {
    /// Routes over `topology`, through nodes of `regions` only when given.
    pub fn new(topology: Arc<Topology>, regions: Option<Arc<[String]>>) -> Self {
        TopologyRoutes { topology, regions }
    }

    /// The topology routes are drawn from.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The allowed regions, if routes are kept inside some.
    pub fn regions(&self) -> Option<&[String]> {
        self.regions.as_deref()
    }

    fn selector(&self) -> RouteSelector<'_> {
        let selector = RouteSelector::new(&self.topology);
        match &self.regions {
            Some(regions) => selector.regions(regions.iter().cloned()),
            None => selector,
        }
    }

    fn allowed_text(regions: &[String]) -> String {
        regions.join(", ")
    }

    /// Whether a route to a client of `gateway` can stay inside the
    /// allowed regions (always, without regions): the gateway is in one and
    /// every layer has a mix in one.
    pub fn check_route_to(&self, gateway: &NodeId) -> Result<(), ResidencyError> {
        let Some(regions) = &self.regions else {
            return Ok(());
        };
        if let Some(entry) = self.topology.gateways.iter().find(|g| g.id == *gateway) {
            check_entry(entry, regions)?;
        }
        for (i, layer) in self.topology.layers.iter().enumerate() {
            if !layer.iter().any(|n| in_regions(n, regions)) {
                return Err(ResidencyError::EmptyLayer {
                    layer: i + 1,
                    allowed: Self::allowed_text(regions),
                });
            }
        }
        Ok(())
    }

    /// Refuses a reply through someone else's SURBs when regions are set.
    pub fn check_reply(&self) -> Result<(), ResidencyError> {
        match &self.regions {
            Some(regions) => Err(ResidencyError::Reply {
                allowed: Self::allowed_text(regions),
            }),
            None => Ok(()),
        }
    }
}

fn in_regions(entry: &NodeEntry, regions: &[String]) -> bool {
    entry
        .region
        .as_ref()
        .is_some_and(|r| regions.iter().any(|a| a == r))
}

/// Whether node `entry` is inside `regions`, with the reason when not.
pub fn check_entry(entry: &NodeEntry, regions: &[String]) -> Result<(), ResidencyError> {
    if in_regions(entry, regions) {
        return Ok(());
    }
    Err(ResidencyError::Gateway {
        gateway: entry.id.to_base58(),
        region: match &entry.region {
            Some(r) => format!("region \"{r}\""),
            None => "no region".into(),
        },
        allowed: TopologyRoutes::allowed_text(regions),
    })
}

impl RouteSource for TopologyRoutes {
    fn route_to(&self, rng: &mut dyn CryptoRng, exit_gateway: NodeId) -> Option<Vec<RouteHop>> {
        if let Some(regions) = &self.regions {
            let exit = self
                .topology
                .gateways
                .iter()
                .find(|g| g.id == exit_gateway)?;
            if !in_regions(exit, regions) {
                return None;
            }
        }
        self.selector().select(rng, &exit_gateway).ok()
    }

    fn random_gateway(&self, rng: &mut dyn CryptoRng) -> Option<NodeId> {
        self.selector().select_gateway(rng).ok().map(|hop| hop.id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// A topology of 3 layers of 2 mixes and 2 gateways: mix 0 of each
    /// layer and gateway 0 in "eu", the others in "us".
    fn labelled(rng: &mut ChaCha20Rng) -> Topology {
        let mut port = 1000u16;
        let mut entry = |rng: &mut ChaCha20Rng, region: &str| {
            port += 1;
            NodeEntry {
                id: protocol::IdentityKeyPair::generate(rng).node_id(),
                address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                client_address: None,
                sphinx_key: protocol::SphinxKeyPair::generate(rng).public(),
                region: Some(region.into()),
                score: 1.0,
            }
        };
        let layers = (0..3)
            .map(|_| vec![entry(rng, "eu"), entry(rng, "us")])
            .collect();
        let gateways = vec![entry(rng, "eu"), entry(rng, "us")];
        Topology {
            epoch: protocol::Epoch(4),
            serial: 0,
            params: topology::NetworkParams::default(),
            layers,
            gateways,
            authorities: None,
        }
    }

    #[test]
    fn routes_stay_inside_the_allowed_regions() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let t = Arc::new(labelled(&mut rng));
        let eu = TopologyRoutes::new(t.clone(), Some(vec!["eu".to_string()].into()));
        let home = t.gateways[0].id;
        for _ in 0..200 {
            let route = eu.route_to(&mut rng, home).unwrap();
            for (hop, layer) in route.iter().zip(&t.layers) {
                let node = layer.iter().find(|n| n.id == hop.id).unwrap();
                assert_eq!(node.region.as_deref(), Some("eu"));
            }
            assert_eq!(eu.random_gateway(&mut rng), Some(home));
        }
        // A client of the "us" gateway cannot be reached from inside "eu".
        let away = t.gateways[1].id;
        assert!(eu.route_to(&mut rng, away).is_none());
        let err = eu.check_route_to(&away).unwrap_err();
        assert!(err.to_string().contains("region \"us\""), "{err}");
        assert!(eu.check_route_to(&home).is_ok());
        assert!(eu.check_reply().is_err());
        // Without regions, both gateways and every mix are used.
        let free = TopologyRoutes::new(t.clone(), None);
        assert!(free.route_to(&mut rng, away).is_some());
        assert!(free.check_route_to(&away).is_ok() && free.check_reply().is_ok());
        let used: std::collections::HashSet<NodeId> = (0..200)
            .flat_map(|_| free.route_to(&mut rng, home).unwrap())
            .map(|h| h.id)
            .collect();
        assert_eq!(used.len(), 7);
    }

    #[test]
    fn a_layer_without_an_allowed_mix_is_named() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut t = labelled(&mut rng);
        t.layers[1][0].region = Some("us".into());
        let eu = TopologyRoutes::new(Arc::new(t.clone()), Some(vec!["eu".to_string()].into()));
        let home = t.gateways[0].id;
        assert_eq!(
            eu.check_route_to(&home),
            Err(ResidencyError::EmptyLayer {
                layer: 2,
                allowed: "eu".into()
            })
        );
        assert!(eu.route_to(&mut rng, home).is_none());
    }
}
