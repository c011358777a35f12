//! A session between two clients: the public API of the crate.

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::bundle::{LocalIdentity, PrekeyBundle, PrekeySecrets};
use crate::handshake::{self, InitialPrefix, KIND_INITIAL, KIND_RATCHET};
use crate::ratchet::{RATCHET_HEADER_LEN, Ratchet, RatchetHeader};
use crate::suite::{CipherSuite, TAG_LEN};

/// Format version of [`Session::to_bytes`].
pub const STATE_VERSION: u8 = 1;
/// Length of the encrypted expiry field that precedes every plaintext.
const EXPIRY_LEN: usize = 8;

/// A point in time in whole seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixSeconds(pub u64);

/// Which side of the handshake this session was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeRole {
    /// Sent the initial message (used the peer's prekey bundle).
    Initiator,
    /// Received the initial message (owned the prekeys).
    Responder,
}

/// What can be read from an initial message before any key is used: which
/// prekeys it needs and which handshake it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitialInfo {
    /// The message's cipher suite.
    pub suite: CipherSuite,
    /// The sender's X25519 identity key (not yet authenticated).
    pub sender: [u8; 32],
    /// Id of our signed prekey that the message uses.
    pub spk_id: u32,
    /// Id of our ML-KEM prekey that the message uses.
    pub pq_id: u32,
    /// Names the handshake: equal to [`Session::handshake_id`] of the session it starts.
    pub handshake_id: [u8; 32],
}

impl InitialInfo {
    /// Reads the handshake fields of `message`; `Ok(None)` for a ratchet message.
    pub fn parse(message: &[u8]) -> Result<Option<Self>, SessionError> {
        match message.get(1) {
            Some(&KIND_INITIAL) => {}
            Some(&KIND_RATCHET) => {
                CipherSuite::from_id(message.first().copied().unwrap_or_default())?;
                return Ok(None);
            }
            Some(&other) => return Err(SessionError::UnknownMessageKind(other)),
            None => {
                return Err(SessionError::Truncated {
                    what: "message kind",
                    needed: 2usize.saturating_sub(message.len()),
                });
            }
        }
        let (prefix, len) = InitialPrefix::decode(message)?;
        let encoded = message
            .get(..len)
            .ok_or(SessionError::Malformed("initial prefix"))?;
        Ok(Some(Self {
            suite: prefix.suite,
            sender: prefix.sender,
            spk_id: prefix.spk_id,
            pq_id: prefix.pq_id,
            handshake_id: handshake::handshake_id(prefix.suite, encoded),
        }))
    }
}

/// An end-to-end encrypted session with one peer.
///
/// `encrypt` and `decrypt` are the whole protocol; a refused message leaves
/// the session unchanged. The session holds secrets, which are wiped when
/// it is dropped; [`Session::to_bytes`] output is secret too (seal it with
/// [`crate::StateStore`]).
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    suite: CipherSuite,
    role: HandshakeRole,
    initiator_identity: [u8; 32],
    responder_identity: [u8; 32],
    handshake_id: [u8; 32],
    /// Initiator only: the handshake prefix, sent with every message until the first reply.
    pending_prefix: Option<Vec<u8>>,
    ratchet: Ratchet,
}

impl Session {
    /// Starts a session with the owner of `bundle` (whose identity the
    /// caller has checked against the peer's address card). The first
    /// messages carry the hybrid handshake until the peer replies.
    pub fn initiate(
        rng: &mut impl CryptoRng,
        identity: &LocalIdentity,
        bundle: &PrekeyBundle,
    ) -> Result<Self, SessionError> {
        let keys = handshake::initiate(rng, identity, bundle)?;
        let suite = bundle.suite();
        let ratchet = Ratchet::initiator(rng, suite, keys.root.clone(), bundle.spk())?;
        Ok(Self {
            suite,
            role: HandshakeRole::Initiator,
            initiator_identity: keys.identities.0,
            responder_identity: keys.identities.1,
            handshake_id: keys.handshake_id,
            pending_prefix: Some(keys.prefix.clone()),
            ratchet,
        })
    }

