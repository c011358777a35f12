//! Bodies sealed to a client's address key: what the recipient's gateway
//! stores without being able to read it.
//!
//! The exit gateway must keep a client's mail and send back its SURB-ack, and
//! nothing more: not who wrote, not the end-to-end session's headers, not
//! whether the mail is a message or the client's own loop cover, not its
//! length. So the sender seals everything but the SURB-ack and a coarse
//! lifetime to the recipient's address key (the X25519 key in
//! `key@gateway`), in a body of one fixed size, [`SEALED_SIZE`]:
//!
//! ```text
//! ephemeral X25519 public key (32) | ChaCha20-Poly1305(plaintext of SEALED_PLAINTEXT_SIZE) | tag (16)
//! key = HKDF-SHA256(salt = ephemeral || recipient, ikm = X25519(ephemeral, recipient),
//!                   info = "mixnet sealed body v1")
//! ```
//!
//! The key is fresh for every body (a fresh ephemeral), so the nonce is
//! fixed. This is the base mode of HPKE (RFC 9180) with the same primitives,
//! without its version labels; it costs one X25519 multiplication on each
//! side and 48 bytes. A recipient key of low order (shared secret all zero)
//! is refused on both sides.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::ProtocolError;

/// Bytes of a sealed body.
pub const SEALED_SIZE: usize = 1_614;
/// Bytes of the ephemeral public key and the tag around the plaintext.
pub const SEAL_OVERHEAD: usize = 32 + 16;
/// Bytes of plaintext a sealed body carries (always this many: the caller pads).
pub const SEALED_PLAINTEXT_SIZE: usize = SEALED_SIZE - SEAL_OVERHEAD;

const INFO: &[u8] = b"mixnet sealed body v1";

fn body_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, ProtocolError> {
    if shared.iter().all(|b| *b == 0) {
        return Err(ProtocolError::BadKey("recipient key of low order".into()));
    }
    let mut salt = [0u8; 64];
    let (left, right) = salt.split_at_mut(32);
    left.copy_from_slice(ephemeral);
    right.copy_from_slice(recipient);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(INFO, key.as_mut_slice())
        .map_err(|_| ProtocolError::BadKey("key derivation".into()))?;
    Ok(key)
}

/// Seals `plaintext` (exactly [`SEALED_PLAINTEXT_SIZE`] bytes) to `recipient`.
pub fn seal(
    recipient: &PublicKey,
    plaintext: &[u8; SEALED_PLAINTEXT_SIZE],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Box<[u8; SEALED_SIZE]>, ProtocolError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut_slice());
    let ephemeral = StaticSecret::from(*seed);
    let ephemeral_public = PublicKey::from(&ephemeral);
    let shared = Zeroizing::new(ephemeral.diffie_hellman(recipient).to_bytes());
    let key = body_key(&shared, ephemeral_public.as_bytes(), recipient.as_bytes())?;
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let sealed = cipher
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: plaintext,
                aad: recipient.as_bytes(),
            },
        )
        .map_err(|_| ProtocolError::BadKey("sealing failed".into()))?;
    let mut out = Box::new([0u8; SEALED_SIZE]);
    let (head, tail) = out.split_at_mut(32);
    head.copy_from_slice(ephemeral_public.as_bytes());
    if sealed.len() != tail.len() {
        return Err(ProtocolError::BadKey(
            "sealed body of the wrong size".into(),
        ));
    }
    tail.copy_from_slice(&sealed);
    Ok(out)
}

/// Opens a body sealed to the key pair whose secret is `secret`.
pub fn open(
    secret: &StaticSecret,
    sealed: &[u8],
) -> Result<Zeroizing<[u8; SEALED_PLAINTEXT_SIZE]>, ProtocolError> {
    let (Some(head), Some(ciphertext)) = (sealed.get(..32), sealed.get(32..)) else {
        return Err(ProtocolError::BadFrame("sealed body truncated".into()));
    };
    if sealed.len() != SEALED_SIZE {
        return Err(ProtocolError::BadFrame(format!(
            "sealed body of {} bytes, not {SEALED_SIZE}",
            sealed.len()
        )));
    }
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(head);
    let recipient = PublicKey::from(secret);
    let shared = Zeroizing::new(
        secret
            .diffie_hellman(&PublicKey::from(ephemeral))
            .to_bytes(),
    );
    let key = body_key(&shared, &ephemeral, recipient.as_bytes())?;
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: ciphertext,
                    aad: recipient.as_bytes(),
                },
            )
            .map_err(|_| ProtocolError::BadFrame("sealed body does not open".into()))?,
    );
    let mut out = Zeroizing::new([0u8; SEALED_PLAINTEXT_SIZE]);
    if plain.len() != SEALED_PLAINTEXT_SIZE {
        return Err(ProtocolError::BadFrame(
            "sealed body of the wrong size".into(),
        ));
    }
    out.copy_from_slice(&plain);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn pair(rng: &mut ChaCha20Rng) -> (StaticSecret, PublicKey) {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let secret = StaticSecret::from(seed);
        let public = PublicKey::from(&secret);
        (secret, public)
    }

    #[test]
    fn a_sealed_body_opens_only_with_the_recipients_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (secret, public) = pair(&mut rng);
        let (other, _) = pair(&mut rng);
        let mut plain = [0u8; SEALED_PLAINTEXT_SIZE];
        plain[..5].copy_from_slice(b"hello");
        let sealed = seal(&public, &plain, &mut rng).unwrap();
        assert_eq!(sealed.len(), SEALED_SIZE);
        assert_eq!(&open(&secret, sealed.as_slice()).unwrap()[..], &plain[..]);
        assert!(open(&other, sealed.as_slice()).is_err());
    }

    #[test]
    fn two_seals_of_the_same_plaintext_share_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (_, public) = pair(&mut rng);
        let plain = [7u8; SEALED_PLAINTEXT_SIZE];
        let a = seal(&public, &plain, &mut rng).unwrap();
        let b = seal(&public, &plain, &mut rng).unwrap();
        let same = a.iter().zip(b.iter()).filter(|(x, y)| x == y).count();
        // Independent uniform bytes agree about once in 256.
        assert!(same < SEALED_SIZE / 64, "{same} equal bytes");
    }

    #[test]
    fn a_low_order_recipient_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let zero = PublicKey::from([0u8; 32]);
        assert!(seal(&zero, &[0u8; SEALED_PLAINTEXT_SIZE], &mut rng).is_err());
        let (secret, _) = pair(&mut rng);
        let mut forged = vec![0u8; SEALED_SIZE];
        forged[32] = 1;
        assert!(open(&secret, &forged).is_err());
    }

    proptest! {
        #[test]
        fn tampering_or_cutting_is_refused(index in 0usize..SEALED_SIZE, cut in 0usize..SEALED_SIZE, flip in 1u8..) {
            let mut rng = ChaCha20Rng::seed_from_u64(4);
            let (secret, public) = pair(&mut rng);
            let sealed = seal(&public, &[1u8; SEALED_PLAINTEXT_SIZE], &mut rng).unwrap();
            let mut tampered = sealed.to_vec();
            tampered[index] ^= flip;
            prop_assert!(open(&secret, &tampered).is_err());
            prop_assert!(open(&secret, &sealed[..cut]).is_err());
        }
    }
}
