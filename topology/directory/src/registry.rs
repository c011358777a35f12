//! The directory's core: which nodes are registered, and the topology they make.
//!
//! Sans-IO like the rest of the crate's core: the caller passes the current
//! epoch. A node is listed in the topology of epoch `e` if its last descriptor
//! arrived no more than [`Registry::max_absent_epochs`] epochs before `e` and
//! announced a Sphinx key for `e`. Nodes re-register every epoch (when they
//! announce their next key), so a node that stops doing so drops out.
//!
//! Descriptors are refused unless they carry a key for the current or the next
//! epoch: a replayed old descriptor cannot bring a dead node back. A
//! descriptor older (by `issued_at`) than the one held is refused too. The
//! number of nodes is capped, so the registry cannot be grown without bound;
//! an operator who knows its nodes can also admit only those (an allow list),
//! which keeps strangers from filling it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use protocol::{Epoch, NodeId};

use topology::descriptor::{NodeDescriptor, Role, SignedDescriptor};
use topology::document::{NodeEntry, Topology};
use topology::error::TopologyError;
use topology::layers::{MIX_LAYERS, assign_layers};
use topology::params::NetworkParams;
use topology::vote::VotedNode;

/// A registered node: its signed descriptor and when it was last heard from.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The descriptor as the node signed it (what the store keeps).
    pub signed: SignedDescriptor,
    /// The verified content.
    pub descriptor: NodeDescriptor,
    /// Epoch in which its latest descriptor arrived.
    pub last_seen: Epoch,
}

/// The registered nodes.
#[derive(Clone, Debug)]
pub struct Registry {
    nodes: BTreeMap<NodeId, Registration>,
    max_nodes: usize,
    max_absent_epochs: u64,
    allowed: Option<BTreeSet<NodeId>>,
}

impl Registry {
    /// An empty registry that holds at most `max_nodes` and lists nodes
    /// absent for at most `max_absent_epochs`.
    pub fn new(max_nodes: usize, max_absent_epochs: u64) -> Self {
        Registry {
            nodes: BTreeMap::new(),
            max_nodes,
            max_absent_epochs,
            allowed: None,
        }
    }

    /// Admits only the nodes in `ids` (an empty list admits everyone).
    pub fn with_allow_list(mut self, ids: impl IntoIterator<Item = NodeId>) -> Self {
        let ids: BTreeSet<NodeId> = ids.into_iter().collect();
        self.allowed = (!ids.is_empty()).then_some(ids);
        self
    }

    fn admits(&self, id: &NodeId) -> bool {
        self.allowed.as_ref().is_none_or(|ids| ids.contains(id))
    }

    /// How many epochs a node may stay silent and still be listed.
    pub fn max_absent_epochs(&self) -> u64 {
        self.max_absent_epochs
    }

    /// Verifies and records a descriptor received during epoch `now`.
    pub fn accept(
        &mut self,
        signed: SignedDescriptor,
        now: Epoch,
    ) -> Result<&Registration, TopologyError> {
        let descriptor = signed.verify()?;
        if !self.admits(&descriptor.id) {
            return Err(TopologyError::NotAllowed(descriptor.id));
        }
        if descriptor.sphinx_key(now).is_none() && descriptor.sphinx_key(now.next()).is_none() {
            return Err(TopologyError::Refused(format!(
                "no Sphinx key for the current epoch {now} or the next"
            )));
        }
        if let Some(held) = self.nodes.get(&descriptor.id)
            && held.descriptor.issued_at > descriptor.issued_at
        {
            return Err(TopologyError::Refused(
                "older than the descriptor already held".into(),
            ));
        }
        if !self.nodes.contains_key(&descriptor.id) && self.nodes.len() >= self.max_nodes {
            self.forget_absent(now);
            if self.nodes.len() >= self.max_nodes {
                return Err(TopologyError::Refused(format!(
                    "the directory is full ({} nodes)",
                    self.max_nodes
                )));
            }
        }
        let id = descriptor.id;
        let registration = Registration {
            signed,
            descriptor,
            last_seen: now,
        };
        Ok(match self.nodes.entry(id) {
            Entry::Occupied(mut slot) => {
                slot.insert(registration);
                slot.into_mut()
            }
            Entry::Vacant(slot) => slot.insert(registration),
        })
    }

    /// Puts back a registration read from the store, verifying it again.
    pub fn restore(
        &mut self,
        signed: SignedDescriptor,
        last_seen: Epoch,
    ) -> Result<(), TopologyError> {
        let descriptor = signed.verify()?;
        if !self.admits(&descriptor.id) {
            return Err(TopologyError::NotAllowed(descriptor.id));
        }
        if self.nodes.len() >= self.max_nodes && !self.nodes.contains_key(&descriptor.id) {
            return Err(TopologyError::Refused("the directory is full".into()));
        }
        self.nodes.insert(
            descriptor.id,
            Registration {
                signed,
                descriptor,
                last_seen,
            },
        );
        Ok(())
    }

