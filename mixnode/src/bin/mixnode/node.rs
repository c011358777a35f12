//! The running node: the async shell around the [`Mixer`].
//!
//! Who owns what:
//! - link tasks (the transport) move fixed-size packets to and from peers;
//! - a fixed pool of worker threads, one per core, unwraps packets with the
//!   shared `Mixer` (Sphinx is CPU-bound and never runs on the reactor);
//! - the release task holds unwrapped packets in a [`ReleaseQueue`], journals
//!   their replay tags, and hands each to its link at its instant;
//! - the epoch task follows the directory: topology, pins, key rotation;
//! - the cover task emits the node's own loop cover at λ_M;
//! - the metrics task serves `/metrics`.
//!
//! Shutdown (SIGTERM or Ctrl-C) stops intake, flushes the journal and closes
//! the links.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use directory::DirectoryClient;
use mixnode_core::{
    Action, DropReason, Mixer, MixerConfig, MixerRole, ReleaseQueue, SphinxCodec, Transmit,
};
use protocol::epoch::Epoch;
use protocol::keys::{IdentityKeyPair, NodeId};
use protocol::replay::ReplayRecord;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{mpsc, watch};
use topology::{EpochKey, NodeDescriptor, Role, Topology};

use crate::config::Config;
use crate::links::Links;
use crate::metrics::NodeMetrics;
use nodeshell::clock::Clock;
use nodeshell::journal::ReplayJournal;
use nodeshell::keystore::KeyStore;
use nodeshell::signal::shutdown_signal;
use nodeshell::workers::{PacketWorkers, worker_count};

/// Half of tokio's timer tick: how early the release task may wake, and
/// release, so that release instants round to the nearest tick.
const TIMER_SLACK: Duration = Duration::from_micros(500);

/// Packets handed from workers (and the cover task) to the release task.
struct Release {
    transmit: Transmit,
    record: Option<ReplayRecord>,
}

/// Starts the node and runs it until SIGTERM or Ctrl-C.
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

