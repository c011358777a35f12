//! Settings of an endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::TransportError;
use crate::tls::InboundPolicy;

/// Settings of an [`crate::Endpoint`]. [`LinkConfig::new`] gives the
/// defaults; change fields as needed.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// UDP address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Exact size of every packet on every link (the network uses 2413 B).
    pub packet_size: usize,
    /// Bound of each outbound link's queue, in packets.
    pub queue_capacity: usize,
    /// Bound of the channel of received packets, in packets.
    pub incoming_capacity: usize,
    /// First reconnection delay of a link.
    pub backoff_initial: Duration,
    /// Largest reconnection delay of a link.
    pub backoff_max: Duration,
    /// Seed of the reconnection jitter (mixed with each peer's id).
    pub backoff_seed: u64,
    /// Longest time a dial (or an inbound handshake) may take.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is dead.
    pub idle_timeout: Duration,
    /// Dialers send a keep-alive this often so idle links stay up.
    pub keep_alive: Duration,
    /// How long [`crate::Endpoint::close`] waits for queued packets to be
    /// delivered before it ends the remaining links.
    pub drain_timeout: Duration,
    /// Who may connect to the listening side.
    pub inbound_policy: InboundPolicy,
    /// Most inbound connections handled at once; more are refused.
    pub max_inbound_connections: usize,
}

impl LinkConfig {
    /// Defaults for a node listening on `listen` with packets of `packet_size` bytes.
    pub fn new(listen: SocketAddr, packet_size: usize) -> Self {
        Self {
            listen,
            packet_size,
            queue_capacity: 1024,
            incoming_capacity: 4096,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            backoff_seed: 0,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(2),
            inbound_policy: InboundPolicy::PinnedOnly,
            max_inbound_connections: 4096,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), TransportError> {
        if self.packet_size == 0 || self.packet_size > 1 << 20 {
            return Err(TransportError::Config("packet_size must be 1 B to 1 MiB"));
        }
        if self.queue_capacity == 0 || self.incoming_capacity == 0 {
            return Err(TransportError::Config(
                "queue capacities must be at least 1",
            ));
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(TransportError::Config(
                "keep_alive must be shorter than idle_timeout",
            ));
        }
        if self.handshake_timeout.is_zero() || self.max_inbound_connections == 0 {
            return Err(TransportError::Config(
                "handshake_timeout and max_inbound_connections must be positive",
            ));
        }
        Ok(())
    }

    /// QUIC transport settings; `listening` is the side that accepts links.
    pub(crate) fn quic_transport(
        &self,
        listening: bool,
    ) -> Result<quinn::TransportConfig, TransportError> {
        let mut t = quinn::TransportConfig::default();
        // Only the dialer opens a stream, exactly one at a time.
        t.max_concurrent_bidi_streams(0u32.into());
        t.max_concurrent_uni_streams(u32::from(listening).into());
        t.datagram_receive_buffer_size(None);
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::Config("idle_timeout is too large"))?;
        t.max_idle_timeout(Some(idle));
        t.keep_alive_interval((!listening).then_some(self.keep_alive));
        // Fewer acknowledgements: each one is a datagram to send, one to
        // receive and a wake-up of the sender's thread, and by default
        // every second datagram (every Sphinx packet) draws one.
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into());
        ack.max_ack_delay(Some(MAX_ACK_DELAY));
        t.ack_frequency_config(Some(ack));
        // Unacknowledged bytes may then reach the default initial window
        // (12 000 B, five packets) before an acknowledgement comes, and a
        // link is almost always app-limited, so its window never grows:
        // without a larger one, a burst of releases would wait on the
        // acknowledgements and leave later than its release instant.
        let mut cubic = quinn::congestion::CubicConfig::default();
        cubic.initial_window(INITIAL_WINDOW);
        t.congestion_controller_factory(Arc::new(cubic));
        Ok(t)
    }
}

/// Ack-eliciting datagrams a peer may receive before it must acknowledge
/// (ten Sphinx packets of two datagrams each; QUIC's default is one).
const ACK_ELICITING_THRESHOLD: u32 = 19;

/// Longest a peer may hold an acknowledgement (QUIC's default is 25 ms).
const MAX_ACK_DELAY: Duration = Duration::from_millis(10);

/// Bytes a link may send before its first acknowledgement: 100 packets.
const INITIAL_WINDOW: u64 = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = LinkConfig::new(addr, 2413);
        config.validate().unwrap();
        let mut bad = config.clone();
        bad.queue_capacity = 0;
        assert!(bad.validate().is_err());
        let mut bad = config.clone();
        bad.packet_size = 0;
        assert!(bad.validate().is_err());
        let mut bad = config;
        bad.keep_alive = bad.idle_timeout;
        assert!(bad.validate().is_err());
    }
}
