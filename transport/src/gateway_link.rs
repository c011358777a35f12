//! The client's side of the gateway link, over QUIC: what the client
//! library uses to talk to its gateway.
//!
//! [`QuicGatewayLink::connect`] dials the gateway's client address (the
//! `client_address` of its topology entry), pins its certificate to the
//! gateway's identity key (the `gateway_id`: a gateway that does not hold
//! that key fails the TLS handshake), presents a throwaway self-signed
//! certificate of its own (TLS does not identify the client), accepts the
//! one bidirectional stream the gateway opens, and answers the gateway's
//! `Challenge` with [`prove`] over the client's Sphinx
//! key. It returns once the gateway has sent `Welcome`; a wrong key ends in
//! [`GatewayLinkError::Refused`] with [`CloseReason::AuthFailed`].
//!
//! Then:
//! - [`QuicGatewayLink::send_packet`] hands a 2413-byte Sphinx packet to
//!   the gateway for `first_hop` (a layer-1 mix node);
//! - [`QuicGatewayLink::next_delivery`] waits for the next stored message
//!   (a [`GatewayDelivery`], oldest first, at most 32 not yet
//!   acknowledged); it returns `None` once the session is over
//!   ([`QuicGatewayLink::close_reason`] says why, if the gateway said);
//! - [`QuicGatewayLink::ack`] acknowledges a message once the client has
//!   kept what it needs: only then does the gateway delete it. A message not
//!   acknowledged comes again in the next session.
//!
//! ```no_run
//! # async fn example(addr: std::net::SocketAddr, gateway: protocol::keys::NodeId,
//! #     keys: protocol::keys::SphinxKeyPair) -> Result<(), transport::gateway_link::GatewayLinkError> {
//! use transport::gateway_link::QuicGatewayLink;
//! let connection = QuicGatewayLink::connect(addr, gateway, &keys).await?;
//! while let Some(delivery) = connection.next_delivery().await {
//!     // ... hand `payload` to the client core ...
//!     connection.ack(delivery.mailbox_id).await?;
//! }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::link::auth::prove;
use protocol::link::{
    ClientMessage, CloseReason, GatewayMessage, LinkDecodeError, LinkDecoder, LinkMessage,
};
use protocol::packet::PACKET_SIZE;
use protocol::surb::SurbId;
use rand::SeedableRng;
use tokio::sync::mpsc;

use crate::tls::client_crypto;
use crate::{LinkStats, NodeIdentity, PeerId, PeerSet};

/// How long the handshake, the stream and the challenge may take each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries read ahead of the application (the gateway sends at most 32
/// unacknowledged ones anyway).
const DELIVERY_QUEUE: usize = 64;
/// The TLS server name; gateways are told apart by key, not by name.
const SERVER_NAME: &str = "mixnet-node";

/// Why talking to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayLinkError {
    /// The local QUIC endpoint or its TLS could not be set up.
    #[error("cannot set up QUIC: {0}")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed or was lost (including a gateway that does not hold the pinned key).
    #[error("connection to the gateway failed: {0}")]
    Connection(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The gateway did not answer in time.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// The gateway closed the session, saying why.
    #[error("the gateway closed the session: {}", .0.as_str())]
    Refused(CloseReason),
    /// The gateway sent bytes that are not a link message this side accepts.
    #[error("malformed message from the gateway: {0}")]
    Malformed(#[from] LinkDecodeError),
    /// The gateway's challenge names another gateway.
    #[error("the challenge names another gateway")]
    WrongGateway,
    /// The session is over.
    #[error("the session is closed")]
    Closed,
    /// A packet must be exactly the network's packet size.
    #[error("a packet is {PACKET_SIZE} bytes, not {0}")]
    WrongSize(usize),
}

fn connection_error(e: impl std::error::Error + Send + Sync + 'static) -> GatewayLinkError {
    GatewayLinkError::Connection(Box::new(e))
}

/// One message the gateway hands over from the client's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayDelivery {
    /// The gateway's id of the stored message, to acknowledge it by.
    pub mailbox_id: u64,
    /// The SURB id the packet arrived under (all zero for forward packets).
    pub surb_id: SurbId,
    /// The recovered frame (forward packets) or the sealed payload (SURB packets).
    pub payload: Vec<u8>,
}

