//! Load on one mix node over QUIC, beside the raw Sphinx ceiling.
//!
//! Starts a directory and three mix nodes (one per layer) as real processes,
//! and drives the layer-1 node from an in-process stand-in gateway: packets
//! over the route [node, gateway]. Prints, from the same run on the same
//! machine:
//!
//! - the raw unwrap rate of the node's Sphinx (`protocol::sphinx`, the
//!   node's default codec) on all cores (the ceiling);
//! - the node's forwarding rate when flooded, and its ratio to the ceiling;
//! - the latency the node adds beyond the delay each packet asked for
//!   (p50, p99), with packets paced at 70 % of the ceiling and at 70 % of
//!   the node's measured rate;
//! - the node's CPU per forwarded packet (every thread, kernel included,
//!   from `/proc`) and its context switches per packet, with packets paced
//!   at 10 % and 30 % of the ceiling, beside one unwrap timed on one thread
//!   in the same run.
//!
//! Run with release binaries beside it:
//! `cargo build --release -p mixnode -p topology --bins && cargo bench -p localnet --bench node_load`.
//! The load generator shares the machine with the node, so on a small
//! machine the node gets fewer cores than the ceiling counts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// A benchmark reads the real clock.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use localnet::baseline::measure_unwrap;
use localnet::probe::{ProbeGateway, layers, wait_until_nodes_see};
use localnet::usage::ProcessUsage;
use localnet::{LocalNet, NetworkSpec};
use protocol::frame::Frame;
use protocol::keys::SphinxKeyPair;
use protocol::packet::{DelaySampler, RouteHop, build_packet};
use protocol::sphinx::{UnwrappedPacket, unwrap_packet};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sphinx_packet::route::DestinationAddressBytes;

const FLOOD: usize = 20_000;
const PACED: usize = 8_000;
/// Packets of each run that measures the node's CPU per packet.
const COSTED: usize = 10_000;

struct Prepared {
    packets: Vec<Vec<u8>>,
    /// First 32 bytes of the forwarded packet → (index, requested delay).
    expected: HashMap<[u8; 32], (usize, Duration)>,
}

fn prepare(
    route: &[RouteHop],
    key: &SphinxKeyPair,
    n: usize,
    mean_delay: Duration,
    seed: u64,
) -> Prepared {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let route = route.to_vec();
    let parts: Vec<_> = (0..threads)
        .map(|t| {
            let route = route.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                let mut rng = ChaCha20Rng::seed_from_u64(seed * 1000 + t as u64);
                let sampler = DelaySampler::new(mean_delay);
                let frame = Frame::Ack.encode().unwrap();
                let client = DestinationAddressBytes::from_bytes([7; 32]);
                let mut out = Vec::new();
                for _ in (t..n).step_by(threads) {
                    let delay = sampler.sample(&mut rng);
                    let p = build_packet(
                        &mut rng,
                        &route,
                        &[delay, Duration::ZERO],
                        client,
                        [0; 16],
                        &frame,
                    )
                    .unwrap()
                    .bytes;
                    let UnwrappedPacket::Forward {
                        packet: next_hop_packet,
                        ..
                    } = unwrap_packet(key.secret(), &p).unwrap()
                    else {
                        panic!("two-hop route")
                    };
                    let mut alpha = [0u8; 32];
                    alpha.copy_from_slice(&next_hop_packet[..32]);
                    out.push((p, alpha, delay));
                }
                out
            })
        })
        .collect();
    let mut prepared = Prepared {
        packets: Vec::new(),
        expected: HashMap::new(),
    };
    for part in parts {
        for (p, alpha, delay) in part.join().unwrap() {
            prepared
                .expected
                .insert(alpha, (prepared.packets.len(), delay));
            prepared.packets.push(p);
        }
    }
    prepared
}

