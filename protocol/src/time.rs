//! Time as the protocol cores see it.
//!
//! Cores never read a clock: every entry point takes the current [`Timestamp`].
//! A timestamp is a count of nanoseconds since an origin the caller chooses (the
//! process start for a real node, zero for the simulator), so virtual and real
//! time are the same type. All arithmetic saturates: a hostile delay field can
//! push an instant to the end of time but never overflow it.

use std::time::Duration;

/// An instant, in nanoseconds since the caller's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The last representable instant; saturated arithmetic ends here.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the origin as a [`Duration`].
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// This instant moved `d` later, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let t = Timestamp::from_nanos(u64::MAX - 5);
        assert_eq!(t.saturating_add(Duration::from_secs(1)), Timestamp::MAX);
        assert_eq!(t.saturating_add(Duration::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(
            Timestamp::from_millis(3).saturating_duration_since(Timestamp::from_millis(1)),
            Duration::from_millis(2)
        );
    }
}
