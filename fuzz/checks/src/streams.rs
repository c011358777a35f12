//! Byte streams: what an exit or an opener reads of a stream message, the
//! stream state machine fed whatever segments arrive, and the SOCKS5 entry's
//! parser.

use std::time::Duration;

use client::streams::socks5::{Parsed, parse_greeting, parse_request, reply};
use protocol::Timestamp;
use stream_core::frame::{FLAG_ACK, FLAG_FIN, FLAG_PROBE, FLAG_RST, FLAG_SYN};
use stream_core::{
    ResetReason, Segment, SegmentOutcome, Stream, StreamConfig, StreamId, StreamMessage,
    StreamState, Target,
};

use crate::input::Input;

/// `StreamMessage::decode`: a message that decodes re-encodes to the very
/// bytes it came from (the format is canonical), and says its length.
pub fn stream_message(data: &[u8]) {
    let Ok(message) = StreamMessage::decode(data) else {
        return;
    };
    assert_eq!(message.encoded_len(), data.len(), "encoded length");
    assert_eq!(message.encode(), data, "canonical");
}

/// Most steps one input of [`stream_segments`] takes (each step is cheap).
pub const STREAM_STEPS: usize = 64;

/// The settings of the checked stream: small, so that windows and buffers fill.
pub fn stream_config() -> StreamConfig {
    StreamConfig {
        max_segment_data: 100,
        send_buffer: 4_000,
        receive_window: 3_000,
        initial_rto: Duration::from_secs(2),
        min_rto: Duration::from_millis(500),
        max_rto: Duration::from_secs(8),
        max_retransmissions: 4,
        ack_delay: Duration::from_millis(50),
        keepalive: Duration::from_secs(5),
        dead_after: Duration::from_secs(60),
    }
}

/// The id of the checked stream.
pub const STREAM: StreamId = StreamId([9; 16]);

/// The peer's byte at sequence number `seq` (data starts at 1): the model's
/// stream, so that every segment's data can be checked against its place.
pub fn peer_byte(seq: u64) -> u8 {
    (seq.wrapping_mul(31) ^ (seq >> 8)) as u8
}

/// This end's byte at sequence number `seq` (what the application writes).
pub fn own_byte(seq: u64) -> u8 {
    (seq.wrapping_mul(17) ^ 0x5A ^ (seq >> 7)) as u8
}

/// The target the checked opener asks for.
pub fn stream_target() -> Target {
    Target::Domain("example.org".into(), 443)
}

/// Operations of [`stream_segments`], one byte each (modulo their number).
pub mod op {
    /// A segment from the peer whose data is the model's bytes at its place.
    pub const SEGMENT: u8 = 0;
    /// A stream message as received: a record, decoded; its segments handed in.
    pub const RAW: u8 = 1;
    /// Time passes: a byte × 50 ms, then the stream's timers fire.
    pub const WAIT: u8 = 2;
    /// The application reads up to a byte × 16 bytes.
    pub const READ: u8 = 3;
    /// The application writes a byte × 8 bytes.
    pub const WRITE: u8 = 4;
    /// The stream's segments are taken until it has none.
    pub const SEND: u8 = 5;
    /// The application closes its side.
    pub const CLOSE: u8 = 6;
    /// The application resets the stream.
    pub const RESET: u8 = 7;
    /// The acceptor accepts the stream.
    pub const ACCEPT: u8 = 8;
    /// How many operations there are.
    pub const COUNT: u8 = 9;
}

/// What the model knows of one stream under test.
struct Model {
    stream: Stream,
    now: Timestamp,
    /// Whether every byte the peer sent was the model's byte at its place
    /// (false once a raw message came: its data is the fuzzer's).
    consistent: bool,
    /// Sequence number of the next byte the application reads.
    read_to: u64,
    /// Bytes the application wrote.
    written: u64,
}

