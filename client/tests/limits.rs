//! Every structure has a bound, and reaching it is an error or a counted drop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod network;

use std::time::Duration;

use client::ClientError;
use client_core::ClientConfig;
use protocol::ClientAddress;
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::time::Timestamp;

use network::{TestNetwork, test_config};

fn lone(config: ClientConfig) -> (TestNetwork, ClientAddress) {
    let net = TestNetwork::new(11, 2, &[0], config);
    let peer = ClientAddress {
        client_key: [5; 32],
        gateway: net.topology.gateways[1].id,
    };
    (net, peer)
}

#[test]
fn send_refuses_what_exceeds_its_limits() {
    let config = ClientConfig {
        max_unacked_fragments: 10,
        max_message_fragments: 8,
        max_reply_surbs_per_message: 2,
        ..test_config()
    };
    let (mut net, peer) = lone(config);
    let now = net.now;
    let core = &mut net.clients[0];
    let rng = &mut net.rng;
    assert_eq!(
        core.send(now, &peer, b"x", 3, rng),
        Err(ClientError::TooManyReplySurbs { asked: 3, max: 2 })
    );
    assert!(matches!(
        core.send(now, &peer, &vec![0; FRAGMENT_CAPACITY * 8], 0, rng),
        Err(ClientError::MessageTooLarge {
            fragments: 9,
            max: 8,
            ..
        })
    ));
    core.send(now, &peer, &vec![0; FRAGMENT_CAPACITY * 7], 0, rng)
        .unwrap();
    assert_eq!(core.occupancy().unacked_fragments, 8);
    assert_eq!(
        core.send(now, &peer, &vec![0; FRAGMENT_CAPACITY * 2], 0, rng),
        Err(ClientError::QueueFull { queued: 8, max: 10 })
    );
    core.send(now, &peer, b"fits", 0, rng).unwrap();
    assert_eq!(core.occupancy().unacked_fragments, 9);
}

#[test]
fn without_a_route_ticks_pass_and_the_queue_waits() {
    let (mut net, peer) = lone(test_config());
    let now = net.now;
    let core = &mut net.clients[0];
    let own = core.address().gateway;
    core.routes_mut().gateways.retain(|g| g.id != own);
    assert!(matches!(
        core.send(now, &peer, b"x", 1, &mut net.rng),
        Err(ClientError::NoRoute(_))
    ));
    core.send(now, &peer, b"x", 0, &mut net.rng).unwrap();
    let later = now.saturating_add(Duration::from_secs(5));
    let mut sent = 0;
    while let Some(packet) = core.poll_transmit(later, &mut net.rng).map(|t| t.packet) {
        assert_eq!(packet.bytes.len(), protocol::packet::PACKET_SIZE);
        sent += 1;
    }
    // Every packet carries a SURB-ack home, and there is no route home:
    // nothing leaves, not even cover, and the ticks pass.
    assert_eq!(sent, 0);
    assert_eq!(core.stats().real_sent, 0);
    assert_eq!(core.stats().drop_cover_sent, 0);
    assert!(core.stats().ticks_without_packet > 0);
    assert_eq!(
        core.occupancy().unacked_fragments,
        1,
        "the message still waits"
    );
}

#[test]
fn reply_surb_store_evicts_the_oldest_and_expires() {
    let config = ClientConfig {
        max_stored_reply_surbs: 5,
        reply_surb_lifetime: Duration::from_secs(10),
        ..test_config()
    };
    let (mut net, peer) = lone(config);
    let now = net.now;
    let core = &mut net.clients[0];
    for _ in 0..3 {
        core.send(now, &peer, b"x", 2, &mut net.rng).unwrap();
    }
    assert_eq!(core.occupancy().reply_surbs, 5);
    assert_eq!(core.stats().reply_surbs_evicted, 1);
    assert_eq!(
        core.poll_timeout()
            .map(|t| t <= now.saturating_add(Duration::from_secs(10))),
        Some(true)
    );
    core.handle_timeout(now.saturating_add(Duration::from_secs(10)));
    assert_eq!(core.occupancy().reply_surbs, 0);
    assert_eq!(core.stats().reply_surbs_evicted, 6);
}

#[test]
fn timeouts_are_saturating_at_the_end_of_time() {
    let (mut net, peer) = lone(test_config());
    let core = &mut net.clients[0];
    core.send(Timestamp::MAX, &peer, b"x", 1, &mut net.rng)
        .unwrap();
    // Ticks, deadlines and expiries all end at Timestamp::MAX, without overflow.
    let mut n = 0;
    while core.poll_transmit(Timestamp::MAX, &mut net.rng).is_some() && n < 100 {
        n += 1;
    }
    assert!(core.poll_timeout().is_some());
}

#[test]
fn a_recipient_without_a_route_fails_without_blocking_the_queue() {
    let config = ClientConfig {
        max_retransmissions: 2,
        ..test_config()
    };
    let (mut net, peer) = lone(config);
    let now = net.now;
    let core = &mut net.clients[0];
    let nowhere = ClientAddress {
        client_key: [6; 32],
        gateway: protocol::NodeId([9; 32]),
    };
    assert!(matches!(
        core.send(now, &nowhere, b"x", 0, &mut net.rng),
        Err(ClientError::NoRoute(_))
    ));
    // The peer's gateway leaves the topology after the message was queued.
    let doomed = core.send(now, &peer, b"doomed", 0, &mut net.rng).unwrap();
    let own = core.address();
    core.send(now, &own, b"to myself", 0, &mut net.rng).unwrap();
    core.routes_mut().gateways.retain(|g| g.id != peer.gateway);
    let mut t = now;
    let mut events = Vec::new();
    for _ in 0..2000 {
        t = core.poll_timeout().unwrap();
        while core.poll_transmit(t, &mut net.rng).is_some() {}
        events.extend(std::iter::from_fn(|| core.poll_event()));
        if events
            .iter()
            .any(|e| matches!(e, client::ClientEvent::SendFailed { id, .. } if *id == doomed))
        {
            break;
        }
    }
    assert!(
        events.contains(&client::ClientEvent::SendFailed {
            id: doomed,
            reason: client::SendFailure::Unsendable { tries: 3 },
        }),
        "the sender learns that no copy could leave"
    );
    assert_eq!(
        core.stats().unsendable,
        3,
        "one copy and two retransmissions"
    );
    assert!(core.stats().real_sent >= 1, "the other message still left");
    assert!(t < now.saturating_add(Duration::from_secs(10)));
}

#[test]
fn a_late_caller_gets_no_burst_of_missed_ticks() {
    let (mut net, _) = lone(test_config());
    let core = &mut net.clients[0];
    // An hour of sleep at λ_P = 50/s would be 180 000 ticks.
    let later = net.now.saturating_add(Duration::from_secs(3600));
    let mut sent = 0;
    while core.poll_transmit(later, &mut net.rng).is_some() {
        sent += 1;
    }
    // Only the ticks of the last `max_tick_lag` (1 s) leave: about 52.
    assert!((20..=100).contains(&sent), "{sent} packets after the pause");
    assert_eq!(core.stats().clock_jumps, 2, "both clocks restarted once");
    assert!(core.poll_timeout().unwrap() > later);
}