/// What the gateway keeps of its client's prekeys, as it last reported
/// ([`GatewayMessage::PrekeyStock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrekeyStock {
    /// Whether it keeps a published bundle of the client.
    pub published: bool,
    /// One-time prekeys it still has to hand out.
    pub one_time_left: u32,
}

/// An authenticated session with a gateway.
pub struct QuicGatewayLink {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: tokio::sync::Mutex<quinn::SendStream>,
    deliveries: tokio::sync::Mutex<mpsc::Receiver<GatewayDelivery>>,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
    prekey_stock: Arc<Mutex<Option<PrekeyStock>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl QuicGatewayLink {
    /// Connects to the gateway `gateway_id` at its client address and
    /// authenticates as the owner of `client_keys`. Must run inside a tokio runtime.
    pub async fn connect(
        client_address_of_gateway: SocketAddr,
        gateway_id: NodeId,
        client_keys: &SphinxKeyPair,
    ) -> Result<QuicGatewayLink, GatewayLinkError> {
        Self::connect_enrolling(client_address_of_gateway, gateway_id, client_keys, None).await
    }

    /// [`QuicGatewayLink::connect`], first giving `invite` (a gateway in
    /// closed admission registers a new client only with an unused one).
    pub async fn connect_enrolling(
        client_address_of_gateway: SocketAddr,
        gateway_id: NodeId,
        client_keys: &SphinxKeyPair,
        invite: Option<[u8; protocol::link::INVITE_LEN]>,
    ) -> Result<QuicGatewayLink, GatewayLinkError> {
        let endpoint = client_endpoint(client_address_of_gateway, gateway_id)?;
        let connecting = endpoint
            .connect(client_address_of_gateway, SERVER_NAME)
            .map_err(connection_error)?;
        let connection = within(connecting).await?.map_err(connection_error)?;
        let (mut send, mut recv) = within(connection.accept_bi())
            .await?
            .map_err(connection_error)?;
        let mut decoder = LinkDecoder::<GatewayMessage>::new();
        let challenge = within(next_message(&mut recv, &mut decoder)).await??;
        let GatewayMessage::Challenge { gateway, ephemeral } = challenge else {
            return Err(unexpected(challenge));
        };
        if gateway != gateway_id {
            return Err(GatewayLinkError::WrongGateway);
        }
        let mut hello = match invite {
            Some(invite) => ClientMessage::Enroll { invite }.encode(),
            None => Vec::new(),
        };
        let authenticate = ClientMessage::Authenticate {
            client_key: client_keys.public().to_bytes(),
            proof: prove(client_keys.secret(), &gateway, &ephemeral),
        };
        hello.extend(authenticate.encode());
        send.write_all(&hello).await.map_err(connection_error)?;
        match within(next_message(&mut recv, &mut decoder)).await?? {
            GatewayMessage::Welcome => {}
            other => return Err(unexpected(other)),
        }
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        let close_reason = Arc::new(Mutex::new(None));
        let prekey_stock = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read_deliveries(
            recv,
            decoder,
            tx,
            close_reason.clone(),
            prekey_stock.clone(),
        ));
        Ok(QuicGatewayLink {
            endpoint,
            connection,
            send: tokio::sync::Mutex::new(send),
            deliveries: tokio::sync::Mutex::new(rx),
            close_reason,
            prekey_stock,
            reader,
        })
    }

    /// Hands `packet` (exactly [`PACKET_SIZE`] bytes) to the gateway for `first_hop`.
    pub async fn send_packet(
        &self,
        first_hop: NodeId,
        packet: Vec<u8>,
    ) -> Result<(), GatewayLinkError> {
        let len = packet.len();
        let packet: Box<[u8; PACKET_SIZE]> = packet
            .into_boxed_slice()
            .try_into()
            .map_err(|_| GatewayLinkError::WrongSize(len))?;
        self.write(ClientMessage::SendPacket { first_hop, packet })
            .await
    }

    /// The next message from the mailbox, or `None` once the session is over.
    pub async fn next_delivery(&self) -> Option<GatewayDelivery> {
        self.deliveries.lock().await.recv().await
    }

