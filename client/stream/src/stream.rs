//! One stream's state machine: the sender's buffer, window and timers, the
//! receiver's reordering and acks, opening, closing, resetting, and the
//! keepalive that finds a dead peer.
//!
//! Sequence numbers count bytes, as in TCP, from zero at the SYN of each
//! direction: the SYN takes number 0, data starts at 1, the FIN takes the
//! number after the last byte. Acks are cumulative (the next number
//! expected) with the receive window beside them. A segment not acked
//! within the retransmission timeout (adaptive, from measured round trips;
//! Karn's rule) is sent again, with the timeout doubled each time; after
//! `max_retransmissions` the stream fails. Retransmissions travel in new
//! messages, so over fresh routes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use protocol::Timestamp;
use thiserror::Error;

use crate::frame::{
    FLAG_ACK, FLAG_FIN, FLAG_PROBE, FLAG_RST, FLAG_SYN, ResetReason, Segment, StreamId, Target,
};

/// Settings of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    /// Bytes of data in one segment at most.
    pub max_segment_data: usize,
    /// Bytes the application may write before they are acked.
    pub send_buffer: usize,
    /// Bytes received and not yet read (in order or not) at most: the window.
    pub receive_window: usize,
    /// Retransmission timeout before any round trip was measured.
    pub initial_rto: Duration,
    /// Shortest retransmission timeout.
    pub min_rto: Duration,
    /// Longest retransmission timeout (backoff included).
    pub max_rto: Duration,
    /// Times a segment is sent again before the stream fails.
    pub max_retransmissions: u32,
    /// How long an ack may wait to share a segment with data.
    pub ack_delay: Duration,
    /// Silence from the peer after which a keepalive probe is sent.
    pub keepalive: Duration,
    /// Silence from the peer after which the stream fails (also the time
    /// an opener waits for the exit's answer).
    pub dead_after: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_segment_data: 1400,
            send_buffer: 256 * 1024,
            receive_window: 256 * 1024,
            initial_rto: Duration::from_secs(10),
            min_rto: Duration::from_secs(2),
            max_rto: Duration::from_secs(60),
            max_retransmissions: 5,
            ack_delay: Duration::from_millis(200),
            keepalive: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
        }
    }
}

/// Which end of the stream this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRole {
    /// Sent the SYN with the target.
    Opener,
    /// Received it (the exit).
    Acceptor,
}

/// Where a stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// The opener sent its SYN and waits for the answer.
    Opening,
    /// The acceptor received a SYN and has not accepted or refused it yet.
    Accepting,
    /// Data may flow (in either direction until each side's FIN).
    Open,
    /// Both sides sent their FIN and saw it acked.
    Closed,
    /// Reset by either side, or refused.
    Reset(ResetReason),
    /// The peer stopped answering (retransmissions or silence).
    TimedOut,
}

impl StreamState {
    /// Whether the stream is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StreamState::Closed | StreamState::Reset(_) | StreamState::TimedOut
        )
    }
}

/// What a stream tells its application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The exit accepted the stream: data may flow.
    Opened,
    /// Bytes are ready to read.
    Readable,
    /// Room opened in the send buffer.
    Writable,
    /// The peer will send nothing more (after the bytes already readable).
    PeerFinished,
    /// Both directions are closed.
    Closed,
    /// The peer reset or refused the stream.
    Reset(ResetReason),
    /// The peer stopped answering.
    TimedOut,
}

/// What [`Stream::handle_segment`] did with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// Took something new from it (data, an ack, a flag).
    Accepted,
    /// Nothing new: everything in it was already received (acked again).
    Duplicate,
    /// Its data lies beyond the receive window (dropped, counted).
    BeyondWindow,
    /// The stream is over; the segment was ignored.
    StreamOver,
    /// The peer reset the stream.
    Reset(ResetReason),
}

/// Why the application cannot write or read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The application closed its side already.
    #[error("the stream's sending side is closed")]
    Closed,
    /// The stream was reset or refused.
    #[error("the stream was reset: {0:?}")]
    Reset(ResetReason),
    /// The peer stopped answering.
    #[error("the stream timed out")]
    TimedOut,
    /// The stream is not open yet.
    #[error("the stream is not open yet")]
    NotOpen,
}

