//! `node-cost`: what each node of a local network costs under many real
//! clients, beside the cost of one Sphinx unwrap measured in the same run.
//!
//! Starts a local network (`localnet`: directory, 3 mix layers, gateways,
//! each a real process), then N clients of the client library in this one
//! process (each a `Client`: its driver task, `ClientCore`, QUIC session to
//! its gateway), spread over the gateways, at the network's rates (the
//! topology's λ_P and λ_L, scaled by `--rate-scale`). A few of them
//! (`--messengers`) send real messages to each other in a ring, one per
//! `--message-interval-ms`, and the time from `send` to the recipient's
//! `recv` is the end-to-end latency. After a warm-up, it watches every node
//! for `--secs`: CPU from `/proc/PID/stat` (utime + stime), packets from
//! its `/metrics`, resident memory (VmRSS) and queue depths sampled every
//! second; then prints one table. `--json FILE` appends the run's figures
//! as one JSON line (what docs/performance.md's tables and plot are made of).

// A measuring tool reads the real clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use client::{AddressCard, Client};
use localnet::baseline::{UnwrapBaseline, measure_unwrap};
use localnet::fleet;
use localnet::probe::metric_in;
use localnet::usage::ProcessUsage;
use localnet::{LocalNet, LocalNode, NetworkSpec, NodeRole};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// What one node of the local network costs under real clients.
#[derive(Parser, Clone, Debug)]
#[command(version)]
struct Cli {
    /// Clients in this process.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Of those, how many send real messages (in a ring); the others only
    /// send the cover the network's rates ask for.
    #[arg(long, default_value_t = 4)]
    messengers: usize,
    /// Milliseconds between two messages of one messenger (0: 1000 ÷
    /// `--rate-scale`, so that real messages take a tenth of the λ_P slots).
    #[arg(long, default_value_t = 0)]
    message_interval_ms: u64,
    /// λ_P and λ_L of the network, as a fraction of the defaults (10/s, 2/s).
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
    /// The gateways' group-commit hold in milliseconds (their
    /// `[mailbox] group_commit_ms`; default: the gateway's own).
    #[arg(long)]
    group_commit_ms: Option<u64>,
    /// Mix nodes per layer.
    #[arg(long, default_value_t = 1)]
    mix_per_layer: usize,
    /// Gateways (clients are spread over them).
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Clients created or connected at once while the load starts.
    #[arg(long, default_value_t = 16)]
    parallel_setup: usize,
    /// Threads of this process's async runtime: the client library writes
    /// its state (with a disk sync) on them, so more threads than cores
    /// keep one client's sync from holding the others.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Appends the run's figures as one JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label for the run in the JSON line (e.g. a commit).
    #[arg(long, default_value = "")]
    label: String,
    /// Starts no network: draws the runs of this `--json` file instead, as
    /// two SVG charts in `--plot-dir` (`node_cost_cpu.svg`: CPU per packet
    /// against packets per second; `node_cost_memory.svg`: resident memory
    /// against clients; mix nodes and gateways, each point the mean of a
    /// run's nodes of that role).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Where `--plot` writes its charts.
    #[arg(long, default_value = ".")]
    plot_dir: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    if let Some(runs) = &cli.plot {
        if let Err(e) = plot(runs, &cli.plot_dir) {
            eprintln!("node-cost: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            let result = rt.block_on(run(cli));
            rt.shutdown_timeout(Duration::from_millis(500));
            result
        });
    if let Err(e) = result {
        eprintln!("node-cost: {e:#}");
        std::process::exit(2);
    }
}

/// One role's mean over the nodes of one run, from a `--json` line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RolePoint {
    clients: f64,
    packets_per_s: f64,
    ratio_to_unwraps: f64,
    rss_mib: f64,
}

