//! The wire format of stream segments: what travels inside one end-to-end
//! message between an opener and an exit.
//!
//! A [`StreamMessage`] is the whole content of one message: a version, an
//! optional report of the reply SURBs the exit holds for the stream, and
//! one or more [`Segment`]s. Only the two ends read it: it is sealed in
//! their end-to-end session, inside the fixed-size Sphinx packets every
//! other message uses, so no gateway or mix node can tell a stream message
//! from any other.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// Version of the stream message format.
pub const STREAM_VERSION: u8 = 1;
/// Segments in one message at most.
pub const MAX_SEGMENTS: usize = 32;
/// Bytes of data in one segment at most.
pub const MAX_SEGMENT_DATA: usize = u16::MAX as usize;
/// Bytes of a segment without its data, target or reason.
pub const SEGMENT_HEADER_LEN: usize = 16 + 1 + 8 + 8 + 4 + 2;
/// Bytes of a message's header before its segments (with a SURB report).
pub const MESSAGE_HEADER_LEN: usize = 1 + 1 + 8 + 1;

/// Why a message or segment does not decode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamFrameError {
    /// The bytes end inside a field.
    #[error("stream message truncated")]
    Truncated,
    /// A version this code does not speak.
    #[error("unknown stream message version {0}")]
    UnknownVersion(u8),
    /// Zero segments, or more than [`MAX_SEGMENTS`].
    #[error("bad segment count {0}")]
    BadSegmentCount(usize),
    /// Flags this version does not define.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// An address type other than none, IPv4, domain or IPv6, or a bad name.
    #[error("bad target address")]
    BadTarget,
    /// A reset reason this version does not define.
    #[error("unknown reset reason {0}")]
    UnknownReason(u8),
    /// Bytes left after the last segment.
    #[error("{0} bytes after the last segment")]
    TrailingBytes(usize),
}

/// Names one stream between an opener and an exit: 16 random bytes the
/// opener draws, so that nobody else can guess or collide with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub [u8; 16]);

impl StreamId {
    /// A fresh random id.
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        StreamId(id)
    }
}

/// Where the exit should connect: an address or a name it resolves itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A host name (resolved by the exit, never by the opener) and port.
    Domain(String, u16),
}

impl Target {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Target::Ip(a) => a.port(),
            Target::Domain(_, p) => *p,
        }
    }

    /// The host part as text (an IP address or the name).
    pub fn host(&self) -> String {
        match self {
            Target::Ip(a) => a.ip().to_string(),
            Target::Domain(h, _) => h.clone(),
        }
    }
}

/// A host name fit for a target: 1 to 255 printable ASCII bytes, no spaces.
pub fn valid_host_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= 255 && name.iter().all(|b| b.is_ascii_graphic())
}

/// Why a stream was refused or reset; the codes are SOCKS5's replies
/// (RFC 1928, section 6), so an entry passes them on unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// General failure (an application abort, an exit error).
    GeneralFailure,
    /// The exit's policy does not allow the target.
    NotAllowed,
    /// The network of the target is unreachable.
    NetworkUnreachable,
    /// The host is unreachable, or its name does not resolve.
    HostUnreachable,
    /// The target refused the connection.
    ConnectionRefused,
    /// A timeout: the connection, or the stream's peer, stopped answering.
    TimedOut,
    /// The target's address type is not supported.
    AddressNotSupported,
}

impl ResetReason {
    /// The SOCKS5 reply code.
    pub fn code(self) -> u8 {
        match self {
            ResetReason::GeneralFailure => 0x01,
            ResetReason::NotAllowed => 0x02,
            ResetReason::NetworkUnreachable => 0x03,
            ResetReason::HostUnreachable => 0x04,
            ResetReason::ConnectionRefused => 0x05,
            ResetReason::TimedOut => 0x06,
            ResetReason::AddressNotSupported => 0x08,
        }
    }

    /// The reason of a SOCKS5 reply code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => ResetReason::GeneralFailure,
            0x02 => ResetReason::NotAllowed,
            0x03 => ResetReason::NetworkUnreachable,
            0x04 => ResetReason::HostUnreachable,
            0x05 => ResetReason::ConnectionRefused,
            0x06 => ResetReason::TimedOut,
            0x08 => ResetReason::AddressNotSupported,
            _ => return None,
        })
    }
}

