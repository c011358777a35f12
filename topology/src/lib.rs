#![doc = include_str!("../README.md")]

pub mod authority;
pub mod consensus;
pub mod descriptor;
pub mod document;
pub mod envelope;
pub mod error;
pub mod layers;
pub mod params;
pub mod route;
pub mod serde_keys;
pub mod vote;
pub mod voting;

pub use authority::{Authority, AuthoritySet};
pub use consensus::{ConsensusError, compute_consensus};
pub use descriptor::{EpochKey, NodeDescriptor, Role, SignedDescriptor};
pub use document::{AuthoritySignature, NodeEntry, SignedTopology, Topology};
pub use error::{RouteError, TopologyError};
pub use layers::{MIX_LAYERS, assign_layers};
pub use params::{EpochClock, NetworkParams};
pub use route::{RouteSelector, Weighting};
pub use vote::{RoundId, RoundSignature, SignedVote, Vote, VotedNode};
pub use voting::{Phase, RoundTime, VotingRound, VotingSchedule};
