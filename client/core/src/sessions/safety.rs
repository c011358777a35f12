//! Safety numbers: 60 digits two people compare out of band (read aloud,
//! side by side) to know that the identities their clients pinned are each
//! other's, and no one in between.
//!
//! As in Signal's numeric fingerprints: each identity (both public keys,
//! 64 bytes) gives 30 digits, `SHA-512` iterated 5 200 times over
//! `version (2) || identity` (each round hashes the previous digest and
//! the identity again), whose first 30 bytes are read as six 40-bit
//! big-endian numbers, each modulo 100 000 (five digits). The two halves
//! are put in ascending order, so both sides compute the same number.

use std::fmt;

use sha2::{Digest, Sha512};

use super::PeerIdentityKey;

/// Version of the derivation, hashed first.
const VERSION: [u8; 2] = [0, 1];
/// Rounds of SHA-512 per half (Signal's figure): each guess of an
/// attacker who grinds identities for a similar number costs as many.
const ROUNDS: usize = 5200;

/// The 60-digit number both sides of a conversation compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The number of a conversation between `ours` and `theirs` (the same
    /// when the two are swapped).
    pub fn between(ours: &PeerIdentityKey, theirs: &PeerIdentityKey) -> Self {
        let mut halves = [digits(ours), digits(theirs)];
        halves.sort();
        SafetyNumber(halves.concat())
    }

    /// The 60 digits, without spaces.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// Twelve groups of five digits, separated by spaces.
impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<&str> = (0..self.0.len())
            .step_by(5)
            .filter_map(|i| self.0.get(i..i + 5))
            .collect();
        f.write_str(&groups.join(" "))
    }
}

/// The 30 digits of one identity.
fn digits(identity: &PeerIdentityKey) -> String {
    let key = identity.0.to_bytes();
    let mut digest = Sha512::new()
        .chain_update(VERSION)
        .chain_update(key)
        .finalize();
    for _ in 1..ROUNDS {
        digest = Sha512::new()
            .chain_update(digest)
            .chain_update(key)
            .finalize();
    }
    digest
        .chunks_exact(5)
        .take(6)
        .map(|chunk| {
            let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sessions::SessionBook;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn both_sides_compute_the_same_number_and_another_peer_changes_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let alice = SessionBook::generate(&mut rng).identity();
        let bob = SessionBook::generate(&mut rng).identity();
        let mallory = SessionBook::generate(&mut rng).identity();
        let ab = SafetyNumber::between(&alice, &bob);
        assert_eq!(ab, SafetyNumber::between(&bob, &alice));
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(ab.to_string().split(' ').count(), 12);
        let am = SafetyNumber::between(&alice, &mallory);
        assert_ne!(ab, am);
        // Alice's half is the same in both; the other half differs.
        let alice_half = digits(&alice);
        assert!(ab.digits().contains(&alice_half) && am.digits().contains(&alice_half));
    }
}