    /// Drops nodes silent for more than the allowed epochs; returns their ids.
    pub fn forget_absent(&mut self, now: Epoch) -> Vec<NodeId> {
        let limit = self.max_absent_epochs;
        let gone: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|r| now.0.saturating_sub(r.last_seen.0) > limit)
            .map(|r| r.descriptor.id)
            .collect();
        for id in &gone {
            self.nodes.remove(id);
        }
        gone
    }

    /// The registration of node `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Registration> {
        self.nodes.get(id)
    }

    /// Number of registered nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes this registry lists in `epoch`, sorted by id, as this
    /// authority votes for them.
    ///
    /// A node's score is 1 if it registered in `epoch` (or later), and halves
    /// for each epoch it has been silent since.
    pub fn entries(&self, epoch: Epoch) -> Vec<VotedNode> {
        self.nodes
            .values()
            .filter_map(|r| {
                let absent = epoch.0.saturating_sub(r.last_seen.0);
                if absent > self.max_absent_epochs {
                    return None;
                }
                let sphinx_key = r.descriptor.sphinx_key(epoch)?;
                let exponent = i32::try_from(absent).unwrap_or(i32::MAX);
                Some(VotedNode {
                    role: r.descriptor.role,
                    entry: NodeEntry {
                        id: r.descriptor.id,
                        address: r.descriptor.address,
                        client_address: r.descriptor.client_address,
                        sphinx_key,
                        region: r.descriptor.region.clone(),
                        score: 0.5f64.powi(exponent).max(f64::MIN_POSITIVE),
                    },
                })
            })
            .collect()
    }

    /// The topology of `epoch`, keeping nodes in their layers of `previous`
    /// (what one authority publishes alone).
    pub fn build(
        &self,
        epoch: Epoch,
        serial: u64,
        params: &NetworkParams,
        previous: Option<&Topology>,
    ) -> Topology {
        let entries = self.entries(epoch);
        let listed = |role: Role| {
            entries
                .iter()
                .filter(move |n| n.role == role)
                .map(|n| n.entry.clone())
        };
        let mixes: BTreeMap<NodeId, NodeEntry> = listed(Role::Mix).map(|e| (e.id, e)).collect();
        let ids: Vec<NodeId> = mixes.keys().copied().collect();
        let before: Vec<Vec<NodeId>> = previous.map(layer_ids).unwrap_or_default();
        let region_of = |id: &NodeId| mixes.get(id).and_then(|e| e.region.as_deref());
        let layers = assign_layers(&ids, &before, epoch, region_of)
            .into_iter()
            .map(|layer| {
                layer
                    .iter()
                    .filter_map(|id| mixes.get(id).cloned())
                    .collect()
            })
            .collect::<Vec<Vec<NodeEntry>>>();
        debug_assert_eq!(layers.len(), MIX_LAYERS);
        Topology {
            epoch,
            serial,
            params: params.clone(),
            layers,
            gateways: listed(Role::Gateway).collect(),
            authorities: None,
        }
    }
}