    /// Creates the responder's session from an initial message, after
    /// checking that the message authenticates under the agreed keys. The
    /// message is not consumed: pass it to [`Session::decrypt`] for its plaintext.
    ///
    /// Route later initial messages with the same [`InitialInfo::handshake_id`]
    /// to this session instead of accepting them again.
    pub fn accept(
        identity: &LocalIdentity,
        prekeys: &PrekeySecrets,
        message: &[u8],
    ) -> Result<Self, SessionError> {
        let (prefix, len) = InitialPrefix::decode(message)?;
        let encoded = message
            .get(..len)
            .ok_or(SessionError::Malformed("initial prefix"))?;
        let keys = handshake::respond(identity, prekeys, &prefix, encoded)?;
        let session = Self {
            suite: prefix.suite,
            role: HandshakeRole::Responder,
            initiator_identity: keys.identities.0,
            responder_identity: keys.identities.1,
            handshake_id: keys.handshake_id,
            pending_prefix: None,
            ratchet: Ratchet::responder(
                prefix.suite,
                keys.root.clone(),
                prekeys.spk_secret_bytes(),
            ),
        };
        let mut probe = session.clone();
        probe.open(message)?;
        Ok(session)
    }

    /// Encrypts `plaintext`, optionally with a sender-set expiry after which
    /// the recipient refuses it.
    pub fn encrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionError> {
        let (header, key) = self.ratchet.next_send(rng)?;
        let header = header.encode();
        let prefix = self.pending_prefix.as_deref().unwrap_or_default();
        let aad = self.associated_data(prefix, &header);
        let mut body = Zeroizing::new(Vec::with_capacity(EXPIRY_LEN + plaintext.len()));
        body.extend_from_slice(&expires_at.map_or(0, |t| t.0).to_be_bytes());
        body.extend_from_slice(plaintext);
        let ciphertext = self.suite.seal(&key, &aad, &body)?;
        let mut out = Vec::with_capacity(prefix.len() + header.len() + ciphertext.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&header);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a message from the peer. Refuses duplicates
    /// ([`SessionError::DuplicateMessage`]), tampered or foreign messages,
    /// and messages whose expiry is at or before `now`.
    pub fn decrypt(&mut self, now: UnixSeconds, message: &[u8]) -> Result<Vec<u8>, SessionError> {
        let body = self.open(message)?;
        let (expiry, payload) = body
            .split_at_checked(EXPIRY_LEN)
            .ok_or(SessionError::Malformed("body"))?;
        let mut expiry_bytes = [0u8; EXPIRY_LEN];
        expiry_bytes.copy_from_slice(expiry);
        let expires_at = u64::from_be_bytes(expiry_bytes);
        if expires_at != 0 && now.0 >= expires_at {
            return Err(SessionError::Expired {
                expires_at,
                now: now.0,
            });
        }
        Ok(payload.to_vec())
    }

    /// Authenticates and decrypts `message`, advancing the ratchet on success.
    fn open(&mut self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let suite = CipherSuite::from_id(*message.first().ok_or(SessionError::Truncated {
            what: "suite",
            needed: 1,
        })?)?;
        if suite != self.suite {
            return Err(SessionError::SuiteMismatch {
                session: self.suite.id(),
                message: suite.id(),
            });
        }
        let (prefix, inner) = match message.get(1) {
            Some(&KIND_INITIAL) => {
                if self.role == HandshakeRole::Initiator {
                    return Err(SessionError::HandshakeMismatch);
                }
                let (_, len) = InitialPrefix::decode(message)?;
                let (prefix, inner) = message
                    .split_at_checked(len)
                    .ok_or(SessionError::Malformed("prefix"))?;
                if handshake::handshake_id(suite, prefix) != self.handshake_id {
                    return Err(SessionError::HandshakeMismatch);
                }
                (prefix, inner)
            }
            Some(&KIND_RATCHET) => (&[][..], message),
            Some(&other) => return Err(SessionError::UnknownMessageKind(other)),
            None => {
                return Err(SessionError::Truncated {
                    what: "message kind",
                    needed: 1,
                });
            }
        };
        let (header, ciphertext) = RatchetHeader::decode(inner)?;
        if header.suite != self.suite {
            return Err(SessionError::SuiteMismatch {
                session: self.suite.id(),
                message: header.suite.id(),
            });
        }
        if ciphertext.len() < EXPIRY_LEN + TAG_LEN {
            return Err(SessionError::Truncated {
                what: "ciphertext",
                needed: EXPIRY_LEN + TAG_LEN - ciphertext.len(),
            });
        }
        let header_bytes = inner
            .get(..RATCHET_HEADER_LEN)
            .ok_or(SessionError::Malformed("header"))?;
        let aad = self.associated_data(prefix, header_bytes);
        let suite = self.suite;
        let body = self
            .ratchet
            .receive(&header, |key| suite.open(key, &aad, ciphertext))?;
        // Any authenticated message from the responder proves it has the session.
        self.pending_prefix = None;
        Ok(body)
    }

    /// AEAD associated data: both identity keys, then the prefix (if any), then the header.
    fn associated_data(&self, prefix: &[u8], header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + prefix.len() + header.len());
        aad.extend_from_slice(&self.initiator_identity);
        aad.extend_from_slice(&self.responder_identity);
        aad.extend_from_slice(prefix);
        aad.extend_from_slice(header);
        aad
    }

