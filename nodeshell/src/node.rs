//! The node lifecycle every node binary runs, and the [`Role`] each adds.
//!
//! [`run`] starts a node and runs it until SIGTERM or Ctrl-C:
//!
//! 1. the `/metrics` listener, the directory client, the first topology
//!    (fetched, or the cached one);
//! 2. the node-side QUIC endpoint (pinned to the topology) and the role's
//!    own sockets, so that the descriptor announces the addresses bound;
//! 3. registration, and a topology that lists the node;
//! 4. the node's `Mixer` with its keys, and the replay journal replayed into it;
//! 5. the role's tasks ([`Role::start`]), then the worker pool that unwraps
//!    packets and its intake from the links;
//! 6. the node's loop cover, the epoch follower, the metrics endpoint;
//! 7. the `ready` line.
//!
//! What the workers open (or the intake itself, for a packet that arrives
//! alone: see `start_workers`) goes to the role as an [`Opened`] packet: a mix
//! node holds packets to forward until their instant, a gateway stores
//! final-hop deliveries. A node's own loop cover coming back, and every
//! refused packet, end where they were opened (counted by reason).
//!
//! Shutdown (see [`crate::shutdown`]): every task stops; the role's durable
//! tasks flush the journal (and the mailbox) to the end; the lingering ones
//! (goodbyes to clients), the metrics endpoint and the links get until the
//! deadline; the workers drop what is queued.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use audit::{AuditEvent, SharedAuditLog};
use mixnode_core::{
    Action, ConfiguredSphinxCodec, DropReason, Mixer, MixerConfig, MixerRole, SphinxCodecKind,
};
use prometheus_client::registry::Registry;
use protocol::keys::{IdentityKeyPair, NodeId};
use protocol::replay::ReplayRecord;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use topology::Topology;

use crate::auditing;
use crate::clock::Clock;
use crate::config::{NodeConfig, NodeFile, RoleSections};
use crate::cover::LoopCover;
use crate::epochs::{EpochFollower, install_keys, refresh_period, show_topology};
use crate::intake::InlinePolicy;
use crate::journal::ReplayJournal;
use crate::keystore::KeyStore;
use crate::links::Links;
use crate::metrics::{MetricsEndpoint, NodeMetrics, Observe, thread_cpu_time, to_i64};
use crate::registration::{Addresses, Registration, current_topology, directory_client};
use crate::shutdown::{Shutdown, ShutdownSignal, shutdown_signal};
use crate::workers::{PacketWorkers, worker_count};

/// The kind of node a binary runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A mix node: packets come in, wait their delay, and go on.
    Mix,
    /// A gateway: the final hop, with clients and their mailboxes.
    Gateway,
}

impl NodeKind {
    /// How logs name it.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Mix => "mix node",
            NodeKind::Gateway => "gateway",
        }
    }

    /// Its role in its descriptor.
    pub fn descriptor_role(self) -> topology::Role {
        match self {
            NodeKind::Mix => topology::Role::Mix,
            NodeKind::Gateway => topology::Role::Gateway,
        }
    }

    /// Its mixer's role: a gateway's mixer hands out final-hop packets.
    pub fn mixer_role(self) -> MixerRole {
        match self {
            NodeKind::Mix => MixerRole::Mix,
            NodeKind::Gateway => MixerRole::Exit,
        }
    }

    /// The prefix of its metrics.
    pub fn metrics_prefix(self) -> &'static str {
        match self {
            NodeKind::Mix => "mixnode",
            NodeKind::Gateway => "gateway",
        }
    }

    /// The stem of its loop cover counters (`…_sent`, `…_returned`), as
    /// each binary first published them.
    pub(crate) fn cover_metric(self) -> &'static str {
        match self {
            NodeKind::Mix => "cover",
            NodeKind::Gateway => "loop_cover",
        }
    }

    /// Its clock. A gateway's mailbox keeps expiry instants across
    /// restarts, so its clock counts from the Unix epoch; a mix node's from
    /// its start.
    fn clock(self) -> Clock {
        match self {
            NodeKind::Mix => Clock::start(),
            NodeKind::Gateway => Clock::start_unix(),
        }
    }

    fn worker_name(self) -> &'static str {
        match self {
            NodeKind::Mix => "mix-worker",
            NodeKind::Gateway => "exit-worker",
        }
    }
}

