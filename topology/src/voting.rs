//! The voting protocol of the directory authorities, without I/O.
//!
//! Time is cut into rounds of `round_secs` from the start of each epoch
//! ([`VotingSchedule`]). Each round produces one consensus: the round in slot
//! `i` of epoch `e` agrees on revision `i + 1` of epoch `e`, except the last
//! slot of an epoch, which agrees on revision 0 of epoch `e + 1` (ready before
//! that epoch starts). A round has two halves:
//!
//! 1. **vote**: each authority signs its vote and posts it to the others;
//!    votes of the round are accepted until the half ends, later ones are
//!    refused as late;
//! 2. **sign**: each authority computes the consensus from the votes it
//!    holds ([`crate::consensus`]), signs the body and posts the signature
//!    to the others; a signature over another body (its author held other
//!    votes) is refused. As soon as `k` signatures verify, the consensus is
//!    complete and can be published.
//!
//! [`VotingRound`] is one round's state machine: the caller (the authority's
//! shell) feeds it what arrived and the current phase, and each call says
//! what it did.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use protocol::{IdentityKeyPair, NodeId};

use crate::authority::AuthoritySet;
use crate::consensus::{ConsensusError, compute_consensus};
use crate::document::{AuthoritySignature, SignedTopology, Topology};
use crate::error::TopologyError;
use crate::params::EpochClock;
use crate::vote::{RoundId, RoundSignature, SignedVote, Vote};

/// The two halves of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Votes are exchanged.
    Vote,
    /// The consensus is computed and signatures are exchanged.
    Sign,
}

/// Where a moment falls in the voting schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundTime {
    /// The round under way.
    pub round: RoundId,
    /// Its half.
    pub phase: Phase,
    /// When that half ends.
    pub phase_ends: SystemTime,
}

/// Maps wall-clock time to voting rounds (every authority computes the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VotingSchedule {
    /// The network's epochs.
    pub clock: EpochClock,
    /// Length of one round (the last one of an epoch may be shorter).
    pub round_length: Duration,
}

impl VotingSchedule {
    /// A schedule of rounds of `round_secs` (at least one second, at most an epoch).
    pub fn new(clock: EpochClock, round_secs: u64) -> Self {
        let round_length = Duration::from_secs(round_secs.max(1)).min(clock.epoch_length);
        VotingSchedule {
            clock,
            round_length,
        }
    }

    /// Rounds per epoch.
    pub fn rounds_per_epoch(&self) -> u64 {
        let epoch = self.clock.epoch_length.as_millis().max(1);
        let round = self.round_length.as_millis().max(1);
        u64::try_from(epoch.div_ceil(round))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The round and phase at `now`.
    pub fn at(&self, now: SystemTime) -> RoundTime {
        let epoch = self.clock.epoch_at(now);
        let start = self.clock.epoch_start(epoch);
        let end = start + self.clock.epoch_length;
        let offset = now.duration_since(start).unwrap_or_default();
        let rounds = self.rounds_per_epoch();
        let slot = u64::try_from(offset.as_millis() / self.round_length.as_millis().max(1))
            .unwrap_or(u64::MAX)
            .min(rounds - 1);
        let slot_start = start + self.round_length * u32::try_from(slot).unwrap_or(u32::MAX);
        let slot_end = (slot_start + self.round_length).min(end);
        let middle = slot_start + slot_end.duration_since(slot_start).unwrap_or_default() / 2;
        let round = if slot + 1 < rounds {
            RoundId {
                epoch,
                serial: slot + 1,
            }
        } else {
            RoundId {
                epoch: epoch.next(),
                serial: 0,
            }
        };
        let (phase, phase_ends) = if now < middle {
            (Phase::Vote, middle)
        } else {
            (Phase::Sign, slot_end)
        };
        RoundTime {
            round,
            phase,
            phase_ends,
        }
    }
}

/// Why a vote was refused; [`VoteRefusal::label`] is its metric label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteRefusal {
    /// Not a well-formed vote, or too large.
    Malformed(TopologyError),
    /// The signature does not verify under the authority it names.
    BadSignature,
    /// Signed by a key that is not one of the authorities.
    NotAnAuthority(NodeId),
    /// For another round (an old vote replayed, or a clock far off).
    OtherRound(RoundId),
    /// For this round, but after its vote half ended.
    Late,
    /// A second, different vote of the same authority for this round.
    Conflicting(NodeId),
    /// Parameters, round length or authority set other than this authority's.
    Disagrees(NodeId),
}