/// The mean of `role`'s nodes in one `--json` line; `None` if it has none.
fn role_point(run: &serde_json::Value, role: &str) -> Option<RolePoint> {
    let nodes: Vec<&serde_json::Value> = run
        .get("nodes")?
        .as_array()?
        .iter()
        .filter(|n| n.get("role").and_then(|r| r.as_str()) == Some(role))
        .collect();
    if nodes.is_empty() {
        return None;
    }
    let mean = |field: &str| -> Option<f64> {
        let sum = nodes
            .iter()
            .map(|n| n.get(field).and_then(serde_json::Value::as_f64))
            .sum::<Option<f64>>()?;
        Some(sum / nodes.len() as f64)
    };
    Some(RolePoint {
        clients: run.get("clients")?.as_f64()?,
        packets_per_s: mean("packets_per_s")?,
        ratio_to_unwraps: mean("ratio_to_unwraps")?,
        rss_mib: mean("rss_mib")?,
    })
}

/// Draws the runs of a `--json` file (see [`Cli::plot`]).
fn plot(runs: &Path, dir: &Path) -> Result<()> {
    use simulations::plot::{Labels, Series, line_chart_svg};
    let text = std::fs::read_to_string(runs).with_context(|| runs.display().to_string())?;
    let mut lines = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let run: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}", runs.display(), i + 1))?;
        lines.push(run);
    }
    let series = |role: &str, name: &str, xy: fn(&RolePoint) -> (f64, f64)| {
        let mut points: Vec<(f64, f64)> = lines
            .iter()
            .filter_map(|run| role_point(run, role))
            .map(|p| xy(&p))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        Series {
            name: name.to_string(),
            points,
            ci95: Vec::new(),
        }
    };
    let cpu = [
        series("mix", "mix node", |p| (p.packets_per_s, p.ratio_to_unwraps)),
        series(
            "gateway",
            "gateway (÷ its share of final-hop unwraps)",
            |p| (p.packets_per_s, p.ratio_to_unwraps),
        ),
    ];
    let memory = [
        series("mix", "mix node", |p| (p.clients, p.rss_mib)),
        series("gateway", "gateway", |p| (p.clients, p.rss_mib)),
    ];
    if cpu.iter().all(|s| s.points.is_empty()) {
        bail!("{}: no run with mix nodes or gateways", runs.display());
    }
    for (file, labels, series) in [
        (
            "node_cost_cpu.svg",
            Labels {
                title: "CPU per packet against load (node-cost)",
                x: "packets per second at the node",
                y: "CPU per packet ÷ one unwrap",
            },
            &cpu,
        ),
        (
            "node_cost_memory.svg",
            Labels {
                title: "Resident memory against clients (node-cost)",
                x: "clients of the network",
                y: "resident memory per node (MiB)",
            },
            &memory,
        ),
    ] {
        let svg = line_chart_svg(labels, series).map_err(anyhow::Error::msg)?;
        let path = dir.join(file);
        std::fs::write(&path, svg).with_context(|| path.display().to_string())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The `/metrics` page of a node.
async fn scrape(url: &str) -> Result<String> {
    let response = reqwest::get(url).await.with_context(|| url.to_string())?;
    response.text().await.with_context(|| url.to_string())
}

/// One node as the run watches it.
struct Watched {
    name: String,
    role: NodeRole,
    pid: u32,
    metrics: String,
    prefix: &'static str,
    clients: usize,
    /// Memory before any client connected.
    idle_rss_kib: u64,
    start: Option<(ProcessUsage, String)>,
    rss_max_kib: u64,
    queue_max: f64,
    queue_sum: f64,
    queue_samples: u64,
}

impl Watched {
    fn new(node: &LocalNode, clients: usize) -> Result<Self> {
        let (name, prefix) = match node.role {
            NodeRole::Mix => (format!("mix{}", node.index), "mixnode"),
            NodeRole::Gateway => (format!("gateway{}", node.index), "gateway"),
        };
        let pid = node.process.pid();
        Ok(Watched {
            name,
            role: node.role,
            pid,
            metrics: node.metrics_url.clone(),
            prefix,
            clients,
            idle_rss_kib: ProcessUsage::read(pid)?.rss_kib,
            start: None,
            rss_max_kib: 0,
            queue_max: 0.0,
            queue_sum: 0.0,
            queue_samples: 0,
        })
    }

    /// The queue a node holds packets in: a mix node's release queue, a
    /// gateway's mailbox.
    fn queue(&self, page: &str) -> f64 {
        match self.role {
            NodeRole::Mix => metric_in(page, "mixnode_queue_depth"),
            NodeRole::Gateway => metric_in(page, "gateway_mailbox_messages"),
        }
    }

    async fn sample(&mut self) -> Result<()> {
        let p = ProcessUsage::read(self.pid)?;
        let m = scrape(&self.metrics).await?;
        self.rss_max_kib = self.rss_max_kib.max(p.rss_kib);
        let q = self.queue(&m);
        self.queue_max = self.queue_max.max(q);
        self.queue_sum += q;
        self.queue_samples += 1;
        if self.start.is_none() {
            self.start = Some((p, m));
        }
        Ok(())
    }

    async fn finish(&self, secs: f64, unwrap: &UnwrapBaseline) -> Result<NodeCost> {
        let end = ProcessUsage::read(self.pid)?;
        let m = scrape(&self.metrics).await?;
        let (start, m0) = self.start.as_ref().context("never sampled")?;
        let delta = |name: &str| {
            let name = format!("{}_{name}", self.prefix);
            metric_in(&m, &name) - metric_in(m0, &name)
        };
        let cpu = end.cpu.saturating_sub(start.cpu).as_secs_f64();
        let received = delta("packets_received_total");
        let forwarded = delta("packets_forwarded_total");
        let dropped = delta("packets_dropped_total");
        // A gateway's packet events: final hops from layer 3 (each one
        // unwrap) and client packets relayed up to layer 1 (no unwrap).
        let from_clients = match self.role {
            NodeRole::Mix => 0.0,
            NodeRole::Gateway => delta("client_packets_accepted_total"),
        };
        let (stored, taken) = match self.role {
            NodeRole::Mix => (0.0, 0.0),
            NodeRole::Gateway => (
                delta("mailbox_stored_total"),
                delta("mailbox_taken_unstored_total"),
            ),
        };
        let events = received + from_clients;
        let cpu_per_event_us = cpu * 1e6 / events.max(1.0);
        // The unwraps this node had to do, at the baseline's price: a mix
        // node's forward (two multiplications), a gateway's final hops (one).
        let per_unwrap = match self.role {
            NodeRole::Mix => unwrap.micros,
            NodeRole::Gateway => unwrap.final_micros,
        };
        let unwrap_share_us = per_unwrap * received / events.max(1.0);
        // The node's own unwraps, as it timed them (one in sixteen).
        let timed = delta("unwraps_timed_total");
        let own_unwrap_us = delta("unwrap_cpu_seconds_total") * 1e6 / timed.max(1.0);
        let own_unwrap_share_us = own_unwrap_us * received / events.max(1.0);
        let rss_growth = end.rss_kib.saturating_sub(self.idle_rss_kib);
        Ok(NodeCost {
            node: self.name.clone(),
            role: match self.role {
                NodeRole::Mix => "mix",
                NodeRole::Gateway => "gateway",
            },
            packets_per_s: events / secs,
            unwraps_per_s: received / secs,
            forwarded_per_s: forwarded / secs,
            stored_per_s: stored / secs,
            taken_per_s: taken / secs,
            dropped: dropped as u64,
            cpu_core_share: cpu / secs,
            cpu_per_packet_us: cpu_per_event_us,
            unwrap_share_us,
            ratio_to_unwraps: cpu_per_event_us / unwrap_share_us.max(1e-9),
            own_unwrap_us,
            unwraps_timed: timed as u64,
            ratio_to_own_unwraps: cpu_per_event_us / own_unwrap_share_us.max(1e-9),
            switches_per_packet: end.context_switches.saturating_sub(start.context_switches) as f64
                / events.max(1.0),
            rss_mib: end.rss_kib as f64 / 1024.0,
            rss_max_mib: self.rss_max_kib.max(end.rss_kib) as f64 / 1024.0,
            clients: self.clients,
            kib_per_client: (self.clients > 0).then(|| rss_growth as f64 / self.clients as f64),
            queue_mean: self.queue_sum / (self.queue_samples.max(1) as f64),
            queue_max: self.queue_max,
        })
    }
}

/// What one node cost over the measured window.
#[derive(Debug, Serialize)]
struct NodeCost {
    node: String,
    role: &'static str,
    /// Packet events per second: packets from links, plus (gateways)
    /// client packets relayed into layer 1.
    packets_per_s: f64,
    /// Packets unwrapped per second (everything that came from a link).
    unwraps_per_s: f64,
    forwarded_per_s: f64,
    stored_per_s: f64,
    /// Messages pushed and taken by their client before they had to be stored, per second.
    taken_per_s: f64,
    dropped: u64,
    cpu_core_share: f64,
    cpu_per_packet_us: f64,
    /// The unwrap baseline times the share of events that are unwraps.
    unwrap_share_us: f64,
    ratio_to_unwraps: f64,
    /// One unwrap as the node itself timed it during the window (the mean
    /// of `unwraps_timed`, one packet in sixteen).
    own_unwrap_us: f64,
    unwraps_timed: u64,
    /// CPU per event against the node's own unwraps at that price.
    ratio_to_own_unwraps: f64,
    /// Context switches of the node's threads per packet event.
    switches_per_packet: f64,
    rss_mib: f64,
    rss_max_mib: f64,
    clients: usize,
    kib_per_client: Option<f64>,
    queue_mean: f64,
    queue_max: f64,
}

/// The whole run, as `--json` writes it.
#[derive(Debug, Serialize)]
struct RunReport {
    label: String,
    clients: usize,
    messengers: usize,
    rate_scale: f64,
    /// The gateways' group-commit hold (`None`: the gateway's default).
    group_commit_ms: Option<u64>,
    lambda_p: f64,
    lambda_l: f64,
    secs: u64,
    message_interval_ms: u64,
    unwrap_us_before: f64,
    unwrap_us_after: f64,
    unwrap_us: f64,
    /// The final-hop unwrap (a gateway's baseline), before and after the load.
    final_unwrap_us_before: f64,
    final_unwrap_us_after: f64,
    messages_sent: usize,
    messages_received: usize,
    latency_ms_p50: Option<f64>,
    latency_ms_p90: Option<f64>,
    load_cpu_core_share: f64,
    load_rss_mib: f64,
    nodes: Vec<NodeCost>,
}

/// A real message's trip from its sender's `send` to its recipient's `recv`.
struct Trip {
    latency: Duration,
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

/// Creates and connects the clients, `parallel` at a time; client `i` at gateway `i mod G`.
async fn start_clients(
    net: &LocalNet,
    root: &Path,
    cli: &Cli,
) -> Result<Vec<(Arc<Client>, AddressCard)>> {
    let gateways: Vec<_> = net.gateways.iter().map(|g| g.id).collect();
    if gateways.is_empty() {
        bail!("--gateways: at least 1");
    }
    let url = net.directory_url.clone();
    let key = net.directory_key;
    let mut started: BTreeMap<usize, (Arc<Client>, AddressCard)> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    while started.len() < cli.clients {
        while next < cli.clients && tasks.len() < cli.parallel_setup.max(1) {
            let dir = root.join(format!("client{next}"));
            let gateway = gateways
                .get(next % gateways.len())
                .copied()
                .context("no gateway")?;
            let url = url.clone();
            let i = next;
            tasks.spawn(async move {
                let card = fleet::create_client(&dir, &url, key, gateway).await?;
                let client = fleet::connect(&dir, fleet::load_options(30)).await?;
                Ok::<_, fleet::FleetError>((i, client, card))
            });
            next += 1;
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (i, client, card) = done??;
        started.insert(i, (Arc::new(client), card));
        if started.len().is_multiple_of(100) {
            eprintln!("node-cost: {} clients connected", started.len());
        }
    }
    Ok(started.into_values().collect())
}

/// The time between two messages of one messenger.
fn message_interval(cli: &Cli) -> Duration {
    match cli.message_interval_ms {
        0 => Duration::from_secs_f64(1.0 / cli.rate_scale.max(1e-3)),
        ms => Duration::from_millis(ms),
    }
}

/// The messengers' loop: send one message every interval to the next
/// messenger, report each message received with its latency.
fn start_messengers(
    clients: &[(Arc<Client>, AddressCard)],
    cli: &Cli,
    epoch: Instant,
    trips: mpsc::UnboundedSender<Trip>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let m = cli.messengers.min(clients.len());
    if m < 2 {
        return tasks;
    }
    for i in 0..m {
        let Some((client, _)) = clients.get(i) else {
            continue;
        };
        let Some((_, card)) = clients.get((i + 1) % m) else {
            continue;
        };
        let client = client.clone();
        let to = card.address;
        let interval = message_interval(cli);
        let trips = trips.clone();
        let sent = sent.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let at = epoch.elapsed().as_micros();
                        let body = format!("cost {at}").into_bytes();
                        if client.send(&to, body).await.is_ok() {
                            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    message = client.recv() => {
                        let Some(message) = message else { return };
                        let now = epoch.elapsed();
                        let text = String::from_utf8_lossy(&message.bytes);
                        if let Some(at) = text.strip_prefix("cost ").and_then(|t| t.parse::<u64>().ok()) {
                            let latency = now.saturating_sub(Duration::from_micros(at));
                            let _ = trips.send(Trip { latency });
                        }
                    }
                }
            }
        });
    }
    tasks
}

