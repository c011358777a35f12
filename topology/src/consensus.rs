//! The consensus: one topology computed from the authorities' votes.
//!
//! A pure function of the votes, so that every authority holding the same
//! votes computes the same document, byte for byte, and signs the same body:
//!
//! - only votes of the set's authorities for the round count, one each;
//! - at least a majority of the set (more than `n / 2`) must have voted;
//! - the parameters, the round length and the next authority set are the
//!   ones a majority of the set voted for, identically; votes that say
//!   otherwise count for nothing else either (no majority: no consensus);
//! - a node is listed if more than half of the set voted for the same entry
//!   (role, address, keys, region); its score is the lower median of those
//!   votes' scores. A node one authority alone saw, or whose address one
//!   authority alone claims, is not listed;
//! - the previous layers are the ones a majority of the votes name (else
//!   none), so layer assignment is as stable as with one directory.

use std::collections::BTreeMap;

use protocol::NodeId;
use thiserror::Error;

use crate::authority::AuthoritySet;
use crate::descriptor::Role;
use crate::document::{NodeEntry, Topology};
use crate::layers::assign_layers;
use crate::vote::{RoundId, Vote, VotedNode};

/// Why no consensus could be computed from the votes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConsensusError {
    /// Fewer votes than a majority of the authorities.
    #[error("{votes} votes, {needed} needed")]
    TooFewVotes {
        /// Valid votes for the round.
        votes: usize,
        /// A majority of the set.
        needed: usize,
    },
    /// No majority of the votes agrees on the network parameters, the round
    /// length or the next authority set.
    #[error("no majority of the authorities agrees on {0}")]
    Disagreement(&'static str),
}

/// Computes the consensus of `round` from `votes` under the authority `set`.
pub fn compute_consensus(
    set: &AuthoritySet,
    round: RoundId,
    votes: &[Vote],
) -> Result<Topology, ConsensusError> {
    // One vote per authority of the set, for this round; the first of each
    // authority in key order wins (callers pass at most one anyway).
    let mut counted: BTreeMap<NodeId, &Vote> = BTreeMap::new();
    for vote in votes {
        if vote.round == round && set.contains(&vote.authority) {
            counted.entry(vote.authority).or_insert(vote);
        }
    }
    let needed = set.majority();
    if counted.len() < needed {
        return Err(ConsensusError::TooFewVotes {
            votes: counted.len(),
            needed,
        });
    }
    // The votes that agree with a majority on params, round length and set.
    let agreement = |v: &Vote| {
        serde_json::to_string(&(&v.params, v.round_secs, &v.authorities)).unwrap_or_default()
    };
    let (_, agreeing) = majority_of(counted.values().copied(), agreement, needed).ok_or(
        ConsensusError::Disagreement(
            "the network parameters, the round length and the authority set",
        ),
    )?;
    let first = agreeing
        .first()
        .ok_or(ConsensusError::TooFewVotes { votes: 0, needed })?;
    let params = first.params.clone();
    let authorities = first.authorities.clone();
    let previous: Vec<Vec<NodeId>> = majority_of(
        agreeing.iter().copied(),
        |v| layers_key(&v.previous_layers),
        needed,
    )
    .and_then(|(_, votes)| votes.first().map(|v| v.previous_layers.clone()))
    .unwrap_or_default();

    // Every node's entries, grouped by what the votes say about it.
    let mut seen: BTreeMap<NodeId, Vec<&VotedNode>> = BTreeMap::new();
    for vote in &agreeing {
        for node in &vote.nodes {
            seen.entry(node.entry.id).or_default().push(node);
        }
    }
    let mut mixes: BTreeMap<NodeId, NodeEntry> = BTreeMap::new();
    let mut gateways: Vec<NodeEntry> = Vec::new();
    for nodes in seen.values() {
        let Some((_, same)) = majority_of(nodes.iter().copied(), entry_key, needed) else {
            continue;
        };
        let Some(first) = same.first() else { continue };
        let mut scores: Vec<f64> = same.iter().map(|n| n.entry.score).collect();
        scores.sort_by(f64::total_cmp);
        let score = scores
            .get((scores.len() - 1) / 2)
            .copied()
            .unwrap_or(first.entry.score);
        let entry = NodeEntry {
            score,
            ..first.entry.clone()
        };
        match first.role {
            Role::Mix => {
                mixes.insert(entry.id, entry);
            }
            Role::Gateway => gateways.push(entry),
        }
    }
    let ids: Vec<NodeId> = mixes.keys().copied().collect();
    let region_of = |id: &NodeId| mixes.get(id).and_then(|e| e.region.as_deref());
    let layers = assign_layers(&ids, &previous, round.epoch, region_of)
        .into_iter()
        .map(|layer| {
            layer
                .iter()
                .filter_map(|id| mixes.get(id).cloned())
                .collect()
        })
        .collect();
    Ok(Topology {
        epoch: round.epoch,
        serial: round.serial,
        params,
        layers,
        gateways,
        authorities: Some(authorities),
    })
}

