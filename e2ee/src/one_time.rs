//! One-time prekeys: an X25519 key and an ML-KEM-768 key under one id, used
//! by at most one first message, then deleted by their owner.
//!
//! The owner keeps [`OneTimePrekeySecrets`]; others receive the public half
//! as a [`SignedOneTimePrekey`], signed by the owner's identity, next to its
//! prekey bundle. A first message that used one ([`crate::Session::initiate_with`])
//! names it by id; once the owner deletes the secret after accepting that
//! message, the message can no longer be opened, not by the owner and not
//! by whoever steals the owner's keys later, and a replay of it is refused.

use ed25519_dalek::{Signature, VerifyingKey};
use ml_kem::TryKeyInit;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::SessionError;
use crate::bundle::{
    LocalIdentity, PQ_PUBLIC_KEY_LEN, PeerIdentity, PqDecapsulationKey, PqEncapsulationKey,
};
use crate::secret::{Secret32, Secret64};
use crate::suite::{CipherSuite, LABEL_ONE_TIME_PREKEY};
use crate::wire::Reader;

/// Format version of an encoded [`SignedOneTimePrekey`].
pub const ONE_TIME_PREKEY_VERSION: u8 = 1;
/// Length of an encoded suite-1 [`SignedOneTimePrekey`]:
/// `version (1) | suite (1) | id (4) | X25519 (32) | ML-KEM-768 ek (1184) | signature (64)`.
pub const ONE_TIME_PREKEY_LEN: usize = 2 + 4 + 32 + PQ_PUBLIC_KEY_LEN + 64;

/// The secret half of a one-time prekey: an X25519 key and an ML-KEM-768
/// key (kept as its 64-byte seed) under one id. Delete it once a first
/// message used it: that deletion is what the one-time key is for.
#[derive(Clone, Serialize, Deserialize)]
pub struct OneTimePrekeySecrets {
    id: u32,
    x25519: Secret32,
    pq_seed: Secret64,
}

impl OneTimePrekeySecrets {
    /// Generates a fresh one-time prekey with the given id.
    pub fn generate(rng: &mut impl CryptoRng, id: u32) -> Self {
        Self {
            id,
            x25519: Secret32::random(rng),
            pq_seed: Secret64::random(rng),
        }
    }

    /// The id that first messages name.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The X25519 private key (`OPK`).
    pub(crate) fn x25519_secret(&self) -> StaticSecret {
        StaticSecret::from(*self.x25519.expose())
    }

    /// The X25519 public key.
    pub(crate) fn x25519_public(&self) -> [u8; 32] {
        PublicKey::from(&self.x25519_secret()).to_bytes()
    }

    /// The ML-KEM-768 decapsulation key (`PQOPK`), expanded from its seed.
    pub(crate) fn pq_decapsulation_key(&self) -> PqDecapsulationKey {
        crate::bundle::pq_decapsulation_key(&self.pq_seed)
    }

    /// The encoded ML-KEM-768 encapsulation key.
    pub(crate) fn pq_public_bytes(&self) -> Vec<u8> {
        crate::bundle::pq_public_bytes(&self.pq_seed)
    }
}

// Both keys are `Secret32` / `Secret64`, which wipe themselves on drop.
impl zeroize::ZeroizeOnDrop for OneTimePrekeySecrets {}

impl std::fmt::Debug for OneTimePrekeySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimePrekeySecrets")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// The public half of `secrets`, signed by this identity.
    pub fn sign_one_time(&self, secrets: &OneTimePrekeySecrets) -> SignedOneTimePrekey {
        let mut prekey = SignedOneTimePrekey {
            suite: CipherSuite::DEFAULT,
            id: secrets.id,
            x25519: secrets.x25519_public(),
            pq_public: secrets.pq_public_bytes(),
            signature: [0u8; 64],
        };
        prekey.signature = self.sign(&prekey.signed_message(&self.public()));
        prekey
    }
}

/// The public half of a one-time prekey, signed by its owner's identity:
/// handed out (once) next to the owner's prekey bundle.
///
/// A decoded one has not had its signature checked: check it with
/// [`SignedOneTimePrekey::verify`] against the bundle's identity
/// ([`crate::Session::initiate_with`] does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedOneTimePrekey {
    suite: CipherSuite,
    id: u32,
    x25519: [u8; 32],
    pq_public: Vec<u8>,
    signature: [u8; 64],
}

impl SignedOneTimePrekey {
    /// The id that a first message using this key names.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The cipher suite of the key.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The X25519 public key (`OPK`).
    pub(crate) fn x25519(&self) -> [u8; 32] {
        self.x25519
    }

    /// The encoded ML-KEM-768 encapsulation key (`PQOPK`).
    pub(crate) fn pq_public(&self) -> &[u8] {
        &self.pq_public
    }