/// The ids of a topology's mix layers.
pub fn layer_ids(topology: &Topology) -> Vec<Vec<NodeId>> {
    topology
        .layers
        .iter()
        .map(|l| l.iter().map(|e| e.id).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{IdentityKeyPair, SphinxKeyPair};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::net::SocketAddr;
    use topology::descriptor::EpochKey;

    fn node(
        rng: &mut ChaCha20Rng,
        role: Role,
        epochs: &[u64],
        issued_at: u64,
    ) -> (IdentityKeyPair, SignedDescriptor) {
        let id = IdentityKeyPair::generate(rng);
        let signed = descriptor_of(rng, &id, role, epochs, issued_at);
        (id, signed)
    }

    fn descriptor_of(
        rng: &mut ChaCha20Rng,
        id: &IdentityKeyPair,
        role: Role,
        epochs: &[u64],
        issued_at: u64,
    ) -> SignedDescriptor {
        NodeDescriptor {
            id: id.node_id(),
            role,
            address: "127.0.0.1:9000".parse().unwrap(),
            client_address: None,
            sphinx_keys: epochs
                .iter()
                .map(|&e| EpochKey {
                    epoch: Epoch(e),
                    key: SphinxKeyPair::generate(rng).public(),
                })
                .collect(),
            region: None,
            metrics_url: None,
            issued_at,
        }
        .sign(id)
        .unwrap()
    }

    #[test]
    fn builds_three_balanced_layers_and_gateways() {
        let mut rng = ChaCha20Rng::seed_from_u64(31);
        let mut reg = Registry::new(100, 2);
        for _ in 0..6 {
            reg.accept(node(&mut rng, Role::Mix, &[10, 11], 1).1, Epoch(10))
                .unwrap();
        }
        for _ in 0..2 {
            reg.accept(node(&mut rng, Role::Gateway, &[10, 11], 1).1, Epoch(10))
                .unwrap();
        }
        let t = reg.build(Epoch(10), 0, &NetworkParams::default(), None);
        t.check_shape().unwrap();
        assert_eq!(
            t.layers.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        assert_eq!(t.gateways.len(), 2);
        // The next epoch keeps everyone in place and uses the next keys.
        let next = reg.build(Epoch(11), 0, &NetworkParams::default(), Some(&t));
        for (a, b) in t.layers.iter().zip(&next.layers) {
            assert_eq!(
                a.iter().map(|e| e.id).collect::<Vec<_>>(),
                b.iter().map(|e| e.id).collect::<Vec<_>>()
            );
        }
        let id = t.layers[0][0].id;
        assert_eq!(
            next.entry(&id).unwrap().sphinx_key,
            reg.get(&id)
                .unwrap()
                .descriptor
                .sphinx_key(Epoch(11))
                .unwrap()
        );
        assert_eq!(
            next.entry(&id).unwrap().score,
            0.5,
            "one epoch silent halves the score"
        );
    }

    #[test]
    fn a_gateway_client_address_reaches_the_topology() {
        let mut rng = ChaCha20Rng::seed_from_u64(33);
        let mut reg = Registry::new(100, 2);
        let id = IdentityKeyPair::generate(&mut rng);
        let client: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        let signed = NodeDescriptor {
            id: id.node_id(),
            role: Role::Gateway,
            address: "127.0.0.1:9000".parse().unwrap(),
            client_address: Some(client),
            sphinx_keys: vec![EpochKey {
                epoch: Epoch(10),
                key: SphinxKeyPair::generate(&mut rng).public(),
            }],
            region: None,
            metrics_url: None,
            issued_at: 1,
        }
        .sign(&id)
        .unwrap();
        reg.accept(signed, Epoch(10)).unwrap();
        let (_, mix) = node(&mut rng, Role::Mix, &[10], 1);
        reg.accept(mix, Epoch(10)).unwrap();
        let t = reg.build(Epoch(10), 0, &NetworkParams::default(), None);
        assert_eq!(t.gateways[0].client_address, Some(client));
        assert!(
            t.layers
                .iter()
                .flatten()
                .all(|e| e.client_address.is_none())
        );
        // Absent, the field is not serialised: older documents read the same.
        let json = serde_json::to_string(&t.layers).unwrap();
        assert!(!json.contains("client_address"), "{json}");
    }

    #[test]
    fn stale_replayed_older_and_excess_descriptors_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(32);
        let mut reg = Registry::new(2, 2);
        let (_, old) = node(&mut rng, Role::Mix, &[3, 4], 1);
        assert!(matches!(
            reg.accept(old, Epoch(10)),
            Err(TopologyError::Refused(_))
        ));
        let (id, newer) = node(&mut rng, Role::Mix, &[10, 11], 5);
        reg.accept(newer, Epoch(10)).unwrap();
        let older = descriptor_of(&mut rng, &id, Role::Mix, &[10, 11], 4);
        assert!(matches!(
            reg.accept(older, Epoch(10)),
            Err(TopologyError::Refused(_))
        ));
        reg.accept(node(&mut rng, Role::Mix, &[10], 1).1, Epoch(10))
            .unwrap();
        assert!(matches!(
            reg.accept(node(&mut rng, Role::Mix, &[10], 1).1, Epoch(10)),
            Err(TopologyError::Refused(_))
        ));
        // Once the others have been absent too long there is room again.
        assert!(
            reg.accept(node(&mut rng, Role::Mix, &[13], 1).1, Epoch(13))
                .is_ok()
        );
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn an_allow_list_admits_only_its_nodes() {
        let mut rng = ChaCha20Rng::seed_from_u64(34);
        let (id, known) = node(&mut rng, Role::Mix, &[1], 1);
        let (_, stranger) = node(&mut rng, Role::Mix, &[1], 1);
        let mut reg = Registry::new(10, 2).with_allow_list([id.node_id()]);
        reg.accept(known.clone(), Epoch(1)).unwrap();
        assert!(matches!(
            reg.accept(stranger.clone(), Epoch(1)),
            Err(TopologyError::NotAllowed(_))
        ));
        assert!(reg.restore(stranger.clone(), Epoch(1)).is_err());
        let mut open = Registry::new(10, 2).with_allow_list([]);
        open.accept(stranger, Epoch(1)).unwrap();
    }

    #[test]
    fn a_node_absent_for_more_than_two_epochs_drops_out() {
        let mut rng = ChaCha20Rng::seed_from_u64(33);
        let mut reg = Registry::new(10, 2);
        let (_, d) = node(&mut rng, Role::Gateway, &[1, 2, 3, 4], 1);
        reg.accept(d, Epoch(1)).unwrap();
        let params = NetworkParams::default();
        assert_eq!(reg.build(Epoch(3), 0, &params, None).gateways.len(), 1);
        assert_eq!(reg.build(Epoch(4), 0, &params, None).gateways.len(), 0);
        assert!(reg.forget_absent(Epoch(3)).is_empty());
        assert_eq!(reg.forget_absent(Epoch(4)).len(), 1);
        assert!(reg.is_empty());
    }
}
