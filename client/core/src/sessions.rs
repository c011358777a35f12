//! End-to-end sessions between clients: the book of sessions, contacts and
//! address cards that sits between the application and the client core.
//!
//! The core moves opaque bytes; everything the application sends passes
//! through [`SessionBook::seal`] first and everything it receives through
//! [`SessionBook::open`], so gateways and mix nodes only ever carry `e2ee`
//! ciphertext (docs/e2ee.md, "In the client").
//!
//! Why a book and not one session per address: the mixnet envelope carries
//! no sender (a gateway that reads frames must not learn who writes to its
//! client), so a ratchet message does not say which session it belongs to.
//! Initial messages are routed by their handshake id; every other message
//! carries a routing hint, an HMAC of its ratchet key under a key only the
//! two ends of the session hold, so the book finds the session with one
//! HMAC per session instead of a Diffie-Hellman per session, and outsiders
//! learn nothing from the hint. Sessions are bounded ([`MAX_SESSIONS`]).
//!
//! On the wire (inside the client envelope) each message is
//! `routing hint (16) || e2ee message`, and the plaintext inside the `e2ee`
//! message is `version (1) || flags (1) || [sender address (64) if flags & 1]
//! || [routing key (32) if flags & 2] || content`, so a recipient learns where
//! to write back from the authenticated session, never from the network.
//!
//! The book is sans-IO: time and randomness come in as arguments; the async
//! shell seals it ([`e2ee::StateStore`]) into the data folder after every
//! change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use e2ee::{
    HandshakeRole, InitialInfo, LocalIdentity, PrekeyBundle, PrekeySecrets, Session, SessionError,
    UnixSeconds,
};
use hmac::{Hmac, KeyInit, Mac};
use protocol::{ClientAddress, NodeId};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

/// Version byte of the plaintext inside a session message.
pub const CONTENT_VERSION: u8 = 1;
/// Most sessions a book keeps; the least recently used goes first.
pub const MAX_SESSIONS: usize = 256;
/// Handshake ids of dropped sessions remembered, so a replayed initial
/// message cannot start a session again.
pub const MAX_RETIRED_HANDSHAKES: usize = 4096;
/// Version byte of a serialized book.
const BOOK_VERSION: u8 = 1;
const FLAG_SENDER: u8 = 1;
const FLAG_ROUTING_KEY: u8 = 2;
/// Length of a ratchet public key in a message header.
const RATCHET_KEY_LEN: usize = 32;
/// Length of the routing hint before each session message.
pub const HINT_LEN: usize = 16;
const ROUTING_KEY_LEN: usize = 32;
/// Chain hints remembered for routing (cleared when full; rebuilt as messages come).
const MAX_KNOWN_HINTS: usize = 4 * MAX_SESSIONS;
const HINT_LABEL: &[u8] = b"mixnet-client/v1 routing hint";
const ADDRESS_LEN: usize = 64;

/// A client's address together with its prekey bundle: what a correspondent
/// needs to start a session. Text form: `<address>/<base58 bundle>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressCard {
    /// Where the client's mailbox is.
    pub address: ClientAddress,
    /// The client's signed prekeys (verified when the card is parsed).
    pub bundle: PrekeyBundle,
}

impl fmt::Display for AddressCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.address,
            bs58::encode(self.bundle.encode()).into_string()
        )
    }
}

/// Why an address card could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CardError {
    /// No `/` between the address and the bundle.
    #[error("an address card is <address>/<bundle>; this has no bundle")]
    MissingBundle,
    /// The address part does not parse.
    #[error("bad address: {0}")]
    Address(String),
    /// The bundle is not base58, or fails its checks (signature, suite, length).
    #[error("bad prekey bundle: {0}")]
    Bundle(String),
}

impl FromStr for AddressCard {
    type Err = CardError;

    fn from_str(s: &str) -> Result<Self, CardError> {
        let (address, bundle) = s.trim().split_once('/').ok_or(CardError::MissingBundle)?;
        let address =
            ClientAddress::from_str(address).map_err(|e| CardError::Address(e.to_string()))?;
        let bytes = bs58::decode(bundle)
            .into_vec()
            .map_err(|e| CardError::Bundle(e.to_string()))?;
        let bundle = PrekeyBundle::decode(&bytes).map_err(|e| CardError::Bundle(e.to_string()))?;
        Ok(AddressCard { address, bundle })
    }
}

