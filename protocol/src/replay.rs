//! Replay protection, one filter per key epoch.
//!
//! A mix node must forward each packet at most once: otherwise an observer
//! could send a packet twice and watch which output repeats. Each processed
//! packet leaves a 32-byte replay tag (derived by Sphinx from the shared
//! secret, so it is uniformly random and cannot be chosen by the sender); a
//! second packet with the same tag is a replay.
//!
//! Tags are only meaningful under the key that produced them, so there is one
//! filter per key epoch and a retired key's filter is forgotten with it. Memory
//! is bounded: each epoch's filter is a Bloom filter sized for an expected
//! number of tags and a target false-positive rate, and a new epoch's filter is
//! sized from the number of tags the previous epoch actually saw. A false
//! positive drops an honest packet (retransmission recovers it); a replay is
//! never let through. Filters serialize so that a node restarted after a crash
//! still refuses packets it had processed before.

use std::collections::BTreeMap;

use crate::epoch::Epoch;

/// Bytes of a Sphinx replay tag.
pub const TAG_SIZE: usize = 32;

/// How a [`ReplayFilter`] sizes its per-epoch filters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayFilterConfig {
    /// Tags expected per epoch at least (the filter grows its next epoch from the observed count).
    pub min_tags_per_epoch: u64,
    /// Target probability that a fresh packet is mistaken for a replay.
    pub false_positive_rate: f64,
}

impl Default for ReplayFilterConfig {
    fn default() -> Self {
        ReplayFilterConfig {
            min_tags_per_epoch: 1_000_000,
            false_positive_rate: 1e-6,
        }
    }
}

/// Why a tag was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The tag was seen before under this epoch's key.
    #[error("replayed packet")]
    Replay,
    /// There is no filter for the epoch (its key is retired or unknown).
    #[error("no replay filter for epoch {0}")]
    UnknownEpoch(Epoch),
    /// Serialized filter bytes are malformed.
    #[error("malformed replay filter state")]
    Malformed,
}

/// A Bloom filter over uniformly random tags.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TagBloom {
    bits: Vec<u64>,
    hashes: u32,
    /// Tags offered to the filter (fresh or not): the observed load.
    count: u64,
}

impl TagBloom {
    fn with_capacity(tags: u64, fp: f64) -> Self {
        let n = tags.max(1) as f64;
        let fp = fp.clamp(1e-12, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let m_bits = (-(n * fp.ln()) / (ln2 * ln2)).ceil().max(64.0);
        let hashes = ((m_bits / n) * ln2).round().clamp(1.0, 32.0) as u32;
        let words = (m_bits / 64.0).ceil() as usize;
        TagBloom {
            bits: vec![0; words],
            hashes,
            count: 0,
        }
    }

    fn bit_positions(&self, tag: &[u8; TAG_SIZE]) -> impl Iterator<Item = (usize, u64)> + '_ {
        let (a, rest) = tag.split_at(8);
        let h1 = u64::from_le_bytes(a.try_into().unwrap_or([0; 8]));
        let h2 = u64::from_le_bytes(
            rest.get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8]),
        ) | 1;
        let m = (self.bits.len() as u64).saturating_mul(64).max(1);
        (0..u64::from(self.hashes)).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// Inserts the tag; returns false if it was (probably) present already.
    fn insert(&mut self, tag: &[u8; TAG_SIZE]) -> bool {
        let positions: Vec<(usize, u64)> = self.bit_positions(tag).collect();
        let mut fresh = false;
        for (word, mask) in positions {
            if let Some(w) = self.bits.get_mut(word) {
                fresh |= *w & mask == 0;
                *w |= mask;
            }
        }
        self.count = self.count.saturating_add(1);
        fresh
    }

    fn contains(&self, tag: &[u8; TAG_SIZE]) -> bool {
        self.bit_positions(tag)
            .all(|(word, mask)| self.bits.get(word).is_some_and(|w| w & mask != 0))
    }

    fn memory_bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// Per-epoch replay filters with bounded memory.
#[derive(Clone, Debug)]
pub struct ReplayFilter {
    config: ReplayFilterConfig,
    epochs: BTreeMap<Epoch, TagBloom>,
}

impl ReplayFilter {
    /// A filter with no epochs yet.
    pub fn new(config: ReplayFilterConfig) -> Self {
        ReplayFilter {
            config,
            epochs: BTreeMap::new(),
        }
    }

    /// Opens a filter for `epoch` (no-op if open), sized from the busiest epoch seen so far.
    pub fn open_epoch(&mut self, epoch: Epoch) {
        if self.epochs.contains_key(&epoch) {
            return;
        }
        let observed = self.epochs.values().map(|b| b.count).max().unwrap_or(0);
        let capacity = self
            .config
            .min_tags_per_epoch
            .max(observed.saturating_mul(2));
        self.epochs.insert(
            epoch,
            TagBloom::with_capacity(capacity, self.config.false_positive_rate),
        );
    }

    /// Forgets every epoch before `oldest_kept`, with its tags.
    pub fn retire_before(&mut self, oldest_kept: Epoch) {
        self.epochs.retain(|e, _| *e >= oldest_kept);
    }

