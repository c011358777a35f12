//! Keys and identities.
//!
//! Every node has two kinds of key: a long-lived Ed25519 identity
//! ([`IdentityKeyPair`]) that names it ([`NodeId`]), signs its descriptors and
//! binds its QUIC certificate, and an X25519 Sphinx key per epoch
//! ([`SphinxKeyPair`]) that unwraps packet layers. A client has a Sphinx key
//! pair too: its public half is the client part of its address.

use std::fmt;

use ed25519_dalek::{Signer, Verifier};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sphinx_packet::route::{DestinationAddressBytes, NodeAddressBytes};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::ProtocolError;

/// A node's name on the network: its Ed25519 identity public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The Sphinx routing address of this node.
    pub fn to_sphinx_address(self) -> NodeAddressBytes {
        NodeAddressBytes::from_bytes(self.0)
    }

    /// The node named by a Sphinx routing address.
    pub fn from_sphinx_address(address: &NodeAddressBytes) -> Self {
        NodeId(*address.as_bytes())
    }

    /// This id as a final-hop destination (used by a node's own loop cover).
    pub fn to_destination(self) -> DestinationAddressBytes {
        DestinationAddressBytes::from_bytes(self.0)
    }

    /// The id in base58, the form used in configs and logs.
    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).into_string()
    }

    /// Reads an id from base58.
    pub fn from_base58(text: &str) -> Result<Self, ProtocolError> {
        decode_32(text).map(NodeId)
    }

    /// Verifies `signature` over `message` under this identity.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_base58();
        write!(f, "NodeId({})", text.get(..8).unwrap_or(&text))
    }
}

/// Decodes 32 bytes of base58.
pub(crate) fn decode_32(text: &str) -> Result<[u8; 32], ProtocolError> {
    let bytes = bs58::decode(text.trim())
        .into_vec()
        .map_err(|e| ProtocolError::BadKey(format!("not base58: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| ProtocolError::BadKey(format!("expected 32 bytes, got {}", bytes.len())))
}

/// A node's long-lived Ed25519 identity.
pub struct IdentityKeyPair {
    signing: ed25519_dalek::SigningKey,
}

impl IdentityKeyPair {
    /// A fresh identity drawn from `rng`.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        IdentityKeyPair {
            signing: ed25519_dalek::SigningKey::generate(rng),
        }
    }

    /// The identity whose secret is `secret`.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        IdentityKeyPair {
            signing: ed25519_dalek::SigningKey::from_bytes(secret),
        }
    }

    /// The secret bytes, for writing the key file.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The node's public name.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    /// The Ed25519 signing key (for TLS certificates).
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKeyPair({:?})", self.node_id())
    }
}

/// An X25519 key pair used to unwrap (node) or receive (client) Sphinx packets.
#[derive(Clone)]
pub struct SphinxKeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl SphinxKeyPair {
    /// A fresh key pair drawn from `rng`.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        Self::from_secret_bytes(random_bytes(rng))
    }

    /// The key pair whose secret is `secret`.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret);
        SphinxKeyPair { secret, public }
    }

    /// The secret bytes, for writing the key file.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The secret half.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }
}

impl fmt::Debug for SphinxKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SphinxKeyPair({})",
            bs58::encode(self.public.as_bytes()).into_string()
        )
    }
}

/// 32 random bytes from `rng`, for secrets handed to crates that want bytes.
pub fn random_bytes(rng: &mut (impl CryptoRng + ?Sized)) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn identity_signs_and_node_id_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let id = IdentityKeyPair::generate(&mut rng);
        let sig = id.sign(b"descriptor");
        assert!(id.node_id().verify(b"descriptor", &sig));
        assert!(!id.node_id().verify(b"descriptoR", &sig));
        let other = IdentityKeyPair::generate(&mut rng);
        assert!(!other.node_id().verify(b"descriptor", &sig));
    }

    #[test]
    fn keys_round_trip_through_secret_bytes_and_base58() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let id = IdentityKeyPair::generate(&mut rng);
        let again = IdentityKeyPair::from_secret_bytes(&id.secret_bytes());
        assert_eq!(id.node_id(), again.node_id());
        assert_eq!(
            NodeId::from_base58(&id.node_id().to_base58()),
            Ok(id.node_id())
        );
        assert!(NodeId::from_base58("abc").is_err());
        let sk = SphinxKeyPair::generate(&mut rng);
        let sk2 = SphinxKeyPair::from_secret_bytes(*sk.secret_bytes());
        assert_eq!(sk.public(), sk2.public());
    }
}