/// Counters of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Segments handed to the caller to send.
    pub segments_sent: u64,
    /// Segments taken from the peer.
    pub segments_received: u64,
    /// Segments sent again after their timeout.
    pub retransmissions: u64,
    /// Segments that brought nothing new.
    pub duplicates: u64,
    /// Segments that arrived ahead of a gap.
    pub out_of_order: u64,
    /// Segments (or parts) dropped beyond the receive window.
    pub beyond_window: u64,
    /// Acks of sequence numbers never sent (ignored).
    pub bad_acks: u64,
    /// Keepalive probes sent.
    pub probes_sent: u64,
    /// Bytes the peer acked.
    pub bytes_acked: u64,
    /// Bytes delivered in order to the application's buffer.
    pub bytes_received: u64,
}

#[derive(Clone, Copy, Debug)]
struct Flight {
    len: u64,
    sent_at: Timestamp,
    deadline: Timestamp,
    transmissions: u32,
}

/// One stream's state: see the module documentation.
#[derive(Debug)]
pub struct Stream {
    id: StreamId,
    role: StreamRole,
    config: StreamConfig,
    state: StreamState,
    target: Option<Target>,
    // Sending.
    /// Oldest sequence number not acked.
    snd_una: u64,
    /// Next new sequence number to send.
    snd_nxt: u64,
    /// Right edge of the peer's window: nothing at or past it is sent.
    snd_limit: u64,
    /// Bytes written and not acked, starting at `send_base`.
    send_buf: VecDeque<u8>,
    send_base: u64,
    syn_sent: bool,
    accepted: bool,
    fin_wanted: bool,
    fin_seq: Option<u64>,
    flights: BTreeMap<u64, Flight>,
    due: BTreeSet<u64>,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    reset_out: Option<ResetReason>,
    // Receiving.
    peer_syn: bool,
    rcv_nxt: u64,
    readable: VecDeque<u8>,
    ahead: BTreeMap<u64, Vec<u8>>,
    ahead_bytes: usize,
    peer_fin: Option<u64>,
    peer_finished: bool,
    advertised_edge: u64,
    ack_due: Option<Timestamp>,
    last_heard: Timestamp,
    probe_sent: bool,
    events: VecDeque<StreamEvent>,
    stats: StreamStats,
}

/// Events a stream keeps for its application at most (older ones are
/// dropped first; every event is a hint to look at the state again).
const MAX_EVENTS: usize = 64;

impl Stream {
    fn new(
        id: StreamId,
        role: StreamRole,
        config: StreamConfig,
        now: Timestamp,
        target: Option<Target>,
    ) -> Self {
        let rto = config.initial_rto;
        Stream {
            id,
            role,
            state: match role {
                StreamRole::Opener => StreamState::Opening,
                StreamRole::Acceptor => StreamState::Accepting,
            },
            target,
            snd_una: 0,
            snd_nxt: 0,
            snd_limit: 1,
            send_buf: VecDeque::new(),
            send_base: 1,
            syn_sent: false,
            accepted: false,
            fin_wanted: false,
            fin_seq: None,
            flights: BTreeMap::new(),
            due: BTreeSet::new(),
            srtt: None,
            rttvar: Duration::ZERO,
            rto,
            reset_out: None,
            peer_syn: false,
            rcv_nxt: 0,
            readable: VecDeque::new(),
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            peer_fin: None,
            peer_finished: false,
            advertised_edge: 0,
            ack_due: None,
            last_heard: now,
            probe_sent: false,
            events: VecDeque::new(),
            stats: StreamStats::default(),
            config,
        }
    }

    /// A stream to open towards `target`; its SYN is the first segment
    /// [`Stream::poll_segment`] returns.
    pub fn open(id: StreamId, target: Target, config: StreamConfig, now: Timestamp) -> Self {
        Stream::new(id, StreamRole::Opener, config, now, Some(target))
    }

