//! Two streams joined by a virtual link that loses, reorders and
//! duplicates segments, on a virtual clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use protocol::Timestamp;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use stream_core::frame::{FLAG_ACK, FLAG_SYN};
use stream_core::{
    ResetReason, Segment, SegmentOutcome, Stream, StreamConfig, StreamEvent, StreamId,
    StreamMessage, StreamState, Target,
};

fn target() -> Target {
    Target::Domain("example.org".into(), 80)
}

fn config() -> StreamConfig {
    StreamConfig {
        max_segment_data: 100,
        send_buffer: 4000,
        receive_window: 3000,
        initial_rto: Duration::from_secs(2),
        min_rto: Duration::from_millis(500),
        max_rto: Duration::from_secs(8),
        max_retransmissions: 30,
        ack_delay: Duration::from_millis(50),
        keepalive: Duration::from_secs(5),
        dead_after: Duration::from_secs(60),
    }
}

/// A virtual link: each segment is lost with `loss`, duplicated with `dup`,
/// and delayed uniformly in [50, 50 + jitter] ms (so reordered).
struct Link {
    loss: f64,
    dup: f64,
    jitter_ms: u64,
    rng: ChaCha20Rng,
    /// (arrival, to the acceptor?, encoded message)
    flying: Vec<(Timestamp, bool, Vec<u8>)>,
}

impl Link {
    fn new(seed: u64, loss: f64, dup: f64, jitter_ms: u64) -> Self {
        Link {
            loss,
            dup,
            jitter_ms,
            rng: ChaCha20Rng::seed_from_u64(seed),
            flying: Vec::new(),
        }
    }

    fn carry(&mut self, now: Timestamp, to_acceptor: bool, seg: Segment) {
        // Through the wire format, as the shells do.
        let bytes = StreamMessage {
            surbs: None,
            segments: vec![seg],
        }
        .encode();
        let copies = if self.rng.random_bool(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let delay = 50 + self.rng.random_range(0..=self.jitter_ms);
            self.flying.push((
                now.saturating_add(Duration::from_millis(delay)),
                to_acceptor,
                bytes.clone(),
            ));
        }
    }

    fn arrivals(&mut self, now: Timestamp) -> Vec<(bool, Segment)> {
        let (due, rest): (Vec<_>, Vec<_>) = self.flying.drain(..).partition(|(t, _, _)| *t <= now);
        self.flying = rest;
        due.into_iter()
            .flat_map(|(_, to, bytes)| {
                StreamMessage::decode(&bytes)
                    .unwrap()
                    .segments
                    .into_iter()
                    .map(move |s| (to, s))
            })
            .collect()
    }
}

/// Opener and acceptor, stepped every 10 ms of virtual time.
struct Pair {
    now: Timestamp,
    opener: Stream,
    acceptor: Option<Stream>,
    link: Link,
    /// What the acceptor does with the SYN: accept, or refuse with a reason.
    refuse: Option<ResetReason>,
    received_by_acceptor: Vec<u8>,
    received_by_opener: Vec<u8>,
    /// Whether the opener's application reads.
    opener_reads: bool,
}

impl Pair {
    fn new(link: Link) -> Self {
        let now = Timestamp::from_millis(1000);
        Pair {
            now,
            opener: Stream::open(StreamId([1; 16]), target(), config(), now),
            acceptor: None,
            link,
            refuse: None,
            received_by_acceptor: Vec::new(),
            received_by_opener: Vec::new(),
            opener_reads: true,
        }
    }