/// Why a message could not be sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SessionBookError {
    /// No session with this address and no address card to start one.
    #[error("no session with {0}: add its address card first")]
    NoSession(String),
    /// No session has this handshake id (it was dropped).
    #[error("the session of this reply handle is gone")]
    UnknownSession,
    /// No session opens the message.
    #[error("no session opens this message")]
    NoMatchingSession,
    /// An initial message of a handshake this book dropped before.
    #[error("an initial message of a retired handshake")]
    RetiredHandshake,
    /// The plaintext inside a session message does not parse.
    #[error("malformed session content")]
    BadContent,
    /// The `e2ee` layer refused the message (tampered, duplicate, expired...).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The book's state could not be encoded or decoded.
    #[error("session book state: {0}")]
    State(&'static str),
}

impl SessionBookError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionBookError::NoSession(_) => "no_session",
            SessionBookError::UnknownSession => "unknown_session",
            SessionBookError::NoMatchingSession => "no_matching_session",
            SessionBookError::RetiredHandshake => "retired_handshake",
            SessionBookError::BadContent => "bad_content",
            SessionBookError::Session(SessionError::DuplicateMessage) => "duplicate",
            SessionBookError::Session(SessionError::Expired { .. }) => "expired",
            SessionBookError::Session(_) => "refused",
            SessionBookError::State(_) => "state",
        }
    }
}

/// A message opened by [`SessionBook::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The session it came on (give it back to [`SessionBook::seal_in`] to answer).
    pub session: SessionId,
    /// The sender's long-term identity, authenticated by the session.
    pub peer: PeerIdentityKey,
    /// The sender's address, when the sender gave one and it is not pinned
    /// to another identity.
    pub from: Option<ClientAddress>,
    /// The application's bytes.
    pub content: Vec<u8>,
}

/// A session's handshake id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

/// A peer's long-term X25519 identity key (what a user compares out of band).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerIdentityKey(pub [u8; 32]);

impl fmt::Display for PeerIdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for PeerIdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerIdentityKey({self})")
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    session: Session,
    peer: PeerIdentityKey,
    address: Option<ClientAddress>,
    /// A counter of the book's operations at the last use (higher = more recent).
    used: u64,
    /// Keys the session's routing hints (chosen by the initiator, sent inside its first messages).
    routing: RoutingKey,
}

/// The secret behind a session's routing hints; wiped on drop.
#[derive(Clone, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct RoutingKey([u8; ROUTING_KEY_LEN]);

impl RoutingKey {
    /// The hint for a message whose ratchet key is `ratchet_key`.
    fn hint(&self, ratchet_key: &[u8]) -> [u8; HINT_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(HINT_LABEL);
        mac.update(ratchet_key);
        let tag = mac.finalize().into_bytes();
        let mut hint = [0u8; HINT_LEN];
        hint.copy_from_slice(tag.get(..HINT_LEN).unwrap_or(&[0; HINT_LEN]));
        hint
    }
}

/// A contact: an address with the identity pinned to it, and the bundle
/// to start a session when it came with an address card.
#[derive(Clone, Serialize, Deserialize)]
struct Contact {
    identity: PeerIdentityKey,
    bundle: Option<Vec<u8>>,
}

/// The sessions, contacts and long-term keys of one client.
#[derive(Serialize, Deserialize)]
pub struct SessionBook {
    identity: LocalIdentity,
    prekeys: PrekeySecrets,
    sessions: BTreeMap<SessionId, Entry>,
    contacts: HashMap<ClientAddress, Contact>,
    retired: VecDeque<SessionId>,
    clock: u64,
    /// Hints of chains already opened (a chain keeps its hint), so that
    /// only a message on a new chain computes every session's hint.
    #[serde(skip)]
    known_hints: HashMap<[u8; HINT_LEN], SessionId>,
}

impl fmt::Debug for SessionBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBook")
            .field("sessions", &self.sessions.len())
            .field("contacts", &self.contacts.len())
            .finish_non_exhaustive()
    }
}

