//! Cipher suites: which primitives a bundle, a message and a session use.
//!
//! Every bundle and message starts with a suite id. All primitive calls of
//! the protocol go through the methods of [`CipherSuite`], so a suite 2 is
//! one more enum variant and one more arm in each method; suite-1 sessions
//! keep their recorded suite and are not affected.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::secret::Secret32;

/// The header key of one sending chain, as two independent secrets: one
/// encrypts the chain's headers (XChaCha20-Poly1305), one computes its
/// messages' routing tags (HMAC-SHA256).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct HeaderKey {
    pub(crate) seal: Secret32,
    pub(crate) tag: Secret32,
}

/// The secrets of a root-chain step: the next root key, the new chain key,
/// and the header key of the chain after it.
pub(crate) struct RootStep {
    pub(crate) root: Secret32,
    pub(crate) chain: Secret32,
    pub(crate) next_header: HeaderKey,
}

/// KDF label of the handshake's root-key derivation.
pub(crate) const LABEL_HANDSHAKE: &[u8] = b"mixnet-e2ee/v2 pqxdh";
/// KDF label of the root-chain step of the Double Ratchet.
pub(crate) const LABEL_ROOT: &[u8] = b"mixnet-e2ee/v2 root";
/// KDF label that expands a message key and a message nonce into an AEAD key and nonce.
pub(crate) const LABEL_MESSAGE: &[u8] = b"mixnet-e2ee/v2 message";
/// HMAC label of a message's routing tag.
pub(crate) const LABEL_TAG: &[u8] = b"mixnet-e2ee/v2 tag";
/// Domain separator of the handshake transcript hash.
pub(crate) const LABEL_TRANSCRIPT: &[u8] = b"mixnet-e2ee/v2 transcript";
/// Domain separator of the handshake id.
pub(crate) const LABEL_HANDSHAKE_ID: &[u8] = b"mixnet-e2ee/v2 handshake-id";
/// Context signed by a prekey bundle's Ed25519 signature.
pub(crate) const LABEL_BUNDLE: &[u8] = b"mixnet-e2ee/v1 bundle";
/// Context signed by a one-time prekey's Ed25519 signature.
pub(crate) const LABEL_ONE_TIME_PREKEY: &[u8] = b"mixnet-e2ee/v1 one-time prekey";
/// Context of a statement signed by an identity within one session.
pub(crate) const LABEL_STATEMENT: &[u8] = b"mixnet-e2ee/v2 session statement";
/// KDF label of secrets derived from the long-term identity for local use.
pub(crate) const LABEL_LOCAL_SECRET: &[u8] = b"mixnet-e2ee/v2 local secret";
/// KDF label of the key that seals session state at rest.
pub(crate) const LABEL_SEALED: &[u8] = b"mixnet-e2ee/v1 sealed-state";
pub(crate) const LABEL_SEALED_TWO_FACTOR: &[u8] = b"mixnet-e2ee/v1 sealed-state two-factor";

/// HMAC input that derives a message key from a chain key.
const CHAIN_MESSAGE_BYTE: u8 = 0x01;
/// HMAC input that derives the next chain key from a chain key.
const CHAIN_NEXT_BYTE: u8 = 0x02;