    fn step(&mut self) {
        self.now = self.now.saturating_add(Duration::from_millis(10));
        let now = self.now;
        for (to_acceptor, seg) in self.link.arrivals(now) {
            if to_acceptor {
                match &mut self.acceptor {
                    Some(a) => {
                        a.handle_segment(now, &seg);
                    }
                    None => {
                        let mut a = Stream::accept_syn(&seg, config(), now).expect("a SYN");
                        assert_eq!(a.target(), Some(&target()));
                        match self.refuse {
                            Some(r) => a.reset(r),
                            None => a.accept(),
                        }
                        self.acceptor = Some(a);
                    }
                }
            } else {
                self.opener.handle_segment(now, &seg);
            }
        }
        while let Some(seg) = self.opener.poll_segment(now, 100) {
            self.link.carry(now, true, seg);
        }
        if let Some(a) = &mut self.acceptor {
            while let Some(seg) = a.poll_segment(now, 100) {
                self.link.carry(now, false, seg);
            }
            let mut buf = [0u8; 256];
            loop {
                let n = a.read(&mut buf);
                if n == 0 {
                    break;
                }
                self.received_by_acceptor.extend_from_slice(&buf[..n]);
            }
        }
        if self.opener_reads {
            let mut buf = [0u8; 256];
            loop {
                let n = self.opener.read(&mut buf);
                if n == 0 {
                    break;
                }
                self.received_by_opener.extend_from_slice(&buf[..n]);
            }
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) -> Duration {
        let start = self.now;
        while !done(self) {
            assert!(
                self.now.saturating_duration_since(start) < limit,
                "not done after {limit:?}: opener {:?}, acceptor {:?}",
                self.opener.state(),
                self.acceptor.as_ref().map(Stream::state)
            );
            self.step();
        }
        self.now.saturating_duration_since(start)
    }

    fn acceptor(&mut self) -> &mut Stream {
        self.acceptor.as_mut().unwrap()
    }
}

/// Writes `up` from the opener and `down` from the acceptor, closes both,
/// and runs until both streams are closed.
fn transfer(pair: &mut Pair, up: &[u8], down: &[u8], limit: Duration) {
    pair.run_until(Duration::from_secs(60), |p| {
        p.opener.state() == StreamState::Open && p.acceptor.is_some()
    });
    let (mut up_at, mut down_at) = (0, 0);
    pair.run_until(limit, |p| {
        if up_at < up.len() {
            up_at += p.opener.write(&up[up_at..]).unwrap();
        } else {
            p.opener.close();
        }
        let a = p.acceptor();
        if down_at < down.len() {
            down_at += a.write(&down[down_at..]).unwrap();
        } else {
            a.close();
        }
        p.opener.state() == StreamState::Closed && p.acceptor().state() == StreamState::Closed
    });
    assert_eq!(pair.received_by_acceptor, up);
    assert_eq!(pair.received_by_opener, down);
    assert!(pair.opener.at_eof());
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

#[test]
fn open_transfer_and_close_on_a_clean_link() {
    let mut pair = Pair::new(Link::new(1, 0.0, 0.0, 0));
    transfer(
        &mut pair,
        &data(1, 5_000),
        &data(2, 20_000),
        Duration::from_secs(30),
    );
    assert_eq!(pair.opener.stats().retransmissions, 0);
    assert_eq!(pair.acceptor().stats().retransmissions, 0);
    assert_eq!(pair.opener.poll_event(), Some(StreamEvent::Opened));
}

#[test]
fn a_refused_stream_tells_the_opener_why() {
    let mut pair = Pair::new(Link::new(2, 0.0, 0.0, 0));
    pair.refuse = Some(ResetReason::NotAllowed);
    let took = pair.run_until(Duration::from_secs(5), |p| p.opener.state().is_terminal());
    assert!(took < Duration::from_secs(1));
    assert_eq!(
        pair.opener.state(),
        StreamState::Reset(ResetReason::NotAllowed)
    );
    assert_eq!(
        pair.opener.poll_event(),
        Some(StreamEvent::Reset(ResetReason::NotAllowed))
    );
    assert!(pair.opener.write(b"x").is_err());
}

#[test]
fn lost_segments_are_sent_again_after_the_timeout() {
    let mut pair = Pair::new(Link::new(3, 0.2, 0.0, 0));
    transfer(
        &mut pair,
        &data(3, 3_000),
        &data(4, 10_000),
        Duration::from_secs(300),
    );
    let sent_again = pair.opener.stats().retransmissions + pair.acceptor().stats().retransmissions;
    assert!(sent_again > 0);
}

#[test]
fn the_sender_keeps_within_the_receivers_window() {
    let mut pair = Pair::new(Link::new(4, 0.0, 0.0, 0));
    pair.opener_reads = false;
    pair.run_until(Duration::from_secs(10), |p| {
        p.opener.state() == StreamState::Open && p.acceptor.is_some()
    });
    let big = data(5, 20_000);
    let mut at = 0;
    pair.run_until(Duration::from_secs(20), |p| {
        at += p.acceptor().write(&big[at..]).unwrap();
        p.now > Timestamp::from_millis(15_000)
    });
    // The opener read nothing: it holds exactly its window, never more.
    assert_eq!(pair.opener.readable_len(), config().receive_window);
    assert_eq!(pair.opener.stats().beyond_window, 0);
    // Reading reopens the window and the rest flows.
    pair.opener_reads = true;
    pair.run_until(Duration::from_secs(60), |p| {
        at += p.acceptor().write(&big[at..]).unwrap();
        p.received_by_opener.len() == big.len()
    });
    assert_eq!(pair.received_by_opener, big);
}

#[test]
fn a_silent_peer_times_the_stream_out_within_dead_after() {
    let mut pair = Pair::new(Link::new(5, 0.0, 0.0, 0));
    pair.run_until(Duration::from_secs(10), |p| {
        p.opener.state() == StreamState::Open && p.acceptor.is_some()
    });
    pair.run_until(Duration::from_secs(5), |p| {
        !p.received_by_opener.is_empty() || {
            p.acceptor().write(b"hello").unwrap();
            false
        }
    });
    // The acceptor disappears (its process is killed).
    pair.acceptor = None;
    pair.link.loss = 1.0;
    let took = pair.run_until(Duration::from_secs(120), |p| p.opener.state().is_terminal());
    assert_eq!(pair.opener.state(), StreamState::TimedOut);
    // Counted from the last segment heard, which may still have been on the link.
    assert!(
        took <= config().dead_after + Duration::from_millis(100),
        "{took:?}"
    );
    assert!(pair.opener.stats().probes_sent >= 1);
    // It said so to the peer (one RST, already handed out by `step`), and
    // sends nothing more.
    assert!(pair.opener.poll_segment(pair.now, 100).is_none());
    assert_eq!(pair.opener.poll_timeout(), None);
}

#[test]
fn an_idle_stream_stays_open_through_keepalives() {
    let mut pair = Pair::new(Link::new(6, 0.0, 0.0, 0));
    pair.run_until(Duration::from_secs(10), |p| {
        p.opener.state() == StreamState::Open && p.acceptor.is_some()
    });
    let start = pair.now;
    pair.run_until(Duration::from_secs(200), |p| {
        p.now.saturating_duration_since(start) > Duration::from_secs(150)
    });
    assert_eq!(pair.opener.state(), StreamState::Open);
    assert!(pair.opener.stats().probes_sent > 0);
}

#[test]
fn hostile_segments_are_counted_not_believed() {
    let now = Timestamp::from_millis(0);
    let mut s = Stream::open(StreamId([9; 16]), target(), config(), now);
    let syn = s.poll_segment(now, 100).unwrap();
    assert!(syn.has(FLAG_SYN));
    let mut a = Stream::accept_syn(&syn, config(), now).unwrap();
    a.accept();
    let syn_ack = a.poll_segment(now, 100).unwrap();
    assert_eq!(s.handle_segment(now, &syn_ack), SegmentOutcome::Accepted);
    // An ack of bytes never sent.
    let mut bad = syn_ack.clone();
    bad.flags = FLAG_ACK;
    bad.seq = 1;
    bad.ack = 1_000_000;
    s.handle_segment(now, &bad);
    assert_eq!(s.stats().bad_acks, 1);
    // Data far beyond the window.
    let mut far = syn_ack.clone();
    far.flags = FLAG_ACK;
    far.ack = 1;
    far.seq = 1_000_000;
    far.data = vec![1; 10];
    assert_eq!(s.handle_segment(now, &far), SegmentOutcome::BeyondWindow);
    assert_eq!(s.stats().beyond_window, 1);
    assert_eq!(s.readable_len(), 0);
    // A segment at u64::MAX does not overflow anything.
    far.seq = u64::MAX;
    s.handle_segment(now, &far);
    // A SYN without a target, or with ACK, opens nothing.
    let mut no_target = syn.clone();
    no_target.target = None;
    assert!(Stream::accept_syn(&no_target, config(), now).is_none());
    assert!(Stream::accept_syn(&syn_ack, config(), now).is_none());
}

#[test]
fn targets_of_every_kind_reach_the_acceptor() {
    for t in [
        Target::Ip("192.0.2.1:443".parse::<SocketAddr>().unwrap()),
        Target::Ip("[2001:db8::1]:8080".parse::<SocketAddr>().unwrap()),
        Target::Domain("files.example".into(), 21),
    ] {
        let now = Timestamp::ZERO;
        let mut s = Stream::open(StreamId([3; 16]), t.clone(), config(), now);
        let syn = s.poll_segment(now, 100).unwrap();
        let bytes = StreamMessage {
            surbs: None,
            segments: vec![syn],
        }
        .encode();
        let syn = StreamMessage::decode(&bytes).unwrap().segments.remove(0);
        let a = Stream::accept_syn(&syn, config(), now).unwrap();
        assert_eq!(a.target(), Some(&t));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the loss, duplication and reordering, both directions
    /// arrive whole and in order, and both ends close.
    #[test]
    fn streams_survive_loss_duplication_and_reordering(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        dup in 0.0f64..0.3,
        jitter in 0u64..400,
        up in 0usize..3000,
        down in 0usize..8000,
    ) {
        let mut pair = Pair::new(Link::new(seed, loss, dup, jitter));
        transfer(&mut pair, &data(seed, up), &data(seed ^ 1, down), Duration::from_secs(900));
    }

    /// Random segments thrown at an open stream never panic it, and never
    /// put more than the window in its buffers.
    #[test]
    fn random_segments_never_panic(
        segs in proptest::collection::vec(
            (0u8..0x20, any::<u64>(), any::<u64>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300), 0u64..5000),
            1..40,
        ),
    ) {
        let now = Timestamp::from_millis(0);
        let mut s = Stream::open(StreamId([9; 16]), target(), config(), now);
        let syn = s.poll_segment(now, 100).unwrap();
        let mut a = Stream::accept_syn(&syn, config(), now).unwrap();
        a.accept();
        s.handle_segment(now, &a.poll_segment(now, 100).unwrap());
        let mut t = now;
        for (flags, seq, ack, window, data, small) in segs {
            t = t.saturating_add(Duration::from_millis(7));
            let seg = Segment {
                stream: StreamId([9; 16]),
                flags: flags & !0x08,
                seq: if seq % 2 == 0 { small } else { seq },
                ack: if ack % 2 == 0 { ack % 10 } else { ack },
                window,
                target: None,
                reason: None,
                data,
            };
            s.handle_segment(t, &seg);
            let _ = s.write(&[7; 50]);
            while s.poll_segment(t, 100).is_some() {}
            prop_assert!(s.readable_len() <= config().receive_window);
        }
    }
}

#[test]
fn a_retransmission_waits_for_a_message_with_room_for_it() {
    let t0 = Timestamp::from_millis(1_000);
    let mut opener = Stream::open(StreamId([7; 16]), target(), config(), t0);
    let syn = opener.poll_segment(t0, 100).unwrap();
    let mut acceptor = Stream::accept_syn(&syn, config(), t0).unwrap();
    acceptor.accept();
    let syn_ack = acceptor.poll_segment(t0, 100).unwrap();
    opener.handle_segment(t0, &syn_ack);
    assert_eq!(opener.state(), StreamState::Open);
    assert_eq!(opener.write(&data(9, 100)).unwrap(), 100);
    let first = opener.poll_segment(t0, 100).unwrap();
    assert_eq!(first.data.len(), 100);
    // Lost. After the timeout it is due, but a message with room for 10
    // bytes gets neither it nor a cut copy of it.
    let later = t0.saturating_add(Duration::from_secs(3));
    if let Some(seg) = opener.poll_segment(later, 10) {
        assert!(
            seg.data.len() <= 10,
            "{} bytes in room for 10",
            seg.data.len()
        );
        assert_ne!(seg.seq, first.seq, "the retransmission was cut");
    }
    assert_eq!(opener.stats().retransmissions, 0);
    // With room, the same bytes go again.
    let again = opener.poll_segment(later, 100).unwrap();
    assert_eq!((again.seq, &again.data), (first.seq, &first.data));
    assert_eq!(opener.stats().retransmissions, 1);
}
