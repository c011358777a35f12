//! Errors of the protocol crate.

use thiserror::Error;

use crate::sphinx::SphinxError;

/// What went wrong while building or reading a protocol structure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// Text is not a valid client address.
    #[error("not a client address ({0}); expected `<client key>@<gateway id>` in base58")]
    BadAddress(String),
    /// A key in text or bytes has the wrong length or encoding.
    #[error("bad key: {0}")]
    BadKey(String),
    /// A route is empty, too long, or its delays do not match it.
    #[error("bad route: {0}")]
    BadRoute(String),
    /// A frame could not be encoded or decoded.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// A prekey bundle answer could not be decoded.
    #[error("bad bundle answer: {0}")]
    BadBundleAnswer(String),
    /// A message is too large to fragment.
    #[error("message of {len} bytes needs more than {max} fragments")]
    MessageTooLarge {
        /// Length of the message in bytes.
        len: usize,
        /// The largest number of fragments a message may have.
        max: usize,
    },
    /// A SURB could not be built, read or used.
    #[error("bad SURB: {0}")]
    BadSurb(String),
    /// The Sphinx layer refused to build or read a packet.
    #[error("sphinx: {0}")]
    Sphinx(#[from] SphinxError),
}