impl Model {
    /// Hands `seg` to the stream; checks that a stream that is over ignores
    /// it, that nothing goes beyond the window, and that state never leaves
    /// an end.
    fn receive(&mut self, seg: &Segment) {
        let state = self.stream.state();
        // Only an ended stream must ignore a segment whole: compare it then.
        let before = state.is_terminal().then(|| format!("{:?}", self.stream));
        let readable = self.stream.readable_len();
        let outcome = self.stream.handle_segment(self.now, seg);
        let after = self.stream.state();
        match outcome {
            SegmentOutcome::StreamOver => {
                assert!(state.is_terminal(), "only an ended stream ignores segments");
                assert_eq!(
                    Some(format!("{:?}", self.stream)),
                    before,
                    "an ignored segment changes nothing"
                );
            }
            SegmentOutcome::BeyondWindow => {
                assert_eq!(self.stream.readable_len(), readable, "nothing taken");
                // Its data are refused, but its ack (and the SYN of an
                // answer) still count: our FIN acked closes a stream whose
                // peer had finished; nothing else changes.
                let by_ack = after == StreamState::Closed
                    || (state == StreamState::Opening && after == StreamState::Open);
                assert!(after == state || by_ack, "{state:?} -> {after:?}");
            }
            SegmentOutcome::Reset(reason) => {
                assert!(seg.has(FLAG_RST));
                assert_eq!(after, StreamState::Reset(reason));
            }
            SegmentOutcome::Accepted | SegmentOutcome::Duplicate => {}
        }
        if state.is_terminal() {
            assert_eq!(after, state, "an ended stream stays as it ended");
        }
        assert!(
            state == StreamState::Opening || after != StreamState::Opening,
            "a stream never goes back to opening"
        );
        self.check();
    }

    /// What holds after every step.
    fn check(&mut self) {
        let config = stream_config();
        assert!(
            self.stream.readable_len() <= config.receive_window,
            "window"
        );
        let stats = self.stream.stats();
        let read = self.read_to.saturating_sub(1);
        assert_eq!(
            stats.bytes_received,
            read + self.stream.readable_len() as u64,
            "bytes received are read or readable"
        );
        let mut events = 0;
        while self.stream.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= 64, "events are bounded: {events}");
        if !self.stream.state().is_terminal() {
            assert!(
                self.stream.poll_timeout().is_some(),
                "a live stream has a timer"
            );
        }
    }

    fn read(&mut self, n: usize) {
        let mut buf = vec![0u8; n];
        let got = self.stream.read(&mut buf);
        assert!(got <= n);
        if self.consistent {
            for (i, byte) in buf.iter().take(got).enumerate() {
                assert_eq!(
                    *byte,
                    peer_byte(self.read_to + i as u64),
                    "byte {} read in order",
                    self.read_to + i as u64
                );
            }
        }
        self.read_to += got as u64;
    }

    fn write(&mut self, n: usize) {
        let data: Vec<u8> = (0..n as u64)
            .map(|i| own_byte(1 + self.written + i))
            .collect();
        let room = self.stream.write_room();
        match self.stream.write(&data) {
            Ok(taken) => {
                assert_eq!(taken, room.min(n), "takes what it has room for");
                self.written += taken as u64;
            }
            Err(_) => assert_eq!(room, 0, "refuses only without room"),
        }
    }

    /// Takes the stream's segments: each travels in a message that decodes
    /// to it, carries this end's bytes at their place, and fits the limits.
    fn send(&mut self, max_data: usize) {
        let config = stream_config();
        for _ in 0..64 {
            let retransmissions = self.stream.stats().retransmissions;
            let Some(seg) = self.stream.poll_segment(self.now, max_data) else {
                break;
            };
            assert_eq!(seg.stream, STREAM);
            assert!(seg.data.len() <= config.max_segment_data);
            if self.stream.stats().retransmissions == retransmissions {
                // A retransmission repeats its flight whole; new data keeps to `max_data`.
                assert!(seg.data.len() <= max_data, "new data within max_data");
            }
            assert!(seg.window as usize <= config.receive_window);
            let start = seg.seq + u64::from(seg.has(FLAG_SYN));
            for (i, byte) in seg.data.iter().enumerate() {
                let at = start + i as u64;
                assert!(at <= self.written, "sends only what was written");
                assert_eq!(*byte, own_byte(at), "byte {at} sent at its place");
            }
            let message = StreamMessage {
                surbs: None,
                segments: vec![seg.clone()],
            };
            let decoded = StreamMessage::decode(&message.encode());
            assert_eq!(decoded, Ok(message), "what it sends decodes");
        }
    }
}

