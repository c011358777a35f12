//! The thread that owns the [`GatewayCore`].
//!
//! The core commits to the mailbox (one `redb` transaction, a disk sync, per
//! turn of the loop: the turn's deliveries stored and the acknowledged
//! messages deleted together) inside its calls, so it runs on its own thread
//! with its own single-threaded runtime, never on the reactor threads that
//! move client bytes. It receives client events and final-hop deliveries
//! over bounded channels, wakes at `next_timeout`, and carries out the
//! core's actions: bytes to a session's writer (a bounded queue: a client
//! that does not read is disconnected, never waited for), closes, and
//! packets into layer 1.
//!
//! The replay tag of every delivered packet is journalled and flushed before
//! the core stores or pushes the message, so a gateway killed and restarted
//! refuses a packet it had already stored or handed to its client.
//!
//! A delivery for an online client is pushed at once and stored only if
//! not acknowledged within half the SURB-ack hold; every SURB-ack leaves at
//! the hold's end (the core's `held.rs`): the core's timers carry both, run
//! at `next_timeout` and after every turn.

use std::collections::HashMap;
use std::sync::Arc;

use gateway::RedbStore;
use gateway::enrollment::EnrollmentFiles;
use gateway_core::{GatewayAction, GatewayCore, SessionId};
use nodeshell::journal::ReplayJournal;
use nodeshell::{Node, Opened};
use protocol::link::CloseReason;
use protocol::packet::{Delivery, OutgoingPacket};
use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::GatewayMetrics;

/// Most events handled between two looks at the clock and the topology.
const BATCH: usize = 256;

/// What a client connection tells the core.
pub enum SessionEvent {
    /// A client connected; the core answers with its session id.
    Opened {
        /// The client's network address (limits apply per source).
        source: std::net::IpAddr,
        /// Where the session's bytes go.
        writer: mpsc::Sender<WriterCommand>,
        /// The session id.
        reply: oneshot::Sender<SessionId>,
    },
    /// Bytes arrived on the session's stream.
    Bytes {
        /// The session.
        session: SessionId,
        /// What arrived.
        bytes: Vec<u8>,
    },
    /// The connection is gone.
    Closed {
        /// The session.
        session: SessionId,
    },
}

/// What a session's writer task is told.
#[derive(Debug)]
pub enum WriterCommand {
    /// Write these bytes.
    Bytes(Vec<u8>),
    /// Finish the stream and close the connection, with the reason as its
    /// application error code.
    Close(CloseReason),
}

/// A final-hop packet unwrapped by a worker, with its replay tag
/// (journalled before the message is stored).
pub type FinalHop = Opened<Delivery>;

/// Everything the core thread owns or reads.
pub struct CoreLoop {
    /// The gateway state machine.
    pub core: GatewayCore<RedbStore>,
    /// The replay journal.
    pub journal: ReplayJournal,
    /// The running node: its clock (Unix time), its exit mixer (whose epoch
    /// keeps the journal short), its links into layer 1, the topology, the
    /// stop request.
    pub node: Node,
    /// The gateway's own series.
    pub metrics: Arc<GatewayMetrics>,
    /// Randomness for challenges.
    pub rng: ChaCha20Rng,
    /// Closed admission's files (invites, used invites, revocations); `None`: open.
    pub enrollment: Option<EnrollmentFiles>,
    /// How long a turn of the loop waits, after the client event or final
    /// hop that started it, for others to commit with: one commit (a disk
    /// sync) for all (`[mailbox] group_commit_ms`). Every delivery and every
    /// acknowledgement waits alike, whoever its recipient and whether or not
    /// it is online, so when a SURB-ack leaves still tells nothing about the
    /// recipient; a client's packets into layer 1 wait the same hold.
    pub group_commit: std::time::Duration,
}

