//! End-to-end sessions between clients: the book of sessions, contacts and
//! address cards that sits between the application and the client core.
//!
//! The core moves opaque bytes; everything the application sends passes
//! through [`SessionBook::seal`] first and everything it receives through
//! [`SessionBook::open`], so gateways and mix nodes only ever carry `e2ee`
//! ciphertext (docs/e2ee.md, "In the client").
//!
//! Why a book and not one session per address: the mixnet envelope carries
//! no sender (a gateway must not learn who writes to its client), so a
//! message does not say which session it belongs to. Initial messages are
//! routed by their handshake id; every other message leads with a routing
//! tag that is new for every message and that only its recipient predicts
//! ([`e2ee::MessageTag`]): the book keeps the tags each session expects in
//! one table (`sessions/routes.rs`), so a message costs one lookup, a
//! message no session expects costs no cryptography, and nothing in a
//! message links it to another one.
//!
//! Sessions live in two pools with separate budgets: sessions opened by
//! others and not yet answered ([`MAX_UNANSWERED`], anyone holding the card
//! can open them) evict only each other; established ones (ours, or
//! answered: [`e2ee::Session::peer_confirmed`]) are evicted only by least
//! recent use among themselves ([`MAX_SESSIONS`]). Every first message
//! accepted is recorded for as long as its prekey lives
//! (`sessions/replay.rs`), so a recorded one is refused however many
//! handshakes came in between.
//!
//! Prekeys rotate (`sessions/prekeys.rs`): the shell asks
//! [`SessionBook::rotate_if_due`] with the time now; retired prekeys stay
//! until their card expires, so first messages made from an older card
//! still open, and are then erased with their replay record. Each
//! correspondent of an established session is then sent the new bundle
//! inside its session ([`SessionBook::announcements`]), an ordinary message
//! whose content its book keeps instead of delivering.
//!
//! On the wire (inside the client envelope) each message is an `e2ee`
//! message; the plaintext inside it (`sessions/content.rs`) may carry the
//! sender's address claim, signed by its identity within the session, and a
//! claim is believed only once that signature verifies.
//!
//! The book is sans-IO: time and randomness come in as arguments; the async
//! shell seals it ([`e2ee::StateStore`]) into the data folder after every
//! change, and before any message it sealed leaves.

mod card;
mod content;
mod names;
mod one_time;
mod prekeys;
mod published;
pub mod recalls;
mod replay;
mod rotation;
mod routes;
mod safety;
mod short;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub use card::{AddressCard, CardError, PeerIdentityKey};
pub use content::{CLAIM_LEN, CONTENT_VERSION};
use content::{Content, SenderClaim, claim_statement};
use e2ee::{
    HandshakeRole, InitialInfo, LocalIdentity, MessageTag, PrekeyBundle, PrekeySecrets, Session,
    SessionError, SignedOneTimePrekey, UnixSeconds,
};
pub use names::{ContactError, ContactName, MAX_NAME_LEN, NamedContact};
pub use one_time::MAX_HELD as MAX_ONE_TIME_HELD;
use one_time::OneTimePrekeys;
use prekeys::PrekeyRing;
pub use prekeys::{Rotation, RotationSchedule};
use protocol::fragment::MessageId;
use protocol::{ClientAddress, NodeId};
pub use published::{PublishedBundle, PublishedError};
use rand::CryptoRng;
pub use recalls::{NoticeVerdict, RecallBook, RecallError, RecallTicket};
use replay::ReplayRecord;
pub use rotation::utc;
use routes::TagRoutes;
pub use safety::SafetyNumber;
use serde::{Deserialize, Serialize};
pub use short::{
    FINGERPRINT_LEN, IdentityFingerprint, SHORT_ADDRESS_LEN, ShortAddress, ShortAddressError,
};
use thiserror::Error;
use zeroize::Zeroizing;

/// Most established sessions a book keeps (ours, or answered by their
/// peer); the least recently used goes first, and only for another
/// established one.
pub const MAX_SESSIONS: usize = 256;
/// Most sessions a book keeps under pseudonyms ([`SessionBook::seal_as`]);
/// the least recently used goes first, and only for another pseudonymous one.
pub const MAX_PSEUDONYMOUS: usize = 256;
/// Most unanswered sessions a book keeps: opened by others' first messages
/// and not yet confirmed by a message sent after our reply. The least
/// recently used goes first, and only for another unanswered one.
pub const MAX_UNANSWERED: usize = 128;
/// First messages recorded per signed prekey at the design false-refusal
/// rate (below 3·10⁻⁶); beyond, the record keeps refusing every recorded
/// message but refuses more new ones by mistake.
pub const REPLAY_CAPACITY: u64 = replay::CAPACITY;
/// Version byte of a serialized book.
const BOOK_VERSION: u8 = 5;
/// Version byte of a book written before one-time prekeys.
const BOOK_VERSION_4: u8 = 4;
/// Version byte of a book written before prekey rotation and recall records.
const BOOK_VERSION_3: u8 = 3;
/// Version byte of a book written before named contacts.
const BOOK_VERSION_2: u8 = 2;
/// Version byte of a book written before format 2 of `e2ee`.
const BOOK_VERSION_1: u8 = 1;
/// What the key of the replay record is derived for (from the identity).
const REPLAY_KEY_PURPOSE: &[u8] = b"mixnet-client/v2 replay record";

