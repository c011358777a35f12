//! The real-or-drop-cover stream is a Poisson process of rate λ_P whether or
//! not anything is queued.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use client_core::{ClientConfig, ClientCore};
use protocol::ClientAddress;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{PACKET_SIZE, RouteHop};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use network::Topology;

const SEND_RATE: f64 = 100.0;
const GAPS: usize = 400;

fn hop(rng: &mut ChaCha20Rng) -> RouteHop {
    RouteHop {
        id: IdentityKeyPair::generate(rng).node_id(),
        sphinx_key: SphinxKeyPair::generate(rng).public(),
    }
}

/// A client alone (no network: nothing is ever acked) and a peer address.
fn lone_client(seed: u64) -> (ClientCore<Topology>, ClientAddress, ChaCha20Rng) {
    lone_client_with(seed, 20.0)
}

fn lone_client_with(
    seed: u64,
    loop_cover_rate: f64,
) -> (ClientCore<Topology>, ClientAddress, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let topology = Topology {
        mixes: (0..3).map(|_| hop(&mut rng)).collect(),
        gateways: (0..2).map(|_| hop(&mut rng)).collect(),
    };
    let peer = ClientAddress {
        client_key: SphinxKeyPair::generate(&mut rng).public().to_bytes(),
        gateway: topology.gateways[1].id,
    };
    let gateway = topology.gateways[0].id;
    let config = ClientConfig {
        send_rate: SEND_RATE,
        loop_cover_rate,
        ..ClientConfig::default()
    };
    // The core's clocks are seeded from this RNG alone, so two clients built
    // from the same seed tick at the same instants.
    let mut core_rng = ChaCha20Rng::seed_from_u64(seed);
    let core = ClientCore::new(
        config,
        SphinxKeyPair::generate(&mut rng),
        gateway,
        topology,
        Timestamp::ZERO,
        &mut core_rng,
    );
    (core, peer, rng)
}

/// Drives the core at the instants it asks for until `GAPS` + 1 packets of
/// the real-or-drop stream left; returns their instants, and the numbers of
/// real and loop packets.
fn send_instants(
    core: &mut ClientCore<Topology>,
    rng: &mut ChaCha20Rng,
) -> (Vec<Timestamp>, u64, u64) {
    let mut instants = Vec::new();
    while instants.len() <= GAPS {
        let now = core
            .poll_timeout()
            .expect("a ticking client always has a timeout");
        loop {
            let loops_before = core.stats().loop_cover_sent;
            let Some(packet) = core.poll_transmit(now, rng).map(|t| t.packet) else {
                break;
            };
            assert_eq!(packet.bytes.len(), PACKET_SIZE);
            if core.stats().loop_cover_sent == loops_before {
                instants.push(now);
            }
        }
    }
    instants.truncate(GAPS + 1);
    (
        instants,
        core.stats().real_sent,
        core.stats().loop_cover_sent,
    )
}

/// The Kolmogorov–Smirnov statistic of `gaps` (seconds) against Exp(rate).
fn ks_statistic(gaps: &mut [f64], rate: f64) -> f64 {
    gaps.sort_by(f64::total_cmp);
    let n = gaps.len() as f64;
    gaps.iter()
        .enumerate()
        .map(|(i, x)| {
            let cdf = 1.0 - (-rate * x).exp();
            let below = i as f64 / n;
            let above = (i + 1) as f64 / n;
            (cdf - below).abs().max((above - cdf).abs())
        })
        .fold(0.0, f64::max)
}

fn gaps(instants: &[Timestamp]) -> Vec<f64> {
    instants
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]).as_secs_f64())
        .collect()
}

fn assert_exponential(instants: &[Timestamp], what: &str) -> f64 {
    let mut g = gaps(instants);
    assert_eq!(g.len(), GAPS);
    let d = ks_statistic(&mut g, SEND_RATE);
    let critical = 1.63 / (GAPS as f64).sqrt();
    assert!(d < critical, "{what}: KS D = {d:.4} ≥ {critical:.4}");
    let mean = g.iter().sum::<f64>() / g.len() as f64;
    assert!(
        (mean * SEND_RATE - 1.0).abs() < 0.1,
        "{what}: mean gap {mean}"
    );
    d
}

/// The instants of the send ticks of a client that has no route at all
/// (so builds no packet) and no loop cover.
fn tick_instants_without_routes(seed: u64) -> Vec<Timestamp> {
    let (mut core, _, mut rng) = lone_client_with(seed, 0.0);
    core.routes_mut().mixes.clear();
    core.routes_mut().gateways.clear();
    let mut instants = Vec::new();
    while instants.len() <= GAPS {
        let now = core.poll_timeout().unwrap();
        let before = core.stats().ticks_without_packet;
        assert!(core.poll_transmit(now, &mut rng).is_none());
        for _ in before..core.stats().ticks_without_packet {
            instants.push(now);
        }
    }
    instants.truncate(GAPS + 1);
    instants
}

#[test]
fn idle_send_stream_is_poisson() {
    let (mut idle, _, mut rng) = lone_client(1);
    let (instants, real, loops) = send_instants(&mut idle, &mut rng);
    assert_eq!(real, 0, "idle: only drop cover");
    let d = assert_exponential(&instants, "idle");
    eprintln!(
        "idle: KS D = {d:.4}, critical {:.4}",
        1.63 / (GAPS as f64).sqrt()
    );
    // About λ_L / λ_P × GAPS = 80 loop packets.
    assert!((50..=110).contains(&loops), "{loops} loop packets");
    // Guard against a test that always passes: the same gaps fail against
    // twice the rate.
    let mut g = gaps(&instants);
    let wrong = ks_statistic(&mut g, SEND_RATE * 2.0);
    assert!(
        wrong > 1.63 / (GAPS as f64).sqrt(),
        "D against 2λ_P = {wrong}"
    );
    assert_eq!(instants, tick_instants_without_routes(1));
}

#[test]
fn loaded_send_stream_is_poisson_at_the_idle_instants() {
    let (mut loaded, peer, mut rng) = lone_client(1);
    // More fragments than ticks in the window: the queue never runs dry.
    let big = vec![7u8; (GAPS + 100) * protocol::frame::FRAGMENT_CAPACITY];
    loaded
        .send(Timestamp::ZERO, &peer, &big, 0, &mut rng)
        .unwrap();
    let (instants, real, _) = send_instants(&mut loaded, &mut rng);
    assert_eq!(loaded.stats().drop_cover_sent, 0, "loaded: no drop cover");
    assert!(real > GAPS as u64);
    let d = assert_exponential(&instants, "loaded");
    eprintln!(
        "loaded: KS D = {d:.4}, critical {:.4}",
        1.63 / (GAPS as f64).sqrt()
    );
    assert_eq!(
        instants,
        tick_instants_without_routes(1),
        "the tick instants do not depend on what is queued"
    );
}
