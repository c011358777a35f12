//! Errors of the client crate.

use protocol::ProtocolError;
use thiserror::Error;

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
    /// The route source has no route (no topology yet, or no such gateway).
    #[error("no route to gateway {0}")]
    NoRoute(String),
    /// The client task has stopped.
    #[error("the client has stopped")]
    Stopped,
    /// The message was not acknowledged after its last retransmission.
    #[error("message not delivered: a fragment was never acknowledged")]
    NotDelivered,
    /// No end-to-end session with this address, and no address card to start one.
    #[error("no session with {0}: add its address card first")]
    NoSession(String),
    /// The end-to-end session layer refused to seal the message.
    #[error("end-to-end session: {0}")]
    Session(String),
    /// Building a packet, a SURB or a frame failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Why the client's data folder could not be read or written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DataFolderError {
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// A field of a file is malformed.
    #[error("{}: `{field}` is not valid: {reason}", path.display())]
    BadField {
        /// The file.
        path: std::path::PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `init` would overwrite an existing key.
    #[error("{}: already exists; refusing to replace the client's key", path.display())]
    Exists {
        /// The key file.
        path: std::path::PathBuf,
    },
}

/// Why [`Client::open`](crate::Client::open) could not start a client.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The data folder is missing or malformed.
    #[error(transparent)]
    DataFolder(#[from] DataFolderError),
    /// No topology could be fetched or loaded from the cache.
    #[error(transparent)]
    Directory(#[from] topology::DirectoryClientError),
    /// The topology does not list the client's gateway.
    #[error("gateway {0} is not in the topology")]
    UnknownGateway(String),
    /// The topology lists the gateway without an address for clients.
    #[error("gateway {0} has no client address in the topology")]
    NoClientAddress(String),
}