impl VoteRefusal {
    /// The metric label of this refusal.
    pub fn label(&self) -> &'static str {
        match self {
            VoteRefusal::Malformed(_) => "malformed",
            VoteRefusal::BadSignature => "bad_signature",
            VoteRefusal::NotAnAuthority(_) => "not_an_authority",
            VoteRefusal::OtherRound(_) => "wrong_round",
            VoteRefusal::Late => "late",
            VoteRefusal::Conflicting(_) => "conflicting",
            VoteRefusal::Disagrees(_) => "disagrees",
        }
    }
}

impl std::fmt::Display for VoteRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VoteRefusal::Malformed(e) => write!(f, "{e}"),
            VoteRefusal::BadSignature => write!(f, "bad signature on vote"),
            VoteRefusal::NotAnAuthority(id) => write!(f, "{id} is not an authority"),
            VoteRefusal::OtherRound(r) => write!(f, "vote for {r}, not for this round"),
            VoteRefusal::Late => write!(f, "vote arrived after the vote half of the round"),
            VoteRefusal::Conflicting(id) => write!(f, "{id} already voted otherwise this round"),
            VoteRefusal::Disagrees(id) => write!(
                f,
                "{id} votes other network parameters, round length or authority set"
            ),
        }
    }
}

/// What [`VotingRound::receive_vote`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Recorded.
    Accepted(NodeId),
    /// The same vote again (a retry or a replay within the round): nothing changed.
    Duplicate,
    /// Refused; nothing changed.
    Refused(VoteRefusal),
}

/// Why a signature was refused; [`SignatureRefusal::label`] is its metric label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// Signed by a key that is not one of the authorities.
    NotAnAuthority(NodeId),
    /// For another round.
    OtherRound(RoundId),
    /// Does not verify over this authority's consensus (its author held other votes).
    Mismatch(NodeId),
    /// Arrived before this authority computed its consensus, and it already
    /// holds one early signature of that authority.
    Early,
}

impl SignatureRefusal {
    /// The metric label of this refusal.
    pub fn label(&self) -> &'static str {
        match self {
            SignatureRefusal::NotAnAuthority(_) => "not_an_authority",
            SignatureRefusal::OtherRound(_) => "wrong_round",
            SignatureRefusal::Mismatch(_) => "mismatch",
            SignatureRefusal::Early => "early",
        }
    }
}

impl std::fmt::Display for SignatureRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureRefusal::NotAnAuthority(id) => write!(f, "{id} is not an authority"),
            SignatureRefusal::OtherRound(r) => write!(f, "signature for {r}, not for this round"),
            SignatureRefusal::Mismatch(id) => write!(
                f,
                "the signature of {id} does not verify over this authority's consensus"
            ),
            SignatureRefusal::Early => write!(f, "signature before the consensus, held already"),
        }
    }
}

/// What [`VotingRound::receive_signature`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureOutcome {
    /// Verified and added; the consensus now has `valid` signatures.
    Accepted {
        /// Valid signatures on the consensus.
        valid: usize,
    },
    /// Held until this authority has computed its consensus.
    Held,
    /// The same signature again: nothing changed.
    Duplicate,
    /// Refused; nothing changed.
    Refused(SignatureRefusal),
}

/// One round of voting, at one authority.
pub struct VotingRound {
    round: RoundId,
    set: AuthoritySet,
    own: Vote,
    own_signed: SignedVote,
    votes: BTreeMap<NodeId, (SignedVote, Vote)>,
    early: BTreeMap<NodeId, AuthoritySignature>,
    consensus: Option<(Topology, SignedTopology)>,
    closed: bool,
}

impl VotingRound {
    /// Opens the round of `own` (this authority's vote, signed here with `key`)
    /// among the authorities of `set`.
    pub fn open(
        set: AuthoritySet,
        own: Vote,
        key: &IdentityKeyPair,
    ) -> Result<Self, TopologyError> {
        let own_signed = own.sign(key)?;
        let mut votes = BTreeMap::new();
        votes.insert(own.authority, (own_signed.clone(), own.clone()));
        Ok(VotingRound {
            round: own.round,
            set,
            own,
            own_signed,
            votes,
            early: BTreeMap::new(),
            consensus: None,
            closed: false,
        })
    }