/// The group of `items` with the same key that has at least `needed`
/// members (at most one can, as `needed` is more than half the set).
fn majority_of<'a, T: ?Sized>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> String,
    needed: usize,
) -> Option<(String, Vec<&'a T>)> {
    let mut groups: BTreeMap<String, Vec<&'a T>> = BTreeMap::new();
    for item in items {
        groups.entry(key(item)).or_default().push(item);
    }
    groups.into_iter().find(|(_, group)| group.len() >= needed)
}

/// What must agree about a node: everything but its score.
fn entry_key(node: &VotedNode) -> String {
    let entry = NodeEntry {
        score: 1.0,
        ..node.entry.clone()
    };
    serde_json::to_string(&(node.role, entry)).unwrap_or_default()
}

fn layers_key(layers: &[Vec<NodeId>]) -> String {
    layers
        .iter()
        .map(|l| {
            l.iter()
                .map(NodeId::to_base58)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;
    use crate::params::NetworkParams;
    use protocol::{Epoch, IdentityKeyPair, SphinxKeyPair};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::net::SocketAddr;

    const ROUND: RoundId = RoundId {
        epoch: Epoch(7),
        serial: 0,
    };

    struct Net {
        keys: Vec<IdentityKeyPair>,
        set: AuthoritySet,
        nodes: Vec<VotedNode>,
    }

    fn net(rng: &mut ChaCha20Rng, authorities: usize, mixes: usize, gateways: usize) -> Net {
        let keys: Vec<IdentityKeyPair> = (0..authorities)
            .map(|_| IdentityKeyPair::generate(rng))
            .collect();
        let set = AuthoritySet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Authority {
                    id: k.node_id(),
                    url: format!("http://127.0.0.1:{}", 8000 + i),
                })
                .collect(),
            None,
        )
        .unwrap();
        let mut port = 9000u16;
        let nodes = (0..mixes + gateways)
            .map(|i| {
                port += 1;
                VotedNode {
                    role: if i < mixes { Role::Mix } else { Role::Gateway },
                    entry: NodeEntry {
                        id: IdentityKeyPair::generate(rng).node_id(),
                        address: SocketAddr::from(([127, 0, 0, 1], port)),
                        client_address: None,
                        sphinx_key: SphinxKeyPair::generate(rng).public(),
                        region: None,
                        score: 1.0,
                    },
                }
            })
            .collect();
        Net { keys, set, nodes }
    }

    fn vote(net: &Net, i: usize, nodes: Vec<VotedNode>) -> Vote {
        Vote {
            authority: net.keys[i].node_id(),
            round: ROUND,
            round_secs: 60,
            params: NetworkParams::default(),
            authorities: net.set.clone(),
            previous_layers: Vec::new(),
            nodes,
        }
    }

    #[test]
    fn the_same_votes_in_any_order_give_the_same_bytes() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let n = net(&mut rng, 3, 6, 2);
        let votes: Vec<Vote> = (0..3).map(|i| vote(&n, i, n.nodes.clone())).collect();
        let a = compute_consensus(&n.set, ROUND, &votes).unwrap();
        let mut reversed = votes.clone();
        reversed.reverse();
        let b = compute_consensus(&n.set, ROUND, &reversed).unwrap();
        assert_eq!(a.body().unwrap(), b.body().unwrap());
        a.check_shape().unwrap();
        assert_eq!(a.layers.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(a.gateways.len(), 2);
        assert_eq!(a.authorities.as_ref(), Some(&n.set));
        // Each authority signs the same body: three signatures verify.
        let body = a.body().unwrap();
        let mut signed = crate::document::SignedTopology::unsigned(body.clone());
        for k in &n.keys {
            signed.add_signature(crate::document::AuthoritySignature::sign(&body, k));
        }
        assert_eq!(signed.valid_signers(&n.set).len(), 3);
        assert_eq!(signed.verify(&n.set).unwrap(), a);
    }

    #[test]
    fn a_node_needs_a_majority_of_the_whole_set() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let n = net(&mut rng, 3, 4, 1);
        let (common, lonely) = n.nodes.split_at(3);
        // Authority 0 alone saw the last two nodes (one mix, one gateway).
        let votes = vec![
            vote(&n, 0, n.nodes.clone()),
            vote(&n, 1, common.to_vec()),
            vote(&n, 2, common.to_vec()),
        ];
        let t = compute_consensus(&n.set, ROUND, &votes).unwrap();
        for node in lonely {
            assert!(t.entry(&node.entry.id).is_none());
        }
        assert_eq!(t.all_peer_ids().len(), 3);
        // Two of three votes, both listing a node: it is in.
        let two = vec![vote(&n, 0, n.nodes.clone()), vote(&n, 1, n.nodes.clone())];
        assert_eq!(
            compute_consensus(&n.set, ROUND, &two)
                .unwrap()
                .all_peer_ids()
                .len(),
            5
        );
        // One vote of three: no consensus at all.
        assert_eq!(
            compute_consensus(&n.set, ROUND, &two[..1]),
            Err(ConsensusError::TooFewVotes {
                votes: 1,
                needed: 2
            })
        );
        // A vote for another round, or by a stranger, does not count.
        let mut other_round = vote(&n, 1, n.nodes.clone());
        other_round.round.serial = 3;
        let stranger = IdentityKeyPair::generate(&mut rng);
        let mut strange = vote(&n, 2, n.nodes.clone());
        strange.authority = stranger.node_id();
        assert!(matches!(
            compute_consensus(&n.set, ROUND, &[two[0].clone(), other_round, strange]),
            Err(ConsensusError::TooFewVotes { votes: 1, .. })
        ));
    }

    #[test]
    fn a_minority_cannot_move_a_node_or_change_the_parameters() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let n = net(&mut rng, 3, 3, 1);
        let mut forged = n.nodes.clone();
        forged[0].entry.address = "10.6.6.6:1".parse().unwrap();
        let mut liar = vote(&n, 0, forged);
        liar.params.mean_delay = std::time::Duration::from_millis(1);
        let votes = vec![
            liar,
            vote(&n, 1, n.nodes.clone()),
            vote(&n, 2, n.nodes.clone()),
        ];
        let t = compute_consensus(&n.set, ROUND, &votes).unwrap();
        assert_eq!(t.params, NetworkParams::default());
        assert_eq!(
            t.entry(&n.nodes[0].entry.id).unwrap().address,
            n.nodes[0].entry.address
        );
        // Three different parameter sets: no majority, no consensus.
        let mut a = vote(&n, 1, n.nodes.clone());
        a.params.lambda_p = 1.0;
        let mut b = vote(&n, 2, n.nodes.clone());
        b.params.lambda_p = 2.0;
        let c = vote(&n, 0, n.nodes.clone());
        assert!(matches!(
            compute_consensus(&n.set, ROUND, &[a, b, c]),
            Err(ConsensusError::Disagreement(_))
        ));
    }

    #[test]
    fn scores_are_the_lower_median_and_layers_follow_the_majority() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let n = net(&mut rng, 3, 3, 0);
        let with_score = |s: f64| {
            let mut nodes = n.nodes.clone();
            nodes[0].entry.score = s;
            nodes
        };
        let mut votes = vec![
            vote(&n, 0, with_score(1.0)),
            vote(&n, 1, with_score(0.25)),
            vote(&n, 2, with_score(0.5)),
        ];
        let t = compute_consensus(&n.set, ROUND, &votes).unwrap();
        assert_eq!(t.entry(&n.nodes[0].entry.id).unwrap().score, 0.5);
        // Two votes name the same previous layers: they are kept.
        let reversed: Vec<Vec<NodeId>> = t
            .layers
            .iter()
            .rev()
            .map(|l| l.iter().map(|e| e.id).collect())
            .collect();
        votes[0].previous_layers = reversed.clone();
        votes[2].previous_layers = reversed.clone();
        let kept = compute_consensus(&n.set, ROUND, &votes).unwrap();
        let ids: Vec<Vec<NodeId>> = kept
            .layers
            .iter()
            .map(|l| l.iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(ids, reversed);
    }
}
