//! Only pinned peers can open links, in either direction, and the pinned set
//! can change at run time.

mod common;

use common::*;
use transport::{LinkDropReason, SendError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_a_server_whose_key_is_not_pinned_fails() {
    let (ka, kb, kimpostor) = (key(1), key(2), key(9));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    // The impostor would accept `a`, but it does not hold b's key.
    let (impostor, mut rx_impostor) = bind(&kimpostor, &[id(&ka)], config());
    a.send(id(&kb), impostor.local_addr(), packet(1)).unwrap();
    let stats = a.stats();
    eventually("a to refuse the impostor", || {
        stats.peers_rejected() >= 1 && stats.handshake_failures() >= 1
    })
    .await;
    assert!(stats.connect_failures() >= 1);
    assert_eq!(stats.packets_sent(), 0);
    assert_eq!(stats.outbound_links_open(), 0);
    assert_eq!(impostor.stats().connections_accepted(), 0);
    assert!(rx_impostor.try_recv().is_err());

    // A peer that is not pinned at all is refused before any dial.
    assert_eq!(
        a.send(id(&kimpostor), impostor.local_addr(), packet(2)),
        Err(SendError::NotPinned(id(&kimpostor)))
    );
    assert_eq!(stats.dropped(LinkDropReason::NotPinned), 1);
    a.close().await;
    impostor.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_key_is_not_pinned_is_refused() {
    let (kb, kc) = (key(2), key(3));
    // b pins nobody; c pins b, so c's side of the handshake succeeds.
    let (b, mut rx_b) = bind(&kb, &[], config());
    let (c, _rx_c) = bind(&kc, &[id(&kb)], config());
    c.send(b.peer_id(), b.local_addr(), packet(1)).unwrap();
    let (b_stats, c_stats) = (b.stats(), c.stats());
    eventually("b to refuse c", || {
        b_stats.peers_rejected() >= 1 && b_stats.handshake_failures() >= 1
    })
    .await;
    eventually("c to see the refusal", || c_stats.handshake_failures() >= 1).await;
    assert_eq!(b_stats.connections_accepted(), 0);
    assert_eq!(b_stats.packets_received(), 0);
    assert_eq!(b_stats.inbound_links_open(), 0);
    assert!(rx_b.try_recv().is_err());
    b.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_change_at_run_time() {
    let (ka, kb) = (key(1), key(2));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    let got = deliver(&a, b.peer_id(), b.local_addr(), &mut rx_b, 10).await;
    assert_eq!(got.from, a.peer_id());

    // b stops pinning a: its link from a is closed and new ones are refused.
    let b_stats = b.stats();
    b.set_pins([]);
    assert!(!b.is_pinned(&a.peer_id()));
    eventually("b to refuse a's redial", || {
        let _ = a.send(b.peer_id(), b.local_addr(), packet(20));
        b_stats.peers_rejected() >= 1
    })
    .await;
    assert_eq!(b_stats.inbound_links_open(), 0);
    while let Ok(got) = rx_b.try_recv() {
        assert_ne!(tag_of(&got.packet), 20, "a packet crossed a removed pin");
    }

    // Pinned again: a's link comes back by itself.
    b.set_pins([a.peer_id()]);
    let got = deliver(&a, b.peer_id(), b.local_addr(), &mut rx_b, 30).await;
    assert!(tag_of(&got.packet) == 30 || tag_of(&got.packet) == 20);

    // a stops pinning b: sending is refused and the link is closed.
    a.set_pins([]);
    assert_eq!(
        a.send(b.peer_id(), b.local_addr(), packet(40)),
        Err(SendError::NotPinned(b.peer_id()))
    );
    let a_stats = a.stats();
    eventually("a's link to close", || a_stats.outbound_links_open() == 0).await;
    a.close().await;
    b.close().await;
}
