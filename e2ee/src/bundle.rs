//! Long-term identity, prekeys, and the signed prekey bundle that a client
//! publishes so that others can start a session with it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ml_kem::{KeyExport, MlKem768, TryKeyInit};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::secret::{Secret32, Secret64};
use crate::session::UnixSeconds;
use crate::suite::{CipherSuite, LABEL_BUNDLE, LABEL_LOCAL_SECRET};
use crate::wire::Reader;

/// The ML-KEM-768 decapsulation key type.
pub(crate) type PqDecapsulationKey = ml_kem::DecapsulationKey<MlKem768>;
/// The ML-KEM-768 encapsulation key type.
pub(crate) type PqEncapsulationKey = ml_kem::EncapsulationKey<MlKem768>;

/// Format version of an encoded [`PrekeyBundle`] with a signed expiry.
pub const BUNDLE_VERSION: u8 = 2;
/// Format version of a bundle without an expiry (still read, and written
/// for a bundle made without one).
pub const BUNDLE_VERSION_1: u8 = 1;
/// Length of an encoded ML-KEM-768 encapsulation key.
pub const PQ_PUBLIC_KEY_LEN: usize = 1184;
/// Length of an encoded suite-1 [`PrekeyBundle`] of version 2 (with its expiry).
pub const BUNDLE_LEN: usize = BUNDLE_V1_LEN + 8;
/// Length of an encoded suite-1 [`PrekeyBundle`] of version 1 (no expiry).
pub const BUNDLE_V1_LEN: usize = 2 + 32 + 32 + 4 + 32 + 4 + PQ_PUBLIC_KEY_LEN + 64;

/// A client's long-term keys for end-to-end sessions: an X25519 identity key
/// (separate from its Sphinx key) and an Ed25519 key that signs its prekeys.
#[derive(Clone, Serialize, Deserialize)]
pub struct LocalIdentity {
    dh: Secret32,
    signing: Secret32,
}

impl LocalIdentity {
    /// Generates fresh identity keys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self {
            dh: Secret32::random(rng),
            signing: Secret32::random(rng),
        }
    }

    /// The public half: what peers pin in an address card.
    pub fn public(&self) -> PeerIdentity {
        PeerIdentity {
            dh: PublicKey::from(&self.dh_secret()).to_bytes(),
            signing: self.signing_key().verifying_key().to_bytes(),
        }
    }

    /// Signs the public halves of `prekeys` into a bundle others can use to
    /// reach us, without an expiry (a version-1 bundle).
    pub fn bundle(&self, prekeys: &PrekeySecrets) -> PrekeyBundle {
        self.bundle_until(prekeys, None)
    }

    /// Signs the public halves of `prekeys` and `expires_at`, the last
    /// moment a first message made from the bundle can still be opened (the
    /// owner erases the prekeys then); `None` makes a version-1 bundle.
    pub fn bundle_until(
        &self,
        prekeys: &PrekeySecrets,
        expires_at: Option<UnixSeconds>,
    ) -> PrekeyBundle {
        let mut bundle = PrekeyBundle {
            suite: CipherSuite::DEFAULT,
            identity: self.public(),
            spk_id: prekeys.spk_id,
            spk: prekeys.spk_public(),
            pq_id: prekeys.pq_id,
            pq_public: prekeys.pq_public_bytes(),
            expires_at,
            signature: [0u8; 64],
        };
        let body = bundle.body();
        bundle.signature = self.signing_key().sign(&signed_message(&body)).to_bytes();
        bundle
    }

    /// A 32-byte secret for the caller's own use (e.g. keying a local
    /// filter), derived one-way from the identity keys and `purpose`:
    /// `HKDF-SHA256(ikm = IK secret || signing secret, info = label || purpose)`.
    /// Different purposes give unrelated secrets; none reveals the identity keys.
    pub fn local_secret(&self, purpose: &[u8]) -> Result<Zeroizing<[u8; 32]>, SessionError> {
        let mut ikm = Zeroizing::new([0u8; 64]);
        let (dh, signing) = ikm.split_at_mut(32);
        dh.copy_from_slice(self.dh.expose());
        signing.copy_from_slice(self.signing.expose());
        let mut info = Vec::with_capacity(LABEL_LOCAL_SECRET.len() + purpose.len());
        info.extend_from_slice(LABEL_LOCAL_SECRET);
        info.extend_from_slice(purpose);
        let mut out = Zeroizing::new([0u8; 32]);
        CipherSuite::DEFAULT.hkdf(&[0u8; 32], ikm.as_slice(), &info, out.as_mut_slice())?;
        Ok(out)
    }

    /// The X25519 identity private key.
    pub(crate) fn dh_secret(&self) -> StaticSecret {
        StaticSecret::from(*self.dh.expose())
    }

    /// Signs `message` (already domain-separated by the caller) with the Ed25519 key.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key().sign(message).to_bytes()
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(self.signing.expose())
    }
}

