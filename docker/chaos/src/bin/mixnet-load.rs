//! `mixnet-load`: several real clients send numbered messages to each other
//! through the network and report every step.
//!
//! Client `i` keeps its mailbox at gateway `i mod G` and writes to client
//! `i + 1` (in a ring), so every message crosses from one gateway to the
//! other through three mix layers. Each step is one JSON line on stdout with
//! `--json` (what `mixnet-chaos` reads), or a short line for people. With
//! `--control`, stdin takes commands: `offline I` (client I stops sending,
//! waits for its acks, leaves its gateway: its mail waits there), `online I`,
//! `stop`. At the end the ledger says whether every message arrived exactly
//! once; the exit status is 1 when one did not.

// The load lives on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use chaos::{Event, Ledger};
use clap::Parser;
use client::{AddressCard, Client};
use directory::DirectoryClient;
use localnet::fleet;
use protocol::NodeId;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

/// Clients that send numbered messages to each other through the mixnet.
#[derive(Parser, Clone)]
#[command(version)]
struct Cli {
    /// Base URL of the directory.
    #[arg(long)]
    directory: String,
    /// The directory's public key (base58), or a file that holds it.
    #[arg(long)]
    directory_key: String,
    /// Folder for the clients' state (a fresh subfolder per run).
    #[arg(long, default_value = "/var/lib/mixnet/load")]
    dir: PathBuf,
    /// Clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Gateways to spread the clients over (waits until the topology has them).
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Milliseconds between two messages of one client.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Messages each client sends before the load stops (0: until `stop`).
    #[arg(long, default_value_t = 5)]
    messages: u64,
    /// Seconds to wait, once sending stopped, for the last acks and deliveries.
    #[arg(long, default_value_t = 90)]
    drain_secs: u64,
    /// Times a fragment is sent again before its message fails.
    #[arg(long, default_value_t = 30)]
    retransmissions: u32,
    /// One JSON event per line on stdout.
    #[arg(long)]
    json: bool,
    /// Read `offline I`, `online I` and `stop` on stdin.
    #[arg(long)]
    control: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            let result = rt.block_on(run(cli));
            // The blocking read of stdin would hold an orderly shutdown forever.
            rt.shutdown_timeout(Duration::from_millis(200));
            result
        });
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("mixnet-load: {e:#}");
            std::process::exit(2);
        }
    }
}

/// The key given on the command line, or read from the file it names.
fn directory_key(arg: &str) -> Result<NodeId> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) => arg.to_string(),
    };
    NodeId::from_base58(text.trim())
        .with_context(|| format!("--directory-key {arg}: not a key, nor a file holding one"))
}

