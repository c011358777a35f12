//! The running gateway: the async shell around the [`GatewayCore`] and its
//! exit [`Mixer`].
//!
//! Who owns what:
//! - the node-side endpoint (pinned to the topology) receives final-hop
//!   packets from layer 3 and carries client packets and SURB-acks into
//!   layer 1;
//! - a fixed pool of worker threads unwraps final-hop packets with the exit
//!   `Mixer` (Sphinx is CPU-bound and never runs on the reactor);
//! - the core thread owns the `GatewayCore`, its `redb` mailbox and the
//!   replay journal (see `core_loop`);
//! - the client listener runs one reader and one writer task per client;
//! - the cover task sends the gateway's own loop cover at λ_M through the
//!   three layers and back (see `cover`);
//! - the epoch task follows the directory: topology, pins, key rotation,
//!   registration;
//! - the metrics task serves `/metrics`.
//!
//! Shutdown (SIGTERM or Ctrl-C) closes every client session with
//! `Close(shutdown)`, flushes the journal and closes the links.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use directory::DirectoryClient;
use gateway::RedbStore;
use gateway_core::{GatewayConfig, GatewayCore, Mailbox, ThrottleConfig};
use mixnode_core::{Action, DropReason, Mixer, MixerConfig, MixerRole, SphinxCodec};
use nodeshell::clock::Clock;
use nodeshell::journal::ReplayJournal;
use nodeshell::keystore::KeyStore;
use nodeshell::signal::shutdown_signal;
use nodeshell::workers::{PacketWorkers, worker_count};
use protocol::epoch::Epoch;
use protocol::keys::{IdentityKeyPair, NodeId};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, watch};
use topology::{EpochKey, NodeDescriptor, Role, Topology};
use transport::{Endpoint, LinkConfig, PeerId};

use crate::clients::ClientListener;
use crate::config::Config;
use crate::core_loop::{CoreLoop, FinalHop};
use crate::cover::CoverTask;
use crate::metrics::GatewayMetrics;

/// Where the gateway can be reached, as announced in its descriptor.
#[derive(Clone, Copy)]
struct Addresses {
    node: SocketAddr,
    clients: SocketAddr,
}

/// Starts the gateway and runs it until SIGTERM or Ctrl-C.
pub fn run(config: Config) -> Result<()> {
    let store = KeyStore::new(&config.node.data_dir);
    let identity = store.identity()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, store, identity))
}

