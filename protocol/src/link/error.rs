//! Why bytes from the client link could not be read.

use thiserror::Error;

/// Why bytes from a client link could not be read as a message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinkDecodeError {
    /// The length prefix announces a message longer than the protocol allows.
    #[error("message of {len} bytes is longer than the limit of {max}")]
    TooLong {
        /// Announced length.
        len: usize,
        /// Largest length allowed.
        max: usize,
    },
    /// The message speaks a link protocol version this gateway does not.
    #[error("unknown link protocol version {0}")]
    UnknownVersion(u8),
    /// The message kind is not one this side of the link may receive.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// The message body is shorter or longer than its kind requires.
    #[error("message kind {kind:#04x} has a body of the wrong length ({len} bytes)")]
    BadLength {
        /// The message kind.
        kind: u8,
        /// Length of the body after version and kind.
        len: usize,
    },
    /// A field holds a value the protocol does not define.
    #[error("bad field value: {0}")]
    BadField(&'static str),
}