/// Raw unwraps per second on all cores, with the node's own Sphinx.
fn raw_ceiling(packets: &[Vec<u8>], key: &SphinxKeyPair) -> f64 {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let packets = Arc::new(packets.to_vec());
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let packets = packets.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                for p in packets.iter().skip(t).step_by(threads) {
                    if unwrap_packet(key.secret(), p).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let done: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    done as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Run {
    received: usize,
    rate: f64,
    added_ms: Vec<f64>,
}

/// Sends `prepared` at `rate` packets/s (or as fast as possible) and collects what comes back.
async fn drive(
    gw: &mut ProbeGateway,
    topology: &topology::Topology,
    target: RouteHop,
    prepared: &Prepared,
    rate: Option<f64>,
) -> Run {
    let n = prepared.packets.len();
    let mut sent_at = vec![None::<Instant>; n];
    let start = Instant::now();
    let mut received = 0usize;
    let mut first_rx = None;
    let mut last_rx = start;
    let mut added_ms = Vec::new();
    let mut next = 0usize;
    let deadline_idle = Duration::from_secs(3);
    loop {
        // Send what is due.
        let due = match rate {
            None => n,
            Some(r) => ((start.elapsed().as_secs_f64() * r) as usize + 1).min(n),
        };
        while next < due {
            sent_at[next] = Some(Instant::now());
            let _ = gw.endpoint.send(
                transport::PeerId(target.id.0),
                topology.entry(&target.id).unwrap().address,
                prepared.packets[next].clone(),
            );
            next += 1;
        }
        let wait = if next < n {
            Duration::from_micros(500)
        } else {
            deadline_idle
        };
        match tokio::time::timeout(wait, gw.incoming.recv()).await {
            Ok(Some(r)) => {
                let now = Instant::now();
                first_rx.get_or_insert(now);
                last_rx = now;
                received += 1;
                let mut alpha = [0u8; 32];
                alpha.copy_from_slice(&r.packet[..32]);
                if let Some((i, delay)) = prepared.expected.get(&alpha)
                    && let Some(t) = sent_at[*i]
                {
                    added_ms
                        .push((now.duration_since(t).as_secs_f64() - delay.as_secs_f64()) * 1e3);
                }
                while let Ok(r) = gw.incoming.try_recv() {
                    let now = Instant::now();
                    last_rx = now;
                    received += 1;
                    let mut alpha = [0u8; 32];
                    alpha.copy_from_slice(&r.packet[..32]);
                    if let Some((i, delay)) = prepared.expected.get(&alpha)
                        && let Some(t) = sent_at[*i]
                    {
                        added_ms.push(
                            (now.duration_since(t).as_secs_f64() - delay.as_secs_f64()) * 1e3,
                        );
                    }
                }
                if received >= n {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) if next >= n => break,
            Err(_) => {}
        }
    }
    let span = last_rx
        .duration_since(first_rx.unwrap_or(start))
        .as_secs_f64()
        .max(1e-9);
    added_ms.sort_by(|a, b| a.total_cmp(b));
    Run {
        received,
        rate: received as f64 / span,
        added_ms,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let net = LocalNet::start(NetworkSpec {
            mix_per_layer: 1,
            lambda_m: 0.0,
            ..NetworkSpec::default()
        })
        .unwrap();
        let mut gw = ProbeGateway::join(&net.directory_url, net.directory_key, 77).await;
        let topology = gw.topology().await;
        wait_until_nodes_see(&net, 4).await;
        let target = layers(&topology)[0][0];
        let node = net.mixnodes.iter().find(|m| m.id == target.id).unwrap();
        let key_file = node.dir.join("sphinx").join(format!("{}.key", topology.epoch.0));
        let secret: [u8; 32] = std::fs::read(&key_file).unwrap().try_into().unwrap();
        let key = SphinxKeyPair::from_secret_bytes(secret);
        let route = [target, gw.hop()];

        eprintln!("preparing {} packets…", FLOOD + 2 * PACED);
        let flood = prepare(&route, &key, FLOOD, Duration::ZERO, 1);
        let paced_ceiling = prepare(&route, &key, PACED, Duration::from_millis(5), 2);
        let paced_node = prepare(&route, &key, PACED, Duration::from_millis(5), 3);
        let costed = [
            prepare(&route, &key, COSTED, Duration::from_millis(5), 5),
            prepare(&route, &key, COSTED, Duration::from_millis(5), 6),
        ];
        let ceiling = raw_ceiling(&flood.packets, &key);
        let unwrap_before = measure_unwrap(200, 5).unwrap();

        // Warm the link up.
        let warm = prepare(&route, &key, 100, Duration::ZERO, 4);
        let _ = drive(&mut gw, &topology, target, &warm, None).await;

        let flooded = drive(&mut gw, &topology, target, &flood, None).await;
        let at_ceiling = drive(&mut gw, &topology, target, &paced_ceiling, Some(0.7 * ceiling)).await;
        let at_node = drive(&mut gw, &topology, target, &paced_node, Some(0.7 * flooded.rate)).await;
        let mut costs = Vec::new();
        for (share, prepared) in [0.1, 0.3].into_iter().zip(&costed) {
            eprintln!(
                "costing node {} at {:.0} % of the ceiling…",
                node.process.pid(),
                share * 100.0
            );
            let before = ProcessUsage::read(node.process.pid()).unwrap();
            let run = drive(&mut gw, &topology, target, prepared, Some(share * ceiling)).await;
            let after = ProcessUsage::read(node.process.pid()).unwrap();
            costs.push((share, run, before, after));
        }
        let unwrap_after = measure_unwrap(200, 5).unwrap();
        let unwrap_us = unwrap_before.micros.min(unwrap_after.micros);

        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        println!();
        println!("| measurement (same machine, same run, {cores} cores) | value |");
        println!("|---|---|");
        println!("| raw unwraps/s (protocol::sphinx), all cores (ceiling) | {ceiling:.0} |");
        println!(
            "| node forwarding rate when flooded ({} of {} packets back) | {:.0} pkt/s = {:.2} of ceiling |",
            flooded.received, FLOOD, flooded.rate, flooded.rate / ceiling
        );
        for (label, run, rate) in [
            ("70 % of ceiling", &at_ceiling, 0.7 * ceiling),
            ("70 % of node rate", &at_node, 0.7 * flooded.rate),
        ] {
            println!(
                "| added latency at {label} ({rate:.0} pkt/s; {} of {} back) | p50 {:.3} ms, p99 {:.3} ms |",
                run.received,
                PACED,
                percentile(&run.added_ms, 0.5),
                percentile(&run.added_ms, 0.99)
            );
        }
        println!(
            "| one unwrap on one thread (thread CPU, best of before and after the load) | {unwrap_us:.1} µs ({:.1} / {:.1}) |",
            unwrap_before.micros, unwrap_after.micros
        );
        for (share, run, before, after) in &costs {
            let packets = run.received.max(1) as f64;
            let cpu_us = after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6 / packets;
            let switches =
                after.context_switches.saturating_sub(before.context_switches) as f64 / packets;
            println!(
                "| node CPU per forwarded packet at {:.0} % of ceiling ({:.0} pkt/s; {} of {} back) | {cpu_us:.1} µs = {:.2} × one unwrap; {switches:.2} context switches per packet |",
                share * 100.0,
                share * ceiling,
                run.received,
                COSTED,
                cpu_us / unwrap_us
            );
        }
    });
}
