//! The client task: one owner of the core, its gateway session and its timers.
//!
//! It wakes at the core's `poll_timeout`, on a delivery from the gateway, on
//! a call from the application and on a new topology. Every wake runs the
//! same steps: hand due packets to the gateway, pass the core's events on.
//! A delivery is acknowledged to the gateway only after
//! `ClientCore::handle_delivery` (or, for a reply, `handle_reply_frame`)
//! returned (the core holds it) and, for a fragment of a message or reply
//! still partial, after it was appended to the reassembly journal
//! (`journal`), which is replayed into the core at the next start; when
//! the application does not read its messages, the task stops taking
//! deliveries, so they wait in the gateway's mailbox, not in memory here.
//!
//! It also wakes when the session book's prekeys are due to rotate (or
//! retired ones to be erased): it rotates them, saves the book, publishes
//! the new card, and sends the new bundle to each correspondent of an
//! established session as an ordinary message of that session.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use protocol::ClientAddress;
use protocol::fragment::MessageId;
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::link::CloseReason;
use protocol::packet::SURB_ID_SIZE;
use protocol::surb::SurbId;
use rand::RngExt;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use topology::Topology;
use transport::Backoff;
use zeroize::Zeroizing;

use super::api::{
    ClientOptions, ClientParts, Outgoing, RecalledMessage, ReceivedMessage, ReplyPath, SendStatus,
    ShellStats,
};
use super::clock::{Clock, unix_now};
use super::journal::{Appended, JournalLimits, JournalRecord, PartialJournal};
use super::link::{GatewayDelivery, GatewayDialer, GatewayLink, GatewayLinkError};
use super::prekeys::WaitingSend;
use super::routes::TopologyRoutes;
use super::store::{BookFile, FolderLock};
use crate::contacts::Recipient;
use client_core::ClientError;
use client_core::sessions::{
    AddressCard, NoticeVerdict, OpenedKind, Pseudonym, RotationSchedule, SessionBook,
    SessionBookError, ShortAddress,
};
use client_core::{
    ClientConfig, ClientCore, ClientEvent, ClientStats, DeliveryOutcome, Envelope, ReplySource,
    Transmission,
};

/// Work on the session book in the driver: says whether it changed the
/// book, and what to do once the book is saved (or not).
pub(crate) type BookCall = Box<dyn FnOnce(&mut SessionBook) -> (bool, BookFinish) + Send>;
/// Answers a [`BookCall`] with the outcome of saving the book.
pub(crate) type BookFinish = Box<dyn FnOnce(Result<(), ClientError>) + Send>;

/// A call from a [`Client`](super::Client) handle.
pub(crate) enum Command {
    Send {
        to: Recipient,
        bytes: Vec<u8>,
        reply_surbs: Option<usize>,
        lifetime: Option<Duration>,
        /// Under which identity, and whether this client's address is
        /// claimed inside the message.
        sender: Sender,
        respond: oneshot::Sender<Result<Outgoing, ClientError>>,
    },
    ForgetPseudonym(Pseudonym),
    Reply {
        handle: ReplyPath,
        bytes: Vec<u8>,
        /// Whether each fragment carries a SURB-ack and waits for it.
        acked: bool,
        respond: oneshot::Sender<Result<Outgoing, ClientError>>,
    },
    Recall {
        id: MessageId,
        respond: oneshot::Sender<Result<Outgoing, ClientError>>,
    },
    CoreStats {
        respond: oneshot::Sender<ClientStats>,
    },
    AddContact {
        card: AddressCard,
        respond: oneshot::Sender<Result<(), ClientError>>,
    },
    Book(BookCall),
}

/// Under which identity a message goes, and what it says of its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sender {
    /// This client's identity, its address claimed inside.
    Claimed,
    /// This client's identity, no address claimed.
    Unclaimed,
    /// A throwaway identity for the pseudonym, no address claimed.
    Pseudonym(Pseudonym),
}

/// The wall-clock instant of `t`.
fn unix_time(t: e2ee::UnixSeconds) -> SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(t.0)
}

/// The SURB id of a forward delivery.
const FORWARD: SurbId = SurbId([0; SURB_ID_SIZE]);

type Connecting<L> = Pin<Box<dyn Future<Output = Result<L, GatewayLinkError>> + Send>>;

/// The core's settings with the network-wide rates of `topology`.
pub(crate) fn core_config(options: &ClientOptions, topology: &Topology) -> ClientConfig {
    let mut config = options.core;
    if options.rates_from_topology {
        config.send_rate = topology.params.lambda_p;
        config.loop_cover_rate = topology.params.lambda_l;
        config.mean_hop_delay = topology.params.mean_delay;
    }
    config
}

