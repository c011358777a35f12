//! The real clock, converted to the cores' [`Timestamp`].
//!
//! The cores count time from an origin of the caller's choosing: a mix node
//! picks its process start ([`Clock::start`]); a gateway, whose mailbox keeps
//! expiry instants across restarts, the Unix epoch ([`Clock::start_unix`]).
//! Either way the clock ticks monotonically from the moment it was made. This
//! is the only place a node reads the clock.

use std::time::{Duration, Instant};

use protocol::time::Timestamp;

/// Converts between the monotonic clock and [`Timestamp`]s.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    /// The timestamp of `origin`.
    offset: Duration,
}

impl Clock {
    /// A clock whose origin is now.
    #[allow(clippy::disallowed_methods)] // the shell owns the real clock
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// A clock whose timestamps are nanoseconds since the Unix epoch (wall
    /// clock read once, then advanced by the monotonic clock).
    #[allow(clippy::disallowed_methods)] // the shell owns the real clock
    pub fn start_unix() -> Self {
        let offset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            origin: Instant::now(),
            offset,
        }
    }

    /// The current instant.
    #[allow(clippy::disallowed_methods)] // the shell owns the real clock
    pub fn now(&self) -> Timestamp {
        let since = self.offset.saturating_add(self.origin.elapsed());
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        Timestamp::from_nanos(nanos)
    }

    /// The tokio instant of a timestamp (saturating far in the future; a
    /// timestamp before the clock was made maps to its start).
    pub fn to_tokio(self, t: Timestamp) -> tokio::time::Instant {
        let far = self.origin + Duration::from_secs(86_400 * 365);
        let after = t.since_origin().saturating_sub(self.offset);
        let at = self.origin.checked_add(after).unwrap_or(far).min(far);
        tokio::time::Instant::from_std(at)
    }
}

/// Wall-clock seconds since the Unix epoch (descriptors carry issue times).
#[allow(clippy::disallowed_methods)] // the shell owns the real clock
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The wall clock the audit log stamps its records with.
#[allow(clippy::disallowed_methods)] // the shell owns the real clock
pub fn audit_clock() -> audit::AuditClock {
    std::sync::Arc::new(std::time::SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_clock_reads_wall_time_and_maps_back_to_tokio() {
        let c = Clock::start_unix();
        let now = c.now();
        // After 2020-01-01 and before 2200.
        assert!(now.since_origin() > Duration::from_secs(1_577_836_800));
        assert!(now.since_origin() < Duration::from_secs(7_258_118_400));
        let later = now.saturating_add(Duration::from_secs(5));
        let gap = c.to_tokio(later) - c.to_tokio(now);
        assert!(gap >= Duration::from_secs(4) && gap <= Duration::from_secs(5));
        assert_eq!(
            c.to_tokio(Timestamp::ZERO),
            tokio::time::Instant::from_std(c.origin)
        );
        let p = Clock::start();
        assert!(p.now().since_origin() < Duration::from_secs(60));
    }
}
