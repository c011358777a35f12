//! Faults: a restarted peer, dead and stalled peers, truncated packets.

// Helpers of tests: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use transport::tls::{self, InboundPolicy};
use transport::{LinkDropReason, LinkStats, NodeIdentity, PeerSet, SendError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_reconnects_to_a_restarted_peer() {
    let (ka, kb) = (key(1), key(2));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    let addr = b.local_addr();
    deliver(&a, id(&kb), addr, &mut rx_b, 1).await;
    drop(b);
    drop(rx_b);
    // The old socket is released once the old endpoint's driver has stopped.
    let (b2, mut rx_b2) = within("rebinding the address", async {
        loop {
            let mut restarted = config();
            restarted.listen = addr;
            match transport::Endpoint::bind(&kb, [id(&ka)], restarted) {
                Ok(bound) => return bound,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    let got = deliver(&a, id(&kb), addr, &mut rx_b2, 2).await;
    assert_eq!(got.from, a.peer_id());
    assert_eq!(tag_of(&got.packet), 2);
    assert!(a.stats().connection_attempts() >= 2);
    a.close().await;
    b2.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_moves_is_reached_at_its_new_address() {
    let (ka, kb) = (key(1), key(2));
    let (a, _rx_a) = bind(&ka, &[id(&kb)], config());
    let (b_old, mut rx_old) = bind(&kb, &[id(&ka)], config());
    deliver(&a, id(&kb), b_old.local_addr(), &mut rx_old, 1).await;
    // Same identity, new address (as a new topology would announce).
    let (b_new, mut rx_new) = bind(&kb, &[id(&ka)], config());
    let got = deliver(&a, id(&kb), b_new.local_addr(), &mut rx_new, 2).await;
    assert_eq!(tag_of(&got.packet), 2);
    assert!(rx_old.try_recv().map_or(true, |p| tag_of(&p.packet) == 1));
    a.close().await;
    b_old.close().await;
    b_new.close().await;
}

/// A QUIC server holding `key` that accepts one link and never reads it.
/// Its flow-control window is a few packets, so the sender stalls at once.
async fn stalled_peer(
    key: &ed25519_dalek::SigningKey,
    pins: PeerSet,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let identity = NodeIdentity::new(key).unwrap();
    let crypto = tls::server_crypto(
        &identity,
        pins,
        InboundPolicy::PinnedOnly,
        Arc::new(LinkStats::default()),
    )
    .unwrap();
    let mut server = quinn::ServerConfig::with_crypto(crypto);
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(((4 * SIZE) as u32).into());
    transport.receive_window(((8 * SIZE) as u32).into());
    server.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(server, loopback()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (stalled, stalled_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let connection = endpoint.accept().await.unwrap().await.unwrap();
        let stream = connection.accept_uni().await.unwrap();
        let _ = stalled.send(());
        // Hold everything open without reading.
        std::future::pending::<()>().await;
        drop((stream, connection, endpoint));
    });
    (addr, stalled_rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_stalled_peers_do_not_block_a_healthy_one() {
    let (ka, kb, kdead, kstall) = (key(1), key(2), key(3), key(4));
    let mut a_config = config();
    a_config.queue_capacity = 8;
    a_config.drain_timeout = Duration::from_millis(300);
    let (a, _rx_a) = bind(&ka, &[id(&kb), id(&kdead), id(&kstall)], a_config);
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    let dead_addr = {
        let socket = std::net::UdpSocket::bind(loopback()).unwrap();
        socket.local_addr().unwrap()
    };
    let (stall_addr, stalled, _stall_task) = stalled_peer(&kstall, PeerSet::new([id(&ka)])).await;

    let mut refused = 0u64;
    let mut accepted = 0u64;
    let mut flood = |a: &transport::Endpoint, tag: u32| {
        for (peer, addr) in [(id(&kdead), dead_addr), (id(&kstall), stall_addr)] {
            match a.send(peer, addr, packet(tag)) {
                Ok(()) => accepted += 1,
                Err(SendError::QueueFull(_)) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
    };
    flood(&a, 0);
    within("the stalled peer to accept the link", stalled)
        .await
        .unwrap();
    for i in 0..500 {
        flood(&a, i);
    }
    // Both queues are full now; the healthy peer still gets every packet.
    for i in 0..100 {
        a.send(b.peer_id(), b.local_addr(), packet(1000 + i))
            .unwrap();
        let got = recv(&mut rx_b).await;
        assert_eq!(tag_of(&got.packet), 1000 + i);
        flood(&a, i);
    }
    let stats = a.stats();
    assert_eq!(stats.dropped(LinkDropReason::QueueFull), refused);
    // 601 packets were offered to each stuck link. Each holds at most its
    // queue (8) and one batch taken from it into a write in progress (at
    // most the queue again); the stalled one also got its peer's stream
    // window (4 packets) and part of a fifth through.
    let offered = 2 * 601;
    assert!(
        refused >= offered - 2 * (8 + 8) - (4 + 1),
        "refused {refused} of {offered}"
    );
    within("close despite stuck links", a.close()).await;
    // Every accepted packet was written or dropped with a reason.
    let accounted = stats.packets_sent()
        + stats.dropped(LinkDropReason::LinkFailed)
        + stats.dropped(LinkDropReason::Closed);
    assert_eq!(accounted, accepted + 100);
    assert!(
        stats.dropped(LinkDropReason::Closed) >= 8,
        "the stuck queues are counted"
    );
    assert_eq!(stats.links_open(), 0);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_packet_then_close_is_dropped_and_counted() {
    let (ka, kb) = (key(1), key(2));
    let (b, mut rx_b) = bind(&kb, &[id(&ka)], config());
    let identity = NodeIdentity::new(&ka).unwrap();
    let crypto = tls::client_crypto(
        &identity,
        b.peer_id(),
        PeerSet::new([b.peer_id()]),
        Arc::new(LinkStats::default()),
    )
    .unwrap();
    let client = quinn::Endpoint::client(loopback()).unwrap();
    let connection = within(
        "the handshake",
        client
            .connect_with(
                quinn::ClientConfig::new(crypto),
                b.local_addr(),
                "mixnet-node",
            )
            .unwrap(),
    )
    .await
    .unwrap();

    let mut first = connection.open_uni().await.unwrap();
    first.write_all(&packet(1)[..SIZE / 2]).await.unwrap();
    first.finish().unwrap();
    // The endpoint reads one stream at a time: this one opens only after the
    // truncated stream has been consumed.
    let mut second = within("a second stream", connection.open_uni())
        .await
        .unwrap();
    second.write_all(&packet(2)).await.unwrap();
    second.finish().unwrap();

    let got = recv(&mut rx_b).await;
    assert_eq!(got.packet, packet(2));
    let stats = b.stats();
    assert_eq!(stats.dropped(LinkDropReason::Truncated), 1);
    assert_eq!(stats.packets_received(), 1);
    connection.close(0u32.into(), b"done");
    b.close().await;
}
