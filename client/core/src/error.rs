//! Why the client core refused a message.

use protocol::ProtocolError;
use thiserror::Error;

use crate::events::SendFailure;
use crate::sessions::{SessionBookError, utc};

/// Why the client refused to send a message or a reply.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The message needs more fragments than the configured limit.
    #[error("message of {len} bytes needs {fragments} fragments; the limit is {max}")]
    MessageTooLarge {
        /// Length of the envelope in bytes.
        len: usize,
        /// Fragments it would need.
        fragments: usize,
        /// The configured limit.
        max: usize,
    },
    /// Too many fragments are waiting to be sent or acknowledged already.
    #[error("send queue full: {queued} fragments unacknowledged, limit {max}")]
    QueueFull {
        /// Fragments queued or in flight now.
        queued: usize,
        /// The configured limit.
        max: usize,
    },
    /// More reply SURBs were asked for than one message may carry.
    #[error("{asked} reply SURBs asked for; a message carries at most {max}")]
    TooManyReplySurbs {
        /// SURBs asked for.
        asked: usize,
        /// The configured limit.
        max: usize,
    },
    /// A reply needs one SURB per fragment and the handle holds fewer.
    #[error("the reply needs {needed} SURBs, the handle holds {available}")]
    NotEnoughSurbs {
        /// SURBs the reply needs (one per fragment).
        needed: usize,
        /// SURBs the handle holds.
        available: usize,
    },
    /// Sending would take a route outside the client's allowed regions
    /// (data residency): nothing was queued.
    #[error("{0}")]
    OutsideRegions(String),
    /// The route source has no route (no topology yet, or no such gateway).
    #[error(
        "no route to gateway {0}: it is not in the current topology (the address may be \
         outdated or from another network)"
    )]
    NoRoute(String),
    /// The topology the client holds has expired and no newer one came:
    /// its keys and nodes may be gone, so no new message is sent on it.
    #[error(
        "the topology of epoch {epoch} expired at unix {expired_at_unix_secs} and no newer one \
         could be fetched: not sending (are the directory authorities reachable?)"
    )]
    TopologyExpired {
        /// Epoch of the expired topology.
        epoch: u64,
        /// When it expired, unix seconds.
        expired_at_unix_secs: u64,
    },
    /// Saved reply SURB recoveries that do not read back (a damaged file):
    /// nothing of them was taken.
    #[error("the saved reply SURBs do not read back: {0}")]
    BadReplySurbs(String),
    /// The client task has stopped.
    #[error("the client has stopped")]
    Stopped,
    /// The message was given up, for the reason given.
    #[error("message not delivered: {0}")]
    NotDelivered(SendFailure),
    /// No end-to-end session with this address, and no address card to start one.
    #[error("no session with {0}: add its address card first")]
    NoSession(String),
    /// The address card of the recipient expired: its owner has erased the
    /// prekeys in it, so no new session can start from it.
    #[error(
        "the address card of {address} expired at {} (unix {expired_at_unix_secs}): ask its \
         owner for their current card (`mixnet-client address` prints it) and give that instead",
        utc(e2ee::UnixSeconds(*expired_at_unix_secs))
    )]
    CardExpired {
        /// The card's address.
        address: String,
        /// When it expired, unix seconds.
        expired_at_unix_secs: u64,
    },
    /// The end-to-end session layer refused to seal the message.
    #[error("end-to-end session: {0}")]
    Session(#[source] SessionBookError),
    /// Building a packet, a SURB or a frame failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Too many bundles are being fetched at once.
    #[error("{0} bundle fetches are under way already: try again once some end")]
    TooManyFetches(usize),
    /// The gateway of a short address gave no bundle for it.
    #[error(
        "gateway {gateway} gave no bundle for {short} after {attempts} requests: its owner may \
         not have connected since it was made, or the gateway withholds it; ask its owner for \
         the address card (`mixnet-client address`) and give that instead"
    )]
    BundleUnavailable {
        /// The short address.
        short: String,
        /// Its gateway.
        gateway: String,
        /// Requests sent.
        attempts: u32,
    },
    /// The bundle a gateway served for a short address was refused (a bad
    /// signature, another identity, or an expired card).
    #[error("refused the bundle served for {short}: {why}")]
    BundleRefused {
        /// The short address.
        short: String,
        /// Why.
        why: String,
    },
    /// The message cannot be recalled.
    #[error("cannot recall: {0}")]
    Recall(#[from] crate::sessions::RecallError),
}

impl From<SessionBookError> for ClientError {
    fn from(e: SessionBookError) -> Self {
        match e {
            SessionBookError::NoSession(to) => ClientError::NoSession(to),
            SessionBookError::CardExpired {
                address,
                expired_at,
            } => ClientError::CardExpired {
                address,
                expired_at_unix_secs: expired_at.0,
            },
            other => ClientError::Session(other),
        }
    }
}