pub(crate) struct Driver<C: GatewayDialer> {
    pub(crate) core: ClientCore<TopologyRoutes>,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) clock: Clock,
    options: ClientOptions,
    connector: Arc<C>,
    pub(crate) link: Option<C::Link>,
    connecting: Option<Connecting<C::Link>>,
    retry_at: Instant,
    backoff: Backoff,
    commands: mpsc::Receiver<Command>,
    received: mpsc::Sender<ReceivedMessage>,
    /// A received message waiting for room in `received`.
    held: Option<ReceivedMessage>,
    recalled: mpsc::Sender<RecalledMessage>,
    outgoing: HashMap<MessageId, watch::Sender<SendStatus>>,
    /// Recalls on their way: the recall message's id → the recalled message's.
    /// The recalled message's record goes once its recall is delivered.
    recalls: HashMap<MessageId, MessageId>,
    topology: watch::Receiver<Arc<Topology>>,
    /// Whether topology updates can still come.
    topology_open: bool,
    connected: watch::Sender<bool>,
    pub(crate) stats: Arc<ShellStats>,
    pub(crate) book: SessionBook,
    book_file: Option<BookFile>,
    /// The reply SURBs changed since they were last saved.
    replies_dirty: bool,
    /// When they were last saved: at most once a second while they change.
    replies_saved_at: Option<protocol::time::Timestamp>,
    journal: Option<PartialJournal>,
    /// Held, never read: no other process runs this folder's client while it lives.
    _folder_lock: Option<FolderLock>,
    /// When the prekeys rotate and how long retired ones are kept.
    schedule: RotationSchedule,
    /// The current address card, for [`Client::card`](super::Client::card).
    card: watch::Sender<AddressCard>,
    /// When the book's prekeys next need [`Driver::rotate_prekeys`].
    pub(crate) prekeys_due: e2ee::UnixSeconds,
    /// Whether the card is to be published at the gateway (at every new
    /// session, and after a rotation).
    pub(crate) publish_due: bool,
    /// Messages to short addresses waiting for their bundle from the gateway.
    pub(crate) awaiting_bundle: HashMap<ShortAddress, Vec<WaitingSend>>,
}

/// Journals a delivery by what the core did with it: a fragment of a
/// message (or reply) still partial is appended (and fsynced), as `record`
/// makes it; a message that ended without an event loses its file. A
/// single-fragment message is never journaled: it completed in the same
/// call. A record that cannot be made counts as a failed write.
fn journal_fragment(
    journal: &mut Option<PartialJournal>,
    stats: &ShellStats,
    outcome: DeliveryOutcome,
    record: impl FnOnce() -> Option<JournalRecord>,
) {
    let Some(journal) = journal.as_mut() else {
        return;
    };
    match outcome {
        DeliveryOutcome::Held { message, fragments } if fragments > 1 => {
            match record().map(|r| journal.append(&message, &r)) {
                Some(Ok(Appended::Written)) => {}
                Some(Ok(Appended::Full)) => ShellStats::add(&stats.journal_full, 1),
                Some(Err(e)) => {
                    tracing::error!("cannot journal a fragment: {e}");
                    ShellStats::add(&stats.journal_write_failures, 1);
                }
                None => ShellStats::add(&stats.journal_write_failures, 1),
            }
        }
        DeliveryOutcome::Ended { message } => journal.remove(&message),
        _ => {}
    }
}

/// Waits for the next delivery of `link`, or forever when there is none.
async fn next_delivery<L: GatewayLink>(link: &mut Option<L>) -> Option<GatewayDelivery> {
    match link {
        Some(link) => link.next_delivery().await,
        None => std::future::pending().await,
    }
}

/// Why a link ended, for the log: the reason the gateway gave, if any.
fn ended_link(reason: Option<CloseReason>) -> String {
    match reason {
        Some(reason) => GatewayLinkError::Refused(reason).to_string(),
        None => "the gateway closed the session".into(),
    }
}

