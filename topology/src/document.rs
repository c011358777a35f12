//! The topology document: who is in the network for one epoch, and where.
//!
//! One document per epoch (with a revision `serial` that grows when the
//! directory republishes the same epoch because nodes joined or left), signed
//! by the directory authorities: valid with `k` of the `n` pinned signatures
//! (see [`crate::authority`]), all over the same body bytes. Clients build routes from it; nodes read from it whom they
//! forward to and which QUIC peers to accept (every listed id is a certificate
//! pin). It also carries the [`NetworkParams`], so all parties apply the same
//! delays and rates.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::SystemTime;

use protocol::packet::RouteHop;
use protocol::{Epoch, IdentityKeyPair, NodeId};
use serde::{Deserialize, Serialize};
use x25519_dalek::PublicKey;

use crate::authority::AuthoritySet;
use crate::envelope::{TOPOLOGY_DOMAIN, check_body, sign_body};
use crate::error::TopologyError;
use crate::layers::MIX_LAYERS;
use crate::params::NetworkParams;

/// Epochs a topology stays valid after its own epoch ends: the document of
/// epoch `e` expires when epoch `e + 1 + VALID_EPOCHS_AFTER` starts.
pub const VALID_EPOCHS_AFTER: u64 = 1;

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
    /// The authorities that sign the next topology, when they agreed on it
    /// (absent: the set the reader holds stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorities: Option<AuthoritySet>,
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

    /// When this document expires: the start of epoch
    /// `epoch + 1 + VALID_EPOCHS_AFTER`, from the signed `epoch` and
    /// `params` alone, so every reader computes the same instant.
    pub fn valid_until(&self) -> SystemTime {
        let mut end = self.epoch;
        for _ in 0..=VALID_EPOCHS_AFTER {
            end = end.next();
        }
        self.params.epoch_clock().epoch_start(end)
    }

    /// Whether this document has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.valid_until()
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
        if let Some(set) = &self.authorities {
            set.check_shape()?;
        }
        Ok(())
    }

    /// The document as the JSON text every authority signs.
    pub fn body(&self) -> Result<String, TopologyError> {
        serde_json::to_string(self).map_err(|e| TopologyError::Malformed {
            what: "topology",
            reason: e.to_string(),
        })
    }

    /// Signs this document with one authority's key (the one-authority case,
    /// or the first signature of a consensus).
    pub fn sign(&self, authority: &IdentityKeyPair) -> Result<SignedTopology, TopologyError> {
        let mut signed = SignedTopology::unsigned(self.body()?);
        signed.add_signature(AuthoritySignature::sign(&signed.body, authority));
        Ok(signed)
    }
}

/// Most signatures a topology envelope may carry.
pub const MAX_SIGNATURES: usize = 2 * crate::authority::MAX_AUTHORITIES;

/// One authority's signature over a topology body.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySignature {
    /// The signing authority's key.
    #[serde(with = "crate::serde_keys::node_id")]
    pub authority: NodeId,
    /// Ed25519 over `mixnet/topology/v1\0 ‖ body`, in hex.
    pub signature: String,
}

impl AuthoritySignature {
    /// `authority`'s signature over `body`.
    pub fn sign(body: &str, authority: &IdentityKeyPair) -> Self {
        AuthoritySignature {
            authority: authority.node_id(),
            signature: sign_body(TOPOLOGY_DOMAIN, body, authority),
        }
    }

    /// Checks this signature over `body`.
    pub fn check(&self, body: &str) -> Result<(), TopologyError> {
        check_body(
            TOPOLOGY_DOMAIN,
            body,
            &self.authority,
            &self.signature,
            "topology",
        )
    }
}

/// A topology and its authorities' signatures, as served and cached:
/// `{ "body": "<json>", "signatures": [{ "authority", "signature" }] }`.
///
/// The body is the same bytes at every authority and every reader; only the
/// list of signatures may differ (one authority may hold more than another).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTopology {
    /// The topology, JSON text, exactly as signed.
    pub body: String,
    /// Signatures of authorities over `body`.
    pub signatures: Vec<AuthoritySignature>,
}

impl SignedTopology {
    /// A body with no signature yet.
    pub fn unsigned(body: String) -> Self {
        SignedTopology {
            body,
            signatures: Vec::new(),
        }
    }

    /// Adds a signature, replacing an earlier one of the same authority;
    /// the list stays sorted by authority, so equal sets serialise equally.
    pub fn add_signature(&mut self, signature: AuthoritySignature) {
        self.signatures
            .retain(|s| s.authority != signature.authority);
        self.signatures.push(signature);
        self.signatures.sort();
    }

    /// The distinct authorities of `set` whose signature over the body holds.
    pub fn valid_signers(&self, set: &AuthoritySet) -> Vec<NodeId> {
        let mut signers: Vec<NodeId> = self
            .signatures
            .iter()
            .take(MAX_SIGNATURES)
            .filter(|s| set.contains(&s.authority) && s.check(&self.body).is_ok())
            .map(|s| s.authority)
            .collect();
        signers.sort();
        signers.dedup();
        signers
    }