/// A `Stream` fed segments from its peer, interleaved with time, reads,
/// writes and sends. First byte: the role (even: opener, odd: an acceptor
/// of a real SYN); then up to [`STREAM_STEPS`] operations ([`op`]).
/// Checked: bytes are read in order and whole (the peer's data are the
/// model's bytes at their place, until a raw message comes); nothing beyond
/// the receive window is held; an ended stream ignores segments and stays
/// ended; what is sent carries the written bytes at their place and decodes.
pub fn stream_segments(data: &[u8]) {
    let mut input = Input::new(data);
    let now = Timestamp::from_millis(1_000);
    let opener = input.u8().is_multiple_of(2);
    let mut stream = Stream::open(STREAM, stream_target(), stream_config(), now);
    let syn = stream.poll_segment(now, 100).expect("the opener's SYN");
    if !opener {
        match Stream::accept_syn(&syn, stream_config(), now) {
            Some(acceptor) => stream = acceptor,
            None => panic!("a real SYN is accepted"),
        }
        assert_eq!(stream.target(), Some(&stream_target()));
    }
    let mut model = Model {
        stream,
        now,
        consistent: true,
        read_to: 1,
        written: 0,
    };
    for _ in 0..STREAM_STEPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % op::COUNT {
            op::SEGMENT => {
                let seg = model_segment(&mut input);
                model.receive(&seg);
            }
            op::RAW => {
                let Ok(message) = StreamMessage::decode(input.record()) else {
                    continue;
                };
                model.consistent = false;
                for seg in &message.segments {
                    model.receive(seg);
                }
            }
            op::WAIT => {
                let wait = Duration::from_millis(50 * u64::from(input.u8()));
                model.now = model.now.saturating_add(wait);
                model.stream.handle_timeout(model.now);
                model.check();
            }
            op::READ => model.read(16 * usize::from(input.u8())),
            op::WRITE => model.write(8 * usize::from(input.u8())),
            op::SEND => {
                let max = usize::from(input.u8()) + 1;
                model.send(max);
                model.check();
            }
            op::CLOSE => model.stream.close(),
            op::RESET => {
                let was = model.stream.state();
                let reason =
                    ResetReason::from_code(input.u8() % 9).unwrap_or(ResetReason::GeneralFailure);
                model.stream.reset(reason);
                if !was.is_terminal() {
                    assert_eq!(model.stream.state(), StreamState::Reset(reason));
                }
                model.check();
            }
            _ => {
                model.stream.accept();
                model.check();
            }
        }
    }
}

/// A segment of the checked stream whose data, if any, is the peer's bytes
/// at their place: flags, then the sequence number (small or any), the ack
/// (small or any), the window, the data length.
fn model_segment(input: &mut Input<'_>) -> Segment {
    let flags = input.u8() & (FLAG_SYN | FLAG_ACK | FLAG_FIN | FLAG_RST | FLAG_PROBE);
    let shape = input.u8();
    let seq = if shape & 1 == 0 {
        u64::from(input.u16())
    } else {
        u64::from_be_bytes(std::array::from_fn(|_| input.u8()))
    };
    let ack = if shape & 2 == 0 {
        u64::from(input.u16())
    } else {
        u64::from_be_bytes(std::array::from_fn(|_| input.u8()))
    };
    let window = u32::from(input.u16());
    let len = usize::from(input.u8()) * usize::from(1 + (shape >> 6));
    let start = seq.saturating_add(u64::from(flags & FLAG_SYN != 0));
    let data = (0..len as u64)
        .map_while(|i| start.checked_add(i).map(peer_byte))
        .collect();
    Segment {
        stream: STREAM,
        flags,
        seq,
        ack,
        window,
        target: None,
        reason: (flags & FLAG_RST != 0)
            .then(|| ResetReason::from_code(shape % 9))
            .flatten(),
        data,
    }
}

/// What the SOCKS5 entry makes of a client's bytes: the greeting, then the
/// request after it, then the bytes left (the client's first data).
#[derive(Debug, PartialEq, Eq)]
pub struct Socks5Outcome {
    /// The greeting's parse.
    pub greeting: Parsed<()>,
    /// The request's parse, once the greeting was done.
    pub request: Option<Parsed<Target>>,
    /// Bytes after the request.
    pub rest: usize,
}