    /// Joins the round after its vote half ended here (the authority was
    /// down, or restarted): `own` is kept only to check that the other
    /// votes agree on parameters, and is not counted, since the others
    /// closed without it. The consensus is then computed from the votes
    /// fetched from the other authorities ([`VotingRound::receive_vote`]
    /// before [`VotingRound::close`]), so that, holding the same votes as
    /// they do, this authority signs the same body.
    pub fn join_late(
        set: AuthoritySet,
        own: Vote,
        key: &IdentityKeyPair,
    ) -> Result<Self, TopologyError> {
        let mut round = Self::open(set, own, key)?;
        round.votes.clear();
        Ok(round)
    }

    /// The round.
    pub fn round(&self) -> RoundId {
        self.round
    }

    /// This authority's own signed vote (what it posts to the others).
    pub fn own_vote(&self) -> &SignedVote {
        &self.own_signed
    }

    /// Votes held (this authority's included).
    pub fn votes(&self) -> usize {
        self.votes.len()
    }

    /// The votes held, as received.
    pub fn signed_votes(&self) -> impl Iterator<Item = &SignedVote> {
        self.votes.values().map(|(s, _)| s)
    }

    /// Whether the vote half is over here (the consensus was computed or failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Checks and records a vote that arrived.
    pub fn receive_vote(&mut self, signed: &SignedVote) -> VoteOutcome {
        let vote = match signed.verify(&self.set) {
            Ok(vote) => vote,
            Err(TopologyError::BadSignature { .. }) => {
                return VoteOutcome::Refused(VoteRefusal::BadSignature);
            }
            Err(TopologyError::NotAnAuthority(id)) => {
                return VoteOutcome::Refused(VoteRefusal::NotAnAuthority(id));
            }
            Err(e) => return VoteOutcome::Refused(VoteRefusal::Malformed(e)),
        };
        if vote.round != self.round {
            return VoteOutcome::Refused(VoteRefusal::OtherRound(vote.round));
        }
        if let Some((held, _)) = self.votes.get(&vote.authority) {
            return if held == signed {
                VoteOutcome::Duplicate
            } else {
                VoteOutcome::Refused(VoteRefusal::Conflicting(vote.authority))
            };
        }
        if self.closed {
            return VoteOutcome::Refused(VoteRefusal::Late);
        }
        if vote.params != self.own.params
            || vote.round_secs != self.own.round_secs
            || vote.authorities != self.own.authorities
        {
            return VoteOutcome::Refused(VoteRefusal::Disagrees(vote.authority));
        }
        let id = vote.authority;
        self.votes.insert(id, (signed.clone(), vote));
        VoteOutcome::Accepted(id)
    }

    /// Ends the vote half: computes the consensus from the votes held and
    /// signs it. Returns the signature to post to the others.
    pub fn close(&mut self, key: &IdentityKeyPair) -> Result<RoundSignature, ConsensusError> {
        self.closed = true;
        let votes: Vec<Vote> = self.votes.values().map(|(_, v)| v.clone()).collect();
        let topology = compute_consensus(&self.set, self.round, &votes)?;
        let body = topology
            .body()
            .map_err(|_| ConsensusError::Disagreement("a document that cannot be written"))?;
        let mine = AuthoritySignature::sign(&body, key);
        let mut signed = SignedTopology::unsigned(body);
        signed.add_signature(mine.clone());
        for (_, early) in std::mem::take(&mut self.early) {
            if early.check(&signed.body).is_ok() {
                signed.add_signature(early);
            }
        }
        self.consensus = Some((topology, signed));
        Ok(RoundSignature {
            round: self.round,
            signed: mine,
        })
    }

    /// Checks and records another authority's signature.
    pub fn receive_signature(&mut self, signature: &RoundSignature) -> SignatureOutcome {
        let who = signature.signed.authority;
        if signature.round != self.round {
            return SignatureOutcome::Refused(SignatureRefusal::OtherRound(signature.round));
        }
        if !self.set.contains(&who) {
            return SignatureOutcome::Refused(SignatureRefusal::NotAnAuthority(who));
        }
        let Some((_, signed)) = &mut self.consensus else {
            if self.closed {
                // The consensus failed here: nothing to sign along with.
                return SignatureOutcome::Refused(SignatureRefusal::Mismatch(who));
            }
            return match self.early.get(&who) {
                Some(held) if *held == signature.signed => SignatureOutcome::Duplicate,
                Some(_) => SignatureOutcome::Refused(SignatureRefusal::Early),
                None => {
                    self.early.insert(who, signature.signed.clone());
                    SignatureOutcome::Held
                }
            };
        };
        if signed.signatures.contains(&signature.signed) {
            return SignatureOutcome::Duplicate;
        }
        if signature.signed.check(&signed.body).is_err() {
            return SignatureOutcome::Refused(SignatureRefusal::Mismatch(who));
        }
        signed.add_signature(signature.signed.clone());
        SignatureOutcome::Accepted {
            valid: signed.valid_signers(&self.set).len(),
        }
    }

