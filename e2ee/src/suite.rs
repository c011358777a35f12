//! Cipher suites: which primitives a bundle, a message and a session use.
//!
//! Every bundle and message starts with a suite id. All primitive calls of
//! the protocol go through the methods of [`CipherSuite`], so a suite 2 is
//! one more enum variant and one more arm in each method; suite-1 sessions
//! keep their recorded suite and are not affected.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::secret::Secret32;

/// KDF label of the handshake's root-key derivation.
pub(crate) const LABEL_HANDSHAKE: &[u8] = b"mixnet-e2ee/v1 pqxdh";
/// KDF label of the root-chain step of the Double Ratchet.
pub(crate) const LABEL_ROOT: &[u8] = b"mixnet-e2ee/v1 root";
/// KDF label that expands a message key into an AEAD key and nonce.
pub(crate) const LABEL_MESSAGE: &[u8] = b"mixnet-e2ee/v1 message";
/// Domain separator of the handshake transcript hash.
pub(crate) const LABEL_TRANSCRIPT: &[u8] = b"mixnet-e2ee/v1 transcript";
/// Domain separator of the handshake id.
pub(crate) const LABEL_HANDSHAKE_ID: &[u8] = b"mixnet-e2ee/v1 handshake-id";
/// Context signed by a prekey bundle's Ed25519 signature.
pub(crate) const LABEL_BUNDLE: &[u8] = b"mixnet-e2ee/v1 bundle";
/// KDF label of the key that seals session state at rest.
pub(crate) const LABEL_SEALED: &[u8] = b"mixnet-e2ee/v1 sealed-state";

/// HMAC input that derives a message key from a chain key.
const CHAIN_MESSAGE_BYTE: u8 = 0x01;
/// HMAC input that derives the next chain key from a chain key.
const CHAIN_NEXT_BYTE: u8 = 0x02;

/// AEAD tag length of suite 1 (Poly1305).
pub(crate) const TAG_LEN: usize = 16;

/// A cipher suite: the set of primitives one session uses from start to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
#[non_exhaustive]
pub enum CipherSuite {
    /// Suite 1: X25519 + ML-KEM-768 handshake, HKDF-SHA256 / HMAC-SHA256
    /// chains, ChaCha20-Poly1305 messages, Ed25519 prekey signatures.
    X25519MlKem768Sha256ChaCha20Poly1305,
}

impl CipherSuite {
    /// The suite every new session uses.
    pub const DEFAULT: Self = Self::X25519MlKem768Sha256ChaCha20Poly1305;

    /// The suite's id byte on the wire.
    pub const fn id(self) -> u8 {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => 1,
        }
    }

    /// The suite with id byte `id`, or [`SessionError::UnknownSuite`].
    pub const fn from_id(id: u8) -> Result<Self, SessionError> {
        match id {
            1 => Ok(Self::X25519MlKem768Sha256ChaCha20Poly1305),
            other => Err(SessionError::UnknownSuite(other)),
        }
    }

    /// HKDF: extract with `salt` from `ikm`, expand with `info` into `out`.
    pub(crate) fn hkdf(
        self,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        out: &mut [u8],
    ) -> Result<(), SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => Hkdf::<Sha256>::new(Some(salt), ikm)
                .expand(info, out)
                .map_err(|_| SessionError::Malformed("hkdf output length")),
        }
    }

    /// A collision-resistant hash of the concatenated `parts`.
    pub(crate) fn hash(self, parts: &[&[u8]]) -> [u8; 32] {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let mut hasher = Sha256::new();
                for part in parts {
                    hasher.update(part);
                }
                hasher.finalize().into()
            }
        }
    }

    /// Root-chain step: `(root', chain) = KDF_RK(root, dh_output)`.
    pub(crate) fn kdf_root(
        self,
        root: &Secret32,
        dh_output: &[u8; 32],
    ) -> Result<(Secret32, Secret32), SessionError> {
        let mut okm = Zeroizing::new([0u8; 64]);
        self.hkdf(root.expose(), dh_output, LABEL_ROOT, okm.as_mut_slice())?;
        Ok(split_pair(&okm))
    }

    /// Symmetric-chain step: `(chain', message_key) = KDF_CK(chain)`.
    pub(crate) fn kdf_chain(self, chain: &Secret32) -> Result<(Secret32, Secret32), SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let next = hmac_byte(chain, CHAIN_NEXT_BYTE)?;
                let message = hmac_byte(chain, CHAIN_MESSAGE_BYTE)?;
                Ok((next, message))
            }
        }
    }

    /// Encrypts `plaintext` under a one-time message key, authenticating `aad`.
    pub(crate) fn seal(
        self,
        message_key: &Secret32,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let (cipher, nonce) = self.message_cipher(message_key)?;
                cipher
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: plaintext,
                            aad,
                        },
                    )
                    .map_err(|_| SessionError::Malformed("message too long"))
            }
        }
    }

    /// Decrypts and authenticates `ciphertext` under a one-time message key.
    pub(crate) fn open(
        self,
        message_key: &Secret32,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let (cipher, nonce) = self.message_cipher(message_key)?;
                cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: ciphertext,
                            aad,
                        },
                    )
                    .map(Zeroizing::new)
                    .map_err(|_| SessionError::DecryptionFailed)
            }
        }
    }

    /// Expands a message key into the ChaCha20-Poly1305 key and nonce.
    fn message_cipher(
        self,
        message_key: &Secret32,
    ) -> Result<(ChaCha20Poly1305, chacha20poly1305::Nonce), SessionError> {
        let mut okm = Zeroizing::new([0u8; 44]);
        self.hkdf(
            &[0u8; 32],
            message_key.expose(),
            LABEL_MESSAGE,
            okm.as_mut_slice(),
        )?;
        let (key, nonce) = okm.split_at(32);
        let cipher = ChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| SessionError::Malformed("aead key length"))?;
        let nonce = chacha20poly1305::Nonce::try_from(nonce)
            .map_err(|_| SessionError::Malformed("aead nonce length"))?;
        Ok((cipher, nonce))
    }
}

