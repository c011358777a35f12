#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The `gateway` binary as a process, with an in-process directory, in-process
//! stand-in mix nodes (QUIC endpoints registered as mixes) and clients using
//! `gateway_core::remote`. Loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use directory::DirectoryClient;
use directory::{DirectoryConfig, DirectoryServer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::{ForwardFrame, Frame, SealedContent};
use protocol::keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
use protocol::link::auth::prove;
use protocol::link::{
    ClientMessage, CloseReason, DELIVERY_PAYLOAD_SIZE, GatewayMessage, LinkDecoder, LinkMessage,
};
use protocol::packet::{PACKET_SIZE, SURB_ID_SIZE, build_packet};
use protocol::surb::build_surb;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokio::sync::mpsc;
use topology::{EpochKey, NetworkParams, NodeDescriptor, Role, Topology};
use transport::gateway_link::{GatewayDelivery, GatewayLinkError, QuicGatewayLink};
use transport::{Endpoint, LinkConfig, PeerId, Received};

const READY: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

/// A mix node stand-in: a pinned QUIC endpoint the directory lists as a mix.
struct StandIn {
    id: NodeId,
    endpoint: Endpoint,
    incoming: mpsc::Receiver<Received>,
}

/// A directory and three stand-in mixes.
struct Net {
    dir: tempfile::TempDir,
    directory: DirectoryServer,
    mixes: Vec<StandIn>,
    rng: ChaCha20Rng,
}

#[allow(clippy::disallowed_methods)] // descriptors carry wall-clock issue times
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Net {
    async fn start(seed: u64) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let config = DirectoryConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            key_file: dir.path().join("directory.key"),
            db_path: dir.path().join("directory.redb"),
            audit_log: dir.path().join("audit.jsonl"),
            max_absent_epochs: 2,
            max_nodes: 100,
            allowed_nodes: Vec::new(),
            authorities: Vec::new(),
            threshold: None,
            round_secs: 300,
            // No gateway loop cover here: the stand-ins' queues then hold only
            // what each test sends (loop cover is tested in `localnet`).
            network: NetworkParams {
                lambda_m: 0.0,
                ..NetworkParams::default()
            },
            rate_profile: None,
        };
        let directory = DirectoryServer::start(&config, IdentityKeyPair::generate(&mut rng))
            .await
            .unwrap();
        let client = DirectoryClient::new(&directory.url(), directory.id(), None).unwrap();
        let epoch = client.topology().await.unwrap().epoch;
        let mut mixes = Vec::new();
        for _ in 0..3 {
            let identity = IdentityKeyPair::generate(&mut rng);
            let link = LinkConfig::new("127.0.0.1:0".parse().unwrap(), PACKET_SIZE);
            let (endpoint, incoming) = Endpoint::bind(identity.signing_key(), [], link).unwrap();
            let signed = NodeDescriptor {
                id: identity.node_id(),
                role: Role::Mix,
                address: endpoint.local_addr(),
                client_address: None,
                sphinx_keys: [epoch, epoch.next()]
                    .into_iter()
                    .map(|e| EpochKey {
                        epoch: e,
                        key: SphinxKeyPair::generate(&mut rng).public(),
                    })
                    .collect(),
                region: None,
                metrics_url: None,
                issued_at: unix_now(),
            }
            .sign(&identity)
            .unwrap();
            client.register(&signed).await.unwrap();
            mixes.push(StandIn {
                id: identity.node_id(),
                endpoint,
                incoming,
            });
        }
        Net {
            dir,
            directory,
            mixes,
            rng,
        }
    }

    async fn topology(&self) -> std::sync::Arc<Topology> {
        DirectoryClient::new(&self.directory.url(), self.directory.id(), None)
            .unwrap()
            .refresh()
            .await
            .unwrap()
    }

    /// `gateway init` into a fresh folder, with fixed loopback ports so a restart keeps them.
    fn init_gateway(&self) -> PathBuf {
        let gw = self.dir.path().join("gateway");
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["init", "--dir"])
            .arg(&gw)
            .args(["--listen", &format!("127.0.0.1:{}", free_udp_port())])
            .args(["--clients", &format!("127.0.0.1:{}", free_udp_port())])
            .args(["--metrics", &format!("127.0.0.1:{}", free_tcp_port())])
            .args(["--directory", &self.directory.url()])
            .args(["--directory-key", &self.directory.id().to_base58()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = gw.join("config.toml");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("refresh_ms = 30000", "refresh_ms = 100");
        std::fs::write(&config, text).unwrap();
        config
    }

    fn pin_gateway(&self, gateway: NodeId) {
        for m in &self.mixes {
            m.endpoint.set_pins([PeerId(gateway.0)]);
        }
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running gateway process and the addresses of its `ready` line.
struct GatewayProcess {
    child: Child,
    id: NodeId,
    node: SocketAddr,
    clients: SocketAddr,
    metrics: SocketAddr,
}

impl GatewayProcess {
    fn start(config: &Path) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(READY)
            .expect("the gateway prints its ready line");
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[0], "ready", "{line}");
        GatewayProcess {
            id: NodeId::from_base58(parts[1]).unwrap(),
            node: parts[2].parse().unwrap(),
            clients: parts[3].parse().unwrap(),
            metrics: parts[4].parse().unwrap(),
            child,
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    fn wait(mut self) -> bool {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the gateway did not exit");
    }

    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(self.metrics).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        body.to_string()
    }

    /// The value of an unlabelled series (0 if absent).
    fn metric(&self, series: &str) -> u64 {
        let prefix = format!("{series} ");
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(0)
    }

    /// Polls `/metrics` until `series` reads `value` (the process's own state,
    /// not a sleep: each poll is a scrape).
    async fn await_metric(&self, series: &str, value: u64) {
        let want = format!("{series} {value}\n");
        for _ in 0..100 {
            if self.metrics().contains(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{series} never reached {value}:\n{}", self.metrics());
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session opened with quinn directly, kept open (streams included) until dropped.
struct RawSession {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    _send: quinn::SendStream,
    _recv: quinn::RecvStream,
    /// What the gateway answered to `Authenticate`.
    answer: GatewayMessage,
}

/// A quinn client endpoint bound to `bind` that pins `gateway`, reading
/// with a receive window of `window` bytes.
fn raw_endpoint(gateway: &GatewayProcess, bind: SocketAddr, window: u32) -> quinn::Endpoint {
    let throwaway = IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(99));
    let identity = transport::NodeIdentity::new(throwaway.signing_key()).unwrap();
    let pin = PeerId(gateway.id.0);
    let crypto = transport::tls::client_crypto(
        &identity,
        pin,
        transport::PeerSet::new([pin]),
        std::sync::Arc::new(transport::LinkStats::default()),
    )
    .unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(window.into())
        .receive_window(window.into());
    let mut config = quinn::ClientConfig::new(crypto);
    config.transport_config(std::sync::Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client(bind).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

/// Authenticates over a raw QUIC session with a proof made by `prover`
/// while claiming `claimed`'s key, reading with a receive window of
/// `window` bytes; returns the session after the gateway's answer.
async fn raw_authenticate(
    gateway: &GatewayProcess,
    claimed: &SphinxKeyPair,
    prover: &SphinxKeyPair,
    window: u32,
) -> RawSession {
    let endpoint = raw_endpoint(gateway, "127.0.0.1:0".parse().unwrap(), window);
    let connection = endpoint
        .connect(gateway.clients, "mixnet-node")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = connection.accept_bi().await.unwrap();
    let mut decoder = LinkDecoder::<GatewayMessage>::new();
    let mut buf = vec![0u8; 4096];
    let mut next = async |recv: &mut quinn::RecvStream| loop {
        if let Some(m) = decoder.next_message().unwrap() {
            return m;
        }
        let n = recv.read(&mut buf).await.unwrap().expect("stream open");
        decoder.push(&buf[..n]);
    };
    let GatewayMessage::Challenge {
        gateway: id,
        ephemeral,
    } = next(&mut recv).await
    else {
        panic!("expected a challenge");
    };
    let message = ClientMessage::Authenticate {
        client_key: claimed.public().to_bytes(),
        proof: prove(prover.secret(), &id, &ephemeral),
    };
    send.write_all(&message.encode()).await.unwrap();
    let answer = next(&mut recv).await;
    RawSession {
        _endpoint: endpoint,
        connection,
        _send: send,
        _recv: recv,
        answer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_is_closed_with_the_reason_as_the_connections_code() {
    let mut net = Net::start(1).await;
    let config = net.init_gateway();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);
    let alice = SphinxKeyPair::generate(&mut net.rng);
    let older = raw_authenticate(&gw, &alice, &alice, 1 << 20).await;
    assert_eq!(older.answer, GatewayMessage::Welcome);
    // A newer session of the same client takes over: the older connection
    // ends with the reason as its application error code, so a client that
    // finds it closed before reading the `Close` message still knows why.
    let _newer = QuicGatewayLink::connect(gw.clients, gw.id, &alice)
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, older.connection.closed())
        .await
        .expect("the older session is closed");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(
            CloseReason::from_code(close.error_code.into_inner()),
            Some(CloseReason::Replaced)
        ),
        other => panic!("closed otherwise: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_send_into_layer1_and_are_closed_on_sigterm() {
    let mut net = Net::start(1).await;
    let config = net.init_gateway();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);

    let alice = SphinxKeyPair::generate(&mut net.rng);
    let mallory = SphinxKeyPair::generate(&mut net.rng);
    let connection = QuicGatewayLink::connect(gw.clients, gw.id, &alice)
        .await
        .unwrap();
    // A proof made with another secret than the claimed key's is refused.
    let refused = raw_authenticate(&gw, &alice, &mallory, 1 << 20).await;
    assert_eq!(
        refused.answer,
        GatewayMessage::Close {
            reason: CloseReason::AuthFailed
        }
    );
    // A client that pins another key never talks to this gateway.
    let wrong_pin = QuicGatewayLink::connect(gw.clients, NodeId([7; 32]), &alice).await;
    assert!(
        matches!(wrong_pin, Err(GatewayLinkError::Connection(_))),
        "{wrong_pin:?}"
    );

    // A client packet for a layer-1 node reaches that node, from the gateway.
    let topology = net.topology().await;
    let first = topology.layers[0][0].id;
    let packet: Vec<u8> = (0..PACKET_SIZE).map(|_| net.rng.random()).collect();
    connection.send_packet(first, packet.clone()).await.unwrap();
    let mix = net.mixes.iter_mut().find(|m| m.id == first).unwrap();
    let received = tokio::time::timeout(WAIT, mix.incoming.recv())
        .await
        .expect("the packet reaches layer 1")
        .unwrap();
    assert_eq!(received.from, PeerId(gw.id.0));
    assert_eq!(received.packet, packet);
    // A first hop outside layer 1 is dropped, and counted.
    let not_layer1 = topology.layers[2][0].id;
    connection.send_packet(not_layer1, packet).await.unwrap();
    gw.await_metric(r#"gateway_messages_dropped_total{reason="not_layer1"}"#, 1)
        .await;

    let text = gw.metrics();
    assert!(
        text.contains("gateway_client_auth_refused_total 1"),
        "{text}"
    );
    assert!(
        text.contains("gateway_client_authenticated_total 1"),
        "{text}"
    );
    assert!(text.contains("gateway_packets_forwarded_total 1"), "{text}");
    assert!(text.contains("gateway_sessions 1"), "{text}");
    assert!(text.contains("gateway_loop_cover_sent_total 0"), "{text}");
    promtool_check(&text);

    // SIGTERM: the client is told `shutdown`, the process exits cleanly,
    // within a second.
    #[allow(clippy::disallowed_methods)] // timing the exit
    let signalled = std::time::Instant::now();
    gw.signal(Signal::SIGTERM);
    let end = tokio::time::timeout(WAIT, connection.next_delivery()).await;
    assert_eq!(end.unwrap(), None);
    assert_eq!(connection.close_reason(), Some(CloseReason::Shutdown));
    assert!(gw.wait(), "clean exit on SIGTERM");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
}

/// A final-hop packet for `client` carrying `frame`, built over the route [gateway].
fn final_hop_packet(
    rng: &mut ChaCha20Rng,
    topology: &Topology,
    gateway: NodeId,
    client: &SphinxKeyPair,
    frame: &Frame,
) -> Vec<u8> {
    let hop = topology.hop(&gateway).expect("the gateway is listed");
    build_packet(
        rng,
        &[hop],
        &[Duration::ZERO],
        sphinx_packet::route::DestinationAddressBytes::from_bytes(client.public().to_bytes()),
        [0; SURB_ID_SIZE],
        &frame.encode().unwrap(),
    )
    .unwrap()
    .bytes
}

/// A forward frame sealed to `to`, whose SURB-ack goes back through the
/// three layers to `gateway`.
fn forward_frame(
    rng: &mut ChaCha20Rng,
    topology: &Topology,
    gateway: NodeId,
    to: &SphinxKeyPair,
    content: &SealedContent,
) -> Frame {
    let route: Vec<_> = topology
        .layers
        .iter()
        .map(|layer| layer[0].hop())
        .chain(topology.hop(&gateway))
        .collect();
    let sender = SphinxKeyPair::generate(rng);
    let (surb_ack, _recovery) = build_surb(
        rng,
        &route,
        &[Duration::ZERO; 4],
        sphinx_packet::route::DestinationAddressBytes::from_bytes(sender.public().to_bytes()),
    )
    .unwrap();
    Frame::Forward(ForwardFrame::seal(content, &to.public(), surb_ack.0, rng).unwrap())
}

/// A data fragment of "hello bob".
fn hello_bob() -> SealedContent {
    let fragment = fragment_message(MessageId([7; 16]), b"hello bob")
        .unwrap()
        .remove(0);
    SealedContent::Data {
        lifetime: None,
        fragment,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_hop_messages_are_stored_delivered_and_survive_a_kill_exactly_once() {
    let mut net = Net::start(2).await;
    let config = net.init_gateway();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);
    let bob = SphinxKeyPair::generate(&mut net.rng);
    let topology = net.topology().await;
    assert_eq!(
        topology.entry(&gw.id).unwrap().client_address,
        Some(gw.clients)
    );

    // Online: pushed at once, taken, never stored.
    let connection = QuicGatewayLink::connect(gw.clients, gw.id, &bob)
        .await
        .unwrap();
    let frame = forward_frame(&mut net.rng, &topology, gw.id, &bob, &hello_bob());
    let packet = final_hop_packet(&mut net.rng, &topology, gw.id, &bob, &frame);
    net.mixes[0]
        .endpoint
        .send(PeerId(gw.id.0), gw.node, packet)
        .unwrap();
    let GatewayDelivery {
        mailbox_id: id,
        surb_id: surb,
        payload,
    } = tokio::time::timeout(WAIT, connection.next_delivery())
        .await
        .expect("delivered while online")
        .unwrap();
    assert_eq!(surb.0, [0; SURB_ID_SIZE]);
    assert_eq!(payload.len(), DELIVERY_PAYLOAD_SIZE);
    let Frame::Forward(sent) = &frame else {
        panic!("a forward frame");
    };
    assert_eq!(
        payload,
        sent.delivery_payload(),
        "the sealed body, as it came"
    );
    assert_eq!(
        ForwardFrame::open(bob.secret(), &payload).unwrap(),
        hello_bob()
    );
    connection.ack(id).await.unwrap();
    // Once taken, the SURB-ack leaves for the first layer-1 node (at the
    // end of its hold).
    let first = topology.layers[0][0].id;
    let mix = net.mixes.iter_mut().find(|m| m.id == first).unwrap();
    let ack = tokio::time::timeout(WAIT, mix.incoming.recv())
        .await
        .expect("the SURB-ack reaches layer 1")
        .unwrap();
    assert_eq!(ack.from, PeerId(gw.id.0));
    assert_eq!(ack.packet.len(), PACKET_SIZE);
    gw.await_metric("gateway_mailbox_taken_unstored_total", 1)
        .await;
    assert_eq!(gw.metric("gateway_mailbox_stored_total"), 0);
    assert_eq!(gw.metric("gateway_surb_acks_sent_total"), 1);
    connection.close().await;

    // Offline: stored durably, then the gateway is killed.
    let loop_cover = SealedContent::LoopCover { id: [3; 16] };
    let frame = forward_frame(&mut net.rng, &topology, gw.id, &bob, &loop_cover);
    let packet = final_hop_packet(&mut net.rng, &topology, gw.id, &bob, &frame);
    net.mixes[0]
        .endpoint
        .send(PeerId(gw.id.0), gw.node, packet.clone())
        .unwrap();
    gw.await_metric("gateway_mailbox_messages", 1).await;
    gw.signal(Signal::SIGKILL);
    assert!(!gw.wait(), "killed");

    let gw = GatewayProcess::start(&config);
    assert_eq!(
        gw.metric("gateway_mailbox_messages"),
        1,
        "the gauge is right after a restart"
    );
    // The same packet again is a replay, even across the crash. (A packet
    // written on the stand-in's link before it noticed the crash is lost
    // with the old connection, so it is sent until one arrives.)
    let mut replays = 0;
    for _ in 0..50 {
        net.mixes[0]
            .endpoint
            .send(PeerId(gw.id.0), gw.node, packet.clone())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        replays = gw.metric("gateway_replays_total");
        if replays > 0 {
            break;
        }
    }
    assert!(replays > 0, "the replayed packet was refused");
    assert_eq!(
        gw.metric("gateway_mailbox_stored_total"),
        0,
        "nothing new stored"
    );

    let connection = QuicGatewayLink::connect(gw.clients, gw.id, &bob)
        .await
        .unwrap();
    let GatewayDelivery {
        mailbox_id: second,
        payload,
        ..
    } = tokio::time::timeout(WAIT, connection.next_delivery())
        .await
        .expect("delivered on reconnect")
        .unwrap();
    assert!(second > id, "ids grow across restarts");
    assert_eq!(
        ForwardFrame::open(bob.secret(), &payload).unwrap(),
        loop_cover
    );
    connection.ack(second).await.unwrap();
    gw.await_metric("gateway_mailbox_messages", 0).await;
    // Exactly once: nothing else comes.
    let more = tokio::time::timeout(Duration::from_millis(300), connection.next_delivery()).await;
    assert!(more.is_err(), "no second delivery: {more:?}");
    let text = gw.metrics();
    assert!(
        text.contains("gateway_mailbox_delivered_total 1\n"),
        "{text}"
    );
    gw.signal(Signal::SIGTERM);
    assert!(gw.wait());
}

fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required when CI is set"
        );
        eprintln!("promtool not installed; skipping the exposition check");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_others_are_served() {
    let mut net = Net::start(3).await;
    let config = net.init_gateway();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("session_queue = 256", "session_queue = 2");
    std::fs::write(&config, text).unwrap();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);
    let topology = net.topology().await;
    let carol = SphinxKeyPair::generate(&mut net.rng);
    let bob = SphinxKeyPair::generate(&mut net.rng);

    // Carol authenticates, then never reads: her receive window holds under
    // two messages, so the gateway's writes to her stall (session queue: 2).
    let slow = raw_authenticate(&gw, &carol, &carol, 4096).await;
    assert_eq!(slow.answer, GatewayMessage::Welcome);
    let connection = QuicGatewayLink::connect(gw.clients, gw.id, &bob)
        .await
        .unwrap();
    gw.await_metric("gateway_sessions", 2).await;
    // One message at a time, so that each is its own write to her.
    for stored in 1..=8 {
        let frame = forward_frame(&mut net.rng, &topology, gw.id, &carol, &hello_bob());
        let packet = final_hop_packet(&mut net.rng, &topology, gw.id, &carol, &frame);
        net.mixes[0]
            .endpoint
            .send(PeerId(gw.id.0), gw.node, packet)
            .unwrap();
        gw.await_metric("gateway_mailbox_stored_total", stored)
            .await;
    }
    // Her write queue filled: her session is closed; her messages, pushed but
    // never acknowledged, stay for her next session.
    gw.await_metric("gateway_sessions", 1).await;
    assert_eq!(gw.metric("gateway_client_sessions_too_slow_total"), 1);
    assert_eq!(gw.metric("gateway_mailbox_messages"), 8);
    // Bob is served as before.
    let frame = forward_frame(&mut net.rng, &topology, gw.id, &bob, &hello_bob());
    let packet = final_hop_packet(&mut net.rng, &topology, gw.id, &bob, &frame);
    net.mixes[0]
        .endpoint
        .send(PeerId(gw.id.0), gw.node, packet)
        .unwrap();
    let GatewayDelivery { mailbox_id: id, .. } =
        tokio::time::timeout(WAIT, connection.next_delivery())
            .await
            .expect("bob's message arrives")
            .unwrap();
    connection.ack(id).await.unwrap();
    gw.await_metric("gateway_mailbox_messages", 8).await;
    drop(slow);
}

/// Abuse of a real gateway process over QUIC: floods, a client that never
/// reads, slow peers (docs/reliability.md).
mod abuse;

/// `gateway <args…>` run to completion: its status, stdout and stderr.
fn gateway_command(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn invite_code(text: &str) -> [u8; 16] {
    bs58::decode(text.trim())
        .into_vec()
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gateway_serves_enrolled_clients_only_and_revocation_takes_effect() {
    let mut net = Net::start(11).await;
    let config = net.init_gateway();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("admission = \"open\"", "admission = \"closed\"");
    std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap();
    // Two invites before the gateway runs.
    let (ok, codes, _) = gateway_command(&["invite", "--config", config_arg, "--count", "2"]);
    assert!(ok);
    let codes: Vec<[u8; 16]> = codes.lines().map(invite_code).collect();
    assert_eq!(codes.len(), 2);
    let gw = GatewayProcess::start(&config);
    let (alice, bob, carol) = (
        SphinxKeyPair::generate(&mut net.rng),
        SphinxKeyPair::generate(&mut net.rng),
        SphinxKeyPair::generate(&mut net.rng),
    );
    let not_registered = |r: Result<QuicGatewayLink, GatewayLinkError>| {
        matches!(
            r,
            Err(GatewayLinkError::Refused(CloseReason::NotRegistered))
        )
    };

    // No invite: refused. An issued one: served; then without one too.
    assert!(not_registered(
        QuicGatewayLink::connect(gw.clients, gw.id, &alice).await
    ));
    let link = QuicGatewayLink::connect_enrolling(gw.clients, gw.id, &alice, Some(codes[0]))
        .await
        .unwrap();
    link.close().await;
    let link = QuicGatewayLink::connect(gw.clients, gw.id, &alice)
        .await
        .unwrap();
    link.close().await;
    // The same invite again, for another key: refused.
    assert!(not_registered(
        QuicGatewayLink::connect_enrolling(gw.clients, gw.id, &bob, Some(codes[0])).await
    ));
    // An invite issued while the gateway runs is taken up.
    let (ok, code, _) = gateway_command(&["invite", "--config", config_arg]);
    assert!(ok);
    let late = invite_code(&code);
    let mut served = None;
    for _ in 0..50 {
        let r = QuicGatewayLink::connect_enrolling(gw.clients, gw.id, &carol, Some(late)).await;
        if let Ok(link) = r {
            served = Some(link);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.expect("a new invite serves").close().await;

    // Revoked: refused from then on, invite or not.
    let key = bs58::encode(alice.public().to_bytes()).into_string();
    let (ok, _, said) = gateway_command(&["revoke", "--config", config_arg, &key]);
    assert!(ok, "{said}");
    let mut refused = false;
    for _ in 0..50 {
        if not_registered(QuicGatewayLink::connect(gw.clients, gw.id, &alice).await) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "a revoked client is refused");
    assert!(not_registered(
        QuicGatewayLink::connect_enrolling(gw.clients, gw.id, &alice, Some(codes[1])).await
    ));
    let metrics = gw.metrics();
    for line in [
        "gateway_client_enrollments_total 2",
        "gateway_clients_revoked_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    let refusals = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_client_enrollments_refused_total "))
        .unwrap();
    assert!(refusals.parse::<u64>().unwrap() >= 4, "{refusals}");
    // A typo in the key is refused with the reason.
    let (ok, _, said) = gateway_command(&["revoke", "--config", config_arg, "nonsense"]);
    assert!(!ok && said.contains("not a client key"), "{said}");
    gw.signal(Signal::SIGTERM);
    assert!(gw.wait());
}
