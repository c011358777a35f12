//! The client side: a QUIC endpoint that accepts any client certificate
//! (the client's key is authenticated inside the link protocol, not by TLS)
//! and carries one bidirectional stream per connection.
//!
//! The gateway speaks first (its `Challenge`), so it opens the stream; the
//! client may open none (its stream limits are zero). Each connection has a
//! reader task (bytes → the core thread) and a writer task draining a
//! bounded queue (the core thread → the stream).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gateway_core::SessionId;
use nodeshell::shutdown::ShutdownSignal;
use protocol::keys::IdentityKeyPair;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::core_loop::{SessionEvent, WriterCommand};

use transport::gateway_link::CLIENT_HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT;
/// Bytes read from a client at once (one link message is at most 4098).
const READ_CHUNK: usize = 8192;

/// The client endpoint.
pub struct ClientListener {
    endpoint: quinn::Endpoint,
}

impl ClientListener {
    /// Binds the client endpoint on `listen`, presenting `identity`.
    pub fn bind(identity: &IdentityKeyPair, listen: SocketAddr) -> Result<Self> {
        let endpoint = transport::gateway_link::listen(identity, listen)
            .with_context(|| format!("clients.listen = {listen}"))?;
        Ok(ClientListener { endpoint })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Accepts clients until the stop is requested, at most `max_sessions` at once.
    pub async fn serve(
        self,
        events: mpsc::Sender<SessionEvent>,
        max_sessions: usize,
        session_queue: usize,
        mut shutdown: ShutdownSignal,
    ) {
        let slots = Arc::new(Semaphore::new(max_sessions));
        loop {
            let incoming = tokio::select! {
                incoming = self.endpoint.accept() => incoming,
                _ = shutdown.requested() => break,
            };
            let Some(incoming) = incoming else { break };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                incoming.refuse();
                continue;
            };
            let events = events.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = connection(incoming, events, session_queue).await {
                    tracing::debug!("client connection: {e:#}");
                }
            });
        }
        // Sessions were sent `Close(shutdown)` by the core; give them until
        // the node's deadline to reach the clients.
        let _ = tokio::time::timeout_at(shutdown.deadline(), self.endpoint.wait_idle()).await;
        self.endpoint.close(0u8.into(), b"shutdown");
    }
}

/// One client connection: handshake, open the stream, relay bytes both ways.
async fn connection(
    incoming: quinn::Incoming,
    events: mpsc::Sender<SessionEvent>,
    session_queue: usize,
) -> Result<()> {
    let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming)
        .await
        .context("handshake timed out")??;
    let (send, mut recv) = connection.open_bi().await?;
    let (writer_tx, writer_rx) = mpsc::channel(session_queue);
    let (reply_tx, reply_rx) = oneshot::channel();
    events
        .send(SessionEvent::Opened {
            source: connection.remote_address().ip(),
            writer: writer_tx,
            reply: reply_tx,
        })
        .await
        .context("gateway stopping")?;
    let session = reply_rx.await.context("gateway stopping")?;
    let writer = tokio::spawn(write_loop(connection.clone(), send, writer_rx));
    read_loop(&mut recv, session, &events).await;
    let _ = events.send(SessionEvent::Closed { session }).await;
    connection.close(0u8.into(), b"closed");
    let _ = writer.await;
    Ok(())
}

async fn read_loop(
    recv: &mut quinn::RecvStream,
    session: SessionId,
    events: &mpsc::Sender<SessionEvent>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => return,
        };
        let bytes = buf.get(..n).unwrap_or_default().to_vec();
        if events
            .send(SessionEvent::Bytes { session, bytes })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn write_loop(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut commands: mpsc::Receiver<WriterCommand>,
) {
    while let Some(command) = commands.recv().await {
        match command {
            WriterCommand::Bytes(bytes) => {
                if send.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            WriterCommand::Close(reason) => {
                // Let the `Close` message reach the client before the connection ends.
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
                // The reason again as the connection's error code: a client
                // that finds the connection closed before it read the
                // message (a write failing first, say) still learns why.
                connection.close(u32::from(reason as u8).into(), reason.as_str().as_bytes());
                return;
            }
        }
    }
    connection.close(0u8.into(), b"closed");
}