/// Flag: opens the stream (takes one sequence number).
pub const FLAG_SYN: u8 = 0x01;
/// Flag: `ack` and `window` are meaningful.
pub const FLAG_ACK: u8 = 0x02;
/// Flag: the sender has no more data (takes one sequence number).
pub const FLAG_FIN: u8 = 0x04;
/// Flag: the stream is reset; a reason follows.
pub const FLAG_RST: u8 = 0x08;
/// Flag: a keepalive probe; the peer answers with an ack at once.
pub const FLAG_PROBE: u8 = 0x10;
const KNOWN_FLAGS: u8 = FLAG_SYN | FLAG_ACK | FLAG_FIN | FLAG_RST | FLAG_PROBE;

/// One segment of a stream, as in TCP: the sequence number of its first
/// byte, a cumulative ack, the receive window, and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The stream.
    pub stream: StreamId,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Sequence number of the first byte (or of the SYN or FIN).
    pub seq: u64,
    /// With `FLAG_ACK`: the next sequence number the sender expects.
    pub ack: u64,
    /// With `FLAG_ACK`: bytes past `ack` the sender can still take.
    pub window: u32,
    /// With `FLAG_SYN` from the opener: where to connect.
    pub target: Option<Target>,
    /// With `FLAG_RST`: why.
    pub reason: Option<ResetReason>,
    /// Bytes of the stream, starting at `seq`.
    pub data: Vec<u8>,
}

impl Segment {
    /// Whether a flag is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence numbers the segment takes: its data, and one each for SYN and FIN.
    pub fn seq_len(&self) -> u64 {
        self.data.len() as u64 + u64::from(self.has(FLAG_SYN)) + u64::from(self.has(FLAG_FIN))
    }

