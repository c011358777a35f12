//! Per-packet cost of the `Mixer` beside the raw unwrap of its codec.
//!
//! Both unwrap the same kind of packet on the same machine in the same run;
//! after criterion's own report, the bench prints the ratio of the two means
//! (1.00 means the mixer adds nothing over the bare Sphinx unwrap).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// A benchmark measures wall-clock time.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use mixnode_core::{Mixer, MixerConfig, SphinxCodec};
use protocol::epoch::Epoch;
use protocol::frame::Frame;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{RouteHop, build_packet};
use protocol::replay::ReplayFilterConfig;
use protocol::sphinx::unwrap_packet;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const POOL: usize = 512;

struct Fixture {
    id: protocol::NodeId,
    key: SphinxKeyPair,
    packets: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let mut hops = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..4 {
        let id = IdentityKeyPair::generate(&mut rng).node_id();
        let key = SphinxKeyPair::generate(&mut rng);
        hops.push(RouteHop {
            id,
            sphinx_key: key.public(),
        });
        keys.push(key);
    }
    let frame = Frame::Ack.encode().unwrap_or_default();
    let packets = (0..POOL)
        .filter_map(|_| {
            build_packet(
                &mut rng,
                &hops,
                &[Duration::from_millis(50); 4],
                hops[3].id.to_destination(),
                [0; 16],
                &frame,
            )
            .ok()
            .map(|p| p.bytes)
        })
        .collect();
    Fixture {
        id: hops[0].id,
        key: keys.remove(0),
        packets,
    }
}

fn fresh_mixer(f: &Fixture) -> Mixer {
    let m = Mixer::new(
        f.id,
        SphinxCodec,
        MixerConfig {
            replay: ReplayFilterConfig {
                min_tags_per_epoch: POOL as u64,
                false_positive_rate: 1e-9,
            },
            ..MixerConfig::default()
        },
    );
    m.install_key(Epoch(0), f.key.clone());
    m.rotate(Epoch(0));
    m
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("per_packet");
    group.bench_function("raw_unwrap", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let bytes = &f.packets[i as usize % POOL];
                let start = Instant::now();
                let p = unwrap_packet(f.key.secret(), bytes);
                black_box(p.is_ok());
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("mixer_handle_packet", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut mixer = fresh_mixer(&f);
            for i in 0..iters {
                let idx = i as usize % POOL;
                if idx == 0 && i > 0 {
                    // The pool wraps: a new filter, outside the timed region.
                    mixer = fresh_mixer(&f);
                }
                let start = Instant::now();
                let _ = black_box(mixer.handle_packet(Timestamp::ZERO, &f.packets[idx]));
                total += start.elapsed();
            }
            total
        })
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

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    match (
        mean_ns("per_packet", "raw_unwrap"),
        mean_ns("per_packet", "mixer_handle_packet"),
    ) {
        (Some(raw), Some(mixer)) => {
            println!();
            println!("| measurement | mean per packet | packets/s/core |");
            println!("|---|---|---|");
            println!(
                "| protocol::sphinx unwrap | {:.1} µs | {:.0} |",
                raw / 1e3,
                1e9 / raw
            );
            println!(
                "| Mixer::handle_packet | {:.1} µs | {:.0} |",
                mixer / 1e3,
                1e9 / mixer
            );
            println!(
                "| ratio mixer / raw | {:.3} | throughput {:.3} of raw |",
                mixer / raw,
                raw / mixer
            );
        }
        _ => println!("(criterion estimates not found; ratio not printed)"),
    }
}
