//! What the application holds: [`Client`], [`Outgoing`], [`ReceivedMessage`],
//! [`RecalledMessage`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use protocol::fragment::MessageId;
use protocol::{ClientAddress, NodeId, SphinxKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use topology::Topology;

use super::driver::{BookCall, BookFinish, Command, Driver, Sender};
use super::journal::PartialJournal;
use super::link::GatewayDialer;
use super::store::{BookFile, FolderLock, Passphrase};
use crate::contacts::{Contacts, Recipient};
use client_core::ClientError;
use client_core::sessions::{
    AddressCard, ContactName, PeerIdentityKey, Pseudonym, RotationSchedule, SessionBook, SessionId,
    ShortAddress,
};
use client_core::{ClientConfig, ClientStats, ReplyHandle, SendFailure};

/// Settings of the async shell around the core.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The core's rates and limits. λ_P, λ_L and the mean hop delay are
    /// replaced by the topology's network parameters when
    /// `rates_from_topology` is set.
    pub core: ClientConfig,
    /// Take λ_P, λ_L and the mean delay from the topology document.
    pub rates_from_topology: bool,
    /// Reply SURBs attached to each message sent with [`Client::send`].
    pub reply_surbs: usize,
    /// First wait before reconnecting to the gateway; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How often the topology is fetched again from the directory.
    pub topology_refresh: Duration,
    /// Mirrors asked for the topology before the authorities, e.g. the
    /// client's gateway's `http://<its metrics.listen>` (docs/topology.md);
    /// what they serve is verified like the authorities' answers.
    pub topology_mirrors: Vec<String>,
    /// Received messages waiting for [`Client::recv`]; when full, the client
    /// stops taking deliveries from its gateway (which keeps them).
    pub receive_queue: usize,
    /// Calls waiting for the client task.
    pub command_queue: usize,
    /// Unlocks a session book sealed with a passphrase ([`Client::open`]).
    pub passphrase: Option<Passphrase>,
    /// Regions every route of this client must stay inside (data
    /// residency, docs/client.md); `None`: the folder's `route_regions`.
    pub route_regions: Option<Vec<String>>,
    /// When the prekeys (and so the address card) rotate, and how long the
    /// retired ones are kept; `None`: the folder's `prekey_rotation_secs`
    /// and `prekey_grace_secs`, else 7 days each (docs/client.md).
    pub prekey_rotation: Option<RotationSchedule>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            core: ClientConfig::default(),
            rates_from_topology: true,
            reply_surbs: 3,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            topology_refresh: Duration::from_secs(300),
            topology_mirrors: Vec::new(),
            receive_queue: 64,
            command_queue: 64,
            passphrase: None,
            route_regions: None,
            prekey_rotation: None,
        }
    }
}

/// Where a message sent with [`Client::send`] or [`Client::reply`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Fragments acknowledged so far, of all of the message's fragments.
    Progress {
        /// Fragments acknowledged.
        acked: usize,
        /// Fragments of the message.
        total: usize,
    },
    /// Every fragment was acknowledged.
    Delivered,
    /// Every fragment of a reply sent without acknowledgements left
    /// ([`Client::reply_unacknowledged`]); nothing more will be known.
    Sent,
    /// The message was given up, for the reason given.
    Failed(SendFailure),
}

/// A message on its way: its id, and a watch of its [`SendStatus`].
#[derive(Debug)]
pub struct Outgoing {
    id: MessageId,
    status: watch::Receiver<SendStatus>,
}

impl Outgoing {
    pub(crate) fn new(id: MessageId, status: watch::Receiver<SendStatus>) -> Self {
        Outgoing { id, status }
    }

    /// The message's id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The status now.
    pub fn status(&self) -> SendStatus {
        *self.status.borrow()
    }

    /// Waits for the next change of status; `None` once the client stopped.
    pub async fn changed(&mut self) -> Option<SendStatus> {
        self.status.changed().await.ok()?;
        Some(*self.status.borrow_and_update())
    }

    /// Waits until the message is delivered (`Ok`) or failed; a reply sent
    /// without acknowledgements is `Ok` once it left.
    pub async fn delivered(mut self) -> Result<(), ClientError> {
        loop {
            match *self.status.borrow_and_update() {
                SendStatus::Delivered | SendStatus::Sent => return Ok(()),
                SendStatus::Failed(reason) => return Err(ClientError::NotDelivered(reason)),
                SendStatus::Progress { .. } => {}
            }
            if self.status.changed().await.is_err() {
                return Err(ClientError::Stopped);
            }
        }
    }
}