impl SessionBook {
    /// A new book with fresh identity keys and prekeys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        SessionBook {
            identity: LocalIdentity::generate(rng),
            prekeys: PrekeySecrets::generate(rng, 1, 1),
            sessions: BTreeMap::new(),
            contacts: HashMap::new(),
            retired: VecDeque::new(),
            clock: 0,
            known_hints: HashMap::new(),
        }
    }

    /// This client's address card for `address`.
    pub fn card(&self, address: ClientAddress) -> AddressCard {
        AddressCard {
            address,
            bundle: self.identity.bundle(&self.prekeys),
        }
    }

    /// This client's long-term identity key.
    pub fn identity(&self) -> PeerIdentityKey {
        PeerIdentityKey(self.identity.public().dh)
    }

    /// Number of sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Records `card` as a contact: later messages to its address start a
    /// session with its bundle, and its identity is pinned to the address.
    pub fn add_contact(&mut self, card: &AddressCard) {
        self.contacts.insert(
            card.address,
            Contact {
                identity: PeerIdentityKey(card.bundle.identity().dh),
                bundle: Some(card.bundle.encode()),
            },
        );
    }

    /// Encrypts `content` for `to`: in the most recently used session with
    /// that address, or in a new one started from its address card.
    /// `own` is this client's address, sent inside so the peer can answer.
    pub fn seal(
        &mut self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        own: Option<&ClientAddress>,
        content: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionBookError> {
        let pinned = self.contacts.get(to).map(|c| c.identity);
        let existing = self
            .sessions
            .iter()
            .filter(|(_, e)| e.address.as_ref() == Some(to) && Some(e.peer) == pinned)
            .max_by_key(|(_, e)| e.used)
            .map(|(id, _)| *id);
        let id = match existing {
            Some(id) => id,
            None => self.initiate(rng, to, own == Some(to))?,
        };
        self.seal_in(rng, id, own, content, expires_at)
    }

    /// Encrypts `content` in session `id` (e.g. to answer a message through
    /// its reply SURBs).
    pub fn seal_in(
        &mut self,
        rng: &mut impl CryptoRng,
        id: SessionId,
        own: Option<&ClientAddress>,
        content: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionBookError> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionBookError::UnknownSession)?;
        // The routing key travels inside the messages that carry the
        // handshake, so the responder has it from the first one it opens.
        let routing = entry.session.awaiting_reply().then_some(&entry.routing);
        let plaintext = encode_content(own, routing, content);
        let sealed = entry.session.encrypt(rng, &plaintext, expires_at)?;
        entry.used = clock;
        let mut hint = [0u8; HINT_LEN];
        match sealed.get(2..2 + RATCHET_KEY_LEN) {
            Some(key) if InitialInfo::parse(&sealed)?.is_none() => {
                hint = entry.routing.hint(key);
            }
            // An initial message is found by its handshake id.
            _ => rng.fill_bytes(&mut hint),
        }
        let mut out = Vec::with_capacity(HINT_LEN + sealed.len());
        out.extend_from_slice(&hint);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Starts a session with `to` from its card (or, for a note to self, our own bundle).
    fn initiate(
        &mut self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        to_self: bool,
    ) -> Result<SessionId, SessionBookError> {
        let bundle = match self.contacts.get(to).and_then(|c| c.bundle.as_deref()) {
            Some(bundle) => PrekeyBundle::decode(bundle)?,
            None if to_self => self.identity.bundle(&self.prekeys),
            None => return Err(SessionBookError::NoSession(to.to_string())),
        };
        let session = Session::initiate(rng, &self.identity, &bundle)?;
        let id = SessionId(session.handshake_id());
        let mut routing = RoutingKey([0; ROUTING_KEY_LEN]);
        rng.fill_bytes(&mut routing.0);
        self.insert(id, session, Some(*to), routing);
        Ok(id)
    }

    /// Adds a session as the most recently used; drops the least recently
    /// used beyond [`MAX_SESSIONS`].
    fn insert(
        &mut self,
        id: SessionId,
        session: Session,
        address: Option<ClientAddress>,
        routing: RoutingKey,
    ) {
        self.clock += 1;
        let entry = Entry {
            peer: PeerIdentityKey(session.peer_identity()),
            session,
            address,
            used: self.clock,
            routing,
        };
        self.sessions.insert(id, entry);
        while self.sessions.len() > MAX_SESSIONS {
            let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.sessions.remove(&oldest);
            self.retire(oldest);
        }
    }

    fn retire(&mut self, id: SessionId) {
        self.retired.push_back(id);
        while self.retired.len() > MAX_RETIRED_HANDSHAKES {
            self.retired.pop_front();
        }
    }

    /// Decrypts a message from any peer: an initial message starts (or
    /// continues) the session of its handshake; any other is tried against
    /// the sessions, most recently used first. Duplicates, expired,
    /// tampered and foreign messages are refused and leave the book as it was.
    pub fn open(&mut self, now: UnixSeconds, message: &[u8]) -> Result<Opened, SessionBookError> {
        let (hint, message) = message
            .split_first_chunk::<HINT_LEN>()
            .ok_or(SessionBookError::BadContent)?;
        let (id, plaintext) = match InitialInfo::parse(message)? {
            Some(info) => self.open_initial(now, &info, message)?,
            None => self.open_ratchet(now, hint, message)?,
        };
        let Content { from, content, .. } = decode_content(&plaintext)?;
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionBookError::UnknownSession)?;
        entry.used = clock;
        let peer = entry.peer;
        // The sender's address is believed only if it is not pinned to
        // another identity; a pinned or first-seen address is learned.
        let from = from.filter(|a| self.contacts.get(a).is_none_or(|c| c.identity == peer));
        if let Some(address) = from {
            entry.address = Some(address);
            self.contacts.entry(address).or_insert(Contact {
                identity: peer,
                bundle: None,
            });
        }
        Ok(Opened {
            session: id,
            peer,
            from,
            content,
        })
    }

    fn open_initial(
        &mut self,
        now: UnixSeconds,
        info: &InitialInfo,
        message: &[u8],
    ) -> Result<(SessionId, Zeroizing<Vec<u8>>), SessionBookError> {
        let mut id = SessionId(info.handshake_id);
        let own = self.identity();
        if self
            .sessions
            .get(&id)
            .is_some_and(|e| e.session.role() == HandshakeRole::Initiator && e.peer == own)
        {
            // A note to self: the initiating half is ours too; the
            // responding half lives under another id.
            id = loopback_id(id);
        }
        if let Some(entry) = self.sessions.get_mut(&id) {
            let plaintext = entry.session.decrypt(now, message)?;
            return Ok((id, Zeroizing::new(plaintext)));
        }
        if self.retired.contains(&id) {
            return Err(SessionBookError::RetiredHandshake);
        }
        let mut session = Session::accept(&self.identity, &self.prekeys, message)?;
        let plaintext = Zeroizing::new(session.decrypt(now, message)?);
        // A session whose opening message lacks a routing key could never
        // be found again: refuse it (the message key is spent on a copy).
        let routing = decode_content(&plaintext)?
            .routing
            .ok_or(SessionBookError::BadContent)?;
        self.insert(id, session, None, routing);
        Ok((id, plaintext))
    }

    fn open_ratchet(
        &mut self,
        now: UnixSeconds,
        hint: &[u8; HINT_LEN],
        message: &[u8],
    ) -> Result<(SessionId, Zeroizing<Vec<u8>>), SessionBookError> {
        // The hint names the session without naming it to anyone else: an
        // HMAC of the sender's ratchet key (header bytes 2..34) under the
        // session's routing key. Only sessions whose hint matches are tried
        // (one, but for a 2^-128 collision or a note to self), so a foreign
        // message costs one HMAC per session and no Diffie-Hellman.
        let ratchet_key = message
            .get(2..2 + RATCHET_KEY_LEN)
            .ok_or(SessionBookError::NoMatchingSession)?;
        let known = self
            .known_hints
            .get(hint)
            .copied()
            .filter(|id| self.sessions.contains_key(id));
        if let Some(id) = known {
            match self.try_open(now, id, hint, message) {
                Err(SessionBookError::Session(SessionError::DecryptionFailed)) => {}
                other => return other,
            }
        }
        let mut order: Vec<(u64, SessionId)> = self
            .sessions
            .iter()
            .filter(|(id, e)| Some(**id) != known && &e.routing.hint(ratchet_key) == hint)
            .map(|(id, e)| (e.used, *id))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut verdict = SessionBookError::NoMatchingSession;
        for (_, id) in order {
            match self.try_open(now, id, hint, message) {
                Ok(opened) => return Ok(opened),
                Err(e) => verdict = e,
            }
        }
        Err(verdict)
    }

    /// Opens `message` in session `id` and remembers its chain's hint.
    fn try_open(
        &mut self,
        now: UnixSeconds,
        id: SessionId,
        hint: &[u8; HINT_LEN],
        message: &[u8],
    ) -> Result<(SessionId, Zeroizing<Vec<u8>>), SessionBookError> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionBookError::UnknownSession)?;
        let plaintext = Zeroizing::new(entry.session.decrypt(now, message)?);
        if self.known_hints.len() >= MAX_KNOWN_HINTS {
            self.known_hints.clear();
        }
        self.known_hints.insert(*hint, id);
        Ok((id, plaintext))
    }

    /// Serializes the whole book (secret: seal it before storing it).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, SessionBookError> {
        let mut out = Zeroizing::new(vec![BOOK_VERSION]);
        let body = Zeroizing::new(
            postcard::to_stdvec(self).map_err(|_| SessionBookError::State("serialize"))?,
        );
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restores a book written by [`SessionBook::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionBookError> {
        let (version, body) = bytes
            .split_first()
            .ok_or(SessionBookError::State("empty"))?;
        if *version != BOOK_VERSION {
            return Err(SessionBookError::State("unknown version"));
        }
        let (book, rest) = postcard::take_from_bytes::<Self>(body)
            .map_err(|_| SessionBookError::State("deserialize"))?;
        if !rest.is_empty() {
            return Err(SessionBookError::State("trailing bytes"));
        }
        Ok(book)
    }
}

/// The id of the responding half of a session with ourselves.
fn loopback_id(id: SessionId) -> SessionId {
    let mut bytes = id.0;
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    SessionId(bytes)
}

fn encode_content(
    own: Option<&ClientAddress>,
    routing: Option<&RoutingKey>,
    content: &[u8],
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        2 + ADDRESS_LEN + ROUTING_KEY_LEN + content.len(),
    ));
    out.push(CONTENT_VERSION);
    let flags = own.map_or(0, |_| FLAG_SENDER) | routing.map_or(0, |_| FLAG_ROUTING_KEY);
    out.push(flags);
    if let Some(address) = own {
        out.extend_from_slice(&address.client_key);
        out.extend_from_slice(&address.gateway.0);
    }
    if let Some(routing) = routing {
        out.extend_from_slice(&routing.0);
    }
    out.extend_from_slice(content);
    out
}

/// The plaintext inside a session message.
struct Content {
    from: Option<ClientAddress>,
    routing: Option<RoutingKey>,
    content: Vec<u8>,
}

fn decode_content(plaintext: &[u8]) -> Result<Content, SessionBookError> {
    let [version, flags, rest @ ..] = plaintext else {
        return Err(SessionBookError::BadContent);
    };
    if *version != CONTENT_VERSION || flags & !(FLAG_SENDER | FLAG_ROUTING_KEY) != 0 {
        return Err(SessionBookError::BadContent);
    }
    let mut rest = rest;
    let mut from = None;
    if flags & FLAG_SENDER != 0 {
        let (key, tail) = rest
            .split_first_chunk::<32>()
            .ok_or(SessionBookError::BadContent)?;
        let (gateway, tail) = tail
            .split_first_chunk::<32>()
            .ok_or(SessionBookError::BadContent)?;
        from = Some(ClientAddress {
            client_key: *key,
            gateway: NodeId(*gateway),
        });
        rest = tail;
    }
    let mut routing = None;
    if flags & FLAG_ROUTING_KEY != 0 {
        let (key, tail) = rest
            .split_first_chunk::<ROUTING_KEY_LEN>()
            .ok_or(SessionBookError::BadContent)?;
        routing = Some(RoutingKey(*key));
        rest = tail;
    }
    Ok(Content {
        from,
        routing,
        content: rest.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn address(n: u8) -> ClientAddress {
        ClientAddress {
            client_key: [n; 32],
            gateway: NodeId([n + 100; 32]),
        }
    }

    const NOW: UnixSeconds = UnixSeconds(1_000_000);

    #[test]
    fn card_text_round_trips_and_refuses_a_bad_bundle() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let book = SessionBook::generate(&mut rng);
        let card = book.card(address(1));
        let text = card.to_string();
        assert_eq!(text.parse::<AddressCard>().unwrap(), card);
        assert_eq!(
            address(1).to_string().parse::<AddressCard>(),
            Err(CardError::MissingBundle)
        );
        // One character of the bundle changed: its signature fails.
        let mut bad = text.clone().into_bytes();
        let last = bad.len() - 5;
        bad[last] = if bad[last] == b'2' { b'3' } else { b'2' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(matches!(
            bad.parse::<AddressCard>(),
            Err(CardError::Bundle(_))
        ));
    }

    #[test]
    fn a_conversation_learns_the_sender_and_survives_serialization() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut alice = SessionBook::generate(&mut rng);
        let mut bob = SessionBook::generate(&mut rng);
        let (a, b) = (address(1), address(2));
        assert!(matches!(
            alice.seal(&mut rng, &b, Some(&a), b"hi", None),
            Err(SessionBookError::NoSession(_))
        ));
        alice.add_contact(&bob.card(b));
        let first = alice.seal(&mut rng, &b, Some(&a), b"hi", None).unwrap();
        let opened = bob.open(NOW, &first).unwrap();
        assert_eq!(opened.content, b"hi");
        assert_eq!(opened.from, Some(a));
        assert_eq!(opened.peer, alice.identity());
        // The same message again is refused, also after a restart of both.
        let mut bob = SessionBook::from_bytes(&bob.to_bytes().unwrap()).unwrap();
        let mut alice = SessionBook::from_bytes(&alice.to_bytes().unwrap()).unwrap();
        assert_eq!(bob.open(NOW, &first).unwrap_err().reason(), "duplicate");
        // Bob writes to Alice's address, learned from the session.
        let back = bob.seal(&mut rng, &a, Some(&b), b"hello", None).unwrap();
        let opened = alice.open(NOW, &back).unwrap();
        assert_eq!(
            (opened.content.as_slice(), opened.from),
            (&b"hello"[..], Some(b))
        );
        let again = alice.seal(&mut rng, &b, Some(&a), b"again", None).unwrap();
        assert!(InitialInfo::parse(&again[HINT_LEN..]).unwrap().is_none());
        assert_eq!(bob.open(NOW, &again).unwrap().content, b"again");
        assert_eq!((alice.session_count(), bob.session_count()), (1, 1));
    }

    #[test]
    fn expired_foreign_and_malformed_messages_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut alice = SessionBook::generate(&mut rng);
        let mut bob = SessionBook::generate(&mut rng);
        let mut eve = SessionBook::generate(&mut rng);
        let b = address(2);
        alice.add_contact(&bob.card(b));
        let expiring = alice
            .seal(
                &mut rng,
                &b,
                None,
                b"soon gone",
                Some(UnixSeconds(NOW.0 + 5)),
            )
            .unwrap();
        assert_eq!(
            bob.open(UnixSeconds(NOW.0 + 5), &expiring)
                .unwrap_err()
                .reason(),
            "expired"
        );
        let fine = alice.seal(&mut rng, &b, None, b"x", None).unwrap();
        let opened = bob.open(NOW, &fine).unwrap();
        assert_eq!(opened.from, None);
        // Eve holds no session: neither initial nor ratchet messages open.
        assert!(eve.open(NOW, &fine).is_err());
        let reply = bob
            .seal_in(&mut rng, opened.session, None, b"r", None)
            .unwrap();
        assert_eq!(
            eve.open(NOW, &reply).unwrap_err(),
            SessionBookError::NoMatchingSession
        );
        assert_eq!(alice.open(NOW, &reply).unwrap().content, b"r");
        for bad in [&[][..], &[1][..], &[1, 2, 3][..], &[0xff; 200][..]] {
            assert!(bob.open(NOW, bad).is_err());
        }
    }

    #[test]
    fn a_note_to_self_opens_and_can_be_answered() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let mut me = SessionBook::generate(&mut rng);
        let a = address(1);
        let note = me.seal(&mut rng, &a, Some(&a), b"note", None).unwrap();
        let opened = me.open(NOW, &note).unwrap();
        assert_eq!(
            (opened.content.as_slice(), opened.from),
            (&b"note"[..], Some(a))
        );
        let answer = me
            .seal_in(&mut rng, opened.session, None, b"answer", None)
            .unwrap();
        assert_eq!(me.open(NOW, &answer).unwrap().content, b"answer");
        let second = me.seal(&mut rng, &a, Some(&a), b"second", None).unwrap();
        assert_eq!(me.open(NOW, &second).unwrap().content, b"second");
    }

    #[test]
    fn a_claimed_address_pinned_to_another_identity_is_not_believed() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut alice = SessionBook::generate(&mut rng);
        let mut bob = SessionBook::generate(&mut rng);
        let mut mallory = SessionBook::generate(&mut rng);
        let (a, b) = (address(1), address(2));
        bob.add_contact(&alice.card(a));
        mallory.add_contact(&bob.card(b));
        alice.add_contact(&bob.card(b));
        let forged = mallory
            .seal(&mut rng, &b, Some(&a), b"I am alice", None)
            .unwrap();
        assert_eq!(bob.open(NOW, &forged).unwrap().from, None);
        let real = alice.seal(&mut rng, &b, Some(&a), b"me", None).unwrap();
        assert_eq!(bob.open(NOW, &real).unwrap().from, Some(a));
    }

    #[test]
    fn a_retired_handshake_cannot_start_a_session_again() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut bob = SessionBook::generate(&mut rng);
        let b = address(2);
        let mut firsts = Vec::new();
        for n in 0..=MAX_SESSIONS {
            let mut peer = SessionBook::generate(&mut rng);
            peer.add_contact(&bob.card(b));
            let m = peer.seal(&mut rng, &b, None, &[n as u8], None).unwrap();
            bob.open(NOW, &m).unwrap();
            firsts.push(m);
        }
        assert_eq!(bob.session_count(), MAX_SESSIONS);
        assert_eq!(
            bob.open(NOW, &firsts[0]).unwrap_err(),
            SessionBookError::RetiredHandshake
        );
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        /// Alice and Bob in an established session, and messages of both kinds.
        fn pair() -> (SessionBook, SessionBook, Vec<u8>, Vec<u8>) {
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            let mut alice = SessionBook::generate(&mut rng);
            let mut bob = SessionBook::generate(&mut rng);
            let b = address(2);
            alice.add_contact(&bob.card(b));
            let initial = alice.seal(&mut rng, &b, None, b"first", None).unwrap();
            let opened = bob.open(NOW, &initial).unwrap();
            let reply = bob
                .seal_in(&mut rng, opened.session, None, b"reply", None)
                .unwrap();
            alice.open(NOW, &reply).unwrap();
            let ratchet = alice.seal(&mut rng, &b, None, b"second", None).unwrap();
            let next = alice.seal(&mut rng, &b, None, b"third", None).unwrap();
            (alice, bob, ratchet, next)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn random_bytes_never_open_and_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
                let (_, mut bob, _, _) = pair();
                prop_assert!(bob.open(NOW, &bytes).is_err());
            }

            #[test]
            fn a_tampered_or_truncated_message_is_refused_and_the_real_one_still_opens(
                flip in 0usize..2000, bit in 0u8..8, cut in 0usize..200, truncate in any::<bool>(),
            ) {
                let (_, mut bob, ratchet, next) = pair();
                let mut bad = ratchet.clone();
                if truncate {
                    bad.truncate(bad.len().saturating_sub(cut + 1));
                } else {
                    let at = flip % bad.len();
                    bad[at] ^= 1 << bit;
                }
                prop_assert!(bob.open(NOW, &bad).is_err());
                prop_assert_eq!(bob.open(NOW, &ratchet).unwrap().content, b"second".to_vec());
                prop_assert_eq!(bob.open(NOW, &ratchet).unwrap_err().reason(), "duplicate");
                prop_assert_eq!(bob.open(NOW, &next).unwrap().content, b"third".to_vec());
            }
        }
    }
}