/// Waits for `connecting`, or forever when nothing is connecting.
async fn connected<L>(connecting: &mut Option<Connecting<L>>) -> Result<L, GatewayLinkError> {
    match connecting {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Waits until `received` has room (this task is its only sender, so the
/// room stays), or forever once the application dropped it.
async fn room(received: &mpsc::Sender<ReceivedMessage>) {
    match received.reserve().await {
        Ok(permit) => drop(permit),
        Err(_) => std::future::pending().await,
    }
}

/// The allowed regions of `options`, shared by every route table.
fn regions_of(options: &ClientOptions) -> Option<Arc<[String]>> {
    options.route_regions.as_ref().map(|r| r.clone().into())
}

/// Sleeps until `at`, or forever.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<C: GatewayDialer> Driver<C> {
    pub(crate) fn new(
        parts: ClientParts<C>,
        mut rng: ChaCha20Rng,
        commands: mpsc::Receiver<Command>,
        received: mpsc::Sender<ReceivedMessage>,
        recalled: mpsc::Sender<RecalledMessage>,
        connected: watch::Sender<bool>,
        stats: Arc<ShellStats>,
    ) -> Self {
        let clock = Clock::start();
        let topology = parts.topology.borrow().clone();
        let config = core_config(&parts.options, &topology);
        let core = ClientCore::new(
            config,
            parts.keys,
            parts.gateway,
            TopologyRoutes::new(topology, regions_of(&parts.options)),
            clock.now(),
            &mut rng,
        );
        let backoff_seed = rng.random();
        let schedule = parts.options.prekey_rotation.unwrap_or_default();
        let (card, _) = watch::channel(parts.sessions.card(core.address()));
        let mut driver = Driver {
            core,
            rng,
            clock,
            backoff: Backoff::new(
                parts.options.min_backoff,
                parts.options.max_backoff,
                backoff_seed,
            ),
            options: parts.options,
            connector: Arc::new(parts.connector),
            link: None,
            connecting: None,
            retry_at: clock.to_instant(clock.now()),
            commands,
            received,
            held: None,
            recalled,
            outgoing: HashMap::new(),
            recalls: HashMap::new(),
            topology: parts.topology,
            topology_open: true,
            connected,
            stats,
            book: parts.sessions,
            book_file: parts.book_file,
            replies_dirty: false,
            replies_saved_at: None,
            journal: parts.journal,
            _folder_lock: parts.folder_lock,
            schedule,
            card,
            prekeys_due: e2ee::UnixSeconds(0),
            publish_due: true,
            awaiting_bundle: HashMap::new(),
        };
        driver.replay_journal();
        driver.restore_reply_surbs();
        driver.rotate_prekeys();
        driver
    }

    /// Takes back the reply SURBs saved before the last stop, so that
    /// replies to what this client sent then are still read (and take their
    /// place in their sender's chain, docs/e2ee.md, "Routing tags").
    fn restore_reply_surbs(&mut self) {
        let Some(file) = &self.book_file else {
            return;
        };
        let restored = file
            .load_replies()
            .map_err(|e| e.to_string())
            .and_then(|saved| {
                let Some(saved) = saved else {
                    return Ok(0);
                };
                let elapsed = Duration::from_secs(unix_now().0.saturating_sub(saved.saved_at.0));
                self.core
                    .restore_reply_surbs(self.clock.now(), elapsed, &saved.recoveries)
                    .map_err(|e| e.to_string())
            });
        match restored {
            Ok(n) => ShellStats::add(&self.stats.reply_surbs_restored, n as u64),
            Err(e) => tracing::warn!("reply SURBs of the last run not taken back: {e}"),
        }
    }

    /// The message just queued carries `surbs` reply SURBs: their
    /// recoveries are saved before its packets leave (unless the last save
    /// was under a second ago: then within the second).
    fn reply_surbs_added(&mut self, surbs: usize) {
        if surbs > 0 {
            self.replies_dirty = true;
            self.save_reply_surbs(false);
        }
    }

    /// Saves the reply SURBs if they changed: at once the first time, then
    /// at most once a second while they keep changing, and at once when
    /// `now_anyway` (the client stops).
    fn save_reply_surbs(&mut self, now_anyway: bool) {
        if !self.replies_dirty {
            return;
        }
        let Some(file) = &self.book_file else {
            self.replies_dirty = false;
            return;
        };
        let now = self.clock.now();
        if !now_anyway
            && self
                .replies_saved_at
                .is_some_and(|at| now < at.saturating_add(Duration::from_secs(1)))
        {
            return;
        }
        let bytes = Zeroizing::new(self.core.reply_surbs_to_bytes(now));
        match file.save_replies(&mut self.rng, unix_now(), &bytes) {
            Ok(()) => {
                self.replies_dirty = false;
                self.replies_saved_at = Some(now);
            }
            Err(e) => {
                tracing::error!("cannot save the reply SURBs: {e}");
                ShellStats::add(&self.stats.state_write_failures, 1);
            }
        }
    }

    /// Rotates the prekeys when due and erases retired ones past their
    /// grace ([`SessionBook::rotate_if_due`]), then seals the new bundle for
    /// the correspondents whose announcement is due (each at a random moment
    /// within half the grace), saves the book, and only then sends
    /// those messages (each an ordinary message: the same packets as any
    /// other). Without a saved book nothing is sent: it is tried again at
    /// the next start.
    fn rotate_prekeys(&mut self) {
        let now = unix_now();
        let rotation = self.book.rotate_if_due(now, &self.schedule, &mut self.rng);
        self.prekeys_due = self.book.next_prekey_change(&self.schedule);
        if let Some((old, new)) = rotation.rotated {
            tracing::info!("prekeys rotated: signed prekey {old} retired, {new} current");
            ShellStats::add(&self.stats.prekey_rotations, 1);
            self.card.send_replace(self.book.card(self.core.address()));
            self.publish_due = true;
        }
        if !rotation.erased.is_empty() {
            tracing::info!(
                "retired prekeys erased at the end of their grace: {:?}",
                rotation.erased
            );
        }
        if !rotation.changed() && self.book.announcements_due(now) == 0 {
            return;
        }
        let own = self.core.address();
        let sealed = self.book.announcements(now, &mut self.rng, Some(&own));
        self.prekeys_due = self.book.next_prekey_change(&self.schedule);
        if self.save_book().is_err() {
            return;
        }
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!("the new prekey bundle could not be sealed: {e}");
                return;
            }
        };
        let at = self.clock.now();
        for (to, message) in sealed {
            let routed = self
                .check_topology_valid()
                .and_then(|()| {
                    self.core
                        .routes()
                        .check_route_to(&to.gateway)
                        .map_err(|e| ClientError::OutsideRegions(e.to_string()))
                })
                .and_then(|()| self.core.send(at, &to, &message, 0, &mut self.rng));
            match routed {
                Ok(_) => ShellStats::add(&self.stats.bundles_sent, 1),
                Err(e) => {
                    tracing::warn!("the new prekey bundle was not sent to a correspondent: {e}")
                }
            }
        }
    }

    /// A watch of the current address card.
    pub(crate) fn card_watch(&self) -> watch::Receiver<AddressCard> {
        self.card.subscribe()
    }

    /// Replays the reassembly journal into the core (before the first
    /// session): every file younger than the reassembly timeout, in order.
    /// A file the core takes nothing from is removed.
    fn replay_journal(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let config = self.core.config();
        journal.set_limits(JournalLimits::for_config(config));
        #[allow(clippy::disallowed_methods)] // file ages are wall-clock times
        let wall = SystemTime::now();
        let recovered = journal.recover(wall, config.reassembly.timeout);
        let mut discarded = recovered.discarded as u64;
        let now = self.clock.now();
        for (id, records) in recovered.messages {
            let (mut kept, mut ended) = (false, false);
            for record in &records {
                let outcome = match record {
                    JournalRecord::Delivery(payload) => {
                        self.core.handle_delivery(now, FORWARD, payload)
                    }
                    // Sealed under the folder's key: a folder without one
                    // (or another key) opens nothing, and the file goes.
                    JournalRecord::SealedReply(sealed) => {
                        match self.book_file.as_ref().map(|f| f.open_reply(sealed)) {
                            Some(Ok(frame)) => {
                                self.core
                                    .handle_reply_frame(now, ReplySource::Journaled, &frame)
                            }
                            _ => continue,
                        }
                    }
                };
                ShellStats::add(&self.stats.journal_replayed, 1);
                match outcome {
                    DeliveryOutcome::Held { .. }
                    | DeliveryOutcome::Duplicate
                    | DeliveryOutcome::Completed { .. } => kept = true,
                    DeliveryOutcome::Ended { .. } => ended = true,
                    DeliveryOutcome::Acked
                    | DeliveryOutcome::Cover
                    | DeliveryOutcome::Dropped(_) => {}
                }
            }
            // A completed message's file goes with its `Received` event.
            if ended || !kept {
                journal.remove(&id);
                discarded += 1;
            }
        }
        ShellStats::add(&self.stats.journal_discarded, discarded);
    }

    /// Forgets the journal file of message `id` (complete or abandoned).
    fn forget_partial(&mut self, id: &MessageId) {
        if let Some(journal) = self.journal.as_mut() {
            journal.remove(id);
        }
    }

    pub(crate) fn address(&self) -> ClientAddress {
        self.core.address()
    }

    pub(crate) fn short_address(&self) -> ShortAddress {
        self.book.short_address(self.core.address().gateway)
    }

    /// Seals the session book into the data folder. A failure is logged
    /// and counted, and returned: a caller about to send what the advanced
    /// book sealed must not send it (after a crash the book on disk would
    /// use the same message key again).
    pub(crate) fn save_book(&mut self) -> Result<(), SessionBookError> {
        let Some(file) = &self.book_file else {
            return Ok(());
        };
        file.save(&mut self.rng, &self.book).map_err(|e| {
            tracing::error!("cannot save the session book: {e}");
            ShellStats::add(&self.stats.state_write_failures, 1);
            SessionBookError::StateNotSaved
        })
    }

    /// Runs until every [`Client`](super::Client) handle is gone.
    pub(crate) async fn run(mut self) {
        loop {
            if unix_now() >= self.prekeys_due {
                self.rotate_prekeys();
            }
            let prekeys_wake = self.clock.instant_of_unix(self.prekeys_due);
            self.save_reply_surbs(false);
            self.transmit().await;
            self.pass_events();
            self.tend_prekeys().await;
            if self.link.is_none() && self.connecting.is_none() && self.due(self.retry_at) {
                let connector = self.connector.clone();
                self.connecting = Some(Box::pin(async move { connector.dial().await }));
            }
            // Without a session the core's ticks are not taken (they would
            // only be lost): it wakes for the next attempt instead.
            let wake = match (&self.link, &self.connecting) {
                (Some(_), _) => self.core.poll_timeout().map(|t| self.clock.to_instant(t)),
                (None, None) => Some(self.retry_at),
                (None, Some(_)) => None,
            };
            let taking = self.link.is_some() && self.held.is_none();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                result = connected(&mut self.connecting) => {
                    self.connecting = None;
                    self.on_connect(result);
                }
                delivery = next_delivery(&mut self.link), if taking => match delivery {
                    Some(delivery) => self.take_delivery(delivery).await,
                    None => {
                        let reason = self.link.as_ref().and_then(|l| l.close_reason());
                        self.lose_link(ended_link(reason));
                    }
                },
                changed = self.topology.changed(), if self.topology_open => {
                    self.topology_open = changed.is_ok();
                    if changed.is_ok() {
                        let topology = self.topology.borrow_and_update().clone();
                        *self.core.routes_mut() =
                            TopologyRoutes::new(topology, regions_of(&self.options));
                        ShellStats::add(&self.stats.topology_updates, 1);
                    }
                }
                () = room(&self.received), if self.held.is_some() => {
                    // `pass_events` sends the held message at the top of the loop.
                }
                () = sleep_until_opt(wake) => {}
                () = sleep_until(prekeys_wake) => {}
            }
        }
        self.save_reply_surbs(true);
        self.connected.send_replace(false);
    }

    #[allow(clippy::disallowed_methods)] // the async shell owns the real clock
    fn due(&self, at: Instant) -> bool {
        Instant::now() >= at
    }

    fn on_connect(&mut self, result: Result<C::Link, GatewayLinkError>) {
        match result {
            Ok(link) => {
                tracing::info!("connected to the gateway");
                self.link = Some(link);
                self.publish_due = true;
                self.backoff.reset();
                ShellStats::add(&self.stats.connects, 1);
                self.connected.send_replace(true);
            }
            Err(e) => {
                let wait = self.schedule_retry();
                tracing::warn!("{e}; retrying in {wait:?}");
            }
        }
    }

    /// Schedules the next attempt after the link's backoff (jittered, so
    /// that clients cut off together do not return together); returns the wait.
    fn schedule_retry(&mut self) -> Duration {
        let wait = self.backoff.next_delay();
        self.retry_after(wait);
        wait
    }

    /// Dials again `wait` from now.
    fn retry_after(&mut self, wait: Duration) {
        self.retry_at = self.clock.to_instant(self.clock.now()) + wait;
    }

    /// Forgets the session and tells the application it is disconnected.
    fn end_link(&mut self) {
        self.link = None;
        ShellStats::add(&self.stats.disconnects, 1);
        self.connected.send_replace(false);
    }

    /// Leaves the gateway session to the newer session of this client that
    /// replaced it, and dials again only after the longest backoff: two
    /// clients of one address (a copy of the data folder running elsewhere)
    /// would otherwise take the session from each other several times a
    /// second, each losing the other's deliveries and acknowledgements.
    fn give_way(&mut self) {
        self.end_link();
        let wait = self.backoff.capped_delay();
        self.retry_after(wait);
        tracing::warn!(
            "another client of this address took the gateway session (is a copy of this \
             data folder running elsewhere?); trying again in {wait:?}"
        );
    }

    /// Ends the session that failed (`why`, for the log) and dials again
    /// after the backoff; gives way instead when the gateway said a newer
    /// session of this client replaced it, whichever path noticed first (a
    /// failed write may come before the delivery stream's end).
    pub(crate) fn lose_link(&mut self, why: String) {
        if self.link.as_ref().and_then(|l| l.close_reason()) == Some(CloseReason::Replaced) {
            self.give_way();
            return;
        }
        tracing::warn!("gateway session lost: {why}");
        self.end_link();
        self.schedule_retry();
    }

    /// Hands every packet due now to the gateway; without a session, only
    /// runs the core's timers.
    async fn transmit(&mut self) {
        let now = self.clock.now();
        let Some(link) = self.link.as_mut() else {
            self.core.handle_timeout(now);
            return;
        };
        while let Some(Transmission { packet, .. }) = self.core.poll_transmit(now, &mut self.rng) {
            let len = packet.bytes.len() as u64;
            if let Err(e) = link.send_packet(packet.first_hop, packet.bytes).await {
                self.lose_link(e.to_string());
                return;
            }
            ShellStats::add(&self.stats.packets_sent, 1);
            ShellStats::add(&self.stats.bytes_sent, len);
        }
    }

    async fn take_delivery(&mut self, delivery: GatewayDelivery) {
        ShellStats::add(&self.stats.deliveries, 1);
        ShellStats::add(&self.stats.bytes_received, delivery.payload.len() as u64);
        let replies_before = self.core.occupancy().reply_surbs;
        let now = self.clock.now();
        // A reply is opened here, so that its frame can be journaled: the
        // SURB that opens it is used up by the core.
        let reply = if delivery.surb_id.is_forward() {
            None
        } else {
            self.core.open_reply(&delivery.surb_id, &delivery.payload)
        };
        let outcome = match &reply {
            Some(frame) => {
                self.core
                    .handle_reply_frame(now, ReplySource::Delivered(delivery.surb_id), frame)
            }
            None => self
                .core
                .handle_delivery(now, delivery.surb_id, &delivery.payload),
        };
        if self.core.occupancy().reply_surbs != replies_before {
            // A reply SURB was used up: saved with the next save.
            self.replies_dirty = true;
        }
        if delivery.surb_id.is_forward() {
            journal_fragment(&mut self.journal, &self.stats, outcome, || {
                Some(JournalRecord::Delivery(delivery.payload.clone()))
            });
        } else if let Some(frame) = reply {
            let (book_file, rng) = (self.book_file.as_ref(), &mut self.rng);
            journal_fragment(&mut self.journal, &self.stats, outcome, || {
                // A folder's journal comes with its key; without one (no
                // folder), there is no journal either.
                let sealed = book_file?.seal_reply(rng, &frame);
                sealed
                    .map_err(|e| tracing::error!("cannot seal a reply fragment: {e}"))
                    .ok()
                    .map(JournalRecord::SealedReply)
            });
        }
        if matches!(outcome, DeliveryOutcome::Completed { .. }) {
            // The message is saved (session book) and its journal file gone
            // before the fragment that completed it is acknowledged.
            self.pass_events();
        }
        // The core holds it now (and the journal, for a partial message), or
        // dropped it as malformed: the gateway may delete it.
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.ack(delivery.mailbox_id).await {
            Ok(()) => ShellStats::add(&self.stats.acks_sent, 1),
            Err(e) => self.lose_link(e.to_string()),
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Send {
                to,
                bytes,
                reply_surbs,
                lifetime,
                sender,
                respond,
            } => {
                if let Err(e) = self.check_topology_valid() {
                    let _ = respond.send(Err(e));
                    return;
                }
                let surbs = reply_surbs.unwrap_or(self.options.reply_surbs);
                if let Some(short) = self.needs_bundle(&to) {
                    let send = WaitingSend {
                        bytes,
                        surbs,
                        lifetime,
                        sender,
                        respond,
                    };
                    self.wait_for_bundle(short, send);
                    return;
                }
                let result = self.send(now, &to, &bytes, surbs, lifetime, sender);
                let _ = respond.send(result);
            }
            Command::Reply {
                mut handle,
                bytes,
                acked,
                respond,
            } => {
                if let Err(e) = self.check_topology_valid() {
                    let _ = respond.send(Err(e));
                    return;
                }
                if let Err(e) = self.core.routes().check_reply() {
                    let _ = respond.send(Err(ClientError::OutsideRegions(e.to_string())));
                    return;
                }
                let own = self.core.address();
                let sealed =
                    self.book
                        .seal_in(&mut self.rng, handle.session, Some(&own), &bytes, None);
                // Saved before anything leaves, as for a message.
                let saved = self.save_book();
                let result = sealed
                    .and_then(|sealed| saved.map(|()| sealed))
                    .map_err(ClientError::from)
                    .and_then(|sealed| {
                        let id = if acked {
                            self.core
                                .reply(now, &mut handle.handle, &sealed, &mut self.rng)
                        } else {
                            self.core.reply_unacknowledged(
                                now,
                                &mut handle.handle,
                                &sealed,
                                &mut self.rng,
                            )
                        };
                        id.map(|id| (id, sealed.len()))
                    })
                    .map(|(id, len)| self.track(id, Envelope::reply_len(len)));
                let _ = respond.send(result);
            }
            Command::Recall { id, respond } => {
                if let Err(e) = self.check_topology_valid() {
                    let _ = respond.send(Err(e));
                    return;
                }
                let result = self.recall(now, &id);
                let _ = respond.send(result);
            }
            Command::ForgetPseudonym(pseudonym) => {
                self.book.forget_pseudonym(pseudonym);
                let _ = self.save_book();
            }
            Command::CoreStats { respond } => {
                let _ = respond.send(self.core.stats().clone());
            }
            Command::AddContact { card, respond } => {
                if let Err(e) = card.check_not_expired(unix_now()) {
                    tracing::warn!("{e}");
                    let _ = respond.send(Err(e.into()));
                    return;
                }
                self.book.add_contact(&card);
                let _ = respond.send(self.save_book().map_err(ClientError::from));
            }
            Command::Book(call) => {
                let (changed, finish) = call(&mut self.book);
                let saved = if changed {
                    self.save_book().map_err(ClientError::from)
                } else {
                    Ok(())
                };
                finish(saved);
            }
        }
    }

    /// Refuses a new message once the topology held has expired
    /// ([`Topology::valid_until`]): cover traffic goes on as before, so the
    /// refusal changes nothing an observer sees.
    fn check_topology_valid(&self) -> Result<(), ClientError> {
        let topology = self.core.routes().topology();
        #[allow(clippy::disallowed_methods)] // expiry is a wall-clock instant
        let now = SystemTime::now();
        if !topology.is_expired(now) {
            return Ok(());
        }
        let expired_at_unix_secs = topology
            .valid_until()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        tracing::warn!(
            "message refused: the topology of epoch {} expired at unix {expired_at_unix_secs}",
            topology.epoch
        );
        Err(ClientError::TopologyExpired {
            epoch: topology.epoch.0,
            expired_at_unix_secs,
        })
    }

    /// Seals `bytes` for `to` in its session, saves the advanced book, and
    /// only then hands the sealed message to the core. When the book cannot
    /// be saved the message is refused (`StateNotSaved`) and nothing leaves.
    pub(crate) fn send(
        &mut self,
        now: protocol::time::Timestamp,
        to: &Recipient,
        bytes: &[u8],
        surbs: usize,
        lifetime: Option<Duration>,
        sender: Sender,
    ) -> Result<Outgoing, ClientError> {
        let to = &match to {
            Recipient::Address(address) => *address,
            Recipient::Short(short) => self
                .book
                .resolve(short)
                .ok_or_else(|| SessionBookError::UnknownShortAddress(short.to_string()))?,
        };
        self.core
            .routes()
            .check_route_to(&to.gateway)
            .map_err(|e| ClientError::OutsideRegions(e.to_string()))?;
        let own = self.core.address();
        let wall = unix_now();
        let expires_at =
            lifetime.map(|l| e2ee::UnixSeconds(wall.0.saturating_add(l.as_secs().max(1))));
        let sealed = match sender {
            Sender::Claimed => {
                self.book
                    .seal(wall, &mut self.rng, to, Some(&own), bytes, expires_at)
            }
            Sender::Unclaimed => self
                .book
                .seal(wall, &mut self.rng, to, None, bytes, expires_at),
            Sender::Pseudonym(pseudonym) => {
                self.book
                    .seal_as(wall, &mut self.rng, to, pseudonym, bytes, expires_at)
            }
        };
        // The session advanced (a message key was used, or a session was
        // started) even if sealing or the core refuses: save it either way,
        // and before the core can build a packet of it.
        let saved = self.save_book();
        let sealed = sealed?;
        saved?;
        let expiry = lifetime.map(|l| now.saturating_add(l));
        let envelope_len = Envelope::message_len(surbs, sealed.len());
        if sender != Sender::Claimed {
            // Anonymous messages (a stream's segments, among others) are
            // not recallable: no record, and one save of the book each.
            let id = self
                .core
                .send_expiring(now, to, &sealed, surbs, expiry, &mut self.rng)?;
            self.reply_surbs_added(surbs);
            return Ok(self.track(id, envelope_len));
        }
        let (id, ticket) =
            self.core
                .send_recallable(now, to, &sealed, surbs, expiry, &mut self.rng)?;
        self.reply_surbs_added(surbs);
        if let Some(ticket) = ticket {
            // Remembered (sealed in the book) so that `recall` works from
            // another process; a failure to save costs the recall only.
            self.book
                .recalls_mut()
                .note_sent(unix_now(), &ticket, expires_at);
            let _ = self.save_book();
        }
        Ok(self.track(id, envelope_len))
    }

    /// Recalls message `id`: seals a recall notice in the session with its
    /// recipient, saves the book, then queues the recall in the core.
    fn recall(
        &mut self,
        now: protocol::time::Timestamp,
        id: &MessageId,
    ) -> Result<Outgoing, ClientError> {
        let ticket = self.book.recalls().ticket(unix_now(), id)?;
        self.core
            .routes()
            .check_route_to(&ticket.to.gateway)
            .map_err(|e| ClientError::OutsideRegions(e.to_string()))?;
        let notice = self.book.seal_recall_notice(&mut self.rng, &ticket.to, id);
        let saved = self.save_book();
        let notice = notice?;
        saved?;
        let recall = self.core.recall(now, &ticket, &notice, &mut self.rng)?;
        self.recalls.insert(recall, *id);
        Ok(self.track(recall, Envelope::message_len(0, notice.len())))
    }

    /// A recall notice for message `recalled` opened from `peer`: believed
    /// only from the identity that sent the message (then the application
    /// hears of it), refused and counted otherwise.
    fn take_recall_notice(
        &mut self,
        recalled: MessageId,
        peer: client_core::sessions::PeerIdentityKey,
    ) {
        let now = unix_now();
        let verdict = self.book.recalls_mut().judge_notice(now, &recalled, &peer);
        let _ = self.save_book();
        match verdict {
            NoticeVerdict::Recalled => {}
            NoticeVerdict::FromAnotherPeer => {
                tracing::debug!("recall notice refused: {}", verdict.as_str());
                ShellStats::add(&self.stats.recall_notices_refused, 1);
                return;
            }
            NoticeVerdict::UnknownMessage => {
                tracing::debug!("recall notice dropped: {}", verdict.as_str());
                ShellStats::add(&self.stats.recall_notices_unknown, 1);
                return;
            }
        }
        ShellStats::add(&self.stats.recalls_received, 1);
        let event = RecalledMessage {
            id: recalled,
            peer,
            recalled_at: unix_time(now),
            contact: self.book.name_of(&peer).cloned(),
        };
        if self.recalled.try_send(event).is_err() {
            ShellStats::add(&self.stats.recalled_events_dropped, 1);
        }
    }

    /// Watches message `id`, whose envelope is `envelope_len` bytes.
    fn track(&mut self, id: MessageId, envelope_len: usize) -> Outgoing {
        let total = envelope_len.div_ceil(FRAGMENT_CAPACITY).max(1);
        let (tx, rx) = watch::channel(SendStatus::Progress { acked: 0, total });
        self.outgoing.insert(id, tx);
        Outgoing::new(id, rx)
    }

    /// Passes the core's events on, until one received message has to wait
    /// for room (the rest wait in the core's bounded queue).
    fn pass_events(&mut self) {
        if let Some(message) = self.held.take() {
            match self.received.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(message)) => {
                    self.held = Some(message);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                ClientEvent::Received {
                    id,
                    bytes,
                    reply,
                    in_reply_to,
                } => {
                    let received_at = unix_now();
                    let opened = self.book.open(received_at, &bytes);
                    // Its sender is remembered, so that only it may recall it.
                    if let Ok(opened) = &opened
                        && opened.kind == OpenedKind::Message
                    {
                        self.book.recalls_mut().note_received(
                            received_at,
                            &id,
                            opened.peer,
                            opened.expires_at,
                        );
                    }
                    // Saved before the application sees it: a duplicate that
                    // comes after a restart is refused by the session. (A
                    // failure is counted; the message is still delivered, and
                    // could come again after a crash.)
                    if opened.is_ok() {
                        let _ = self.save_book();
                    }
                    // Then the journal of its fragments may go.
                    self.forget_partial(&id);
                    let opened = match opened {
                        Ok(opened) => opened,
                        Err(e) => {
                            tracing::debug!("message {id:?} dropped: {e}");
                            ShellStats::add(&self.stats.undecryptable, 1);
                            continue;
                        }
                    };
                    match opened.kind {
                        OpenedKind::Message => {}
                        OpenedKind::PeerBundle { kept } => {
                            // A correspondent's new prekey bundle: kept for a
                            // later session, not delivered.
                            tracing::debug!("a correspondent's new prekey bundle (kept: {kept})");
                            ShellStats::add(&self.stats.bundles_received, 1);
                            continue;
                        }
                        OpenedKind::RecallNotice { recalled } => {
                            self.take_recall_notice(recalled, opened.peer);
                            continue;
                        }
                    }
                    let message = ReceivedMessage {
                        id,
                        bytes: opened.content,
                        reply: reply.map(|handle| ReplyPath {
                            handle,
                            session: opened.session,
                        }),
                        in_reply_to,
                        peer: opened.peer,
                        from: opened.from,
                        received_at: unix_time(received_at),
                        expires_at: opened.expires_at.map(unix_time),
                        contact: self.book.name_of(&opened.peer).cloned(),
                    };
                    if let Err(mpsc::error::TrySendError::Full(message)) =
                        self.received.try_send(message)
                    {
                        self.held = Some(message);
                        return;
                    }
                }
                ClientEvent::Progress { id, acked, total } => {
                    if let Some(status) = self.outgoing.get(&id) {
                        status.send_replace(SendStatus::Progress { acked, total });
                    }
                }
                ClientEvent::Delivered { id } => {
                    // A recall delivered: its message's record goes (saved
                    // before the caller hears of the delivery).
                    if let Some(recalled) = self.recalls.remove(&id) {
                        self.book.recalls_mut().forget_sent(&recalled);
                        let _ = self.save_book();
                    }
                    if let Some(status) = self.outgoing.remove(&id) {
                        status.send_replace(SendStatus::Delivered);
                    }
                }
                ClientEvent::Sent { id } => {
                    if let Some(status) = self.outgoing.remove(&id) {
                        status.send_replace(SendStatus::Sent);
                    }
                }
                ClientEvent::SendFailed { id, reason } => {
                    self.recalls.remove(&id);
                    if let Some(status) = self.outgoing.remove(&id) {
                        status.send_replace(SendStatus::Failed(reason));
                    }
                }
                ClientEvent::ReceiveTimedOut { id } => self.forget_partial(&id),
                ClientEvent::BundleFetched {
                    gateway,
                    fingerprint,
                    published,
                    one_time,
                } => self.take_bundle(
                    Self::fetched(gateway, fingerprint),
                    &published,
                    one_time.as_deref(),
                ),
                ClientEvent::BundleFetchFailed {
                    gateway,
                    fingerprint,
                    reason,
                } => self.bundle_unavailable(Self::fetched(gateway, fingerprint), reason),
                ClientEvent::LoopsMissing { in_a_row } => {
                    tracing::warn!(
                        "{in_a_row} loops sent to this client's own mailbox did not come back: \
                         its gateway may be dropping its mail"
                    );
                    ShellStats::add(&self.stats.gateway_alarms, 1);
                }
            }
        }
    }
}
