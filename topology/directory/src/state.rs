//! The directory's state: the registry, the published documents and the store.
//!
//! Topologies are built lazily: the first request for the current (or next)
//! epoch builds and signs its document, and later requests rebuild it only if
//! the registry changed what it would contain. A change yields a new revision
//! (`serial` + 1) of the same epoch, built from the previous revision so that
//! nodes keep their layers. Past epochs are served as published, never
//! rebuilt. A registry generation counter spares the rebuild when nothing
//! changed since the last check, so a stream of reads costs a lookup each.
//! Every registration and every new revision is written to the store
//! before it is acknowledged or served.
//!
//! That is the case of a directory that is the network's only authority.
//! One of several authorities ([`DirectoryState::votes`]) never builds a
//! topology alone: it serves only the consensus documents the voting rounds
//! completed ([`DirectoryState::publish`]), and gives the rounds its view of
//! the nodes ([`DirectoryState::vote_material`]).

use std::collections::BTreeMap;

use audit::{AuditEvent, SharedAuditLog};
use protocol::{Epoch, IdentityKeyPair};
use thiserror::Error;

use crate::registry::{Registry, layer_ids};
use crate::store::{DirectoryStore, KEEP_EPOCHS, StoreError};
use protocol::NodeId;
use topology::authority::AuthoritySet;
use topology::descriptor::SignedDescriptor;
use topology::document::{SignedTopology, Topology};
use topology::error::TopologyError;
use topology::params::NetworkParams;
use topology::vote::VotedNode;