    /// The suite this session was created with.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// Which side of the handshake this session was.
    pub fn role(&self) -> HandshakeRole {
        self.role
    }

    /// The peer's X25519 identity key.
    pub fn peer_identity(&self) -> [u8; 32] {
        match self.role {
            HandshakeRole::Initiator => self.responder_identity,
            HandshakeRole::Responder => self.initiator_identity,
        }
    }

    /// Names the handshake that started this session (see [`InitialInfo`]).
    pub fn handshake_id(&self) -> [u8; 32] {
        self.handshake_id
    }

    /// True while the initiator has had no reply and still sends the handshake prefix.
    pub fn awaiting_reply(&self) -> bool {
        self.pending_prefix.is_some()
    }

    /// Test hook: whether any key an attacker can derive from this state
    /// (see `Ratchet::attacker_keys`) opens `message`.
    #[cfg(test)]
    pub(crate) fn attacker_opens(&self, message: &[u8], depth: u32) -> bool {
        let (prefix, inner) = if message.get(1) == Some(&KIND_INITIAL) {
            message.split_at(crate::INITIAL_PREFIX_LEN)
        } else {
            (&[][..], message)
        };
        let (header, ciphertext) = inner.split_at(RATCHET_HEADER_LEN);
        let aad = self.associated_data(prefix, header);
        self.ratchet
            .attacker_keys(depth)
            .iter()
            .any(|key| self.suite.open(key, &aad, ciphertext).is_ok())
    }

    /// How many skipped message keys the session stores.
    pub fn skipped_keys(&self) -> usize {
        self.ratchet.skipped_len()
    }

    /// Serializes the full state (secret: seal it before storing it).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let mut out = Zeroizing::new(vec![STATE_VERSION]);
        let body = Zeroizing::new(
            postcard::to_stdvec(self).map_err(|_| SessionError::StateEncoding("serialize"))?,
        );
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restores a state written by [`Session::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionError> {
        let (version, body) = bytes
            .split_first()
            .ok_or(SessionError::StateEncoding("empty state"))?;
        if *version != STATE_VERSION {
            return Err(SessionError::StateEncoding("unknown state version"));
        }
        let (session, rest) = postcard::take_from_bytes::<Self>(body)
            .map_err(|_| SessionError::StateEncoding("deserialize"))?;
        if !rest.is_empty() {
            return Err(SessionError::StateEncoding("trailing bytes"));
        }
        Ok(session)
    }
}

// Every secret field (root, chain, message and DH keys) is a `Secret32`,
// which wipes itself on drop.
impl zeroize::ZeroizeOnDrop for Session {}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("suite", &self.suite)
            .field("role", &self.role)
            .field("awaiting_reply", &self.awaiting_reply())
            .finish_non_exhaustive()
    }
}