    /// The acceptor's stream for a SYN that arrived (`None` if `syn` is not
    /// an opening SYN with a target). The caller decides: [`Stream::accept`]
    /// or [`Stream::reset`].
    pub fn accept_syn(syn: &Segment, config: StreamConfig, now: Timestamp) -> Option<Self> {
        if !syn.has(FLAG_SYN) || syn.has(FLAG_ACK) || syn.has(FLAG_RST) || syn.seq != 0 {
            return None;
        }
        let target = syn.target.clone()?;
        let mut stream = Stream::new(syn.stream, StreamRole::Acceptor, config, now, Some(target));
        stream.peer_syn = true;
        stream.rcv_nxt = 1;
        stream.snd_limit = 1 + u64::from(syn.window);
        stream.stats.segments_received = 1;
        Some(stream)
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Which end this is.
    pub fn role(&self) -> StreamRole {
        self.role
    }

    /// Where the opener asked to connect.
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// The state now.
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// The counters.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// The retransmission timeout now.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The acceptor takes the stream: its SYN-ACK goes out next.
    pub fn accept(&mut self) {
        if self.state == StreamState::Accepting {
            self.accepted = true;
            self.state = StreamState::Open;
        }
    }

    /// Resets the stream (or refuses it): one RST with `reason` goes out,
    /// buffered data is dropped.
    pub fn reset(&mut self, reason: ResetReason) {
        if self.state.is_terminal() {
            return;
        }
        self.state = StreamState::Reset(reason);
        self.reset_out = Some(reason);
        self.clear();
    }

    /// The application has no more to write: a FIN follows the data.
    pub fn close(&mut self) {
        if !self.state.is_terminal() {
            self.fin_wanted = true;
        }
    }

    /// Bytes the application may still write now.
    pub fn write_room(&self) -> usize {
        if self.fin_wanted || self.state.is_terminal() {
            return 0;
        }
        self.config.send_buffer.saturating_sub(self.send_buf.len())
    }

    /// Takes as many of `data` as the send buffer has room for.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        self.check_usable()?;
        if self.fin_wanted {
            return Err(StreamError::Closed);
        }
        let n = self.write_room().min(data.len());
        self.send_buf.extend(data.iter().take(n));
        Ok(n)
    }

    fn check_usable(&self) -> Result<(), StreamError> {
        match self.state {
            StreamState::Reset(r) => Err(StreamError::Reset(r)),
            StreamState::TimedOut => Err(StreamError::TimedOut),
            _ => Ok(()),
        }
    }

