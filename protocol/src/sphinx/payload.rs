//! The payload: a message padded to a fixed size, under one Lioness layer
//! per hop.
//!
//! As `sphinx-packet` 0.8: `0^16 | message | 1 | 0*`, encrypted with the
//! `lioness-rs` wide-block cipher over ChaCha20 and keyed BLAKE2b-256
//! (`Lioness<ChaCha20, Blake2bMac<U32>>`, 192-byte keys). The sender adds the
//! layers last hop first; each hop removes its own. Lioness is a strong
//! pseudorandom permutation: a hop that strips a layer from a tampered
//! payload gets noise, which the final reader sees as bad padding.

use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use chacha20::ChaCha20;
use lioness_rs::{KeyInit, Lioness};

use crate::sphinx::error::SphinxError;
use crate::sphinx::geometry::{MIN_PAYLOAD_SIZE, PAYLOAD_OVERHEAD_SIZE, SECURITY_PARAMETER};
use crate::sphinx::kdf::PAYLOAD_KEY_SIZE;

type PayloadCipher = Lioness<ChaCha20, Blake2bMac<U32>>;

/// Adds one layer of `key` to `payload`.
pub(crate) fn add_layer(
    key: &[u8; PAYLOAD_KEY_SIZE],
    payload: &mut [u8],
) -> Result<(), SphinxError> {
    PayloadCipher::new(key.into())
        .encrypt_block(payload)
        .map_err(|_| SphinxError::PayloadSize(payload.len()))
}

/// Removes one layer of `key` from `payload`.
pub(crate) fn remove_layer(
    key: &[u8; PAYLOAD_KEY_SIZE],
    payload: &mut [u8],
) -> Result<(), SphinxError> {
    PayloadCipher::new(key.into())
        .decrypt_block(payload)
        .map_err(|_| SphinxError::PayloadSize(payload.len()))
}

/// Pads `message` into a plaintext payload of `payload_size` bytes.
pub fn encode_payload(message: &[u8], payload_size: usize) -> Result<Vec<u8>, SphinxError> {
    if payload_size < MIN_PAYLOAD_SIZE {
        return Err(SphinxError::PayloadSize(payload_size));
    }
    let max = payload_size - PAYLOAD_OVERHEAD_SIZE;
    if message.len() > max {
        return Err(SphinxError::MessageTooLong {
            len: message.len(),
            max,
        });
    }
    let mut payload = vec![0u8; payload_size];
    let body = payload
        .iter_mut()
        .skip(SECURITY_PARAMETER)
        .zip(message.iter().chain(std::iter::once(&1u8)));
    for (p, m) in body {
        *p = *m;
    }
    Ok(payload)
}

/// Reads the message out of a fully decrypted payload: after 16 zero
/// bytes, everything up to the last `1`.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<u8>, SphinxError> {
    let (zeros, padded) = payload
        .split_first_chunk::<SECURITY_PARAMETER>()
        .ok_or(SphinxError::PayloadSize(payload.len()))?;
    if zeros.iter().any(|b| *b != 0) {
        return Err(SphinxError::BadPadding);
    }
    let end = padded
        .iter()
        .rposition(|b| *b == 1)
        .ok_or(SphinxError::BadPadding)?;
    Ok(padded.iter().take(end).copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_packet::payload::Payload;

    #[test]
    fn layers_and_padding_match_sphinx_packet() {
        let keys: Vec<[u8; PAYLOAD_KEY_SIZE]> = (1u8..=4).map(|k| [k; PAYLOAD_KEY_SIZE]).collect();
        for len in [0usize, 1, 100, 2048] {
            let message = vec![0x42u8; len];
            let theirs = Payload::encapsulate_message(&message, &keys, 2065).unwrap();
            let mut ours = encode_payload(&message, 2065).unwrap();
            for key in keys.iter().rev() {
                add_layer(key, &mut ours).unwrap();
            }
            assert_eq!(ours, theirs.as_bytes());
            for key in &keys {
                remove_layer(key, &mut ours).unwrap();
            }
            assert_eq!(decode_payload(&ours).unwrap(), message);
        }
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(encode_payload(b"x", 32), Err(SphinxError::PayloadSize(32)));
        assert_eq!(
            encode_payload(&[0u8; 17], 33),
            Err(SphinxError::MessageTooLong { len: 17, max: 16 })
        );
        assert_eq!(decode_payload(&[0u8; 40]), Err(SphinxError::BadPadding));
        let mut p = encode_payload(b"hi", 40).unwrap();
        p[0] = 1;
        assert_eq!(decode_payload(&p), Err(SphinxError::BadPadding));
        assert_eq!(decode_payload(&[0u8; 3]), Err(SphinxError::PayloadSize(3)));
        assert!(remove_layer(&[0u8; PAYLOAD_KEY_SIZE], &mut [0u8; 32]).is_err());
    }
}
