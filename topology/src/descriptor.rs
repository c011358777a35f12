//! Node descriptors: what a node says about itself, signed with its identity.
//!
//! A descriptor names the node (its Ed25519 identity, which is also the key
//! its QUIC certificate is bound to, so the id *is* the certificate pin), its
//! role, where to reach it, and its Sphinx public keys by epoch. A node
//! announces its next epoch's key one epoch ahead, so a descriptor normally
//! holds two keys: the current and the next. The directory lists only nodes
//! whose descriptor verifies under the id it names: nobody can publish a
//! descriptor for a key they do not hold.

use std::net::SocketAddr;

use protocol::{Epoch, IdentityKeyPair, NodeId};
use serde::{Deserialize, Serialize};
use x25519_dalek::PublicKey;

use crate::envelope::{DESCRIPTOR_DOMAIN, SignedEnvelope};
use crate::error::TopologyError;

/// Most Sphinx keys one descriptor may carry.
pub const MAX_SPHINX_KEYS: usize = 4;
/// Longest region label, in bytes.
pub const MAX_REGION_LEN: usize = 64;
/// Longest metrics URL, in bytes.
pub const MAX_METRICS_URL_LEN: usize = 256;
/// Largest signed descriptor accepted, in bytes of JSON.
pub const MAX_DESCRIPTOR_BYTES: usize = 8 * 1024;

/// What a node does in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A mix node, placed in one of the three mix layers.
    Mix,
    /// A gateway: clients' entry point and the last hop of every route.
    Gateway,
}

/// A node's Sphinx public key for one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochKey {
    /// The epoch this key unwraps packets for.
    pub epoch: Epoch,
    /// The X25519 public key.
    #[serde(with = "crate::serde_keys::sphinx_key")]
    pub key: PublicKey,
}

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDescriptor {
    /// The node's identity (Ed25519 public key; also its QUIC certificate pin).
    #[serde(with = "crate::serde_keys::node_id")]
    pub id: NodeId,
    /// Mix or gateway.
    pub role: Role,
    /// Where its QUIC endpoint listens.
    pub address: SocketAddr,
    /// For a gateway: where clients connect (its client QUIC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<SocketAddr>,
    /// Sphinx public keys by epoch: normally the current and the next.
    pub sphinx_keys: Vec<EpochKey>,
    /// Optional jurisdiction label (e.g. `"eu"`), for data residency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Optional URL of the node's Prometheus `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// When the node issued this descriptor (unix seconds); newer replaces older.
    pub issued_at: u64,
}

impl NodeDescriptor {
    /// The Sphinx key announced for `epoch`, if any.
    pub fn sphinx_key(&self, epoch: Epoch) -> Option<PublicKey> {
        self.sphinx_keys
            .iter()
            .find(|k| k.epoch == epoch)
            .map(|k| k.key)
    }

    /// Refuses descriptors with too many keys, duplicate epochs or oversized labels.
    pub fn check_shape(&self) -> Result<(), TopologyError> {
        let refuse = |m: String| Err(TopologyError::Refused(m));
        if self.sphinx_keys.is_empty() || self.sphinx_keys.len() > MAX_SPHINX_KEYS {
            return refuse(format!(
                "1 to {MAX_SPHINX_KEYS} Sphinx keys, not {}",
                self.sphinx_keys.len()
            ));
        }
        for (i, k) in self.sphinx_keys.iter().enumerate() {
            if self
                .sphinx_keys
                .iter()
                .skip(i + 1)
                .any(|o| o.epoch == k.epoch)
            {
                return refuse(format!("two Sphinx keys for epoch {}", k.epoch));
            }
        }
        if let Some(region) = &self.region
            && (region.is_empty()
                || region.len() > MAX_REGION_LEN
                || !region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return refuse(format!("region is 1 to {MAX_REGION_LEN} of [A-Za-z0-9_-]"));
        }
        if let Some(url) = &self.metrics_url
            && (url.len() > MAX_METRICS_URL_LEN || !url.starts_with("http"))
        {
            return refuse(format!(
                "metrics_url is an http(s) URL of at most {MAX_METRICS_URL_LEN} bytes"
            ));
        }
        Ok(())
    }

    /// Signs this descriptor with the node's identity.
    ///
    /// Refuses to sign a descriptor that names another node.
    pub fn sign(&self, identity: &IdentityKeyPair) -> Result<SignedDescriptor, TopologyError> {
        if identity.node_id() != self.id {
            return Err(TopologyError::WrongSigner {
                named: self.id,
                signer: identity.node_id(),
            });
        }
        let body = serde_json::to_string(self).map_err(|e| TopologyError::Malformed {
            what: "descriptor",
            reason: e.to_string(),
        })?;
        Ok(SignedDescriptor(SignedEnvelope::seal(
            DESCRIPTOR_DOMAIN,
            body,
            identity,
        )))
    }
}

