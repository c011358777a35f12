//! The gateway state machine.
//!
//! A [`GatewayCore`] is everything a gateway decides, with no I/O. The shell
//! tells it that a client connected ([`GatewayCore::open_session`]), which
//! bytes arrived from it ([`GatewayCore::handle_client_bytes`]), that it left
//! ([`GatewayCore::close_session`]), that the exit `Mixer` (`mixnode_core`)
//! unwrapped a final-hop packet ([`GatewayCore::handle_delivery`]), and that
//! time passed ([`GatewayCore::handle_timeout`]). The core answers with
//! [`GatewayAction`]s: bytes to write to a session, sessions to close, packets
//! to send into the mixnet.
//!
//! The one side effect the core performs itself is the mailbox: a message's
//! SURB-ack leaves only once the message is committed to the [`Mailbox`] or
//! taken by its online client, so an ack can never overtake its message's
//! durability (a delivery to an online client is pushed first and stored
//! only if it is not taken in time: `held.rs`). The
//! prekey service's store ([`PrekeyStore`]) is the other: a one-time prekey
//! leaves it, committed, before the answer that carries it is built.

mod final_hop;
mod held;
mod prekey_service;

pub use final_hop::{FinalHop, FinalHopReport};
pub use held::ACK_LATE_AFTER;

use held::{DueAcks, HeldDeliveries};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::address::PREKEY_SERVICE_DESTINATION;
use protocol::format::{PacketFormat, SphinxFormat};
use protocol::frame::SURB_ACK_HOLD;
use protocol::keys::NodeId;
use protocol::packet::OutgoingPacket;
use protocol::time::Timestamp;
use rand::CryptoRng;

use crate::error::MailboxError;
use crate::mailbox::{ClientKey, Mailbox, MailboxId, MailboxStore, RegistrationDay};
use crate::prekeys::{MemoryPrekeyStore, PrekeyStore};
use crate::source::{SourceLimiter, SourceLimits, SourcePrefix, SourceRequest};
use crate::stats::{GatewayDropReason, GatewayStats};
use crate::throttle::{ThrottleConfig, TokenBucket};
use protocol::link::auth::AuthChallenge;
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkDecoder, LinkMessage};

/// Settings of a [`GatewayCore`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Per-client sending rate (the network's λ_P + λ_L) and burst.
    pub throttle: ThrottleConfig,
    /// A session that has not authenticated by then is closed.
    pub auth_timeout: Duration,
    /// Most messages pushed to a session and not yet acknowledged.
    pub delivery_window: usize,
    /// Most sessions open at once, authenticated or not.
    pub max_sessions: usize,
    /// Most clients the gateway serves.
    pub max_clients: usize,
    /// Whether a client that authenticates is registered automatically.
    pub open_registration: bool,
    /// How often the mailbox is swept for expired messages.
    pub expiry_interval: Duration,
    /// A client that has not connected for this long is forgotten, with its
    /// mailbox (counted in whole days: a registration keeps only the day of
    /// the last connection).
    pub registration_expiry: Duration,
    /// How many sessions and new registrations one network address may open.
    pub source_limits: SourceLimits,
    /// How long after a final hop reaches the core its SURB-ack leaves
    /// (the network's [`SURB_ACK_HOLD`]); a delivery pushed to an online
    /// client is stored if not acknowledged within half of it. Zero: every
    /// message is stored at once and acked as soon as it is committed.
    pub surb_ack_hold: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            throttle: ThrottleConfig::default(),
            auth_timeout: Duration::from_secs(10),
            delivery_window: 32,
            max_sessions: 10_000,
            max_clients: 100_000,
            open_registration: true,
            expiry_interval: Duration::from_secs(60),
            registration_expiry: Duration::from_secs(90 * 86_400),
            source_limits: SourceLimits::default(),
            surb_ack_hold: SURB_ACK_HOLD,
        }
    }
}

