//! Holding packets until their release instants.
//!
//! The [`Mixer`](crate::Mixer) says when each packet leaves; a shell (or the
//! simulator) keeps them in a [`ReleaseQueue`] and takes them out when their
//! time comes. Ties keep arrival order, so the release order is exactly the
//! order of the scheduled instants.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use protocol::time::Timestamp;

use crate::mixer::Transmit;

/// A packet waiting for its release instant.
#[derive(Debug)]
struct Held {
    send_at: Timestamp,
    seq: u64,
    transmit: Transmit,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.send_at, self.seq) == (other.send_at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.send_at, self.seq).cmp(&(other.send_at, other.seq))
    }
}

/// Packets ordered by release instant.
#[derive(Debug, Default)]
pub struct ReleaseQueue {
    heap: BinaryHeap<Reverse<Held>>,
    seq: u64,
}

impl ReleaseQueue {
    /// Holds a packet until its instant.
    pub fn push(&mut self, transmit: Transmit) {
        self.seq += 1;
        self.heap.push(Reverse(Held {
            send_at: transmit.send_at,
            seq: self.seq,
            transmit,
        }));
    }

    /// The earliest release instant.
    pub fn next_release(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(h)| h.send_at)
    }

    /// Takes the next packet due at `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<Transmit> {
        if self.next_release()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(h)| h.transmit)
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::keys::NodeId;

    fn t(ms: u64, tag: u8) -> Transmit {
        Transmit {
            next_hop: NodeId([tag; 32]),
            send_at: Timestamp::from_millis(ms),
            packet: vec![tag],
        }
    }

    #[test]
    fn releases_in_instant_order_and_ties_in_arrival_order() {
        let mut q = ReleaseQueue::default();
        q.push(t(30, 1));
        q.push(t(10, 2));
        q.push(t(10, 3));
        q.push(t(20, 4));
        assert_eq!(q.pop_due(Timestamp::from_millis(9)), None);
        let mut out = Vec::new();
        while let Some(x) = q.pop_due(Timestamp::from_millis(25)) {
            out.push(x.packet[0]);
        }
        assert_eq!(out, vec![2, 3, 4]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_release(), Some(Timestamp::from_millis(30)));
    }
}
