//! The set of pinned peers, replaced at run time when the topology changes.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::identity::PeerId;

/// The peers this node may link with, shared by every TLS verifier of an
/// endpoint. Cloning gives another handle to the same set.
///
/// Reads are lock-free ([`ArcSwap`]); a replacement is seen by every
/// handshake that starts after it.
#[derive(Clone, Debug, Default)]
pub struct PeerSet {
    inner: Arc<ArcSwap<HashSet<PeerId>>>,
}

impl PeerSet {
    /// A set holding `peers`.
    pub fn new(peers: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            inner: Arc::new(ArcSwap::from_pointee(peers.into_iter().collect())),
        }
    }

    /// Whether `peer` is pinned now.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.inner.load().contains(peer)
    }

    /// Replaces the whole set (e.g. with the peers of a new epoch's topology).
    pub fn replace(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.inner.store(Arc::new(peers.into_iter().collect()));
    }

    /// Adds one peer.
    pub fn insert(&self, peer: PeerId) {
        self.inner.rcu(|set| {
            let mut next = HashSet::clone(set);
            next.insert(peer);
            next
        });
    }

    /// Removes one peer.
    pub fn remove(&self, peer: &PeerId) {
        self.inner.rcu(|set| {
            let mut next = HashSet::clone(set);
            next.remove(peer);
            next
        });
    }

    /// The number of pinned peers.
    pub fn len(&self) -> usize {
        self.inner.load().len()
    }

    /// Whether no peer is pinned.
    pub fn is_empty(&self) -> bool {
        self.inner.load().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_insert_remove() {
        let a = PeerId([1; 32]);
        let b = PeerId([2; 32]);
        let set = PeerSet::new([a]);
        let other_handle = set.clone();
        assert!(set.contains(&a) && !set.contains(&b));
        other_handle.replace([b]);
        assert!(!set.contains(&a) && set.contains(&b));
        set.insert(a);
        assert_eq!(other_handle.len(), 2);
        set.remove(&b);
        assert!(set.contains(&a) && !set.contains(&b));
        set.remove(&a);
        assert!(set.is_empty());
    }
}