/// A packet opened for the role, with its replay tag: the role
/// journals the tag before the packet has any effect outside the node.
#[derive(Debug)]
pub struct Opened<T> {
    /// What the mixer handed out: a packet to forward, or a delivery.
    pub packet: T,
    /// Its replay tag.
    pub record: ReplayRecord,
}

/// The running node, as the role's tasks see it.
#[derive(Clone)]
pub struct Node {
    /// The node's identity.
    pub id: NodeId,
    /// The common sections of its config.
    pub config: NodeConfig,
    /// Its clock.
    pub clock: Clock,
    /// Its mixer (shared with the workers, the cover and epoch tasks).
    pub mixer: Arc<NodeMixer>,
    /// Its links with other nodes.
    pub links: Arc<Links>,
    /// The current topology.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// The common metrics.
    pub metrics: Arc<NodeMetrics>,
    /// The stop request.
    pub shutdown: ShutdownSignal,
    /// The node's audit log (administrative events only, never traffic).
    pub audit: SharedAuditLog,
}

impl Node {
    /// Hands `packet` to the link towards `next_hop` as listed in
    /// `topology`; counts it as forwarded, or as dropped with its reason.
    pub fn forward(&self, topology: &Topology, next_hop: NodeId, packet: Vec<u8>) {
        match self.links.send(topology, next_hop, packet) {
            Ok(()) => {
                self.metrics.forwarded.inc();
            }
            Err(reason) => self.metrics.count_drop(reason),
        }
    }
}

/// What the runtime hands to [`Role::start`] to own.
pub struct RoleInput<H> {
    /// The packets the workers (or the intake) opened for the role (a
    /// bounded queue; when the role drops it, the workers stop).
    pub opened: mpsc::Receiver<Opened<H>>,
    /// The replay journal, already replayed into the mixer.
    pub journal: ReplayJournal,
    /// Randomness of the role's own.
    pub rng: ChaCha20Rng,
}

/// The role's tasks, as the runtime waits for them at shutdown.
#[derive(Default)]
pub struct RoleTasks {
    /// Tasks that write the role's durable state (the replay journal, a
    /// mailbox): awaited to their end.
    pub durable: Vec<JoinHandle<()>>,
    /// Tasks that only close connections gracefully: awaited until the
    /// shutdown deadline, then left.
    pub lingering: Vec<JoinHandle<()>>,
    /// Copies the role's counters into the registry before each scrape.
    pub observe: Option<Observe>,
}

/// What a node binary adds to the runtime: the part that is its role's.
pub trait Role: Sized {
    /// Mix node or gateway.
    const KIND: NodeKind;

    /// The role's own sections of the config file.
    type Sections: RoleSections;

    /// Threads of the node's async runtime (links, the intake, the role's
    /// tasks); 1 runs them all on the thread that started the node. Fewer
    /// threads mean fewer wake-ups of a sleeping one (work stealing) per
    /// packet; the unwraps have their own threads under load.
    const ASYNC_THREADS: usize = 2;

    /// The role, from its node's config file. What must fail at start
    /// (a mailbox that cannot be opened) fails here.
    fn open(file: &NodeFile<Self::Sections>) -> Result<Self>;

    /// What the role takes from the workers: a packet to forward (a mix
    /// node) or a final-hop delivery (a gateway).
    type Hop: Send + 'static;

    /// Picks the role's packets out of what the mixer opened (never a loop
    /// cover packet: the runtime counts those); any other is dropped with
    /// the reason returned.
    fn hop(action: Action) -> Result<Self::Hop, DropReason>;

    /// How many opened packets may wait for the role.
    fn hop_queue(config: &NodeConfig) -> usize;

    /// Binds the role's own sockets before the node registers; returns the
    /// address clients dial, if the role has one (announced in the descriptor).
    fn bind(&mut self, identity: &IdentityKeyPair) -> Result<Option<SocketAddr>>;

    /// Starts the role's tasks on the running node, registering the role's
    /// own series in `registry` (it has the node's prefix).
    fn start(
        self,
        node: &Node,
        input: RoleInput<Self::Hop>,
        registry: &mut Registry,
    ) -> Result<RoleTasks>;
}

