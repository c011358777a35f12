//! Packets flow between pinned endpoints, intact and in order; close and
//! drop end everything.

mod common;

use common::*;
use transport::{InboundPolicy, LinkDropReason, SendError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_endpoints_exchange_1000_packets_both_ways_in_order() {
    let (ka, kb) = (key(1), key(2));
    let (a, mut rx_a) = bind(&ka, &[id(&kb)], config());
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    const N: u32 = 1000;
    for i in 0..N {
        a.send(b.peer_id(), b.local_addr(), packet(i)).unwrap();
        b.send(a.peer_id(), a.local_addr(), packet(N + i)).unwrap();
    }
    for i in 0..N {
        let got = recv(&mut rx_b).await;
        assert_eq!(got.from, a.peer_id());
        assert!(got.pinned);
        assert_eq!(got.packet, packet(i), "packet {i} at b");
        let got = recv(&mut rx_a).await;
        assert_eq!(got.from, b.peer_id());
        assert_eq!(got.packet, packet(N + i), "packet {i} at a");
    }
    for (name, stats) in [("a", a.stats()), ("b", b.stats())] {
        assert_eq!(stats.packets_sent(), u64::from(N), "{name}");
        assert_eq!(stats.packets_received(), u64::from(N), "{name}");
        assert_eq!(stats.dropped_total(), 0, "{name}");
        assert_eq!(stats.outbound_links_open(), 1, "{name}");
        assert_eq!(stats.inbound_links_open(), 1, "{name}");
        assert_eq!(stats.connection_attempts(), 1, "{name}");
        assert_eq!(stats.handshake_failures(), 0, "{name}");
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_size_and_closed_sends_are_refused_and_counted() {
    let (ka, kb) = (key(1), key(2));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let addr = loopback();
    assert_eq!(
        a.send(id(&kb), addr, vec![0u8; SIZE - 1]),
        Err(SendError::WrongSize {
            len: SIZE - 1,
            expected: SIZE
        })
    );
    assert_eq!(a.stats().dropped(LinkDropReason::WrongSize), 1);
    a.close().await;
    assert_eq!(a.send(id(&kb), addr, packet(0)), Err(SendError::Closed));
    assert_eq!(a.stats().dropped(LinkDropReason::Closed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_incoming_channel_drops_and_counts() {
    let (ka, kb) = (key(1), key(2));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let mut b_config = config();
    b_config.incoming_capacity = 4;
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], b_config);
    for i in 0..50 {
        a.send(b.peer_id(), b.local_addr(), packet(i)).unwrap();
    }
    let stats = b.stats();
    eventually("b to read every packet", || stats.packets_received() == 50).await;
    assert_eq!(stats.dropped(LinkDropReason::IncomingFull), 46);
    // The first packets are kept, in order; the reader never stalled.
    for i in 0..4 {
        assert_eq!(tag_of(&recv(&mut rx_b).await.packet), i);
    }
    assert!(rx_b.try_recv().is_err());
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_beyond_the_limit_are_refused() {
    let (ka, kb, kc) = (key(1), key(2), key(3));
    let mut b_config = config();
    b_config.max_inbound_connections = 1;
    let (b, mut rx_b) = bind(&kb, &[id(&ka), id(&kc)], b_config);
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let (c, _rx_c) = bind(&kc, &[id(&kb)], config());
    deliver(&a, b.peer_id(), b.local_addr(), &mut rx_b, 1).await;
    c.send(b.peer_id(), b.local_addr(), packet(2)).unwrap();
    let stats = b.stats();
    eventually("b to refuse c", || stats.connections_refused() >= 1).await;
    assert_eq!(stats.connections_accepted(), 1);
    c.close().await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delivers_what_is_queued() {
    let (ka, kb) = (key(1), key(2));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    for i in 0..200 {
        a.send(b.peer_id(), b.local_addr(), packet(i)).unwrap();
    }
    within("close", a.close()).await;
    for i in 0..200 {
        assert_eq!(tag_of(&recv(&mut rx_b).await.packet), i);
    }
    assert_eq!(a.stats().packets_sent(), 200);
    assert_eq!(a.stats().links_open(), 0);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_endpoint_ends_its_tasks_and_channel() {
    let (ka, kb) = (key(1), key(2));
    let (a, mut rx_a) = bind(&ka, &[id(&kb)], config());
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    deliver(&a, b.peer_id(), b.local_addr(), &mut rx_b, 1).await;
    let b_stats = b.stats();
    drop(a);
    // The received channel ends because every task holding it is gone.
    assert!(within("channel end", rx_a.recv()).await.is_none());
    // The peer sees the connection closed.
    eventually("b's inbound link to close", || {
        b_stats.inbound_links_open() == 0
    })
    .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_unpinned_hands_the_peer_key_to_the_caller() {
    let (kg, kc) = (key(5), key(6));
    let mut gateway_config = config();
    gateway_config.inbound_policy = InboundPolicy::AcceptUnpinned;
    let (g, mut rx_g) = bind(&kg, &[], gateway_config);
    let (c, _rx_c) = bind(&kc, &[id(&kg)], config());
    c.send(g.peer_id(), g.local_addr(), packet(3)).unwrap();
    let got = recv(&mut rx_g).await;
    assert_eq!(got.from, c.peer_id());
    assert!(!got.pinned);
    assert_eq!(got.packet, packet(3));
    // Dialing out stays pinned-only.
    assert_eq!(
        g.send(c.peer_id(), c.local_addr(), packet(4)),
        Err(SendError::NotPinned(c.peer_id()))
    );
    c.close().await;
    g.close().await;
}