async fn serve(config: Config, store: KeyStore, identity: IdentityKeyPair) -> Result<()> {
    let clock = Clock::start();
    let id = identity.node_id();
    let mut rng = ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
        .context("cannot seed the random generator")?;
    let metrics = Arc::new(NodeMetrics::new());
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("metrics.listen = {}: cannot bind", config.metrics.listen))?;

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

    // The first topology: registration needs the epoch, the mixer the params.
    let topology = first_topology(&directory, &store, &identity, &config, &mut rng).await?;
    let params = topology.params.clone();
    let epoch = topology.epoch;
    let mixer = Arc::new(Mixer::new(
        id,
        SphinxCodec,
        MixerConfig {
            role: MixerRole::Mix,
            max_delay: params.max_delay,
            loop_cover_rate: params.lambda_m,
            cover_mean_delay: params.mean_delay,
            ..MixerConfig::default()
        },
    ));
    install_keys(&mixer, &store, epoch, &mut rng)?;
    metrics
        .epoch
        .set(i64::try_from(epoch.0).unwrap_or(i64::MAX));
    metrics
        .topology_nodes
        .set(i64::try_from(topology.all_peer_ids().len()).unwrap_or(i64::MAX));

    let (mut journal, records) = ReplayJournal::open(&config.node.data_dir.join("replay.journal"))?;
    for record in &records {
        mixer.remember_tag(&ReplayRecord {
            epoch: record.epoch,
            tag: record.tag,
        });
    }
    tracing::info!(journal = records.len(), "replay journal loaded");

    let (links, incoming) = Links::bind(&config, &identity, &topology)
        .with_context(|| format!("node.listen = {}: cannot start QUIC", config.node.listen))?;
    let links = Arc::new(links);

    let (topology_tx, topology_rx) = watch::channel(topology);
    let (release_tx, mut release_rx) =
        mpsc::channel::<Release>(config.mixing.input_queue.max(1024));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // Workers: unwrap on their own threads.
    let workers = {
        let mixer = mixer.clone();
        let metrics = metrics.clone();
        let release_tx = release_tx.clone();
        PacketWorkers::start(
            worker_count(config.mixing.workers),
            config.mixing.input_queue,
            "mix-worker",
            move |packet| unwrap_one(&packet, &mixer, &metrics, &release_tx, clock),
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

    // Release: hold until the instant, journal first, then send.
    let release = {
        let links = links.clone();
        let metrics = metrics.clone();
        let mixer = mixer.clone();
        let topology_rx = topology_rx.clone();
        let mut shutdown = shutdown_rx.clone();
        tokio::spawn(async move {
            let mut queue = ReleaseQueue::default();
            let mut journal_epoch = mixer.current_epoch();
            loop {
                // After a rotation the retired epoch's tags leave the journal.
                let epoch = mixer.current_epoch();
                if epoch != journal_epoch {
                    journal_epoch = epoch;
                    if let Err(e) = journal.compact(epoch.previous().unwrap_or(epoch)) {
                        tracing::error!("replay journal: {e:#}");
                    }
                }
                // tokio's timers tick in whole milliseconds and fire at the
                // first tick at or after their deadline; waking half a tick
                // early and releasing what is due within it rounds release
                // instants to the nearest tick instead of always up.
                let wake = queue.next_release().map(|t| {
                    clock
                        .to_tokio(t)
                        .checked_sub(TIMER_SLACK)
                        .unwrap_or_else(|| clock.to_tokio(t))
                });
                tokio::select! {
                    item = release_rx.recv() => {
                        let Some(Release { transmit, record }) = item else { break };
                        if let Some(record) = record
                            && let Err(e) = journal.append(&protocol::replay::ReplayRecord {
                                epoch: record.epoch,
                                tag: record.tag,
                            })
                        {
                            tracing::error!("replay journal: {e:#}");
                        }
                        queue.push(transmit);
                    }
                    _ = sleep_until_opt(wake) => {
                        if let Err(e) = journal.flush() {
                            tracing::error!("replay journal: {e:#}");
                        }
                        let now = clock.now().saturating_add(TIMER_SLACK);
                        let topology = topology_rx.borrow().clone();
                        while let Some(t) = queue.pop_due(now) {
                            match links.send(&topology, t.next_hop, t.packet) {
                                Ok(()) => {
                                    metrics.forwarded.inc();
                                }
                                Err(reason) => metrics.count_drop(reason),
                            }
                        }
                    }
                    _ = shutdown.changed() => break,
                }
                metrics
                    .queue_depth
                    .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
            }
            let _ = journal.flush();
            journal
        })
    };

    // Cover: the node's own loop cover at λ_M.
    let cover = {
        let mixer = mixer.clone();
        let metrics = metrics.clone();
        let topology_rx = topology_rx.clone();
        let release_tx = release_tx.clone();
        let mut shutdown = shutdown_rx.clone();
        let mut rng = ChaCha20Rng::from_rng(&mut rng);
        tokio::spawn(async move {
            mixer.start_cover(clock.now(), &mut rng);
            while let Some(due) = mixer.next_cover_at() {
                tokio::select! {
                    _ = tokio::time::sleep_until(clock.to_tokio(due)) => {}
                    _ = shutdown.changed() => break,
                }
                let topology = topology_rx.borrow().clone();
                let route = match topology.loop_route(&mixer.id(), &mut rng) {
                    Ok(route) => route,
                    Err(e) => {
                        tracing::debug!("loop cover: {e}");
                        mixer.skip_cover(due, &mut rng);
                        continue;
                    }
                };
                if let Some(t) = mixer.poll_cover(due, &mut rng, &route) {
                    metrics.cover_sent.inc();
                    let _ = release_tx
                        .send(Release {
                            transmit: t,
                            record: None,
                        })
                        .await;
                }
            }
        })
    };

    // Epochs: follow the directory, rotate keys, update pins.
    let epochs = {
        let mixer = mixer.clone();
        let metrics = metrics.clone();
        let links = links.clone();
        let directory = directory.clone();
        let config = config.clone();
        let mut shutdown = shutdown_rx.clone();
        let mut rng = ChaCha20Rng::from_rng(&mut rng);
        tokio::spawn(async move {
            let period =
                refresh_period(&params, Duration::from_millis(config.directory.refresh_ms));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.changed() => break,
                }
                metrics.topology_bad_signature.inc_by(
                    directory
                        .bad_signatures()
                        .saturating_sub(metrics.topology_bad_signature.get()),
                );
                let Ok(topology) = directory.refresh().await else {
                    continue; // keep running on the cached topology
                };
                if topology.epoch > mixer.current_epoch() {
                    if let Err(e) = install_keys(&mixer, &store, topology.epoch, &mut rng) {
                        tracing::error!("key rotation: {e:#}");
                    }
                    metrics
                        .epoch
                        .set(i64::try_from(topology.epoch.0).unwrap_or(i64::MAX));
                    if let Err(e) = register(
                        &directory,
                        &store,
                        &identity,
                        &config,
                        topology.epoch,
                        &mut rng,
                    )
                    .await
                    {
                        tracing::warn!("registration: {e:#}");
                    }
                    tracing::info!(epoch = %topology.epoch, "rotated keys");
                }
                links.set_pins(&topology);
                metrics
                    .topology_nodes
                    .set(i64::try_from(topology.all_peer_ids().len()).unwrap_or(i64::MAX));
                let _ = topology_tx.send(topology);
            }
        })
    };

    // Metrics endpoint.
    let metrics_server = {
        let metrics = metrics.clone();
        let links = links.clone();
        let mut shutdown = shutdown_rx.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                let links = links.clone();
                async move {
                    metrics.observe_links(&links.stats());
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(metrics_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.changed().await;
                })
                .await;
        })
    };

    println!("ready {id} {}", links.local_addr());
    tracing::info!(%id, listen = %links.local_addr(), workers = workers.len(), "mix node running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    drop(release_tx);
    let _ = intake.await;
    let _ = cover.await;
    let _ = epochs.await;
    let _ = metrics_server.await;
    if let Ok(mut journal) = release.await {
        let _ = journal.flush();
    }
    links.close().await;
    workers.join();
    Ok(())
}

