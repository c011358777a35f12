//! The exponential clock behind every Loopix rate.
//!
//! A client sends at rate λ_P, loop cover at λ_L, a mix node its own cover at
//! λ_M: each is a Poisson process, i.e. independent exponential gaps. A
//! [`PoissonTicker`] holds the instant of the next event; the caller asks when
//! that is, and when the time has come, takes the tick and the ticker draws the
//! next gap from the RNG it is given.

use std::time::Duration;

use rand::CryptoRng;

use crate::packet::DelaySampler;
use crate::time::Timestamp;

/// Events at the times of a Poisson process of a given rate.
#[derive(Clone, Debug)]
pub struct PoissonTicker {
    gaps: Option<DelaySampler>,
    next: Option<Timestamp>,
}

impl PoissonTicker {
    /// A ticker of `rate_per_sec` events per second (zero or less: never ticks),
    /// whose first event follows `start` by one random gap.
    pub fn new(rate_per_sec: f64, start: Timestamp, rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let gaps = (rate_per_sec > 0.0 && rate_per_sec.is_finite())
            .then(|| DelaySampler::new(Duration::from_secs_f64(1.0 / rate_per_sec)));
        let next = gaps.map(|g| start.saturating_add(g.sample(rng)));
        PoissonTicker { gaps, next }
    }

    /// When the next event is due, if ever.
    pub fn next_tick(&self) -> Option<Timestamp> {
        self.next
    }

    /// If an event is due at `now`, consumes it and returns its scheduled
    /// instant; the next one is drawn from that instant, not from `now`, so a
    /// late caller does not slow the process down.
    pub fn poll(
        &mut self,
        now: Timestamp,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Option<Timestamp> {
        let due = self.next.filter(|t| *t <= now)?;
        self.next = self.gaps.map(|g| due.saturating_add(g.sample(rng)));
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn rate_matches_and_zero_rate_never_ticks() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut t = PoissonTicker::new(100.0, Timestamp::ZERO, &mut rng);
        let end = Timestamp::from_millis(100_000);
        let mut n = 0;
        while let Some(due) = t.next_tick() {
            if due > end {
                break;
            }
            assert_eq!(t.poll(due, &mut rng), Some(due));
            n += 1;
        }
        // 10 000 expected; Poisson std dev is 100.
        assert!((9_600..=10_400).contains(&n), "{n} ticks");
        let mut never = PoissonTicker::new(0.0, Timestamp::ZERO, &mut rng);
        assert_eq!(never.next_tick(), None);
        assert_eq!(never.poll(Timestamp::MAX, &mut rng), None);
    }

    #[test]
    fn poll_before_due_does_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let mut t = PoissonTicker::new(1.0, Timestamp::ZERO, &mut rng);
        let due = t.next_tick().unwrap();
        assert_eq!(t.poll(Timestamp::ZERO, &mut rng), None);
        assert_eq!(t.next_tick(), Some(due));
    }
}
