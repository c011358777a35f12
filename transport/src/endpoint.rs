//! The endpoint: one QUIC socket, its outbound links and its listening side.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::LinkConfig;
use crate::error::{SendError, TransportError};
use crate::identity::{NodeIdentity, PeerId};
use crate::pins::PeerSet;
use crate::stats::{LinkDropReason, LinkStats};
use crate::tls::{self, InboundPolicy};

/// QUIC application close codes used on links.
pub(crate) mod close_code {
    /// The link ended normally (queue closed, endpoint closing).
    pub const DONE: u32 = 0;
    /// The peer is no longer pinned.
    pub const UNPINNED: u32 = 1;
    /// The endpoint is shutting down.
    pub const SHUTDOWN: u32 = 2;
}

/// A packet that arrived on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender, proven by its TLS certificate and handshake signature.
    pub from: PeerId,
    /// Whether the sender was pinned when it connected. Always true unless
    /// the endpoint runs with [`InboundPolicy::AcceptUnpinned`].
    pub pinned: bool,
    /// The packet, exactly `packet_size` bytes.
    pub packet: Vec<u8>,
}

/// State shared by the endpoint and all its tasks.
pub(crate) struct Shared {
    pub(crate) identity: NodeIdentity,
    pub(crate) pins: PeerSet,
    pub(crate) stats: Arc<LinkStats>,
    pub(crate) config: LinkConfig,
    pub(crate) quic: quinn::Endpoint,
    pub(crate) incoming: mpsc::Sender<Received>,
    pub(crate) client_transport: Arc<quinn::TransportConfig>,
    /// Set once by [`Endpoint::close`]: links that are not connected give up.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    /// Open inbound connections by QUIC stable id, so that unpinning a peer
    /// can close them.
    inbound: Mutex<HashMap<usize, (PeerId, quinn::Connection)>>,
}

impl Shared {
    pub(crate) fn register_inbound(&self, peer: PeerId, connection: &quinn::Connection) {
        lock(&self.inbound).insert(connection.stable_id(), (peer, connection.clone()));
    }

    pub(crate) fn unregister_inbound(&self, connection: &quinn::Connection) {
        lock(&self.inbound).remove(&connection.stable_id());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The keys quinn derives stateless-reset tokens and connection ids from,
/// derived from the node's identity so that they survive a restart.
///
/// A node that crashes and comes back on the same address then recognises
/// the connection ids it issued before (by default quinn would drop them as
/// invalid) and answers its peers' packets for the dead connections with
/// valid stateless resets, so they reconnect at once instead of writing into
/// a dead connection until the idle timeout.
fn restart_stable_keys(key: &ed25519_dalek::SigningKey) -> (Arc<dyn quinn::crypto::HmacKey>, u64) {
    let secret = zeroize::Zeroizing::new(key.to_bytes());
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"mixnet/transport/v1"), secret.as_slice());
    let mut reset = zeroize::Zeroizing::new([0u8; 32]);
    let mut cid = [0u8; 8];
    // Outputs this short are far below HKDF-SHA256's limit; expansion cannot fail.
    let _ = hkdf.expand(b"quic stateless reset key", reset.as_mut_slice());
    let _ = hkdf.expand(b"quic connection id key", &mut cid);
    (Arc::new(ResetKey(reset)), u64::from_le_bytes(cid))
}

/// HMAC-SHA256 under the stateless-reset key (RustCrypto's `hmac`, so that
/// it does not depend on which of quinn's crypto back ends is compiled in).
struct ResetKey(zeroize::Zeroizing<[u8; 32]>);

impl ResetKey {
    fn mac(&self) -> hmac::Hmac<sha2::Sha256> {
        use hmac::KeyInit;
        // HMAC zero-pads a short key to the 64-byte block: padding it here
        // gives the same MAC through the infallible fixed-size constructor.
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        for (b, k) in block.iter_mut().zip(self.0.iter()) {
            *b = *k;
        }
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&(*block).into())
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        use hmac::Mac;
        let mut mac = self.mac();
        mac.update(data);
        let tag = mac.finalize().into_bytes();
        for (out, byte) in signature_out.iter_mut().zip(tag.iter()) {
            *out = *byte;
        }
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        use hmac::Mac;
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(signature)
            .map_err(|_| quinn::crypto::CryptoError)
    }
}

