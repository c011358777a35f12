//! Inputs the fuzz target `stream_segments` found to fail, as tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use protocol::Timestamp;
use stream_core::frame::{FLAG_ACK, FLAG_FIN, FLAG_SYN};
use stream_core::{Segment, Stream, StreamConfig, StreamId, Target};

fn acceptor() -> Stream {
    let now = Timestamp::from_millis(0);
    let target = Target::Domain("example.org".into(), 443);
    let mut opener = Stream::open(StreamId([9; 16]), target, StreamConfig::default(), now);
    let syn = opener.poll_segment(now, 100).unwrap();
    Stream::accept_syn(&syn, StreamConfig::default(), now).unwrap()
}

fn segment(flags: u8, seq: u64, data: Vec<u8>) -> Segment {
    Segment {
        stream: StreamId([9; 16]),
        flags,
        seq,
        ack: 0,
        window: 0,
        target: None,
        reason: None,
        data,
    }
}

#[test]
fn bytes_past_the_peers_fin_are_dropped() {
    let now = Timestamp::from_millis(0);
    let mut stream = acceptor();
    // The opener's SYN again, with its FIN: the stream ends at byte 1.
    stream.handle_segment(now, &segment(FLAG_SYN | FLAG_ACK | FLAG_FIN, 0, Vec::new()));
    assert!(stream.at_eof());
    // Bytes after that end are not delivered after the end of file.
    stream.handle_segment(now, &segment(0, 0, vec![7; 41]));
    assert_eq!(stream.readable_len(), 0);
    assert!(stream.at_eof());
    assert_eq!(stream.stats().bytes_received, 0);
}

#[test]
fn bytes_held_ahead_past_a_later_fin_are_dropped() {
    let now = Timestamp::from_millis(0);
    let mut stream = acceptor();
    // Bytes 11 to 30 arrive ahead of a gap, then a FIN at 21, then 1 to 10.
    stream.handle_segment(now, &segment(FLAG_ACK, 11, vec![2; 20]));
    stream.handle_segment(now, &segment(FLAG_ACK | FLAG_FIN, 21, Vec::new()));
    stream.handle_segment(now, &segment(FLAG_ACK, 1, vec![1; 10]));
    assert_eq!(
        stream.readable_len(),
        20,
        "bytes 1 to 20, none past the FIN"
    );
    let mut buf = [0u8; 64];
    assert_eq!(stream.read(&mut buf), 20);
    assert!(stream.at_eof());
}
