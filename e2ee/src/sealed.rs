//! Session state encrypted at rest, under a raw key or a passphrase.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::secret::Secret32;
use crate::suite::{CipherSuite, LABEL_SEALED, LABEL_SEALED_TWO_FACTOR};
use crate::wire::Reader;
use crate::{Session, SessionError};

/// Magic bytes that start every sealed state.
pub const SEALED_MAGIC: [u8; 4] = *b"E2SS";
/// Format version of sealed state.
pub const SEALED_VERSION: u8 = 1;
/// Key source byte: a raw 32-byte key.
const SOURCE_RAW: u8 = 0;
/// Key source byte: Argon2id over a passphrase.
const SOURCE_ARGON2ID: u8 = 1;
/// Key source byte: Argon2id over a passphrase, joined with a device key.
const SOURCE_TWO_FACTOR: u8 = 2;
/// Length of the Argon2id salt.
const SALT_LEN: usize = 16;
/// Length of the XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;
/// Upper bounds on Argon2id parameters read from sealed bytes.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 16;
const MAX_PARALLELISM: u32 = 8;

/// Argon2id cost parameters for deriving a state key from a passphrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassphraseParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for PassphraseParams {
    /// 19 MiB, 2 passes, 1 lane (the Argon2id baseline OWASP recommends).
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Seals and opens session state with one key.
///
/// Layout of sealed bytes: `"E2SS" | version | key source | [Argon2id
/// memory_kib u32, iterations u32, parallelism u32, salt 16] | nonce 24 |
/// XChaCha20-Poly1305(state)`, everything before the ciphertext being its
/// associated data.
pub struct StateStore {
    key: Secret32,
    /// Key-source bytes (source byte and, for a passphrase, its parameters and salt).
    source: Vec<u8>,
}

impl StateStore {
    /// A store keyed by a raw 32-byte key.
    pub fn from_raw_key(key: [u8; 32]) -> Result<Self, SessionError> {
        let raw = Secret32::new(key);
        Ok(Self {
            key: seal_key(raw.expose())?,
            source: vec![SOURCE_RAW],
        })
    }

    /// A new store keyed by a passphrase, with a fresh random salt.
    pub fn create_with_passphrase(
        rng: &mut impl CryptoRng,
        passphrase: &[u8],
        params: PassphraseParams,
    ) -> Result<Self, SessionError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Self::passphrase_store(passphrase, params, salt)
    }

    /// Re-derives the passphrase store that sealed `sealed` (reads its parameters and salt).
    pub fn unlock_with_passphrase(passphrase: &[u8], sealed: &[u8]) -> Result<Self, SessionError> {
        let (params, salt) = read_passphrase_source(sealed, SOURCE_ARGON2ID)?;
        Self::passphrase_store(passphrase, params, salt)
    }

    /// A new store that needs two factors: a passphrase (through Argon2id,
    /// with a fresh random salt) and a 32-byte device key (a file kept on the
    /// device). Neither alone derives the key: a stolen device without the
    /// passphrase, or a stolen backup without the device key, opens nothing.
    pub fn create_two_factor(
        rng: &mut impl CryptoRng,
        device_key: &[u8; 32],
        passphrase: &[u8],
        params: PassphraseParams,
    ) -> Result<Self, SessionError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Self::two_factor_store(device_key, passphrase, params, salt)
    }

    /// Re-derives the two-factor store that sealed `sealed`.
    pub fn unlock_two_factor(
        device_key: &[u8; 32],
        passphrase: &[u8],
        sealed: &[u8],
    ) -> Result<Self, SessionError> {
        let (params, salt) = read_passphrase_source(sealed, SOURCE_TWO_FACTOR)?;
        Self::two_factor_store(device_key, passphrase, params, salt)
    }

    fn two_factor_store(
        device_key: &[u8; 32],
        passphrase: &[u8],
        params: PassphraseParams,
        salt: [u8; SALT_LEN],
    ) -> Result<Self, SessionError> {
        let derived = argon2id(passphrase, params, salt)?;
        // HKDF-SHA256(salt = device key, ikm = the passphrase's key).
        let mut key = Zeroizing::new([0u8; 32]);
        CipherSuite::DEFAULT.hkdf(
            device_key,
            derived.as_slice(),
            LABEL_SEALED_TWO_FACTOR,
            key.as_mut_slice(),
        )?;
        Ok(Self {
            key: Secret32::new(*key),
            source: passphrase_source(SOURCE_TWO_FACTOR, params, salt),
        })
    }

    fn passphrase_store(
        passphrase: &[u8],
        params: PassphraseParams,
        salt: [u8; SALT_LEN],
    ) -> Result<Self, SessionError> {
        let derived = argon2id(passphrase, params, salt)?;
        Ok(Self {
            key: seal_key(&derived)?,
            source: passphrase_source(SOURCE_ARGON2ID, params, salt),
        })
    }

    /// Encrypts the full state of `session`.
    pub fn seal(
        &self,
        rng: &mut impl CryptoRng,
        session: &Session,
    ) -> Result<Vec<u8>, SessionError> {
        self.seal_bytes(rng, &session.to_bytes()?)
    }

    /// Decrypts sealed state; refuses a wrong key and any tampering.
    pub fn open(&self, sealed: &[u8]) -> Result<Session, SessionError> {
        Session::from_bytes(&self.open_bytes(sealed)?)
    }

    /// Encrypts any state (e.g. a client's book of sessions) in the same format.
    pub fn seal_bytes(
        &self,
        rng: &mut impl CryptoRng,
        state: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(64 + state.len());
        out.extend_from_slice(&SEALED_MAGIC);
        out.push(SEALED_VERSION);
        out.extend_from_slice(&self.source);
        out.extend_from_slice(&nonce);
        let ciphertext = self
            .cipher()?
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: state,
                    aad: &out,
                },
            )
            .map_err(|_| SessionError::StateEncoding("seal"))?;
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts bytes sealed by [`StateStore::seal_bytes`]; refuses a wrong key and any tampering.
    pub fn open_bytes(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let mut reader = Reader::new(sealed);
        read_magic(&mut reader)?;
        let source = reader.take(self.source.len(), "key source")?;
        if source != self.source.as_slice() {
            return Err(SessionError::SealedStateRejected);
        }
        let nonce = reader.array::<NONCE_LEN>("nonce")?;
        let header_len = sealed.len().saturating_sub(reader.remaining());
        let aad = sealed
            .get(..header_len)
            .ok_or(SessionError::SealedStateRejected)?;
        let ciphertext = reader.rest();
        let state = Zeroizing::new(
            self.cipher()?
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .map_err(|_| SessionError::SealedStateRejected)?,
        );
        Ok(state)
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, SessionError> {
        XChaCha20Poly1305::new_from_slice(self.key.expose())
            .map_err(|_| SessionError::StateEncoding("key length"))
    }
}