/// The sending end of one outbound link.
struct LinkHandle {
    addr: SocketAddr,
    queue: mpsc::Sender<Bytes>,
    task: AbortHandle,
}

/// A node's QUIC endpoint: fixed-size packets to and from pinned peers.
///
/// [`Endpoint::send`] never blocks: each destination has its own bounded
/// queue and task, which dials lazily, writes packets on one long-lived
/// unidirectional stream and reconnects with capped, jittered backoff.
/// Received packets come out of the channel returned by [`Endpoint::bind`].
/// Dropping the endpoint stops every task at once; [`Endpoint::close`]
/// first tries to deliver what is queued.
pub struct Endpoint {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    links: Mutex<HashMap<PeerId, LinkHandle>>,
    link_tasks: Mutex<JoinSet<()>>,
    accept_task: Mutex<JoinSet<()>>,
    links_spawned: AtomicU64,
    closed: AtomicBool,
}

impl Endpoint {
    /// Binds a QUIC endpoint for the node identified by `key`, accepting links
    /// from `pins`. Must be called inside a tokio runtime. Returns the endpoint
    /// and the channel of received packets (bounded by
    /// `config.incoming_capacity`; when it is full, packets are dropped and
    /// counted).
    pub fn bind(
        key: &ed25519_dalek::SigningKey,
        pins: impl IntoIterator<Item = PeerId>,
        config: LinkConfig,
    ) -> Result<(Self, mpsc::Receiver<Received>), TransportError> {
        config.validate()?;
        let identity = NodeIdentity::new(key)?;
        let stats = Arc::new(LinkStats::default());
        let pins = PeerSet::new(pins);
        let crypto = tls::server_crypto(
            &identity,
            pins.clone(),
            config.inbound_policy,
            Arc::clone(&stats),
        )?;
        let mut server = quinn::ServerConfig::with_crypto(crypto);
        server.transport_config(Arc::new(config.quic_transport(true)?));
        server.migration(false);
        let bind_error = |source| TransportError::Bind {
            addr: config.listen,
            source,
        };
        let (reset_key, cid_key) = restart_stable_keys(key);
        let mut endpoint_config = quinn::EndpointConfig::new(reset_key);
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let quic = bind_quic(config.listen, endpoint_config, server).map_err(bind_error)?;
        let local_addr = quic.local_addr().map_err(bind_error)?;
        let (incoming, received) = mpsc::channel(config.incoming_capacity);
        let client_transport = Arc::new(config.quic_transport(false)?);
        let shared = Arc::new(Shared {
            identity,
            pins,
            stats,
            config,
            quic,
            incoming,
            client_transport,
            closing: tokio::sync::watch::Sender::new(false),
            inbound: Mutex::new(HashMap::new()),
        });
        let mut accept_task = JoinSet::new();
        accept_task.spawn(crate::inbound::accept_loop(Arc::clone(&shared)));
        let endpoint = Self {
            shared,
            local_addr,
            links: Mutex::new(HashMap::new()),
            link_tasks: Mutex::new(JoinSet::new()),
            accept_task: Mutex::new(accept_task),
            links_spawned: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        };
        Ok((endpoint, received))
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.identity.peer_id()
    }

    /// The endpoint's counters, to be read by the metrics layer.
    pub fn stats(&self) -> Arc<LinkStats> {
        Arc::clone(&self.shared.stats)
    }

    /// The packet size every link carries.
    pub fn packet_size(&self) -> usize {
        self.shared.config.packet_size
    }

    /// Whether `peer` is pinned now.
    pub fn is_pinned(&self, peer: &PeerId) -> bool {
        self.shared.pins.contains(peer)
    }

