//! When the intake opens a packet itself, and when it hands it to the
//! workers.
//!
//! Opening a packet on the intake costs no thread crossing: no worker to
//! wake, no wake-up of the runtime when the worker hands the packet back.
//! At everyday load that is most of what a node spends beyond the unwrap,
//! so the intake opens packets itself even when a burst of them waits (a
//! previous hop releases the packets due at one timer tick together, and
//! its link writes them in one go). But the intake is one thread: when the
//! packets offered would keep it busy most of the time, a burst opened on
//! it waits longer than on every core, so then only a packet that arrives
//! nearly alone is opened there. The policy is a plain state machine, with
//! time passed in.

use std::time::Duration;

use protocol::time::Timestamp;

/// Most packets waiting behind one that the intake still opens itself
/// while it is lightly loaded: about 1 ms of unwraps on a current core
/// (2 ms on a slow one), the longest a packet then waits behind the
/// intake's own unwraps.
pub const INLINE_BEHIND_LIGHT: usize = 16;

/// The same while the intake is heavily loaded: only packets that arrive
/// nearly alone, so that bursts are opened on every core.
pub const INLINE_BEHIND_HEAVY: usize = 2;

/// Share of one core the offered packets' unwraps may take before the
/// intake counts as heavily loaded.
pub const HEAVY_LOAD: f64 = 0.7;

/// How long the offered load is counted over before it is judged.
pub const LOAD_WINDOW: Duration = Duration::from_millis(50);

/// What one unwrap is taken to cost before the intake has timed one.
const FIRST_UNWRAP_COST: Duration = Duration::from_micros(100);

/// The intake's choice between opening a packet itself and handing it to
/// the workers, from the load offered to it.
#[derive(Debug, Clone)]
pub struct InlinePolicy {
    /// Mean CPU time of the intake's own unwraps (exponentially weighted).
    unwrap_cost: Duration,
    /// Start of the current window.
    window_start: Option<Timestamp>,
    /// Packets arrived in the current window.
    arrived: u32,
    /// Whether the last window's offered load passed [`HEAVY_LOAD`].
    heavy: bool,
}

impl Default for InlinePolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl InlinePolicy {
    /// A policy that starts lightly loaded.
    pub fn new() -> Self {
        Self {
            unwrap_cost: FIRST_UNWRAP_COST,
            window_start: None,
            arrived: 0,
            heavy: false,
        }
    }

    /// Notes a packet arrived at `now`.
    pub fn arrived(&mut self, now: Timestamp) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= LOAD_WINDOW {
            let busy = self.unwrap_cost.as_secs_f64() * f64::from(self.arrived);
            self.heavy = busy / elapsed.as_secs_f64() > HEAVY_LOAD;
            self.window_start = Some(now);
            self.arrived = 0;
        }
        self.arrived = self.arrived.saturating_add(1);
    }

    /// Notes that one unwrap on the intake took `took`.
    pub fn opened(&mut self, took: Duration) {
        // A weight of 1/8 for the newest: steady within a few dozen packets.
        self.unwrap_cost = (self.unwrap_cost * 7 + took) / 8;
    }

    /// Whether a packet with `behind` others waiting behind it is opened
    /// by the intake itself.
    pub fn opens_itself(&self, behind: usize) -> bool {
        behind <= self.inline_behind()
    }

    /// Most packets that may wait behind one the intake opens itself.
    pub fn inline_behind(&self) -> usize {
        if self.heavy {
            INLINE_BEHIND_HEAVY
        } else {
            INLINE_BEHIND_LIGHT
        }
    }

    /// The mean cost of one of the intake's unwraps.
    pub fn unwrap_cost(&self) -> Duration {
        self.unwrap_cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rate` packets a second for `secs` seconds, each opened in `cost`.
    fn offer(
        policy: &mut InlinePolicy,
        from: Timestamp,
        rate: f64,
        secs: f64,
        cost: Duration,
    ) -> Timestamp {
        let n = (rate * secs) as u64;
        let gap = Duration::from_secs_f64(1.0 / rate);
        let mut now = from;
        for _ in 0..n {
            policy.arrived(now);
            policy.opened(cost);
            now = now.saturating_add(gap);
        }
        now
    }

    #[test]
    fn bursts_are_opened_on_the_intake_until_the_load_passes_the_threshold() {
        let cost = Duration::from_micros(70);
        let mut policy = InlinePolicy::new();
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_LIGHT);
        // 3 000 packets/s at 70 µs: 21 % of a core.
        let now = offer(&mut policy, Timestamp::from_nanos(0), 3_000.0, 0.5, cost);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_LIGHT);
        assert!(policy.opens_itself(16) && !policy.opens_itself(17));
        // 9 000 packets/s: 63 %, still light.
        let now = offer(&mut policy, now, 9_000.0, 0.5, cost);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_LIGHT);
        // 12 000 packets/s: 84 %, heavy; only lone packets on the intake.
        let now = offer(&mut policy, now, 12_000.0, 0.5, cost);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_HEAVY);
        assert!(policy.opens_itself(2) && !policy.opens_itself(3));
        // The load falls again: light after one window.
        let now = offer(&mut policy, now, 1_000.0, 0.12, cost);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_LIGHT);
        // After a long silence the first window is light whatever came before.
        let now = offer(&mut policy, now, 12_000.0, 0.5, cost);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_HEAVY);
        let later = now.saturating_add(Duration::from_secs(10));
        policy.arrived(later);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_LIGHT);
    }

    #[test]
    fn the_load_counts_the_unwraps_at_their_measured_cost() {
        let mut policy = InlinePolicy::new();
        assert_eq!(policy.unwrap_cost(), FIRST_UNWRAP_COST);
        // The same 6 000 packets/s: light at 70 µs (42 %), heavy at 140 µs (84 %).
        let now = offer(
            &mut policy,
            Timestamp::from_nanos(0),
            6_000.0,
            0.5,
            Duration::from_micros(70),
        );
        assert!((policy.unwrap_cost().as_secs_f64() - 70e-6).abs() < 1e-6);
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_LIGHT);
        offer(&mut policy, now, 6_000.0, 0.5, Duration::from_micros(140));
        assert_eq!(policy.inline_behind(), INLINE_BEHIND_HEAVY);
    }
}