    /// Checks that `set.threshold` pinned authorities signed the body, then parses it.
    pub fn verify(&self, set: &AuthoritySet) -> Result<Topology, TopologyError> {
        if self.body.len() > MAX_TOPOLOGY_BYTES {
            return Err(TopologyError::Malformed {
                what: "topology",
                reason: format!("larger than {MAX_TOPOLOGY_BYTES} bytes"),
            });
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(TopologyError::Malformed {
                what: "topology",
                reason: format!("more than {MAX_SIGNATURES} signatures"),
            });
        }
        let valid = self.valid_signers(set).len();
        if valid < set.threshold {
            // One wrong signature and nothing else is what a forger or a
            // misconfigured pin looks like: report it as a bad signature.
            if valid == 0 && !self.signatures.is_empty() && set.threshold == 1 {
                return Err(TopologyError::BadSignature { what: "topology" });
            }
            return Err(TopologyError::TooFewSignatures {
                valid,
                needed: set.threshold,
            });
        }
        let topology: Topology =
            serde_json::from_str(&self.body).map_err(|e| TopologyError::Malformed {
                what: "topology",
                reason: e.to_string(),
            })?;
        topology.check_shape()?;
        Ok(topology)
    }

    /// The envelope as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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
            authorities: None,
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
            let pinned = AuthoritySet::single(NodeId([9; 32]), "");
            let envelope = crate::envelope::SignedEnvelope { body: body.clone(), signature: signature.clone() };
            let topology = SignedTopology {
                body: body.clone(),
                signatures: vec![AuthoritySignature { authority: NodeId([9; 32]), signature }],
            };
            proptest::prop_assert!(topology.verify(&pinned).is_err());
            proptest::prop_assert!(crate::SignedDescriptor(envelope).verify().is_err());
            let _ = SignedTopology::from_json(&raw).map(|s| s.verify(&pinned));
            let _ = crate::SignedDescriptor::from_json(&raw).map(|s| s.verify());
        }
    }

    #[test]
    fn a_topology_expires_one_epoch_after_its_own() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let mut t = sample(&mut rng, 1, 1);
        t.params.genesis_unix_secs = 1_000;
        t.params.epoch_length = Duration::from_secs(60);
        // Epoch 4 runs from 1 240 to 1 300; the next one to 1 360.
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(t.valid_until(), at(1_360));
        assert!(!t.is_expired(at(1_250)));
        assert!(!t.is_expired(at(1_359)));
        assert!(t.is_expired(at(1_360)));
        t.epoch = Epoch(5);
        assert_eq!(t.valid_until(), at(1_420));
    }

    #[test]
    fn signed_topology_verifies_only_under_the_pinned_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let t = sample(&mut rng, 2, 1);
        let dir = IdentityKeyPair::generate(&mut rng);
        let other = IdentityKeyPair::generate(&mut rng);
        let pin = |k: &IdentityKeyPair| AuthoritySet::single(k.node_id(), "");
        let signed = t.sign(&dir).unwrap();
        let parsed = SignedTopology::from_json(&signed.to_json()).unwrap();
        assert_eq!(parsed.verify(&pin(&dir)).unwrap(), t);
        let bad = Err(TopologyError::BadSignature { what: "topology" });
        assert_eq!(parsed.verify(&pin(&other)), bad);
        let mut tampered = parsed;
        tampered.body = tampered.body.replacen("127.0.0.1", "10.0.0.1", 1);
        assert_eq!(tampered.verify(&pin(&dir)), bad);
        // Well signed but with two layers: refused for its shape.
        let mut short = t;
        short.layers.pop();
        assert!(matches!(
            short.sign(&dir).unwrap().verify(&pin(&dir)),
            Err(TopologyError::Malformed { .. })
        ));
    }

    #[test]
    fn k_of_n_distinct_pinned_signatures_are_needed() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let t = sample(&mut rng, 1, 1);
        let keys: Vec<IdentityKeyPair> = (0..3)
            .map(|_| IdentityKeyPair::generate(&mut rng))
            .collect();
        let outsider = IdentityKeyPair::generate(&mut rng);
        let set = AuthoritySet::new(
            keys.iter()
                .map(|k| crate::Authority {
                    id: k.node_id(),
                    url: String::new(),
                })
                .collect(),
            None,
        )
        .unwrap();
        let mut signed = t.sign(&keys[0]).unwrap();
        let too_few = |valid| Err(TopologyError::TooFewSignatures { valid, needed: 2 });
        assert_eq!(signed.verify(&set), too_few(1));
        // The same signature twice, or an outsider's, does not count.
        signed.signatures.push(signed.signatures[0].clone());
        signed.add_signature(AuthoritySignature::sign(&signed.body, &outsider));
        assert_eq!(signed.verify(&set), too_few(1));
        // A signature over other bytes does not count either.
        signed.add_signature(AuthoritySignature::sign("{}", &keys[1]));
        assert_eq!(signed.verify(&set), too_few(1));
        signed.add_signature(AuthoritySignature::sign(&signed.body, &keys[1]));
        assert_eq!(signed.verify(&set).unwrap(), t);
        signed.add_signature(AuthoritySignature::sign(&signed.body, &keys[2]));
        assert_eq!(signed.valid_signers(&set).len(), 3);
        // An outsider alone signing a document of its own is refused.
        let own = t.sign(&outsider).unwrap();
        assert_eq!(
            own.verify(&set),
            Err(TopologyError::TooFewSignatures {
                valid: 0,
                needed: 2
            })
        );
    }
}
