//! Byte streams over the mixnet, a SOCKS5 entry, and an exit.
//!
//! - [`StreamClient`]: the opener. `connect(target)` gives a [`MixStream`]
//!   (`AsyncRead + AsyncWrite`) through one exit; the exit never learns the
//!   opener's address: its messages claim none, and answers come through
//!   the reply SURBs they carry.
//! - [`StreamListener`] and [`serve_exit`]: the exit, under an
//!   [`ExitPolicy`] (deny by default).
//! - [`serve_socks5`]: a SOCKS5 entry (RFC 1928) over a [`StreamClient`].
//!
//! The protocol, the policy format and the rate profiles are described in
//! docs/streams.md; the state machine of one stream is `stream_core`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use stream_core::StreamConfig;

pub mod exit;
pub mod mux;
pub mod policy;
pub mod socks5;

pub use exit::{ExitStats, serve_exit};
pub use mux::{ConnectError, IncomingStream, MixStream, StreamClient, StreamListener};
pub use policy::{ExitPolicy, PortSpec};
pub use socks5::{Socks5Options, Socks5Stats, serve_socks5};

/// Settings of a stream task (either side).
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Each stream's windows and timers.
    pub stream: StreamConfig,
    /// Streams open at once.
    pub max_streams: usize,
    /// Exit: streams open at once from one opener's session.
    pub max_streams_per_peer: usize,
    /// Opener: reply SURBs in one message at most.
    pub surbs_per_message: usize,
    /// Opener: reply SURBs the exit should hold for a stream that receives.
    pub surb_stock: usize,
    /// Exit: reply SURBs kept for one stream at most (more are dropped).
    pub max_surbs_per_stream: usize,
    /// Opener: fragments of one message at most.
    pub message_fragments: usize,
    /// Exit: fragments of one reply at most.
    pub reply_fragments: usize,
    /// Exit: how long written bytes may wait for more to fill a reply.
    pub coalesce: Duration,
    /// Exit: how long the ids of ended streams are remembered, so that a
    /// late copy of a SYN does not open the connection again.
    pub remember_ended: Duration,
    /// Exit: ended stream ids remembered at most (the oldest go first).
    pub max_remembered_ended: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            stream: StreamConfig {
                // Acks of the opener ride on its SURB messages; a separate
                // ack costs a packet of its λ_P budget.
                ack_delay: Duration::from_millis(500),
                ..StreamConfig::default()
            },
            max_streams: 256,
            max_streams_per_peer: 32,
            surbs_per_message: 19,
            surb_stock: 64,
            max_surbs_per_stream: 512,
            message_fragments: 4,
            reply_fragments: 4,
            coalesce: Duration::from_millis(20),
            remember_ended: Duration::from_secs(600),
            max_remembered_ended: 65_536,
        }
    }
}

/// Counters of a stream task.
#[derive(Debug, Default)]
pub struct StreamShellStats {
    /// Streams opened (opener) or asked for (exit).
    pub streams_opened: AtomicU64,
    /// Streams that ended reset or timed out.
    pub streams_failed: AtomicU64,
    /// Exit: streams refused because too many were open.
    pub streams_refused_full: AtomicU64,
    /// Messages sent (each one end-to-end message).
    pub messages_sent: AtomicU64,
    /// Messages the client would not queue (the stream sends them again).
    pub send_errors: AtomicU64,
    /// Received messages that are not stream messages (dropped).
    pub malformed_messages: AtomicU64,
    /// Segments taken.
    pub segments_received: AtomicU64,
    /// Segments of no known stream (dropped).
    pub unknown_stream: AtomicU64,
    /// Exit: segments (a late SYN among them) of a stream that ended (dropped).
    pub ended_stream: AtomicU64,
    /// Exit: times a stream had something to send and no SURB.
    pub waits_for_surbs: AtomicU64,
    /// Exit: reply SURBs dropped beyond `max_surbs_per_stream`.
    pub surbs_discarded: AtomicU64,
}