impl From<CipherSuite> for u8 {
    fn from(suite: CipherSuite) -> Self {
        suite.id()
    }
}

impl TryFrom<u8> for CipherSuite {
    type Error = SessionError;

    fn try_from(id: u8) -> Result<Self, Self::Error> {
        Self::from_id(id)
    }
}

/// HMAC-SHA256(key, [byte]).
fn hmac_byte(key: &Secret32, byte: u8) -> Result<Secret32, SessionError> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.expose())
        .map_err(|_| SessionError::Malformed("hmac key length"))?;
    mac.update(&[byte]);
    let mut out: [u8; 32] = mac.finalize().into_bytes().into();
    let secret = Secret32::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(secret)
}

/// Splits 64 bytes of key material into two 32-byte secrets.
pub(crate) fn split_pair(okm: &[u8; 64]) -> (Secret32, Secret32) {
    let mut first = [0u8; 32];
    let mut second = [0u8; 32];
    let (a, b) = okm.split_at(32);
    first.copy_from_slice(a);
    second.copy_from_slice(b);
    let pair = (Secret32::new(first), Secret32::new(second));
    zeroize::Zeroize::zeroize(&mut first);
    zeroize::Zeroize::zeroize(&mut second);
    pair
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_ids_round_trip_and_unknown_ids_are_refused() {
        assert_eq!(
            CipherSuite::from_id(CipherSuite::DEFAULT.id()),
            Ok(CipherSuite::DEFAULT)
        );
        for id in [0u8, 2, 255] {
            assert_eq!(
                CipherSuite::from_id(id),
                Err(SessionError::UnknownSuite(id))
            );
        }
    }

    #[test]
    fn chain_step_gives_distinct_keys() {
        let suite = CipherSuite::DEFAULT;
        let chain = Secret32::new([7u8; 32]);
        let (next, message) = suite.kdf_chain(&chain).unwrap();
        assert_ne!(next.expose(), message.expose());
        assert_ne!(next.expose(), chain.expose());
        let (next2, message2) = suite.kdf_chain(&next).unwrap();
        assert_ne!(message.expose(), message2.expose());
        assert_ne!(next.expose(), next2.expose());
    }

    #[test]
    fn seal_open_round_trip_and_aad_is_bound() {
        let suite = CipherSuite::DEFAULT;
        let key = Secret32::new([3u8; 32]);
        let sealed = suite.seal(&key, b"header", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(
            suite.open(&key, b"header", &sealed).unwrap().as_slice(),
            b"hello"
        );
        assert_eq!(
            suite.open(&key, b"headex", &sealed),
            Err(SessionError::DecryptionFailed)
        );
    }
}