/// A client connection, named by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayAction {
    /// Write `bytes` to the session's stream.
    Send {
        /// The session.
        session: SessionId,
        /// Encoded link messages.
        bytes: Vec<u8>,
    },
    /// Close the session once the bytes sent before this action are written.
    Close {
        /// The session.
        session: SessionId,
        /// Why (already encoded in a `Close` message sent just before).
        reason: CloseReason,
    },
    /// Send a packet into the mixnet (a client's packet into layer 1, or a SURB-ack).
    Forward(OutgoingPacket),
}

enum SessionState {
    AwaitingAuth {
        challenge: AuthChallenge,
        deadline: Timestamp,
    },
    Authenticated {
        client: ClientKey,
        /// Pushed, not yet acknowledged.
        in_flight: BTreeSet<MailboxId>,
        /// The highest id pushed in this session.
        cursor: Option<MailboxId>,
    },
}

struct Session {
    decoder: LinkDecoder<ClientMessage>,
    state: SessionState,
    source: SourcePrefix,
    /// The invite the client gave before authenticating, if any.
    invite: Option<[u8; protocol::link::INVITE_LEN]>,
}

/// The sans-IO gateway: client sessions, throttling, final-hop delivery,
/// mailboxes; it reads final hops and answers SURB-acks in the packet format
/// `F` (Sphinx, unless a simulator asks for a stand-in).
pub struct GatewayCore<S: MailboxStore, F: PacketFormat = SphinxFormat> {
    format: F,
    id: NodeId,
    config: GatewayConfig,
    mailbox: Mailbox<S>,
    /// Registered clients and the day each was last seen.
    clients: HashMap<ClientKey, RegistrationDay>,
    online: HashMap<ClientKey, SessionId>,
    sources: SourceLimiter,
    /// The day registrations were last swept for expiry (they count in days).
    registrations_swept: Option<RegistrationDay>,
    sessions: BTreeMap<SessionId, Session>,
    buckets: HashMap<ClientKey, TokenBucket>,
    layer1: Option<HashSet<NodeId>>,
    next_session: u64,
    next_sweep: Timestamp,
    /// Acks read since the last [`GatewayCore::commit_acks`], deleted together.
    acked: Vec<(ClientKey, MailboxId)>,
    /// The sessions those acks came from, pushed more once they are deleted.
    acking: Vec<SessionId>,
    /// Deliveries pushed to online clients and not stored (yet).
    held: HeldDeliveries,
    /// SURB-acks waiting for their instant.
    due_acks: DueAcks,
    /// Sessions that must authenticate by a deadline.
    auth_deadlines: BTreeSet<(Timestamp, SessionId)>,
    /// Closed admission: who may still enroll, and who may not come back.
    admission: Admission,
    /// The clients' published bundles and one-time prekeys.
    prekeys: Box<dyn PrekeyStore + Send>,
    stats: Arc<GatewayStats>,
}

impl<S: MailboxStore> GatewayCore<S> {
    /// A gateway `id` over `mailbox`, serving the clients the mailbox has registered.
    pub fn new(
        id: NodeId,
        config: GatewayConfig,
        mailbox: Mailbox<S>,
    ) -> Result<Self, MailboxError> {
        GatewayCore::with_format(SphinxFormat, id, config, mailbox)
    }
}

impl<S: MailboxStore, F: PacketFormat> GatewayCore<S, F> {
    /// [`GatewayCore::new`] reading packets in `format`.
    pub fn with_format(
        format: F,
        id: NodeId,
        config: GatewayConfig,
        mailbox: Mailbox<S>,
    ) -> Result<Self, MailboxError> {
        // A registration without a recorded day counts from the first
        // sweep's day (`RegistrationDay(u64::MAX)` until then).
        let clients: HashMap<ClientKey, RegistrationDay> = mailbox
            .store()
            .clients()?
            .into_iter()
            .map(|(client, seen)| (client, seen.unwrap_or(RegistrationDay(u64::MAX))))
            .collect();
        let stats = Arc::new(GatewayStats::default());
        let usage = mailbox.usage();
        stats.set_mailbox(usage.messages, usage.bytes);
        stats.set_registered(clients.len() as u64);
        Ok(GatewayCore {
            format,
            id,
            config,
            mailbox,
            clients,
            online: HashMap::new(),
            sources: SourceLimiter::new(config.source_limits),
            registrations_swept: None,
            sessions: BTreeMap::new(),
            buckets: HashMap::new(),
            layer1: None,
            next_session: 0,
            next_sweep: Timestamp::ZERO,
            acked: Vec::new(),
            acking: Vec::new(),
            held: HeldDeliveries::default(),
            due_acks: DueAcks::default(),
            auth_deadlines: BTreeSet::new(),
            admission: Admission::default(),
            prekeys: Box::new(MemoryPrekeyStore::new()),
            stats,
        })
    }

