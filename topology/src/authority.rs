//! Directory authorities: who may sign a topology, and how many must.
//!
//! A network has `n` directory authorities, each with its own Ed25519 key and
//! run by its own operator. Clients and nodes pin the set (keys and URLs) and
//! a threshold `k`: a topology is valid only with valid signatures of `k`
//! distinct authorities of the set. `k` must be more than half of `n`, so two
//! different documents for one epoch and revision can never both be valid
//! unless an honest authority signed both. One authority (`n = k = 1`) is the
//! small-network case.
//!
//! The set itself is published in every consensus (the set that signs the
//! next one), so an authority key can be added, replaced or retired by a
//! consensus signed under the old set: a client that accepts it holds the new
//! set from then on, and nobody re-pins by hand.

use std::collections::BTreeSet;

use protocol::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::TopologyError;

/// Most authorities a set may name.
pub const MAX_AUTHORITIES: usize = 32;
/// Longest authority URL, in bytes.
pub const MAX_AUTHORITY_URL_LEN: usize = 256;

/// One directory authority: its key and where it answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// The authority's Ed25519 public key (base58).
    #[serde(with = "crate::serde_keys::node_id")]
    pub id: NodeId,
    /// Base URL of its HTTP API, e.g. `http://127.0.0.1:8080`.
    pub url: String,
}

/// The pinned authorities and how many of them must sign a topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySet {
    /// The authorities, sorted by key.
    pub authorities: Vec<Authority>,
    /// Signatures a topology needs (`k`); more than half of the set.
    pub threshold: usize,
}

impl AuthoritySet {
    /// A set of `authorities` needing `threshold` signatures (default: a majority).
    ///
    /// Refuses an empty set, a repeated key, a threshold of half the set or
    /// less (two conflicting documents could then both be valid) or more than
    /// the set, and URLs longer than [`MAX_AUTHORITY_URL_LEN`].
    pub fn new(
        mut authorities: Vec<Authority>,
        threshold: Option<usize>,
    ) -> Result<Self, TopologyError> {
        authorities.sort();
        let n = authorities.len();
        let set = AuthoritySet {
            authorities,
            threshold: threshold.unwrap_or(n / 2 + 1),
        };
        set.check_shape()?;
        Ok(set)
    }

    /// The one-authority set (`n = k = 1`).
    pub fn single(id: NodeId, url: impl Into<String>) -> Self {
        AuthoritySet {
            authorities: vec![Authority {
                id,
                url: url.into(),
            }],
            threshold: 1,
        }
    }

    /// Refuses sets no client should pin (see [`AuthoritySet::new`]).
    pub fn check_shape(&self) -> Result<(), TopologyError> {
        let bad = |reason: String| {
            Err(TopologyError::Malformed {
                what: "authority set",
                reason,
            })
        };
        let n = self.authorities.len();
        if n == 0 || n > MAX_AUTHORITIES {
            return bad(format!("1 to {MAX_AUTHORITIES} authorities, not {n}"));
        }
        if self.threshold <= n / 2 || self.threshold > n {
            return bad(format!(
                "threshold {} of {n}: it must be more than half of the authorities and at most all",
                self.threshold
            ));
        }
        let ids: BTreeSet<NodeId> = self.authorities.iter().map(|a| a.id).collect();
        if ids.len() != n {
            return bad("an authority key is listed twice".into());
        }
        if let Some(a) = self
            .authorities
            .iter()
            .find(|a| a.url.len() > MAX_AUTHORITY_URL_LEN)
        {
            return bad(format!(
                "authority {} has a URL longer than {MAX_AUTHORITY_URL_LEN} bytes",
                a.id
            ));
        }
        Ok(())
    }

    /// Number of authorities (`n`).
    pub fn len(&self) -> usize {
        self.authorities.len()
    }

    /// Whether the set is empty (never, once checked).
    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }

    /// Votes a node needs to be listed: more than half of `n`.
    pub fn majority(&self) -> usize {
        self.len() / 2 + 1
    }

    /// Whether `id` is one of the authorities.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.authorities.iter().any(|a| a.id == *id)
    }

    /// The authority with key `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Authority> {
        self.authorities.iter().find(|a| a.id == *id)
    }

    /// The authorities' keys, sorted.
    pub fn ids(&self) -> Vec<NodeId> {
        self.authorities.iter().map(|a| a.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(b: u8) -> Authority {
        Authority {
            id: NodeId([b; 32]),
            url: format!("http://127.0.0.1:80{b:02}"),
        }
    }

    #[test]
    fn the_default_threshold_is_a_majority_and_less_is_refused() {
        let set = AuthoritySet::new(vec![authority(3), authority(1), authority(2)], None).unwrap();
        assert_eq!(set.threshold, 2);
        assert_eq!(set.majority(), 2);
        assert_eq!(
            set.ids(),
            vec![NodeId([1; 32]), NodeId([2; 32]), NodeId([3; 32])]
        );
        let four = vec![authority(1), authority(2), authority(3), authority(4)];
        assert_eq!(AuthoritySet::new(four.clone(), None).unwrap().threshold, 3);
        assert!(AuthoritySet::new(four.clone(), Some(2)).is_err());
        assert!(AuthoritySet::new(four, Some(5)).is_err());
        assert!(AuthoritySet::new(vec![], None).is_err());
        assert!(AuthoritySet::new(vec![authority(1), authority(1)], None).is_err());
        let single = AuthoritySet::single(NodeId([1; 32]), "http://x");
        single.check_shape().unwrap();
        assert!(single.contains(&NodeId([1; 32])) && !single.contains(&NodeId([2; 32])));
    }
}
