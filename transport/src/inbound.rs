//! The listening side: accepts connections from pinned peers and reads
//! whole packets from their streams.

use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;

use crate::endpoint::{Received, Shared, close_code};
use crate::identity::PeerId;
use crate::stats::{Direction, LinkDropReason};
use crate::tls::{self, InboundPolicy};

/// Accepts connections until the QUIC endpoint closes. Each connection is
/// served by its own task; they are all aborted when this task ends.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    while let Some(incoming) = shared.quic.accept().await {
        while connections.try_join_next().is_some() {}
        if connections.len() >= shared.config.max_inbound_connections {
            tracing::debug!("too many inbound connections; refusing one");
            shared.stats.count_refused();
            incoming.refuse();
            continue;
        }
        connections.spawn(serve(Arc::clone(&shared), incoming));
    }
}

/// Completes the handshake of one inbound connection and reads its streams.
async fn serve(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let stats = &shared.stats;
    let connection = match tokio::time::timeout(shared.config.handshake_timeout, incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            stats.count_handshake_failure();
            tracing::debug!(reason = %e, "inbound handshake failed");
            return;
        }
        Err(_) => {
            stats.count_handshake_failure();
            tracing::debug!("inbound handshake timed out");
            return;
        }
    };
    let Some(peer) = tls::connection_peer(&connection) else {
        connection.close(close_code::UNPINNED.into(), b"no identity");
        return;
    };
    shared.register_inbound(peer, &connection);
    // Checked after registering, so that a concurrent `set_pins` either sees
    // this connection or this check sees the new set.
    let pinned = shared.pins.contains(&peer);
    if !pinned && shared.config.inbound_policy == InboundPolicy::PinnedOnly {
        stats.count_peer_rejected();
        connection.close(close_code::UNPINNED.into(), b"unpinned");
        shared.unregister_inbound(&connection);
        return;
    }
    stats.count_accepted();
    let open = stats.open_gauge(Direction::Inbound);
    // The transport allows one stream at a time, so streams are read in turn.
    while let Ok(stream) = connection.accept_uni().await {
        read_packets(&shared, peer, pinned, stream).await;
    }
    drop(open);
    shared.unregister_inbound(&connection);
}

/// Reads whole packets from `stream` until it ends. One buffer of exactly
/// one packet is allocated per read. Logs never name the sender: with
/// [`InboundPolicy::AcceptUnpinned`] it may be a client.
async fn read_packets(shared: &Shared, from: PeerId, pinned: bool, mut stream: quinn::RecvStream) {
    let stats = &shared.stats;
    loop {
        let mut packet = vec![0u8; shared.config.packet_size];
        match stream.read_exact(&mut packet).await {
            Ok(()) => {
                stats.count_received();
                let received = Received {
                    from,
                    pinned,
                    packet,
                };
                match shared.incoming.try_send(received) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => stats.count_drop(LinkDropReason::IncomingFull),
                    Err(TrySendError::Closed(_)) => stats.count_drop(LinkDropReason::Closed),
                }
            }
            Err(quinn::ReadExactError::FinishedEarly(0)) => return,
            Err(quinn::ReadExactError::FinishedEarly(len)) => {
                stats.count_drop(LinkDropReason::Truncated);
                tracing::debug!(len, "stream ended inside a packet");
                return;
            }
            Err(quinn::ReadExactError::ReadError(e)) => {
                tracing::debug!(reason = %e, "stream read failed");
                return;
            }
        }
    }
}