fn pins(topology: &Topology) -> Vec<PeerId> {
    topology
        .all_peer_ids()
        .into_iter()
        .map(|id| PeerId(id.0))
        .collect()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn serve(config: Config, store: KeyStore, identity: IdentityKeyPair) -> Result<()> {
    let clock = Clock::start_unix();
    let id = identity.node_id();
    let mut rng = ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
        .context("cannot seed the random generator")?;
    let metrics = Arc::new(GatewayMetrics::new());
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("metrics.listen = {}: cannot bind", config.metrics.listen))?;
    let metrics_addr = metrics_listener.local_addr()?;

    let mailbox_path = config.node.data_dir.join("mailbox.redb");
    let redb = RedbStore::open(&mailbox_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", mailbox_path.display()))?;
    let mailbox = Mailbox::open(redb, config.mailbox.mailbox_config())
        .map_err(|e| anyhow::anyhow!("{}: {e}", mailbox_path.display()))?;

    let directory_key = NodeId::from_base58(&config.directory.public_key)
        .map_err(|e| anyhow::anyhow!("directory.public_key: {e}"))?;
    let directory = Arc::new(
        DirectoryClient::new(
            &config.directory.url,
            directory_key,
            Some(config.node.data_dir.join("topology.json")),
        )
        .map_err(|e| anyhow::anyhow!("directory.url: {e}"))?,
    );
    let first = directory
        .topology()
        .await
        .ok()
        .or_else(|| directory.cached())
        .with_context(|| {
            format!(
                "directory.url = {}: no topology from the directory and none cached",
                config.directory.url
            )
        })?;

    // Endpoints first: the descriptor announces the addresses they bound.
    let mut link = LinkConfig::new(config.node.listen, first.params.packet_size);
    link.queue_capacity = config.processing.link_queue.max(1);
    link.incoming_capacity = config.processing.input_queue.max(1);
    let (endpoint, incoming) = Endpoint::bind(identity.signing_key(), pins(&first), link)
        .with_context(|| format!("node.listen = {}: cannot start QUIC", config.node.listen))?;
    let endpoint = Arc::new(endpoint);
    let listener = ClientListener::bind(&identity, config.clients.listen)?;
    let addresses = Addresses {
        node: config.public_address(endpoint.local_addr()),
        clients: config.client_address(listener.local_addr()?),
    };

    let topology = first_topology(
        &directory, &store, &identity, &config, addresses, first, &mut rng,
    )
    .await?;
    endpoint.set_pins(pins(&topology));
    let params = topology.params.clone();
    let epoch = topology.epoch;
    let mixer = Arc::new(Mixer::new(
        id,
        SphinxCodec,
        MixerConfig {
            role: MixerRole::Exit,
            max_delay: params.max_delay,
            loop_cover_rate: params.lambda_m,
            cover_mean_delay: params.mean_delay,
            ..MixerConfig::default()
        },
    ));
    install_keys(&mixer, &store, epoch, &mut rng)?;
    metrics.epoch.set(to_i64(epoch.0));
    metrics
        .topology_nodes
        .set(to_i64(topology.all_peer_ids().len() as u64));

    let (journal, records) = ReplayJournal::open(&config.node.data_dir.join("replay.journal"))?;
    for record in &records {
        mixer.remember_tag(&protocol::replay::ReplayRecord {
            epoch: record.epoch,
            tag: record.tag,
        });
    }
    tracing::info!(journal = records.len(), "replay journal loaded");

    let rate = params.lambda_p + params.lambda_l;
    let core = GatewayCore::new(
        id,
        GatewayConfig {
            throttle: ThrottleConfig {
                rate,
                burst: (rate * 2.0).max(ThrottleConfig::default().burst),
            },
            max_sessions: config.clients.max_sessions,
            ..GatewayConfig::default()
        },
        mailbox,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", mailbox_path.display()))?;
    let stats = core.stats().clone();

    let (topology_tx, topology_rx) = watch::channel(topology);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (client_tx, client_rx) = mpsc::channel(1024);
    let (hop_tx, hop_rx) = mpsc::channel::<FinalHop>(4096);

    // The core thread.
    let core_thread = {
        let core_loop = CoreLoop {
            core,
            journal,
            mixer: mixer.clone(),
            endpoint: endpoint.clone(),
            topology: topology_rx.clone(),
            metrics: metrics.clone(),
            clock,
            rng: ChaCha20Rng::from_rng(&mut rng),
        };
        let shutdown = shutdown_rx.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("cannot start the core runtime")?;
        std::thread::Builder::new()
            .name("gateway-core".into())
            .spawn(move || runtime.block_on(core_loop.run(client_rx, hop_rx, shutdown)))
            .context("cannot start the core thread")?
    };

    // Workers: unwrap on their own threads.
    let workers = {
        let mixer = mixer.clone();
        let metrics = metrics.clone();
        PacketWorkers::start(
            worker_count(config.processing.workers),
            config.processing.input_queue,
            "exit-worker",
            move |packet| unwrap_one(&packet, &mixer, &metrics, &hop_tx, clock),
        )?
    };
    // Intake: links → workers (bounded; overflow is dropped and counted).
    let intake = {
        let metrics = metrics.clone();
        workers.spawn_intake(
            incoming,
            shutdown_rx.clone(),
            |received: transport::Received| received.packet,
            move |queued| {
                metrics.received.inc();
                if !queued {
                    metrics.count_drop(DropReason::QueueFull);
                }
            },
        )
    };

    // Loop cover: the gateway's own, at λ_M, through L1, L2, L3 and back.
    let cover = tokio::spawn(
        CoverTask {
            mixer: mixer.clone(),
            endpoint: endpoint.clone(),
            topology: topology_rx.clone(),
            metrics: metrics.clone(),
            clock,
            rng: ChaCha20Rng::from_rng(&mut rng),
        }
        .run(shutdown_rx.clone()),
    );

    // Clients.
    let client_address = listener.local_addr()?;
    let clients = tokio::spawn(listener.serve(
        client_tx,
        config.clients.max_sessions,
        config.clients.session_queue,
        shutdown_rx.clone(),
    ));

    // Epochs: follow the directory, rotate keys, update pins.
    let epochs = tokio::spawn(
        EpochFollower {
            directory: directory.clone(),
            store,
            identity,
            config: config.clone(),
            addresses,
            mixer: mixer.clone(),
            metrics: metrics.clone(),
            endpoint: endpoint.clone(),
            params,
            topology: topology_tx,
            rng: ChaCha20Rng::from_rng(&mut rng),
        }
        .run(shutdown_rx.clone()),
    );

    // Metrics endpoint.
    let metrics_server = tokio::spawn(crate::metrics::serve(
        metrics_listener,
        metrics.clone(),
        endpoint.stats(),
        stats,
        shutdown_rx.clone(),
    ));

    println!(
        "ready {id} {} {client_address} {metrics_addr}",
        endpoint.local_addr()
    );
    tracing::info!(%id, listen = %endpoint.local_addr(), clients = %client_address, workers = workers.len(), "gateway running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = intake.await;
    let _ = cover.await;
    let _ = epochs.await;
    let _ = metrics_server.await;
    // The core thread closes every session (`Close(shutdown)`) and flushes the journal.
    let _ = tokio::task::spawn_blocking(move || core_thread.join()).await;
    let _ = clients.await;
    endpoint.close().await;
    workers.join();
    Ok(())
}

fn catch_up(counter: &prometheus_client::metrics::counter::Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// The epoch task: follows the directory, rotates keys, registers again at
/// each new epoch, re-pins the node endpoint and publishes the topology.
struct EpochFollower {
    directory: Arc<DirectoryClient>,
    store: KeyStore,
    identity: IdentityKeyPair,
    config: Config,
    addresses: Addresses,
    mixer: Arc<Mixer>,
    metrics: Arc<GatewayMetrics>,
    endpoint: Arc<Endpoint>,
    params: topology::NetworkParams,
    topology: watch::Sender<Arc<Topology>>,
    rng: ChaCha20Rng,
}

impl EpochFollower {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let period = refresh_period(
            &self.params,
            Duration::from_millis(self.config.directory.refresh_ms),
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => break,
            }
            catch_up(
                &self.metrics.topology_bad_signature,
                self.directory.bad_signatures(),
            );
            let Ok(topology) = self.directory.refresh().await else {
                continue; // keep running on the cached topology
            };
            if topology.epoch > self.mixer.current_epoch() {
                self.rotate(topology.epoch).await;
            }
            self.endpoint.set_pins(pins(&topology));
            self.metrics
                .topology_nodes
                .set(to_i64(topology.all_peer_ids().len() as u64));
            let _ = self.topology.send(topology);
        }
    }

    async fn rotate(&mut self, epoch: Epoch) {
        if let Err(e) = install_keys(&self.mixer, &self.store, epoch, &mut self.rng) {
            tracing::error!("key rotation: {e:#}");
        }
        self.metrics.epoch.set(to_i64(epoch.0));
        if let Err(e) = register(
            &self.directory,
            &self.store,
            &self.identity,
            &self.config,
            self.addresses,
            epoch,
            &mut self.rng,
        )
        .await
        {
            tracing::warn!("registration: {e:#}");
        }
        tracing::info!(%epoch, "rotated keys");
    }
}

/// What a worker thread does with one final-hop packet; false once the core is gone.
fn unwrap_one(
    packet: &[u8],
    mixer: &Mixer,
    metrics: &GatewayMetrics,
    hops: &mpsc::Sender<FinalHop>,
    clock: Clock,
) -> bool {
    match mixer.handle_packet_recorded(clock.now(), packet) {
        Ok((Action::Deliver(delivery), record)) => {
            return hops.blocking_send(FinalHop { delivery, record }).is_ok();
        }
        // A gateway is the last hop only: it mixes nothing onwards.
        Ok((Action::Forward(_), _)) => metrics.count_drop(DropReason::UnknownNextHop),
        // Its own loop cover, back home.
        Ok((Action::LoopReturned, _)) => {
            metrics.loop_cover_returned.inc();
        }
        Err(reason) => metrics.count_drop(reason),
    }
    true
}

/// Registers with the directory and returns the first topology that lists this gateway.
async fn first_topology(
    directory: &DirectoryClient,
    store: &KeyStore,
    identity: &IdentityKeyPair,
    config: &Config,
    addresses: Addresses,
    first: Arc<Topology>,
    rng: &mut ChaCha20Rng,
) -> Result<Arc<Topology>> {
    if let Err(e) = register(
        directory,
        store,
        identity,
        config,
        addresses,
        first.epoch,
        rng,
    )
    .await
    {
        tracing::warn!("registration: {e:#}");
    }
    // After registering, fetch again so that this gateway is in the topology.
    for _ in 0..50 {
        if let Ok(t) = directory.refresh().await
            && t.entry(&identity.node_id()).is_some()
        {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("not listed by the directory yet; starting on the topology we have");
    Ok(directory.cached().unwrap_or(first))
}

/// Signs and posts this gateway's descriptor with the keys of `epoch` and the next.
async fn register(
    directory: &DirectoryClient,
    store: &KeyStore,
    identity: &IdentityKeyPair,
    config: &Config,
    addresses: Addresses,
    epoch: Epoch,
    rng: &mut ChaCha20Rng,
) -> Result<()> {
    let keys = [epoch, epoch.next()]
        .into_iter()
        .map(|e| {
            store.sphinx_key(e, rng).map(|k| EpochKey {
                epoch: e,
                key: k.public(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let descriptor = NodeDescriptor {
        id: identity.node_id(),
        role: Role::Gateway,
        address: addresses.node,
        client_address: Some(addresses.clients),
        sphinx_keys: keys,
        region: config.node.region.clone(),
        metrics_url: Some(format!("http://{}/metrics", config.metrics.listen)),
        issued_at: nodeshell::clock::unix_secs(),
    };
    let signed = descriptor
        .sign(identity)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    directory
        .register(&signed)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Installs the keys of `epoch` and the next, makes `epoch` current, retires older ones.
fn install_keys(
    mixer: &Mixer,
    store: &KeyStore,
    epoch: Epoch,
    rng: &mut ChaCha20Rng,
) -> Result<()> {
    for e in [epoch, epoch.next()] {
        mixer.install_key(e, store.sphinx_key(e, rng)?);
    }
    mixer.rotate(epoch);
    store.retire_before(epoch.previous().unwrap_or(epoch))
}

fn refresh_period(params: &topology::NetworkParams, configured: Duration) -> Duration {
    configured
        .min(params.epoch_length / 8)
        .max(Duration::from_millis(100))
}
