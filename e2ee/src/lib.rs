#![doc = include_str!("../README.md")]

mod bundle;
mod error;
mod handshake;
mod labelled;
mod one_time;
mod ratchet;
mod sealed;
#[cfg(test)]
mod secrecy_tests;
mod secret;
mod session;
mod suite;
mod wire;

pub use bundle::{
    BUNDLE_LEN, BUNDLE_V1_LEN, BUNDLE_VERSION, BUNDLE_VERSION_1, LocalIdentity, PQ_PUBLIC_KEY_LEN,
    PeerIdentity, PrekeyBundle, PrekeySecrets,
};
pub use error::SessionError;
pub use handshake::{INITIAL_ONE_TIME_PREFIX_LEN, INITIAL_PREFIX_LEN, PQ_CIPHERTEXT_LEN};
pub use one_time::{
    ONE_TIME_PREKEY_LEN, ONE_TIME_PREKEY_VERSION, OneTimePrekeySecrets, SignedOneTimePrekey,
};
pub use ratchet::{
    MAX_PAST_CHAINS, MAX_SKIP_PER_CHAIN, MAX_SKIPPED_TOTAL, RATCHET_HEADER_LEN, TAG_WINDOW,
};
pub use sealed::{PassphraseParams, SEALED_MAGIC, SEALED_VERSION, StateStore};
pub use session::{
    HandshakeRole, InitialInfo, MessageTag, RATCHET_OVERHEAD, SIGNATURE_LEN, STATE_VERSION,
    Session, UnixSeconds,
};
pub use suite::{CipherSuite, MESSAGE_NONCE_LEN, MESSAGE_TAG_LEN};
