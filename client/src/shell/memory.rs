//! An in-memory gateway, for tests and benchmarks of the async client.
//!
//! [`MemoryGateway`] is the gateway's side: it yields the packets its client
//! sent, keeps a mailbox of deliveries until the client acknowledges them,
//! pushes the mailbox again on every new session (as a real gateway does),
//! and can drop the session or refuse new ones. [`MemoryDialer`] is the
//! client's side, a [`GatewayDialer`]. There is no mixing here: a test
//! harness moves packets between gateways.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::NodeId;
use protocol::surb::SurbId;
use tokio::sync::mpsc;

use super::link::{GatewayDelivery, GatewayDialer, GatewayLink, GatewayLinkError};

/// Deliveries a session may have pushed and not yet read.
const SESSION_QUEUE: usize = 1024;

#[derive(Default)]
struct State {
    mailbox: BTreeMap<u64, (SurbId, Vec<u8>)>,
    next_id: u64,
    session: Option<(u64, mpsc::Sender<GatewayDelivery>)>,
    sessions: u64,
    refuse: bool,
    acked: Vec<u64>,
}

struct Shared {
    state: Mutex<State>,
    packets: mpsc::Sender<(NodeId, Vec<u8>)>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a test panicked elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The gateway's side of an in-memory gateway.
pub struct MemoryGateway {
    shared: Arc<Shared>,
    packets: mpsc::Receiver<(NodeId, Vec<u8>)>,
}

/// The client's side: opens sessions with a [`MemoryGateway`].
#[derive(Clone)]
pub struct MemoryDialer {
    shared: Arc<Shared>,
}

/// A session with a [`MemoryGateway`].
pub struct MemoryLink {
    session: u64,
    deliveries: mpsc::Receiver<GatewayDelivery>,
    shared: Arc<Shared>,
}

impl MemoryGateway {
    /// A gateway that holds up to `packet_queue` packets its client sent.
    pub fn new(packet_queue: usize) -> (MemoryGateway, MemoryDialer) {
        let (tx, rx) = mpsc::channel(packet_queue.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            packets: tx,
        });
        (
            MemoryGateway {
                shared: shared.clone(),
                packets: rx,
            },
            MemoryDialer { shared },
        )
    }

    /// The next packet the client sent: (first hop, bytes).
    pub async fn next_packet(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.packets.recv().await
    }

    /// A handle that stores deliveries and controls sessions, for another task.
    pub fn control(&self) -> MemoryGatewayControl {
        MemoryGatewayControl {
            shared: self.shared.clone(),
        }
    }
}

/// Stores deliveries in a [`MemoryGateway`]'s mailbox and controls its sessions.
#[derive(Clone)]
pub struct MemoryGatewayControl {
    shared: Arc<Shared>,
}

impl MemoryGatewayControl {
    /// Stores a delivery and pushes it to the open session, if any; returns
    /// its mailbox id.
    pub fn deliver(&self, surb_id: SurbId, payload: Vec<u8>) -> u64 {
        let mut state = self.shared.state();
        let id = state.next_id;
        state.next_id += 1;
        state.mailbox.insert(id, (surb_id, payload.clone()));
        if let Some((_, session)) = &state.session {
            let _ = session.try_send(GatewayDelivery {
                mailbox_id: id,
                surb_id,
                payload,
            });
        }
        id
    }

    /// Deliveries stored and not acknowledged yet.
    pub fn mailbox_len(&self) -> usize {
        self.shared.state().mailbox.len()
    }

    /// Mailbox ids the client acknowledged, in order.
    pub fn acked(&self) -> Vec<u64> {
        self.shared.state().acked.clone()
    }

    /// Sessions opened so far.
    pub fn sessions(&self) -> u64 {
        self.shared.state().sessions
    }

    /// Whether a session is open.
    pub fn has_session(&self) -> bool {
        self.shared.state().session.is_some()
    }

    /// Ends the open session, as a network failure would.
    pub fn drop_session(&self) {
        self.shared.state().session = None;
    }

    /// Refuses (or accepts again) new sessions.
    pub fn refuse_sessions(&self, refuse: bool) {
        self.shared.state().refuse = refuse;
    }
}

impl GatewayDialer for MemoryDialer {
    type Link = MemoryLink;

    async fn dial(&self) -> Result<MemoryLink, GatewayLinkError> {
        let mut state = self.shared.state();
        if state.refuse {
            return Err(GatewayLinkError::Connection("refused".into()));
        }
        state.sessions += 1;
        let session = state.sessions;
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        for (id, (surb_id, payload)) in &state.mailbox {
            let _ = tx.try_send(GatewayDelivery {
                mailbox_id: *id,
                surb_id: *surb_id,
                payload: payload.clone(),
            });
        }
        state.session = Some((session, tx));
        Ok(MemoryLink {
            session,
            deliveries: rx,
            shared: self.shared.clone(),
        })
    }
}

impl MemoryLink {
    fn check_open(&self) -> Result<(), GatewayLinkError> {
        match &self.shared.state().session {
            Some((s, _)) if *s == self.session => Ok(()),
            _ => Err(GatewayLinkError::Closed),
        }
    }
}

impl GatewayLink for MemoryLink {
    async fn send_packet(
        &mut self,
        first_hop: NodeId,
        packet: Vec<u8>,
    ) -> Result<(), GatewayLinkError> {
        self.check_open()?;
        self.shared
            .packets
            .send((first_hop, packet))
            .await
            .map_err(|_| GatewayLinkError::Closed)
    }

    async fn next_delivery(&mut self) -> Option<GatewayDelivery> {
        self.deliveries.recv().await
    }

    async fn ack(&mut self, mailbox_id: u64) -> Result<(), GatewayLinkError> {
        self.check_open()?;
        let mut state = self.shared.state();
        if state.mailbox.remove(&mailbox_id).is_some() {
            state.acked.push(mailbox_id);
        }
        Ok(())
    }
}
