//! Counters the node's metrics layer reads; no metrics library here.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped by the transport. Each reason is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkDropReason {
    /// The outbound queue of the link was full.
    QueueFull,
    /// The channel of received packets was full (the caller is behind).
    IncomingFull,
    /// A peer finished its stream in the middle of a packet.
    Truncated,
    /// Writing to the link failed (connection lost); the packet is gone.
    LinkFailed,
    /// The packet had the wrong size and was refused before queueing.
    WrongSize,
    /// The destination is not pinned.
    NotPinned,
    /// The endpoint was closing, or the link was removed with the packet queued.
    Closed,
}

impl LinkDropReason {
    /// Every reason, in a fixed order.
    pub const ALL: [LinkDropReason; 7] = [
        LinkDropReason::QueueFull,
        LinkDropReason::IncomingFull,
        LinkDropReason::Truncated,
        LinkDropReason::LinkFailed,
        LinkDropReason::WrongSize,
        LinkDropReason::NotPinned,
        LinkDropReason::Closed,
    ];

    /// The metric label of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDropReason::QueueFull => "queue_full",
            LinkDropReason::IncomingFull => "incoming_full",
            LinkDropReason::Truncated => "truncated",
            LinkDropReason::LinkFailed => "link_failed",
            LinkDropReason::WrongSize => "wrong_size",
            LinkDropReason::NotPinned => "not_pinned",
            LinkDropReason::Closed => "closed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters and gauges of one endpoint, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct LinkStats {
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    dropped: [AtomicU64; LinkDropReason::ALL.len()],
    outbound_links_open: AtomicU64,
    inbound_links_open: AtomicU64,
    connection_attempts: AtomicU64,
    connect_failures: AtomicU64,
    handshake_failures: AtomicU64,
    peers_rejected: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
}

macro_rules! getter {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $($(#[$doc])* pub fn $name(&self) -> u64 { self.$name.load(Ordering::Relaxed) })*
    };
}

impl LinkStats {
    getter! {
        /// Packets fully written to a link's stream (handed to QUIC; not a
        /// receipt: a peer that dies or refuses the link right after loses them).
        packets_sent;
        /// Whole packets read from links (including those then dropped as `IncomingFull`).
        packets_received;
        /// Outbound links with an established connection now (gauge).
        outbound_links_open;
        /// Inbound connections from peers now (gauge).
        inbound_links_open;
        /// Outbound connection attempts (dials).
        connection_attempts;
        /// Dials that did not give a usable link (timeout, refusal, handshake failure).
        connect_failures;
        /// TLS handshakes that failed, in either direction, rejected by either side.
        handshake_failures;
        /// Certificates this node refused because the key was not pinned (or not
        /// the expected peer), counted by the verifiers.
        peers_rejected;
        /// Inbound connections whose handshake completed.
        connections_accepted;
        /// Inbound connections refused before the handshake because
        /// `max_inbound_connections` were open.
        connections_refused;
    }

    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: LinkDropReason) -> u64 {
        self.dropped
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Packets dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        LinkDropReason::ALL.iter().map(|r| self.dropped(*r)).sum()
    }

    /// All links open now, both directions (gauge).
    pub fn links_open(&self) -> u64 {
        self.outbound_links_open() + self.inbound_links_open()
    }

    pub(crate) fn count_drop(&self, reason: LinkDropReason) {
        if let Some(c) = self.dropped.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_sent(&self) {
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_received(&self) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_attempt(&self) {
        self.connection_attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_peer_rejected(&self) {
        self.peers_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_accepted(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn open_gauge(&self, direction: Direction) -> OpenLinkGuard<'_> {
        self.gauge(direction).fetch_add(1, Ordering::Relaxed);
        OpenLinkGuard {
            stats: self,
            direction,
        }
    }

    fn gauge(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Outbound => &self.outbound_links_open,
            Direction::Inbound => &self.inbound_links_open,
        }
    }
}

/// Which side opened a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Outbound,
    Inbound,
}

/// Holds one unit of an open-links gauge; gives it back when dropped.
pub(crate) struct OpenLinkGuard<'a> {
    stats: &'a LinkStats,
    direction: Direction,
}

impl Drop for OpenLinkGuard<'_> {
    fn drop(&mut self) {
        self.stats
            .gauge(self.direction)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_counted_apart() {
        let labels: std::collections::HashSet<_> =
            LinkDropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), LinkDropReason::ALL.len());
        let stats = LinkStats::default();
        stats.count_drop(LinkDropReason::Truncated);
        stats.count_drop(LinkDropReason::Truncated);
        stats.count_drop(LinkDropReason::QueueFull);
        assert_eq!(stats.dropped(LinkDropReason::Truncated), 2);
        assert_eq!(stats.dropped(LinkDropReason::QueueFull), 1);
        assert_eq!(stats.dropped(LinkDropReason::LinkFailed), 0);
        assert_eq!(stats.dropped_total(), 3);
    }

    #[test]
    fn gauge_goes_back_down() {
        let stats = LinkStats::default();
        {
            let _a = stats.open_gauge(Direction::Outbound);
            let _b = stats.open_gauge(Direction::Inbound);
            assert_eq!(stats.links_open(), 2);
        }
        assert_eq!(stats.links_open(), 0);
    }
}