    /// The consensus, once `k` authorities signed it.
    pub fn complete(&self) -> Option<(&Topology, &SignedTopology)> {
        let (topology, signed) = self.consensus.as_ref()?;
        (signed.valid_signers(&self.set).len() >= self.set.threshold).then_some((topology, signed))
    }

    /// The consensus computed here and its signatures so far, complete or not.
    pub fn consensus(&self) -> Option<(&Topology, &SignedTopology)> {
        self.consensus.as_ref().map(|(t, s)| (t, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;
    use crate::descriptor::Role;
    use crate::document::NodeEntry;
    use crate::params::NetworkParams;
    use crate::vote::VotedNode;
    use protocol::{Epoch, SphinxKeyPair};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::time::UNIX_EPOCH;

    const ROUND: RoundId = RoundId {
        epoch: Epoch(3),
        serial: 2,
    };

    fn setup(rng: &mut ChaCha20Rng) -> (Vec<IdentityKeyPair>, AuthoritySet, Vec<VotedNode>) {
        let keys: Vec<IdentityKeyPair> = (0..3).map(|_| IdentityKeyPair::generate(rng)).collect();
        let set = AuthoritySet::new(
            keys.iter()
                .map(|k| Authority {
                    id: k.node_id(),
                    url: String::new(),
                })
                .collect(),
            None,
        )
        .unwrap();
        let nodes = (0..4u16)
            .map(|i| VotedNode {
                role: if i < 3 { Role::Mix } else { Role::Gateway },
                entry: NodeEntry {
                    id: IdentityKeyPair::generate(rng).node_id(),
                    address: ([127, 0, 0, 1], 7000 + i).into(),
                    client_address: None,
                    sphinx_key: SphinxKeyPair::generate(rng).public(),
                    region: None,
                    score: 1.0,
                },
            })
            .collect();
        (keys, set, nodes)
    }

    fn vote(key: &IdentityKeyPair, set: &AuthoritySet, nodes: &[VotedNode]) -> Vote {
        Vote {
            authority: key.node_id(),
            round: ROUND,
            round_secs: 2,
            params: NetworkParams::default(),
            authorities: set.clone(),
            previous_layers: Vec::new(),
            nodes: nodes.to_vec(),
        }
    }

    #[test]
    fn three_authorities_sign_one_consensus() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let (keys, set, nodes) = setup(&mut rng);
        let mut rounds: Vec<VotingRound> = keys
            .iter()
            .map(|k| VotingRound::open(set.clone(), vote(k, &set, &nodes), k).unwrap())
            .collect();
        let own: Vec<SignedVote> = rounds.iter().map(|r| r.own_vote().clone()).collect();
        for (i, round) in rounds.iter_mut().enumerate() {
            for (j, v) in own.iter().enumerate() {
                let outcome = round.receive_vote(v);
                if i == j {
                    assert_eq!(outcome, VoteOutcome::Duplicate);
                } else {
                    assert!(matches!(outcome, VoteOutcome::Accepted(_)));
                }
            }
        }
        // Authority 2 receives authority 0's signature before it closes: held.
        let sig0 = rounds[0].close(&keys[0]).unwrap();
        assert_eq!(rounds[2].receive_signature(&sig0), SignatureOutcome::Held);
        let sig1 = rounds[1].close(&keys[1]).unwrap();
        let sig2 = rounds[2].close(&keys[2]).unwrap();
        assert!(rounds[2].complete().is_none() || rounds[2].consensus().is_some());
        assert_eq!(
            rounds[0].receive_signature(&sig1),
            SignatureOutcome::Accepted { valid: 2 }
        );
        assert_eq!(
            rounds[0].receive_signature(&sig1),
            SignatureOutcome::Duplicate
        );
        assert_eq!(
            rounds[0].receive_signature(&sig2),
            SignatureOutcome::Accepted { valid: 3 }
        );
        rounds[1].receive_signature(&sig0);
        rounds[1].receive_signature(&sig2);
        rounds[2].receive_signature(&sig1);
        let bodies: Vec<String> = rounds
            .iter()
            .map(|r| r.complete().unwrap().1.body.clone())
            .collect();
        assert!(bodies.iter().all(|b| *b == bodies[0]));
        let (topology, signed) = rounds[2].complete().unwrap();
        assert_eq!(signed.signatures.len(), 3);
        assert_eq!(signed.verify(&set).unwrap(), *topology);
        assert_eq!(topology.all_peer_ids().len(), 4);
    }

    #[test]
    fn bad_votes_and_signatures_are_refused_and_change_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let (keys, set, nodes) = setup(&mut rng);
        let mut round =
            VotingRound::open(set.clone(), vote(&keys[0], &set, &nodes), &keys[0]).unwrap();
        let label = |o: VoteOutcome| match o {
            VoteOutcome::Refused(r) => r.label(),
            other => panic!("accepted: {other:?}"),
        };
        // Wrong signature: a vote naming authority 1, signed by authority 2.
        let mut forged = vote(&keys[2], &set, &nodes).sign(&keys[2]).unwrap();
        forged.0.body = forged.0.body.replace(
            &keys[2].node_id().to_base58(),
            &keys[1].node_id().to_base58(),
        );
        assert_eq!(label(round.receive_vote(&forged)), "bad_signature");
        // A stranger's vote.
        let stranger = IdentityKeyPair::generate(&mut rng);
        let strange = vote(&stranger, &set, &nodes).sign(&stranger).unwrap();
        assert_eq!(label(round.receive_vote(&strange)), "not_an_authority");
        // Truncated and oversized.
        let mut truncated = vote(&keys[1], &set, &nodes).sign(&keys[1]).unwrap();
        truncated.0.body.truncate(truncated.0.body.len() / 2);
        assert_eq!(label(round.receive_vote(&truncated)), "malformed");
        let mut huge = truncated.clone();
        huge.0.body = " ".repeat(crate::vote::MAX_VOTE_BYTES + 1);
        assert_eq!(label(round.receive_vote(&huge)), "malformed");
        // A replayed vote of an earlier round.
        let mut old = vote(&keys[1], &set, &nodes);
        old.round.serial = 1;
        assert_eq!(
            label(round.receive_vote(&old.sign(&keys[1]).unwrap())),
            "wrong_round"
        );
        // Other parameters.
        let mut other = vote(&keys[1], &set, &nodes);
        other.params.lambda_p = 3.0;
        assert_eq!(
            label(round.receive_vote(&other.sign(&keys[1]).unwrap())),
            "disagrees"
        );
        // A good vote, then another one by the same authority.
        let good = vote(&keys[1], &set, &nodes).sign(&keys[1]).unwrap();
        assert_eq!(
            round.receive_vote(&good),
            VoteOutcome::Accepted(keys[1].node_id())
        );
        let second = vote(&keys[1], &set, &nodes[..1]).sign(&keys[1]).unwrap();
        assert_eq!(label(round.receive_vote(&second)), "conflicting");
        assert_eq!(round.votes(), 2);
        round.close(&keys[0]).unwrap();
        // After the vote half: late.
        let late = vote(&keys[2], &set, &nodes).sign(&keys[2]).unwrap();
        assert_eq!(label(round.receive_vote(&late)), "late");
        // Signatures: over another body, by a stranger, for another round.
        let sig_label = |o: SignatureOutcome| match o {
            SignatureOutcome::Refused(r) => r.label(),
            other => panic!("accepted: {other:?}"),
        };
        let wrong_body = RoundSignature {
            round: ROUND,
            signed: AuthoritySignature::sign("{}", &keys[2]),
        };
        assert_eq!(sig_label(round.receive_signature(&wrong_body)), "mismatch");
        let (_, signed) = round.consensus().unwrap();
        let body = signed.body.clone();
        let by_stranger = RoundSignature {
            round: ROUND,
            signed: AuthoritySignature::sign(&body, &stranger),
        };
        assert_eq!(
            sig_label(round.receive_signature(&by_stranger)),
            "not_an_authority"
        );
        let other_round = RoundSignature {
            round: RoundId {
                epoch: Epoch(9),
                serial: 0,
            },
            signed: AuthoritySignature::sign(&body, &keys[1]),
        };
        assert_eq!(
            sig_label(round.receive_signature(&other_round)),
            "wrong_round"
        );
        assert!(round.complete().is_none(), "one signature of a needed two");
        let good = RoundSignature {
            round: ROUND,
            signed: AuthoritySignature::sign(&body, &keys[1]),
        };
        assert_eq!(
            round.receive_signature(&good),
            SignatureOutcome::Accepted { valid: 2 }
        );
        assert!(round.complete().is_some());
    }

    #[test]
    fn a_late_joiner_signs_the_consensus_of_the_votes_it_fetched() {
        let mut rng = ChaCha20Rng::seed_from_u64(24);
        let (keys, set, nodes) = setup(&mut rng);
        // Authorities 0 and 1 voted and closed without authority 2; only
        // authority 0 saw node 0, so it is not listed.
        let mut early = [
            VotingRound::open(set.clone(), vote(&keys[0], &set, &nodes), &keys[0]).unwrap(),
            VotingRound::open(set.clone(), vote(&keys[1], &set, &nodes[1..]), &keys[1]).unwrap(),
        ];
        let own: Vec<SignedVote> = early.iter().map(|r| r.own_vote().clone()).collect();
        early[0].receive_vote(&own[1]);
        early[1].receive_vote(&own[0]);
        let sig0 = early[0].close(&keys[0]).unwrap();
        early[1].close(&keys[1]).unwrap();
        // Authority 2 comes back in the sign half; its own vote (it saw
        // node 0 too) must not count, since the others closed without it.
        let mut late =
            VotingRound::join_late(set.clone(), vote(&keys[2], &set, &nodes), &keys[2]).unwrap();
        assert_eq!(late.votes(), 0);
        for v in early[0].signed_votes() {
            assert!(matches!(late.receive_vote(v), VoteOutcome::Accepted(_)));
        }
        let sig2 = late.close(&keys[2]).unwrap();
        assert_eq!(
            early[0].receive_signature(&sig2),
            SignatureOutcome::Accepted { valid: 2 }
        );
        assert_eq!(
            late.receive_signature(&sig0),
            SignatureOutcome::Accepted { valid: 2 }
        );
        assert_eq!(
            late.complete().unwrap().1.body,
            early[0].complete().unwrap().1.body
        );
        assert_eq!(late.complete().unwrap().0.all_peer_ids().len(), 3);
        // Had it counted its own vote, node 0 would be in, and its body differ.
        let mut counted =
            VotingRound::open(set.clone(), vote(&keys[2], &set, &nodes), &keys[2]).unwrap();
        for v in early[0].signed_votes() {
            counted.receive_vote(v);
        }
        let other = counted.close(&keys[2]).unwrap();
        assert!(matches!(
            early[1].receive_signature(&other),
            SignatureOutcome::Refused(SignatureRefusal::Mismatch(_))
        ));
    }

    #[test]
    fn too_few_votes_give_no_consensus() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let (keys, set, nodes) = setup(&mut rng);
        let mut round =
            VotingRound::open(set.clone(), vote(&keys[0], &set, &nodes), &keys[0]).unwrap();
        assert!(matches!(
            round.close(&keys[0]),
            Err(ConsensusError::TooFewVotes {
                votes: 1,
                needed: 2
            })
        ));
        assert!(round.complete().is_none());
    }

