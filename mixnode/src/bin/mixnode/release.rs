//! The mix node's role: hold each packet until its instant, then forward it.
//!
//! The runtime opens packets with the node's `Mixer` (on its intake, or on
//! its workers when packets wait); every packet to forward comes here with
//! its replay tag. The release task journals the tag, holds the packet in a
//! [`ReleaseQueue`] until the instant its sender chose, writes the journal
//! out, and hands the packet to the link towards its next hop. A packet that left the node is always in the journal, so a
//! node killed and restarted still refuses it.
//!
//! At shutdown the task stops at once and flushes the journal; packets still
//! held are dropped (their senders retransmit on another route).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use mixnode_core::{Action, DropReason, ReleaseQueue, Transmit};
use nodeshell::config::{NodeConfig, NodeFile};
use nodeshell::journal::ReplayJournal;
use nodeshell::metrics::{gauge, to_i64};
use nodeshell::{Node, NodeKind, Opened, Role, RoleInput, RoleTasks};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use protocol::keys::IdentityKeyPair;
use protocol::time::Timestamp;
use tokio::sync::mpsc;

use crate::config::MixSections;

/// Half of tokio's timer tick: how early the release task may wake, and
/// release, so that release instants round to the nearest tick.
const TIMER_SLACK: Duration = Duration::from_micros(500);

/// Most opened packets taken from the workers in one turn of the task.
const INTAKE_BATCH: usize = 256;

/// The mix node's role.
pub struct MixRole;

/// The mix node's own series.
struct MixMetrics {
    /// Packets held until their release instant.
    queue_depth: Gauge,
    /// Delays the senders chose, per hop.
    hop_delay: Histogram,
}

impl MixMetrics {
    fn register(registry: &mut Registry) -> Self {
        let hop_delay = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "hop_delay_seconds",
            "Per-hop delay chosen by senders",
            hop_delay.clone(),
        );
        MixMetrics {
            queue_depth: gauge(
                registry,
                "queue_depth",
                "Packets held until their release instant",
            ),
            hop_delay,
        }
    }
}

impl Role for MixRole {
    const KIND: NodeKind = NodeKind::Mix;
    // One async thread: at everyday load a packet is read, opened, held and
    // written out on it without waking another (see docs/performance.md).
    const ASYNC_THREADS: usize = 1;
    type Sections = MixSections;
    type Hop = Transmit;

    fn open(_file: &NodeFile<MixSections>) -> Result<Self> {
        Ok(MixRole)
    }

    fn hop(action: Action) -> Result<Transmit, DropReason> {
        match action {
            Action::Forward(transmit) => Ok(transmit),
            // Only its own loop cover may end at a mix node.
            _ => Err(DropReason::UnexpectedFinalHop),
        }
    }

    fn hop_queue(config: &NodeConfig) -> usize {
        config.processing.input_queue.max(1024)
    }

    fn bind(&mut self, _identity: &IdentityKeyPair) -> Result<Option<SocketAddr>> {
        Ok(None)
    }

    fn start(
        self,
        node: &Node,
        input: RoleInput<Transmit>,
        registry: &mut Registry,
    ) -> Result<RoleTasks> {
        let release = ReleaseTask {
            metrics: MixMetrics::register(registry),
            queue: ReleaseQueue::default(),
            journal: input.journal,
            node: node.clone(),
        };
        Ok(RoleTasks {
            durable: vec![tokio::spawn(release.run(input.opened))],
            ..RoleTasks::default()
        })
    }
}

/// The task that holds packets until their instant.
struct ReleaseTask {
    metrics: MixMetrics,
    queue: ReleaseQueue,
    journal: ReplayJournal,
    node: Node,
}

impl ReleaseTask {
    async fn run(mut self, mut opened: mpsc::Receiver<Opened<Transmit>>) {
        let mut shutdown = self.node.shutdown.clone();
        // One timer for the task's whole life, moved only when the earliest
        // release instant changes: a packet that arrives behind the earliest
        // one (nearly all of them, once the queue holds a few) costs no
        // timer registration.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Timestamp> = None;
        let mut arrived = Vec::with_capacity(INTAKE_BATCH);
        loop {
            // After a rotation the retired epoch's tags leave the journal.
            if let Err(e) = self.journal.follow_epoch(self.node.mixer.current_epoch()) {
                tracing::error!("replay journal: {e:#}");
            }
            let next = self.queue.next_release();
            if next != armed {
                if let Some(at) = next {
                    timer.as_mut().reset(self.wake_at(at));
                }
                armed = next;
            }
            tokio::select! {
                n = opened.recv_many(&mut arrived, INTAKE_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for hop in arrived.drain(..) {
                        self.hold(hop);
                    }
                }
                _ = &mut timer, if armed.is_some() => {
                    self.release_due();
                    armed = None;
                }
                _ = shutdown.requested() => break,
            }
            self.metrics.queue_depth.set(to_i64(self.queue.len()));
        }
        if let Err(e) = self.journal.flush() {
            tracing::error!("replay journal: {e:#}");
        }
    }

    /// When to wake for a release at `at`: tokio's timers tick in whole
    /// milliseconds and fire at the first tick at or after their deadline;
    /// waking half a tick early and releasing what is due within it rounds
    /// release instants to the nearest tick instead of always up.
    fn wake_at(&self, at: Timestamp) -> tokio::time::Instant {
        let at = self.node.clock.to_tokio(at);
        at.checked_sub(TIMER_SLACK).unwrap_or(at)
    }

    /// Journals the packet's tag and holds it until its instant.
    fn hold(&mut self, hop: Opened<Transmit>) {
        let delay = hop
            .packet
            .send_at
            .saturating_duration_since(self.node.clock.now());
        self.metrics.hop_delay.observe(delay.as_secs_f64());
        if let Err(e) = self.journal.append(&hop.record) {
            tracing::error!("replay journal: {e:#}");
        }
        self.queue.push(hop.packet);
    }

    /// Writes the journal out, then hands every due packet to its link.
    fn release_due(&mut self) {
        if let Err(e) = self.journal.flush() {
            tracing::error!("replay journal: {e:#}");
        }
        let now = self.node.clock.now().saturating_add(TIMER_SLACK);
        let topology = self.node.topology.borrow().clone();
        while let Some(t) = self.queue.pop_due(now) {
            self.node.forward(&topology, t.next_hop, t.packet);
        }
    }
}