// Both keys are `Secret32`, which wipes itself on drop.
impl zeroize::ZeroizeOnDrop for LocalIdentity {}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("public", &self.public())
            .finish()
    }
}

/// The public identity of a client: its X25519 identity key and its Ed25519
/// signing key, always together. Both are in the handshake transcript and in
/// every message's associated data, so a session is bound to both; compare
/// the whole of it with the address card before trusting a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// X25519 identity public key (used in the handshake's DH(IKa, SPKb) and DH(EKa, IKb)).
    pub dh: [u8; 32],
    /// Ed25519 public key that signs this client's prekey bundles and its
    /// statements within sessions.
    pub signing: [u8; 32],
}

impl PeerIdentity {
    /// Length of [`PeerIdentity::to_bytes`].
    pub const LEN: usize = 64;

    /// `dh || signing`: how the identity enters transcripts and associated data.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (dh, signing) = out.split_at_mut(32);
        dh.copy_from_slice(&self.dh);
        signing.copy_from_slice(&self.signing);
        out
    }

    /// Checks an Ed25519 signature (strict verification) by the signing key.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(&self.signing).is_ok_and(|key| {
            key.verify_strict(message, &Signature::from_bytes(signature))
                .is_ok()
        })
    }

    /// Whether the signing key is a valid Ed25519 point.
    pub(crate) fn signing_key_is_valid(&self) -> bool {
        VerifyingKey::from_bytes(&self.signing).is_ok()
    }
}

/// A client's current prekeys: a signed X25519 prekey and an ML-KEM-768
/// prekey, each with an id that initial messages name. Rotate them
/// periodically: until a prekey is deleted, whoever steals it together with
/// the identity key can decrypt the first messages sent to it.
#[derive(Clone, Serialize, Deserialize)]
pub struct PrekeySecrets {
    spk_id: u32,
    spk: Secret32,
    pq_id: u32,
    pq_seed: Secret64,
}

impl PrekeySecrets {
    /// Generates fresh prekeys with the given ids.
    pub fn generate(rng: &mut impl CryptoRng, spk_id: u32, pq_id: u32) -> Self {
        Self {
            spk_id,
            spk: Secret32::random(rng),
            pq_id,
            pq_seed: Secret64::random(rng),
        }
    }

    /// Id of the signed X25519 prekey.
    pub fn spk_id(&self) -> u32 {
        self.spk_id
    }

    /// Id of the ML-KEM-768 prekey.
    pub fn pq_id(&self) -> u32 {
        self.pq_id
    }

    pub(crate) fn spk_secret(&self) -> StaticSecret {
        StaticSecret::from(*self.spk.expose())
    }

    pub(crate) fn spk_secret_bytes(&self) -> Secret32 {
        self.spk.clone()
    }

    pub(crate) fn spk_public(&self) -> [u8; 32] {
        PublicKey::from(&self.spk_secret()).to_bytes()
    }

    pub(crate) fn pq_decapsulation_key(&self) -> PqDecapsulationKey {
        pq_decapsulation_key(&self.pq_seed)
    }

    pub(crate) fn pq_public_bytes(&self) -> Vec<u8> {
        pq_public_bytes(&self.pq_seed)
    }
}

/// The ML-KEM-768 decapsulation key a prekey's 64-byte seed expands to.
pub(crate) fn pq_decapsulation_key(seed: &Secret64) -> PqDecapsulationKey {
    PqDecapsulationKey::from_seed(ml_kem::Seed::from(*seed.expose()))
}

/// The encoded ML-KEM-768 encapsulation key of a prekey's 64-byte seed.
pub(crate) fn pq_public_bytes(seed: &Secret64) -> Vec<u8> {
    pq_decapsulation_key(seed)
        .encapsulation_key()
        .to_bytes()
        .to_vec()
}

// The prekey and the ML-KEM seed are `Secret32` / `Secret64`, which wipe themselves on drop.
impl zeroize::ZeroizeOnDrop for PrekeySecrets {}

impl std::fmt::Debug for PrekeySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrekeySecrets")
            .field("spk_id", &self.spk_id)
            .field("pq_id", &self.pq_id)
            .finish_non_exhaustive()
    }
}

/// The public prekeys of a client, signed by its Ed25519 identity key.
///
/// A decoded bundle has always had its signature verified. It travels in an
/// address card or through the mixnet, never through a party that would
/// learn who talks to whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyBundle {
    suite: CipherSuite,
    identity: PeerIdentity,
    spk_id: u32,
    spk: [u8; 32],
    pq_id: u32,
    pq_public: Vec<u8>,
    /// Signed (version 2); `None` for a version-1 bundle.
    expires_at: Option<UnixSeconds>,
    signature: [u8; 64],
}

