//! Fetching a correspondent's bundle from its gateway, in the core alone
//! (no network answers): the request takes a tick of the λ_P stream and
//! leaves its instants unchanged; a fetch nobody answers is sent again over
//! fresh routes and then fails; one to a gateway no route leads to fails at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use client_core::fetch::MAX_ATTEMPTS;
use client_core::{ClientConfig, ClientCore, ClientEvent, FetchFailure, TransmissionKind};
use protocol::NodeId;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};
use protocol::packet::{PACKET_SIZE, RouteHop};
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use network::Topology;

fn hop(rng: &mut ChaCha20Rng) -> RouteHop {
    RouteHop {
        id: IdentityKeyPair::generate(rng).node_id(),
        sphinx_key: SphinxKeyPair::generate(rng).public(),
    }
}

/// A client alone on a topology of 3 mixes and 2 gateways; the other gateway.
fn lone_client(seed: u64) -> (ClientCore<Topology>, NodeId, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let topology = Topology {
        mixes: (0..3).map(|_| hop(&mut rng)).collect(),
        gateways: (0..2).map(|_| hop(&mut rng)).collect(),
    };
    let other = topology.gateways[1].id;
    let mut core_rng = ChaCha20Rng::seed_from_u64(seed);
    let core = ClientCore::new(
        ClientConfig {
            send_rate: 50.0,
            loop_cover_rate: 0.0,
            ..ClientConfig::default()
        },
        SphinxKeyPair::generate(&mut rng),
        topology.gateways[0].id,
        topology,
        Timestamp::ZERO,
        &mut core_rng,
    );
    (core, other, rng)
}

/// Drives `core` until `until`: every packet's instant and kind, and the events.
fn drive(
    core: &mut ClientCore<Topology>,
    rng: &mut ChaCha20Rng,
    until: Timestamp,
) -> (Vec<(Timestamp, TransmissionKind)>, Vec<ClientEvent>) {
    let mut sent = Vec::new();
    let mut events = Vec::new();
    while let Some(now) = core.poll_timeout().filter(|t| *t <= until) {
        while let Some(t) = core.poll_transmit(now, rng) {
            assert_eq!(t.packet.bytes.len(), PACKET_SIZE);
            sent.push((now, t.kind));
        }
        core.handle_timeout(now);
        events.extend(std::iter::from_fn(|| core.poll_event()));
    }
    (sent, events)
}

#[test]
fn an_unanswered_fetch_rides_the_send_ticks_then_fails_after_its_attempts() {
    let until = Timestamp::ZERO.saturating_add(std::time::Duration::from_secs(60));
    let (mut quiet, _, mut quiet_rng) = lone_client(3);
    let (quiet_sent, _) = drive(&mut quiet, &mut quiet_rng, until);

    let (mut core, other, mut rng) = lone_client(3);
    core.fetch_bundle(other, [7; 20]).unwrap();
    // Asking again while it is under way changes nothing.
    core.fetch_bundle(other, [7; 20]).unwrap();
    let (sent, events) = drive(&mut core, &mut rng, until);

    // The same instants as a client that fetches nothing: requests take
    // ticks that would have carried drop cover.
    let instants =
        |s: &[(Timestamp, TransmissionKind)]| s.iter().map(|(t, _)| *t).collect::<Vec<_>>();
    assert_eq!(instants(&sent), instants(&quiet_sent));
    let requests = sent
        .iter()
        .filter(|(_, k)| *k == TransmissionKind::BundleRequest)
        .count();
    assert_eq!(requests as u32, MAX_ATTEMPTS);
    assert_eq!(core.stats().bundle_requests_sent, u64::from(MAX_ATTEMPTS));
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::BundleFetchFailed {
                gateway,
                fingerprint,
                reason,
            } => Some((*gateway, *fingerprint, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [(
            other,
            [7; 20],
            FetchFailure::NoAnswer {
                attempts: MAX_ATTEMPTS
            }
        )]
    );
}

#[test]
fn a_fetch_to_a_gateway_no_route_leads_to_fails_at_the_next_tick() {
    let (mut core, _, mut rng) = lone_client(4);
    let mut stranger = ChaCha20Rng::seed_from_u64(99);
    let unknown = IdentityKeyPair::generate(&mut stranger).node_id();
    core.fetch_bundle(unknown, [1; 20]).unwrap();
    let until = Timestamp::ZERO.saturating_add(std::time::Duration::from_secs(1));
    let (sent, events) = drive(&mut core, &mut rng, until);
    assert!(
        sent.iter()
            .all(|(_, k)| *k != TransmissionKind::BundleRequest)
    );
    assert!(events.iter().any(|e| matches!(
        e,
        ClientEvent::BundleFetchFailed {
            reason: FetchFailure::NoRoute,
            ..
        }
    )));
    assert_eq!(core.stats().bundle_fetches_failed, 1);
}