/// A complete, decrypted message from another client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The sender's id of the message.
    pub id: MessageId,
    /// The content.
    pub bytes: Vec<u8>,
    /// How to answer, when the sender attached reply SURBs.
    pub reply: Option<ReplyPath>,
    /// For a reply: the id of our message it answers.
    pub in_reply_to: Option<MessageId>,
    /// The sender's long-term identity, authenticated by the end-to-end session.
    pub peer: PeerIdentityKey,
    /// The sender's address, when it gave one (and it is not pinned to another identity).
    pub from: Option<ClientAddress>,
    /// When this client opened it (wall clock, whole seconds).
    pub received_at: SystemTime,
    /// When its sender said it expires, authenticated by the session; the
    /// client refuses it after that.
    pub expires_at: Option<SystemTime>,
    /// The name of the contact whose identity sent it ([`Client::contacts`]).
    pub contact: Option<ContactName>,
}

impl ReceivedMessage {
    /// The sender's short address: its identity at the gateway of the
    /// address it gave (`None` when it gave none).
    pub fn short_from(&self) -> Option<ShortAddress> {
        self.from.map(|a| ShortAddress::new(&self.peer, a.gateway))
    }

    /// Who wrote, for people: the contact's name, else its short address,
    /// else `anonymous`.
    pub fn sender(&self) -> String {
        match (&self.contact, self.short_from()) {
            (Some(name), _) => name.to_string(),
            (None, Some(short)) => short.to_string(),
            (None, None) => "anonymous".to_string(),
        }
    }
}

/// A message received earlier that its sender recalled, in the same
/// end-to-end identity it came from. The client keeps no received
/// messages: this is the application's cue to delete its copy (what was
/// read was read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecalledMessage {
    /// The id of the recalled message (as in [`ReceivedMessage::id`]).
    pub id: MessageId,
    /// The identity that sent it and recalled it.
    pub peer: PeerIdentityKey,
    /// When this client read the recall (wall clock, whole seconds).
    pub recalled_at: SystemTime,
    /// The name of the contact whose identity recalled it.
    pub contact: Option<ContactName>,
}

/// How to answer a received message without its sender's address: its
/// reply SURBs and the end-to-end session it came on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyPath {
    pub(crate) handle: ReplyHandle,
    pub(crate) session: SessionId,
}

impl ReplyPath {
    /// The message this path answers.
    pub fn in_reply_to(&self) -> MessageId {
        self.handle.in_reply_to()
    }

    /// SURBs left (a reply needs one per fragment).
    pub fn surbs_left(&self) -> usize {
        self.handle.surbs_left()
    }

    /// Takes `n` of the path's SURBs into a new path (all of them if it has
    /// fewer), for a reply of its own; the rest stay here.
    pub fn split_off(&mut self, n: usize) -> ReplyPath {
        ReplyPath {
            handle: self.handle.split_off(n),
            session: self.session,
        }
    }
}