    /// Bytes ready to read.
    pub fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// Moves readable bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.readable.len());
        for (slot, byte) in buf.iter_mut().zip(self.readable.drain(..n)) {
            *slot = byte;
        }
        // Tell the peer promptly when reading reopened half the window.
        let edge = self.window_edge();
        if n > 0
            && self.peer_syn
            && edge.saturating_sub(self.advertised_edge) >= (self.config.receive_window / 2) as u64
        {
            self.ack_due = Some(Timestamp::ZERO);
        }
        n
    }

    /// Whether the peer finished and every byte was read (end of file).
    pub fn at_eof(&self) -> bool {
        self.peer_finished && self.readable.is_empty()
    }

    /// Bytes written and not yet sent in any segment.
    pub fn unsent_len(&self) -> usize {
        usize::try_from(
            self.data_end()
                .saturating_sub(self.snd_nxt.max(self.send_base)),
        )
        .unwrap_or(usize::MAX)
    }

    /// Whether everything written (and the FIN, once closed) was acked.
    pub fn all_acked(&self) -> bool {
        self.flights.is_empty() && self.send_buf.is_empty()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    fn event(&mut self, e: StreamEvent) {
        if self.events.back() == Some(&e) {
            return;
        }
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn clear(&mut self) {
        self.send_buf.clear();
        self.flights.clear();
        self.due.clear();
        self.ahead.clear();
        self.ahead_bytes = 0;
        self.ack_due = None;
    }

    fn window(&self) -> u64 {
        self.config
            .receive_window
            .saturating_sub(self.readable.len() + self.ahead_bytes) as u64
    }

    fn window_edge(&self) -> u64 {
        self.rcv_nxt.saturating_add(self.window())
    }

    /// Takes a segment of this stream from the peer.
    pub fn handle_segment(&mut self, now: Timestamp, seg: &Segment) -> SegmentOutcome {
        if self.state == StreamState::Closed && seg.has(FLAG_FIN) && !seg.has(FLAG_RST) {
            // Our ack of its FIN was lost: answer once more.
            self.ack_due = Some(now);
            return SegmentOutcome::Duplicate;
        }
        if self.state.is_terminal() {
            return SegmentOutcome::StreamOver;
        }
        self.stats.segments_received += 1;
        self.last_heard = now;
        self.probe_sent = false;
        if seg.has(FLAG_RST) {
            let reason = seg.reason.unwrap_or(ResetReason::GeneralFailure);
            self.state = StreamState::Reset(reason);
            self.clear();
            self.event(StreamEvent::Reset(reason));
            return SegmentOutcome::Reset(reason);
        }
        let mut new = false;
        if seg.has(FLAG_ACK) {
            new |= self.take_ack(now, seg);
        }
        if seg.has(FLAG_PROBE) {
            self.ack_due = Some(now);
        }
        if seg.has(FLAG_SYN) {
            if self.role == StreamRole::Opener && !self.peer_syn && seg.seq == 0 {
                if !seg.has(FLAG_ACK) || self.snd_una < 1 {
                    // A SYN-ACK must ack our SYN.
                    self.stats.bad_acks += 1;
                    return SegmentOutcome::Duplicate;
                }
                self.peer_syn = true;
                self.rcv_nxt = 1;
                self.state = StreamState::Open;
                self.event(StreamEvent::Opened);
                new = true;
            } else {
                // A repeated SYN: our answer was lost; ack it again.
                self.ack_due = Some(now);
            }
        }
        if !self.peer_syn {
            // Nothing but the answer to our SYN makes sense before it.
            return if new {
                SegmentOutcome::Accepted
            } else {
                SegmentOutcome::Duplicate
            };
        }
        let start = seg.seq.saturating_add(u64::from(seg.has(FLAG_SYN)));
        let outcome = self.take_data(now, start, &seg.data, seg.has(FLAG_FIN));
        self.check_closed();
        match outcome {
            SegmentOutcome::Duplicate if new => SegmentOutcome::Accepted,
            other => other,
        }
    }

    /// Returns whether the ack acked something new.
    fn take_ack(&mut self, now: Timestamp, seg: &Segment) -> bool {
        if seg.ack > self.snd_nxt {
            self.stats.bad_acks += 1;
            return false;
        }
        let edge = seg.ack.saturating_add(u64::from(seg.window));
        if edge > self.snd_limit {
            self.snd_limit = edge;
        }
        if seg.ack <= self.snd_una {
            return false;
        }
        let acked: Vec<u64> = self
            .flights
            .range(..seg.ack)
            .filter(|(s, f)| s.saturating_add(f.len) <= seg.ack)
            .map(|(s, _)| *s)
            .collect();
        for s in acked {
            if let Some(f) = self.flights.remove(&s) {
                self.due.remove(&s);
                if f.transmissions == 1 {
                    self.sample_rtt(now.saturating_duration_since(f.sent_at));
                }
            }
        }
        // A flight acked in part (the peer trimmed it to its window) now
        // starts at the ack.
        let partial = self
            .flights
            .range(..seg.ack)
            .next_back()
            .map(|(s, f)| (*s, *f));
        if let Some((s, mut f)) = partial {
            self.flights.remove(&s);
            let was_due = self.due.remove(&s);
            f.len = (s + f.len).saturating_sub(seg.ack);
            self.flights.insert(seg.ack, f);
            if was_due {
                self.due.insert(seg.ack);
            }
        }
        // Data bytes acked leave the buffer (the SYN and the FIN hold none).
        let data_acked = seg.ack.min(self.data_end()).saturating_sub(self.send_base);
        let n = usize::try_from(data_acked)
            .unwrap_or(usize::MAX)
            .min(self.send_buf.len());
        self.send_buf.drain(..n);
        self.send_base += n as u64;
        self.stats.bytes_acked += n as u64;
        self.snd_una = seg.ack;
        if n > 0 {
            self.event(StreamEvent::Writable);
        }
        true
    }

    fn sample_rtt(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + self.rttvar * 4).clamp(self.config.min_rto, self.config.max_rto);
    }

    fn take_data(&mut self, now: Timestamp, start: u64, data: &[u8], fin: bool) -> SegmentOutcome {
        let mut end = start.saturating_add(data.len() as u64);
        let mut new = false;
        // A FIN before bytes already taken is not believed.
        if fin && self.peer_fin.is_none() && end >= self.rcv_nxt {
            self.peer_fin = Some(end);
            self.trim_ahead(end);
            new = true;
        }
        // Nothing lies past the peer's FIN: bytes there are dropped, counted
        // with those beyond the window.
        if let Some(fin_at) = self.peer_fin
            && end > fin_at
        {
            self.stats.beyond_window += 1;
            end = fin_at.max(start);
        }
        let data = data
            .get(..usize::try_from(end - start).unwrap_or(usize::MAX))
            .unwrap_or(data);
        if end <= self.rcv_nxt {
            if !data.is_empty() || fin {
                self.stats.duplicates += 1;
                self.ack_due = Some(now);
            }
        } else {
            let edge = self.window_edge();
            if start >= edge {
                self.stats.beyond_window += 1;
                self.ack_due = Some(now);
                return SegmentOutcome::BeyondWindow;
            }
            // Keep only the part inside [rcv_nxt, edge).
            let from = start.max(self.rcv_nxt);
            let to = end.min(edge);
            if to < end {
                self.stats.beyond_window += 1;
            }
            let skip = usize::try_from(from - start).unwrap_or(usize::MAX);
            let take = usize::try_from(to - from).unwrap_or(0);
            let part = data.get(skip..).unwrap_or(&[]);
            let part = part.get(..take).unwrap_or(part);
            if from == self.rcv_nxt {
                self.deliver(part);
                self.drain_ahead();
                let due = now.saturating_add(self.config.ack_delay);
                self.ack_due = Some(self.ack_due.map_or(due, |d| d.min(due)));
            } else {
                self.stats.out_of_order += 1;
                self.store_ahead(from, part);
                self.ack_due = Some(now);
            }
            new = true;
        }
        if self.peer_fin == Some(self.rcv_nxt) && !self.peer_finished {
            self.rcv_nxt += 1;
            self.peer_finished = true;
            self.ack_due = Some(now);
            self.event(StreamEvent::PeerFinished);
        }
        if new {
            SegmentOutcome::Accepted
        } else {
            SegmentOutcome::Duplicate
        }
    }

    fn deliver(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.readable.extend(bytes);
        self.rcv_nxt += bytes.len() as u64;
        self.stats.bytes_received += bytes.len() as u64;
        self.event(StreamEvent::Readable);
    }

    fn store_ahead(&mut self, from: u64, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        // Keep the longest copy for one start; overlaps are trimmed on draining.
        let old = self.ahead.get(&from).map_or(0, Vec::len);
        if part.len() > old {
            self.ahead_bytes = self.ahead_bytes - old + part.len();
            self.ahead.insert(from, part.to_vec());
        }
    }

    /// Drops what is held ahead at or past `fin_at` (the peer's end).
    fn trim_ahead(&mut self, fin_at: u64) {
        let past: Vec<u64> = self.ahead.range(fin_at..).map(|(s, _)| *s).collect();
        for s in past {
            if let Some(chunk) = self.ahead.remove(&s) {
                self.ahead_bytes -= chunk.len();
            }
        }
        if let Some((&s, chunk)) = self.ahead.range_mut(..fin_at).next_back() {
            let keep = usize::try_from(fin_at - s).unwrap_or(usize::MAX);
            if chunk.len() > keep {
                self.ahead_bytes -= chunk.len() - keep;
                chunk.truncate(keep);
            }
        }
    }

    fn drain_ahead(&mut self) {
        while let Some((&start, _)) = self.ahead.first_key_value() {
            if start > self.rcv_nxt {
                break;
            }
            let Some(chunk) = self.ahead.remove(&start) else {
                break;
            };
            self.ahead_bytes -= chunk.len();
            let skip = usize::try_from(self.rcv_nxt - start).unwrap_or(usize::MAX);
            if let Some(rest) = chunk.get(skip..) {
                let rest = rest.to_vec();
                self.deliver(&rest);
            }
        }
    }

    fn check_closed(&mut self) {
        let fin_acked = self.fin_seq.is_some_and(|f| self.snd_una > f);
        if fin_acked && self.peer_finished && self.state == StreamState::Open {
            self.state = StreamState::Closed;
            self.event(StreamEvent::Closed);
        }
    }

    /// Sequence number after the last byte written.
    fn data_end(&self) -> u64 {
        self.send_base + self.send_buf.len() as u64
    }

    /// Fires due timers: retransmission deadlines, the dead peer, the keepalive.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.state.is_terminal() {
            return;
        }
        if now >= self.last_heard.saturating_add(self.config.dead_after) {
            self.fail();
            return;
        }
        let expired: Vec<u64> = self
            .flights
            .iter()
            .filter(|(s, f)| f.deadline <= now && !self.due.contains(s))
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            let over = self
                .flights
                .get(&s)
                .is_some_and(|f| f.transmissions > self.config.max_retransmissions);
            if over {
                self.fail();
                return;
            }
            self.due.insert(s);
        }
    }

    fn fail(&mut self) {
        self.state = StreamState::TimedOut;
        self.reset_out = Some(ResetReason::TimedOut);
        self.clear();
        self.event(StreamEvent::TimedOut);
    }

    /// The next instant [`Stream::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.state.is_terminal() {
            return None;
        }
        let flights = self
            .flights
            .iter()
            .filter(|(s, _)| !self.due.contains(s))
            .map(|(_, f)| f.deadline)
            .min();
        let keepalive = (self.state == StreamState::Open && !self.probe_sent)
            .then(|| self.last_heard.saturating_add(self.config.keepalive));
        [
            flights,
            self.ack_due,
            keepalive,
            Some(self.last_heard.saturating_add(self.config.dead_after)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether [`Stream::poll_segment`] would return a segment now.
    pub fn wants_to_send(&self, now: Timestamp) -> bool {
        self.reset_out.is_some()
            || !self.due.is_empty()
            || self.new_segment_ready()
            || (self.ack_due.is_some_and(|t| t <= now) && self.state != StreamState::Accepting)
            || self.probe_ready(now)
    }

    fn new_segment_ready(&self) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        match self.role {
            StreamRole::Opener if !self.syn_sent => return true,
            StreamRole::Acceptor if self.accepted && !self.syn_sent => return true,
            _ => {}
        }
        if self.state != StreamState::Open || !self.syn_sent {
            return false;
        }
        let unsent_data = self.snd_nxt < self.data_end();
        let in_window = self.snd_nxt < self.snd_limit;
        (unsent_data && in_window) || (self.fin_wanted && self.fin_seq.is_none() && !unsent_data)
    }

    fn probe_ready(&self, now: Timestamp) -> bool {
        self.state == StreamState::Open
            && !self.probe_sent
            && now >= self.last_heard.saturating_add(self.config.keepalive)
    }

    /// The next segment to send, with at most `max_data` new bytes of data:
    /// a reset, a retransmission, the SYN or SYN-ACK, new data, the FIN, a
    /// keepalive probe, or a bare ack that is due. Fires due timers first.
    pub fn poll_segment(&mut self, now: Timestamp, max_data: usize) -> Option<Segment> {
        self.handle_timeout(now);
        if let Some(reason) = self.reset_out.take() {
            let mut seg = self.bare(FLAG_RST);
            seg.reason = Some(reason);
            seg.seq = self.snd_nxt;
            return Some(self.sent(seg));
        }
        if self.state == StreamState::Closed && self.ack_due.is_some() && self.peer_syn {
            // The last ack, of the peer's FIN.
            let mut seg = self.bare(0);
            seg.seq = self.snd_nxt;
            return Some(self.sent(seg));
        }
        if self.state.is_terminal() {
            return None;
        }
        // A retransmission keeps its first size: one that does not fit in
        // `max_data` stays due for a message with room (new data may go
        // first, cut to fit).
        if let Some(&seq) = self.due.first() {
            let len = self.flights.get(&seq).map_or(0, |f| f.len);
            if self.segment_at(seq, len).data.len() <= max_data {
                self.due.remove(&seq);
                return Some(self.retransmit(now, seq));
            }
        }
        if let Some(seg) = self.new_segment(now, max_data) {
            return Some(seg);
        }
        if self.probe_ready(now) {
            self.probe_sent = true;
            self.stats.probes_sent += 1;
            let mut seg = self.bare(FLAG_PROBE);
            seg.seq = self.snd_nxt;
            return Some(self.sent(seg));
        }
        let answering = self.state != StreamState::Accepting;
        if self.ack_due.is_some_and(|t| t <= now) && self.peer_syn && answering {
            let mut seg = self.bare(0);
            seg.seq = self.snd_nxt;
            return Some(self.sent(seg));
        }
        None
    }

    /// A bare ack now, due or not (to carry the window beside other traffic).
    pub fn ack_segment(&mut self) -> Option<Segment> {
        if self.state.is_terminal() || !self.peer_syn {
            return None;
        }
        let mut seg = self.bare(0);
        seg.seq = self.snd_nxt;
        Some(self.sent(seg))
    }

    /// A segment with `flags`, the ack and window when the peer's SYN came.
    fn bare(&self, flags: u8) -> Segment {
        let ack = if self.peer_syn { FLAG_ACK } else { 0 };
        Segment {
            stream: self.id,
            flags: flags | ack,
            seq: 0,
            ack: if self.peer_syn { self.rcv_nxt } else { 0 },
            window: u32::try_from(self.window()).unwrap_or(u32::MAX),
            target: None,
            reason: None,
            data: Vec::new(),
        }
    }

    /// Notes what a segment going out acks.
    fn sent(&mut self, seg: Segment) -> Segment {
        if seg.has(FLAG_ACK) {
            self.ack_due = None;
            self.advertised_edge = seg.ack.saturating_add(u64::from(seg.window));
        }
        self.stats.segments_sent += 1;
        seg
    }

    /// Builds the segment of `len` sequence numbers at `seq` (SYN, data, FIN as they fall).
    fn segment_at(&self, seq: u64, len: u64) -> Segment {
        let mut flags = 0;
        let mut target = None;
        let mut from = seq;
        let end = seq.saturating_add(len);
        if seq == 0 {
            flags |= FLAG_SYN;
            if self.role == StreamRole::Opener {
                target = self.target.clone();
            }
            from = 1;
        }
        let data_to = end.min(self.data_end());
        if let Some(fin) = self.fin_seq
            && fin < end
        {
            flags |= FLAG_FIN;
        }
        let skip = usize::try_from(from.saturating_sub(self.send_base)).unwrap_or(usize::MAX);
        let take = usize::try_from(data_to.saturating_sub(from)).unwrap_or(0);
        let data: Vec<u8> = self
            .send_buf
            .iter()
            .skip(skip)
            .take(take)
            .copied()
            .collect();
        let mut seg = self.bare(flags);
        seg.seq = seq;
        seg.target = target;
        seg.data = data;
        seg
    }

    fn retransmit(&mut self, now: Timestamp, seq: u64) -> Segment {
        self.stats.retransmissions += 1;
        let len = self.flights.get(&seq).map_or(0, |f| f.len);
        let seg = self.segment_at(seq, len);
        if let Some(f) = self.flights.get_mut(&seq) {
            f.transmissions += 1;
            f.sent_at = now;
            let backoff = self
                .rto
                .saturating_mul(1 << f.transmissions.saturating_sub(1).min(6));
            f.deadline = now.saturating_add(backoff.min(self.config.max_rto));
        }
        self.sent(seg)
    }

    fn new_segment(&mut self, now: Timestamp, max_data: usize) -> Option<Segment> {
        if !self.new_segment_ready() {
            return None;
        }
        let seq = self.snd_nxt;
        let len = if seq == 0 {
            1
        } else {
            let window_room = self.snd_limit.saturating_sub(seq);
            let data = (self.data_end().saturating_sub(seq))
                .min(window_room)
                .min(max_data.min(self.config.max_segment_data) as u64);
            if data > 0 {
                data
            } else {
                // Only the FIN is left.
                0
            }
        };
        let mut len = len;
        // The FIN rides on the segment that carries the last byte.
        if seq > 0 && self.fin_wanted && self.fin_seq.is_none() && seq + len == self.data_end() {
            self.fin_seq = Some(self.data_end());
            len += 1;
        }
        if len == 0 {
            return None;
        }
        self.syn_sent = true;
        self.snd_nxt = seq + len;
        self.flights.insert(
            seq,
            Flight {
                len,
                sent_at: now,
                deadline: now.saturating_add(self.rto),
                transmissions: 1,
            },
        );
        let seg = self.segment_at(seq, len);
        Some(self.sent(seg))
    }
}