/// The gateways accepting clients, in a stable order, once there are `want`.
async fn gateways(directory: &DirectoryClient, want: usize) -> Result<Vec<(NodeId, String)>> {
    let started = now_ms();
    loop {
        if let Ok(t) = directory.refresh().await {
            let mut found: Vec<(NodeId, String)> = t
                .gateways
                .iter()
                .filter_map(|g| Some((g.id, g.client_address?.to_string())))
                .collect();
            found.sort_by(|a, b| a.1.cmp(&b.1));
            if found.len() >= want {
                return Ok(found);
            }
        }
        if now_ms() - started > 120_000 {
            bail!("the topology did not list {want} gateways within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the data folder of a client registered at `gateway`; returns its card.
async fn init_client(dir: &Path, cli: &Cli, key: NodeId, gateway: NodeId) -> Result<AddressCard> {
    Ok(fleet::create_client(dir, &cli.directory, key, gateway).await?)
}

async fn connect(dir: &Path, cli: &Cli) -> Result<Client> {
    Ok(fleet::connect(dir, fleet::load_options(cli.retransmissions)).await?)
}

/// What the main task tells one client.
#[derive(Debug)]
enum Order {
    Offline,
    Online,
    StopSending,
    Exit,
}

/// One client of the load: sends on a timer, reports deliveries, obeys orders.
struct Peer {
    index: usize,
    to: usize,
    dir: PathBuf,
    client: Option<Client>,
    next_seq: u64,
    pending: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<Event>,
}

impl Peer {
    async fn send_next(&mut self, to: &protocol::ClientAddress) {
        let Some(client) = &self.client else { return };
        let seq = self.next_seq;
        self.next_seq += 1;
        let body = format!("load {} {} {seq}", self.index, self.to).into_bytes();
        let _ = self.events.send(Event::Sent {
            from: self.index,
            to: self.to,
            seq,
            at: now_ms(),
        });
        let from = self.index;
        match client.send(to, body).await {
            Ok(outgoing) => {
                self.pending.fetch_add(1, Ordering::SeqCst);
                let pending = self.pending.clone();
                let events = self.events.clone();
                tokio::spawn(async move {
                    let event = match outgoing.delivered().await {
                        Ok(()) => Event::Acked {
                            from,
                            seq,
                            at: now_ms(),
                        },
                        Err(_) => Event::Failed {
                            from,
                            seq,
                            at: now_ms(),
                        },
                    };
                    let _ = events.send(event);
                    pending.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(_) => {
                let _ = self.events.send(Event::Failed {
                    from,
                    seq,
                    at: now_ms(),
                });
            }
        }
    }

    fn report(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut words = text.split(' ').skip(1).map(|w| w.parse::<u64>().ok());
        if let (Some(Some(from)), Some(Some(_)), Some(Some(seq))) =
            (words.next(), words.next(), words.next())
        {
            let _ = self.events.send(Event::Received {
                from: usize::try_from(from).unwrap_or(usize::MAX),
                to: self.index,
                seq,
                at: now_ms(),
            });
        }
    }

    /// Stops sending, waits (60 s at most) for the acks of what was sent, leaves.
    async fn go_offline(&mut self) {
        let waited = now_ms();
        while self.pending.load(Ordering::SeqCst) > 0 && now_ms() - waited < 60_000 {
            // Keep taking deliveries meanwhile.
            if let Some(client) = &self.client
                && let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_millis(100), client.recv()).await
            {
                self.report(&m.bytes);
            }
        }
        if let Some(client) = self.client.take() {
            client.shutdown().await;
        }
        let _ = self.events.send(Event::Offline {
            client: self.index,
            at: now_ms(),
        });
    }

    async fn run(
        mut self,
        cli: Cli,
        to: protocol::ClientAddress,
        mut orders: mpsc::UnboundedReceiver<Order>,
    ) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(cli.interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sending = true;
        loop {
            let recv = async {
                match &self.client {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick(), if sending && self.client.is_some() => {
                    if cli.messages > 0 && self.next_seq >= cli.messages {
                        sending = false;
                    } else {
                        self.send_next(&to).await;
                    }
                }
                message = recv => match message {
                    Some(m) => self.report(&m.bytes),
                    None => bail!("client {} stopped", self.index),
                },
                order = orders.recv() => match order {
                    Some(Order::Offline) => {
                        sending = false;
                        self.go_offline().await;
                    }
                    Some(Order::Online) => {
                        if self.client.is_none() {
                            self.client = Some(connect(&self.dir, &cli).await?);
                            let _ = self.events.send(Event::Online { client: self.index, at: now_ms() });
                        }
                        sending = true;
                    }
                    Some(Order::StopSending) => sending = false,
                    Some(Order::Exit) | None => break,
                },
            }
        }
        if let Some(client) = self.client.take() {
            client.shutdown().await;
        }
        Ok(())
    }
}

/// Prints an event as the run asked.
fn print(cli: &Cli, event: &Event, ledger: &Ledger) {
    if cli.json {
        println!("{}", event.to_line());
        return;
    }
    match event {
        Event::Ready { gateways, .. } => {
            for (i, g) in gateways.iter().enumerate() {
                println!("client{i}   at the gateway {g}");
            }
        }
        Event::Received { from, to, seq, .. } => {
            let v = ledger.verdict(None);
            println!(
                "client{from} → client{to}   message {seq} delivered   ({} of {} sent so far)",
                v.delivered, v.sent
            );
        }
        Event::Failed { from, seq, .. } => println!("client{from}   message {seq} given up"),
        Event::Offline { client, .. } => println!("client{client}   offline"),
        Event::Online { client, .. } => println!("client{client}   online"),
        _ => {}
    }
}

async fn run(cli: Cli) -> Result<bool> {
    if cli.clients < 2 {
        bail!("--clients: at least 2");
    }
    let key = directory_key(&cli.directory_key)?;
    let directory = DirectoryClient::new(&cli.directory, key, None)?;
    let gateways = gateways(&directory, cli.gateways.max(1)).await?;
    let root = cli.dir.join(format!("run-{}", now_ms()));
    let mut cards = Vec::new();
    let mut at = Vec::new();
    for i in 0..cli.clients {
        let (id, address) = gateways
            .get(i % cli.gateways.max(1))
            .context("no gateway")?
            .clone();
        cards.push(init_client(&root.join(format!("client{i}")), &cli, key, id).await?);
        at.push(address);
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut orders = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut pendings = Vec::new();
    for i in 0..cli.clients {
        let dir = root.join(format!("client{i}"));
        let client = connect(&dir, &cli).await?;
        let to = (i + 1) % cli.clients;
        let card = cards.get(to).context("no card")?;
        client.add_contact(card).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        orders.push(tx);
        let pending = Arc::new(AtomicUsize::new(0));
        pendings.push(pending.clone());
        let peer = Peer {
            index: i,
            to,
            dir,
            client: Some(client),
            next_seq: 0,
            pending,
            events: events_tx.clone(),
        };
        let address = card.address;
        let cli = cli.clone();
        tasks.spawn(async move { peer.run(cli, address, rx).await });
    }
    drop(events_tx);
    let mut ledger = Ledger::default();
    let ready = Event::Ready {
        gateways: at,
        at: now_ms(),
    };
    print(&cli, &ready, &ledger);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = cli.control;
    let mut stopping_since: Option<u64> = None;
    let target = cli.messages * u64::try_from(cli.clients).unwrap_or(0);
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                ledger.apply(&event);
                print(&cli, &event, &ledger);
            }
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    let mut words = line.split_whitespace();
                    let command = words.next().unwrap_or_default();
                    let who = words.next().and_then(|w| w.parse::<usize>().ok());
                    match (command, who.and_then(|i| orders.get(i))) {
                        ("offline", Some(o)) => { let _ = o.send(Order::Offline); }
                        ("online", Some(o)) => { let _ = o.send(Order::Online); }
                        ("stop", _) => {
                            for o in &orders { let _ = o.send(Order::StopSending); }
                            stopping_since.get_or_insert(now_ms());
                        }
                        _ => eprintln!("mixnet-load: unknown command: {line}"),
                    }
                }
                _ => stdin_open = false,
            },
            Some(done) = tasks.join_next() => {
                if let Ok(Err(e)) = done {
                    eprintln!("mixnet-load: {e:#}");
                }
            }
            _ = check.tick() => {
                let v = ledger.verdict(None);
                if target > 0 && u64::try_from(v.sent).unwrap_or(0) >= target {
                    stopping_since.get_or_insert(now_ms());
                }
                if let Some(since) = stopping_since {
                    let idle = pendings.iter().all(|p| p.load(Ordering::SeqCst) == 0);
                    if (idle && ledger.outstanding() == 0) || now_ms() - since > cli.drain_secs * 1000 {
                        break;
                    }
                }
            }
        }
    }
    for o in &orders {
        let _ = o.send(Order::Exit);
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), tasks.join_next()).await {}
    // Reports that arrived while the clients stopped.
    while let Ok(event) = events.try_recv() {
        ledger.apply(&event);
        print(&cli, &event, &ledger);
    }
    let done = Event::Done { at: now_ms() };
    print(&cli, &done, &ledger);
    let v = ledger.verdict(None);
    let broken = v.violations(None);
    eprintln!(
        "sent {}, acknowledged {}, delivered {}, duplicated {}, lost {}, median latency {} ms",
        v.sent,
        v.acked,
        v.delivered,
        v.duplicated,
        v.lost,
        v.median_latency_ms.unwrap_or(0)
    );
    for b in &broken {
        eprintln!("mixnet-load: {b}");
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(broken.is_empty())
}
