//! The topology document: who is in the network for one epoch, and where.
//!
//! One document per epoch (with a revision `serial` that grows when the
//! directory republishes the same epoch because nodes joined or left), signed
//! by the directory. Clients build routes from it; nodes read from it whom they
//! forward to and which QUIC peers to accept (every listed id is a certificate
//! pin). It also carries the [`NetworkParams`], so all parties apply the same
//! delays and rates.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use protocol::packet::RouteHop;
use protocol::{Epoch, IdentityKeyPair, NodeId};
use serde::{Deserialize, Serialize};
use x25519_dalek::PublicKey;

use crate::envelope::{SignedEnvelope, TOPOLOGY_DOMAIN};
use crate::error::TopologyError;
use crate::layers::MIX_LAYERS;
use crate::params::NetworkParams;

/// Largest signed topology accepted, in bytes of JSON.
pub const MAX_TOPOLOGY_BYTES: usize = 8 * 1024 * 1024;

/// One node as listed in a topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The node's identity (and QUIC certificate pin).
    #[serde(with = "crate::serde_keys::node_id")]
    pub id: NodeId,
    /// Its QUIC address.
    pub address: SocketAddr,
    /// For a gateway: where clients connect, if it announced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<SocketAddr>,
    /// Its Sphinx public key for this topology's epoch.
    #[serde(with = "crate::serde_keys::sphinx_key")]
    pub sphinx_key: PublicKey,
    /// Its region label, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Reliability score in (0, 1]; route selection may weight by it.
    pub score: f64,
}

impl NodeEntry {
    /// This node as a hop of a Sphinx route.
    pub fn hop(&self) -> RouteHop {
        RouteHop {
            id: self.id,
            sphinx_key: self.sphinx_key,
        }
    }
}

/// The network for one epoch: three mix layers and the gateways.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The epoch whose Sphinx keys this document lists.
    pub epoch: Epoch,
    /// Revision within the epoch; a later revision replaces an earlier one.
    pub serial: u64,
    /// Network-wide parameters.
    pub params: NetworkParams,
    /// The mix layers, in route order (layer 1 first).
    pub layers: Vec<Vec<NodeEntry>>,
    /// The gateways.
    pub gateways: Vec<NodeEntry>,
}

impl Topology {
    /// The entry of node `id`, wherever it is listed.
    pub fn entry(&self, id: &NodeId) -> Option<&NodeEntry> {
        self.layers
            .iter()
            .flatten()
            .chain(&self.gateways)
            .find(|e| e.id == *id)
    }

    /// Node `id` as a route hop, with its key for this epoch.
    pub fn hop(&self, id: &NodeId) -> Option<RouteHop> {
        self.entry(id).map(NodeEntry::hop)
    }

    /// The mix layer of node `id`, counted from 0; `None` for gateways and strangers.
    pub fn layer_of(&self, id: &NodeId) -> Option<usize> {
        self.layers
            .iter()
            .position(|layer| layer.iter().any(|e| e.id == *id))
    }

    /// Whether node `id` is a listed gateway.
    pub fn is_gateway(&self, id: &NodeId) -> bool {
        self.gateways.iter().any(|e| e.id == *id)
    }

    /// The nodes that `id` forwards packets to: layer 1 for a gateway, the
    /// next layer for a mix, the gateways for the last mix layer.
    pub fn next_layer(&self, id: &NodeId) -> Option<&[NodeEntry]> {
        if self.is_gateway(id) {
            return self.layers.first().map(Vec::as_slice);
        }
        let layer = self.layer_of(id)?;
        match self.layers.get(layer + 1) {
            Some(next) => Some(next.as_slice()),
            None => Some(self.gateways.as_slice()),
        }
    }

    /// Every listed node id, sorted: the pins a transport accepts.
    pub fn all_peer_ids(&self) -> Vec<NodeId> {
        let ids: BTreeSet<NodeId> = self
            .layers
            .iter()
            .flatten()
            .chain(&self.gateways)
            .map(|e| e.id)
            .collect();
        ids.into_iter().collect()
    }

    /// Refuses documents with the wrong number of layers, duplicates or bad values.
    pub fn check_shape(&self) -> Result<(), TopologyError> {
        let malformed = |reason: String| {
            Err(TopologyError::Malformed {
                what: "topology",
                reason,
            })
        };
        if self.layers.len() != MIX_LAYERS {
            return malformed(format!(
                "{} mix layers, expected {MIX_LAYERS}",
                self.layers.len()
            ));
        }
        self.params.validate()?;
        let mut seen = BTreeSet::new();
        for entry in self.layers.iter().flatten().chain(&self.gateways) {
            if !seen.insert(entry.id) {
                return malformed(format!("node {} is listed twice", entry.id));
            }
            if !(entry.score > 0.0 && entry.score <= 1.0) {
                return malformed(format!("node {} has score {}", entry.id, entry.score));
            }
        }
        Ok(())
    }

