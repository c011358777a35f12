//! Short addresses: a client's identity fingerprint and its gateway, in
//! 78 base58 characters with a checksum, instead of an address card of
//! about 2 300.
//!
//! ```text
//! version (1) = 1 || identity fingerprint (20) || gateway id (32) || checksum (4)
//! fingerprint = SHA-256("mixnet-client/v1 identity fingerprint" || IK || signing key)[..20]
//! checksum    = SHA-256("mixnet-client/v1 short address" || the 53 bytes before)[..4]
//! ```
//!
//! The fingerprint names an identity (both keys): whatever the short address
//! leads to (a card, a session, a bundle from the gateway) is believed only
//! if its identity has this fingerprint (a second preimage of 160 bits of
//! SHA-256). The gateway says where the client's mailbox is. The Sphinx key
//! of the mailbox is not in it: it comes with the identity's signed bundle.

use std::fmt;
use std::str::FromStr;

use protocol::NodeId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::PeerIdentityKey;

/// Version byte of the binary form.
const VERSION: u8 = 1;
/// Bytes of an identity fingerprint.
pub const FINGERPRINT_LEN: usize = 20;
/// Bytes of the checksum.
const CHECKSUM_LEN: usize = 4;
/// Bytes of the binary form.
pub const SHORT_ADDRESS_LEN: usize = 1 + FINGERPRINT_LEN + 32 + CHECKSUM_LEN;
const FINGERPRINT_LABEL: &[u8] = b"mixnet-client/v1 identity fingerprint";
const CHECKSUM_LABEL: &[u8] = b"mixnet-client/v1 short address";

/// The first 20 bytes of a hash of an identity's two public keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityFingerprint(pub [u8; FINGERPRINT_LEN]);

impl IdentityFingerprint {
    /// The fingerprint of `identity`.
    pub fn of(identity: &PeerIdentityKey) -> Self {
        let digest = Sha256::new()
            .chain_update(FINGERPRINT_LABEL)
            .chain_update(identity.0.to_bytes())
            .finalize();
        let mut out = [0u8; FINGERPRINT_LEN];
        out.iter_mut().zip(digest).for_each(|(o, d)| *o = d);
        IdentityFingerprint(out)
    }
}

impl fmt::Debug for IdentityFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdentityFingerprint({})",
            bs58::encode(self.0).into_string()
        )
    }
}

/// A client's identity fingerprint and gateway: what a correspondent needs
/// to reach it once it can get its signed bundle (from a card, a session,
/// or its gateway).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShortAddress {
    /// Names the client's identity (both keys).
    pub identity: IdentityFingerprint,
    /// The gateway that keeps the client's mailbox.
    pub gateway: NodeId,
}

impl ShortAddress {
    /// The short address of `identity` at `gateway`.
    pub fn new(identity: &PeerIdentityKey, gateway: NodeId) -> Self {
        ShortAddress {
            identity: IdentityFingerprint::of(identity),
            gateway,
        }
    }

    /// Whether `identity` is the one this address names.
    pub fn names(&self, identity: &PeerIdentityKey) -> bool {
        IdentityFingerprint::of(identity) == self.identity
    }

    /// The binary form (with its checksum).
    pub fn to_bytes(&self) -> [u8; SHORT_ADDRESS_LEN] {
        let mut body = Vec::with_capacity(SHORT_ADDRESS_LEN);
        body.push(VERSION);
        body.extend_from_slice(&self.identity.0);
        body.extend_from_slice(&self.gateway.0);
        body.extend_from_slice(&checksum(&body));
        let mut out = [0u8; SHORT_ADDRESS_LEN];
        out.iter_mut().zip(body).for_each(|(o, b)| *o = b);
        out
    }
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_LABEL)
        .chain_update(body)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.iter_mut().zip(digest).for_each(|(o, d)| *o = d);
    out
}

impl fmt::Display for ShortAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.to_bytes()).into_string())
    }
}

impl fmt::Debug for ShortAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortAddress({self})")
    }
}

/// Why a short address could not be read: what is wrong with it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ShortAddressError {
    /// A character outside the base58 alphabet.
    #[error(
        "character {character:?} at position {position} is not base58 \
         (digits and letters except 0, O, I and l)"
    )]
    NotBase58 {
        /// The character.
        character: char,
        /// Its position, from 1.
        position: usize,
    },
    /// Too few or too many characters.
    #[error(
        "{len} bytes; a short address is {SHORT_ADDRESS_LEN} bytes (about 78 characters): \
         characters are missing or extra"
    )]
    Length {
        /// Bytes decoded.
        len: usize,
    },
    /// A version this client does not know.
    #[error("version {0} is unknown (this client reads version {VERSION}): update the client")]
    UnknownVersion(u8),
    /// The checksum does not match: a character was mistyped or swapped.
    #[error("the checksum does not match: a character is mistyped or two are swapped")]
    Checksum,
}

