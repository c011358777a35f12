//! What a directory authority reads from the others: their signed votes
//! (`POST /v1/votes`) and their signatures over the round's consensus
//! (`POST /v1/signatures`), into its `VotingRound`.

use protocol::Epoch;
use topology::envelope::{SignedEnvelope, VOTE_DOMAIN};
use topology::vote::{RoundId, RoundSignature, SignedVote, Vote, VotedNode};
use topology::voting::{SignatureOutcome, VoteOutcome, VotingRound};
use topology::{Authority, AuthoritySet, AuthoritySignature, NetworkParams, NodeEntry, Role};

use crate::fixtures;
use crate::input::{Input, MAX_STEPS};

/// The fixture authorities: nodes 5, 6 and 7, two signatures needed; the
/// checked round runs at the first.
pub const AUTHORITIES: [u8; 3] = [5, 6, 7];

/// The round every fixture vote is for.
pub const ROUND: RoundId = RoundId {
    epoch: Epoch(3),
    serial: 2,
};

/// Length of a voting round in the fixture votes, seconds.
pub const ROUND_SECS: u64 = 300;

/// The fixture authority set.
pub fn authority_set() -> AuthoritySet {
    let authorities = AUTHORITIES
        .iter()
        .map(|n| Authority {
            id: fixtures::identity(*n).node_id(),
            url: format!("http://127.0.0.{n}:8080"),
        })
        .collect();
    AuthoritySet::new(authorities, Some(2)).expect("a valid set")
}

/// The nodes the fixture authorities vote for: fixture nodes 1 to 4 (three
/// mixes and the gateway).
pub fn voted_nodes() -> Vec<VotedNode> {
    let mut nodes: Vec<VotedNode> = (1..=4u8)
        .map(|n| VotedNode {
            role: if n == fixtures::GATEWAY_NODE {
                Role::Gateway
            } else {
                Role::Mix
            },
            entry: NodeEntry {
                id: fixtures::identity(n).node_id(),
                address: ([127, 0, 0, n], 1789).into(),
                client_address: (n == fixtures::GATEWAY_NODE)
                    .then(|| ([127, 0, 0, n], 1790).into()),
                sphinx_key: fixtures::sphinx_key(n).public(),
                region: None,
                score: 1.0,
            },
        })
        .collect();
    nodes.sort_by_key(|n| n.entry.id);
    nodes
}

/// Fixture authority `n`'s vote for [`ROUND`].
pub fn vote_of(n: u8) -> Vote {
    Vote {
        authority: fixtures::identity(n).node_id(),
        round: ROUND,
        round_secs: ROUND_SECS,
        params: NetworkParams::default(),
        authorities: authority_set(),
        previous_layers: Vec::new(),
        nodes: voted_nodes(),
    }
}

/// Operations of [`authority_votes`], one byte each (modulo their number).
pub mod op {
    /// A posted vote envelope (a record of JSON).
    pub const VOTE_ENVELOPE: u8 = 0;
    /// A vote body (a record of JSON) signed here by fixture node `4 + byte % 4`.
    pub const VOTE_BODY: u8 = 1;
    /// A posted signature (a record of JSON).
    pub const SIGNATURE: u8 = 2;
    /// A signature made here by fixture node `4 + byte % 4`, for this round
    /// or another (a byte), over a record of text, or over the consensus
    /// computed here when the record is empty.
    pub const SIGN: u8 = 3;
    /// The vote half ends: the round computes its consensus and signs it.
    pub const CLOSE: u8 = 4;
    /// How many operations there are.
    pub const COUNT: u8 = 5;
}

/// What can be seen of a round from outside.
#[derive(Debug, PartialEq)]
struct Seen {
    votes: Vec<SignedVote>,
    closed: bool,
    consensus: Option<topology::SignedTopology>,
}

fn seen(round: &VotingRound) -> Seen {
    Seen {
        votes: round.signed_votes().cloned().collect(),
        closed: round.is_closed(),
        consensus: round.consensus().map(|(_, s)| s.clone()),
    }
}

fn signer(byte: u8) -> protocol::IdentityKeyPair {
    fixtures::identity(4 + byte % 4)
}

