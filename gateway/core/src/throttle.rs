//! Per-client rate limiting.
//!
//! A Loopix client sends at a fixed, published rate: λ_P packets per second of
//! real-or-drop-cover traffic plus λ_L of loop cover. A client that sends
//! faster is either broken or trying to flood the mixnet through its gateway,
//! so each client gets a [`TokenBucket`] that refills at that rate and holds at
//! most a configured burst. Packets beyond it are dropped and counted; other
//! clients, each with their own bucket, are not affected.

use protocol::time::Timestamp;

/// How fast a client may send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleConfig {
    /// Sustained packets per second (the network's λ_P + λ_L).
    pub rate: f64,
    /// Packets a client may send at once after a quiet period.
    pub burst: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            rate: 20.0,
            burst: 40.0,
        }
    }
}

/// A token bucket: one token per packet, refilled continuously.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    config: ThrottleConfig,
    tokens: f64,
    updated: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(config: ThrottleConfig, now: Timestamp) -> Self {
        TokenBucket {
            config,
            tokens: config.burst.max(0.0),
            updated: now,
        }
    }

    /// Takes one token if there is one; `false` means the packet is over the rate.
    pub fn try_take(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Timestamp) -> f64 {
        self.refill(now);
        self.tokens
    }

    fn refill(&mut self, now: Timestamp) {
        if now <= self.updated {
            return;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let rate = self.config.rate.max(0.0);
        self.tokens = (self.tokens + elapsed * rate).min(self.config.burst.max(0.0));
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let cfg = ThrottleConfig {
            rate: 10.0,
            burst: 5.0,
        };
        let mut b = TokenBucket::new(cfg, Timestamp::ZERO);
        let first = (0..20).filter(|_| b.try_take(Timestamp::ZERO)).count();
        assert_eq!(first, 5);
        // One second later: ten tokens have arrived but the bucket holds five.
        let t = Timestamp::from_millis(1_000);
        assert_eq!((0..20).filter(|_| b.try_take(t)).count(), 5);
        // 100 ms later: one more.
        let t = Timestamp::from_millis(1_100);
        assert_eq!((0..20).filter(|_| b.try_take(t)).count(), 1);
        // Time going backwards never adds tokens.
        assert_eq!(b.available(Timestamp::ZERO), 0.0);
    }
}