    /// Acknowledges a delivered message: the gateway deletes it.
    pub async fn ack(&self, mailbox_id: u64) -> Result<(), GatewayLinkError> {
        self.write(ClientMessage::AckDelivery { mailbox_id }).await
    }

    /// Uploads the client's published bundle (when `published` is some)
    /// under its identity `fingerprint`, then the one-time prekeys
    /// `(id, bytes)`, as many per link message as fit.
    pub async fn publish_prekeys(
        &self,
        fingerprint: [u8; protocol::prekeys::FINGERPRINT_SIZE],
        published: Option<Vec<u8>>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> Result<(), GatewayLinkError> {
        if let Some(published) = published {
            self.write(ClientMessage::PublishBundle {
                fingerprint,
                published,
            })
            .await?;
        }
        // Version and kind, then the entries: as many as fit one message.
        const BODY_HEADER: usize = 2;
        let mut keys = Vec::new();
        let mut body = BODY_HEADER;
        for (id, key) in one_time {
            let entry = protocol::link::ONE_TIME_PREKEY_ENTRY_HEADER + key.len();
            if !keys.is_empty() && body + entry > protocol::link::MAX_BODY_LEN {
                let full = std::mem::take(&mut keys);
                self.write(ClientMessage::AddOneTimePrekeys { keys: full })
                    .await?;
                body = BODY_HEADER;
            }
            body += entry;
            keys.push((id, key));
        }
        if !keys.is_empty() {
            self.write(ClientMessage::AddOneTimePrekeys { keys })
                .await?;
        }
        Ok(())
    }

    /// The gateway's latest report of the client's prekeys, once: `None`
    /// when none came since the last call.
    pub fn take_prekey_stock(&self) -> Option<PrekeyStock> {
        self.prekey_stock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Why the gateway closed the session, if it did and said so: in its
    /// `Close` message, or as the error code of the connection it closed.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.said_reason()
            .or_else(|| match self.connection.close_reason() {
                Some(quinn::ConnectionError::ApplicationClosed(close)) => {
                    CloseReason::from_code(close.error_code.into_inner())
                }
                _ => None,
            })
    }

    /// Ends the session (messages not acknowledged stay at the gateway).
    pub async fn close(self) {
        let _ = self.send.lock().await.finish();
        self.connection.close(0u8.into(), b"client closing");
        self.reader.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// The reason of the gateway's `Close` message, once the reader has read it.
    fn said_reason(&self) -> Option<CloseReason> {
        *self
            .close_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `message`; the connection's close code is looked at only when
    /// the write fails, not on every packet.
    async fn write(&self, message: ClientMessage) -> Result<(), GatewayLinkError> {
        if let Some(reason) = self.said_reason() {
            return Err(GatewayLinkError::Refused(reason));
        }
        self.send
            .lock()
            .await
            .write_all(&message.encode())
            .await
            .map_err(|_| {
                self.close_reason()
                    .map_or(GatewayLinkError::Closed, GatewayLinkError::Refused)
            })
    }
}

impl std::fmt::Debug for QuicGatewayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicGatewayLink")
            .field("gateway", &self.connection.remote_address())
            .field("close_reason", &self.close_reason())
            .finish_non_exhaustive()
    }
}

impl Drop for QuicGatewayLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A client endpoint that trusts only `gateway_id`'s certificate.
fn client_endpoint(
    gateway: SocketAddr,
    gateway_id: NodeId,
) -> Result<quinn::Endpoint, GatewayLinkError> {
    fn setup(e: impl std::error::Error + Send + Sync + 'static) -> GatewayLinkError {
        GatewayLinkError::Setup(Box::new(e))
    }
    let mut rng = rand_chacha::ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng).map_err(setup)?;
    // TLS needs a client certificate; this one is thrown away with the session.
    let throwaway = IdentityKeyPair::generate(&mut rng);
    let identity = NodeIdentity::new(throwaway.signing_key()).map_err(setup)?;
    let pin = PeerId(gateway_id.0);
    let crypto = client_crypto(
        &identity,
        pin,
        PeerSet::new([pin]),
        Arc::new(LinkStats::default()),
    )
    .map_err(setup)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(CLIENT_KEEP_ALIVE))
        .max_idle_timeout(Some(CLIENT_IDLE_TIMEOUT.try_into().map_err(setup)?))
        .max_concurrent_uni_streams(0u8.into());
    let mut config = quinn::ClientConfig::new(crypto);
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = if gateway.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(setup)?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> Result<T, GatewayLinkError> {
    tokio::time::timeout(CONNECT_TIMEOUT, future)
        .await
        .map_err(|_| GatewayLinkError::Timeout)
}

