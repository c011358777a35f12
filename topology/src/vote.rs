//! Votes: one authority's view of the network for one consensus round.
//!
//! For each round (a target epoch and revision) every authority signs a vote
//! listing the nodes it would list (with their keys for the target epoch),
//! the network parameters and the authority set of its config, and the mix
//! layers of the latest consensus it holds. The consensus is computed from
//! the votes alone ([`crate::consensus`]), so every authority that holds the
//! same votes computes the same bytes.

use std::collections::BTreeSet;

use protocol::{Epoch, IdentityKeyPair, NodeId};
use serde::{Deserialize, Serialize};

use crate::authority::AuthoritySet;
use crate::descriptor::Role;
use crate::document::NodeEntry;
use crate::envelope::{SignedEnvelope, VOTE_DOMAIN};
use crate::error::TopologyError;
use crate::layers::MIX_LAYERS;
use crate::params::NetworkParams;

/// Largest signed vote accepted, in bytes of JSON.
pub const MAX_VOTE_BYTES: usize = 4 * 1024 * 1024;
/// Most nodes one vote may list.
pub const MAX_VOTE_NODES: usize = 10_000;

/// Which consensus a vote (or a signature) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundId {
    /// The epoch of the topology being agreed on.
    pub epoch: Epoch,
    /// Its revision within the epoch.
    pub serial: u64,
}

impl std::fmt::Display for RoundId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {} revision {}", self.epoch, self.serial)
    }
}

/// A node as one authority saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotedNode {
    /// Mix or gateway.
    pub role: Role,
    /// The entry the authority would list.
    pub entry: NodeEntry,
}

/// One authority's vote for one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// The voting authority.
    #[serde(with = "crate::serde_keys::node_id")]
    pub authority: NodeId,
    /// The consensus this vote is for.
    pub round: RoundId,
    /// Length of a voting round, seconds (every authority must use the same).
    pub round_secs: u64,
    /// The parameters of the authority's config.
    pub params: NetworkParams,
    /// The authority set of the authority's config.
    pub authorities: AuthoritySet,
    /// Mix layers (ids) of the latest consensus the authority holds; empty if none.
    #[serde(with = "crate::serde_keys::node_id_layers")]
    pub previous_layers: Vec<Vec<NodeId>>,
    /// The nodes it would list, sorted by id.
    pub nodes: Vec<VotedNode>,
}

impl Vote {
    /// Refuses votes with duplicate nodes, bad scores or too many entries.
    pub fn check_shape(&self) -> Result<(), TopologyError> {
        let malformed = |reason: String| {
            Err(TopologyError::Malformed {
                what: "vote",
                reason,
            })
        };
        if self.nodes.len() > MAX_VOTE_NODES {
            return malformed(format!("more than {MAX_VOTE_NODES} nodes"));
        }
        if self.previous_layers.len() > MIX_LAYERS
            || self.previous_layers.iter().map(Vec::len).sum::<usize>() > MAX_VOTE_NODES
        {
            return malformed("previous_layers is not a set of mix layers".into());
        }
        let mut seen = BTreeSet::new();
        for node in &self.nodes {
            if !seen.insert(node.entry.id) {
                return malformed(format!("node {} is listed twice", node.entry.id));
            }
            let score = node.entry.score;
            if !(score > 0.0 && score <= 1.0) {
                return malformed(format!("node {} has score {score}", node.entry.id));
            }
        }
        self.params.validate()?;
        self.authorities.check_shape()
    }

    /// Signs this vote with the authority's key.
    pub fn sign(&self, authority: &IdentityKeyPair) -> Result<SignedVote, TopologyError> {
        if authority.node_id() != self.authority {
            return Err(TopologyError::WrongSigner {
                named: self.authority,
                signer: authority.node_id(),
            });
        }
        let body = serde_json::to_string(self).map_err(|e| TopologyError::Malformed {
            what: "vote",
            reason: e.to_string(),
        })?;
        Ok(SignedVote(SignedEnvelope::seal(
            VOTE_DOMAIN,
            body,
            authority,
        )))
    }
}

/// A vote in its signed envelope, as posted to the other authorities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignedVote(pub SignedEnvelope);

impl SignedVote {
    /// Parses the vote and checks that an authority of `set` signed it.
    pub fn verify(&self, set: &AuthoritySet) -> Result<Vote, TopologyError> {
        if self.0.body.len() > MAX_VOTE_BYTES {
            return Err(TopologyError::Malformed {
                what: "vote",
                reason: format!("larger than {MAX_VOTE_BYTES} bytes"),
            });
        }
        let vote: Vote =
            serde_json::from_str(&self.0.body).map_err(|e| TopologyError::Malformed {
                what: "vote",
                reason: e.to_string(),
            })?;
        if !set.contains(&vote.authority) {
            return Err(TopologyError::NotAnAuthority(vote.authority));
        }
        self.0.check(VOTE_DOMAIN, &vote.authority, "vote")?;
        vote.check_shape()?;
        Ok(vote)
    }

    /// The envelope as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Reads an envelope from JSON text (not yet verified).
    pub fn from_json(text: &str) -> Result<Self, TopologyError> {
        serde_json::from_str(text).map_err(|e| TopologyError::Malformed {
            what: "vote envelope",
            reason: e.to_string(),
        })
    }
}

/// One authority's signature over the consensus of one round, as posted to
/// the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundSignature {
    /// The round whose consensus was signed.
    pub round: RoundId,
    /// The signing authority and its signature over the consensus body.
    pub signed: crate::document::AuthoritySignature,
}

impl RoundSignature {
    /// Largest posted signature accepted, in bytes of JSON.
    pub const MAX_BYTES: usize = 1024;

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a posted signature (not yet verified).
    pub fn from_json(text: &str) -> Result<Self, TopologyError> {
        if text.len() > Self::MAX_BYTES {
            return Err(TopologyError::Malformed {
                what: "signature",
                reason: format!("larger than {} bytes", Self::MAX_BYTES),
            });
        }
        serde_json::from_str(text).map_err(|e| TopologyError::Malformed {
            what: "signature",
            reason: e.to_string(),
        })
    }
}