    /// The epochs that have a filter.
    pub fn epochs(&self) -> impl Iterator<Item = Epoch> + '_ {
        self.epochs.keys().copied()
    }

    /// Records `tag` under `epoch`'s key; refuses it if seen before.
    pub fn check_and_insert(
        &mut self,
        epoch: Epoch,
        tag: &[u8; TAG_SIZE],
    ) -> Result<(), ReplayError> {
        let bloom = self
            .epochs
            .get_mut(&epoch)
            .ok_or(ReplayError::UnknownEpoch(epoch))?;
        if bloom.insert(tag) {
            Ok(())
        } else {
            Err(ReplayError::Replay)
        }
    }

    /// Whether `tag` was (probably) recorded under `epoch`, without recording it.
    pub fn contains(&self, epoch: Epoch, tag: &[u8; TAG_SIZE]) -> bool {
        self.epochs.get(&epoch).is_some_and(|b| b.contains(tag))
    }

    /// Tags offered under `epoch`, replays included.
    pub fn tag_count(&self, epoch: Epoch) -> u64 {
        self.epochs.get(&epoch).map_or(0, |b| b.count)
    }

    /// Bytes of filter memory in use.
    pub fn memory_bytes(&self) -> usize {
        self.epochs.values().map(TagBloom::memory_bytes).sum()
    }

    /// Serializes every epoch's filter (for a crash-safe restart).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.epochs.len() as u32).to_le_bytes());
        for (epoch, bloom) in &self.epochs {
            out.extend_from_slice(&epoch.0.to_le_bytes());
            out.extend_from_slice(&bloom.hashes.to_le_bytes());
            out.extend_from_slice(&bloom.count.to_le_bytes());
            out.extend_from_slice(&(bloom.bits.len() as u64).to_le_bytes());
            for w in &bloom.bits {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Reads filters written by [`ReplayFilter::to_bytes`].
    pub fn from_bytes(config: ReplayFilterConfig, bytes: &[u8]) -> Result<Self, ReplayError> {
        let mut r = Reader(bytes);
        let n = r.u32()?;
        let mut epochs = BTreeMap::new();
        for _ in 0..n {
            let epoch = Epoch(r.u64()?);
            let hashes = r.u32()?;
            let count = r.u64()?;
            let words = usize::try_from(r.u64()?).map_err(|_| ReplayError::Malformed)?;
            if hashes == 0 || hashes > 32 || words == 0 || words > r.0.len() / 8 {
                return Err(ReplayError::Malformed);
            }
            let bits = (0..words).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            epochs.insert(
                epoch,
                TagBloom {
                    bits,
                    hashes,
                    count,
                },
            );
        }
        if !r.0.is_empty() {
            return Err(ReplayError::Malformed);
        }
        Ok(ReplayFilter { config, epochs })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ReplayError> {
        let (head, rest) = self.0.split_at_checked(N).ok_or(ReplayError::Malformed)?;
        self.0 = rest;
        head.try_into().map_err(|_| ReplayError::Malformed)
    }
    fn u32(&mut self) -> Result<u32, ReplayError> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, ReplayError> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

/// The replay tag a packet left under a key epoch; a node journals it so that
/// a restart after a crash still refuses the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayRecord {
    /// The epoch of the key that opened the packet.
    pub epoch: Epoch,
    /// The packet's replay tag.
    pub tag: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn small() -> ReplayFilterConfig {
        ReplayFilterConfig {
            min_tags_per_epoch: 10_000,
            false_positive_rate: 1e-6,
        }
    }

    fn tags(n: usize, seed: u64) -> Vec<[u8; 32]> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut t = [0u8; 32];
                rng.fill_bytes(&mut t);
                t
            })
            .collect()
    }

    #[test]
    fn repeated_tag_is_a_replay_per_epoch() {
        let mut f = ReplayFilter::new(small());
        f.open_epoch(Epoch(1));
        f.open_epoch(Epoch(2));
        let t = tags(1, 1)[0];
        assert_eq!(f.check_and_insert(Epoch(1), &t), Ok(()));
        assert_eq!(f.check_and_insert(Epoch(1), &t), Err(ReplayError::Replay));
        // Another key's filter is independent.
        assert_eq!(f.check_and_insert(Epoch(2), &t), Ok(()));
        f.retire_before(Epoch(2));
        assert_eq!(
            f.check_and_insert(Epoch(1), &t),
            Err(ReplayError::UnknownEpoch(Epoch(1)))
        );
    }

    #[test]
    fn false_positives_stay_near_target_and_memory_is_bounded() {
        let mut f = ReplayFilter::new(small());
        f.open_epoch(Epoch(0));
        for t in tags(10_000, 2) {
            f.check_and_insert(Epoch(0), &t).unwrap();
        }
        let fresh = tags(100_000, 3);
        let fp = fresh.iter().filter(|t| f.contains(Epoch(0), t)).count();
        assert!(fp <= 2, "{fp} false positives out of 100000");
        // ~29 bits per tag at 1e-6.
        assert!(f.memory_bytes() < 10_000 * 40 / 8, "{}", f.memory_bytes());
    }

    #[test]
    fn next_epoch_is_sized_from_the_observed_count() {
        let mut f = ReplayFilter::new(ReplayFilterConfig {
            min_tags_per_epoch: 100,
            false_positive_rate: 1e-6,
        });
        f.open_epoch(Epoch(0));
        let before = f.memory_bytes();
        for t in tags(5_000, 4) {
            let _ = f.check_and_insert(Epoch(0), &t);
        }
        f.open_epoch(Epoch(1));
        assert!(f.memory_bytes() - before > 50 * before);
    }

    #[test]
    fn survives_serialization() {
        let mut f = ReplayFilter::new(small());
        f.open_epoch(Epoch(7));
        let ts = tags(50, 5);
        for t in &ts {
            f.check_and_insert(Epoch(7), t).unwrap();
        }
        let mut g = ReplayFilter::from_bytes(small(), &f.to_bytes()).unwrap();
        for t in &ts {
            assert_eq!(g.check_and_insert(Epoch(7), t), Err(ReplayError::Replay));
        }
        assert_eq!(
            g.tag_count(Epoch(7)),
            100,
            "50 fresh and 50 replays offered"
        );
    }

    proptest! {
        #[test]
        fn malformed_state_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ReplayFilter::from_bytes(small(), &bytes);
        }
    }
}