/// Why a message could not be sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SessionBookError {
    /// No session with this address and no address card to start one.
    #[error("no session with {0}: add its address card first")]
    NoSession(String),
    /// The address card (prekey bundle) of `address` has expired: its owner
    /// erased the prekeys in it, a session started from it would never be read.
    #[error(
        "the address card of {address} expired at {} (unix {}): its owner no longer \
         opens first messages made from it; ask them for their current card \
         (`mixnet-client address` prints it)",
        utc(*expired_at),
        expired_at.0
    )]
    CardExpired {
        /// The card's address.
        address: String,
        /// When it expired.
        expired_at: UnixSeconds,
    },
    /// A first message names prekeys this book does not hold: erased after
    /// their grace period (the sender used an expired card), or never ours.
    #[error(
        "a first message made with signed prekey {spk_id}, which this client erased or never \
         held: its sender used an expired or foreign card and needs the current one"
    )]
    UnknownPrekey {
        /// The signed prekey id the message names.
        spk_id: u32,
    },
    /// A first message names a one-time prekey this book does not hold:
    /// used already (a replay), or dropped as the oldest of too many.
    #[error(
        "a first message made with one-time prekey {id}, which this client used already or \
         no longer holds"
    )]
    UnknownOneTimePrekey {
        /// The one-time prekey id the message names.
        id: u32,
    },
    /// A bundle a gateway served for a short address was refused.
    #[error(transparent)]
    Published(#[from] PublishedError),
    /// No card, session or bundle of the identity a short address names.
    #[error(
        "no bundle is known for {0}: nothing reached it yet; add its address card \
         (`contacts add NAME CARD`)"
    )]
    UnknownShortAddress(String),
    /// A named contact could not be added, found or removed.
    #[error(transparent)]
    Contact(#[from] ContactError),
    /// No session has this handshake id (it was dropped).
    #[error("the session of this reply handle is gone")]
    UnknownSession,
    /// No session expects the message.
    #[error("no session opens this message")]
    NoMatchingSession,
    /// An initial message of a handshake this book accepted before.
    #[error("an initial message of a handshake accepted before (a replay)")]
    ReplayedHandshake,
    /// The plaintext inside a session message does not parse.
    #[error("malformed session content")]
    BadContent,
    /// The advanced session state could not be saved, so the message it
    /// sealed was not sent (sending it could reuse a key after a crash).
    /// Set by the shell that saves the book; the cause is in its log.
    #[error("the session state could not be saved; the message was not sent")]
    StateNotSaved,
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
            SessionBookError::CardExpired { .. } => "card_expired",
            SessionBookError::UnknownPrekey { .. } => "unknown_prekey",
            SessionBookError::UnknownOneTimePrekey { .. } => "unknown_one_time_prekey",
            SessionBookError::Published(_) => "bad_published_bundle",
            SessionBookError::UnknownShortAddress(_) => "unknown_short_address",
            SessionBookError::Contact(_) => "contact",
            SessionBookError::UnknownSession => "unknown_session",
            SessionBookError::NoMatchingSession => "no_matching_session",
            SessionBookError::ReplayedHandshake => "replayed_handshake",
            SessionBookError::BadContent => "bad_content",
            SessionBookError::StateNotSaved => "state_not_saved",
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
    /// The sender's long-term identity (both keys), authenticated by the session.
    pub peer: PeerIdentityKey,
    /// The sender's address: the one it claimed in this session with a
    /// valid signature of its identity (or the one we wrote to), when that
    /// address is not pinned to another identity.
    pub from: Option<ClientAddress>,
    /// The application's bytes.
    pub content: Vec<u8>,
    /// The expiry its sender set, authenticated by the session (`None`: none).
    pub expires_at: Option<UnixSeconds>,
    /// What it was: the application's message, or one of the control
    /// messages not for the application (`content` is then empty).
    pub kind: OpenedKind,
}

/// What an opened message carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenedKind {
    /// Content for the application.
    Message,
    /// The sender's new prekey bundle after a rotation of its prekeys.
    PeerBundle {
        /// Whether it replaced the bundle kept for the sender's address (it
        /// is ignored when it does not parse, is signed by another identity,
        /// expires before the one kept, or the address is not pinned to the sender).
        kept: bool,
    },
    /// A recall notice: the message its sender recalls (judge it with
    /// [`RecallBook::judge_notice`]).
    RecallNotice {
        /// The message recalled.
        recalled: MessageId,
    },
}

/// A session's handshake id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

/// How [`SessionBook::restore`] read a stored book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// A book of the current format.
    Current,
    /// A book of format 1 (before `e2ee` format 2): the identity and the
    /// prekeys were kept (the address card is unchanged); its sessions and
    /// contacts could not be, and are gone. Save the book again.
    UpgradedFromFormat1,
    /// A book of format 2 (before named contacts): everything was kept.
    /// Save the book again.
    UpgradedFromFormat2,
    /// A book of format 3 (before prekey rotation and recall records):
    /// everything was kept; its prekeys have no expiry and retire at the
    /// first [`SessionBook::rotate_if_due`], and messages sent before cannot
    /// be recalled. Save the book again.
    UpgradedFromFormat3,
    /// A book of format 4 (before one-time prekeys): everything was kept;
    /// it has no one-time prekeys yet. Save the book again.
    UpgradedFromFormat4,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    session: Session,
    peer: PeerIdentityKey,
    /// The peer's address: claimed with a valid signature, or the one we wrote to.
    address: Option<ClientAddress>,
    /// A counter of the book's operations at the last use (higher = more recent).
    used: u64,
    /// Our own signed address claim in this session (signed once, reused).
    claim: Option<SenderClaim>,
    /// Started under a throwaway identity for the caller's pseudonym
    /// ([`SessionBook::seal_as`]), not this book's identity.
    pseudonym: Option<Pseudonym>,
}

/// A session as books of format 4 and older kept it (no pseudonym).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EntryFormat4 {
    session: Session,
    peer: PeerIdentityKey,
    address: Option<ClientAddress>,
    used: u64,
    claim: Option<SenderClaim>,
}

