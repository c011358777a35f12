//! The header's stream cipher and MAC.
//!
//! As `sphinx-packet` 0.8: AES-128 in counter mode (64-bit big-endian
//! counter, zero IV) for the routing information and the filler, and
//! HMAC-SHA256 truncated to 16 bytes for the header MAC, compared in
//! constant time.

use aes::Aes128;
use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::sphinx::geometry::{KEYSTREAM_SIZE, MAC_SIZE, array_at};
use crate::sphinx::kdf::{MAC_KEY_SIZE, STREAM_KEY_SIZE};

type Aes128Ctr = ctr::Ctr64BE<Aes128>;

const ZERO_IV: [u8; 16] = [0u8; 16];
/// HMAC-SHA256's block: shorter keys are zero-padded to it.
const HMAC_BLOCK_SIZE: usize = 64;

/// XORs the keystream of `key`, from its start, into `data`.
pub(crate) fn apply_keystream(key: &[u8; STREAM_KEY_SIZE], data: &mut [u8]) {
    let mut cipher = Aes128Ctr::new(key.into(), (&ZERO_IV).into());
    cipher.apply_keystream(data);
}

/// The first [`KEYSTREAM_SIZE`] bytes of the keystream of `key`.
pub(crate) fn keystream(key: &[u8; STREAM_KEY_SIZE]) -> [u8; KEYSTREAM_SIZE] {
    let mut stream = [0u8; KEYSTREAM_SIZE];
    apply_keystream(key, &mut stream);
    stream
}

/// The header MAC of `routing_info` under `key`.
pub(crate) fn header_mac(key: &[u8; MAC_KEY_SIZE], routing_info: &[u8]) -> [u8; MAC_SIZE] {
    // HMAC zero-pads a key shorter than its block, so padding it here gives
    // the same MAC through the infallible constructor.
    let mut block = Zeroizing::new([0u8; HMAC_BLOCK_SIZE]);
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let mut hmac = <Hmac<Sha256> as KeyInit>::new((&*block).into());
    hmac.update(routing_info);
    array_at(hmac.finalize().into_bytes().as_slice(), 0)
}

/// Whether `mac` is the header MAC of `routing_info` under `key`, in constant time.
pub(crate) fn mac_matches(
    key: &[u8; MAC_KEY_SIZE],
    routing_info: &[u8],
    mac: &[u8; MAC_SIZE],
) -> bool {
    header_mac(key, routing_info).ct_eq(mac).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_key_hmac_is_plain_hmac() {
        let key = [7u8; MAC_KEY_SIZE];
        let data = [3u8; 300];
        let mut plain = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        plain.update(&data);
        let full = plain.finalize().into_bytes();
        assert_eq!(&header_mac(&key, &data)[..], &full[..MAC_SIZE]);
        assert!(mac_matches(&key, &data, &header_mac(&key, &data)));
        let mut wrong = header_mac(&key, &data);
        wrong[15] ^= 1;
        assert!(!mac_matches(&key, &data, &wrong));
    }

    #[test]
    fn keystream_is_aes128_ctr_from_zero() {
        let key = [1u8; STREAM_KEY_SIZE];
        let stream = keystream(&key);
        let mut part = [0u8; 100];
        apply_keystream(&key, &mut part);
        assert_eq!(&stream[..100], &part[..]);
        assert_ne!(stream, [0u8; KEYSTREAM_SIZE]);
    }
}