async fn run(cli: Cli) -> Result<()> {
    if cli.clients == 0 {
        bail!("--clients: at least 1");
    }
    let baseline_before = tokio::task::spawn_blocking(|| measure_unwrap(500, 3)).await??;
    eprintln!(
        "node-cost: unwrap baseline {:.1} µs forward, {:.1} µs final hop (thread CPU time)",
        baseline_before.micros, baseline_before.final_micros
    );
    let defaults = NetworkSpec::default();
    let params = topology::NetworkParams::default();
    let spec = NetworkSpec {
        mix_per_layer: cli.mix_per_layer.max(1),
        gateways: cli.gateways.max(1),
        epoch_secs: 3600,
        mean_delay_ms: u64::try_from(params.mean_delay.as_millis()).unwrap_or(50),
        lambda_p: params.lambda_p * cli.rate_scale,
        lambda_l: params.lambda_l * cli.rate_scale,
        lambda_m: params.lambda_m,
        // Nodes look for a new topology every 5 s instead of every 0.5 s.
        refresh_ms: 5000,
        group_commit_ms: cli.group_commit_ms,
        ..defaults
    };
    let (lambda_p, lambda_l) = (spec.lambda_p, spec.lambda_l);
    let net = tokio::task::spawn_blocking(move || LocalNet::start(spec)).await??;
    let gateways = net.gateways.len().max(1);
    let mut watched = Vec::new();
    for node in net.mixnodes.iter().chain(net.gateways.iter()) {
        let clients = match node.role {
            NodeRole::Mix => 0,
            NodeRole::Gateway => (0..cli.clients)
                .filter(|i| i % gateways == node.index)
                .count(),
        };
        watched.push(Watched::new(node, clients)?);
    }
    let root = tempfile::Builder::new()
        .prefix("node-cost-")
        .tempdir()
        .context("temporary folder")?;
    let setup = Instant::now();
    let clients = start_clients(&net, root.path(), &cli).await?;
    eprintln!(
        "node-cost: {} clients connected in {:.1} s",
        clients.len(),
        setup.elapsed().as_secs_f64()
    );
    let m = cli.messengers.min(clients.len());
    for i in 0..m {
        if let (Some((client, _)), Some((_, card))) = (clients.get(i), clients.get((i + 1) % m)) {
            client.add_contact(card).await?;
        }
    }
    let epoch = Instant::now();
    let (trips_tx, mut trips) = mpsc::unbounded_channel();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let messengers = start_messengers(&clients, &cli, epoch, trips_tx, sent.clone());

    tokio::time::sleep(Duration::from_secs(cli.warmup_secs)).await;
    while trips.try_recv().is_ok() {}
    let sent_before = sent.load(std::sync::atomic::Ordering::Relaxed);
    let own_pid = std::process::id();
    let load_start = ProcessUsage::read(own_pid)?;
    for w in &mut watched {
        w.sample().await?;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while started.elapsed() < Duration::from_secs(cli.secs) {
        tick.tick().await;
        for w in &mut watched {
            w.sample().await?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let load_end = ProcessUsage::read(own_pid)?;
    let mut latencies = Vec::new();
    while let Ok(t) = trips.try_recv() {
        latencies.push(t.latency.as_secs_f64() * 1e3);
    }
    let messages_sent = sent.load(std::sync::atomic::Ordering::Relaxed) - sent_before;
    let mut nodes = Vec::new();
    for w in &watched {
        nodes.push(w.finish(secs, &baseline_before).await?);
    }
    drop(messengers);
    // Let the aborted messengers drop their handles.
    tokio::task::yield_now().await;
    let mut stopping = JoinSet::new();
    for (client, _) in clients {
        let Ok(client) = Arc::try_unwrap(client) else {
            continue;
        };
        stopping.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
        });
    }
    while stopping.join_next().await.is_some() {}
    let baseline_after = tokio::task::spawn_blocking(|| measure_unwrap(500, 3)).await??;
    latencies.sort_by(f64::total_cmp);
    let report = RunReport {
        label: cli.label.clone(),
        clients: cli.clients,
        messengers: m,
        rate_scale: cli.rate_scale,
        group_commit_ms: cli.group_commit_ms,
        lambda_p,
        lambda_l,
        secs: cli.secs,
        message_interval_ms: u64::try_from(message_interval(&cli).as_millis()).unwrap_or(u64::MAX),
        unwrap_us_before: baseline_before.micros,
        unwrap_us_after: baseline_after.micros,
        unwrap_us: baseline_before.micros,
        final_unwrap_us_before: baseline_before.final_micros,
        final_unwrap_us_after: baseline_after.final_micros,
        messages_sent,
        messages_received: latencies.len(),
        latency_ms_p50: percentile(&latencies, 0.5),
        latency_ms_p90: percentile(&latencies, 0.9),
        load_cpu_core_share: load_end.cpu.saturating_sub(load_start.cpu).as_secs_f64() / secs,
        load_rss_mib: load_end.rss_kib as f64 / 1024.0,
        nodes,
    };
    print_table(&report);
    if let Some(path) = &cli.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}", path.display()))?;
        writeln!(file, "{}", serde_json::to_string(&report)?)
            .with_context(|| format!("{}", path.display()))?;
    }
    drop(net);
    Ok(())
}

