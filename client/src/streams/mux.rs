//! The task that carries the streams of one client: it owns the client's
//! incoming messages, hands segments to each stream's state machine, and
//! sends what the streams want to send as end-to-end messages (the opener's
//! with reply SURBs, the exit's through them).
//!
//! Each stream's [`Stream`] sits behind a mutex shared with the
//! application's [`MixStream`] (as `quinn` shares a connection's state with
//! its streams): the application reads and writes the buffers directly, and
//! wakes the task when there is something to send.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use client_core::envelope::Envelope;
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::{ClientAddress, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stream_core::frame::{FLAG_ACK, FLAG_RST, FLAG_SYN, MESSAGE_HEADER_LEN, SEGMENT_HEADER_LEN};
use stream_core::{
    EndedStreams, ResetReason, Segment, Stream, StreamEvent, StreamId, StreamMessage, StreamState,
    SurbReport, Target,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::{StreamOptions, StreamShellStats};
use crate::Pseudonym;
use crate::shell::{Client, ReceivedMessage, ReplyPath};

/// Bytes an end-to-end session adds to a message at most (a ratchet message
/// with the signed address claim; docs/e2ee.md, "Costs").
const SESSION_OVERHEAD: usize = 260;

/// Shortest sleep of the task between two rounds of timers.
const MIN_WAKE: Duration = Duration::from_millis(5);

/// One stream's state, shared between the task and the application.
struct Slot {
    stream: Stream,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// The opener's wait for the exit's answer.
    opened: Option<oneshot::Sender<Result<(), ResetReason>>>,
    /// Exit side: reply paths of the opener's messages, oldest first.
    surbs: Vec<ReplyPath>,
    /// Exit side: SURBs received for this stream since it opened.
    surbs_received: u32,
    /// Opener side: SURBs sent with this stream's messages.
    surbs_given: u32,
    /// Opener side: the exit's latest report.
    report: SurbReport,
    /// When the oldest byte not yet in a segment was written (exit side: it
    /// waits a little for more, to fill its replies).
    waiting_since: Option<Instant>,
    /// When the stream ended (kept a little to answer a repeated FIN).
    ended_at: Option<Instant>,
    /// The exit's peer (its session identity), for the per-peer cap.
    peer: Option<crate::PeerIdentityKey>,
    /// Opener side: the pseudonym the stream's messages go under, so that
    /// the exit cannot link it to this client or to its other streams.
    pseudonym: Option<Pseudonym>,
}

impl Slot {
    fn new(stream: Stream) -> Self {
        Slot {
            stream,
            read_waker: None,
            write_waker: None,
            opened: None,
            surbs: Vec::new(),
            surbs_received: 0,
            surbs_given: 0,
            report: SurbReport::default(),
            waiting_since: None,
            ended_at: None,
            peer: None,
            pseudonym: None,
        }
    }

    fn surbs_left(&self) -> usize {
        self.surbs.iter().map(ReplyPath::surbs_left).sum()
    }

    /// Passes the stream's events on: wakes the application, answers `connect`.
    fn pass_events(&mut self) {
        while let Some(event) = self.stream.poll_event() {
            match event {
                StreamEvent::Opened => {
                    if let Some(tx) = self.opened.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                StreamEvent::Reset(reason) => {
                    if let Some(tx) = self.opened.take() {
                        let _ = tx.send(Err(reason));
                    }
                }
                StreamEvent::TimedOut => {
                    if let Some(tx) = self.opened.take() {
                        let _ = tx.send(Err(ResetReason::TimedOut));
                    }
                }
                StreamEvent::Readable
                | StreamEvent::Writable
                | StreamEvent::PeerFinished
                | StreamEvent::Closed => {}
            }
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
            if let Some(w) = self.write_waker.take() {
                w.wake();
            }
        }
    }
}

type Shared = Arc<Mutex<Slot>>;

fn lock(slot: &Shared) -> MutexGuard<'_, Slot> {
    // A poisoned lock only means a panic elsewhere; the state is still whole.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open stream through the mixnet: ordered, reliable bytes
/// (`AsyncRead + AsyncWrite`). Shutting down the write side sends a FIN;
/// dropping it does the same. A reset or a timed-out peer reads and writes
/// as an I/O error.
pub struct MixStream {
    slot: Shared,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for MixStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixStream")
            .field("state", &lock(&self.slot).stream.state())
            .finish()
    }
}

fn io_error(state: StreamState) -> Option<io::Error> {
    match state {
        StreamState::Reset(reason) => Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("stream reset: {reason:?}"),
        )),
        StreamState::TimedOut => Some(io::Error::new(
            io::ErrorKind::TimedOut,
            "the stream's peer stopped answering",
        )),
        _ => None,
    }
}