impl PrekeyBundle {
    /// The identity that signed this bundle.
    pub fn identity(&self) -> PeerIdentity {
        self.identity
    }

    /// The bundle's cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// Id of the signed X25519 prekey.
    pub fn spk_id(&self) -> u32 {
        self.spk_id
    }

    /// Id of the ML-KEM-768 prekey.
    pub fn pq_id(&self) -> u32 {
        self.pq_id
    }

    pub(crate) fn spk(&self) -> [u8; 32] {
        self.spk
    }

    pub(crate) fn pq_public(&self) -> &[u8] {
        &self.pq_public
    }

    /// The last moment (unix seconds) a first message made from this bundle
    /// can be opened by its owner, signed with the prekeys; `None` for a
    /// version-1 bundle, which does not say.
    pub fn expires_at(&self) -> Option<UnixSeconds> {
        self.expires_at
    }

    /// Whether the bundle's expiry is at or before `now` (a version-1
    /// bundle never is).
    pub fn is_expired(&self, now: UnixSeconds) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Refuses the bundle once it expired ([`SessionError::BundleExpired`]):
    /// its owner has erased the prekeys, a first message made from it would
    /// not open.
    pub fn check_not_expired(&self, now: UnixSeconds) -> Result<(), SessionError> {
        match self.expires_at {
            Some(expires_at) if expires_at <= now => Err(SessionError::BundleExpired {
                expires_at: expires_at.0,
                now: now.0,
            }),
            _ => Ok(()),
        }
    }

    /// The signed part: everything but the signature.
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BUNDLE_LEN);
        out.push(match self.expires_at {
            Some(_) => BUNDLE_VERSION,
            None => BUNDLE_VERSION_1,
        });
        out.push(self.suite.id());
        out.extend_from_slice(&self.identity.dh);
        out.extend_from_slice(&self.identity.signing);
        out.extend_from_slice(&self.spk_id.to_be_bytes());
        out.extend_from_slice(&self.spk);
        out.extend_from_slice(&self.pq_id.to_be_bytes());
        out.extend_from_slice(&self.pq_public);
        if let Some(expires_at) = self.expires_at {
            out.extend_from_slice(&expires_at.0.to_be_bytes());
        }
        out
    }

    /// Encodes the bundle (see docs/e2ee.md for the layout): version 2 with
    /// an expiry, version 1 without.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes a bundle of version 2 or 1 and verifies its signature (which
    /// covers the expiry) and keys. An expired bundle decodes: check it
    /// with [`PrekeyBundle::check_not_expired`].
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8("bundle version")?;
        if version != BUNDLE_VERSION && version != BUNDLE_VERSION_1 {
            return Err(SessionError::UnsupportedBundleVersion(version));
        }
        let suite = CipherSuite::from_id(reader.u8("bundle suite")?)?;
        let identity = PeerIdentity {
            dh: reader.array("bundle identity key")?,
            signing: reader.array("bundle signing key")?,
        };
        let spk_id = reader.u32("bundle spk id")?;
        let spk = reader.array::<32>("bundle signed prekey")?;
        let pq_id = reader.u32("bundle pq prekey id")?;
        let pq_public = reader.take(PQ_PUBLIC_KEY_LEN, "bundle pq prekey")?.to_vec();
        let expires_at = if version == BUNDLE_VERSION {
            let at = u64::from_be_bytes(reader.array::<8>("bundle expiry")?);
            if at == 0 {
                return Err(SessionError::Malformed("bundle expiry"));
            }
            Some(UnixSeconds(at))
        } else {
            None
        };
        let body_len = bytes.len().saturating_sub(reader.remaining());
        let signature = reader.array::<64>("bundle signature")?;
        reader.finish("trailing bytes after bundle")?;

        let body = bytes
            .get(..body_len)
            .ok_or(SessionError::Malformed("bundle body"))?;
        let verifying = VerifyingKey::from_bytes(&identity.signing)
            .map_err(|_| SessionError::BadBundleSignature)?;
        verifying
            .verify_strict(&signed_message(body), &Signature::from_bytes(&signature))
            .map_err(|_| SessionError::BadBundleSignature)?;
        PqEncapsulationKey::new_from_slice(&pq_public)
            .map_err(|_| SessionError::Malformed("bundle pq prekey"))?;
        Ok(Self {
            suite,
            identity,
            spk_id,
            spk,
            pq_id,
            pq_public,
            expires_at,
            signature,
        })
    }
}

