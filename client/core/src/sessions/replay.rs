//! The record of consumed first messages: one filter per signed prekey, as
//! long-lived as the prekey, so a recorded first message is refused however
//! many other handshakes came in between.
//!
//! Each filter is a scalable Bloom filter keyed with a secret of the book:
//! levels of doubling size (4 KiB, 8 KiB, ... up to [`MAX_LEVELS`]), a new
//! level opened when the newest one holds its capacity. It never forgets
//! (no false "new"); its false "seen" rate stays below 3·10⁻⁶ for the first
//! [`CAPACITY`] handshakes of a prekey, and grows only after that, when
//! the last level keeps filling. Memory is 32 bits per handshake recorded,
//! at most about 1 MiB per prekey.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Handshakes the first level holds.
const FIRST_CAPACITY: u64 = 1024;
/// Filter bits per handshake of a level's capacity.
const BITS_PER_ENTRY: u64 = 32;
/// Bit positions set per handshake.
const HASHES: u64 = 16;
/// Most levels per prekey; the last one keeps filling past its capacity.
pub(crate) const MAX_LEVELS: u32 = 8;
/// Handshakes per prekey recorded at the design false-refusal rate:
/// 1024 · (2^8 − 1).
pub(crate) const CAPACITY: u64 = FIRST_CAPACITY * ((1 << MAX_LEVELS) - 1);

/// One level: a plain Bloom filter of `capacity · 32` bits.
#[derive(Clone, Serialize, Deserialize)]
struct Level {
    bits: Vec<u8>,
    capacity: u64,
    count: u64,
}

impl Level {
    fn new(capacity: u64) -> Self {
        let bytes = usize::try_from(capacity * BITS_PER_ENTRY / 8).unwrap_or(usize::MAX);
        Level {
            bits: vec![0; bytes],
            capacity,
            count: 0,
        }
    }

    /// The `HASHES` bit positions of a handshake (double hashing over a
    /// power-of-two size).
    fn positions(&self, (h1, h2): (u64, u64)) -> impl Iterator<Item = (usize, u8)> + '_ {
        let mask = (self.bits.len() as u64 * 8).saturating_sub(1);
        (0..HASHES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & mask;
            ((bit / 8) as usize, 1u8 << (bit % 8))
        })
    }

    fn contains(&self, hash: (u64, u64)) -> bool {
        self.positions(hash)
            .all(|(byte, mask)| self.bits.get(byte).is_some_and(|b| b & mask != 0))
    }

    fn insert(&mut self, hash: (u64, u64)) {
        let positions: Vec<(usize, u8)> = self.positions(hash).collect();
        for (byte, mask) in positions {
            if let Some(b) = self.bits.get_mut(byte) {
                *b |= mask;
            }
        }
        self.count += 1;
    }
}

/// Handshakes consumed under one signed prekey.
#[derive(Clone, Default, Serialize, Deserialize)]
struct PrekeyFilter {
    levels: Vec<Level>,
}

impl PrekeyFilter {
    fn contains(&self, hash: (u64, u64)) -> bool {
        self.levels.iter().any(|level| level.contains(hash))
    }

    fn insert(&mut self, hash: (u64, u64)) {
        let full = self.levels.last().is_none_or(|l| l.count >= l.capacity);
        if full && self.levels.len() < MAX_LEVELS as usize {
            let capacity = FIRST_CAPACITY << self.levels.len();
            self.levels.push(Level::new(capacity));
        }
        if let Some(level) = self.levels.last_mut() {
            level.insert(hash);
        }
    }

    fn count(&self) -> u64 {
        self.levels.iter().map(|l| l.count).sum()
    }
}

/// The first messages (by handshake id) this book has accepted, per signed
/// prekey id. Serialized with the book; its key is not (the book derives it
/// from its identity).
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct ReplayRecord {
    filters: BTreeMap<u32, PrekeyFilter>,
}

impl ReplayRecord {
    /// Whether a first message with `handshake_id` under prekey `spk_id` was
    /// accepted before (or, rarely, collides with one that was).
    pub(crate) fn contains(&self, key: &[u8; 32], spk_id: u32, handshake_id: &[u8; 32]) -> bool {
        self.filters
            .get(&spk_id)
            .is_some_and(|f| f.contains(hash(key, spk_id, handshake_id)))
    }

    /// Records an accepted first message.
    pub(crate) fn insert(&mut self, key: &[u8; 32], spk_id: u32, handshake_id: &[u8; 32]) {
        self.filters
            .entry(spk_id)
            .or_default()
            .insert(hash(key, spk_id, handshake_id));
    }

    /// Handshakes recorded under prekey `spk_id`.
    pub(crate) fn count(&self, spk_id: u32) -> u64 {
        self.filters.get(&spk_id).map_or(0, PrekeyFilter::count)
    }

    /// Forgets the record of every prekey not in `kept` (their first
    /// messages cannot be opened any more).
    pub(crate) fn retain_prekeys(&mut self, kept: &[u32]) {
        self.filters.retain(|id, _| kept.contains(id));
    }
}

/// Two 64-bit hashes of a handshake under the book's key.
fn hash(key: &[u8; 32], spk_id: u32, handshake_id: &[u8; 32]) -> (u64, u64) {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return (0, 1);
    };
    mac.update(&spk_id.to_be_bytes());
    mac.update(handshake_id);
    let out = mac.finalize().into_bytes();
    let word = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 8];
        if let Some(part) = out.get(range) {
            bytes.copy_from_slice(part);
        }
        u64::from_be_bytes(bytes)
    };
    (word(0..8), word(8..16) | 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn id(n: u64) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn nothing_recorded_is_ever_forgotten_and_strangers_are_rarely_refused() {
        let key = [7u8; 32];
        let mut record = ReplayRecord::default();
        let n = 5 * FIRST_CAPACITY + 3;
        for i in 0..n {
            record.insert(&key, 1, &id(i));
        }
        assert_eq!(record.count(1), n);
        assert!((0..n).all(|i| record.contains(&key, 1, &id(i))));
        // Per prekey: another prekey id has its own filter.
        assert!(!record.contains(&key, 2, &id(0)));
        let strangers = (n..n + 20_000)
            .filter(|i| record.contains(&key, 1, &id(*i)))
            .count();
        assert_eq!(strangers, 0);
        // Levels doubled: 1024 + 2048 + 4096 handshakes fit in three.
        let filter = &record.filters[&1];
        assert_eq!(filter.levels.len(), 3);
        assert_eq!(filter.levels[2].bits.len(), 4096 * 4);
        // Another key places the same ids elsewhere.
        assert!(!(0..64).all(|i| record.contains(&[8u8; 32], 1, &id(i))));
        record.retain_prekeys(&[2]);
        assert_eq!(record.count(1), 0);
    }

    #[test]
    fn the_levels_stop_at_the_maximum_and_the_last_keeps_filling() {
        let mut filter = PrekeyFilter::default();
        for i in 0..CAPACITY + 10 {
            filter.insert(hash(&[1u8; 32], 1, &id(i)));
        }
        assert_eq!(filter.levels.len(), MAX_LEVELS as usize);
        let last = filter.levels.last().unwrap();
        assert_eq!(last.count, last.capacity + 10);
        let bytes: usize = filter.levels.iter().map(|l| l.bits.len()).sum();
        assert_eq!(bytes as u64, CAPACITY * BITS_PER_ENTRY / 8);
    }
}