impl From<EntryFormat4> for Entry {
    fn from(old: EntryFormat4) -> Self {
        Entry {
            session: old.session,
            peer: old.peer,
            address: old.address,
            used: old.used,
            claim: old.claim,
            pseudonym: None,
        }
    }
}

/// The sessions of `book` as a book of format 4 or older kept them.
#[cfg(test)]
fn format4_sessions(book: &SessionBook) -> BTreeMap<SessionId, EntryFormat4> {
    book.sessions
        .iter()
        .map(|(id, e)| {
            let old = EntryFormat4 {
                session: e.session.clone(),
                peer: e.peer,
                address: e.address,
                used: e.used,
                claim: e.claim,
            };
            (*id, old)
        })
        .collect()
}

/// The sessions of a book of format 4 or older, brought to the current form.
fn upgrade_entries(old: BTreeMap<SessionId, EntryFormat4>) -> BTreeMap<SessionId, Entry> {
    old.into_iter().map(|(id, e)| (id, e.into())).collect()
}

/// Which pool a session counts in for eviction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// Opened by someone else and not answered yet.
    Unanswered,
    /// Ours, or answered.
    Established,
    /// Ours, under a pseudonym.
    Pseudonymous,
}

impl Entry {
    /// Opened by someone else and not answered yet: the pool anyone holding
    /// our card can fill.
    fn is_unanswered(&self) -> bool {
        self.session.role() == HandshakeRole::Responder && !self.session.peer_confirmed()
    }

    fn pool(&self) -> Pool {
        if self.pseudonym.is_some() {
            Pool::Pseudonymous
        } else if self.is_unanswered() {
            Pool::Unanswered
        } else {
            Pool::Established
        }
    }
}

/// A name the caller gives to a throwaway identity: the sessions it starts
/// under it ([`SessionBook::seal_as`]) show their peers that identity, never
/// this book's, and nothing links two pseudonyms to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pseudonym(pub [u8; 16]);

impl Pseudonym {
    /// A fresh random pseudonym.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Pseudonym(bytes)
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
    /// The current prekeys and the retired ones still in their grace.
    prekeys: PrekeyRing,
    sessions: BTreeMap<SessionId, Entry>,
    contacts: HashMap<ClientAddress, Contact>,
    /// Every first message accepted, per signed prekey held.
    replay: ReplayRecord,
    clock: u64,
    /// Contacts by name: the short address of the identity each stands for.
    names: BTreeMap<ContactName, ShortAddress>,
    /// Correspondents still to be sent the current bundle (after a rotation).
    announce: Vec<rotation::Announcement>,
    /// Messages sent that may be recalled, and the senders of messages received.
    recalls: RecallBook,
    /// Our one-time prekeys and the serial of our published bundle.
    one_time: OneTimePrekeys,
    /// One-time prekeys handed to us with a correspondent's bundle, for the
    /// next session we start with its address (encoded, signature checked).
    peer_one_time: HashMap<ClientAddress, Vec<u8>>,
    /// Routing tag → session (rebuilt from the sessions when restored).
    #[serde(skip)]
    routes: TagRoutes,
}

/// A book of format 4: before one-time prekeys and pseudonyms.
#[derive(Deserialize)]
struct BookFormat4 {
    identity: LocalIdentity,
    prekeys: PrekeyRing,
    sessions: BTreeMap<SessionId, EntryFormat4>,
    contacts: HashMap<ClientAddress, Contact>,
    replay: ReplayRecord,
    clock: u64,
    names: BTreeMap<ContactName, ShortAddress>,
    announce: Vec<rotation::Announcement>,
    recalls: RecallBook,
}

/// A book of format 3: one set of prekeys, no announcements, no recall records.
#[derive(Deserialize)]
struct BookFormat3 {
    identity: LocalIdentity,
    prekeys: PrekeySecrets,
    sessions: BTreeMap<SessionId, EntryFormat4>,
    contacts: HashMap<ClientAddress, Contact>,
    replay: ReplayRecord,
    clock: u64,
    names: BTreeMap<ContactName, ShortAddress>,
}