/// Counters of the async shell (the core keeps its own).
#[derive(Debug, Default)]
pub struct ShellStats {
    /// Packets handed to the gateway.
    pub packets_sent: AtomicU64,
    /// Bytes of those packets.
    pub bytes_sent: AtomicU64,
    /// Deliveries taken from the gateway.
    pub deliveries: AtomicU64,
    /// Bytes of those deliveries.
    pub bytes_received: AtomicU64,
    /// Deliveries acknowledged to the gateway.
    pub acks_sent: AtomicU64,
    /// Sessions opened with the gateway (the first one included).
    pub connects: AtomicU64,
    /// Sessions that dropped.
    pub disconnects: AtomicU64,
    /// Topologies installed after the first.
    pub topology_updates: AtomicU64,
    /// Complete messages no session opened (foreign, tampered, duplicate, expired).
    pub undecryptable: AtomicU64,
    /// Writes of the sealed session book that failed.
    pub state_write_failures: AtomicU64,
    /// Deliveries replayed into the core from the reassembly journal at start.
    pub journal_replayed: AtomicU64,
    /// Reply SURB recoveries taken back at start from the last save.
    pub reply_surbs_restored: AtomicU64,
    /// Journal files removed at start instead: stale, malformed, or refused by the core.
    pub journal_discarded: AtomicU64,
    /// Fragments of partial messages not journaled: the journal was at its bound.
    pub journal_full: AtomicU64,
    /// Appends to the reassembly journal that failed.
    pub journal_write_failures: AtomicU64,
    /// Prekey rotations done by this client.
    pub prekey_rotations: AtomicU64,
    /// New prekey bundles sent to correspondents inside their sessions.
    pub bundles_sent: AtomicU64,
    /// Correspondents' new prekey bundles received inside sessions (not
    /// delivered to the application).
    pub bundles_received: AtomicU64,
    /// Bundles of short addresses asked of their gateways.
    pub bundle_fetches: AtomicU64,
    /// Bundles a gateway served that were refused (bad signature, another
    /// identity, an expired card).
    pub bundles_refused: AtomicU64,
    /// Bundles asked for that never came.
    pub bundles_unavailable: AtomicU64,
    /// One-time prekeys uploaded to this client's gateway.
    pub one_time_prekeys_uploaded: AtomicU64,
    /// Times loops to this client's own mailbox stopped coming back: its
    /// gateway may be dropping its mail (see `ClientEvent::LoopsMissing`).
    pub gateway_alarms: AtomicU64,
    /// Recalls believed: a message received earlier recalled by its sender.
    pub recalls_received: AtomicU64,
    /// Recall notices refused: from another identity than the message's sender.
    pub recall_notices_refused: AtomicU64,
    /// Recall notices for a message this client does not know (never
    /// received: its gateway deleted it; or forgotten, or recalled already).
    pub recall_notices_unknown: AtomicU64,
    /// [`RecalledMessage`]s dropped because the application did not read them.
    pub recalled_events_dropped: AtomicU64,
}

impl ShellStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What [`Client::start`] needs.
pub struct ClientParts<C> {
    /// The client's Sphinx key pair (its address is its public key at `gateway`).
    pub keys: SphinxKeyPair,
    /// The gateway that keeps this client's mailbox.
    pub gateway: NodeId,
    /// The topology now, and its later versions.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// Opens sessions with `gateway`.
    pub connector: C,
    /// Settings.
    pub options: ClientOptions,
    /// Seed of the client's random generator (from the OS in production).
    pub seed: [u8; 32],
    /// The end-to-end sessions, contacts and identity.
    pub sessions: SessionBook,
    /// Where the book is sealed after each change; `None` keeps it in memory only.
    pub book_file: Option<BookFile>,
    /// The reassembly journal of partial incoming messages, replayed at
    /// start; `None` keeps them in memory only (lost at a restart).
    pub journal: Option<PartialJournal>,
    /// The data folder's claim, held as long as the client runs; `None` for
    /// a client kept in memory.
    pub folder_lock: Option<FolderLock>,
}

/// A running mixnet client: a task that drives the sans-IO core, and this
/// handle to it. Every method takes `&self`; share it in an `Arc`. Dropping
/// the last handle stops the task.
pub struct Client {
    address: ClientAddress,
    card: watch::Receiver<AddressCard>,
    short_address: ShortAddress,
    commands: mpsc::Sender<Command>,
    received: Mutex<mpsc::Receiver<ReceivedMessage>>,
    recalled: Mutex<mpsc::Receiver<RecalledMessage>>,
    connected: watch::Receiver<bool>,
    stats: Arc<ShellStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Starts the client task from its parts (the data folder and the
    /// directory are handled by [`Client::open`]).
    pub fn start<C: GatewayDialer>(parts: ClientParts<C>) -> Client {
        let (commands_tx, commands_rx) = mpsc::channel(parts.options.command_queue.max(1));
        let (received_tx, received_rx) = mpsc::channel(parts.options.receive_queue.max(1));
        let (recalled_tx, recalled_rx) = mpsc::channel(parts.options.receive_queue.max(1));
        let (connected_tx, connected_rx) = watch::channel(false);
        let stats = Arc::new(ShellStats::default());
        let rng = ChaCha20Rng::from_seed(parts.seed);
        let driver = Driver::new(
            parts,
            rng,
            commands_rx,
            received_tx,
            recalled_tx,
            connected_tx,
            stats.clone(),
        );
        let address = driver.address();
        let card = driver.card_watch();
        let short_address = driver.short_address();
        let task = tokio::spawn(driver.run());
        Client {
            address,
            card,
            short_address,
            commands: commands_tx,
            received: Mutex::new(received_rx),
            recalled: Mutex::new(recalled_rx),
            connected: connected_rx,
            stats,
            task,
        }
    }

    /// This client's address, to give to whoever should write to it.
    pub fn address(&self) -> ClientAddress {
        self.address
    }

    /// This client's short address (identity fingerprint and gateway).
    pub fn short_address(&self) -> ShortAddress {
        self.short_address
    }

    /// This client's named contacts.
    pub fn contacts(&self) -> Contacts<'_> {
        Contacts::new(self)
    }