    #[test]
    fn the_schedule_ends_each_epoch_with_the_next_epochs_first_revision() {
        let clock = EpochClock {
            genesis_unix_secs: 1_000,
            epoch_length: Duration::from_secs(10),
        };
        let schedule = VotingSchedule::new(clock, 4);
        assert_eq!(schedule.rounds_per_epoch(), 3);
        let at = |ms: u64| schedule.at(UNIX_EPOCH + Duration::from_millis(ms));
        let t = at(1_020_500);
        assert_eq!(
            (t.round, t.phase),
            (
                RoundId {
                    epoch: Epoch(2),
                    serial: 1
                },
                Phase::Vote
            )
        );
        assert_eq!(t.phase_ends, UNIX_EPOCH + Duration::from_millis(1_022_000));
        let t = at(1_022_000);
        assert_eq!(t.phase, Phase::Sign);
        assert_eq!(t.phase_ends, UNIX_EPOCH + Duration::from_millis(1_024_000));
        assert_eq!(
            at(1_024_000).round,
            RoundId {
                epoch: Epoch(2),
                serial: 2
            }
        );
        // The last slot is two seconds long: vote until 9 s, sign until 10 s.
        let t = at(1_028_500);
        assert_eq!(
            (t.round, t.phase),
            (
                RoundId {
                    epoch: Epoch(3),
                    serial: 0
                },
                Phase::Vote
            )
        );
        assert_eq!(at(1_029_000).phase, Phase::Sign);
        assert_eq!(
            at(1_030_000).round,
            RoundId {
                epoch: Epoch(3),
                serial: 1
            }
        );
    }
}
