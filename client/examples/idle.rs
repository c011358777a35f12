//! CPU and bandwidth of an idle client (cover traffic only) at the default
//! rates, against an in-memory gateway.
//!
//! `cargo run -p client --example idle -- [seconds]` (default 20). Reads the
//! process's CPU time from /proc/self/stat (Linux).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use client::shell::memory::MemoryGateway;
use client::shell::{ClientParts, ShellStats};
use client::{Client, ClientOptions};
use protocol::epoch::Epoch;
use protocol::{IdentityKeyPair, SphinxKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;
use topology::{NetworkParams, NodeEntry, Topology};

fn entry(rng: &mut ChaCha20Rng) -> NodeEntry {
    NodeEntry {
        id: IdentityKeyPair::generate(rng).node_id(),
        address: SocketAddr::from(([127, 0, 0, 1], 9)),
        client_address: None,
        sphinx_key: SphinxKeyPair::generate(rng).public(),
        region: None,
        score: 1.0,
    }
}

/// User + system CPU time of this process, from /proc/self/stat.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    Some(Duration::from_millis((utime + stime) * 10))
}

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let gateway = entry(&mut rng);
    let topology = Arc::new(Topology {
        epoch: Epoch(0),
        serial: 1,
        params: NetworkParams::default(),
        layers: (0..3).map(|_| vec![entry(&mut rng)]).collect(),
        gateways: vec![gateway.clone()],
        authorities: None,
    });
    let (mut memory, connector) = MemoryGateway::new(1024);
    let (bytes, packets) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (b, p) = (bytes.clone(), packets.clone());
    tokio::spawn(async move {
        while let Some((_, packet)) = memory.next_packet().await {
            b.fetch_add(packet.len() as u64, Ordering::Relaxed);
            p.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (_publish, watch) = watch::channel(topology.clone());
    let client = Client::start(ClientParts {
        keys: SphinxKeyPair::generate(&mut rng),
        gateway: gateway.id,
        topology: watch,
        connector,
        options: ClientOptions::default(),
        seed: [9; 32],
        sessions: client_core::sessions::SessionBook::generate(&mut rng),
        book_file: None,
        journal: None,
        folder_lock: None,
    });
    client.wait_connected().await.unwrap_or_default();
    let cpu_before = cpu_time().unwrap_or_default();
    let (bytes_before, packets_before) = (
        bytes.load(Ordering::Relaxed),
        packets.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let sent = bytes.load(Ordering::Relaxed) - bytes_before;
    let count = packets.load(Ordering::Relaxed) - packets_before;
    let secs = seconds as f64;
    println!(
        "idle client, λ_P = {} /s, λ_L = {} /s, {seconds} s",
        topology.params.lambda_p, topology.params.lambda_l
    );
    println!(
        "packets to the gateway: {count} ({:.1} /s)",
        count as f64 / secs
    );
    println!(
        "bytes to the gateway: {sent} ({:.1} KiB/s, {:.0} bit/s)",
        sent as f64 / secs / 1024.0,
        sent as f64 * 8.0 / secs
    );
    println!(
        "CPU time: {:.3} s ({:.2} % of one core)",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / secs * 100.0
    );
    println!("resident memory: {} KiB", resident_kib().unwrap_or(0));
    println!(
        "shell counters: packets_sent = {}",
        ShellStats::get(&client.stats().packets_sent)
    );
    client.shutdown().await;
}
