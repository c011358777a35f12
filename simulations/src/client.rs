//! The clients' sending behaviour, behind a small trait.
//!
//! The real client state machine (crate `client`) is not part of this crate
//! yet, so [`PoissonClient`] rebuilds the Loopix sending rules from the
//! protocol's own [`PoissonTicker`]: at rate λ_P a tick sends the next queued
//! real packet, or a drop-cover packet when nothing is queued; loop cover
//! leaves at rate λ_L and separate drop cover at λ_D. The engine only talks to
//! a [`SimClient`], so a thin adapter over the real client core can replace
//! it without touching the engine: the trait is "when do you want to wake up,
//! and what do you send now".

use std::collections::VecDeque;

use protocol::poisson::PoissonTicker;
use protocol::time::Timestamp;
use rand_chacha::ChaCha20Rng;

/// What a client puts on its link at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emission {
    /// A real packet, identified by the id the engine gave it when queueing it.
    Real(u64),
    /// Loop cover to the client itself.
    LoopCover,
    /// Drop cover to a random gateway.
    DropCover,
}

/// A client as the engine sees it.
pub trait SimClient {
    /// Queues a real packet; false if the queue is full (the packet is lost).
    fn enqueue(&mut self, packet: u64) -> bool;
    /// When the client next wants to send, if ever.
    fn next_wakeup(&self) -> Option<Timestamp>;
    /// What the client sends at `now` (at most one packet per call; call again
    /// while [`SimClient::next_wakeup`] is not later than `now`).
    fn poll(&mut self, now: Timestamp, rng: &mut ChaCha20Rng) -> Option<Emission>;
    /// Real packets waiting to be sent.
    fn queued(&self) -> usize;
}

/// Loopix sending rules with three independent Poisson clocks.
#[derive(Debug)]
pub struct PoissonClient {
    payload: PoissonTicker,
    loops: PoissonTicker,
    drops: PoissonTicker,
    queue: VecDeque<u64>,
    capacity: usize,
}

impl PoissonClient {
    /// A client with rates λ_P, λ_L, λ_D (per second) starting at `now`, holding
    /// at most `capacity` real packets.
    pub fn new(
        lambda_p: f64,
        lambda_l: f64,
        lambda_d: f64,
        capacity: usize,
        now: Timestamp,
        rng: &mut ChaCha20Rng,
    ) -> Self {
        PoissonClient {
            payload: PoissonTicker::new(lambda_p, now, rng),
            loops: PoissonTicker::new(lambda_l, now, rng),
            drops: PoissonTicker::new(lambda_d, now, rng),
            queue: VecDeque::new(),
            capacity,
        }
    }
}

impl SimClient for PoissonClient {
    fn enqueue(&mut self, packet: u64) -> bool {
        if self.queue.len() >= self.capacity {
            return false;
        }
        self.queue.push_back(packet);
        true
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        [
            self.payload.next_tick(),
            self.loops.next_tick(),
            self.drops.next_tick(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn poll(&mut self, now: Timestamp, rng: &mut ChaCha20Rng) -> Option<Emission> {
        // Earliest clock first; ties go to the payload clock, then loops.
        let due = self.next_wakeup().filter(|t| *t <= now)?;
        if self.payload.next_tick() == Some(due) {
            self.payload.poll(now, rng)?;
            return Some(match self.queue.pop_front() {
                Some(id) => Emission::Real(id),
                None => Emission::DropCover,
            });
        }
        if self.loops.next_tick() == Some(due) {
            self.loops.poll(now, rng)?;
            return Some(Emission::LoopCover);
        }
        self.drops.poll(now, rng)?;
        Some(Emission::DropCover)
    }

    fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn real_packets_replace_drop_cover_without_changing_the_rate() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut c = PoissonClient::new(10.0, 0.0, 0.0, 5, Timestamp::ZERO, &mut rng);
        for id in 0..7 {
            let accepted = c.enqueue(id);
            assert_eq!(accepted, id < 5);
        }
        let mut sent = Vec::new();
        while let Some(t) = c.next_wakeup() {
            if t > Timestamp::from_millis(100_000) {
                break;
            }
            sent.push(c.poll(t, &mut rng).unwrap());
        }
        assert_eq!(
            &sent[..6],
            &[
                Emission::Real(0),
                Emission::Real(1),
                Emission::Real(2),
                Emission::Real(3),
                Emission::Real(4),
                Emission::DropCover
            ]
        );
        assert!((900..1_100).contains(&sent.len()), "{}", sent.len());
        assert_eq!(c.queued(), 0);
    }
}