/// How often closed admission's files are looked at for changes.
const ENROLLMENT_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl CoreLoop {
    /// Runs until the stop is requested or a channel closes; then closes every session.
    pub async fn run(
        mut self,
        mut clients: mpsc::Receiver<SessionEvent>,
        mut final_hops: mpsc::Receiver<FinalHop>,
    ) {
        let mut writers: HashMap<SessionId, mpsc::Sender<WriterCommand>> = HashMap::new();
        let mut shutdown = self.node.shutdown.clone();
        self.set_layer1();
        loop {
            // After a rotation the retired epoch's tags leave the journal.
            if let Err(e) = self.journal.follow_epoch(self.node.mixer.current_epoch()) {
                tracing::error!("replay journal: {e:#}");
            }
            if self.node.topology.has_changed().unwrap_or(false) {
                self.set_layer1();
            }
            let mut enrollment_actions = self.follow_enrollment();
            let clock = self.node.clock;
            let mut wake = clock.to_tokio(self.core.next_timeout());
            if self.enrollment.is_some() {
                wake = wake.min(tokio::time::Instant::now() + ENROLLMENT_CHECK);
            }
            let mut actions = tokio::select! {
                event = clients.recv() => {
                    let Some(event) = event else { break };
                    let mut actions = self.client_event(event, &mut writers);
                    actions.extend(self.group_commit(&mut clients, &mut final_hops, &mut writers, Vec::new()).await);
                    actions
                }
                hop = final_hops.recv() => {
                    let Some(hop) = hop else { break };
                    self.group_commit(&mut clients, &mut final_hops, &mut writers, vec![hop]).await
                }
                _ = tokio::time::sleep_until(wake) => self.core.handle_timeout(clock.now()),
                _ = shutdown.requested() => break,
            };
            // SURB-acks and held messages fall due while turns follow each
            // other: carried out after the turn rather than left to the draw.
            let now = clock.now();
            if self.core.next_timeout() <= now {
                actions.extend(self.core.handle_timeout(now));
            }
            self.record_enrollments();
            enrollment_actions.extend(actions);
            self.dispatch(enrollment_actions, &mut writers);
        }
        let actions = self.core.shutdown();
        self.dispatch(actions, &mut writers);
        if let Err(e) = self.journal.flush() {
            tracing::error!("replay journal: {e:#}");
        }
    }

    /// Closed admission: takes in new invites and revocations when the
    /// files changed (a revoked client's session is closed at once).
    fn follow_enrollment(&mut self) -> Vec<GatewayAction> {
        let mut actions = Vec::new();
        let Some(files) = self.enrollment.as_mut() else {
            return actions;
        };
        match files.reload_if_changed() {
            Ok(Some(admission)) => {
                self.core.set_invites(admission.unused);
                for client in admission.revoked {
                    if self.core.revoke(&client, &mut actions) {
                        tracing::info!("a client was revoked; its mailbox is deleted");
                        let fingerprint = gateway::client_audit::client_fingerprint(&client);
                        if let Err(e) =
                            gateway::client_audit::client_revoked(&self.node.audit, &fingerprint)
                        {
                            tracing::error!("audit log: {e}");
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!("closed admission: {e}"),
        }
        actions
    }

    /// Records the invites used since the last call, so none serves twice
    /// even across a restart.
    fn record_enrollments(&mut self) {
        let redeemed = self.core.take_redeemed_invites();
        if redeemed.is_empty() {
            return;
        }
        let digests: Vec<[u8; 32]> = redeemed.iter().map(|(digest, _)| *digest).collect();
        if let Some(files) = &self.enrollment
            && let Err(e) = files.record_used(&digests)
        {
            tracing::error!("closed admission: {e}");
        }
        for (_, client) in &redeemed {
            let fingerprint = gateway::client_audit::client_fingerprint(client);
            if let Err(e) = gateway::client_audit::client_enrolled(&self.node.audit, &fingerprint) {
                tracing::error!("audit log: {e}");
            }
        }
    }

    fn set_layer1(&mut self) {
        let topology = self.node.topology.borrow_and_update().clone();
        let layer1 = topology.layers.first().cloned().unwrap_or_default();
        self.core.set_layer1(layer1.iter().map(|e| e.id));
    }

    /// The rest of a turn that `first` (final hops, or none after a client
    /// event) started: waits the group-commit hold, reads what else waits, and
    /// commits once: the deliveries with the acknowledgements read in the
    /// turn, or the acknowledgements alone.
    async fn group_commit(
        &mut self,
        clients: &mut mpsc::Receiver<SessionEvent>,
        final_hops: &mut mpsc::Receiver<FinalHop>,
        writers: &mut HashMap<SessionId, mpsc::Sender<WriterCommand>>,
        first: Vec<FinalHop>,
    ) -> Vec<GatewayAction> {
        if !self.group_commit.is_zero() {
            tokio::time::sleep(self.group_commit).await;
        }
        let mut actions = self.more_client_events(clients, writers);
        let batch = more_final_hops(final_hops, first);
        if batch.is_empty() {
            actions.extend(self.core.commit_acks());
        } else {
            actions.extend(self.final_hops(batch));
        }
        actions
    }

    /// The client events already waiting (up to a batch), read without
    /// committing their acknowledgements: the turn commits them once.
    fn more_client_events(
        &mut self,
        clients: &mut mpsc::Receiver<SessionEvent>,
        writers: &mut HashMap<SessionId, mpsc::Sender<WriterCommand>>,
    ) -> Vec<GatewayAction> {
        let mut actions = Vec::new();
        for _ in 1..BATCH {
            let Ok(event) = clients.try_recv() else { break };
            actions.extend(self.client_event(event, writers));
        }
        actions
    }

    fn client_event(
        &mut self,
        event: SessionEvent,
        writers: &mut HashMap<SessionId, mpsc::Sender<WriterCommand>>,
    ) -> Vec<GatewayAction> {
        let now = self.node.clock.now();
        match event {
            SessionEvent::Opened {
                source,
                writer,
                reply,
            } => {
                let (session, actions) = self.core.open_session(now, source, &mut self.rng);
                writers.insert(session, writer);
                let _ = reply.send(session);
                actions
            }
            SessionEvent::Bytes { session, bytes } => {
                self.core.read_client_bytes(now, session, &bytes)
            }
            SessionEvent::Closed { session } => {
                self.core.close_session(session);
                writers.remove(&session);
                Vec::new()
            }
        }
    }

    /// Journals the batch's replay tags, then hands the deliveries to the
    /// core, which stores them and deletes the acknowledgements read in this
    /// turn in one commit.
    fn final_hops(&mut self, batch: Vec<FinalHop>) -> Vec<GatewayAction> {
        for hop in &batch {
            if let Err(e) = self.journal.append(&hop.record) {
                tracing::error!("replay journal: {e:#}");
            }
        }
        if let Err(e) = self.journal.flush() {
            tracing::error!("replay journal: {e:#}");
        }
        let now = self.node.clock.now();
        self.core
            .handle_deliveries(now, batch.into_iter().map(|h| h.packet))
            .actions
    }

    fn dispatch(
        &mut self,
        actions: Vec<GatewayAction>,
        writers: &mut HashMap<SessionId, mpsc::Sender<WriterCommand>>,
    ) {
        for action in actions {
            match action {
                GatewayAction::Send { session, bytes } => {
                    let Some(writer) = writers.get(&session) else {
                        continue;
                    };
                    if writer.try_send(WriterCommand::Bytes(bytes)).is_err() {
                        // Too slow (or gone): disconnect it; its messages stay
                        // in the mailbox for its next session.
                        tracing::debug!("client session too slow; closing it");
                        self.metrics.slow_clients.inc();
                        self.core.close_session(session);
                        writers.remove(&session);
                    }
                }
                GatewayAction::Close { session, reason } => {
                    if let Some(writer) = writers.remove(&session) {
                        let _ = writer.try_send(WriterCommand::Close(reason));
                    }
                }
                GatewayAction::Forward(packet) => self.forward(packet),
            }
        }
    }

    fn forward(&self, packet: OutgoingPacket) {
        let topology = self.node.topology.borrow().clone();
        self.node.forward(&topology, packet.first_hop, packet.bytes);
    }
}

/// `batch` and the final hops already waiting, up to a batch.
fn more_final_hops(
    final_hops: &mut mpsc::Receiver<FinalHop>,
    mut batch: Vec<FinalHop>,
) -> Vec<FinalHop> {
    while batch.len() < BATCH {
        let Ok(hop) = final_hops.try_recv() else {
            break;
        };
        batch.push(hop);
    }
    batch
}