fn unexpected(message: GatewayMessage) -> GatewayLinkError {
    match message {
        GatewayMessage::Close { reason } => GatewayLinkError::Refused(reason),
        _ => GatewayLinkError::Malformed(LinkDecodeError::BadField("unexpected message kind")),
    }
}

/// Reads until a whole message is decoded; `Closed` if the stream ends first.
async fn next_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut LinkDecoder<GatewayMessage>,
) -> Result<GatewayMessage, GatewayLinkError> {
    let mut buf = vec![0u8; 8192];
    loop {
        if let Some(message) = decoder.next_message()? {
            return Ok(message);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
            Ok(None) | Err(_) => return Err(GatewayLinkError::Closed),
        }
    }
}

async fn read_deliveries(
    mut recv: quinn::RecvStream,
    mut decoder: LinkDecoder<GatewayMessage>,
    deliveries: mpsc::Sender<GatewayDelivery>,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
    prekey_stock: Arc<Mutex<Option<PrekeyStock>>>,
) {
    loop {
        match next_message(&mut recv, &mut decoder).await {
            Ok(GatewayMessage::Deliver {
                mailbox_id,
                surb_id,
                payload,
            }) => {
                let delivery = GatewayDelivery {
                    mailbox_id,
                    surb_id,
                    payload,
                };
                if deliveries.send(delivery).await.is_err() {
                    return;
                }
            }
            Ok(GatewayMessage::PrekeyStock {
                published,
                one_time_left,
            }) => {
                *prekey_stock.lock().unwrap_or_else(PoisonError::into_inner) = Some(PrekeyStock {
                    published,
                    one_time_left,
                });
            }
            Ok(GatewayMessage::Close { reason }) => {
                *close_reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
                return;
            }
            // A second challenge or welcome is a protocol error: end the session.
            Ok(_) | Err(_) => return,
        }
    }
}

/// Time a client has to finish its QUIC handshake at the gateway.
pub const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A silent client connection is dropped after this long, by either side.
/// Short, so that a client cut off from its gateway notices within seconds and
/// redials, instead of resuming only at its next QUIC probe, whose timeout
/// doubles all through the cut (docs/operations.md).
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a client keeps its link alive when it has nothing else to send.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(3);
/// Most bytes the gateway buffers unacknowledged towards one client.
const CLIENT_SEND_WINDOW: u64 = 256 * 1024;

/// The gateway's side of the link: a QUIC endpoint on `listen` that presents
/// `identity` and accepts any client certificate (the client's key is
/// authenticated inside the link protocol, not by TLS). The gateway speaks
/// first, so it opens the one bidirectional stream; clients may open none.
pub fn listen(
    identity: &IdentityKeyPair,
    listen: SocketAddr,
) -> Result<quinn::Endpoint, crate::TransportError> {
    let node_identity = NodeIdentity::new(identity.signing_key())?;
    let crypto = crate::tls::server_crypto(
        &node_identity,
        PeerSet::new([]),
        crate::InboundPolicy::AcceptUnpinned,
        Arc::new(LinkStats::default()),
    )?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(0u8.into())
        .max_concurrent_uni_streams(0u8.into())
        // Bytes buffered for one client that does not read (the delivery
        // window already keeps it under 32 messages of at most 4098 bytes).
        .send_window(CLIENT_SEND_WINDOW)
        .max_idle_timeout(Some(CLIENT_IDLE_TIMEOUT.try_into().map_err(|_| {
            crate::TransportError::Config("client idle timeout out of range")
        })?));
    let mut server = quinn::ServerConfig::with_crypto(crypto);
    server.transport_config(Arc::new(transport));
    // Many clients share this socket: it gets the node links' larger buffers.
    crate::endpoint::bind_quic(listen, quinn::EndpointConfig::default(), server).map_err(|source| {
        crate::TransportError::Bind {
            addr: listen,
            source,
        }
    })
}