/// A book of format 2: the same fields, without names.
#[derive(Deserialize)]
struct BookFormat2 {
    identity: LocalIdentity,
    prekeys: PrekeySecrets,
    sessions: BTreeMap<SessionId, EntryFormat4>,
    contacts: HashMap<ClientAddress, Contact>,
    replay: ReplayRecord,
    clock: u64,
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
    /// A new book with fresh identity keys and prekeys that have no expiry
    /// (their card is of bundle version 1): they retire at the first
    /// [`SessionBook::rotate_if_due`]. A client uses [`SessionBook::generate_at`].
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let identity = LocalIdentity::generate(rng);
        Self::with_keys(
            identity,
            PrekeyRing::unscheduled(PrekeySecrets::generate(rng, 1, 1)),
        )
    }

    /// A new book made at `now`, whose prekeys (and card) follow `schedule`.
    pub fn generate_at(
        rng: &mut impl CryptoRng,
        now: UnixSeconds,
        schedule: &RotationSchedule,
    ) -> Self {
        let identity = LocalIdentity::generate(rng);
        Self::with_keys(identity, PrekeyRing::generate(rng, now, schedule))
    }

    fn with_keys(identity: LocalIdentity, prekeys: PrekeyRing) -> Self {
        SessionBook {
            identity,
            prekeys,
            sessions: BTreeMap::new(),
            contacts: HashMap::new(),
            replay: ReplayRecord::default(),
            clock: 0,
            names: BTreeMap::new(),
            announce: Vec::new(),
            recalls: RecallBook::default(),
            one_time: OneTimePrekeys::default(),
            peer_one_time: HashMap::new(),
            routes: TagRoutes::default(),
        }
    }

    /// The most recently used session with `to` and its pinned identity.
    fn session_with(&self, to: &ClientAddress) -> Option<SessionId> {
        let pinned = self.pinned(to);
        self.sessions
            .iter()
            .filter(|(_, e)| {
                e.address.as_ref() == Some(to) && Some(e.peer) == pinned && e.pseudonym.is_none()
            })
            .max_by_key(|(_, e)| e.used)
            .map(|(id, _)| *id)
    }

    /// This client's short address at `gateway`.
    pub fn short_address(&self, gateway: NodeId) -> ShortAddress {
        ShortAddress::new(&self.identity(), gateway)
    }

    /// The mailbox address pinned to the identity `short` names, at its
    /// gateway (from a card, a session or a bundle); one with a bundle
    /// first.
    pub fn resolve(&self, short: &ShortAddress) -> Option<ClientAddress> {
        self.contacts
            .iter()
            .filter(|(address, c)| address.gateway == short.gateway && short.names(&c.identity))
            .max_by_key(|(address, c)| (c.bundle.is_some(), address.client_key))
            .map(|(address, _)| *address)
    }

    /// Whether a message to `short` can be sealed now: the book has a
    /// session with the identity it names at its gateway, or its card.
    pub fn can_reach(&self, short: &ShortAddress) -> bool {
        self.resolve(short).is_some_and(|address| {
            self.session_with(&address).is_some()
                || self
                    .contacts
                    .get(&address)
                    .is_some_and(|c| c.bundle.is_some())
        })
    }

    /// The whole identity a short address names, when the book knows it.
    pub fn identity_named(&self, short: &ShortAddress) -> Option<PeerIdentityKey> {
        self.contacts
            .values()
            .map(|c| c.identity)
            .chain(self.sessions.values().map(|e| e.peer))
            .find(|identity| short.names(identity))
    }

    /// The short address of the identity pinned to `address`, if any.
    pub fn short_of(&self, address: &ClientAddress) -> Option<ShortAddress> {
        self.contacts
            .get(address)
            .map(|c| ShortAddress::new(&c.identity, address.gateway))
    }

    /// Names the identity of `short` `name`. The same name again for the
    /// same identity changes nothing; a name taken by another identity, or
    /// an identity named already, is refused.
    pub fn name_contact(
        &mut self,
        name: ContactName,
        short: ShortAddress,
    ) -> Result<(), ContactError> {
        if let Some(existing) = self.names.get(&name) {
            if existing.identity == short.identity {
                self.names.insert(name, short);
                return Ok(());
            }
            return Err(ContactError::NameTaken(name.to_string()));
        }
        if let Some((other, _)) = self
            .names
            .iter()
            .find(|(_, s)| s.identity == short.identity)
        {
            return Err(ContactError::AlreadyNamed(other.to_string()));
        }
        self.names.insert(name, short);
        Ok(())
    }

    /// Adds `card` as a contact ([`SessionBook::add_contact`]) named `name`.
    pub fn add_named_card(
        &mut self,
        name: ContactName,
        card: &AddressCard,
    ) -> Result<ShortAddress, ContactError> {
        let short = ShortAddress::new(
            &PeerIdentityKey(card.bundle.identity()),
            card.address.gateway,
        );
        self.name_contact(name, short)?;
        self.add_contact(card);
        Ok(short)
    }

    /// Forgets the name `name` (the identity stays pinned to its address,
    /// and its sessions stay). Returns the short address it stood for.
    pub fn remove_name(&mut self, name: &ContactName) -> Result<ShortAddress, ContactError> {
        self.names
            .remove(name)
            .ok_or_else(|| ContactError::UnknownName(name.to_string()))
    }

    /// The short address named `name`.
    pub fn named(&self, name: &ContactName) -> Result<ShortAddress, ContactError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| ContactError::UnknownName(name.to_string()))
    }

    /// Every named contact, by name.
    pub fn named_contacts(&self) -> Vec<NamedContact> {
        self.names
            .iter()
            .map(|(name, short)| NamedContact {
                name: name.clone(),
                short: *short,
                reachable: self.resolve(short).is_some(),
            })
            .collect()
    }

    /// The name of the contact whose identity is `peer`.
    pub fn name_of(&self, peer: &PeerIdentityKey) -> Option<&ContactName> {
        let fingerprint = IdentityFingerprint::of(peer);
        self.names
            .iter()
            .find(|(_, short)| short.identity == fingerprint)
            .map(|(name, _)| name)
    }

    /// The safety number of a conversation with `peer`.
    pub fn safety_number(&self, peer: &PeerIdentityKey) -> SafetyNumber {
        SafetyNumber::between(&self.identity(), peer)
    }

    /// This client's address card for `address`, with the current prekeys.
    pub fn card(&self, address: ClientAddress) -> AddressCard {
        AddressCard {
            address,
            bundle: self.prekeys.bundle(&self.identity),
        }
    }

    /// When the current card expires (`None`: prekeys made without a
    /// schedule, whose card does not say).
    pub fn card_expires_at(&self) -> Option<UnixSeconds> {
        self.prekeys.expires_at()
    }

    /// This client's long-term identity (both keys).
    pub fn identity(&self) -> PeerIdentityKey {
        PeerIdentityKey(self.identity.public())
    }

    /// Number of sessions held, in both pools.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of sessions opened by others and not answered yet.
    pub fn unanswered_count(&self) -> usize {
        self.sessions.values().filter(|e| e.is_unanswered()).count()
    }

    /// First messages recorded under the current signed prekey (see
    /// [`REPLAY_CAPACITY`]).
    pub fn handshakes_recorded(&self) -> u64 {
        self.replay.count(self.prekeys.current().spk_id())
    }

    /// Entries of the routing table: the tags the sessions expect, and
    /// stale ones until the next rebuild (at most about twice as many).
    pub fn expected_tag_count(&self) -> usize {
        self.routes.len()
    }

    /// Records `card` as a contact: later messages to its address start a
    /// session with its bundle, and its identity (both keys) is pinned to
    /// the address.
    pub fn add_contact(&mut self, card: &AddressCard) {
        self.contacts.insert(
            card.address,
            Contact {
                identity: PeerIdentityKey(card.bundle.identity()),
                bundle: Some(card.bundle.encode()),
            },
        );
    }

    /// This client's card at `address`, numbered and signed for its gateway
    /// to serve (each call numbers it higher).
    pub fn publication(&mut self, address: ClientAddress) -> PublishedBundle {
        let serial = self.one_time.next_serial();
        PublishedBundle::sign(&self.identity, serial, self.card(address))
    }

    /// `count` new one-time prekeys, signed for upload; their secrets stay
    /// in the book (save it before uploading them).
    pub fn new_one_time_prekeys(
        &mut self,
        rng: &mut impl CryptoRng,
        count: usize,
    ) -> Vec<SignedOneTimePrekey> {
        self.one_time.generate(rng, &self.identity, count)
    }

    /// What this client uploads to its gateway: its identity fingerprint,
    /// its card at `address` numbered and signed when `publish`, and
    /// `one_time` new one-time prekeys as `(id, bytes)`, whose secrets stay
    /// in the book (save it before uploading them).
    pub fn prekey_upload(
        &mut self,
        rng: &mut impl CryptoRng,
        address: ClientAddress,
        publish: bool,
        one_time: usize,
    ) -> PrekeyUpload {
        let published = publish.then(|| self.publication(address).encode());
        let one_time = self
            .new_one_time_prekeys(rng, one_time)
            .iter()
            .map(|k| (k.id(), k.encode()))
            .collect();
        PrekeyUpload {
            fingerprint: IdentityFingerprint::of(&self.identity()).0,
            published,
            one_time,
        }
    }

    /// One-time prekey secrets held (handed out or not).
    pub fn one_time_prekeys_held(&self) -> usize {
        self.one_time.held()
    }

    /// Takes a bundle the gateway of `short` served for it, with the
    /// one-time prekey handed out beside it: checked (every signature by
    /// the identity `short` names, the address at its gateway, the card not
    /// expired at `now`), then kept as the contact of its address, the
    /// one-time prekey for the next session started with it. Returns the address.
    pub fn learn_published(
        &mut self,
        now: UnixSeconds,
        short: &ShortAddress,
        published: &[u8],
        one_time: Option<&[u8]>,
    ) -> Result<ClientAddress, SessionBookError> {
        let (published, one_time) = PublishedBundle::verify(short, published, one_time)?;
        let card = published.card;
        card.check_not_expired(now)?;
        self.add_contact(&card);
        match one_time {
            Some(key) => {
                self.peer_one_time.insert(card.address, key.encode());
            }
            None => {
                self.peer_one_time.remove(&card.address);
            }
        }
        Ok(card.address)
    }

    /// Encrypts `content` for `to`: in the most recently used session with
    /// that address and its pinned identity, or in a new one started from
    /// its address card, refused once the card expired at `now`
    /// ([`SessionBookError::CardExpired`]). `own` is this client's address,
    /// claimed inside (signed) so the peer can answer.
    pub fn seal(
        &mut self,
        now: UnixSeconds,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        own: Option<&ClientAddress>,
        content: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionBookError> {
        let id = match self.session_with(to) {
            Some(id) => id,
            None => self.initiate(now, rng, to, own == Some(to), None)?,
        };
        self.seal_in(rng, id, own, content, expires_at)
    }

    /// Encrypts `content` for `to` under `pseudonym`: in the session of that
    /// pseudonym with `to`, or in a new one started from `to`'s card under a
    /// throwaway identity (made for it, used once, and not kept). Its peer
    /// sees that identity only, so sessions of two pseudonyms cannot be
    /// linked to each other or to this book's identity; no address is
    /// claimed. Pseudonymous sessions count in a pool of their own
    /// ([`MAX_PSEUDONYMOUS`]) and never evict others.
    pub fn seal_as(
        &mut self,
        now: UnixSeconds,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        pseudonym: Pseudonym,
        content: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionBookError> {
        let existing = self
            .sessions
            .iter()
            .find(|(_, e)| e.address.as_ref() == Some(to) && e.pseudonym == Some(pseudonym))
            .map(|(id, _)| *id);
        let id = match existing {
            Some(id) => id,
            None => self.initiate(now, rng, to, false, Some(pseudonym))?,
        };
        self.seal_in(rng, id, None, content, expires_at)
    }

    /// Forgets the sessions of `pseudonym` (the caller is done with it).
    pub fn forget_pseudonym(&mut self, pseudonym: Pseudonym) {
        self.sessions.retain(|_, e| e.pseudonym != Some(pseudonym));
    }

    /// Number of sessions held under pseudonyms.
    pub fn pseudonymous_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|e| e.pseudonym.is_some())
            .count()
    }

    /// Encrypts `content` in session `id` (e.g. to answer a message through
    /// its reply SURBs). The claim of `own` is sent, signed, until the peer
    /// has confirmed the session (it has then read one of the messages that
    /// carried it), and again whenever `own` changes.
    pub fn seal_in(
        &mut self,
        rng: &mut impl CryptoRng,
        id: SessionId,
        own: Option<&ClientAddress>,
        content: &[u8],
        expires_at: Option<UnixSeconds>,
    ) -> Result<Vec<u8>, SessionBookError> {
        self.seal_with(rng, id, own, expires_at, |claim| {
            content::encode(claim, content)
        })
    }

    /// Seals a recall notice for message `recalled`, which this client sent
    /// to `to`: in the most recently used session with `to` and its pinned
    /// identity (the identity the recipient saw the message come from).
    pub fn seal_recall_notice(
        &mut self,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        recalled: &MessageId,
    ) -> Result<Vec<u8>, SessionBookError> {
        let pinned = self.contacts.get(to).map(|c| c.identity);
        let id = self
            .sessions
            .iter()
            .filter(|(_, e)| {
                e.address.as_ref() == Some(to) && Some(e.peer) == pinned && e.pseudonym.is_none()
            })
            .max_by_key(|(_, e)| e.used)
            .map(|(id, _)| *id)
            .ok_or_else(|| SessionBookError::NoSession(to.to_string()))?;
        self.seal_with(rng, id, None, None, |claim| {
            content::encode_recall(claim, recalled)
        })
    }

    /// What this client remembers to recall messages and to judge recalls.
    pub fn recalls(&self) -> &RecallBook {
        &self.recalls
    }

    /// The same, to change (save the book after).
    pub fn recalls_mut(&mut self) -> &mut RecallBook {
        &mut self.recalls
    }

    fn seal_with(
        &mut self,
        rng: &mut impl CryptoRng,
        id: SessionId,
        own: Option<&ClientAddress>,
        expires_at: Option<UnixSeconds>,
        plaintext: impl FnOnce(Option<&SenderClaim>) -> Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>, SessionBookError> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionBookError::UnknownSession)?;
        // Under a pseudonym this book's address is never claimed: it would
        // tie the pseudonym to this client.
        let own = own.filter(|_| entry.pseudonym.is_none());
        let claim = match own {
            Some(address) => {
                let cached = entry.claim.filter(|c| &c.address == address);
                if cached.is_some() && entry.session.peer_confirmed() {
                    None
                } else {
                    let claim = match cached {
                        Some(claim) => claim,
                        None => SenderClaim {
                            address: *address,
                            signature: entry
                                .session
                                .sign_statement(&self.identity, &claim_statement(address))?,
                        },
                    };
                    entry.claim = Some(claim);
                    Some(claim)
                }
            }
            None => None,
        };
        let plaintext = plaintext(claim.as_ref());
        let sealed = entry.session.encrypt(rng, &plaintext, expires_at)?;
        entry.used = clock;
        Ok(sealed)
    }

    /// Starts a session with `to` from its card (or, for a note to self, our
    /// own bundle), unless the card expired at `now`; under a throwaway
    /// identity for `pseudonym` when there is one.
    fn initiate(
        &mut self,
        now: UnixSeconds,
        rng: &mut impl CryptoRng,
        to: &ClientAddress,
        to_self: bool,
        pseudonym: Option<Pseudonym>,
    ) -> Result<SessionId, SessionBookError> {
        let bundle = match self.contacts.get(to).and_then(|c| c.bundle.as_deref()) {
            Some(bundle) => PrekeyBundle::decode(bundle)?,
            None if to_self => self.prekeys.bundle(&self.identity),
            None => return Err(SessionBookError::NoSession(to.to_string())),
        };
        card::check_bundle(to, &bundle, now)?;
        // A one-time prekey handed out with the bundle is used once, by the
        // first session started from it.
        let one_time = self
            .peer_one_time
            .remove(to)
            .and_then(|bytes| SignedOneTimePrekey::decode(&bytes).ok());
        let session = match pseudonym {
            // The throwaway identity signs nothing later (no claim is made
            // under a pseudonym), so it is dropped, wiped, right here.
            Some(_) => {
                let throwaway = LocalIdentity::generate(rng);
                Session::initiate_with(rng, &throwaway, &bundle, one_time.as_ref())?
            }
            None => Session::initiate_with(rng, &self.identity, &bundle, one_time.as_ref())?,
        };
        let id = SessionId(session.handshake_id());
        self.insert(id, session, Some(*to), pseudonym)?;
        Ok(id)
    }

    /// Adds a session as the most recently used of its pool, then keeps
    /// both pools within their budgets.
    fn insert(
        &mut self,
        id: SessionId,
        session: Session,
        address: Option<ClientAddress>,
        pseudonym: Option<Pseudonym>,
    ) -> Result<(), SessionBookError> {
        self.clock += 1;
        let mut entry = Entry {
            peer: PeerIdentityKey(session.peer_identity()),
            session,
            address,
            used: self.clock,
            claim: None,
            pseudonym,
        };
        self.routes.add(id, &mut entry.session)?;
        self.sessions.insert(id, entry);
        self.evict();
        self.rebuild_routes_if_stale()
    }

    /// Rebuilds the routing table once stale tags fill half of it.
    fn rebuild_routes_if_stale(&mut self) -> Result<(), SessionBookError> {
        if self.routes.needs_rebuild() {
            self.rebuild_routes()?;
        }
        Ok(())
    }

    fn rebuild_routes(&mut self) -> Result<(), SessionBookError> {
        self.routes.rebuild(
            self.sessions
                .iter_mut()
                .map(|(id, entry)| (*id, &mut entry.session)),
        )?;
        Ok(())
    }

    /// Drops the least recently used sessions of each pool beyond its
    /// budget: unanswered ones only for unanswered ones, established ones
    /// only for established ones, pseudonymous ones only for pseudonymous ones.
    fn evict(&mut self) {
        for (which, budget) in [
            (Pool::Unanswered, MAX_UNANSWERED),
            (Pool::Established, MAX_SESSIONS),
            (Pool::Pseudonymous, MAX_PSEUDONYMOUS),
        ] {
            let mut pool: Vec<(u64, SessionId)> = self
                .sessions
                .iter()
                .filter(|(_, e)| e.pool() == which)
                .map(|(id, e)| (e.used, *id))
                .collect();
            if pool.len() <= budget {
                continue;
            }
            pool.sort_unstable();
            let excess = pool.len() - budget;
            // Their tags stay in the routing table, leading nowhere, until
            // it is rebuilt.
            for (_, id) in pool.into_iter().take(excess) {
                self.sessions.remove(&id);
            }
        }
    }

    /// Decrypts a message from any peer: an initial message starts (or
    /// continues) the session of its handshake; any other goes to the
    /// session that expects its routing tag. Duplicates, replays, expired,
    /// tampered and foreign messages are refused and leave the book as it
    /// was (an expired message's key is spent).
    pub fn open(&mut self, now: UnixSeconds, message: &[u8]) -> Result<Opened, SessionBookError> {
        let Decrypted {
            id,
            plaintext,
            expires_at,
            promoted,
        } = match InitialInfo::parse(message)? {
            Some(info) => self.open_initial(now, &info, message)?,
            None => self.open_ratchet(now, message)?,
        };
        let Content {
            claim,
            content,
            bundle,
            recalls,
        } = content::decode(&plaintext)?;
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionBookError::UnknownSession)?;
        entry.used = clock;
        let peer = entry.peer;
        // A claimed address is believed only with a valid signature of the
        // sender's identity in this session, and only if it is not pinned to
        // another identity; the first identity proven for an address is
        // pinned to it (trust on first use) unless a card came first.
        if let Some(claim) = claim
            && entry.address != Some(claim.address)
            && entry
                .session
                .verify_statement(&claim_statement(&claim.address), &claim.signature)
                .is_ok()
            && self
                .contacts
                .get(&claim.address)
                .is_none_or(|c| c.identity == peer)
        {
            entry.address = Some(claim.address);
            self.contacts.entry(claim.address).or_insert(Contact {
                identity: peer,
                bundle: None,
            });
        }
        let from = entry
            .address
            .filter(|a| self.contacts.get(a).is_some_and(|c| c.identity == peer));
        if promoted {
            // The session moved from the unanswered to the established pool.
            self.evict();
        }
        let (kind, content) = if let Some(recalled) = recalls {
            (OpenedKind::RecallNotice { recalled }, Vec::new())
        } else if bundle {
            let kept = from.is_some_and(|address| self.keep_peer_bundle(&address, peer, &content));
            (OpenedKind::PeerBundle { kept }, Vec::new())
        } else {
            (OpenedKind::Message, content)
        };
        Ok(Opened {
            session: id,
            peer,
            from,
            content,
            expires_at,
            kind,
        })
    }

    fn open_initial(
        &mut self,
        now: UnixSeconds,
        info: &InitialInfo,
        message: &[u8],
    ) -> Result<Decrypted, SessionBookError> {
        let mut id = SessionId(info.handshake_id);
        let own = self.identity.public();
        if self
            .sessions
            .get(&id)
            .is_some_and(|e| e.session.role() == HandshakeRole::Initiator && e.peer.0 == own)
        {
            // A note to self: the initiating half is ours too; the
            // responding half lives under another id.
            id = loopback_id(id);
        }
        if self.sessions.contains_key(&id) {
            return self.decrypt_in(now, id, message);
        }
        let key = self.replay_key()?;
        if self.replay.contains(&key, info.spk_id, &id.0) {
            return Err(SessionBookError::ReplayedHandshake);
        }
        let prekeys =
            self.prekeys
                .find(info.spk_id, info.pq_id)
                .ok_or(SessionBookError::UnknownPrekey {
                    spk_id: info.spk_id,
                })?;
        let one_time = match info.one_time_id {
            Some(one_time_id) => Some(
                self.one_time
                    .get(one_time_id)
                    .ok_or(SessionBookError::UnknownOneTimePrekey { id: one_time_id })?,
            ),
            None => None,
        };
        let mut session = Session::accept_with(&self.identity, prekeys, one_time, message)?;
        let (plaintext, expires_at) = session.decrypt_with_expiry(now, message)?;
        let plaintext = Zeroizing::new(plaintext);
        content::decode(&plaintext)?;
        // The one-time secret opens this handshake only: erased, a replay
        // of the first message no longer opens, whatever the replay record says.
        if let Some(one_time_id) = info.one_time_id {
            self.one_time.erase(one_time_id);
        }
        self.replay.insert(&key, info.spk_id, &id.0);
        self.insert(id, session, None, None)?;
        Ok(Decrypted {
            id,
            plaintext,
            expires_at,
            promoted: false,
        })
    }

    fn open_ratchet(
        &mut self,
        now: UnixSeconds,
        message: &[u8],
    ) -> Result<Decrypted, SessionBookError> {
        let tag = MessageTag::of(message)?;
        let id = self
            .routes
            .session_of(&tag)
            .filter(|id| self.sessions.contains_key(id))
            .ok_or(SessionBookError::NoMatchingSession)?;
        self.decrypt_in(now, id, message)
    }

    /// Decrypts `message` in session `id`, then adds the tags the session
    /// came to expect if its state moved (a message read, or an expired one
    /// whose key was spent). Says whether the message confirmed an
    /// unanswered session.
    fn decrypt_in(
        &mut self,
        now: UnixSeconds,
        id: SessionId,
        message: &[u8],
    ) -> Result<Decrypted, SessionBookError> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionBookError::UnknownSession)?;
        let was_unanswered = entry.is_unanswered();
        let result = entry.session.decrypt_with_expiry(now, message);
        let promoted = was_unanswered && !entry.is_unanswered();
        if matches!(result, Ok(_) | Err(SessionError::Expired { .. })) {
            self.routes.add(id, &mut entry.session)?;
            self.rebuild_routes_if_stale()?;
        }
        let (plaintext, expires_at) = result?;
        Ok(Decrypted {
            id,
            plaintext: Zeroizing::new(plaintext),
            expires_at,
            promoted,
        })
    }

    /// The key of the replay record, derived from the identity.
    fn replay_key(&self) -> Result<Zeroizing<[u8; 32]>, SessionBookError> {
        Ok(self.identity.local_secret(REPLAY_KEY_PURPOSE)?)
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
        let (mut book, rest) = postcard::take_from_bytes::<Self>(body)
            .map_err(|_| SessionBookError::State("deserialize"))?;
        if !rest.is_empty() {
            return Err(SessionBookError::State("trailing bytes"));
        }
        book.rebuild_routes()?;
        Ok(book)
    }

    /// Restores a stored book of the current format, or upgrades one of
    /// format 1 (see [`Restored::UpgradedFromFormat1`]).
    pub fn restore(bytes: &[u8]) -> Result<(Self, Restored), SessionBookError> {
        match bytes.split_first() {
            Some((&BOOK_VERSION_1, body)) => {
                // Format 1 starts with the identity and the prekeys, whose
                // encoding has not changed; what follows cannot be read.
                let ((identity, prekeys), _) =
                    postcard::take_from_bytes::<(LocalIdentity, PrekeySecrets)>(body)
                        .map_err(|_| SessionBookError::State("deserialize format 1"))?;
                Ok((
                    Self::with_keys(identity, PrekeyRing::unscheduled(prekeys)),
                    Restored::UpgradedFromFormat1,
                ))
            }
            Some((&BOOK_VERSION_2, body)) => {
                let old = Self::take_whole::<BookFormat2>(body, "deserialize format 2")?;
                let book = Self::upgraded(BookFormat3 {
                    identity: old.identity,
                    prekeys: old.prekeys,
                    sessions: old.sessions,
                    contacts: old.contacts,
                    replay: old.replay,
                    clock: old.clock,
                    names: BTreeMap::new(),
                })?;
                Ok((book, Restored::UpgradedFromFormat2))
            }
            Some((&BOOK_VERSION_3, body)) => {
                let old = Self::take_whole::<BookFormat3>(body, "deserialize format 3")?;
                Ok((Self::upgraded(old)?, Restored::UpgradedFromFormat3))
            }
            Some((&BOOK_VERSION_4, body)) => {
                let old = Self::take_whole::<BookFormat4>(body, "deserialize format 4")?;
                Ok((Self::upgraded_from_4(old)?, Restored::UpgradedFromFormat4))
            }
            _ => Ok((Self::from_bytes(bytes)?, Restored::Current)),
        }
    }

    /// Reads `T` from all of `body` (trailing bytes are an error).
    fn take_whole<'a, T: Deserialize<'a>>(
        body: &'a [u8],
        what: &'static str,
    ) -> Result<T, SessionBookError> {
        let (old, rest) =
            postcard::take_from_bytes::<T>(body).map_err(|_| SessionBookError::State(what))?;
        if !rest.is_empty() {
            return Err(SessionBookError::State("trailing bytes"));
        }
        Ok(old)
    }

    /// A book of the current format from one of format 3 (or older, filled
    /// in): its prekeys unscheduled, no announcements, no recall records.
    fn upgraded(old: BookFormat3) -> Result<Self, SessionBookError> {
        Self::upgraded_from_4(BookFormat4 {
            identity: old.identity,
            prekeys: PrekeyRing::unscheduled(old.prekeys),
            sessions: old.sessions,
            contacts: old.contacts,
            replay: old.replay,
            clock: old.clock,
            names: old.names,
            announce: Vec::new(),
            recalls: RecallBook::default(),
        })
    }

    /// A book of the current format from one of format 4: no one-time
    /// prekeys yet (the client makes and uploads them when it connects).
    fn upgraded_from_4(old: BookFormat4) -> Result<Self, SessionBookError> {
        let mut book = SessionBook {
            identity: old.identity,
            prekeys: old.prekeys,
            sessions: upgrade_entries(old.sessions),
            contacts: old.contacts,
            replay: old.replay,
            clock: old.clock,
            names: old.names,
            announce: old.announce,
            recalls: old.recalls,
            one_time: OneTimePrekeys::default(),
            peer_one_time: HashMap::new(),
            routes: TagRoutes::default(),
        };
        book.rebuild_routes()?;
        Ok(book)
    }
}

/// What [`SessionBook::prekey_upload`] gives to upload to the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyUpload {
    /// The identity fingerprint the bundle is kept under.
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// The published bundle, when it is to be published.
    pub published: Option<Vec<u8>>,
    /// New one-time prekeys: id and encoding.
    pub one_time: Vec<(u32, Vec<u8>)>,
}

/// A message opened in a session.
struct Decrypted {
    /// The session it came on.
    id: SessionId,
    /// The session plaintext (`sessions/content.rs`).
    plaintext: Zeroizing<Vec<u8>>,
    /// The expiry its sender set.
    expires_at: Option<UnixSeconds>,
    /// Whether it moved the session from the unanswered pool to the established one.
    promoted: bool,
}

/// The id of the responding half of a session with ourselves.
fn loopback_id(id: SessionId) -> SessionId {
    let mut bytes = id.0;
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    SessionId(bytes)
}

#[cfg(test)]
mod one_time_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