    /// Replaces the pinned set (e.g. at an epoch change). New handshakes see
    /// the new set at once; links to and from peers that are no longer
    /// pinned are closed, and their queued packets dropped (`Closed`).
    /// With [`InboundPolicy::AcceptUnpinned`] inbound connections are left
    /// to the caller.
    pub fn set_pins(&self, peers: impl IntoIterator<Item = PeerId>) {
        let pins = &self.shared.pins;
        pins.replace(peers);
        lock(&self.links).retain(|peer, link| {
            let keep = pins.contains(peer);
            if !keep {
                self.drop_link(link);
            }
            keep
        });
        if self.shared.config.inbound_policy == InboundPolicy::PinnedOnly {
            for (peer, connection) in lock(&self.shared.inbound).values() {
                if !pins.contains(peer) {
                    connection.close(close_code::UNPINNED.into(), b"unpinned");
                }
            }
        }
    }

    /// Ends a link; its task counts the packets it still held.
    fn drop_link(&self, link: &LinkHandle) {
        link.task.abort();
    }

    /// Queues `packet` for `peer` at `addr` without waiting. A link to the
    /// peer is created on first use (and re-created if `addr` changed).
    /// Refusals are counted in [`LinkStats`] as drops.
    pub fn send(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        packet: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        let packet = packet.into();
        let stats = &self.shared.stats;
        if self.closed.load(Ordering::Acquire) {
            stats.count_drop(LinkDropReason::Closed);
            return Err(SendError::Closed);
        }
        let expected = self.shared.config.packet_size;
        if packet.len() != expected {
            stats.count_drop(LinkDropReason::WrongSize);
            return Err(SendError::WrongSize {
                len: packet.len(),
                expected,
            });
        }
        if !self.shared.pins.contains(&peer) {
            stats.count_drop(LinkDropReason::NotPinned);
            return Err(SendError::NotPinned(peer));
        }
        let mut links = lock(&self.links);
        let link = match links.entry(peer) {
            Entry::Occupied(mut entry) => {
                let current = entry.get();
                if current.addr != addr || current.task.is_finished() {
                    self.drop_link(current);
                    entry.insert(self.spawn_link(peer, addr));
                }
                entry.into_mut()
            }
            Entry::Vacant(entry) => entry.insert(self.spawn_link(peer, addr)),
        };
        match link.queue.try_send(packet) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.count_drop(LinkDropReason::QueueFull);
                Err(SendError::QueueFull(peer))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                stats.count_drop(LinkDropReason::Closed);
                Err(SendError::Closed)
            }
        }
    }

    fn spawn_link(&self, peer: PeerId, addr: SocketAddr) -> LinkHandle {
        let (queue, receiver) = mpsc::channel(self.shared.config.queue_capacity);
        let [a, b, c, d, e, f, g, h, ..] = peer.0;
        let serial = self.links_spawned.fetch_add(1, Ordering::Relaxed);
        let seed = self.shared.config.backoff_seed
            ^ u64::from_le_bytes([a, b, c, d, e, f, g, h])
            ^ serial.rotate_left(32);
        let mut tasks = lock(&self.link_tasks);
        while tasks.try_join_next().is_some() {}
        let task = tasks.spawn(crate::outbound::run_link(
            Arc::clone(&self.shared),
            peer,
            addr,
            crate::outbound::LinkQueue::new(receiver, Arc::clone(&self.shared.stats)),
            seed,
        ));
        LinkHandle { addr, queue, task }
    }

    /// Stops the endpoint: refuses new packets, lets each connected link
    /// deliver what it has queued (for at most `drain_timeout`; links that
    /// are not connected drop their queue as `Closed`), then closes every
    /// connection and ends all tasks. The channel of received packets ends
    /// once the endpoint is dropped.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shared.closing.send_replace(true);
        // Dropping the senders lets each link task drain its queue and finish.
        let links: Vec<LinkHandle> = lock(&self.links).drain().map(|(_, link)| link).collect();
        drop(links);
        let mut tasks = std::mem::take(&mut *lock(&self.link_tasks));
        let drain = self.shared.config.drain_timeout;
        let drained =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::debug!("links still busy after the drain timeout; ending them");
        }
        tasks.shutdown().await;
        self.shared
            .quic
            .close(close_code::SHUTDOWN.into(), b"shutdown");
        let _ = tokio::time::timeout(drain, self.shared.quic.wait_idle()).await;
        let mut accept = std::mem::take(&mut *lock(&self.accept_task));
        accept.shutdown().await;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Tell peers at once; the JoinSets abort every task as they drop.
        self.shared
            .quic
            .close(close_code::SHUTDOWN.into(), b"shutdown");
    }
}

