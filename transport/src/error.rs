//! Errors of the transport crate.

use crate::identity::PeerId;

/// Why an endpoint could not be built or a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The certificate or key for the node identity could not be built.
    #[error("cannot build the node certificate: {0}")]
    Certificate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS configuration was refused by rustls or quinn.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The UDP socket could not be bound.
    #[error("cannot bind the QUIC endpoint to {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid transport configuration: {0}")]
    Config(&'static str),
    /// A peer id was not 64 hex digits.
    #[error("a peer id is 64 hex digits")]
    BadPeerId,
}

/// Why [`crate::Endpoint::send`] did not enqueue a packet. Every refusal is
/// already counted in [`crate::LinkStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The packet does not have the endpoint's fixed packet size.
    #[error("packet is {len} bytes, links carry exactly {expected}")]
    WrongSize {
        /// Length of the refused packet.
        len: usize,
        /// The endpoint's packet size.
        expected: usize,
    },
    /// The peer is not in the pinned set, so no link to it may exist.
    #[error("peer {0} is not pinned")]
    NotPinned(PeerId),
    /// The link's queue is full; the packet was dropped.
    #[error("queue of the link to {0} is full")]
    QueueFull(PeerId),
    /// The endpoint is closing or closed.
    #[error("the endpoint is closed")]
    Closed,
}
