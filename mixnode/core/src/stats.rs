//! Counters of a [`Mixer`](crate::Mixer), readable from any thread.
//!
//! Plain atomics rather than a metrics library: the core stays free of any
//! exporter, and the binary's `/metrics` layer reads these.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::drop_reason::DropReason;

/// What a mixer has done so far.
#[derive(Debug, Default)]
pub struct MixerStats {
    received: AtomicU64,
    forwarded: AtomicU64,
    delivered: AtomicU64,
    loops_returned: AtomicU64,
    cover_sent: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

/// A copy of [`MixerStats`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MixerStatsSnapshot {
    /// Packets handed to the mixer.
    pub received: u64,
    /// Packets scheduled for forwarding.
    pub forwarded: u64,
    /// Final-hop packets handed out for delivery.
    pub delivered: u64,
    /// The node's own loop cover that came back.
    pub loops_returned: u64,
    /// Loop cover packets the node emitted.
    pub cover_sent: u64,
    /// Drops, indexed by [`DropReason::index`].
    pub dropped: [u64; DropReason::ALL.len()],
}

impl MixerStatsSnapshot {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// Drops for every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl MixerStats {
    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn loop_returned(&self) {
        self.loops_returned.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn cover_sent(&self) {
        self.cover_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one drop; also used by shells for drops outside the mixer (full queues).
    pub fn dropped(&self, reason: DropReason) {
        if let Some(c) = self.dropped.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MixerStatsSnapshot {
        MixerStatsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            loops_returned: self.loops_returned.load(Ordering::Relaxed),
            cover_sent: self.cover_sent.load(Ordering::Relaxed),
            dropped: std::array::from_fn(|i| {
                self.dropped.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
            }),
        }
    }
}
