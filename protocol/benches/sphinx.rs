//! Our Sphinx beside `sphinx-packet` 0.8, in the same run, on one core.
//!
//! - `unwrap`: one hop at the first mix node, on the same 256 packets, the
//!   way a node does it: parse, shared secret, header MAC, replay tag, then
//!   the rest (routing information, blinding, payload) and the next packet's
//!   bytes. The reference path is the node's `SphinxCodec`: `from_bytes`,
//!   `compute_expanded_shared_secret`, `ensure_header_integrity`,
//!   `process_with_expanded_secret`, `to_bytes`.
//! - `create`: what a client does for every data packet: a SURB-ack over a
//!   3-hop + gateway route back, and a packet over a 3-hop + exit route
//!   carrying a 2048-byte frame. Ours is measured three times: decoding the
//!   route's public keys for every packet (as from bare
//!   `x25519_dalek::PublicKey`s), with the route decoded once (`NodePublicKey`s
//!   kept with the topology), and with each key's fixed-base table
//!   precomputed (`NodePublicKey::precompute`).
//!
//! Time is the benchmark thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock time: on a machine shared
//! with other work, time spent descheduled is not the code's cost. Run with
//! `SPHINX_BENCH_WALL=1` for wall-clock time instead. After criterion's
//! report it prints a table of the means and the ratios.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use protocol::sphinx::{
    self, Destination, HeaderVersion, NodePublicKey, PacketGeometry, PacketRandomness,
    ReceivedPacket, RouteNode, UnwrappedPacket,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{self, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::version::Version;
use sphinx_packet::{ProcessedPacketData, SURB, SURBMaterial, SphinxPacket, SphinxPacketBuilder};
use x25519_dalek::{PublicKey, StaticSecret};

const POOL: usize = 256;
const PAYLOAD_SIZE: usize = 2065;
const FRAME_SIZE: usize = 2048;
const HOPS: usize = 4;

struct Fixture {
    key: StaticSecret,
    packets: Vec<Vec<u8>>,
    their_route: Vec<Node>,
    public_keys: Vec<PublicKey>,
    our_route: Vec<RouteNode>,
    delays: Vec<Duration>,
}

fn bytes32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let secrets: Vec<StaticSecret> = (0..HOPS)
        .map(|_| StaticSecret::from(bytes32(&mut rng)))
        .collect();
    let addresses: Vec<[u8; 32]> = (0..HOPS).map(|_| bytes32(&mut rng)).collect();
    let public_keys: Vec<PublicKey> = secrets.iter().map(PublicKey::from).collect();
    let their_route: Vec<Node> = addresses
        .iter()
        .zip(&public_keys)
        .map(|(a, k)| Node::new(NodeAddressBytes::from_bytes(*a), *k))
        .collect();
    let our_route: Vec<RouteNode> = addresses
        .iter()
        .zip(&public_keys)
        .map(|(a, k)| RouteNode {
            address: *a,
            key: NodePublicKey::try_from(k).unwrap(),
        })
        .collect();
    let delays = vec![Duration::from_millis(50); HOPS];
    let destination = Destination {
        address: bytes32(&mut rng),
        surb_id: [0; 16],
    };
    let packets = (0..POOL)
        .map(|_| {
            sphinx::build_packet_with_rng(
                &mut rng,
                &our_route,
                &delays,
                &destination,
                &[7u8; FRAME_SIZE],
                format(),
            )
            .unwrap()
        })
        .collect();
    Fixture {
        key: secrets.into_iter().next().unwrap(),
        packets,
        their_route,
        public_keys,
        our_route,
        delays,
    }
}

fn format() -> PacketGeometry {
    PacketGeometry {
        version: HeaderVersion::SINGLE_SEED_SURB,
        payload_size: PAYLOAD_SIZE,
    }
}

fn reference_unwrap(key: &StaticSecret, bytes: &[u8]) -> ([u8; 32], Vec<u8>) {
    let packet = SphinxPacket::from_bytes(bytes).unwrap();
    let secret = packet.header.compute_expanded_shared_secret(key);
    packet.header.ensure_header_integrity(&secret).unwrap();
    let tag = *secret.replay_tag();
    match packet.process_with_expanded_secret(&secret).unwrap().data {
        ProcessedPacketData::ForwardHop {
            next_hop_packet, ..
        } => (tag, next_hop_packet.to_bytes()),
        ProcessedPacketData::FinalHop { .. } => panic!("final hop"),
    }
}

fn our_unwrap(key: &StaticSecret, bytes: &[u8]) -> ([u8; 32], Vec<u8>) {
    let opened = ReceivedPacket::parse(bytes).unwrap().open(key).unwrap();
    let tag = *opened.replay_tag();
    match opened.finish().unwrap() {
        UnwrappedPacket::Forward { packet, .. } => (tag, packet),
        UnwrappedPacket::Final { .. } => panic!("final hop"),
    }
}