/// AEAD tag length of suite 1 (Poly1305).
pub(crate) const TAG_LEN: usize = 16;
/// Length of the random per-message value: the header's XChaCha20 nonce and
/// the salt of the message cipher's key derivation.
pub const MESSAGE_NONCE_LEN: usize = 24;
/// Length of a message's routing tag.
pub const MESSAGE_TAG_LEN: usize = 16;

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

    /// Root-chain step: `(root', chain, next header key) = KDF_RK(root, dh_output)`,
    /// 128 bytes of HKDF output: root, chain, header seal key, header tag key.
    pub(crate) fn kdf_root(
        self,
        root: &Secret32,
        dh_output: &[u8; 32],
    ) -> Result<RootStep, SessionError> {
        let mut okm = Zeroizing::new([0u8; 128]);
        self.hkdf(root.expose(), dh_output, LABEL_ROOT, okm.as_mut_slice())?;
        let [root, chain, seal, tag] = split_secrets(okm.as_slice());
        Ok(RootStep {
            root,
            chain,
            next_header: HeaderKey { seal, tag },
        })
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

    /// Encrypts `plaintext` under a one-time message key and the message's
    /// random `nonce`, authenticating `aad`.
    pub(crate) fn seal(
        self,
        message_key: &Secret32,
        nonce: &[u8; MESSAGE_NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let (cipher, nonce) = self.message_cipher(message_key, nonce)?;
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

    /// Decrypts and authenticates `ciphertext` under a one-time message key
    /// and the message's random `nonce`.
    pub(crate) fn open(
        self,
        message_key: &Secret32,
        nonce: &[u8; MESSAGE_NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let (cipher, nonce) = self.message_cipher(message_key, nonce)?;
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

    /// Expands a message key, salted with the message's random nonce, into
    /// the ChaCha20-Poly1305 key and nonce. The random salt makes the pair
    /// new even when a rolled-back state uses the same message key again.
    fn message_cipher(
        self,
        message_key: &Secret32,
        salt: &[u8; MESSAGE_NONCE_LEN],
    ) -> Result<(ChaCha20Poly1305, chacha20poly1305::Nonce), SessionError> {
        let mut okm = Zeroizing::new([0u8; 44]);
        self.hkdf(
            salt,
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

    /// Encrypts a ratchet header under a chain's header seal key
    /// (XChaCha20-Poly1305 with the message's random nonce).
    pub(crate) fn seal_header(
        self,
        seal_key: &Secret32,
        nonce: &[u8; MESSAGE_NONCE_LEN],
        aad: &[u8],
        header: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        self.header_cipher(seal_key)?
            .encrypt(&XNonce::from(*nonce), Payload { msg: header, aad })
            .map_err(|_| SessionError::Malformed("header too long"))
    }

    /// Decrypts a ratchet header; `DecryptionFailed` under any other key.
    pub(crate) fn open_header(
        self,
        seal_key: &Secret32,
        nonce: &[u8; MESSAGE_NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        self.header_cipher(seal_key)?
            .decrypt(&XNonce::from(*nonce), Payload { msg: sealed, aad })
            .map(Zeroizing::new)
            .map_err(|_| SessionError::DecryptionFailed)
    }

    fn header_cipher(self, seal_key: &Secret32) -> Result<XChaCha20Poly1305, SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                XChaCha20Poly1305::new_from_slice(seal_key.expose())
                    .map_err(|_| SessionError::Malformed("header key length"))
            }
        }
    }

    /// The routing tag of message `number` of the chain with header tag key
    /// `tag_key`: `HMAC-SHA256(tag_key, LABEL_TAG || number)[..16]`.
    pub(crate) fn message_tag(
        self,
        tag_key: &Secret32,
        number: u32,
    ) -> Result<[u8; MESSAGE_TAG_LEN], SessionError> {
        match self {
            Self::X25519MlKem768Sha256ChaCha20Poly1305 => {
                let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(tag_key.expose())
                    .map_err(|_| SessionError::Malformed("hmac key length"))?;
                mac.update(LABEL_TAG);
                mac.update(&number.to_be_bytes());
                let full = mac.finalize().into_bytes();
                let mut tag = [0u8; MESSAGE_TAG_LEN];
                tag.copy_from_slice(
                    full.get(..MESSAGE_TAG_LEN)
                        .ok_or(SessionError::Malformed("tag length"))?,
                );
                Ok(tag)
            }
        }
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

/// Splits key material into `N` 32-byte secrets (missing bytes read as zero).
pub(crate) fn split_secrets<const N: usize>(okm: &[u8]) -> [Secret32; N] {
    std::array::from_fn(|i| {
        let mut bytes = [0u8; 32];
        if let Some(chunk) = okm.get(i * 32..(i + 1) * 32) {
            bytes.copy_from_slice(chunk);
        }
        let secret = Secret32::new(bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        secret
    })
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
        let nonce = [5u8; MESSAGE_NONCE_LEN];
        let sealed = suite.seal(&key, &nonce, b"header", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(
            suite
                .open(&key, &nonce, b"header", &sealed)
                .unwrap()
                .as_slice(),
            b"hello"
        );
        assert_eq!(
            suite.open(&key, &nonce, b"headex", &sealed),
            Err(SessionError::DecryptionFailed)
        );
        // Another random nonce: another key and nonce for the same message key.
        let other = suite.seal(&key, &[6u8; MESSAGE_NONCE_LEN], b"header", b"hello");
        assert_ne!(other.unwrap(), sealed);
    }

    #[test]
    fn headers_open_only_under_their_key_and_tags_differ_per_message() {
        let suite = CipherSuite::DEFAULT;
        let key = Secret32::new([8u8; 32]);
        let nonce = [1u8; MESSAGE_NONCE_LEN];
        let sealed = suite.seal_header(&key, &nonce, b"aad", b"header").unwrap();
        assert_eq!(
            suite
                .open_header(&key, &nonce, b"aad", &sealed)
                .unwrap()
                .as_slice(),
            b"header"
        );
        let other = Secret32::new([9u8; 32]);
        assert!(suite.open_header(&other, &nonce, b"aad", &sealed).is_err());
        let tags: std::collections::HashSet<_> = (0..100)
            .map(|n| suite.message_tag(&key, n).unwrap())
            .collect();
        assert_eq!(tags.len(), 100);
        assert_ne!(
            suite.message_tag(&key, 0).unwrap(),
            suite.message_tag(&other, 0).unwrap()
        );
    }
}