fn print_table(r: &RunReport) {
    println!(
        "{} clients (λ_P {:.2}/s, λ_L {:.2}/s each), {} messengers (a message every {} ms), {} s measured",
        r.clients, r.lambda_p, r.lambda_l, r.messengers, r.message_interval_ms, r.secs
    );
    println!(
        "unwrap baseline (protocol::sphinx, thread CPU): {:.1} µs before the load, {:.1} µs after; at a final hop (gateways) {:.1} µs and {:.1} µs",
        r.unwrap_us_before, r.unwrap_us_after, r.final_unwrap_us_before, r.final_unwrap_us_after
    );
    println!();
    println!(
        "| node | packets/s | unwraps/s | stored/s | taken unstored/s | CPU % | CPU µs/packet | unwrap share µs | ratio | own unwrap µs | ratio to own | switches/packet | RSS MiB | KiB/client | queue mean / max | dropped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in &r.nodes {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.1} | {} | {:.1} / {:.0} | {} |",
            n.node,
            n.packets_per_s,
            n.unwraps_per_s,
            n.stored_per_s,
            n.taken_per_s,
            n.cpu_core_share * 100.0,
            n.cpu_per_packet_us,
            n.unwrap_share_us,
            n.ratio_to_unwraps,
            n.own_unwrap_us,
            n.ratio_to_own_unwraps,
            n.switches_per_packet,
            n.rss_mib,
            n.kib_per_client
                .map(|k| format!("{k:.0}"))
                .unwrap_or_else(|| "—".into()),
            n.queue_mean,
            n.queue_max,
            n.dropped,
        );
    }
    println!();
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{v:.0} ms"))
            .unwrap_or_else(|| "—".into())
    };
    println!(
        "real messages: {} sent, {} received in the window; latency p50 {}, p90 {}",
        r.messages_sent,
        r.messages_received,
        ms(r.latency_ms_p50),
        ms(r.latency_ms_p90)
    );
    println!(
        "the clients' process: {:.1} % of a core, {:.1} MiB resident",
        r.load_cpu_core_share * 100.0,
        r.load_rss_mib
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_role_point_is_the_mean_of_that_roles_nodes() {
        let run: serde_json::Value = serde_json::from_str(
            r#"{"clients": 30, "nodes": [
                {"role": "mix", "packets_per_s": 700.0, "ratio_to_unwraps": 1.5, "rss_mib": 16.0},
                {"role": "mix", "packets_per_s": 720.0, "ratio_to_unwraps": 1.7, "rss_mib": 18.0},
                {"role": "gateway", "packets_per_s": 540.0, "ratio_to_unwraps": 2.9, "rss_mib": 24.0}
            ]}"#,
        )
        .unwrap();
        let mix = role_point(&run, "mix").unwrap();
        assert_eq!(mix.clients, 30.0);
        assert!((mix.packets_per_s - 710.0).abs() < 1e-9);
        assert!((mix.ratio_to_unwraps - 1.6).abs() < 1e-9);
        assert!((mix.rss_mib - 17.0).abs() < 1e-9);
        assert_eq!(role_point(&run, "gateway").unwrap().rss_mib, 24.0);
        assert_eq!(role_point(&run, "directory"), None);
        // A node without a figure makes no point.
        let broken: serde_json::Value =
            serde_json::from_str(r#"{"clients": 3, "nodes": [{"role": "mix"}]}"#).unwrap();
        assert_eq!(role_point(&broken, "mix"), None);
    }

    #[test]
    fn plotting_writes_both_charts_and_refuses_a_file_without_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs.jsonl");
        std::fs::write(
            &runs,
            concat!(
                r#"{"clients": 10, "nodes": [{"role": "mix", "packets_per_s": 250.0, "ratio_to_unwraps": 2.1, "rss_mib": 16.0}, {"role": "gateway", "packets_per_s": 180.0, "ratio_to_unwraps": 4.7, "rss_mib": 20.0}]}"#,
                "\n",
                r#"{"clients": 100, "nodes": [{"role": "mix", "packets_per_s": 2400.0, "ratio_to_unwraps": 1.35, "rss_mib": 21.0}, {"role": "gateway", "packets_per_s": 1800.0, "ratio_to_unwraps": 1.8, "rss_mib": 38.0}]}"#,
                "\n"
            ),
        )
        .unwrap();
        plot(&runs, dir.path()).unwrap();
        let cpu = std::fs::read_to_string(dir.path().join("node_cost_cpu.svg")).unwrap();
        assert!(cpu.starts_with("<svg") && cpu.contains("mix node"));
        let memory = std::fs::read_to_string(dir.path().join("node_cost_memory.svg")).unwrap();
        assert!(memory.contains("clients of the network"));
        std::fs::write(&runs, "{\"clients\": 1, \"nodes\": []}\n").unwrap();
        assert!(plot(&runs, dir.path()).is_err());
        std::fs::write(&runs, "not json\n").unwrap();
        assert!(plot(&runs, dir.path()).is_err());
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&sorted, 0.5), Some(3.0));
        assert_eq!(percentile(&sorted, 0.9), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