/// A descriptor in its signed envelope, as posted to the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignedDescriptor(pub SignedEnvelope);

impl SignedDescriptor {
    /// Parses the envelope and checks that the node it names signed it.
    pub fn verify(&self) -> Result<NodeDescriptor, TopologyError> {
        if self.0.body.len() > MAX_DESCRIPTOR_BYTES {
            return Err(TopologyError::Malformed {
                what: "descriptor",
                reason: format!("larger than {MAX_DESCRIPTOR_BYTES} bytes"),
            });
        }
        let descriptor: NodeDescriptor =
            serde_json::from_str(&self.0.body).map_err(|e| TopologyError::Malformed {
                what: "descriptor",
                reason: e.to_string(),
            })?;
        self.0
            .check(DESCRIPTOR_DOMAIN, &descriptor.id, "descriptor")?;
        descriptor.check_shape()?;
        Ok(descriptor)
    }

    /// The envelope as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Reads an envelope from JSON text (not yet verified).
    pub fn from_json(text: &str) -> Result<Self, TopologyError> {
        serde_json::from_str(text).map_err(|e| TopologyError::Malformed {
            what: "descriptor envelope",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::SphinxKeyPair;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn descriptor(rng: &mut ChaCha20Rng) -> (IdentityKeyPair, NodeDescriptor) {
        let id = IdentityKeyPair::generate(rng);
        let d = NodeDescriptor {
            id: id.node_id(),
            role: Role::Mix,
            address: "127.0.0.1:4000".parse().unwrap(),
            client_address: None,
            sphinx_keys: vec![
                EpochKey {
                    epoch: Epoch(5),
                    key: SphinxKeyPair::generate(rng).public(),
                },
                EpochKey {
                    epoch: Epoch(6),
                    key: SphinxKeyPair::generate(rng).public(),
                },
            ],
            region: Some("eu".into()),
            metrics_url: None,
            issued_at: 1_700_000_000,
        };
        (id, d)
    }

    #[test]
    fn signed_descriptor_round_trips_and_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (id, d) = descriptor(&mut rng);
        let signed = d.sign(&id).unwrap();
        let again = SignedDescriptor::from_json(&signed.to_json()).unwrap();
        assert_eq!(again.verify().unwrap(), d);
        assert_eq!(d.sphinx_key(Epoch(6)), Some(d.sphinx_keys[1].key));
        assert_eq!(d.sphinx_key(Epoch(7)), None);
        assert!(signed.0.body.contains(&id.node_id().to_base58()));
    }

    #[test]
    fn descriptor_for_another_node_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (id, d) = descriptor(&mut rng);
        let (other, _) = descriptor(&mut rng);
        assert!(matches!(
            d.sign(&other),
            Err(TopologyError::WrongSigner { .. })
        ));
        // A body that names node A, signed by node B: the id does not match the signer.
        let body = serde_json::to_string(&d).unwrap();
        let forged = SignedDescriptor(SignedEnvelope::seal(DESCRIPTOR_DOMAIN, body, &other));
        assert_eq!(
            forged.verify(),
            Err(TopologyError::BadSignature { what: "descriptor" })
        );
        // Changing the address after signing breaks the signature.
        let mut signed = d.sign(&id).unwrap();
        signed.0.body = signed.0.body.replace("4000", "4001");
        assert_eq!(
            signed.verify(),
            Err(TopologyError::BadSignature { what: "descriptor" })
        );
    }

    #[test]
    fn malformed_and_oversized_descriptors_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (id, mut d) = descriptor(&mut rng);
        d.region = Some("e u".into());
        assert!(matches!(
            d.sign(&id).unwrap().verify(),
            Err(TopologyError::Refused(_))
        ));
        d.region = None;
        d.sphinx_keys.push(d.sphinx_keys[0]);
        assert!(matches!(
            d.sign(&id).unwrap().verify(),
            Err(TopologyError::Refused(_))
        ));
        assert!(SignedDescriptor::from_json("{\"body\":1}").is_err());
        let junk = SignedDescriptor(SignedEnvelope {
            body: "not json".into(),
            signature: "00".into(),
        });
        assert!(matches!(
            junk.verify(),
            Err(TopologyError::Malformed { .. })
        ));
    }
}