impl FromStr for ShortAddress {
    type Err = ShortAddressError;

    fn from_str(text: &str) -> Result<Self, ShortAddressError> {
        let bytes = bs58::decode(text.trim()).into_vec().map_err(|e| match e {
            bs58::decode::Error::InvalidCharacter { character, index } => {
                ShortAddressError::NotBase58 {
                    character,
                    position: index + 1,
                }
            }
            bs58::decode::Error::NonAsciiCharacter { index } => ShortAddressError::NotBase58 {
                character: text
                    .trim()
                    .get(index..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?'),
                position: index + 1,
            },
            _ => ShortAddressError::Length { len: 0 },
        })?;
        let [version, rest @ ..] = bytes.as_slice() else {
            return Err(ShortAddressError::Length { len: 0 });
        };
        if bytes.len() != SHORT_ADDRESS_LEN {
            // A wrong version is the better explanation when the length is
            // that of another version; this one only knows its own.
            return Err(ShortAddressError::Length { len: bytes.len() });
        }
        if *version != VERSION {
            return Err(ShortAddressError::UnknownVersion(*version));
        }
        let (body, sum) = bytes
            .split_at_checked(SHORT_ADDRESS_LEN - CHECKSUM_LEN)
            .ok_or(ShortAddressError::Length { len: bytes.len() })?;
        if checksum(body) != sum {
            return Err(ShortAddressError::Checksum);
        }
        let (fingerprint, gateway) = rest
            .split_first_chunk::<FINGERPRINT_LEN>()
            .ok_or(ShortAddressError::Length { len: bytes.len() })?;
        let (gateway, _) = gateway
            .split_first_chunk::<32>()
            .ok_or(ShortAddressError::Length { len: bytes.len() })?;
        Ok(ShortAddress {
            identity: IdentityFingerprint(*fingerprint),
            gateway: NodeId(*gateway),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    fn address(fingerprint: [u8; FINGERPRINT_LEN], gateway: [u8; 32]) -> ShortAddress {
        ShortAddress {
            identity: IdentityFingerprint(fingerprint),
            gateway: NodeId(gateway),
        }
    }

    proptest! {
        #[test]
        fn text_form_round_trips(f in any::<[u8; FINGERPRINT_LEN]>(), g in any::<[u8; 32]>()) {
            let a = address(f, g);
            let text = a.to_string();
            prop_assert!(text.len() <= 80, "{} characters", text.len());
            prop_assert_eq!(text.parse::<ShortAddress>(), Ok(a));
        }

        #[test]
        fn one_changed_character_is_caught(
            f in any::<[u8; FINGERPRINT_LEN]>(),
            g in any::<[u8; 32]>(),
            at in any::<prop::sample::Index>(),
            by in 1usize..57,
        ) {
            const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
            let text = address(f, g).to_string();
            let i = at.index(text.len());
            let mut bytes = text.into_bytes();
            let old = ALPHABET.iter().position(|c| *c == bytes[i]).unwrap();
            bytes[i] = ALPHABET[(old + by) % ALPHABET.len()];
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(changed.parse::<ShortAddress>().is_err());
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(text in ".{0,120}") {
            let _ = text.parse::<ShortAddress>();
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let text = address([7; FINGERPRINT_LEN], [9; 32]).to_string();
        let with_l = format!("{}l{}", &text[..5], &text[6..]);
        assert_eq!(
            with_l.parse::<ShortAddress>(),
            Err(ShortAddressError::NotBase58 {
                character: 'l',
                position: 6
            })
        );
        assert!(matches!(
            text[..text.len() - 3].parse::<ShortAddress>(),
            Err(ShortAddressError::Length { .. })
        ));
        let mut swapped: Vec<char> = text.chars().collect();
        // In the middle: a swap at the front may change the length or the version.
        let i = (30..swapped.len())
            .find(|&i| swapped[i] != swapped[i - 1])
            .unwrap();
        swapped.swap(i - 1, i);
        assert_eq!(
            swapped
                .into_iter()
                .collect::<String>()
                .parse::<ShortAddress>(),
            Err(ShortAddressError::Checksum)
        );
        let mut other = address([7; FINGERPRINT_LEN], [9; 32]).to_bytes();
        other[0] = 2;
        let sum = checksum(&other[..SHORT_ADDRESS_LEN - CHECKSUM_LEN]);
        other[SHORT_ADDRESS_LEN - CHECKSUM_LEN..].copy_from_slice(&sum);
        assert_eq!(
            bs58::encode(other).into_string().parse::<ShortAddress>(),
            Err(ShortAddressError::UnknownVersion(2))
        );
        assert!(ShortAddressError::Checksum.to_string().contains("mistyped"));
    }
}
