//! Recall tags: how a sender can later have its message deleted from the
//! recipient's mailbox without the gateway learning who sent it.
//!
//! For each message it may recall, a sender draws a random 32-byte
//! [`RecallSecret`] `r`. Every forward frame of the message's fragment `i`
//! carries the [`RecallTag`] `t_i = SHA-256("mixnet recall tag v1" ‖ r ‖ i)`
//! (`i` as two bytes, big endian) beside its SURB-ack, where the recipient's
//! gateway reads it. Every other forward frame (loop and drop cover, a message
//! sent without recall) carries 32 random bytes in the same place, so a tag
//! tells real from cover nothing, and the tags of one message look
//! unrelated to each other until `r` is known.
//!
//! A recall frame ([`crate::frame::RecallFrame`]) reveals `r` and the
//! fragment count `n` to the recipient's gateway, which computes
//! `t_0 … t_{n-1}` and deletes the bodies stored under them. `n` is at most
//! [`MAX_RECALL_FRAGMENTS`], so one recall costs the gateway a bounded
//! number of hashes and index lookups.

use rand::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of a recall tag.
pub const RECALL_TAG_SIZE: usize = 32;
/// Bytes of a recall secret.
pub const RECALL_SECRET_SIZE: usize = 32;
/// The most fragments a recall may name: a message with more cannot be
/// recalled (the work of one recall at the gateway is bounded by it).
pub const MAX_RECALL_FRAGMENTS: u16 = 1024;

/// Domain of the tag hash.
const TAG_DOMAIN: &[u8] = b"mixnet recall tag v1";

/// What a forward frame carries for its recipient's gateway to find it by
/// on a recall: a hash of the message's recall secret and the fragment's
/// index, or random bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecallTag(pub [u8; RECALL_TAG_SIZE]);

impl RecallTag {
    /// A tag no secret opens: what cover and unrecallable messages carry.
    pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut tag = [0u8; RECALL_TAG_SIZE];
        rng.fill_bytes(&mut tag);
        RecallTag(tag)
    }
}

/// A message's recall secret: only its sender holds it until it recalls.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RecallSecret(pub [u8; RECALL_SECRET_SIZE]);

impl std::fmt::Debug for RecallSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecallSecret(..)")
    }
}

impl RecallSecret {
    /// A fresh secret.
    pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut secret = [0u8; RECALL_SECRET_SIZE];
        rng.fill_bytes(&mut secret);
        RecallSecret(secret)
    }

    /// The tag of fragment `index`.
    pub fn tag(&self, index: u16) -> RecallTag {
        let digest = Sha256::new()
            .chain_update(TAG_DOMAIN)
            .chain_update(self.0)
            .chain_update(index.to_be_bytes())
            .finalize();
        let mut tag = [0u8; RECALL_TAG_SIZE];
        tag.copy_from_slice(digest.as_slice());
        RecallTag(tag)
    }

    /// The tags of fragments `0 .. count` (`count` capped at
    /// [`MAX_RECALL_FRAGMENTS`]).
    pub fn tags(&self, count: u16) -> Vec<RecallTag> {
        (0..count.min(MAX_RECALL_FRAGMENTS))
            .map(|i| self.tag(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn tags_depend_on_the_secret_and_the_index() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = RecallSecret::random(&mut rng);
        let b = RecallSecret::random(&mut rng);
        assert_eq!(a.tag(3), a.clone().tag(3));
        assert_ne!(a.tag(0), a.tag(1));
        assert_ne!(a.tag(0), b.tag(0));
        assert_eq!(a.tags(5).len(), 5);
        assert_eq!(a.tags(u16::MAX).len(), usize::from(MAX_RECALL_FRAGMENTS));
    }

    #[test]
    fn the_tag_is_sha256_of_the_domain_secret_and_index() {
        let secret = RecallSecret([7; 32]);
        let mut input = b"mixnet recall tag v1".to_vec();
        input.extend_from_slice(&[7; 32]);
        input.extend_from_slice(&[0, 2]);
        let expected = Sha256::digest(&input);
        assert_eq!(secret.tag(2).0.as_slice(), expected.as_slice());
    }
}
