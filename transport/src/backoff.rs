//! Reconnection delays: exponential, capped, with jitter from a seeded RNG.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The delay before each reconnection attempt of one link. Sans-IO: it
/// only computes delays; the link task sleeps.
///
/// The n-th delay is drawn uniformly from `[d/2, d]` where
/// `d = min(initial * 2^n, max)` ("equal jitter"), so links that failed
/// together do not redial together.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// A backoff starting at `initial`, never above `max`, jittered by an
    /// RNG seeded with `seed`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            next: initial,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The delay to wait before the next attempt; doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let high = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let low = high / 2;
        Duration::from_micros(self.rng.random_range(low..=high))
    }

    /// The delay to wait after giving the link up to another party (a
    /// newer session of the same client): drawn at the cap, and the
    /// following delays stay there until [`Backoff::reset`].
    pub fn capped_delay(&mut self) -> Duration {
        self.next = self.max;
        self.next_delay()
    }

    /// Starts again from the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(initial, max, 1);
        let mut ceiling = initial;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= ceiling && d >= ceiling / 2, "{d:?} vs {ceiling:?}");
            ceiling = (ceiling * 2).min(max);
        }
        assert_eq!(ceiling, max);
        b.reset();
        assert!(b.next_delay() <= initial);
    }

    #[test]
    fn a_capped_delay_waits_at_the_cap_until_a_reset() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(30));
        let mut b = Backoff::new(initial, max, 3);
        for _ in 0..5 {
            let d = b.capped_delay();
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
        let d = b.next_delay();
        assert!(
            d >= max / 2,
            "the delay after a capped one stays at the cap: {d:?}"
        );
        b.reset();
        assert!(b.next_delay() <= initial);
    }

    #[test]
    fn same_seed_same_delays_other_seed_differs() {
        let run = |seed| {
            let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