/// Runs the entry's parsers as its server does, over bytes that arrive in
/// chunks of `chunk`: parse what was read, read more while incomplete.
pub fn socks5_over(bytes: &[u8], chunk: usize) -> Socks5Outcome {
    let mut buf = Vec::new();
    let mut chunks = bytes.chunks(chunk.max(1));
    let greeting = loop {
        match parse_greeting(&buf) {
            Parsed::Incomplete => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => {
                    return Socks5Outcome {
                        greeting: Parsed::Incomplete,
                        request: None,
                        rest: 0,
                    };
                }
            },
            done => break done,
        }
    };
    let Parsed::Done((), used) = greeting else {
        return Socks5Outcome {
            greeting,
            request: None,
            rest: 0,
        };
    };
    assert!(used <= buf.len(), "a greeting takes bytes it read");
    buf.drain(..used);
    let request = loop {
        match parse_request(&buf) {
            Parsed::Incomplete => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => break Parsed::Incomplete,
            },
            done => break done,
        }
    };
    let mut rest = 0;
    if let Parsed::Done(_, used) = &request {
        assert!(*used <= buf.len(), "a request takes bytes it read");
        rest = buf.len() - used + chunks.map(<[u8]>::len).sum::<usize>();
    }
    Socks5Outcome {
        greeting: Parsed::Done((), used),
        request: Some(request),
        rest,
    }
}

/// `parse_greeting` then `parse_request`, as the SOCKS5 entry reads a
/// client. First byte: the size of the chunks the bytes arrive in; the rest
/// is what the client sent. Checked: the outcome is the same whatever the
/// chunks; a message is decided only when whole (every shorter prefix is
/// incomplete); a refusal gets a failure reply; an accepted target is the
/// address or name sent, and travels to the exit in a SYN that decodes to it.
pub fn socks5_handshake(data: &[u8]) {
    let mut input = Input::new(data);
    let chunk = usize::from(input.u8()).max(1);
    let bytes = input.rest();
    let whole = socks5_over(bytes, bytes.len().max(1));
    assert_eq!(
        socks5_over(bytes, chunk),
        whole,
        "the same whatever the cuts"
    );
    if let Parsed::Done((), used) = whole.greeting {
        for cut in 0..used {
            assert_eq!(
                parse_greeting(bytes.get(..cut).unwrap_or(&[])),
                Parsed::Incomplete
            );
        }
    }
    let Some(request) = whole.request else {
        return;
    };
    let request_bytes = match whole.greeting {
        Parsed::Done((), used) => bytes.get(used..).unwrap_or(&[]),
        _ => &[],
    };
    match request {
        Parsed::Bad(why) => {
            let answer = reply(why.reply_code());
            assert_ne!(answer.get(1), Some(&0), "a refusal is no success");
        }
        Parsed::Incomplete => {}
        Parsed::Done(target, used) => {
            for cut in 0..used {
                assert_eq!(
                    parse_request(request_bytes.get(..cut).unwrap_or(&[])),
                    Parsed::Incomplete,
                    "decided only when whole"
                );
            }
            let port = request_bytes.get(used.saturating_sub(2)..used).map(|p| {
                u16::from_be_bytes([
                    p.first().copied().unwrap_or(0),
                    p.get(1).copied().unwrap_or(0),
                ])
            });
            assert_eq!(Some(target.port()), port, "the port sent");
            if let Target::Domain(name, _) = &target {
                assert_eq!(
                    request_bytes.get(5..used - 2),
                    Some(name.as_bytes()),
                    "the name sent"
                );
            }
            let syn = Segment {
                stream: STREAM,
                flags: FLAG_SYN,
                seq: 0,
                ack: 0,
                window: 0,
                target: Some(target.clone()),
                reason: None,
                data: Vec::new(),
            };
            let message = StreamMessage {
                surbs: None,
                segments: vec![syn],
            };
            let decoded = StreamMessage::decode(&message.encode()).expect("a SYN decodes");
            let again = decoded.segments.first().and_then(|s| s.target.clone());
            assert_eq!(again, Some(target), "the exit reads the target sent");
        }
    }
}
