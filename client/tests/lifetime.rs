//! Message lifetimes: a message sent with an expiry tells the recipient's
//! gateway how long it may keep each fragment, and is not sent once its
//! expiry has passed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use std::time::Duration;

use client_core::{ClientConfig, ClientEvent};
use protocol::fragment::MessageId;
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::time::Timestamp;

use network::{TestNetwork, test_config};

const A: usize = 0;
const B: usize = 1;

fn two_clients(seed: u64, config: ClientConfig) -> TestNetwork {
    TestNetwork::new(seed, 2, &[0, 1], config)
}

fn count(net: &TestNetwork, pred: impl Fn(&ClientEvent) -> bool) -> usize {
    net.count(A, pred)
}

fn delivered(net: &TestNetwork, id: MessageId) -> bool {
    count(
        net,
        |e| matches!(e, ClientEvent::Delivered { id: d } if *d == id),
    ) == 1
}

fn failed(net: &TestNetwork, id: MessageId) -> bool {
    count(
        net,
        |e| matches!(e, ClientEvent::SendFailed { id: f, .. } if *f == id),
    ) == 1
}

/// The copies of message `id` that reached the recipient's gateway:
/// (arrival instant, lifetime).
fn copies_of(net: &TestNetwork, id: MessageId) -> Vec<(Timestamp, Option<u32>)> {
    net.data_at_gateway
        .iter()
        .filter(|(_, f, _)| f.message == id)
        .map(|(at, _, lifetime)| (*at, *lifetime))
        .collect()
}

/// Whole seconds left at `arrival` until `expires_at`.
fn remaining(arrival: Timestamp, expires_at: Timestamp) -> u64 {
    expires_at.saturating_duration_since(arrival).as_secs()
}

#[test]
fn every_copy_carries_at_most_the_time_left_at_the_gateway() {
    let mut net = two_clients(21, test_config());
    let to_b = net.clients[B].address();
    let now = net.now;
    let expires_at = now.saturating_add(Duration::from_secs(600));
    let message = vec![7u8; FRAGMENT_CAPACITY * 3];
    let id = net.clients[A]
        .send_expiring(now, &to_b, &message, 0, Some(expires_at), &mut net.rng)
        .unwrap();
    let plain = net.clients[A]
        .send(now, &to_b, b"no expiry", 0, &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| delivered(n, id)
        && delivered(n, plain)));

    let copies = copies_of(&net, id);
    assert_eq!(copies.len(), 4, "four fragments, nothing lost");
    for (arrival, lifetime) in copies {
        let lifetime = u64::from(lifetime.expect("a message with an expiry has a lifetime"));
        let left = remaining(arrival, expires_at);
        assert!(
            lifetime <= left,
            "lifetime {lifetime} s, {left} s left at the gateway"
        );
        // The harness has no link latency: the copy arrives exactly after its
        // sampled delays, so the lifetime is the time left, rounded down.
        assert_eq!(lifetime, left);
        assert!(lifetime >= 590, "sent within seconds of the send call");
    }
    assert!(
        copies_of(&net, plain).iter().all(|(_, l)| l.is_none()),
        "send() sets no lifetime"
    );
    let stats = net.clients[A].stats();
    assert_eq!((stats.expired_unsent, stats.send_failures), (0, 0));
    assert_eq!(
        net.received(B).len(),
        2,
        "both messages reach the recipient"
    );
}

#[test]
fn a_message_whose_expiry_passes_before_its_tick_fails_unsent() {
    let mut net = two_clients(22, test_config());
    let to_b = net.clients[B].address();
    let now = net.now;
    // Ticks already due have been taken: the next send tick is after `now`,
    // so this expiry has passed by then.
    let expires_at = now.saturating_add(Duration::from_nanos(1));
    let id = net.clients[A]
        .send_expiring(now, &to_b, b"too late", 0, Some(expires_at), &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| failed(n, id)));
    let stats = net.clients[A].stats();
    assert_eq!(stats.expired_unsent, 1);
    assert_eq!(stats.send_failures, 1);
    assert_eq!(stats.retransmissions, 0);
    assert!(copies_of(&net, id).is_empty(), "no copy left");
    assert_eq!(net.clients[A].occupancy().unacked_fragments, 0);
    assert_eq!(net.clients[A].occupancy().outgoing_messages, 0);

    // Sending goes on: a later message is delivered.
    let now = net.now;
    let next = net.clients[A]
        .send(now, &to_b, b"on time", 0, &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| delivered(n, next)));
    assert_eq!(net.clients[A].stats().expired_unsent, 1);
    assert!(!delivered(&net, id));
}

#[test]
fn less_than_a_second_left_at_the_gateway_is_not_worth_sending() {
    let mut net = two_clients(23, test_config());
    let to_b = net.clients[B].address();
    let now = net.now;
    // Not passed at the tick (a few tens of ms away), but the copy would
    // reach the gateway with less than one whole second to live.
    let expires_at = now.saturating_add(Duration::from_millis(900));
    let id = net.clients[A]
        .send_expiring(
            now,
            &to_b,
            b"rounds to 0",
            0,
            Some(expires_at),
            &mut net.rng,
        )
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| failed(n, id)));
    assert!(copies_of(&net, id).is_empty());
    assert!(
        net.now < expires_at,
        "failed at its tick, before the expiry itself"
    );
    assert_eq!(net.clients[A].stats().expired_unsent, 1);
}

#[test]
fn a_lost_message_stops_being_retransmitted_at_its_expiry() {
    let config = ClientConfig {
        max_retransmissions: 100,
        ..test_config()
    };
    let mut net = two_clients(24, config);
    let to_b = net.clients[B].address();
    // The recipient's gateway loses every copy: only the expiry ends it.
    net.lose_fragment = Box::new(|_, _| true);
    let now = net.now;
    let expires_at = now.saturating_add(Duration::from_secs(4));
    let id = net.clients[A]
        .send_expiring(now, &to_b, b"lost", 0, Some(expires_at), &mut net.rng)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| failed(n, id)));
    assert!(net.now <= expires_at, "given up by the expiry");
    let copies = copies_of(&net, id);
    assert!(
        copies.len() >= 2,
        "sent again while time was left: {copies:?}"
    );
    for (arrival, lifetime) in &copies {
        let lifetime = u64::from(lifetime.unwrap());
        assert!(lifetime >= 1);
        assert!(lifetime <= remaining(*arrival, expires_at));
    }
    // Later copies have less time left.
    assert!(copies.windows(2).all(|w| w[1].1 <= w[0].1));
    let stats = net.clients[A].stats();
    assert_eq!((stats.expired_unsent, stats.send_failures), (1, 1));
    assert!(stats.retransmissions < 100);
}