/// Why a registration failed.
#[derive(Debug, Error)]
pub enum RegisterError {
    /// The descriptor was refused (bad signature, stale, malformed, directory full).
    #[error(transparent)]
    Refused(#[from] TopologyError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the directory knows, behind one lock.
pub struct DirectoryState {
    registry: Registry,
    store: DirectoryStore,
    key: IdentityKeyPair,
    params: NetworkParams,
    published: BTreeMap<Epoch, (Topology, SignedTopology)>,
    /// Bumped whenever the registry changes.
    generation: u64,
    /// The generation each current document was last checked against.
    checked: BTreeMap<Epoch, u64>,
    /// The authorities whose signatures make a document valid.
    set: AuthoritySet,
    /// Whether documents come from voting rounds (several authorities).
    voting: bool,
    /// Where each document this directory signs alone is recorded.
    audit: Option<SharedAuditLog>,
}

impl DirectoryState {
    /// Loads the state from `store` into `registry` (empty, configured),
    /// keeping only what still verifies.
    ///
    /// `set` is the authorities whose signatures make a document valid
    /// ([`AuthoritySet::single`] of `key` for a directory alone); `voting`
    /// says whether documents come from voting rounds.
    pub fn load(
        store: DirectoryStore,
        key: IdentityKeyPair,
        params: NetworkParams,
        mut registry: Registry,
        set: AuthoritySet,
        voting: bool,
    ) -> Result<Self, StoreError> {
        for (signed, last_seen) in store.registrations()? {
            if let Err(e) = registry.restore(signed, last_seen) {
                tracing::warn!("stored descriptor skipped: {e}");
            }
        }
        let mut published = BTreeMap::new();
        for (epoch, signed) in store.topologies()? {
            match signed.verify(&set) {
                Ok(topology) if topology.epoch == epoch => {
                    published.insert(epoch, (topology, signed));
                }
                Ok(_) => tracing::warn!("stored topology of epoch {epoch} skipped: epoch mismatch"),
                Err(e) => tracing::warn!("stored topology of epoch {epoch} skipped: {e}"),
            }
        }
        Ok(DirectoryState {
            registry,
            store,
            key,
            params,
            published,
            generation: 0,
            checked: BTreeMap::new(),
            set,
            voting,
            audit: None,
        })
    }

    /// Records each document this directory signs alone in `audit`.
    pub fn with_audit(mut self, audit: Option<SharedAuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Whether this directory is one of several authorities that vote.
    pub fn votes(&self) -> bool {
        self.voting
    }

    /// What this authority votes for `epoch`: the nodes it would list, and
    /// the mix layers of the latest document it holds.
    pub fn vote_material(
        &mut self,
        epoch: Epoch,
        now: Epoch,
    ) -> (Vec<VotedNode>, Vec<Vec<NodeId>>) {
        let gone = self.registry.forget_absent(now);
        if !gone.is_empty()
            && let Err(e) = self.store.remove_registrations(&gone)
        {
            tracing::warn!("{e}");
        }
        let previous = self
            .published
            .values()
            .next_back()
            .map(|(t, _)| layer_ids(t))
            .unwrap_or_default();
        (self.registry.entries(epoch), previous)
    }

    /// The latest document held: its epoch and revision.
    pub fn latest(&self) -> Option<(Epoch, u64)> {
        self.published
            .values()
            .next_back()
            .map(|(t, _)| (t.epoch, t.serial))
    }

    /// Publishes a consensus that verifies under the authority set, unless a
    /// later revision of its epoch is held; a document of the same revision
    /// replaces the held one only with more signatures. Returns whether it
    /// was published.
    pub fn publish(&mut self, signed: SignedTopology) -> Result<bool, StoreError> {
        let Ok(topology) = signed.verify(&self.set) else {
            return Ok(false);
        };
        if let Some((held, held_signed)) = self.published.get(&topology.epoch) {
            let more =
                held_signed.valid_signers(&self.set).len() < signed.valid_signers(&self.set).len();
            if held.serial > topology.serial || (held.serial == topology.serial && !more) {
                return Ok(false);
            }
        }
        self.store.put_topology(topology.epoch, &signed)?;
        let epoch = topology.epoch;
        self.published.insert(epoch, (topology, signed));
        let horizon = Epoch(epoch.0.saturating_sub(KEEP_EPOCHS));
        self.published.retain(|e, _| *e >= horizon);
        Ok(true)
    }

    /// Number of registered nodes.
    pub fn node_count(&self) -> usize {
        self.registry.len()
    }

    /// Verifies, records and stores a descriptor received during epoch `now`.
    pub fn register(&mut self, signed: SignedDescriptor, now: Epoch) -> Result<(), RegisterError> {
        let registration = self.registry.accept(signed, now)?;
        self.store.put_registration(registration)?;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// The signed topology of `epoch`, as of epoch `now`.
    ///
    /// `None` for an epoch more than one ahead of `now`, or a past epoch that
    /// was never published (or is older than the store keeps).
    pub fn topology(
        &mut self,
        epoch: Epoch,
        now: Epoch,
    ) -> Result<Option<SignedTopology>, StoreError> {
        if epoch > now.next() {
            return Ok(None);
        }
        if epoch < now || self.voting {
            return Ok(self.published.get(&epoch).map(|(_, s)| s.clone()));
        }
        let gone = self.registry.forget_absent(now);
        if !gone.is_empty() {
            self.store.remove_registrations(&gone)?;
            self.generation = self.generation.wrapping_add(1);
        }
        if self.checked.get(&epoch) == Some(&self.generation)
            && let Some((_, signed)) = self.published.get(&epoch)
        {
            return Ok(Some(signed.clone()));
        }
        let existing = self.published.get(&epoch);
        let previous =
            existing.or_else(|| self.published.range(..epoch).next_back().map(|(_, v)| v));
        let serial = existing.map_or(0, |(t, _)| t.serial);
        let candidate = self
            .registry
            .build(epoch, serial, &self.params, previous.map(|(t, _)| t));
        if let Some((topology, signed)) = existing
            && *topology == candidate
        {
            let signed = signed.clone();
            self.checked.insert(epoch, self.generation);
            return Ok(Some(signed));
        }
        let candidate = Topology {
            serial: if existing.is_some() {
                serial.saturating_add(1)
            } else {
                0
            },
            ..candidate
        };
        let signed = candidate
            .sign(&self.key)
            .map_err(|e| StoreError::from_message(format!("cannot sign topology: {e}")))?;
        self.store.put_topology(epoch, &signed)?;
        if let Some(audit) = &self.audit {
            crate::server::record(
                audit,
                &AuditEvent::ConsensusSigned {
                    epoch: epoch.0,
                    revision: candidate.serial,
                },
            );
        }
        tracing::info!(
            "published topology of epoch {epoch} revision {}: {} mixes, {} gateways",
            candidate.serial,
            candidate.layers.iter().map(Vec::len).sum::<usize>(),
            candidate.gateways.len()
        );
        self.published.insert(epoch, (candidate, signed.clone()));
        self.checked.insert(epoch, self.generation);
        self.checked.retain(|e, _| *e >= now);
        let horizon = Epoch(epoch.0.saturating_sub(KEEP_EPOCHS));
        self.published.retain(|e, _| *e >= horizon);
        Ok(Some(signed))
    }
}
