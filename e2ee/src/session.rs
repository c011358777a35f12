//! A session between two clients: the public API of the crate.

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::bundle::{LocalIdentity, PeerIdentity, PrekeyBundle, PrekeySecrets};
use crate::handshake::{self, InitialPrefix, KIND_RATCHET, is_initial_kind, unknown_kind};
use crate::one_time::{OneTimePrekeySecrets, SignedOneTimePrekey};
use crate::ratchet::{Ratchet, WireHeader};
use crate::suite::{CipherSuite, LABEL_STATEMENT, MESSAGE_NONCE_LEN, MESSAGE_TAG_LEN, TAG_LEN};

/// Format version of [`Session::to_bytes`].
pub const STATE_VERSION: u8 = 2;
/// Length of the encrypted expiry field that precedes every plaintext.
const EXPIRY_LEN: usize = 8;
/// Bytes a ratchet message adds to its plaintext: the header
/// ([`crate::RATCHET_HEADER_LEN`]), the encrypted expiry and the AEAD tag.
pub const RATCHET_OVERHEAD: usize = crate::RATCHET_HEADER_LEN + EXPIRY_LEN + TAG_LEN;
/// Length of an Ed25519 signature of a statement ([`Session::sign_statement`]).
pub const SIGNATURE_LEN: usize = 64;

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
    /// The sender's identity, X25519 and Ed25519 keys (not yet authenticated).
    pub sender: PeerIdentity,
    /// Id of our signed prekey that the message uses.
    pub spk_id: u32,
    /// Id of our ML-KEM prekey that the message uses.
    pub pq_id: u32,
    /// Id of our one-time prekey that the message uses (kind 0x05); `None`
    /// for a message that uses none (kind 0x03).
    pub one_time_id: Option<u32>,
    /// Names the handshake: equal to [`Session::handshake_id`] of the session it starts.
    pub handshake_id: [u8; 32],
}

impl InitialInfo {
    /// Reads the handshake fields of `message`; `Ok(None)` for a ratchet message.
    pub fn parse(message: &[u8]) -> Result<Option<Self>, SessionError> {
        match message.get(1) {
            Some(&kind) if is_initial_kind(kind) => {}
            Some(&KIND_RATCHET) => {
                CipherSuite::from_id(message.first().copied().unwrap_or_default())?;
                return Ok(None);
            }
            Some(&other) => return Err(unknown_kind(other)),
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
            one_time_id: prefix.one_time.as_ref().map(|one_time| one_time.id),
            handshake_id: handshake::handshake_id(prefix.suite, encoded),
        }))
    }
}

/// The routing tag that leads every ratchet message: 16 bytes that differ
/// for every message and mean nothing to anyone but the recipient, who
/// predicts them ([`Session::expected_tags`]) to find the message's session
/// with one table lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageTag(pub [u8; MESSAGE_TAG_LEN]);

impl MessageTag {
    /// The routing tag of a ratchet message (bytes 2..18), read without any key.
    pub fn of(message: &[u8]) -> Result<Self, SessionError> {
        let (wire, _) = WireHeader::parse(message)?;
        Ok(Self(wire.tag))
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
    initiator_identity: PeerIdentity,
    responder_identity: PeerIdentity,
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
        Self::initiate_with(rng, identity, bundle, None)
    }

    /// As `initiate`, with the peer's one-time prekey if one was handed out (verifies it is signed by the bundle's identity first).
    ///
    /// With one, the first messages are of kind 0x05 and their root key
    /// also depends on the one-time keys, which the peer deletes after the
    /// first message that used them: give each one-time prekey to one
    /// session only (a second session on it is refused by the peer).
    pub fn initiate_with(
        rng: &mut impl CryptoRng,
        identity: &LocalIdentity,
        bundle: &PrekeyBundle,
        one_time: Option<&SignedOneTimePrekey>,
    ) -> Result<Self, SessionError> {
        let keys = handshake::initiate(rng, identity, bundle, one_time)?;
        let suite = bundle.suite();
        let ratchet = Ratchet::initiator(
            rng,
            suite,
            keys.root.clone(),
            bundle.spk(),
            keys.initiator_header.clone(),
            keys.responder_header.clone(),
        )?;
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
        Self::accept_with(identity, prekeys, None, message)
    }