    /// Runs `f` on the session book in the client's task; saves the book
    /// after it when `change` is set and `f` succeeded.
    pub(crate) async fn with_book<T, F>(&self, change: bool, f: F) -> Result<T, ClientError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SessionBook) -> Result<T, ClientError> + Send + 'static,
    {
        let (respond, answer) = oneshot::channel();
        let call: BookCall = Box::new(move |book| {
            let result = f(book);
            let changed = change && result.is_ok();
            let finish: BookFinish = Box::new(move |saved| {
                let _ = respond.send(saved.and(result));
            });
            (changed, finish)
        });
        self.call(Command::Book(call)).await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// This client's current address card: its address and signed
    /// prekeys, what a correspondent needs to start an end-to-end session
    /// with it. It changes when the prekeys rotate; the card says when it
    /// expires ([`AddressCard::expires_at`]).
    pub fn card(&self) -> AddressCard {
        self.card.borrow().clone()
    }

    /// Adds a correspondent: messages to its address start a session with
    /// its prekeys, and its identity is pinned to that address.
    pub async fn add_contact(&self, card: &AddressCard) -> Result<(), ClientError> {
        let (respond, answer) = oneshot::channel();
        self.call(Command::AddContact {
            card: card.clone(),
            respond,
        })
        .await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// The shell's counters.
    pub fn stats(&self) -> &ShellStats {
        &self.stats
    }

    /// Whether a gateway session is open now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until a gateway session is open; `Err` if the client stopped.
    pub async fn wait_connected(&self) -> Result<(), ClientError> {
        let mut connected = self.connected.clone();
        connected
            .wait_for(|c| *c)
            .await
            .map(|_| ())
            .map_err(|_| ClientError::Stopped)
    }

    /// Sends `bytes` to `to` end-to-end encrypted, with
    /// [`ClientOptions::reply_surbs`] reply SURBs. `to` (an address or a
    /// short address) must be a contact ([`Client::add_contact`]) or have
    /// written to this client.
    pub async fn send(
        &self,
        to: impl Into<Recipient>,
        bytes: Vec<u8>,
    ) -> Result<Outgoing, ClientError> {
        self.send_message(to.into(), bytes, None, None, Sender::Claimed)
            .await
    }

    /// Sends `bytes` to `to`, to be kept no longer than `lifetime`: the
    /// recipient's gateway deletes it by then, and the recipient's client
    /// refuses it after it.
    pub async fn send_expiring(
        &self,
        to: impl Into<Recipient>,
        bytes: Vec<u8>,
        lifetime: Duration,
    ) -> Result<Outgoing, ClientError> {
        self.send_message(to.into(), bytes, None, Some(lifetime), Sender::Claimed)
            .await
    }

    /// Sends `bytes` to `to` with `reply_surbs` reply SURBs (`None`: the default).
    pub async fn send_with_surbs(
        &self,
        to: impl Into<Recipient>,
        bytes: Vec<u8>,
        reply_surbs: Option<usize>,
    ) -> Result<Outgoing, ClientError> {
        self.send_message(to.into(), bytes, reply_surbs, None, Sender::Claimed)
            .await
    }

    /// Sends `bytes` to `to` with `reply_surbs` reply SURBs and **without
    /// this client's address** inside the end-to-end message: the recipient
    /// can answer only through the SURBs, and learns no address (it still
    /// sees the session's identity key, a pseudonym: use a data folder of
    /// its own for traffic that must not be linked to other messages).
    pub async fn send_anonymous(
        &self,
        to: impl Into<Recipient>,
        bytes: Vec<u8>,
        reply_surbs: usize,
    ) -> Result<Outgoing, ClientError> {
        self.send_message(to.into(), bytes, Some(reply_surbs), None, Sender::Unclaimed)
            .await
    }

    /// Sends `bytes` to `to` with `reply_surbs` reply SURBs under
    /// `pseudonym`: in a session started under a throwaway identity made for
    /// it, so the recipient sees neither this client's address nor its
    /// identity, and cannot link two pseudonyms (a stream's segments go this
    /// way, one pseudonym per stream). `to` must be reachable by card.
    pub async fn send_pseudonymous(
        &self,
        to: impl Into<Recipient>,
        pseudonym: Pseudonym,
        bytes: Vec<u8>,
        reply_surbs: usize,
    ) -> Result<Outgoing, ClientError> {
        self.send_message(
            to.into(),
            bytes,
            Some(reply_surbs),
            None,
            Sender::Pseudonym(pseudonym),
        )
        .await
    }

    /// Forgets the sessions of `pseudonym` (its stream ended).
    pub async fn forget_pseudonym(&self, pseudonym: Pseudonym) -> Result<(), ClientError> {
        self.call(Command::ForgetPseudonym(pseudonym)).await
    }

    async fn send_message(
        &self,
        to: Recipient,
        bytes: Vec<u8>,
        reply_surbs: Option<usize>,
        lifetime: Option<Duration>,
        sender: Sender,
    ) -> Result<Outgoing, ClientError> {
        let (respond, answer) = oneshot::channel();
        self.call(Command::Send {
            to,
            bytes,
            reply_surbs,
            lifetime,
            sender,
            respond,
        })
        .await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// Answers a received message through its reply path.
    pub async fn reply(&self, handle: ReplyPath, bytes: Vec<u8>) -> Result<Outgoing, ClientError> {
        self.queue_reply(handle, bytes, true).await
    }

    /// Answers through the reply path without acknowledgements, for a
    /// caller that recovers losses itself (the exit of a byte stream): each
    /// fragment goes once, and the other client spends no send tick on acks.
    pub async fn reply_unacknowledged(
        &self,
        handle: ReplyPath,
        bytes: Vec<u8>,
    ) -> Result<Outgoing, ClientError> {
        self.queue_reply(handle, bytes, false).await
    }

    async fn queue_reply(
        &self,
        handle: ReplyPath,
        bytes: Vec<u8>,
        acked: bool,
    ) -> Result<Outgoing, ClientError> {
        let (respond, answer) = oneshot::channel();
        self.call(Command::Reply {
            handle,
            bytes,
            acked,
            respond,
        })
        .await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// A copy of the core's counters (packets, cover, drops by reason).
    pub async fn core_stats(&self) -> Result<ClientStats, ClientError> {
        let (respond, answer) = oneshot::channel();
        self.call(Command::CoreStats { respond }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// The next received message; `None` once the client stopped.
    pub async fn recv(&self) -> Option<ReceivedMessage> {
        self.received.lock().await.recv().await
    }

    /// The next message its sender recalled after this client received it;
    /// `None` once the client stopped. (Unread, at most
    /// [`ClientOptions::receive_queue`] wait; more are dropped and counted.)
    pub async fn recalled(&self) -> Option<RecalledMessage> {
        self.recalled.lock().await.recv().await
    }

    /// Recalls message `id`, which this client sent (with [`Client::send`],
    /// [`Client::send_expiring`] or [`Client::send_with_surbs`]) and whose
    /// lifetime (7 days when it has none) is not over: if it still waits in
    /// the recipient's mailbox, the recipient's gateway deletes it; if it
    /// was delivered, the recipient's client is told and reports it as a
    /// [`RecalledMessage`]. The returned [`Outgoing`] follows the recall
    /// itself. An unknown or expired id is refused
    /// ([`ClientError::Recall`]).
    pub async fn recall(&self, id: MessageId) -> Result<Outgoing, ClientError> {
        let (respond, answer) = oneshot::channel();
        self.call(Command::Recall { id, respond }).await?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// Stops the client task and waits for it.
    pub async fn shutdown(self) {
        let Client { commands, task, .. } = self;
        drop(commands);
        let _ = task.await;
    }

    async fn call(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Stopped)
    }
}
