//! Key epochs.
//!
//! Sphinx keys rotate every epoch. An epoch is a plain counter: epoch `n`
//! starts at `n * epoch_length` after the network's genesis. Each node holds
//! the key of the current epoch, announces the next one an epoch ahead, and
//! keeps the previous one for one epoch of overlap so that packets built just
//! before a rotation still get through.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A key epoch number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch that contains `now`, for epochs of `length` starting at the origin.
    pub fn at(now: Timestamp, length: Duration) -> Epoch {
        let len = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX).max(1);
        Epoch(now.as_nanos() / len)
    }

    /// The instant this epoch starts, for epochs of `length`.
    pub fn start(self, length: Duration) -> Timestamp {
        let len = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
        Timestamp::from_nanos(self.0.saturating_mul(len))
    }

    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }

    /// The epoch before this one (epoch 0 has none).
    pub fn previous(self) -> Option<Epoch> {
        self.0.checked_sub(1).map(Epoch)
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_boundaries() {
        let len = Duration::from_secs(10);
        assert_eq!(Epoch::at(Timestamp::from_millis(9_999), len), Epoch(0));
        assert_eq!(Epoch::at(Timestamp::from_millis(10_000), len), Epoch(1));
        assert_eq!(Epoch(3).start(len), Timestamp::from_millis(30_000));
        assert_eq!(Epoch(0).previous(), None);
        assert_eq!(Epoch(4).previous(), Some(Epoch(3)));
    }
}
