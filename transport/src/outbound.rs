//! One outbound link: a task that owns a destination's queue, dials lazily,
//! writes whole packets on one unidirectional stream, and reconnects.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::stats::LinkStats;

use crate::backoff::Backoff;
use crate::endpoint::{Shared, close_code};
use crate::identity::PeerId;
use crate::stats::{Direction, LinkDropReason};
use crate::tls;

/// Most packets written to a stream in one call: whatever the queue holds
/// when the link is ready, up to this many, goes out in one write.
const WRITE_BATCH: usize = 64;

/// The queue of one link and the packets taken from it but not yet written.
/// Whatever it still holds when dropped (the link was removed, the endpoint
/// closed, the task aborted) is counted as dropped (`Closed`), so every
/// packet [`crate::Endpoint::send`] accepted is either sent or counted.
pub(crate) struct LinkQueue {
    receiver: mpsc::Receiver<Bytes>,
    in_hand: Vec<Bytes>,
    stats: Arc<LinkStats>,
}

impl LinkQueue {
    pub(crate) fn new(receiver: mpsc::Receiver<Bytes>, stats: Arc<LinkStats>) -> Self {
        Self {
            receiver,
            in_hand: Vec::with_capacity(WRITE_BATCH),
            stats,
        }
    }

    /// Takes packets into hand (those already in hand, or else every packet
    /// queued, at least one and at most [`WRITE_BATCH`], in queue order);
    /// `None` once the endpoint dropped the sender and the queue is empty.
    async fn take(&mut self) -> Option<Vec<Bytes>> {
        if self.in_hand.is_empty()
            && self
                .receiver
                .recv_many(&mut self.in_hand, WRITE_BATCH)
                .await
                == 0
        {
            return None;
        }
        Some(self.in_hand.clone())
    }

    /// The packets in hand are done with (written, or dropped and counted).
    fn release(&mut self) {
        self.in_hand.clear();
    }
}

impl Drop for LinkQueue {
    fn drop(&mut self) {
        let left = self.in_hand.len() + self.receiver.len();
        for _ in 0..left {
            self.stats.count_drop(LinkDropReason::Closed);
        }
    }
}

/// How a connected link ended.
enum LinkEnd {
    /// The endpoint dropped the queue: all queued packets were written.
    QueueClosed,
    /// The connection was lost.
    Lost {
        /// Whether at least one packet was written on it.
        wrote: bool,
        /// Whether it ended with a TLS (handshake) error from either side.
        handshake: bool,
    },
}

/// Runs the link to `peer` until its queue is closed (or the task aborted).
pub(crate) async fn run_link(
    shared: Arc<Shared>,
    peer: PeerId,
    addr: SocketAddr,
    mut queue: LinkQueue,
    seed: u64,
) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max, seed);
    let mut closing = shared.closing.subscribe();
    loop {
        // Dial only when there is something to send.
        if queue.take().await.is_none() {
            return;
        }
        // A dial in progress goes on while the endpoint closes (bounded by
        // the drain timeout); a link waiting to redial gives up at once.
        let Some((connection, stream)) = dial(&shared, peer, addr).await else {
            if !pause(&mut closing, backoff.next_delay()).await {
                return;
            }
            continue;
        };
        tracing::debug!(%peer, %addr, "link open");
        match pump(&shared, &connection, stream, &mut queue).await {
            LinkEnd::QueueClosed => {
                connection.close(close_code::DONE.into(), b"done");
                return;
            }
            LinkEnd::Lost { wrote, handshake } => {
                tracing::debug!(%peer, %addr, handshake, "link lost");
                if handshake {
                    // The peer refused us after our side finished the handshake.
                    shared.stats.count_handshake_failure();
                    shared.stats.count_connect_failure();
                } else if wrote {
                    backoff.reset();
                }
                if !pause(&mut closing, backoff.next_delay()).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps for `delay`; false if the endpoint started closing meanwhile.
async fn pause(closing: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = closing.wait_for(|closing| *closing) => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Opens a connection to `peer` and its stream, or counts why it failed.
async fn dial(
    shared: &Shared,
    peer: PeerId,
    addr: SocketAddr,
) -> Option<(quinn::Connection, quinn::SendStream)> {
    let stats = &shared.stats;
    stats.count_attempt();
    let result = async {
        let crypto = tls::client_crypto(&shared.identity, peer, shared.pins.clone(), stats.clone())
            .map_err(|e| e.to_string())?;
        let mut client = quinn::ClientConfig::new(crypto);
        client.transport_config(Arc::clone(&shared.client_transport));
        let connecting = shared
            .quic
            .connect_with(client, addr, tls::SERVER_NAME)
            .map_err(|e| e.to_string())?;
        let timeout = shared.config.handshake_timeout;
        let connection = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                if is_handshake_error(&e) {
                    stats.count_handshake_failure();
                }
                return Err(e.to_string());
            }
            Err(_) => return Err("handshake timed out".to_owned()),
        };
        match tokio::time::timeout(timeout, connection.open_uni()).await {
            Ok(Ok(stream)) => Ok((connection, stream)),
            Ok(Err(e)) => {
                if is_handshake_error(&e) {
                    stats.count_handshake_failure();
                }
                Err(e.to_string())
            }
            Err(_) => Err("opening the stream timed out".to_owned()),
        }
    }
    .await;
    match result {
        Ok(link) => Some(link),
        Err(reason) => {
            stats.count_connect_failure();
            tracing::debug!(%peer, %addr, %reason, "dial failed");
            None
        }
    }
}

/// Writes the packets in hand and then every queued packet until the queue
/// closes or the connection is lost; the packets queued by the time the
/// stream can take more go out in one write (no copy, one lock of the
/// connection for all of them).
async fn pump(
    shared: &Shared,
    connection: &quinn::Connection,
    mut stream: quinn::SendStream,
    queue: &mut LinkQueue,
) -> LinkEnd {
    let stats = &shared.stats;
    let _open = stats.open_gauge(Direction::Outbound);
    let mut wrote = false;
    loop {
        let mut packets = tokio::select! {
            biased;
            packets = queue.take() => match packets {
                Some(packets) => packets,
                None => {
                    finish(shared, &mut stream).await;
                    return LinkEnd::QueueClosed;
                }
            },
            _ = connection.closed() => break,
        };
        let count = packets.len();
        let written = stream.write_all_chunks(&mut packets).await;
        queue.release();
        match written {
            Ok(()) => {
                for _ in 0..count {
                    stats.count_sent();
                }
                wrote = true;
            }
            Err(_) => {
                // Which of them reached the peer is not known: all count as lost.
                for _ in 0..count {
                    stats.count_drop(LinkDropReason::LinkFailed);
                }
                break;
            }
        }
    }
    let handshake = connection
        .close_reason()
        .is_some_and(|e| is_handshake_error(&e));
    LinkEnd::Lost { wrote, handshake }
}

/// Ends the stream and waits (bounded) until the peer has everything.
async fn finish(shared: &Shared, stream: &mut quinn::SendStream) {
    if stream.finish().is_ok() {
        let _ = tokio::time::timeout(shared.config.drain_timeout, stream.stopped()).await;
    }
}

/// Whether a connection ended because TLS failed, on either side: QUIC
/// carries TLS alerts as the CRYPTO_ERROR range 0x100..=0x1ff.
pub(crate) fn is_handshake_error(error: &quinn::ConnectionError) -> bool {
    let code = match error {
        quinn::ConnectionError::TransportError(e) => e.code,
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
        _ => return false,
    };
    (0x100..0x200).contains(&u64::from(code))
}