/// What a worker thread does with one packet; false once the release task is gone.
fn unwrap_one(
    packet: &[u8],
    mixer: &Mixer,
    metrics: &NodeMetrics,
    release: &mpsc::Sender<Release>,
    clock: Clock,
) -> bool {
    match mixer.handle_packet_recorded(clock.now(), packet) {
        Ok((Action::Forward(transmit), record)) => {
            let delay = transmit.send_at.saturating_duration_since(clock.now());
            metrics.hop_delay.observe(delay.as_secs_f64());
            return release
                .blocking_send(Release {
                    transmit,
                    record: Some(record),
                })
                .is_ok();
        }
        Ok((Action::LoopReturned, _)) => {
            metrics.cover_returned.inc();
        }
        Ok((Action::Deliver(_), _)) => metrics.count_drop(DropReason::UnexpectedFinalHop),
        Err(reason) => metrics.count_drop(reason),
    }
    true
}

/// Registers with the directory and returns the first topology (fetched, or cached).
async fn first_topology(
    directory: &DirectoryClient,
    store: &KeyStore,
    identity: &IdentityKeyPair,
    config: &Config,
    rng: &mut ChaCha20Rng,
) -> Result<Arc<Topology>> {
    // The epoch comes from the directory; a node that cannot reach it starts
    // on its cached topology.
    let cached_or_fresh = directory.topology().await.ok();
    let epoch = cached_or_fresh
        .as_ref()
        .map(|t| t.epoch)
        .unwrap_or_default();
    if let Err(e) = register(directory, store, identity, config, epoch, rng).await {
        tracing::warn!("registration: {e:#}");
    }
    // After registering, fetch again so that this node is in the topology.
    for _ in 0..50 {
        if let Ok(t) = directory.refresh().await
            && t.entry(&identity.node_id()).is_some()
        {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    directory.cached().or(cached_or_fresh).with_context(|| {
        format!(
            "directory.url = {}: no topology from the directory and none cached",
            config.directory.url
        )
    })
}

/// Signs and posts this node's descriptor with the keys of `epoch` and the next.
async fn register(
    directory: &DirectoryClient,
    store: &KeyStore,
    identity: &IdentityKeyPair,
    config: &Config,
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
        role: Role::Mix,
        address: config.public_address(),
        client_address: None,
        sphinx_keys: keys,
        region: config.node.region.clone(),
        metrics_url: Some(format!("http://{}/metrics", config.metrics.listen)),
        issued_at: unix_now(),
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

#[allow(clippy::disallowed_methods)] // descriptors carry wall-clock issue times
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
