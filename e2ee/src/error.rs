//! The one error type of the crate.

use thiserror::Error;

/// Why a bundle, a message or a sealed state was refused.
///
/// Every variant is returned without changing the session: a refused message
/// leaves the session exactly as it was (except [`SessionError::Expired`],
/// whose message key is consumed and deleted like any decrypted message).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The bytes end before a field that the format requires.
    #[error("input truncated: {what} needs {needed} more bytes")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The bytes are not a valid encoding (wrong length, bad point, trailing bytes).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// The leading cipher-suite id is not one this build implements.
    #[error("unknown cipher suite {0}")]
    UnknownSuite(u8),
    /// The message's suite is known but is not the suite of this session.
    #[error("message uses suite {message}, session uses suite {session}")]
    SuiteMismatch {
        /// The session's suite id.
        session: u8,
        /// The message's suite id.
        message: u8,
    },
    /// The message-kind byte is neither an initial nor a ratchet message.
    #[error("unknown message kind {0}")]
    UnknownMessageKind(u8),
    /// The message is in format 1 (kinds 1 and 2), which this build no
    /// longer reads: its sender runs an older version.
    #[error("message kind {0} is format 1, no longer read (the sender runs an older version)")]
    OldMessageFormat(u8),
    /// A prekey bundle with a format version this build does not read.
    #[error("unsupported prekey bundle version {0}")]
    UnsupportedBundleVersion(u8),
    /// The prekey bundle's signed expiry has passed: its owner has erased
    /// the prekeys, so a session started from it would never be read.
    #[error(
        "the prekey bundle expired at unix {expires_at} (now {now}): its owner no longer \
         holds these prekeys; a new address card is needed"
    )]
    BundleExpired {
        /// The bundle's signed expiry, unix seconds.
        expires_at: u64,
        /// The time the bundle was checked at, unix seconds.
        now: u64,
    },
    /// The prekey bundle's Ed25519 signature does not verify.
    #[error("prekey bundle signature does not verify")]
    BadBundleSignature,
    /// An initial message lacks a key share that its suite requires.
    #[error("initial message lacks its {0} key share")]
    MissingKeyShare(&'static str),
    /// An initial message carries the same key share twice, or one of an unknown type.
    #[error("initial message has an unexpected key share (type {0})")]
    UnexpectedKeyShare(u8),
    /// The initial message names prekeys (by id) that the recipient does not
    /// hold: its signed prekey, its PQ prekey, or its one-time prekey (one
    /// already used and deleted, or not the one given).
    #[error(
        "initial message names signed prekey {spk_id} / PQ prekey {pq_id} (or a one-time \
         prekey) that are not ours"
    )]
    UnknownPrekey {
        /// The signed X25519 prekey id named by the message.
        spk_id: u32,
        /// The ML-KEM prekey id named by the message.
        pq_id: u32,
    },
    /// A one-time prekey secret was given for an initial message that uses
    /// none (kind 0x03): the caller picked it by mistake.
    #[error("initial message uses no one-time prekey, yet one-time prekey {0} was given")]
    UnexpectedOneTimePrekey(u32),
    /// An initial message arrived at a session it does not belong to
    /// (another handshake, or the session is the initiator's).
    #[error("initial message does not belong to this session")]
    HandshakeMismatch,
    /// A Diffie-Hellman result was all zeros (a low-order public key).
    #[error("peer sent a low-order X25519 key")]
    NonContributoryKey,
    /// Authentication failed: wrong keys, tampered bytes, or a failed key agreement.
    #[error("message authentication failed")]
    DecryptionFailed,
    /// The message was already decrypted once by this session.
    #[error("duplicate message")]
    DuplicateMessage,
    /// The message's key is gone: it is older than the skipped-key window.
    #[error("message is older than the skipped-key window")]
    StaleMessage,
    /// Accepting the message would require deriving more skipped keys than allowed.
    #[error("message would skip {requested} keys (limit {limit})")]
    TooManySkipped {
        /// Keys that would have to be skipped.
        requested: u64,
        /// The per-chain limit.
        limit: u32,
    },
    /// The sending chain reached its maximum message number.
    #[error("sending chain exhausted")]
    ChainExhausted,
    /// The message carried a sender-set expiry that has passed.
    #[error("message expired at {expires_at}, now is {now}")]
    Expired {
        /// The sender-set expiry, unix seconds.
        expires_at: u64,
        /// The time passed to `decrypt`, unix seconds.
        now: u64,
    },
    /// A statement signed within the session does not verify under the
    /// peer's Ed25519 signing key.
    #[error("statement signature does not verify under the peer's signing key")]
    BadStatementSignature,
    /// The identity given to sign a statement is not this session's own identity.
    #[error("this identity is not the session's own")]
    IdentityMismatch,
    /// Serialized session state could not be encoded or decoded.
    #[error("session state encoding: {0}")]
    StateEncoding(&'static str),
    /// Sealed state was refused: wrong key, wrong passphrase or tampered bytes.
    #[error("sealed state refused (wrong key or tampered)")]
    SealedStateRejected,
    /// Passphrase key derivation parameters are invalid or beyond the allowed bounds.
    #[error("passphrase key derivation: {0}")]
    PassphraseKdf(&'static str),
}