/// Bytes of datagrams the socket may hold unread, asked of the kernel for
/// each direction. A link starts by sending up to its initial congestion
/// window at once, several links share one socket, and Linux's default
/// (212 992 B, about 90 datagrams as it counts them) overflows under such a
/// burst: the datagrams it drops include other connections' handshakes,
/// which then wait a retransmission timeout. The kernel caps the size at
/// `net.core.rmem_max` / `wmem_max`.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// A QUIC endpoint on a UDP socket bound by [`bind_socket`], on the
/// current tokio runtime.
pub(crate) fn bind_quic(
    listen: SocketAddr,
    config: quinn::EndpointConfig,
    server: quinn::ServerConfig,
) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_socket(listen)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
    quinn::Endpoint::new(config, Some(server), socket, runtime)
}

/// Binds a UDP socket with [`SOCKET_BUFFER`] bytes each way (or the most
/// the kernel allows, said once in the log).
fn bind_socket(listen: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    // Linux grants, and reports, twice what it was asked (its bookkeeping
    // share), so anything less than twice means the cap applied.
    let granted = socket.recv_buffer_size()?;
    if granted < 2 * SOCKET_BUFFER {
        tracing::info!(
            granted,
            wanted = SOCKET_BUFFER,
            "the kernel capped the socket's receive buffer; raise net.core.rmem_max for bursts on many links"
        );
    }
    socket.bind(&listen.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn the_socket_asks_for_four_mebibytes_each_way_up_to_the_kernels_cap() {
        let socket = bind_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let socket = socket2::SockRef::from(&socket);
        let read = |path: &str| -> usize {
            std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        // Linux grants twice the size asked, up to twice the cap.
        let cap = read("/proc/sys/net/core/rmem_max").min(SOCKET_BUFFER);
        assert_eq!(
            socket.recv_buffer_size().unwrap(),
            2 * cap,
            "receive buffer"
        );
        let cap = read("/proc/sys/net/core/wmem_max").min(SOCKET_BUFFER);
        assert_eq!(socket.send_buffer_size().unwrap(), 2 * cap, "send buffer");
    }

    #[test]
    fn endpoint_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Endpoint>();
        shareable::<LinkStats>();
    }

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    /// The statistics of `endpoint`'s one inbound connection.
    fn inbound_stats(endpoint: &Endpoint) -> quinn::ConnectionStats {
        let inbound = lock(&endpoint.shared.inbound);
        let (_, (_, connection)) = inbound.iter().next().expect("one inbound link");
        connection.stats()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_is_acknowledged_in_batches_not_every_second_datagram() {
        let (ka, kb) = (key(1), key(2));
        let config = LinkConfig::new("127.0.0.1:0".parse().unwrap(), 2413);
        let (a, _rx_a) =
            Endpoint::bind(&ka, [PeerId::from_signing_key(&kb)], config.clone()).unwrap();
        let (b, mut rx_b) = Endpoint::bind(&kb, [PeerId::from_signing_key(&ka)], config).unwrap();
        const N: usize = 400;
        for i in 0..N {
            a.send(b.peer_id(), b.local_addr(), vec![(i % 251) as u8; 2413])
                .unwrap();
            if i % 4 == 3 {
                // Bursts of four, as a mix node's releases come.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for _ in 0..N {
            tokio::time::timeout(Duration::from_secs(5), rx_b.recv())
                .await
                .expect("every packet arrives")
                .expect("channel open");
        }
        let stats = inbound_stats(&b);
        // A 2413-byte packet takes about two datagrams; QUIC's default
        // acknowledges every second one (one acknowledgement per packet).
        assert!(stats.udp_rx.datagrams >= N as u64, "{stats:?}");
        assert!(
            stats.frame_tx.acks * 8 < stats.udp_rx.datagrams,
            "{} acknowledgements for {} datagrams",
            stats.frame_tx.acks,
            stats.udp_rx.datagrams
        );
        a.close().await;
        b.close().await;
    }
}