    /// The signed part: everything but the signature.
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ONE_TIME_PREKEY_LEN);
        out.push(ONE_TIME_PREKEY_VERSION);
        out.push(self.suite.id());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(&self.pq_public);
        out
    }

    /// `LABEL_ONE_TIME_PREKEY || IK || Ed25519 key || body`: the signature
    /// binds the key to the whole identity of its owner.
    fn signed_message(&self, owner: &PeerIdentity) -> Vec<u8> {
        let body = self.body();
        let mut message =
            Vec::with_capacity(LABEL_ONE_TIME_PREKEY.len() + PeerIdentity::LEN + body.len());
        message.extend_from_slice(LABEL_ONE_TIME_PREKEY);
        message.extend_from_slice(&owner.to_bytes());
        message.extend_from_slice(&body);
        message
    }

    /// Encodes the key (see docs/e2ee.md for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes, without checking the signature (there is no identity to check it against yet).
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8("one-time prekey version")?;
        if version != ONE_TIME_PREKEY_VERSION {
            return Err(SessionError::UnsupportedBundleVersion(version));
        }
        let suite = CipherSuite::from_id(reader.u8("one-time prekey suite")?)?;
        let id = reader.u32("one-time prekey id")?;
        let x25519 = reader.array::<32>("one-time prekey x25519 key")?;
        let pq_public = reader
            .take(PQ_PUBLIC_KEY_LEN, "one-time prekey ml-kem key")?
            .to_vec();
        let signature = reader.array::<64>("one-time prekey signature")?;
        reader.finish("trailing bytes after one-time prekey")?;
        PqEncapsulationKey::new_from_slice(&pq_public)
            .map_err(|_| SessionError::Malformed("one-time prekey ml-kem key"))?;
        Ok(Self {
            suite,
            id,
            x25519,
            pq_public,
            signature,
        })
    }

    /// Checks the signature against `identity`: Err([`SessionError::BadBundleSignature`]) if not signed by it.
    pub fn verify(&self, identity: &PeerIdentity) -> Result<(), SessionError> {
        let verifying = VerifyingKey::from_bytes(&identity.signing)
            .map_err(|_| SessionError::BadBundleSignature)?;
        verifying
            .verify_strict(
                &self.signed_message(identity),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| SessionError::BadBundleSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PrekeySecrets, Session};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn a_signed_one_time_prekey_round_trips_and_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let owner = LocalIdentity::generate(&mut rng);
        let secrets = OneTimePrekeySecrets::generate(&mut rng, 77);
        let signed = owner.sign_one_time(&secrets);
        let bytes = signed.encode();
        assert_eq!(bytes.len(), ONE_TIME_PREKEY_LEN);
        let decoded = SignedOneTimePrekey::decode(&bytes).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.id(), 77);
        assert_eq!(decoded.verify(&owner.public()), Ok(()));
        assert_eq!(decoded.x25519(), secrets.x25519_public());
        assert_eq!(decoded.pq_public(), secrets.pq_public_bytes().as_slice());
    }

    /// Bob's keys, a one-time secret, and Alice's first message made with it.
    fn first_message(seed: u64) -> (LocalIdentity, PrekeySecrets, OneTimePrekeySecrets, Vec<u8>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice = LocalIdentity::generate(&mut rng);
        let bob = LocalIdentity::generate(&mut rng);
        let prekeys = PrekeySecrets::generate(&mut rng, 1, 2);
        let secrets = OneTimePrekeySecrets::generate(&mut rng, 0x10);
        let signed = bob.sign_one_time(&secrets);
        let mut session =
            Session::initiate_with(&mut rng, &alice, &bob.bundle(&prekeys), Some(&signed)).unwrap();
        let first = session.encrypt(&mut rng, b"hi", None).unwrap();
        (bob, prekeys, secrets, first)
    }

    #[test]
    fn the_one_time_id_is_authenticated_not_only_matched() {
        let (bob, prekeys, secrets, first) = first_message(23);
        assert!(Session::accept_with(&bob, &prekeys, Some(&secrets), &first).is_ok());
        // The id is bytes 74..78; a responder holding the same keys under the
        // flipped id still refuses: the id is in the transcript and the prefix.
        for bit in 0..32 {
            let mut tampered = first.clone();
            let id = u32::from_be_bytes(tampered[74..78].try_into().unwrap()) ^ (1 << bit);
            tampered[74..78].copy_from_slice(&id.to_be_bytes());
            let renamed = OneTimePrekeySecrets {
                id,
                ..secrets.clone()
            };
            assert_eq!(
                Session::accept_with(&bob, &prekeys, Some(&renamed), &tampered).map(|_| ()),
                Err(SessionError::DecryptionFailed),
                "id bit {bit}"
            );
        }
    }

    #[test]
    fn a_low_order_one_time_key_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(24);
        let alice = LocalIdentity::generate(&mut rng);
        let bob = LocalIdentity::generate(&mut rng);
        let prekeys = PrekeySecrets::generate(&mut rng, 1, 2);
        let secrets = OneTimePrekeySecrets::generate(&mut rng, 3);
        let mut signed = bob.sign_one_time(&secrets);
        signed.x25519 = [0u8; 32];
        signed.signature = bob.sign(&signed.signed_message(&bob.public()));
        assert_eq!(signed.verify(&bob.public()), Ok(()));
        assert_eq!(
            Session::initiate_with(&mut rng, &alice, &bob.bundle(&prekeys), Some(&signed))
                .map(|_| ()),
            Err(SessionError::NonContributoryKey)
        );
    }

    #[test]
    fn secrets_wipe_on_drop_and_hide_in_debug() {
        fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipes_on_drop::<OneTimePrekeySecrets>();
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let secrets = OneTimePrekeySecrets::generate(&mut rng, 5);
        let shown = format!("{secrets:?}");
        assert_eq!(shown, "OneTimePrekeySecrets { id: 5, .. }");
    }
}
