//! The client's real clock, converted to the core's [`Timestamp`].

use std::time::Duration;

use protocol::time::Timestamp;
use tokio::time::Instant;

/// The wall-clock time in whole seconds since the Unix epoch: the time of
/// end-to-end expiries and of prekey rotation.
#[allow(clippy::disallowed_methods)] // the async shell owns the real clock
pub fn unix_now() -> e2ee::UnixSeconds {
    e2ee::UnixSeconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Counts [`Timestamp`]s from the moment it was made, on tokio's clock (so
/// tests with paused time run the client in virtual time).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    #[allow(clippy::disallowed_methods)] // the async shell owns the real clock
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The current instant.
    #[allow(clippy::disallowed_methods)] // the async shell owns the real clock
    pub fn now(&self) -> Timestamp {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Timestamp::from_nanos(nanos)
    }

    /// The tokio instant of the wall-clock time `t` (now if it has passed;
    /// at most a year ahead).
    pub fn instant_of_unix(&self, t: e2ee::UnixSeconds) -> Instant {
        let now = unix_now();
        let wait = Duration::from_secs(t.0.saturating_sub(now.0).min(86_400 * 365));
        self.to_instant(self.now()) + wait
    }

    /// The tokio instant of `t` (at most a year ahead).
    pub fn to_instant(&self, t: Timestamp) -> Instant {
        let far = Duration::from_secs(86_400 * 365);
        self.origin + t.since_origin().min(far)
    }
}