    /// Bytes of the encoded segment.
    pub fn encoded_len(&self) -> usize {
        let target = match (&self.target, self.has(FLAG_SYN)) {
            (_, false) => 0,
            (None, true) => 1,
            (Some(Target::Ip(SocketAddr::V4(_))), true) => 1 + 4 + 2,
            (Some(Target::Ip(SocketAddr::V6(_))), true) => 1 + 16 + 2,
            (Some(Target::Domain(h, _)), true) => 1 + 1 + h.len() + 2,
        };
        SEGMENT_HEADER_LEN + target + usize::from(self.has(FLAG_RST)) + self.data.len()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.stream.0);
        out.push(self.flags);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.extend_from_slice(&self.window.to_be_bytes());
        if self.has(FLAG_SYN) {
            match &self.target {
                None => out.push(0),
                Some(Target::Ip(SocketAddr::V4(a))) => {
                    out.push(1);
                    out.extend_from_slice(&a.ip().octets());
                    out.extend_from_slice(&a.port().to_be_bytes());
                }
                Some(Target::Domain(h, port)) => {
                    out.push(3);
                    // Constructors keep names within 255 bytes (`valid_host_name`).
                    out.push(u8::try_from(h.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(h.as_bytes().get(..255).unwrap_or(h.as_bytes()));
                    out.extend_from_slice(&port.to_be_bytes());
                }
                Some(Target::Ip(SocketAddr::V6(a))) => {
                    out.push(4);
                    out.extend_from_slice(&a.ip().octets());
                    out.extend_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        if self.has(FLAG_RST) {
            out.push(self.reason.unwrap_or(ResetReason::GeneralFailure).code());
        }
        let len = self.data.len().min(MAX_SEGMENT_DATA);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(self.data.get(..len).unwrap_or(&[]));
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Segment, StreamFrameError> {
        let stream = StreamId(r.array()?);
        let flags = r.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(StreamFrameError::UnknownFlags(flags));
        }
        let seq = u64::from_be_bytes(r.array()?);
        let ack = u64::from_be_bytes(r.array()?);
        let window = u32::from_be_bytes(r.array()?);
        let target = if flags & FLAG_SYN != 0 {
            decode_target(r)?
        } else {
            None
        };
        let reason = if flags & FLAG_RST != 0 {
            let code = r.u8()?;
            Some(ResetReason::from_code(code).ok_or(StreamFrameError::UnknownReason(code))?)
        } else {
            None
        };
        let len = u16::from_be_bytes(r.array()?);
        let data = r.take(usize::from(len))?.to_vec();
        Ok(Segment {
            stream,
            flags,
            seq,
            ack,
            window,
            target,
            reason,
            data,
        })
    }
}

fn decode_target(r: &mut Reader<'_>) -> Result<Option<Target>, StreamFrameError> {
    Ok(Some(match r.u8()? {
        0 => return Ok(None),
        1 => {
            let ip: [u8; 4] = r.array()?;
            let port = u16::from_be_bytes(r.array()?);
            Target::Ip(SocketAddr::from((Ipv4Addr::from(ip), port)))
        }
        3 => {
            let len = r.u8()?;
            let name = r.take(usize::from(len))?;
            if !valid_host_name(name) {
                return Err(StreamFrameError::BadTarget);
            }
            let name = String::from_utf8(name.to_vec()).map_err(|_| StreamFrameError::BadTarget)?;
            let port = u16::from_be_bytes(r.array()?);
            Target::Domain(name, port)
        }
        4 => {
            let ip: [u8; 16] = r.array()?;
            let port = u16::from_be_bytes(r.array()?);
            Target::Ip(SocketAddr::from((Ipv6Addr::from(ip), port)))
        }
        _ => return Err(StreamFrameError::BadTarget),
    }))
}

/// What the exit reports about the reply SURBs of a stream, so the opener
/// knows when to send more: how many it received in all, and how many it
/// still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SurbReport {
    /// Reply SURBs received for the stream since it opened.
    pub received: u32,
    /// Reply SURBs not used yet.
    pub left: u32,
}

/// The content of one end-to-end message that carries stream segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessage {
    /// From the exit: its SURB stock for the stream of the first segment.
    pub surbs: Option<SurbReport>,
    /// One or more segments, at most [`MAX_SEGMENTS`].
    pub segments: Vec<Segment>,
}

impl StreamMessage {
    /// The bytes of the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(STREAM_VERSION);
        match self.surbs {
            Some(report) => {
                out.push(1);
                out.extend_from_slice(&report.received.to_be_bytes());
                out.extend_from_slice(&report.left.to_be_bytes());
            }
            None => out.push(0),
        }
        let count = self.segments.len().min(MAX_SEGMENTS);
        out.push(count as u8);
        for segment in self.segments.iter().take(count) {
            segment.encode_into(&mut out);
        }
        out
    }

    /// Bytes of [`StreamMessage::encode`].
    pub fn encoded_len(&self) -> usize {
        3 + if self.surbs.is_some() { 8 } else { 0 }
            + self
                .segments
                .iter()
                .take(MAX_SEGMENTS)
                .map(Segment::encoded_len)
                .sum::<usize>()
    }

    /// Reads a message; every byte must belong to it.
    pub fn decode(bytes: &[u8]) -> Result<StreamMessage, StreamFrameError> {
        let mut r = Reader { rest: bytes };
        let version = r.u8()?;
        if version != STREAM_VERSION {
            return Err(StreamFrameError::UnknownVersion(version));
        }
        let surbs = match r.u8()? {
            0 => None,
            1 => Some(SurbReport {
                received: u32::from_be_bytes(r.array()?),
                left: u32::from_be_bytes(r.array()?),
            }),
            other => return Err(StreamFrameError::UnknownFlags(other)),
        };
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_SEGMENTS {
            return Err(StreamFrameError::BadSegmentCount(count));
        }
        let mut segments = Vec::with_capacity(count);
        for _ in 0..count {
            segments.push(Segment::decode_from(&mut r)?);
        }
        if !r.rest.is_empty() {
            return Err(StreamFrameError::TrailingBytes(r.rest.len()));
        }
        Ok(StreamMessage { surbs, segments })
    }
}

/// Reads fields off the front of a byte slice, never past its end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StreamFrameError> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or(StreamFrameError::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StreamFrameError> {
        let [b] = self.array()?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StreamFrameError> {
        self.take(N)?
            .try_into()
            .map_err(|_| StreamFrameError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn target() -> impl Strategy<Value = Option<Target>> {
        prop_oneof![
            Just(None),
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| Some(Target::Ip(SocketAddr::from((Ipv4Addr::from(ip), p))))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| Some(Target::Ip(SocketAddr::from((Ipv6Addr::from(ip), p))))),
            ("[a-z0-9.-]{1,255}", any::<u16>()).prop_map(|(h, p)| Some(Target::Domain(h, p))),
        ]
    }

    fn segment() -> impl Strategy<Value = Segment> {
        (
            any::<[u8; 16]>(),
            0u8..0x20,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            target(),
            0usize..7,
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(id, flags, seq, ack, window, target, reason, data)| {
                let reason = [1u8, 2, 3, 4, 5, 6, 8]
                    .get(reason)
                    .and_then(|c| ResetReason::from_code(*c));
                Segment {
                    stream: StreamId(id),
                    flags,
                    seq,
                    ack,
                    window,
                    target: if flags & FLAG_SYN != 0 { target } else { None },
                    reason: if flags & FLAG_RST != 0 { reason } else { None },
                    data,
                }
            })
    }

    proptest! {
        #[test]
        fn messages_round_trip(
            segments in proptest::collection::vec(segment(), 1..5),
            surbs in proptest::option::of((any::<u32>(), any::<u32>())),
        ) {
            let message = StreamMessage {
                surbs: surbs.map(|(received, left)| SurbReport { received, left }),
                segments,
            };
            let bytes = message.encode();
            prop_assert_eq!(bytes.len(), message.encoded_len());
            prop_assert_eq!(StreamMessage::decode(&bytes), Ok(message));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StreamMessage::decode(&bytes);
        }

        #[test]
        fn every_truncation_is_refused(segments in proptest::collection::vec(segment(), 1..3)) {
            let bytes = StreamMessage { surbs: None, segments }.encode();
            for cut in 0..bytes.len() {
                prop_assert!(StreamMessage::decode(&bytes[..cut]).is_err());
            }
        }
    }

    fn one() -> StreamMessage {
        StreamMessage {
            surbs: None,
            segments: vec![Segment {
                stream: StreamId([7; 16]),
                flags: FLAG_SYN,
                seq: 0,
                ack: 0,
                window: 1000,
                target: Some(Target::Domain("example.org".into(), 443)),
                reason: None,
                data: vec![],
            }],
        }
    }

    #[test]
    fn malformed_messages_are_named() {
        let good = one().encode();
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(
            StreamMessage::decode(&v),
            Err(StreamFrameError::UnknownVersion(9))
        );
        let mut v = good.clone();
        v[2] = 0;
        assert_eq!(
            StreamMessage::decode(&v),
            Err(StreamFrameError::BadSegmentCount(0))
        );
        let mut v = good.clone();
        v[2] = 33;
        assert_eq!(
            StreamMessage::decode(&v),
            Err(StreamFrameError::BadSegmentCount(33))
        );
        let mut v = good.clone();
        v[3 + 16] = 0x80;
        assert_eq!(
            StreamMessage::decode(&v),
            Err(StreamFrameError::UnknownFlags(0x80))
        );
        let mut v = good.clone();
        v.push(0);
        assert_eq!(
            StreamMessage::decode(&v),
            Err(StreamFrameError::TrailingBytes(1))
        );
        // A name with a space, and an unknown address type.
        let mut v = good.clone();
        v[3 + SEGMENT_HEADER_LEN - 2 + 2] = b' ';
        assert_eq!(StreamMessage::decode(&v), Err(StreamFrameError::BadTarget));
        let mut v = good;
        v[3 + SEGMENT_HEADER_LEN - 2] = 2;
        assert_eq!(StreamMessage::decode(&v), Err(StreamFrameError::BadTarget));
    }

    #[test]
    fn reset_reasons_are_socks_codes() {
        for code in 0..=255u8 {
            if let Some(r) = ResetReason::from_code(code) {
                assert_eq!(r.code(), code);
            }
        }
        assert_eq!(ResetReason::NotAllowed.code(), 2);
        assert_eq!(ResetReason::from_code(7), None);
    }
}