    /// Keeps the clients' prekeys in `store` (by default, in memory).
    pub fn with_prekey_store(mut self, store: impl PrekeyStore + Send + 'static) -> Self {
        self.prekeys = Box::new(store);
        self.update_prekey_gauge();
        self
    }

    /// The clients' prekeys.
    pub fn prekeys(&self) -> &dyn PrekeyStore {
        self.prekeys.as_ref()
    }

    /// The gateway's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The counters, shareable with a metrics exporter.
    pub fn stats(&self) -> &Arc<GatewayStats> {
        &self.stats
    }

    /// The mailboxes.
    pub fn mailbox(&self) -> &Mailbox<S> {
        &self.mailbox
    }

    /// Whether the gateway serves `client`.
    pub fn is_registered(&self, client: &ClientKey) -> bool {
        self.clients.contains_key(client)
    }

    /// Clients the gateway serves.
    pub fn registered_count(&self) -> usize {
        self.clients.len()
    }

    /// Registers `client` (durably) so that messages for it are kept, or
    /// records that it was seen on `now`'s day.
    pub fn register_client(
        &mut self,
        now: Timestamp,
        client: &ClientKey,
    ) -> Result<(), MailboxError> {
        let today = RegistrationDay::of(now);
        if self.clients.get(client) != Some(&today) {
            self.mailbox.store_mut().register_client(client, today)?;
            self.clients.insert(*client, today);
            self.stats.set_registered(self.clients.len() as u64);
        }
        Ok(())
    }

    /// Closed admission: the digests ([`invite_digest`]) of the invites not
    /// used yet, replacing those held.
    pub fn set_invites(&mut self, digests: impl IntoIterator<Item = [u8; 32]>) {
        self.admission.invites = digests.into_iter().collect();
    }

    /// The invites used since the last call (digest, and the client key
    /// that used it), for the shell to record as used (durably) so that
    /// none serves twice.
    pub fn take_redeemed_invites(&mut self) -> Vec<([u8; 32], ClientKey)> {
        std::mem::take(&mut self.admission.redeemed)
    }

    /// Revokes `client`: its registration and mailbox are deleted, its
    /// session is closed, and it is refused from now on (even with an
    /// invite). Returns whether it was registered.
    pub fn revoke(&mut self, client: &ClientKey, actions: &mut Vec<GatewayAction>) -> bool {
        let newly = self.admission.revoked.insert(*client);
        if let Some(session) = self.online.get(client).copied() {
            self.end_session(session, CloseReason::NotRegistered, actions);
        }
        // Neither stored nor acknowledged: no SURB-ack goes for them.
        for held in self.held.take_client(client) {
            if let Some(ack) = held.ack {
                self.due_acks.cancel(ack);
            }
        }
        self.stats.set_held(self.held.len() as u64);
        let registered = self.clients.remove(client).is_some();
        if registered {
            let _ = self.mailbox.unregister(client);
            self.stats.set_registered(self.clients.len() as u64);
        }
        self.forget_prekeys(client);
        if newly {
            self.stats.revoked();
        }
        registered
    }

    /// Forgets the clients not seen for longer than the registration expiry
    /// (never one that is online), with their mailboxes; returns how many.
    pub fn expire_registrations(&mut self, now: Timestamp) -> u64 {
        let today = RegistrationDay::of(now);
        let days = self.config.registration_expiry.as_secs().div_ceil(86_400);
        let stale: Vec<ClientKey> = self
            .clients
            .iter_mut()
            .filter_map(|(client, seen)| {
                if seen.0 == u64::MAX {
                    // Kept by an older version: its clock starts today.
                    *seen = today;
                }
                (seen.0.saturating_add(days) < today.0 && !self.online.contains_key(client))
                    .then_some(*client)
            })
            .collect();
        let mut expired = 0;
        for client in stale {
            if self.mailbox.unregister(&client).is_ok() {
                self.clients.remove(&client);
                self.buckets.remove(&client);
                self.forget_prekeys(&client);
                expired += 1;
            }
        }
        if expired > 0 {
            self.stats.registrations_expired(expired);
            self.stats.set_registered(self.clients.len() as u64);
            self.update_gauges();
        }
        expired
    }