    /// Signs this document with the directory's key.
    pub fn sign(&self, directory: &IdentityKeyPair) -> Result<SignedTopology, TopologyError> {
        let body = serde_json::to_string(self).map_err(|e| TopologyError::Malformed {
            what: "topology",
            reason: e.to_string(),
        })?;
        Ok(SignedTopology(SignedEnvelope::seal(
            TOPOLOGY_DOMAIN,
            body,
            directory,
        )))
    }
}

/// A topology in its signed envelope, as served and cached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignedTopology(pub SignedEnvelope);

impl SignedTopology {
    /// Checks the directory's signature with its pinned key, then parses.
    pub fn verify(&self, pinned_directory_key: &NodeId) -> Result<Topology, TopologyError> {
        if self.0.body.len() > MAX_TOPOLOGY_BYTES {
            return Err(TopologyError::Malformed {
                what: "topology",
                reason: format!("larger than {MAX_TOPOLOGY_BYTES} bytes"),
            });
        }
        self.0
            .check(TOPOLOGY_DOMAIN, pinned_directory_key, "topology")?;
        let topology: Topology =
            serde_json::from_str(&self.0.body).map_err(|e| TopologyError::Malformed {
                what: "topology",
                reason: e.to_string(),
            })?;
        topology.check_shape()?;
        Ok(topology)
    }

    /// The envelope as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Reads an envelope from JSON text (not yet verified).
    pub fn from_json(text: &str) -> Result<Self, TopologyError> {
        serde_json::from_str(text).map_err(|e| TopologyError::Malformed {
            what: "topology envelope",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protocol::SphinxKeyPair;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// A topology of `per_layer` mixes per layer and `gateways` gateways, with
    /// scores and regions set by the caller afterwards if needed.
    pub(crate) fn sample(rng: &mut ChaCha20Rng, per_layer: usize, gateways: usize) -> Topology {
        let mut port = 1000u16;
        let mut entry = |rng: &mut ChaCha20Rng| {
            port += 1;
            NodeEntry {
                id: IdentityKeyPair::generate(rng).node_id(),
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                client_address: None,
                sphinx_key: SphinxKeyPair::generate(rng).public(),
                region: None,
                score: 1.0,
            }
        };
        let layers = (0..MIX_LAYERS)
            .map(|_| (0..per_layer).map(|_| entry(rng)).collect())
            .collect();
        let gateways = (0..gateways).map(|_| entry(rng)).collect();
        Topology {
            epoch: Epoch(4),
            serial: 0,
            params: NetworkParams::default(),
            layers,
            gateways,
        }
    }

    #[test]
    fn lookups_follow_the_route_order() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let t = sample(&mut rng, 2, 2);
        let l1 = t.layers[0][1].id;
        let l3 = t.layers[2][0].id;
        let gw = t.gateways[0].id;
        assert_eq!(t.layer_of(&l1), Some(0));
        assert_eq!(t.layer_of(&l3), Some(2));
        assert_eq!(t.layer_of(&gw), None);
        assert_eq!(t.next_layer(&l1), Some(t.layers[1].as_slice()));
        assert_eq!(t.next_layer(&l3), Some(t.gateways.as_slice()));
        assert_eq!(t.next_layer(&gw), Some(t.layers[0].as_slice()));
        assert_eq!(t.hop(&gw), Some(t.gateways[0].hop()));
        let stranger = IdentityKeyPair::generate(&mut rng).node_id();
        assert_eq!(t.hop(&stranger), None);
        assert_eq!(t.next_layer(&stranger), None);
        assert_eq!(t.all_peer_ids().len(), 8);
    }

    proptest::proptest! {
        #[test]
        fn hostile_bytes_never_panic_the_readers(body: String, signature: String, raw: String) {
            let pinned = NodeId([9; 32]);
            let envelope = SignedEnvelope { body: body.clone(), signature };
            proptest::prop_assert!(SignedTopology(envelope.clone()).verify(&pinned).is_err());
            proptest::prop_assert!(crate::SignedDescriptor(envelope).verify().is_err());
            let _ = SignedTopology::from_json(&raw).map(|s| s.verify(&pinned));
            let _ = crate::SignedDescriptor::from_json(&raw).map(|s| s.verify());
        }
    }

    #[test]
    fn signed_topology_verifies_only_under_the_pinned_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let t = sample(&mut rng, 2, 1);
        let dir = IdentityKeyPair::generate(&mut rng);
        let other = IdentityKeyPair::generate(&mut rng);
        let signed = t.sign(&dir).unwrap();
        let parsed = SignedTopology::from_json(&signed.to_json()).unwrap();
        assert_eq!(parsed.verify(&dir.node_id()).unwrap(), t);
        let bad = Err(TopologyError::BadSignature { what: "topology" });
        assert_eq!(parsed.verify(&other.node_id()), bad);
        let mut tampered = parsed;
        tampered.0.body = tampered.0.body.replacen("127.0.0.1", "10.0.0.1", 1);
        assert_eq!(tampered.verify(&dir.node_id()), bad);
        // Well signed but with two layers: refused for its shape.
        let mut short = t;
        short.layers.pop();
        assert!(matches!(
            short.sign(&dir).unwrap().verify(&dir.node_id()),
            Err(TopologyError::Malformed { .. })
        ));
    }
}