impl MixStream {
    /// The stream's state now.
    pub fn state(&self) -> StreamState {
        lock(&self.slot).stream.state()
    }

    /// Resets the stream: the peer is told `reason`, buffered bytes are dropped.
    pub fn reset(&self, reason: ResetReason) {
        lock(&self.slot).stream.reset(reason);
        self.wake.notify_one();
    }
}

impl AsyncRead for MixStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut slot = lock(&self.slot);
        let n = slot.stream.read(buf.initialize_unfilled());
        if n > 0 {
            buf.advance(n);
            drop(slot);
            // Reading may reopen the window: the task decides whether to say so.
            self.wake.notify_one();
            return Poll::Ready(Ok(()));
        }
        if slot.stream.at_eof() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = io_error(slot.stream.state()) {
            return Poll::Ready(Err(e));
        }
        if slot.stream.state() == StreamState::Closed {
            return Poll::Ready(Ok(()));
        }
        slot.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for MixStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut slot = lock(&self.slot);
        if let Some(e) = io_error(slot.stream.state()) {
            return Poll::Ready(Err(e));
        }
        match slot.stream.write(data) {
            Ok(0) if !data.is_empty() => {
                slot.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Ok(n) => {
                if slot.waiting_since.is_none() {
                    slot.waiting_since = Some(Instant::now());
                }
                drop(slot);
                self.wake.notify_one();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.slot).stream.close();
        self.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for MixStream {
    fn drop(&mut self) {
        lock(&self.slot).stream.close();
        self.wake.notify_one();
    }
}

/// A stream an opener asked the exit for, waiting to be accepted or refused.
pub struct IncomingStream {
    target: Target,
    slot: Shared,
    wake: Arc<Notify>,
    decided: bool,
}

impl IncomingStream {
    /// Where the opener wants to connect.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The session identity the stream came under: a throwaway one per
    /// stream from this project's openers (docs/streams.md).
    pub fn peer(&self) -> Option<crate::PeerIdentityKey> {
        lock(&self.slot).peer
    }

    /// Accepts: the opener is told the stream is open, and bytes flow.
    pub fn accept(mut self) -> MixStream {
        self.decided = true;
        let mut slot = lock(&self.slot);
        slot.stream.accept();
        slot.waiting_since = Some(Instant::now());
        drop(slot);
        self.wake.notify_one();
        MixStream {
            slot: self.slot.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Refuses with `reason`, which the opener's SOCKS5 entry passes on.
    pub fn refuse(mut self, reason: ResetReason) {
        self.decided = true;
        lock(&self.slot).stream.reset(reason);
        self.wake.notify_one();
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if !self.decided {
            lock(&self.slot).stream.reset(ResetReason::GeneralFailure);
            self.wake.notify_one();
        }
    }
}

/// Why [`StreamClient::connect`] did not give a stream.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// The exit refused or reset the stream, with its reason.
    #[error("the exit refused the stream: {0:?}")]
    Refused(ResetReason),
    /// Too many streams are open already.
    #[error("too many streams open")]
    TooManyStreams,
    /// The stream task has stopped.
    #[error("the stream task has stopped")]
    Stopped,
}

enum Side {
    /// Opens streams to one exit, anonymously, with reply SURBs.
    Opener { exit: ClientAddress },
    /// Accepts streams and answers through SURBs.
    Exit {
        incoming: mpsc::Sender<IncomingStream>,
    },
}

enum Call {
    Open {
        target: Target,
        respond: oneshot::Sender<Result<MixStream, ConnectError>>,
    },
}

/// The opening side: streams through one exit, which never learns this
/// client's address (messages carry none; answers come through SURBs).
#[derive(Clone)]
pub struct StreamClient {
    calls: mpsc::Sender<Call>,
    stats: Arc<StreamShellStats>,
}

impl StreamClient {
    /// Starts the stream task over `client`, which it reads exclusively
    /// (messages that are not stream messages are counted and dropped).
    /// `exit` must be a contact of `client` (its card added). `seed` seeds
    /// the stream ids (from the OS: [`crate::shell::os_seed`]).
    pub fn start(
        client: Arc<Client>,
        exit: ClientAddress,
        options: StreamOptions,
        seed: [u8; 32],
    ) -> Self {
        let (calls, calls_rx) = mpsc::channel(64);
        let stats = Arc::new(StreamShellStats::default());
        let side = Side::Opener { exit };
        let mux = Mux::new(client, side, options, stats.clone(), seed);
        tokio::spawn(mux.run(Some(calls_rx)));
        StreamClient { calls, stats }
    }

    /// Opens a stream to `target` (a name is resolved by the exit) and
    /// waits until the exit accepts or refuses it.
    pub async fn connect(&self, target: Target) -> Result<MixStream, ConnectError> {
        let (respond, answer) = oneshot::channel();
        self.calls
            .send(Call::Open { target, respond })
            .await
            .map_err(|_| ConnectError::Stopped)?;
        answer.await.map_err(|_| ConnectError::Stopped)?
    }

    /// The task's counters.
    pub fn stats(&self) -> Arc<StreamShellStats> {
        self.stats.clone()
    }
}

/// The exit's side: streams opened by others, to accept or refuse.
pub struct StreamListener {
    incoming: mpsc::Receiver<IncomingStream>,
    stats: Arc<StreamShellStats>,
}

impl StreamListener {
    /// Starts the stream task over `client`, which it reads exclusively.
    pub fn start(client: Arc<Client>, options: StreamOptions) -> Self {
        let (tx, incoming) = mpsc::channel(options.max_streams.clamp(1, 1024));
        let stats = Arc::new(StreamShellStats::default());
        let side = Side::Exit { incoming: tx };
        let mux = Mux::new(client, side, options, stats.clone(), [0; 32]);
        tokio::spawn(mux.run(None));
        StreamListener { incoming, stats }
    }

    /// The next stream an opener asked for; `None` once the task stopped.
    pub async fn next(&mut self) -> Option<IncomingStream> {
        self.incoming.recv().await
    }

    /// The task's counters.
    pub fn stats(&self) -> Arc<StreamShellStats> {
        self.stats.clone()
    }
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Mux {
    client: Arc<Client>,
    side: Side,
    options: StreamOptions,
    slots: HashMap<StreamId, Shared>,
    /// Streams forgotten lately: a late SYN of one must not reopen it.
    ended: EndedStreams,
    wake: Arc<Notify>,
    stats: Arc<StreamShellStats>,
    origin: Instant,
    rng: ChaCha20Rng,
}

impl Mux {
    fn new(
        client: Arc<Client>,
        side: Side,
        options: StreamOptions,
        stats: Arc<StreamShellStats>,
        seed: [u8; 32],
    ) -> Self {
        Mux {
            client,
            side,
            ended: EndedStreams::new(options.remember_ended, options.max_remembered_ended),
            options,
            slots: HashMap::new(),
            wake: Arc::new(Notify::new()),
            stats,
            origin: Instant::now(),
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    fn now(&self) -> Timestamp {
        let nanos = self.origin.elapsed().as_nanos();
        Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    async fn run(mut self, mut calls: Option<mpsc::Receiver<Call>>) {
        loop {
            self.flush().await;
            let next = self.next_wake();
            let sleep = tokio::time::sleep_until(next);
            let client = self.client.clone();
            tokio::select! {
                message = client.recv() => match message {
                    Some(m) => self.take_message(m).await,
                    None => return,
                },
                call = async {
                    match calls.as_mut() {
                        Some(c) => c.recv().await,
                        None => std::future::pending().await,
                    }
                } => match call {
                    Some(call) => self.take_call(call),
                    None => calls = None,
                },
                () = self.wake.notified() => {}
                () = sleep => {}
            }
            if calls.is_none() && matches!(self.side, Side::Opener { .. }) && self.slots.is_empty()
            {
                return;
            }
        }
    }

    /// The next instant a stream has a timer due. Never sooner than
    /// [`MIN_WAKE`] from now: a timer that cannot act yet (an exit with no
    /// SURBs for an ack that is due) must not spin the task.
    fn next_wake(&self) -> Instant {
        let now = self.now();
        let mut next = Instant::now() + Duration::from_secs(1);
        for slot in self.slots.values() {
            let slot = lock(slot);
            if let Some(t) = slot.stream.poll_timeout() {
                let wait = t.saturating_duration_since(now);
                next = next.min(Instant::now() + wait);
            }
            if let Some(since) = slot.waiting_since {
                next = next.min(since + self.options.coalesce);
            }
        }
        next.max(Instant::now() + MIN_WAKE)
    }

    fn take_call(&mut self, call: Call) {
        match call {
            Call::Open { target, respond } => {
                if self.slots.len() >= self.options.max_streams {
                    let _ = respond.send(Err(ConnectError::TooManyStreams));
                    return;
                }
                let id = StreamId::random(&mut self.rng);
                let stream = Stream::open(id, target, self.options.stream.clone(), self.now());
                let slot = Arc::new(Mutex::new(Slot::new(stream)));
                let (tx, rx) = oneshot::channel();
                lock(&slot).opened = Some(tx);
                lock(&slot).pseudonym = Some(Pseudonym::random(&mut self.rng));
                self.slots.insert(id, slot.clone());
                add(&self.stats.streams_opened);
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    let answer = match rx.await {
                        Ok(Ok(())) => Ok(MixStream { slot, wake }),
                        Ok(Err(reason)) => Err(ConnectError::Refused(reason)),
                        Err(_) => Err(ConnectError::Stopped),
                    };
                    let _ = respond.send(answer);
                });
            }
        }
    }

    async fn take_message(&mut self, message: ReceivedMessage) {
        let decoded = match StreamMessage::decode(&message.bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "not a stream message");
                add(&self.stats.malformed_messages);
                return;
            }
        };
        let now = self.now();
        let mut reply = message.reply;
        let mut unknown = Vec::new();
        for segment in &decoded.segments {
            let (slot, fresh) = match self.slots.get(&segment.stream) {
                Some(slot) => (slot.clone(), false),
                None if self.ended.contains(now, &segment.stream) => {
                    // A late copy (a repeated SYN, a last ack) of a stream
                    // that is over: neither reopened nor answered.
                    add(&self.stats.ended_stream);
                    continue;
                }
                None => match self.new_stream(segment, now, &message.peer) {
                    Some(slot) => (slot, true),
                    None => {
                        add(&self.stats.unknown_stream);
                        if !segment.has(FLAG_RST) {
                            unknown.push(segment.stream);
                        }
                        continue;
                    }
                },
            };
            let mut slot = lock(&slot);
            add(&self.stats.segments_received);
            if !fresh {
                // (A new stream was made from this very SYN.)
                slot.stream.handle_segment(now, segment);
            }
            // The message's reply SURBs go to the stream of its first segment.
            if let Some(path) = reply.take() {
                slot.surbs_received = slot
                    .surbs_received
                    .saturating_add(u32::try_from(path.surbs_left()).unwrap_or(u32::MAX));
                if slot.surbs_left() + path.surbs_left() <= self.options.max_surbs_per_stream {
                    slot.surbs.push(path);
                } else {
                    add(&self.stats.surbs_discarded);
                }
            }
            if let Some(report) = decoded.surbs {
                slot.report = report;
            }
            slot.pass_events();
        }
        // An exit that does not know a stream (it restarted, or forgot it)
        // says so at once through the message's own SURBs, instead of
        // leaving the opener to time out.
        if let (Side::Exit { .. }, Some(mut path), false) = (&self.side, reply, unknown.is_empty())
        {
            let segments: Vec<Segment> = unknown
                .into_iter()
                .take(stream_core::frame::MAX_SEGMENTS)
                .map(|stream| Segment {
                    stream,
                    flags: FLAG_RST,
                    seq: 0,
                    ack: 0,
                    window: 0,
                    target: None,
                    reason: Some(ResetReason::GeneralFailure),
                    data: Vec::new(),
                })
                .collect();
            let bytes = StreamMessage {
                surbs: None,
                segments,
            }
            .encode();
            add(&self.stats.messages_sent);
            if let Err(e) = self
                .client
                .reply_unacknowledged(path.split_off(1), bytes)
                .await
            {
                tracing::debug!(error = %e, "reset of an unknown stream not queued");
                add(&self.stats.send_errors);
            }
        }
    }

    /// The exit's new stream for a SYN from an opener.
    fn new_stream(
        &mut self,
        segment: &Segment,
        now: Timestamp,
        peer: &crate::PeerIdentityKey,
    ) -> Option<Shared> {
        let Side::Exit { incoming } = &self.side else {
            return None;
        };
        if !segment.has(FLAG_SYN) || segment.has(FLAG_ACK) {
            return None;
        }
        let stream = Stream::accept_syn(segment, self.options.stream.clone(), now)?;
        let target = stream.target()?.clone();
        let mut new = Slot::new(stream);
        new.peer = Some(*peer);
        let from_peer = self
            .slots
            .values()
            .filter(|s| lock(s).peer.as_ref() == Some(peer))
            .count();
        let full = self.slots.len() >= self.options.max_streams
            || from_peer >= self.options.max_streams_per_peer;
        let slot = Arc::new(Mutex::new(new));
        self.slots.insert(segment.stream, slot.clone());
        add(&self.stats.streams_opened);
        let pending = IncomingStream {
            target,
            slot: slot.clone(),
            wake: self.wake.clone(),
            decided: false,
        };
        if full {
            add(&self.stats.streams_refused_full);
            pending.refuse(ResetReason::GeneralFailure);
        } else if let Err(e) = incoming.try_send(pending) {
            add(&self.stats.streams_refused_full);
            // Dropping it undecided resets it.
            drop(e);
        }
        Some(slot)
    }

    /// Sends what every stream wants to send; forgets streams that are over.
    async fn flush(&mut self) {
        let ids: Vec<StreamId> = self.slots.keys().copied().collect();
        for id in ids {
            let Some(slot) = self.slots.get(&id).cloned() else {
                continue;
            };
            loop {
                let sent = match &self.side {
                    Side::Opener { exit } => {
                        let exit = *exit;
                        self.send_opener(&slot, exit).await
                    }
                    Side::Exit { .. } => self.send_exit(&slot).await,
                };
                if !sent {
                    break;
                }
            }
            let forget = {
                let mut s = lock(&slot);
                s.pass_events();
                if s.stream.state().is_terminal() && s.ended_at.is_none() {
                    s.ended_at = Some(Instant::now());
                    if let StreamState::Reset(_) | StreamState::TimedOut = s.stream.state() {
                        add(&self.stats.streams_failed);
                    }
                }
                let linger = self.options.stream.keepalive;
                let over = s.ended_at.is_some_and(|t| t.elapsed() >= linger)
                    || (s.ended_at.is_some() && s.stream.state() != StreamState::Closed);
                // Held by the map and by `slot` here: nobody else (no application handle).
                let unused = Arc::strong_count(&slot) <= 2;
                if over && unused && !s.stream.wants_to_send(self.now()) {
                    let pseudonym = s.pseudonym;
                    drop(s);
                    self.slots.remove(&id);
                    let now = self.now();
                    self.ended.insert(now, id);
                    pseudonym
                } else {
                    None
                }
            };
            // The stream is over: so is the session of its pseudonym.
            if let Some(pseudonym) = forget
                && self.client.forget_pseudonym(pseudonym).await.is_err()
            {
                tracing::debug!("the client stopped before the stream's session was forgotten");
            }
        }
    }

    /// Collects the segments of one message, at most `budget` bytes of content.
    fn collect(&self, slot: &mut Slot, budget: usize) -> Vec<Segment> {
        let now = self.now();
        let mut segments = Vec::new();
        let mut used = MESSAGE_HEADER_LEN;
        while segments.len() < stream_core::frame::MAX_SEGMENTS {
            let room = budget.saturating_sub(used + SEGMENT_HEADER_LEN + 300);
            if room == 0 {
                break;
            }
            match slot.stream.poll_segment(now, room) {
                Some(seg) => {
                    used += seg.encoded_len();
                    segments.push(seg);
                }
                None => break,
            }
        }
        segments
    }

    /// Opener: one message with the stream's due segments and, when the
    /// exit runs short, more reply SURBs. Returns whether it sent one.
    async fn send_opener(&mut self, shared: &Shared, exit: ClientAddress) -> bool {
        let (bytes, surbs, pseudonym) = {
            let mut slot = lock(shared);
            let Some(pseudonym) = slot.pseudonym else {
                return false;
            };
            let in_flight = slot.surbs_given.saturating_sub(slot.report.received);
            let stock = (slot.report.left.saturating_add(in_flight)) as usize;
            let receiving = slot.stream.state() == StreamState::Open && !slot.stream.at_eof();
            let deficit = if receiving {
                self.options.surb_stock.saturating_sub(stock)
            } else {
                0
            };
            let budget = (self.options.message_fragments.max(1) * FRAGMENT_CAPACITY)
                .saturating_sub(SESSION_OVERHEAD + Envelope::message_len(0, 0));
            let mut segments = self.collect(&mut slot, budget);
            if segments.is_empty() && deficit >= self.options.surbs_per_message {
                // A bare ack to carry the SURBs.
                segments.extend(slot.stream.ack_segment());
            }
            if segments.is_empty() {
                return false;
            }
            let message = StreamMessage {
                surbs: None,
                segments,
            };
            // At least one SURB, so the exit can always answer; no more than
            // what fits beside the segments in whole fragments.
            let content = message.encoded_len() + SESSION_OVERHEAD;
            let mut surbs = deficit.min(self.options.surbs_per_message).max(1);
            let fragments = Envelope::message_len(surbs, content).div_ceil(FRAGMENT_CAPACITY);
            while surbs < self.options.surbs_per_message.min(deficit)
                && Envelope::message_len(surbs + 1, content) <= fragments * FRAGMENT_CAPACITY
            {
                surbs += 1;
            }
            slot.surbs_given = slot
                .surbs_given
                .saturating_add(u32::try_from(surbs).unwrap_or(u32::MAX));
            slot.waiting_since = None;
            (message.encode(), surbs, pseudonym)
        };
        add(&self.stats.messages_sent);
        match self
            .client
            .send_pseudonymous(&exit, pseudonym, bytes, surbs)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                // Lost like a dropped packet: the stream sends it again.
                tracing::debug!(error = %e, "stream message not queued");
                add(&self.stats.send_errors);
            }
        }
        true
    }

    /// Exit: one reply through the stream's SURBs with its due segments,
    /// once there is a full reply's worth or the oldest byte waited
    /// `coalesce`. Returns whether it sent one.
    async fn send_exit(&mut self, shared: &Shared) -> bool {
        let (bytes, path) = {
            let mut slot = lock(shared);
            let now = self.now();
            if !slot.stream.wants_to_send(now) {
                return false;
            }
            // One reply goes through the SURBs of one message.
            let largest = slot
                .surbs
                .iter()
                .map(ReplyPath::surbs_left)
                .max()
                .unwrap_or(0);
            if largest == 0 {
                add(&self.stats.waits_for_surbs);
                return false;
            }
            let fragments = largest.min(self.options.reply_fragments.max(1));
            let budget = (fragments * FRAGMENT_CAPACITY)
                .saturating_sub(SESSION_OVERHEAD + Envelope::reply_len(0) + 8);
            let young = slot
                .waiting_since
                .is_some_and(|t| t.elapsed() < self.options.coalesce);
            let unsent = slot.stream.unsent_len();
            if young && unsent > 0 && unsent < budget {
                return false;
            }
            let segments = self.collect(&mut slot, budget);
            if segments.is_empty() {
                return false;
            }
            slot.waiting_since = (slot.stream.unsent_len() > 0).then(Instant::now);
            let mut message = StreamMessage {
                surbs: Some(SurbReport {
                    received: slot.surbs_received,
                    left: 0,
                }),
                segments,
            };
            // The report has a fixed size: the length is known before it is filled.
            let needed = Envelope::reply_len(message.encoded_len() + SESSION_OVERHEAD)
                .div_ceil(FRAGMENT_CAPACITY)
                .max(1);
            let Some(path) = take_surbs(&mut slot.surbs, needed) else {
                return false;
            };
            message.surbs = Some(SurbReport {
                received: slot.surbs_received,
                left: u32::try_from(slot.surbs_left()).unwrap_or(u32::MAX),
            });
            (message.encode(), path)
        };
        add(&self.stats.messages_sent);
        // The stream recovers its own losses: the opener spends no send
        // tick acknowledging each fragment.
        if let Err(e) = self.client.reply_unacknowledged(path, bytes).await {
            tracing::debug!(error = %e, "stream reply not queued");
            add(&self.stats.send_errors);
        }
        true
    }
}

/// Takes `n` SURBs for one reply from the oldest reply path that has them
/// (the rest of that path stays for later replies).
fn take_surbs(paths: &mut Vec<ReplyPath>, n: usize) -> Option<ReplyPath> {
    let index = paths.iter().position(|p| p.surbs_left() >= n)?;
    let path = paths.get_mut(index)?;
    if path.surbs_left() > n {
        return Some(path.split_off(n));
    }
    Some(paths.remove(index))
}
