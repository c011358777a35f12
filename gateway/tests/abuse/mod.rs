//! Abuse of a real `gateway` process over QUIC, each attack with the bound
//! it must keep (docs/reliability.md, "Abuse"): an honest client keeps
//! being served (every one of its messages delivered, the latency printed
//! beside the same client's before the attack), the process's resident
//! memory stays under a stated bound, and every refusal is counted in
//! `/metrics`. The attackers use other loopback addresses (127.0.0.2,
//! 127.0.0.3) than the honest clients (127.0.0.1), as they would come from
//! other hosts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;

/// Messages an honest client is sent in each measured phase.
const HONEST_MESSAGES: usize = 10;
/// The series of final-hop messages refused for a full mailbox.
const MAILBOX_FULL: &str = r#"gateway_messages_dropped_total{reason="mailbox_full"}"#;
/// Bound on how much the gateway's resident memory may grow under an attack.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

/// The resident memory of process `pid` (VmRSS, KiB).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples the resident memory of `pid` every 100 ms until dropped; keeps the peak.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// The value of a labelled series, e.g. `gateway_messages_dropped_total{reason="x"}`.
fn labelled(gw: &GatewayProcess, series: &str) -> u64 {
    let prefix = format!("{series} ");
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// Messages kept: stored, or taken by their online client before they had to be.
fn kept(gw: &GatewayProcess) -> u64 {
    gw.metric("gateway_mailbox_stored_total") + gw.metric("gateway_mailbox_taken_unstored_total")
}

/// Polls `/metrics` until `series` reads at least `value`, for up to `limit`.
async fn await_at_least(gw: &GatewayProcess, series: &str, value: u64, limit: Duration) -> u64 {
    let polls = limit.as_millis() / 100;
    let mut seen = 0;
    for _ in 0..polls.max(1) {
        seen = gw.metric(series);
        if seen >= value {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} reached {seen}, not {value}:\n{}", gw.metrics());
}

/// Sends `count` messages to `client` through the first stand-in mix, one
/// every 50 ms, and takes them from `link`, acknowledging each. Returns the
/// delivery latencies (from the stand-in's send to the client's receipt).
/// Panics if one does not arrive within `WAIT`.
async fn serve_honest(
    net: &mut Net,
    gw: &GatewayProcess,
    topology: &Topology,
    client: &SphinxKeyPair,
    link: &QuicGatewayLink,
    count: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let frame = forward_frame(&mut net.rng, topology, gw.id, client, &hello_bob());
        let packet = final_hop_packet(&mut net.rng, topology, gw.id, client, &frame);
        #[allow(clippy::disallowed_methods)] // the latency is what is measured
        let sent = std::time::Instant::now();
        net.mixes[0]
            .endpoint
            .send(PeerId(gw.id.0), gw.node, packet)
            .unwrap();
        let delivery = tokio::time::timeout(WAIT, link.next_delivery())
            .await
            .expect("the honest client's message arrives")
            .expect("its session stays open");
        latencies.push(sent.elapsed());
        link.ack(delivery.mailbox_id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Reads the gateway's first message on a new connection (`None` if the
/// stream ends or errs first).
async fn first_message(connection: &quinn::Connection) -> Option<GatewayMessage> {
    let (_send, mut recv) = connection.accept_bi().await.ok()?;
    let mut decoder = LinkDecoder::<GatewayMessage>::new();
    let mut buf = vec![0u8; 4096];
    loop {
        if let Ok(Some(m)) = decoder.next_message() {
            return Some(m);
        }
        let n = recv.read(&mut buf).await.ok()??;
        decoder.push(&buf[..n]);
    }
}

/// What the connection flood saw.
#[derive(Debug, Default)]
struct FloodCounts {
    /// Connections attempted.
    attempts: AtomicU64,
    /// Sessions the gateway opened (its challenge came): held open.
    admitted: AtomicU64,
    /// Sessions refused as `source_limited`.
    source_limited: AtomicU64,
    /// Refused otherwise (another close reason).
    other_close: AtomicU64,
    /// No answer: the handshake or the stream failed or timed out.
    unanswered: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_per_source_and_counted_while_others_are_served() {
    let mut net = Net::start(11).await;
    let config = net.init_gateway();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);
    let topology = net.topology().await;
    let bob = SphinxKeyPair::generate(&mut net.rng);
    let link = QuicGatewayLink::connect(gw.clients, gw.id, &bob)
        .await
        .unwrap();
    let before = serve_honest(&mut net, &gw, &topology, &bob, &link, HONEST_MESSAGES).await;
    let rss_before = rss_kib(gw.child.id());
    let peak = RssPeak::start(gw.child.id());

    // The attacker: 16 connections in flight at any time from 127.0.0.2,
    // each a full QUIC handshake, for 6 s; sessions the gateway admits are
    // held open (they never authenticate), the others are dropped as soon
    // as refused.
    let flood_for = Duration::from_secs(6);
    let counts = Arc::new(FloodCounts::default());
    let endpoint = raw_endpoint(&gw, "127.0.0.2:0".parse().unwrap(), 1 << 16);
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    #[allow(clippy::disallowed_methods)] // the flood lasts a fixed time
    let started = std::time::Instant::now();
    for _ in 0..16 {
        let (endpoint, counts, held, clients) =
            (endpoint.clone(), counts.clone(), held.clone(), gw.clients);
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < flood_for {
                counts.attempts.fetch_add(1, Ordering::Relaxed);
                let answer = tokio::time::timeout(Duration::from_secs(5), async {
                    let connection = endpoint.connect(clients, "mixnet-node").ok()?.await.ok()?;
                    let first = first_message(&connection).await?;
                    Some((connection, first))
                })
                .await
                .ok()
                .flatten();
                match answer {
                    Some((connection, GatewayMessage::Challenge { .. })) => {
                        counts.admitted.fetch_add(1, Ordering::Relaxed);
                        held.lock().unwrap().push(connection);
                    }
                    Some((_, GatewayMessage::Close { reason })) => {
                        let counter = if reason == CloseReason::SourceLimited {
                            &counts.source_limited
                        } else {
                            &counts.other_close
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        counts.unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Meanwhile: the honest client's messages, and a new honest client.
    let during = serve_honest(&mut net, &gw, &topology, &bob, &link, HONEST_MESSAGES).await;
    let alice = SphinxKeyPair::generate(&mut net.rng);
    let newcomer = QuicGatewayLink::connect(gw.clients, gw.id, &alice).await;
    assert!(
        newcomer.is_ok(),
        "a new honest client gets in: {newcomer:?}"
    );
    for t in tasks {
        t.await.unwrap();
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let rss_peak = peak.finish();

    let attempts = counts.attempts.load(Ordering::Relaxed);
    let admitted = counts.admitted.load(Ordering::Relaxed);
    let limited = counts.source_limited.load(Ordering::Relaxed);
    let unanswered = counts.unanswered.load(Ordering::Relaxed);
    let other = counts.other_close.load(Ordering::Relaxed);
    let growth = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "connection flood: {attempts} connections in {flood_secs:.1} s from one address: \
         {admitted} admitted, {limited} refused source_limited, {other} refused otherwise, \
         {unanswered} unanswered; gateway RSS {rss_before} KiB -> peak {rss_peak} KiB \
         (+{growth} KiB); honest delivery median {:?} before, {:?} during",
        median(before.clone()),
        median(during.clone()),
    );
    // The source's burst (60) and its rate (one a second) bound what it gets.
    let allowed = 60 + flood_secs.ceil() as u64 + 1;
    assert!(
        admitted <= allowed,
        "{admitted} admitted, at most {allowed}"
    );
    assert!(limited > 0, "the flood was refused");
    assert_eq!(other, 0, "no other refusal");
    // Every refusal is counted (a refusal whose answer the attacker did
    // not wait for may be counted without being seen).
    let counted = gw.metric("gateway_client_sessions_source_limited_total");
    assert!(
        counted >= limited && counted <= limited + unanswered,
        "{counted} counted, {limited} seen, {unanswered} unanswered"
    );
    assert_bounds_kept(&during, growth);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_keeps_its_window_and_quota_while_others_are_served() {
    let mut net = Net::start(12).await;
    let config = net.init_gateway();
    // A small quota, so that the test reaches it quickly.
    let quota = 40u64;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "max_messages_per_client = 10000",
        &format!("max_messages_per_client = {quota}"),
    );
    std::fs::write(&config, text).unwrap();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);
    let topology = net.topology().await;
    let bob = SphinxKeyPair::generate(&mut net.rng);
    let link = QuicGatewayLink::connect(gw.clients, gw.id, &bob)
        .await
        .unwrap();
    let before = serve_honest(&mut net, &gw, &topology, &bob, &link, HONEST_MESSAGES).await;
    let rss_before = rss_kib(gw.child.id());
    let peak = RssPeak::start(gw.child.id());

    // Carol authenticates and never reads (a 4 KiB receive window).
    let carol = SphinxKeyPair::generate(&mut net.rng);
    let silent = raw_authenticate(&gw, &carol, &carol, 4096).await;
    assert_eq!(silent.answer, GatewayMessage::Welcome);
    let sent = 3 * quota;
    for i in 1..=sent {
        let frame = forward_frame(&mut net.rng, &topology, gw.id, &carol, &hello_bob());
        let packet = final_hop_packet(&mut net.rng, &topology, gw.id, &carol, &frame);
        net.mixes[0]
            .endpoint
            .send(PeerId(gw.id.0), gw.node, packet)
            .unwrap();
        if i % 10 == 0 {
            // In steps, so that no queue between the stand-in and the core overflows.
            let handled = HONEST_MESSAGES as u64 + i;
            for _ in 0..100 {
                if kept(&gw) + labelled(&gw, MAILBOX_FULL) >= handled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let during = serve_honest(&mut net, &gw, &topology, &bob, &link, HONEST_MESSAGES).await;
    let honest = 2 * HONEST_MESSAGES as u64;
    // Bob's messages are taken from memory (or stored if he was slow),
    // Carol's stored up to her quota.
    await_at_least(&gw, "gateway_mailbox_stored_total", quota, WAIT).await;
    let mut refused = labelled(&gw, MAILBOX_FULL);
    for _ in 0..100 {
        if refused >= sent - quota {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        refused = labelled(&gw, MAILBOX_FULL);
    }
    let rss_peak = peak.finish();
    let growth = rss_peak.saturating_sub(rss_before);
    // Acks leave a fixed hold after their message arrived.
    let acks = await_at_least(&gw, "gateway_surb_acks_sent_total", honest + quota, WAIT).await;
    let stored = kept(&gw);
    let delivered = gw.metric("gateway_mailbox_delivered_total");
    eprintln!(
        "never-reading client: {sent} sent to her, {} stored, {refused} refused mailbox_full, \
         {} pushed to her; {acks} SURB-acks sent in all; gateway RSS {rss_before} KiB -> peak \
         {rss_peak} KiB (+{growth} KiB); honest delivery median {:?} before, {:?} during",
        stored - honest,
        delivered - honest,
        median(before.clone()),
        median(during.clone()),
    );
    assert_eq!(stored, honest + quota, "her quota and no more is kept");
    assert_eq!(
        refused,
        sent - quota,
        "every message past it refused and counted"
    );
    assert_eq!(
        acks,
        honest + quota,
        "a refused message is not acknowledged"
    );
    // The delivery window: at most that many pushed to her and not acknowledged.
    let window = gateway_core::GatewayConfig::default().delivery_window as u64;
    assert!(
        delivered - honest <= window,
        "{} pushed",
        delivered - honest
    );
    assert_eq!(gw.metric("gateway_mailbox_messages"), quota);
    assert_eq!(gw.metric("gateway_client_sessions_too_slow_total"), 0);
    assert_bounds_kept(&during, growth);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sending_one_byte_a_second_are_closed_at_the_auth_timeout_and_counted() {
    let mut net = Net::start(13).await;
    let config = net.init_gateway();
    let gw = GatewayProcess::start(&config);
    net.pin_gateway(gw.id);
    let topology = net.topology().await;
    let bob = SphinxKeyPair::generate(&mut net.rng);
    let link = QuicGatewayLink::connect(gw.clients, gw.id, &bob)
        .await
        .unwrap();
    let before = serve_honest(&mut net, &gw, &topology, &bob, &link, HONEST_MESSAGES).await;
    let rss_before = rss_kib(gw.child.id());
    let peak = RssPeak::start(gw.child.id());

    // 40 peers from 127.0.0.3 each open a session, then write a genuine
    // `Authenticate` one byte a second (it would take over a minute).
    let peers = 40u64;
    let endpoint = raw_endpoint(&gw, "127.0.0.3:0".parse().unwrap(), 1 << 16);
    let closed_after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..peers {
        let (endpoint, closed_after, clients, gateway) =
            (endpoint.clone(), closed_after.clone(), gw.clients, gw.id);
        let key = SphinxKeyPair::generate(&mut net.rng);
        tasks.push(tokio::spawn(async move {
            let connection = endpoint
                .connect(clients, "mixnet-node")
                .unwrap()
                .await
                .unwrap();
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            #[allow(clippy::disallowed_methods)] // when the gateway closes is what is measured
            let opened = std::time::Instant::now();
            let mut decoder = LinkDecoder::<GatewayMessage>::new();
            let mut buf = vec![0u8; 4096];
            let challenge = loop {
                if let Some(m) = decoder.next_message().unwrap() {
                    break m;
                }
                let n = recv.read(&mut buf).await.unwrap().unwrap();
                decoder.push(&buf[..n]);
            };
            let GatewayMessage::Challenge { ephemeral, .. } = challenge else {
                panic!("peer {i}: {challenge:?}");
            };
            let message = ClientMessage::Authenticate {
                client_key: key.public().to_bytes(),
                proof: prove(key.secret(), &gateway, &ephemeral),
            }
            .encode();
            // Writes a byte a second; reads what the gateway says meanwhile.
            let writer = async {
                for byte in &message {
                    if send.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            let reader = async {
                loop {
                    if let Some(m) = decoder.next_message().ok().flatten() {
                        return Some(m);
                    }
                    match recv.read(&mut buf).await {
                        Ok(Some(n)) => decoder.push(&buf[..n]),
                        _ => return None,
                    }
                }
            };
            let answer = tokio::select! {
                answer = reader => answer,
                _ = writer => None,
            };
            closed_after
                .lock()
                .unwrap()
                .push((opened.elapsed(), answer));
        }));
    }
    // Meanwhile the honest client is served.
    await_at_least(&gw, "gateway_sessions", peers + 1, Duration::from_secs(10)).await;
    let during = serve_honest(&mut net, &gw, &topology, &bob, &link, HONEST_MESSAGES).await;
    for t in tasks {
        t.await.unwrap();
    }
    let rss_peak = peak.finish();
    let growth = rss_peak.saturating_sub(rss_before);
    let closed = std::mem::take(&mut *closed_after.lock().unwrap());
    let longest = closed.iter().map(|(d, _)| *d).max().unwrap_or_default();
    let shortest = closed.iter().map(|(d, _)| *d).min().unwrap_or_default();
    eprintln!(
        "slow peers: {peers} peers writing a byte a second, closed after {shortest:?} to \
         {longest:?}; gateway RSS {rss_before} KiB -> peak {rss_peak} KiB (+{growth} KiB); \
         honest delivery median {:?} before, {:?} during",
        median(before.clone()),
        median(during.clone()),
    );
    for (after, answer) in closed.iter() {
        assert_eq!(
            *answer,
            Some(GatewayMessage::Close {
                reason: CloseReason::AuthTimeout
            }),
            "closed as too slow to authenticate"
        );
        // The auth timeout is 10 s; the rest is the loaded machine's slack.
        assert!(*after < Duration::from_secs(20), "closed after {after:?}");
    }
    assert_eq!(closed.len() as u64, peers);
    let counted = await_at_least(&gw, "gateway_client_auth_timeouts_total", peers, WAIT).await;
    assert_eq!(counted, peers, "every one counted");
    assert_eq!(
        gw.metric("gateway_client_authenticated_total"),
        1,
        "only bob"
    );
    assert_bounds_kept(&during, growth);
}

/// The bounds every attack must keep: each honest message delivered during
/// it, and the gateway's resident memory grown by less than the bound.
fn assert_bounds_kept<T>(during: &[T], growth: u64) {
    assert_eq!(
        during.len(),
        HONEST_MESSAGES,
        "every honest message delivered"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "the gateway grew by {growth} KiB"
    );
}
