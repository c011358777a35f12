//! Errors of the topology crate, one enum per thing that can fail.
//!
//! Documents come from the network, so every way a descriptor or topology can
//! be wrong has its own variant: callers count refusals by reason.

use protocol::NodeId;
use thiserror::Error;

/// Why a descriptor, topology or set of network parameters was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TopologyError {
    /// The document is not well-formed JSON of the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which kind of document.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The signature does not verify under the expected key.
    #[error("bad signature on {what}")]
    BadSignature {
        /// Which kind of document.
        what: &'static str,
    },
    /// A key pair was asked to sign a descriptor that names another node.
    #[error("descriptor names node {named} but the signing key is {signer}")]
    WrongSigner {
        /// The node the descriptor names.
        named: NodeId,
        /// The node whose key was offered.
        signer: NodeId,
    },
    /// The node is not on the directory's allow list.
    #[error("node {0} is not on the directory's allow list")]
    NotAllowed(NodeId),
    /// A well-signed descriptor that the directory will not list.
    #[error("descriptor refused: {0}")]
    Refused(String),
    /// Fewer valid signatures of pinned authorities than the threshold.
    #[error("topology has {valid} valid authority signatures, {needed} needed")]
    TooFewSignatures {
        /// Valid signatures of distinct pinned authorities.
        valid: usize,
        /// The pinned threshold.
        needed: usize,
    },
    /// A vote or signature from a key that is not one of the authorities.
    #[error("{0} is not one of the directory authorities")]
    NotAnAuthority(NodeId),
    /// Network parameters out of range.
    #[error("invalid network parameters: {0}")]
    InvalidParams(String),
}

/// Why no route could be chosen.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No eligible node in a mix layer (after region filtering).
    #[error("mix layer {layer} has no eligible node")]
    EmptyLayer {
        /// The layer, counted from 1.
        layer: usize,
    },
    /// The recipient's gateway is not in the topology.
    #[error("gateway {0} is not in the topology")]
    UnknownGateway(NodeId),
    /// The topology lists no eligible gateway.
    #[error("the topology has no eligible gateway")]
    NoGateway,
}