fn reference_create(f: &Fixture, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let delays: Vec<Delay> = f
        .delays
        .iter()
        .map(|_| Delay::new_from_millis(50))
        .collect();
    let ack_destination =
        route::Destination::new(DestinationAddressBytes::from_bytes([3; 32]), [9; 16]);
    let material = SURBMaterial::new(
        f.their_route.clone(),
        delays.clone(),
        ack_destination,
        Version::new(260),
    );
    let (surb, recovery) =
        SURB::new_recoverable(StaticSecret::from(bytes32(rng)), material).unwrap();
    let mut frame = [0u8; FRAME_SIZE];
    let surb_bytes = surb.to_bytes();
    frame[..surb_bytes.len()].copy_from_slice(&surb_bytes);
    black_box(recovery.to_bytes());
    let destination =
        route::Destination::new(DestinationAddressBytes::from_bytes([4; 32]), [0; 16]);
    SphinxPacketBuilder::new()
        .with_version(Version::new(260))
        .with_payload_size(PAYLOAD_SIZE)
        .with_initial_secret(&StaticSecret::from(bytes32(rng)))
        .build_packet(frame, &f.their_route, &destination, &delays)
        .unwrap()
        .to_bytes()
}

fn our_create(route: &[RouteNode], delays: &[Duration], rng: &mut ChaCha20Rng) -> Vec<u8> {
    let ack_destination = Destination {
        address: [3; 32],
        surb_id: [9; 16],
    };
    let (surb, keys) = sphinx::build_surb(
        &PacketRandomness::draw(rng),
        route,
        delays,
        &ack_destination,
        HeaderVersion::SINGLE_SEED_SURB,
    )
    .unwrap();
    let mut frame = [0u8; FRAME_SIZE];
    let surb_bytes = surb.to_bytes();
    frame[..surb_bytes.len()].copy_from_slice(&surb_bytes);
    black_box(keys.map(|k| k.to_bytes()));
    let destination = Destination {
        address: [4; 32],
        surb_id: [0; 16],
    };
    sphinx::build_packet_with_rng(rng, route, delays, &destination, &frame, format()).unwrap()
}

fn decode_route(f: &Fixture) -> Vec<RouteNode> {
    f.our_route
        .iter()
        .zip(&f.public_keys)
        .map(|(n, k)| RouteNode {
            address: n.address,
            key: NodePublicKey::try_from(k).unwrap(),
        })
        .collect()
}

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Criterion measurement: CPU time of the benchmark thread.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds like wall-clock durations.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_values(typical, values)
    }

    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_throughputs(typical, t, values)
    }

    fn scale_for_machines(&self, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_for_machines(values)
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let f = fixture();
    // Both implementations agree on the pool before anything is timed.
    for p in f.packets.iter().take(8) {
        assert_eq!(reference_unwrap(&f.key, p), our_unwrap(&f.key, p));
    }

    let mut group = c.benchmark_group("unwrap");
    group.bench_function("sphinx_packet", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % POOL;
            black_box(reference_unwrap(&f.key, &f.packets[i]))
        })
    });
    group.bench_function("ours", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % POOL;
            black_box(our_unwrap(&f.key, &f.packets[i]))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("create");
    group.bench_function("sphinx_packet", |b| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        b.iter(|| black_box(reference_create(&f, &mut rng)))
    });
    group.bench_function("ours", |b| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        b.iter(|| black_box(our_create(&decode_route(&f), &f.delays, &mut rng)))
    });
    group.bench_function("ours_route_decoded", |b| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        b.iter(|| black_box(our_create(&f.our_route, &f.delays, &mut rng)))
    });
    let precomputed: Vec<RouteNode> = f
        .our_route
        .iter()
        .map(|n| RouteNode {
            address: n.address,
            key: n.key.clone().precompute(),
        })
        .collect();
    group.bench_function("ours_route_precomputed", |b| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        b.iter(|| black_box(our_create(&precomputed, &f.delays, &mut rng)))
    });
    group.finish();
}

fn mean_ns(group: &str, function: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../target".into());
    let path = format!("{dir}/criterion/{group}/{function}/new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .or_else(|_| std::fs::read_to_string(path.replacen("../", "", 1)))
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("mean")?.get("point_estimate")?.as_f64()
}

fn main() {
    if std::env::var_os("SPHINX_BENCH_WALL").is_some() {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
    let unwrap = (
        mean_ns("unwrap", "sphinx_packet"),
        mean_ns("unwrap", "ours"),
    );
    let create = (
        mean_ns("create", "sphinx_packet"),
        mean_ns("create", "ours"),
        mean_ns("create", "ours_route_decoded"),
        mean_ns("create", "ours_route_precomputed"),
    );
    println!();
    println!("| measurement | sphinx-packet | ours | ratio |");
    println!("|---|---|---|---|");
    if let (Some(theirs), Some(ours)) = unwrap {
        println!(
            "| unwrap, one hop | {:.1} µs ({:.0}/s/core) | {:.1} µs ({:.0}/s/core) | throughput ×{:.2} |",
            theirs / 1e3,
            1e9 / theirs,
            ours / 1e3,
            1e9 / ours,
            theirs / ours
        );
    }
    if let (Some(theirs), Some(ours), Some(cached), Some(precomputed)) = create {
        println!(
            "| create 3 hops + exit with SURB-ack | {:.1} µs | {:.1} µs | time ×{:.2} |",
            theirs / 1e3,
            ours / 1e3,
            ours / theirs
        );
        println!(
            "| same, route keys decoded once | {:.1} µs | {:.1} µs | time ×{:.2} |",
            theirs / 1e3,
            cached / 1e3,
            cached / theirs
        );
        println!(
            "| same, route keys precomputed | {:.1} µs | {:.1} µs | time ×{:.2} |",
            theirs / 1e3,
            precomputed / 1e3,
            precomputed / theirs
        );
    }
}
