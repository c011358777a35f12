//! Fixed-size secret byte strings that are wiped when dropped.

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 32-byte secret (root key, chain key, message key, X25519 private key).
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Secret32([u8; 32]);

impl Secret32 {
    /// Wraps bytes; the caller should wipe its own copy.
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Fresh random bytes.
    pub(crate) fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let secret = Self(bytes);
        bytes.zeroize();
        secret
    }

    /// The secret bytes.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// A 64-byte secret (an ML-KEM decapsulation-key seed), stored as two halves
/// so that serde can encode it.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Secret64 {
    low: [u8; 32],
    high: [u8; 32],
}

impl Secret64 {
    /// Fresh random bytes.
    pub(crate) fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut secret = Self {
            low: [0u8; 32],
            high: [0u8; 32],
        };
        rng.fill_bytes(&mut secret.low);
        rng.fill_bytes(&mut secret.high);
        secret
    }

    /// The 64 bytes, in a buffer that is wiped when dropped.
    pub(crate) fn expose(&self) -> zeroize::Zeroizing<[u8; 64]> {
        let mut out = zeroize::Zeroizing::new([0u8; 64]);
        let (low, high) = out.split_at_mut(32);
        low.copy_from_slice(&self.low);
        high.copy_from_slice(&self.high);
        out
    }
}

impl std::fmt::Debug for Secret64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret64(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroize;

    #[test]
    fn secrets_wipe_and_every_secret_holder_wipes_on_drop() {
        let mut secret = Secret32::new([0xAB; 32]);
        secret.zeroize();
        assert_eq!(secret.expose(), &[0u8; 32]);
        fn wipes_on_drop<T: ZeroizeOnDrop>() {}
        wipes_on_drop::<Secret32>();
        wipes_on_drop::<Secret64>();
        wipes_on_drop::<crate::Session>();
        wipes_on_drop::<crate::LocalIdentity>();
        wipes_on_drop::<crate::PrekeySecrets>();
        wipes_on_drop::<crate::StateStore>();
        wipes_on_drop::<x25519_dalek::StaticSecret>();
        wipes_on_drop::<crate::bundle::PqDecapsulationKey>();
    }

    #[test]
    fn debug_output_hides_secret_bytes() {
        let secret = Secret32::new([0xAB; 32]);
        assert!(!format!("{secret:?}").contains("171"));
        assert!(!format!("{secret:?}").to_lowercase().contains("ab"));
    }
}