/// A `VotingRound` of fixture authority 5 receiving votes and signatures
/// as the bodies of `POST /v1/votes` and `POST /v1/signatures` decode to
/// them, and closing; up to 16 operations ([`op`]). Checked: a posted
/// envelope or signature re-encodes to one that reads the same; a refused
/// or repeated vote or signature changes nothing; an accepted vote verifies
/// under the set, is for this round, and agrees with this authority's
/// parameters; an accepted signature adds one valid signer; the consensus
/// is complete exactly when the threshold signed it.
pub fn authority_votes(data: &[u8]) {
    let set = authority_set();
    let key = fixtures::identity(*AUTHORITIES.first().expect("an authority"));
    let own = vote_of(5);
    let mut round = VotingRound::open(set.clone(), own.clone(), &key).expect("opens");
    let mut input = Input::new(data);
    // Each step costs signatures: a bounded number keeps a run fast.
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        let before = seen(&round);
        match input.u8() % op::COUNT {
            op::VOTE_ENVELOPE | op::VOTE_BODY => {
                let body = input.u8();
                let by = input.u8();
                let Ok(text) = std::str::from_utf8(input.record()) else {
                    continue;
                };
                let signed = if body.is_multiple_of(2) {
                    let Ok(signed) = SignedVote::from_json(text) else {
                        continue;
                    };
                    let again = SignedVote::from_json(&signed.to_json());
                    assert_eq!(again.as_ref(), Ok(&signed), "envelope round trip");
                    signed
                } else {
                    SignedVote(SignedEnvelope::seal(
                        VOTE_DOMAIN,
                        text.to_string(),
                        &signer(by),
                    ))
                };
                let outcome = round.receive_vote(&signed);
                let after = seen(&round);
                match outcome {
                    VoteOutcome::Accepted(id) => {
                        let vote = signed.verify(&set).expect("an accepted vote verifies");
                        assert_eq!(vote.authority, id);
                        assert_eq!(vote.round, round.round(), "for this round");
                        assert_eq!(vote.params, own.params, "agrees on parameters");
                        assert_eq!(vote.authorities, own.authorities, "and authorities");
                        assert!(!before.closed, "not after the vote half");
                        assert_eq!(after.votes.len(), before.votes.len() + 1);
                        assert!(after.votes.contains(&signed));
                    }
                    VoteOutcome::Duplicate | VoteOutcome::Refused(_) => {
                        assert_eq!(after, before, "a refused vote changes nothing");
                    }
                }
            }
            op::SIGNATURE => {
                let Ok(text) = std::str::from_utf8(input.record()) else {
                    continue;
                };
                let Ok(signature) = RoundSignature::from_json(text) else {
                    continue;
                };
                let again = RoundSignature::from_json(&signature.to_json());
                assert_eq!(again.as_ref(), Ok(&signature), "signature round trip");
                receive_signature(&mut round, &set, &signature, before);
            }
            op::SIGN => {
                let by = signer(input.u8());
                let other = input.u8();
                let text = input.record();
                let for_round = if other < 0xF0 {
                    round.round()
                } else {
                    RoundId {
                        epoch: Epoch(u64::from(other % 8)),
                        serial: 1,
                    }
                };
                let body = if text.is_empty() {
                    round.consensus().map(|(_, s)| s.body.clone())
                } else {
                    std::str::from_utf8(text).ok().map(str::to_string)
                };
                let Some(body) = body else {
                    continue;
                };
                let signature = RoundSignature {
                    round: for_round,
                    signed: AuthoritySignature::sign(&body, &by),
                };
                receive_signature(&mut round, &set, &signature, before);
            }
            _ => {
                if round.is_closed() {
                    continue;
                }
                let votes = round.votes();
                match round.close(&key) {
                    Ok(mine) => {
                        assert_eq!(mine.round, round.round());
                        let (topology, signed) = round.consensus().expect("computed");
                        assert!(
                            mine.signed.check(&signed.body).is_ok(),
                            "signs its consensus"
                        );
                        assert!(votes * 2 > set.len(), "from a majority of votes");
                        let verified = signed.valid_signers(&set);
                        assert!(verified.contains(&key.node_id()));
                        assert!(topology.check_shape().is_ok());
                    }
                    Err(_) => assert!(round.consensus().is_none()),
                }
                assert!(round.is_closed());
            }
        }
        if let Some((_, signed)) = round.complete() {
            assert!(
                signed.valid_signers(&set).len() >= set.threshold,
                "complete at k"
            );
        } else if let Some((_, signed)) = round.consensus() {
            assert!(
                signed.valid_signers(&set).len() < set.threshold,
                "complete at k"
            );
        }
    }
}

fn receive_signature(
    round: &mut VotingRound,
    set: &AuthoritySet,
    signature: &RoundSignature,
    before: Seen,
) {
    let outcome = round.receive_signature(signature);
    let after = seen(round);
    match outcome {
        SignatureOutcome::Accepted { valid } => {
            assert!(set.contains(&signature.signed.authority));
            assert_eq!(signature.round, round.round());
            let (_, signed) = round.consensus().expect("accepted over a consensus");
            assert!(
                signature.signed.check(&signed.body).is_ok(),
                "verifies over it"
            );
            assert_eq!(valid, signed.valid_signers(set).len());
            let had = before.consensus.map_or(0, |s| s.signatures.len());
            assert_eq!(signed.signatures.len(), had + 1, "one more signature");
        }
        SignatureOutcome::Held => {
            assert!(!before.closed, "held only before the consensus");
            assert_eq!(after, before, "held aside, nothing else changes");
        }
        SignatureOutcome::Duplicate | SignatureOutcome::Refused(_) => {
            assert_eq!(after, before, "a refused signature changes nothing");
        }
    }
}
