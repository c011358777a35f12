//! Streams that ended, remembered for a while after their state is gone.
//!
//! An opener retransmits its SYN until it hears the exit's answer, and the
//! mixnet delays each copy independently: a copy may arrive after the
//! stream was answered, carried its bytes, closed and was forgotten. Taken
//! as new, it would open the same connection again, behind the opener's
//! back. The exit therefore remembers the ids of ended streams for longer
//! than any copy can be late (`StreamConfig::max_rto` times the
//! retransmissions, or the session's own bound), and drops a SYN under one
//! of them. The memory is bounded: past `capacity` the oldest ids go first.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use protocol::Timestamp;

use crate::frame::StreamId;

/// Ids of streams that ended, each kept for `keep` or until `capacity`
/// newer ones pushed it out.
#[derive(Debug)]
pub struct EndedStreams {
    order: VecDeque<(Timestamp, StreamId)>,
    ids: HashSet<StreamId>,
    keep: Duration,
    capacity: usize,
}

impl EndedStreams {
    /// Remembers ended streams for `keep`, at most `capacity` of them.
    pub fn new(keep: Duration, capacity: usize) -> Self {
        EndedStreams {
            order: VecDeque::new(),
            ids: HashSet::new(),
            keep,
            capacity: capacity.max(1),
        }
    }

    /// Records that stream `id` ended at `now`.
    pub fn insert(&mut self, now: Timestamp, id: StreamId) {
        self.expire(now);
        if !self.ids.insert(id) {
            return;
        }
        self.order.push_back((now, id));
        while self.order.len() > self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Whether stream `id` ended less than `keep` before `now`.
    pub fn contains(&mut self, now: Timestamp, id: &StreamId) -> bool {
        self.expire(now);
        self.ids.contains(id)
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < self.keep {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_nanos(secs * 1_000_000_000)
    }

    fn id(n: u8) -> StreamId {
        StreamId([n; 16])
    }

    #[test]
    fn an_ended_stream_is_remembered_for_keep_and_then_forgotten() {
        let mut ended = EndedStreams::new(Duration::from_secs(60), 100);
        ended.insert(at(10), id(1));
        assert!(ended.contains(at(10), &id(1)));
        assert!(ended.contains(at(69), &id(1)));
        assert!(!ended.contains(at(69), &id(2)));
        assert!(!ended.contains(at(70), &id(1)));
        assert!(ended.is_empty());
    }

    #[test]
    fn past_capacity_the_oldest_ids_go_first() {
        let mut ended = EndedStreams::new(Duration::from_secs(600), 3);
        for n in 0..5 {
            ended.insert(at(u64::from(n)), id(n));
        }
        assert_eq!(ended.len(), 3);
        assert!(!ended.contains(at(5), &id(0)));
        assert!(!ended.contains(at(5), &id(1)));
        assert!((2..5).all(|n| ended.contains(at(5), &id(n))));
    }

    #[test]
    fn an_id_inserted_twice_is_kept_once() {
        let mut ended = EndedStreams::new(Duration::from_secs(600), 3);
        ended.insert(at(1), id(7));
        ended.insert(at(2), id(7));
        assert_eq!(ended.len(), 1);
        ended.insert(at(3), id(8));
        ended.insert(at(4), id(9));
        ended.insert(at(5), id(10));
        assert!(
            !ended.contains(at(6), &id(7)),
            "pushed out by three newer ids"
        );
    }
}