/// Starts a node of role `R` from its config file and key files, and runs
/// it until SIGTERM or Ctrl-C. The audit log records its start and config
/// first (or the node does not start), and its stop when it ends in order.
pub fn run<R: Role>(file: NodeFile<R::Sections>) -> Result<()> {
    let audit = auditing::open(&file.node)?;
    let keys = KeyStore::new(&file.node.node.data_dir);
    let identity = keys.identity()?;
    audit.record(&auditing::started(R::KIND.metrics_prefix(), &identity))?;
    audit.record(&file.loaded)?;
    let result = start_and_serve::<R>(file, keys, identity, audit.clone());
    auditing::record(&audit, &AuditEvent::Stop);
    result
}

/// Opens the role and runs the node on its own runtime until it stops.
fn start_and_serve<R: Role>(
    file: NodeFile<R::Sections>,
    keys: KeyStore,
    identity: IdentityKeyPair,
    audit: SharedAuditLog,
) -> Result<()> {
    let role = R::open(&file)?;
    let config = file.node;
    let mut builder = if R::ASYNC_THREADS <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(R::ASYNC_THREADS);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(config, keys, identity, role, audit));
    // What is left (a task cut at the deadline) does not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// A node registered with the directory, its sockets bound, before its
/// tasks start.
struct Joined {
    registry: Registry,
    metrics: Arc<NodeMetrics>,
    metrics_endpoint: MetricsEndpoint,
    links: Arc<Links>,
    incoming: mpsc::Receiver<transport::Received>,
    client_address: Option<SocketAddr>,
    registration: Registration,
    topology: Arc<Topology>,
}

/// Steps 1 to 3: binds the sockets and registers, so that the descriptor
/// announces the addresses bound; returns once the node is listed (or has
/// waited long enough).
async fn join<R: Role>(
    config: &NodeConfig,
    keys: KeyStore,
    identity: IdentityKeyPair,
    role: &mut R,
    rng: &mut ChaCha20Rng,
) -> Result<Joined> {
    let kind = R::KIND;
    let mut registry = Registry::with_prefix(kind.metrics_prefix());
    let metrics = Arc::new(NodeMetrics::register(&mut registry, kind));
    let metrics_endpoint = MetricsEndpoint::bind(config.metrics.listen).await?;
    let directory = directory_client(config)?;
    let first = current_topology(&directory, config).await?;
    let (links, incoming) = Links::bind(config, &identity, &first)?;
    let client_address = role.bind(&identity)?;
    let addresses = Addresses {
        node: config.public_address(links.local_addr()),
        clients: client_address,
    };
    let registration = Registration::new(directory, keys, identity, kind, addresses, config);
    let topology = registration.first_topology(first, rng).await;
    links.set_pins(&topology);
    Ok(Joined {
        registry,
        metrics,
        metrics_endpoint,
        links: Arc::new(links),
        incoming,
        client_address,
        registration,
        topology,
    })
}

/// A node's mixer, with the Sphinx implementation its config chose.
pub type NodeMixer = Mixer<ConfiguredSphinxCodec>;

/// Step 4: the node's mixer, with the keys of the topology's epoch and the
/// next, and the replay tags of the journal; returns the journal.
fn open_mixer(
    kind: NodeKind,
    id: NodeId,
    topology: &Topology,
    keys: &KeyStore,
    data_dir: &std::path::Path,
    codec: SphinxCodecKind,
    rng: &mut ChaCha20Rng,
) -> Result<(Arc<NodeMixer>, ReplayJournal)> {
    let params = &topology.params;
    let mixer = Mixer::new(
        id,
        ConfiguredSphinxCodec(codec),
        MixerConfig {
            role: kind.mixer_role(),
            max_delay: params.max_delay,
            loop_cover_rate: params.lambda_m,
            cover_mean_delay: params.mean_delay,
            ..MixerConfig::default()
        },
    );
    install_keys(&mixer, keys, topology.epoch, rng)?;
    let (journal, records) = ReplayJournal::open(&data_dir.join("replay.journal"))?;
    for record in &records {
        mixer.remember_tag(record);
    }
    tracing::info!(journal = records.len(), "replay journal loaded");
    Ok((Arc::new(mixer), journal))
}