    /// As `accept`, with the one-time secret the message's `InitialInfo::one_time_id` names (None when it names none; a message naming one but given None fails with UnknownPrekey, and one naming none given Some fails too).
    ///
    /// A message naming a one-time prekey given another one (another id)
    /// is `UnknownPrekey`; given other keys under the same id, it does not
    /// authenticate (`DecryptionFailed`). One naming none given `Some` is
    /// `UnexpectedOneTimePrekey`. Delete the one-time secret once this
    /// succeeds: a replay of the message is then `UnknownPrekey`, and no
    /// later theft of our keys opens the message.
    pub fn accept_with(
        identity: &LocalIdentity,
        prekeys: &PrekeySecrets,
        one_time: Option<&OneTimePrekeySecrets>,
        message: &[u8],
    ) -> Result<Self, SessionError> {
        let (prefix, len) = InitialPrefix::decode(message)?;
        let encoded = message
            .get(..len)
            .ok_or(SessionError::Malformed("initial prefix"))?;
        let keys = handshake::respond(identity, prekeys, one_time, &prefix, encoded)?;
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
                keys.responder_header.clone(),
                keys.initiator_header.clone(),
            ),
        };
        let mut probe = session.clone();
        probe.open(message)?;
        Ok(session)
    }

    /// Encrypts `plaintext`, optionally with a sender-set expiry after which
    /// the recipient refuses it. Every message gets a fresh random nonce that
    /// salts its key: encrypting again from a restored (older) copy of the
    /// state never reuses a key and nonce.
    pub fn encrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionError> {
        let outgoing = self.ratchet.next_send(rng)?;
        let mut nonce = [0u8; MESSAGE_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let header = outgoing.wire_header(self.suite, &nonce)?;
        let prefix = self.pending_prefix.as_deref().unwrap_or_default();
        let aad = self.associated_data(prefix, &header);
        let mut body = Zeroizing::new(Vec::with_capacity(EXPIRY_LEN + plaintext.len()));
        body.extend_from_slice(&expires_at.map_or(0, |t| t.0).to_be_bytes());
        body.extend_from_slice(plaintext);
        let ciphertext = self
            .suite
            .seal(&outgoing.message_key, &nonce, &aad, &body)?;
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
        self.decrypt_with_expiry(now, message)
            .map(|(plaintext, _)| plaintext)
    }

    /// [`Session::decrypt`], also returning the expiry the sender set (`None`: none).
    pub fn decrypt_with_expiry(
        &mut self,
        now: UnixSeconds,
        message: &[u8],
    ) -> Result<(Vec<u8>, Option<UnixSeconds>), SessionError> {
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
        let expiry = (expires_at != 0).then_some(UnixSeconds(expires_at));
        Ok((payload.to_vec(), expiry))
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
            Some(&kind) if is_initial_kind(kind) => {
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
            Some(&other) => return Err(unknown_kind(other)),
            None => {
                return Err(SessionError::Truncated {
                    what: "message kind",
                    needed: 1,
                });
            }
        };
        let (wire, ciphertext) = WireHeader::parse(inner)?;
        if wire.suite != self.suite {
            return Err(SessionError::SuiteMismatch {
                session: self.suite.id(),
                message: wire.suite.id(),
            });
        }
        if ciphertext.len() < EXPIRY_LEN + TAG_LEN {
            return Err(SessionError::Truncated {
                what: "ciphertext",
                needed: EXPIRY_LEN + TAG_LEN - ciphertext.len(),
            });
        }
        let aad = self.associated_data(prefix, wire.bytes);
        let suite = self.suite;
        let nonce = wire.nonce;
        let body = self
            .ratchet
            .receive(&wire, |key| suite.open(key, &nonce, &aad, ciphertext))?;
        // Any authenticated message from the responder proves it has the session.
        if self.role == HandshakeRole::Initiator {
            self.pending_prefix = None;
        }
        Ok(body)
    }

    /// AEAD associated data: both identities (X25519 and Ed25519 keys),
    /// then the prefix (if any), then the header.
    fn associated_data(&self, prefix: &[u8], header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(2 * PeerIdentity::LEN + prefix.len() + header.len());
        aad.extend_from_slice(&self.initiator_identity.to_bytes());
        aad.extend_from_slice(&self.responder_identity.to_bytes());
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

    /// The peer's identity: its X25519 identity key and its Ed25519 signing
    /// key, both bound into the handshake transcript.
    pub fn peer_identity(&self) -> PeerIdentity {
        match self.role {
            HandshakeRole::Initiator => self.responder_identity,
            HandshakeRole::Responder => self.initiator_identity,
        }
    }

    /// Our own identity in this session.
    fn own_identity(&self) -> PeerIdentity {
        match self.role {
            HandshakeRole::Initiator => self.initiator_identity,
            HandshakeRole::Responder => self.responder_identity,
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

    /// True once the peer has shown that it received one of our messages: a
    /// message of the peer came on a chain derived from a ratchet key we
    /// generated and sent. For the initiator that is any reply; for the
    /// responder, a message sent after our first reply arrived. A responder
    /// session that is not confirmed may have been opened by anyone holding
    /// our prekey bundle, or by a replay.
    pub fn peer_confirmed(&self) -> bool {
        self.ratchet.peer_confirmed()
    }

    /// The routing tags of every message this session can open next (the
    /// skipped ones, and [`crate::TAG_WINDOW`] ahead in the current receiving
    /// chain and in the next one), for a caller that holds many sessions and
    /// finds a message's session by its [`MessageTag`].
    ///
    /// Kept up to date as messages are decrypted; the first call after a
    /// restore computes `2 × TAG_WINDOW` HMACs, later ones about one per
    /// message received (and `TAG_WINDOW` per new chain).
    pub fn expected_tags(&mut self) -> Result<Vec<MessageTag>, SessionError> {
        Ok(self
            .ratchet
            .expected_tags()?
            .into_iter()
            .map(MessageTag)
            .collect())
    }

    /// The routing tags that became expected since the previous call: about
    /// one per message received, [`crate::TAG_WINDOW`] more per new
    /// receiving chain, and the keys skipped beyond the window. The first
    /// call (also after a restore), or one after thousands of changes,
    /// returns every expected tag instead: the answer may hold more than
    /// what is new, never less. Tags that stop being expected (their
    /// message came) are not reported; a table fed from here keeps them
    /// until it is rebuilt from [`Session::expected_tags`], and a message
    /// sent to a stale tag is refused by the session as a duplicate.
    pub fn take_new_tags(&mut self) -> Result<Vec<MessageTag>, SessionError> {
        Ok(self
            .ratchet
            .take_new_tags()?
            .into_iter()
            .map(MessageTag)
            .collect())
    }

    /// Signs `statement` with our Ed25519 identity key, bound to this
    /// session: the signature covers a label, the handshake id, our identity,
    /// the peer's identity and the statement, so it means nothing in another
    /// session or from another signer. Deterministic (Ed25519): the same
    /// statement in the same session gives the same bytes.
    ///
    /// The peer can show the signature to others as proof that we made the
    /// statement to it (it is not deniable, unlike messages).
    pub fn sign_statement(
        &self,
        identity: &LocalIdentity,
        statement: &[u8],
    ) -> Result<[u8; SIGNATURE_LEN], SessionError> {
        let own = self.own_identity();
        if identity.public() != own {
            return Err(SessionError::IdentityMismatch);
        }
        Ok(identity.sign(&self.statement_message(&own, &self.peer_identity(), statement)))
    }

    /// Verifies a statement the peer signed in this session
    /// ([`Session::sign_statement`] on its side) with the peer's Ed25519 key.
    pub fn verify_statement(
        &self,
        statement: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), SessionError> {
        let peer = self.peer_identity();
        let message = self.statement_message(&peer, &self.own_identity(), statement);
        if peer.verify(&message, signature) {
            Ok(())
        } else {
            Err(SessionError::BadStatementSignature)
        }
    }

    /// `LABEL_STATEMENT || handshake id || signer || other || len(statement) u32 || statement`.
    fn statement_message(
        &self,
        signer: &PeerIdentity,
        other: &PeerIdentity,
        statement: &[u8],
    ) -> Vec<u8> {
        let mut message = Vec::with_capacity(
            LABEL_STATEMENT.len() + 32 + 2 * PeerIdentity::LEN + 4 + statement.len(),
        );
        message.extend_from_slice(LABEL_STATEMENT);
        message.extend_from_slice(&self.handshake_id);
        message.extend_from_slice(&signer.to_bytes());
        message.extend_from_slice(&other.to_bytes());
        // Statements are short: a length above u32::MAX cannot be built in memory here.
        message.extend_from_slice(&(statement.len() as u32).to_be_bytes());
        message.extend_from_slice(statement);
        message
    }

    /// Test hook: whether any key an attacker can derive from this state
    /// (see `Ratchet::attacker_keys`) opens `message`.
    #[cfg(test)]
    pub(crate) fn attacker_opens(&self, message: &[u8], depth: u32) -> bool {
        let (prefix, inner) = if message.get(1).is_some_and(|&kind| is_initial_kind(kind)) {
            let (_, len) = InitialPrefix::decode(message).unwrap();
            message.split_at(len)
        } else {
            (&[][..], message)
        };
        let (wire, ciphertext) = WireHeader::parse(inner).unwrap();
        let aad = self.associated_data(prefix, wire.bytes);
        self.ratchet
            .attacker_keys(depth)
            .iter()
            .any(|key| self.suite.open(key, &wire.nonce, &aad, ciphertext).is_ok())
    }

    /// Our current ratchet public key: it changes at each DH ratchet step
    /// of our sending side (the peer reads it from the encrypted headers).
    pub fn own_ratchet_key(&self) -> [u8; 32] {
        self.ratchet.own_public()
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