/// The bytes an Ed25519 bundle signature covers: a label, then the bundle body.
fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(LABEL_BUNDLE.len() + body.len());
    message.extend_from_slice(LABEL_BUNDLE);
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn sample() -> (LocalIdentity, PrekeySecrets, PrekeyBundle) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let identity = LocalIdentity::generate(&mut rng);
        let prekeys = PrekeySecrets::generate(&mut rng, 7, 9);
        let bundle = identity.bundle(&prekeys);
        (identity, prekeys, bundle)
    }

    const EXPIRY: UnixSeconds = UnixSeconds(1_800_000_000);

    fn sample_expiring() -> PrekeyBundle {
        let (identity, prekeys, _) = sample();
        identity.bundle_until(&prekeys, Some(EXPIRY))
    }

    #[test]
    fn an_expiring_bundle_round_trips_and_says_when_it_expires() {
        let bundle = sample_expiring();
        let bytes = bundle.encode();
        assert_eq!((bytes.len(), bytes[0]), (BUNDLE_LEN, BUNDLE_VERSION));
        let decoded = PrekeyBundle::decode(&bytes).unwrap();
        assert_eq!(decoded, bundle);
        assert_eq!(decoded.expires_at(), Some(EXPIRY));
        assert!(!decoded.is_expired(UnixSeconds(EXPIRY.0 - 1)));
        assert_eq!(decoded.check_not_expired(UnixSeconds(EXPIRY.0 - 1)), Ok(()));
        assert!(decoded.is_expired(EXPIRY));
        assert_eq!(
            decoded.check_not_expired(UnixSeconds(EXPIRY.0 + 5)),
            Err(SessionError::BundleExpired {
                expires_at: EXPIRY.0,
                now: EXPIRY.0 + 5
            })
        );
    }

    #[test]
    fn the_expiry_is_signed_so_changing_it_is_refused() {
        let bytes = sample_expiring().encode();
        let expiry_at = BUNDLE_V1_LEN - 64;
        for index in expiry_at..expiry_at + 8 {
            let mut later = bytes.clone();
            later[index] ^= 0x01;
            assert_eq!(
                PrekeyBundle::decode(&later),
                Err(SessionError::BadBundleSignature),
                "expiry byte {index}"
            );
        }
        // Nor can the expiry be cut off to pass as a version-1 bundle.
        let mut v1 = bytes.clone();
        v1.drain(expiry_at..expiry_at + 8);
        v1[0] = BUNDLE_VERSION_1;
        assert_eq!(
            PrekeyBundle::decode(&v1),
            Err(SessionError::BadBundleSignature)
        );
        // A zero expiry is not an encoding of "none".
        let (identity, prekeys, _) = sample();
        let zero = identity
            .bundle_until(&prekeys, Some(UnixSeconds(0)))
            .encode();
        assert_eq!(
            PrekeyBundle::decode(&zero),
            Err(SessionError::Malformed("bundle expiry"))
        );
    }

    #[test]
    fn bundle_round_trips() {
        let (identity, _, bundle) = sample();
        let bytes = bundle.encode();
        assert_eq!(bytes.len(), BUNDLE_V1_LEN);
        assert_eq!(bundle.expires_at(), None);
        assert!(!bundle.is_expired(UnixSeconds(u64::MAX)));
        let decoded = PrekeyBundle::decode(&bytes).unwrap();
        assert_eq!(decoded, bundle);
        assert_eq!(decoded.identity(), identity.public());
        assert_eq!((decoded.spk_id(), decoded.pq_id()), (7, 9));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (_, _, bundle) = sample();
        for bytes in [bundle.encode(), sample_expiring().encode()] {
            for index in (0..bytes.len()).step_by(7) {
                let mut tampered = bytes.clone();
                tampered[index] ^= 0x20;
                assert!(
                    PrekeyBundle::decode(&tampered).is_err(),
                    "byte {index} flip accepted"
                );
            }
        }
    }

    #[test]
    fn wrong_version_suite_and_lengths_are_refused() {
        let (_, _, bundle) = sample();
        let bytes = bundle.encode();
        let mut v = bytes.clone();
        v[0] = 3;
        assert_eq!(
            PrekeyBundle::decode(&v),
            Err(SessionError::UnsupportedBundleVersion(3))
        );
        // A version-1 body read as version 2 lacks room for its expiry.
        let mut v2 = bytes.clone();
        v2[0] = BUNDLE_VERSION;
        assert!(PrekeyBundle::decode(&v2).is_err());
        let mut s = bytes.clone();
        s[1] = 9;
        assert_eq!(PrekeyBundle::decode(&s), Err(SessionError::UnknownSuite(9)));
        assert!(PrekeyBundle::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(PrekeyBundle::decode(&long).is_err());
    }
}
