//! Node identities: the Ed25519 key that names a peer, and the self-signed
//! TLS certificate bound to it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;

use crate::error::TransportError;

/// The pin of a peer: its 32-byte Ed25519 identity public key.
///
/// A peer's TLS certificate carries exactly this key, so the pin is checked
/// against the certificate and the TLS handshake signature proves that the
/// peer holds the matching private key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// The peer id of an Ed25519 verifying key.
    pub fn from_verifying_key(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self(key.to_bytes())
    }

    /// The peer id of the node that owns `key`.
    pub fn from_signing_key(key: &ed25519_dalek::SigningKey) -> Self {
        Self::from_verifying_key(&key.verifying_key())
    }

    /// The raw 32 bytes of the public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads the peer id from a DER certificate: its subject public key must
    /// be an Ed25519 key. This says nothing about whether the peer holds the
    /// private key; the TLS handshake signature proves that.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<Self, rustls::Error> {
        let parsed = ParsedCertificate::try_from(cert)?;
        let spki = parsed.subject_public_key_info();
        let key =
            ed25519_dalek::VerifyingKey::from_public_key_der(spki.as_ref()).map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            })?;
        Ok(Self::from_verifying_key(&key))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| TransportError::BadPeerId)?;
        Ok(Self(bytes))
    }
}

/// A node's TLS identity: its peer id and a self-signed certificate whose
/// key is the node's Ed25519 identity key, loaded into the crypto provider.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    peer_id: PeerId,
    certified: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
}

/// Name written in every certificate; peers are told apart by key, not name.
const CERT_NAME: &str = "mixnet-node";

impl NodeIdentity {
    /// Builds the certificate for `key` and loads the key into the
    /// transport's crypto provider.
    pub fn new(key: &ed25519_dalek::SigningKey) -> Result<Self, TransportError> {
        let provider = crate::tls::crypto_provider();
        let peer_id = PeerId::from_signing_key(key);
        let mut params = rcgen::CertificateParams::new(vec![CERT_NAME.to_owned()])
            .map_err(|e| TransportError::Certificate(Box::new(e)))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, peer_id.to_string());
        // Serial numbers only need to differ between nodes: take them from the key.
        params.serial_number = Some(rcgen::SerialNumber::from(
            peer_id.0.iter().take(16).copied().collect::<Vec<u8>>(),
        ));
        let signer = IdentitySigner {
            key,
            public: peer_id.0,
        };
        let cert = params
            .self_signed(&signer)
            .map_err(|e| TransportError::Certificate(Box::new(e)))?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| TransportError::Certificate(Box::new(e)))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()));
        let certified = CertifiedKey::from_der(vec![cert.der().clone()], key_der, &provider)
            .map_err(|e| TransportError::Certificate(Box::new(e)))?;
        Ok(Self {
            peer_id,
            certified: Arc::new(certified),
            provider,
        })
    }

    /// This node's peer id (its Ed25519 public key).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This node's self-signed certificate, DER-encoded.
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.certified.cert.first()
    }

    /// Any certificate with any key, unchecked: lets tests play a forger.
    #[cfg(test)]
    pub(crate) fn from_parts(
        peer_id: PeerId,
        certified: CertifiedKey,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            peer_id,
            certified: Arc::new(certified),
            provider,
        }
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }

    pub(crate) fn provider(&self) -> Arc<CryptoProvider> {
        Arc::clone(&self.provider)
    }
}

/// Lets rcgen sign the certificate with the ed25519-dalek key itself.
struct IdentitySigner<'a> {
    key: &'a ed25519_dalek::SigningKey,
    public: [u8; 32],
}

impl rcgen::PublicKeyData for IdentitySigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for IdentitySigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn certificate_carries_the_identity_key() {
        let k = key(7);
        let id = NodeIdentity::new(&k).unwrap();
        let cert = id.certificate().unwrap();
        assert_eq!(PeerId::from_certificate(cert).unwrap(), id.peer_id());
        assert_eq!(id.peer_id().0, k.verifying_key().to_bytes());
    }

    #[test]
    fn different_keys_give_different_pins() {
        let a = NodeIdentity::new(&key(1)).unwrap();
        let b = NodeIdentity::new(&key(2)).unwrap();
        assert_ne!(a.peer_id(), b.peer_id());
    }

    #[test]
    fn peer_id_display_round_trips() {
        let id = PeerId::from_signing_key(&key(3));
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
        assert!("zz".parse::<PeerId>().is_err());
    }

    #[test]
    fn garbage_certificate_is_rejected() {
        let der = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(PeerId::from_certificate(&der).is_err());
    }
}