/// The tasks of a running node, as shutdown stops them.
struct Running {
    intake: JoinHandle<()>,
    cover: JoinHandle<()>,
    epochs: JoinHandle<()>,
    metrics_server: JoinHandle<()>,
    role: RoleTasks,
    links: Arc<Links>,
    workers: PacketWorkers,
}

impl Running {
    /// Waits for every task, in order: what reads the network and the
    /// directory; the role's durable tasks, to their end; the lingering
    /// ones, the metrics endpoint and the links, until `deadline`; the workers.
    async fn stop(self, deadline: tokio::time::Instant) {
        let _ = tokio::join!(self.intake, self.cover, self.epochs);
        for task in self.role.durable {
            let _ = task.await;
        }
        let lingering = async {
            for task in self.role.lingering {
                let _ = task.await;
            }
            let _ = self.metrics_server.await;
        };
        let _ = tokio::time::timeout_at(deadline, lingering).await;
        self.links.close(deadline).await;
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
}

async fn serve<R: Role>(
    config: NodeConfig,
    keys: KeyStore,
    identity: IdentityKeyPair,
    mut role: R,
    audit: SharedAuditLog,
) -> Result<()> {
    let kind = R::KIND;
    let clock = kind.clock();
    let id = identity.node_id();
    let mut rng = ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
        .context("cannot seed the random generator")?;
    let Joined {
        mut registry,
        metrics,
        metrics_endpoint,
        links,
        incoming,
        client_address,
        registration,
        topology,
    } = join(&config, keys, identity, &mut role, &mut rng).await?;
    let (mixer, journal) = open_mixer(
        kind,
        id,
        &topology,
        registration.keys(),
        &config.node.data_dir,
        config.processing.sphinx_codec,
        &mut rng,
    )?;
    metrics.epoch.set(to_i64(topology.epoch.0));
    show_topology(&metrics, &topology);
    let directory = registration.directory().clone();
    let period = refresh_period(
        &topology.params,
        Duration::from_millis(config.directory.refresh_ms),
    );
    let (topology_tx, topology_rx) = watch::channel(topology);
    let (shutdown, signal) = Shutdown::new();

    // Step 5: the role's tasks, then what feeds them.
    let (opened_tx, opened) = mpsc::channel(R::hop_queue(&config).max(1));
    let node = Node {
        id,
        config: config.clone(),
        clock,
        mixer: mixer.clone(),
        links: links.clone(),
        topology: topology_rx.clone(),
        metrics: metrics.clone(),
        shutdown: signal.clone(),
        audit: audit.clone(),
    };
    let input = RoleInput {
        opened,
        journal,
        rng: ChaCha20Rng::from_rng(&mut rng),
    };
    let mut role_tasks = role.start(&node, input, &mut registry)?;
    let (workers, intake) = start_workers::<R>(&node, opened_tx, incoming)?;

    // Step 6: cover, epochs, metrics.
    let cover = tokio::spawn(
        LoopCover {
            mixer: mixer.clone(),
            links: links.clone(),
            topology: topology_rx,
            metrics: metrics.clone(),
            clock,
            rng: ChaCha20Rng::from_rng(&mut rng),
        }
        .run(signal.clone()),
    );
    let epochs = tokio::spawn(
        EpochFollower {
            registration,
            mixer,
            links: links.clone(),
            metrics: metrics.clone(),
            topology: topology_tx,
            period,
            rng: ChaCha20Rng::from_rng(&mut rng),
            stale_epochs: 0,
            expired: false,
            audit,
        }
        .run(signal.clone()),
    );
    let metrics_addr = metrics_endpoint.local_addr()?;
    let observe: Observe = {
        let metrics = metrics.clone();
        let links = links.clone();
        let role_observe = role_tasks.observe.take();
        Box::new(move || {
            metrics.observe_links(&links.stats());
            if let Some(observe) = &role_observe {
                observe();
            }
        })
    };
    // A gateway mirrors the consensus for its clients (docs/topology.md).
    let mirror = (kind == NodeKind::Gateway).then(|| directory.clone());
    let metrics_server =
        tokio::spawn(metrics_endpoint.serve(Arc::new(registry), observe, mirror, signal.clone()));

    // Step 7.
    let listen = links.local_addr();
    match client_address {
        Some(clients) => println!("ready {id} {listen} {clients} {metrics_addr}"),
        None => println!("ready {id} {listen} {metrics_addr}"),
    }
    tracing::info!(%id, %listen, workers = workers.len(), "{} running", kind.name());
    shutdown_signal().await;
    let deadline = shutdown.raise();
    tracing::info!("shutting down");
    Running {
        intake,
        cover,
        epochs,
        metrics_server,
        role: role_tasks,
        links,
        workers,
    }
    .stop(deadline)
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The worker pool and its intake from the links: what is the role's goes
/// to `role`.
///
/// A packet that arrives with few others waiting behind it (see
/// [`InlinePolicy`]: up to sixteen while the offered load is light, two
/// when it would keep one core busy most of the time) and none waiting for
/// the workers is opened by the intake task itself and handed to the role
/// from there: it then crosses no thread between the link and the role,
/// instead of waking a sleeping worker thread and, from it, the role's
/// task. The others go to the workers, so that under a flood every core
/// opens packets and the intake only moves them.
fn start_workers<R: Role>(
    node: &Node,
    role: mpsc::Sender<Opened<R::Hop>>,
    mut incoming: mpsc::Receiver<transport::Received>,
) -> Result<(PacketWorkers, JoinHandle<()>)> {
    let processing = &node.config.processing;
    let workers = {
        let mixer = node.mixer.clone();
        let metrics = node.metrics.clone();
        let clock = node.clock;
        let role = role.clone();
        PacketWorkers::start(
            worker_count(processing.workers),
            processing.input_queue,
            R::KIND.worker_name(),
            move |packet| match open_one::<R>(&packet, &mixer, &metrics, clock.now()) {
                Some(opened) => role.blocking_send(opened).is_ok(),
                None => true,
            },
        )?
    };
    let queue = workers.submitter();
    let mixer = node.mixer.clone();
    let metrics = node.metrics.clone();
    let clock = node.clock;
    let mut shutdown = node.shutdown.clone();
    let intake = tokio::spawn(async move {
        let mut policy = InlinePolicy::new();
        loop {
            tokio::select! {
                received = incoming.recv() => {
                    let Some(received) = received else { break };
                    metrics.received.inc();
                    let arrived = clock.now();
                    policy.arrived(arrived);
                    if policy.opens_itself(incoming.len()) && queue.queue_is_empty() {
                        let opened = open_one::<R>(&received.packet, &mixer, &metrics, arrived);
                        policy.opened(clock.now().saturating_duration_since(arrived));
                        if let Some(opened) = opened
                            && role.send(opened).await.is_err()
                        {
                            // The role has stopped taking packets.
                            break;
                        }
                        if !incoming.is_empty() {
                            // Timers and links run between two unwraps: a
                            // release waits for one unwrap at most.
                            tokio::task::yield_now().await;
                        }
                    } else if !queue.try_submit(received.packet) {
                        // Bounded: what overflows is dropped and counted.
                        metrics.count_drop(DropReason::QueueFull);
                    }
                }
                _ = shutdown.requested() => break,
            }
        }
    });
    Ok((workers, intake))
}

/// Opens one packet with the node's mixer at `now` (the intake's instant
/// for the packets it opens itself): the role's packets are returned, the
/// node's own loop cover coming back and every refused packet are counted
/// here, and one packet in [`crate::metrics::UNWRAP_TIMED_EVERY`] has its unwrap timed (so
/// that what a node spends beyond its unwraps can be told from the unwraps'
/// own price on a loaded machine).
fn open_one<R: Role>(
    packet: &[u8],
    mixer: &NodeMixer,
    metrics: &NodeMetrics,
    now: Timestamp,
) -> Option<Opened<R::Hop>> {
    let timed = metrics.time_this_unwrap().then(thread_cpu_time);
    let result = mixer.handle_packet_recorded(now, packet);
    if let Some(started) = timed {
        metrics.unwrap_timed(thread_cpu_time().saturating_sub(started));
    }
    match result {
        Ok((Action::LoopReturned, _)) => {
            metrics.cover_returned.inc();
        }
        Ok((action, record)) => match R::hop(action) {
            Ok(packet) => return Some(Opened { packet, record }),
            Err(reason) => metrics.count_drop(reason),
        },
        Err(reason) => metrics.count_drop(reason),
    }
    None
}