    /// The mix nodes of layer 1 in the current topology: a client packet for
    /// any other first hop is dropped. Until this is called, every first hop
    /// is accepted (the shell then only forwards to peers it has links to).
    pub fn set_layer1(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        self.layer1 = Some(nodes.into_iter().collect());
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `client` has an authenticated session.
    pub fn is_online(&self, client: &ClientKey) -> bool {
        self.online.contains_key(client)
    }

    /// A client connected from `source`: returns its session and the
    /// challenge to send it (or a refusal, when the gateway is full or the
    /// source over its limit).
    pub fn open_session(
        &mut self,
        now: Timestamp,
        source: IpAddr,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> (SessionId, Vec<GatewayAction>) {
        let session = SessionId(self.next_session);
        self.next_session = self.next_session.wrapping_add(1);
        if self.sessions.len() >= self.config.max_sessions {
            self.stats.session_refused();
            return (session, closing(session, CloseReason::GatewayFull));
        }
        let source = SourcePrefix::from(source);
        if !self.sources.allow(now, source, SourceRequest::Session) {
            self.stats.source_limited(SourceRequest::Session);
            return (session, closing(session, CloseReason::SourceLimited));
        }
        let challenge = AuthChallenge::new(self.id, rng);
        let hello = GatewayMessage::Challenge {
            gateway: self.id,
            ephemeral: challenge.ephemeral(),
        };
        let deadline = now.saturating_add(self.config.auth_timeout);
        self.auth_deadlines.insert((deadline, session));
        self.sessions.insert(
            session,
            Session {
                decoder: LinkDecoder::new(),
                state: SessionState::AwaitingAuth {
                    challenge,
                    deadline,
                },
                source,
                invite: None,
            },
        );
        self.update_session_gauges();
        let send = GatewayAction::Send {
            session,
            bytes: hello.encode(),
        };
        (session, vec![send])
    }

    /// The client's connection is gone. Messages pushed but not acknowledged
    /// stay in the mailbox (or are stored when their hold ends) and are
    /// pushed again in its next session.
    pub fn close_session(&mut self, session: SessionId) {
        match self.sessions.remove(&session).map(|s| s.state) {
            Some(SessionState::Authenticated { client, .. })
                if self.online.get(&client) == Some(&session) =>
            {
                self.online.remove(&client);
            }
            Some(SessionState::AwaitingAuth { deadline, .. }) => {
                self.auth_deadlines.remove(&(deadline, session));
            }
            _ => {}
        }
        self.update_session_gauges();
    }

    /// Bytes arrived from a session's stream; the acknowledgements among
    /// them are deleted (one commit) before it returns.
    pub fn handle_client_bytes(
        &mut self,
        now: Timestamp,
        session: SessionId,
        bytes: &[u8],
    ) -> Vec<GatewayAction> {
        let mut actions = self.read_client_bytes(now, session, bytes);
        actions.extend(self.commit_acks());
        actions
    }

    /// Bytes arrived from a session's stream, as [`GatewayCore::handle_client_bytes`],
    /// except that the acknowledgements read are held until the next
    /// [`GatewayCore::commit_acks`]: a shell that reads several sessions'
    /// bytes in a row deletes all their acknowledged messages in one commit.
    pub fn read_client_bytes(
        &mut self,
        now: Timestamp,
        session: SessionId,
        bytes: &[u8],
    ) -> Vec<GatewayAction> {
        let mut actions = Vec::new();
        let Some(s) = self.sessions.get_mut(&session) else {
            return actions;
        };
        s.decoder.push(bytes);
        // The session may close while its messages are handled: stop there.
        while let Some(s) = self.sessions.get_mut(&session) {
            match s.decoder.next_message() {
                Ok(Some(message)) => self.handle_message(now, session, message, &mut actions),
                Ok(None) => break,
                Err(_) => {
                    self.stats.malformed();
                    self.end_session(session, CloseReason::Malformed, &mut actions);
                    break;
                }
            }
        }
        actions
    }

    /// Deletes the messages acknowledged since the last call, in one commit,
    /// then pushes more to the sessions that acknowledged them. A store
    /// error leaves them in place: they are pushed again next session.
    pub fn commit_acks(&mut self) -> Vec<GatewayAction> {
        let mut actions = Vec::new();
        let acked = std::mem::take(&mut self.acked);
        let deleted = self.mailbox.delete_batch(&acked).ok();
        self.acks_deleted(deleted, &mut actions);
        actions
    }

    /// After the commit that deleted the acknowledged messages (`deleted` of
    /// them, or none after an error that left them in place): counts them and pushes
    /// more to the sessions that acknowledged them.
    fn acks_deleted(&mut self, deleted: Option<usize>, actions: &mut Vec<GatewayAction>) {
        if let Some(n) = deleted
            && n > 0
        {
            self.stats.acknowledged(n as u64);
            self.update_gauges();
        }
        for session in std::mem::take(&mut self.acking) {
            self.pump(session, actions);
        }
    }

    fn handle_message(
        &mut self,
        now: Timestamp,
        session: SessionId,
        message: ClientMessage,
        actions: &mut Vec<GatewayAction>,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        match (&mut s.state, message) {
            (
                SessionState::AwaitingAuth { challenge, .. },
                ClientMessage::Authenticate { client_key, proof },
            ) => {
                // The prekey service's address is never a client's.
                if client_key == PREKEY_SERVICE_DESTINATION
                    || !challenge.verify(&client_key, &proof)
                {
                    self.stats.auth_refused();
                    self.end_session(session, CloseReason::AuthFailed, actions);
                    return;
                }
                self.authenticated(now, session, client_key, actions);
            }
            (
                SessionState::Authenticated { client, .. },
                ClientMessage::SendPacket { first_hop, packet },
            ) => {
                let client = *client;
                if self
                    .layer1
                    .as_ref()
                    .is_some_and(|l1| !l1.contains(&first_hop))
                {
                    self.stats.dropped(GatewayDropReason::NotLayer1);
                    return;
                }
                let throttle = self.config.throttle;
                let bucket = self
                    .buckets
                    .entry(client)
                    .or_insert_with(|| TokenBucket::new(throttle, now));
                if bucket.try_take(now) {
                    self.stats.forwarded();
                    actions.push(GatewayAction::Forward(OutgoingPacket {
                        first_hop,
                        bytes: packet.to_vec(),
                    }));
                } else {
                    self.stats.dropped(GatewayDropReason::Throttled);
                }
            }
            (
                SessionState::Authenticated {
                    client, in_flight, ..
                },
                ClientMessage::AckDelivery { mailbox_id },
            ) => {
                let id = MailboxId(mailbox_id);
                in_flight.remove(&id);
                if self.held.take(client, id).is_some() {
                    // Taken before it was written: it never will be, and
                    // its SURB-ack leaves at its instant.
                    self.stats.taken_unstored();
                    self.stats.set_held(self.held.len() as u64);
                } else {
                    self.acked.push((*client, id));
                }
                if !self.acking.contains(&session) {
                    self.acking.push(session);
                }
            }
            (
                SessionState::Authenticated { client, .. },
                ClientMessage::PublishBundle {
                    fingerprint,
                    published,
                },
            ) => {
                let client = *client;
                self.publish_bundle(&client, &fingerprint, &published);
                self.send_prekey_stock(session, &client, actions);
            }
            (
                SessionState::Authenticated { client, .. },
                ClientMessage::AddOneTimePrekeys { keys },
            ) => {
                let client = *client;
                self.add_one_time_prekeys(&client, &keys);
                self.send_prekey_stock(session, &client, actions);
            }
            (SessionState::AwaitingAuth { .. }, ClientMessage::Enroll { invite })
                if s.invite.is_none() =>
            {
                s.invite = Some(invite);
            }
            (SessionState::AwaitingAuth { .. }, message) => {
                if matches!(message, ClientMessage::SendPacket { .. }) {
                    self.stats.dropped(GatewayDropReason::Unauthenticated);
                }
                self.stats.malformed();
                self.end_session(session, CloseReason::Malformed, actions);
            }
            (
                SessionState::Authenticated { .. },
                ClientMessage::Authenticate { .. } | ClientMessage::Enroll { .. },
            ) => {
                self.stats.malformed();
                self.end_session(session, CloseReason::Malformed, actions);
            }
        }
    }

    fn authenticated(
        &mut self,
        now: Timestamp,
        session: SessionId,
        client: ClientKey,
        actions: &mut Vec<GatewayAction>,
    ) {
        if self.admission.revoked.contains(&client) {
            self.stats.enrollment_refused();
            self.end_session(session, CloseReason::NotRegistered, actions);
            return;
        }
        let invite = self.sessions.get(&session).and_then(|s| s.invite);
        if self.clients.contains_key(&client) {
            // Seen today; a failed write only delays the registration's expiry.
            let _ = self.register_client(now, &client);
        } else {
            let mut enrolled = None;
            if !self.config.open_registration {
                // Closed admission: an unused invite, or no registration.
                match invite.map(|code| invite_digest(&code)) {
                    Some(digest) if self.admission.invites.contains(&digest) => {
                        enrolled = Some(digest);
                    }
                    _ => {
                        self.stats.enrollment_refused();
                        self.end_session(session, CloseReason::NotRegistered, actions);
                        return;
                    }
                }
            }
            if self.clients.len() >= self.config.max_clients {
                self.stats.session_refused();
                self.end_session(session, CloseReason::GatewayFull, actions);
                return;
            }
            let source = self.sessions.get(&session).map(|s| s.source);
            if let Some(source) = source
                && !self.sources.allow(now, source, SourceRequest::Registration)
            {
                self.stats.source_limited(SourceRequest::Registration);
                self.end_session(session, CloseReason::SourceLimited, actions);
                return;
            }
            if self.register_client(now, &client).is_err() {
                self.stats.session_refused();
                self.end_session(session, CloseReason::GatewayFull, actions);
                return;
            }
            if let Some(digest) = enrolled {
                // Used once: the shell persists it before anything else.
                self.admission.invites.remove(&digest);
                self.admission.redeemed.push((digest, client));
                self.stats.enrolled();
            }
        }
        if let Some(old) = self.online.insert(client, session)
            && old != session
        {
            self.end_session(old, CloseReason::Replaced, actions);
            self.online.insert(client, session);
        }
        // What was pushed in an earlier session and not taken is stored now,
        // so that this session's pushes (from the mailbox, in id order)
        // include it.
        let earlier = self.held.take_client(&client);
        self.store_held(now, earlier);
        if let Some(s) = self.sessions.get_mut(&session) {
            if let SessionState::AwaitingAuth { deadline, .. } = s.state {
                self.auth_deadlines.remove(&(deadline, session));
            }
            s.state = SessionState::Authenticated {
                client,
                in_flight: BTreeSet::new(),
                cursor: None,
            };
        }
        self.stats.authenticated();
        self.update_session_gauges();
        actions.push(GatewayAction::Send {
            session,
            bytes: GatewayMessage::Welcome.encode(),
        });
        self.send_prekey_stock(session, &client, actions);
        self.pump(session, actions);
    }

    /// Pushes stored messages to an authenticated session, up to its window.
    pub(crate) fn pump(&mut self, session: SessionId, actions: &mut Vec<GatewayAction>) {
        let Some(Session {
            state:
                SessionState::Authenticated {
                    client,
                    in_flight,
                    cursor,
                },
            ..
        }) = self.sessions.get_mut(&session)
        else {
            return;
        };
        let room = self.config.delivery_window.saturating_sub(in_flight.len());
        let Ok(messages) = self.mailbox.list(client, *cursor, room) else {
            return;
        };
        let mut bytes = Vec::new();
        for m in messages {
            in_flight.insert(m.id);
            *cursor = Some(m.id);
            self.stats.delivered();
            GatewayMessage::Deliver {
                mailbox_id: m.id.0,
                surb_id: m.surb_id,
                payload: m.payload,
            }
            .encode_into(&mut bytes);
        }
        if !bytes.is_empty() {
            actions.push(GatewayAction::Send { session, bytes });
        }
    }

    /// Sends `Close` and forgets the session.
    fn end_session(
        &mut self,
        session: SessionId,
        reason: CloseReason,
        actions: &mut Vec<GatewayAction>,
    ) {
        self.close_session(session);
        actions.extend(closing(session, reason));
    }

    /// Time passed: closes sessions that did not authenticate in time and
    /// sweeps expired messages from the mailbox when a sweep is due.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<GatewayAction> {
        let mut actions = Vec::new();
        let due = self.held.due(now);
        self.store_held(now, due);
        self.release_acks(now, &mut actions);
        let mut late = Vec::new();
        while let Some(&(deadline, session)) = self.auth_deadlines.first() {
            if deadline > now {
                break;
            }
            self.auth_deadlines.pop_first();
            late.push(session);
        }
        for session in late {
            self.stats.auth_timed_out();
            self.end_session(session, CloseReason::AuthTimeout, &mut actions);
        }
        if now >= self.next_sweep {
            if self.registrations_swept != Some(RegistrationDay::of(now)) {
                self.registrations_swept = Some(RegistrationDay::of(now));
                self.expire_registrations(now);
            }
            self.sources.forget_idle(now);
            let batch = self.mailbox.config().expiry_batch.max(1) as u64;
            let removed = self.mailbox.expire(now).unwrap_or(0);
            if removed > 0 {
                self.stats.expired(removed);
                self.update_gauges();
            }
            // A full batch means more may be due: sweep again at once.
            let regular = if removed >= batch {
                now
            } else {
                now.saturating_add(self.config.expiry_interval)
            };
            // A sender's lifetime may end before the regular sweep.
            let earliest = self.mailbox.next_expiry().ok().flatten();
            self.next_sweep = earliest
                .filter(|t| *t > now)
                .map_or(regular, |t| t.min(regular));
        }
        actions
    }

    /// When [`GatewayCore::handle_timeout`] next has work.
    pub fn next_timeout(&self) -> Timestamp {
        [
            self.auth_deadlines.first().map(|(at, _)| *at),
            self.held.next_deadline(),
            self.due_acks.next_instant(),
        ]
        .into_iter()
        .flatten()
        .fold(self.next_sweep, Timestamp::min)
    }

    /// Closes every session (the gateway is stopping); mailboxes stay.
    pub fn shutdown(&mut self) -> Vec<GatewayAction> {
        let mut actions = Vec::new();
        let all: Vec<SessionId> = self.sessions.keys().copied().collect();
        for session in all {
            self.end_session(session, CloseReason::Shutdown, &mut actions);
        }
        actions
    }

    fn update_session_gauges(&self) {
        self.stats
            .set_sessions(self.sessions.len() as u64, self.online.len() as u64);
    }

    pub(crate) fn update_gauges(&self) {
        let usage = self.mailbox.usage();
        self.stats.set_mailbox(usage.messages, usage.bytes);
    }
}

fn closing(session: SessionId, reason: CloseReason) -> Vec<GatewayAction> {
    vec![
        GatewayAction::Send {
            session,
            bytes: GatewayMessage::Close { reason }.encode(),
        },
        GatewayAction::Close { session, reason },
    ]
}

/// Closed admission's state: invites not used yet (by digest), invites used
/// since the shell last asked, and revoked clients.
#[derive(Debug, Default)]
struct Admission {
    invites: HashSet<[u8; 32]>,
    redeemed: Vec<([u8; 32], ClientKey)>,
    revoked: HashSet<ClientKey>,
}

/// The digest under which an invite code is kept: SHA-256 with a label, so
/// that the gateway's list of invites does not hold usable codes.
pub fn invite_digest(code: &[u8; protocol::link::INVITE_LEN]) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"mixnet-gateway/v1 invite\0");
    hash.update(code);
    hash.finalize().into()
}