// The key is a `Secret32`, which wipes itself on drop.
impl zeroize::ZeroizeOnDrop for StateStore {}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

fn read_magic(reader: &mut Reader<'_>) -> Result<(), SessionError> {
    if reader.array::<4>("magic")? != SEALED_MAGIC {
        return Err(SessionError::SealedStateRejected);
    }
    if reader.u8("sealed version")? != SEALED_VERSION {
        return Err(SessionError::SealedStateRejected);
    }
    Ok(())
}

/// Argon2id of `passphrase` under `params` (bounded) and `salt`.
fn argon2id(
    passphrase: &[u8],
    params: PassphraseParams,
    salt: [u8; SALT_LEN],
) -> Result<Zeroizing<[u8; 32]>, SessionError> {
    if params.memory_kib > MAX_MEMORY_KIB
        || params.iterations > MAX_ITERATIONS
        || params.parallelism > MAX_PARALLELISM
    {
        return Err(SessionError::PassphraseKdf(
            "parameters above the allowed bounds",
        ));
    }
    let argon_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|_| SessionError::PassphraseKdf("invalid parameters"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut derived = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, &salt, derived.as_mut_slice())
        .map_err(|_| SessionError::PassphraseKdf("derivation failed"))?;
    Ok(derived)
}

/// The key-source bytes of a passphrase-derived key: `source`, the
/// Argon2id parameters and the salt.
fn passphrase_source(source: u8, params: PassphraseParams, salt: [u8; SALT_LEN]) -> Vec<u8> {
    let mut out = vec![source];
    out.extend_from_slice(&params.memory_kib.to_be_bytes());
    out.extend_from_slice(&params.iterations.to_be_bytes());
    out.extend_from_slice(&params.parallelism.to_be_bytes());
    out.extend_from_slice(&salt);
    out
}

/// The Argon2id parameters and salt of sealed bytes whose key source is `source`.
fn read_passphrase_source(
    sealed: &[u8],
    source: u8,
) -> Result<(PassphraseParams, [u8; SALT_LEN]), SessionError> {
    let mut reader = Reader::new(sealed);
    read_magic(&mut reader)?;
    if reader.u8("key source")? != source {
        return Err(SessionError::SealedStateRejected);
    }
    let params = PassphraseParams {
        memory_kib: reader.u32("memory cost")?,
        iterations: reader.u32("iterations")?,
        parallelism: reader.u32("parallelism")?,
    };
    let salt = reader.array::<SALT_LEN>("salt")?;
    Ok((params, salt))
}

/// The sealing key: HKDF-SHA256(ikm = state key, info = LABEL_SEALED).
fn seal_key(state_key: &[u8; 32]) -> Result<Secret32, SessionError> {
    let mut key = Zeroizing::new([0u8; 32]);
    CipherSuite::DEFAULT.hkdf(&[0u8; 32], state_key, LABEL_SEALED, key.as_mut_slice())?;
    Ok(Secret32::new(*key))
}
