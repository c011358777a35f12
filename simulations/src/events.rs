//! The engine's events and the seeded random streams.
//!
//! Events are ordered by (virtual instant, sequence number): two events at the
//! same instant run in the order they were scheduled, never in an order that
//! depends on memory layout or hashing. Randomness comes from ChaCha20 streams
//! of one seed, one stream per entity, so adding a draw in one place does not
//! shift every other entity's draws.

use std::cmp::Ordering;

use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The ChaCha20 stream `stream` of `seed`.
pub fn rng_stream(seed: u64, stream: u64) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Something that happens at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A client core's timer (a send or loop tick, an ack deadline, ...) is due.
    ClientWake(u32),
    /// A client's application hands it a new message.
    NewMessage(u32),
    /// A node's (mix node's or gateway's) own loop cover is due.
    NodeCover(u32),
    /// The packet in `slot` reaches `node`.
    Arrive {
        /// The node.
        node: u32,
        /// The packet.
        slot: u32,
    },
    /// `node` releases the packet in `slot` (its delay has passed).
    Release {
        /// The node.
        node: u32,
        /// The packet.
        slot: u32,
    },
    /// The packet in `slot`, in a `SendPacket` link message, reaches the
    /// gateway of `client`.
    AtGateway {
        /// The client that sent it.
        client: u32,
        /// The packet.
        slot: u32,
    },
    /// Link messages of `client` (mailbox acknowledgements) reach its gateway.
    SessionToGateway {
        /// The client.
        client: u32,
        /// The bytes, in the engine's chunk table.
        chunk: u32,
    },
    /// Link messages of a gateway (mailbox pushes) reach `client`.
    SessionToClient {
        /// The client.
        client: u32,
        /// The bytes, in the engine's chunk table.
        chunk: u32,
    },
    /// A gateway core's timer is due.
    GatewayWake(u32),
    /// `client`'s device goes offline (its session ends, its core is no
    /// longer driven) or comes back online (a new session, the core driven again).
    Presence {
        /// The client.
        client: u32,
        /// Whether it is online from now on.
        online: bool,
    },
}

/// An event in the queue.
#[derive(Clone, Copy, Debug)]
pub struct Scheduled {
    /// When.
    pub at: Timestamp,
    /// Order of scheduling, to break ties.
    pub seq: u64,
    /// What.
    pub event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn ties_run_in_scheduling_order_and_streams_differ() {
        let mut heap = BinaryHeap::new();
        for (seq, ms) in [(1, 5), (2, 3), (3, 5), (4, 3)] {
            heap.push(Reverse(Scheduled {
                at: Timestamp::from_millis(ms),
                seq,
                event: Event::ClientWake(seq as u32),
            }));
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|r| r.0.seq)).collect();
        assert_eq!(order, vec![2, 4, 1, 3]);
        let a: u64 = rng_stream(1, 0).random();
        let b: u64 = rng_stream(1, 1).random();
        assert_ne!(a, b);
        assert_eq!(a, rng_stream(1, 0).random::<u64>());
    }
}
