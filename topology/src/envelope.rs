//! Signed envelopes: `{ "body": "<json text>", "signature": "<hex>" }`.
//!
//! JSON has no canonical form (key order, whitespace, number formatting), so a
//! verifier that parsed a document and serialised it again could compute other
//! bytes than the signer did. The envelope therefore carries the body as the
//! exact string that was signed: the verifier checks the signature over those
//! bytes first and parses them only if it holds.
//!
//! Each kind of document has its own domain tag, prefixed to the body before
//! signing, so that a signature made for one kind (say, a descriptor) can never
//! be presented as another (a topology), even if one key signed both.

use protocol::{IdentityKeyPair, NodeId};
use serde::{Deserialize, Serialize};

use crate::error::TopologyError;

/// Domain tag of node descriptors.
pub const DESCRIPTOR_DOMAIN: &[u8] = b"mixnet/descriptor/v1\0";
/// Domain tag of topology documents (the consensus of the authorities).
pub const TOPOLOGY_DOMAIN: &[u8] = b"mixnet/topology/v1\0";
/// Domain tag of authorities' votes.
pub const VOTE_DOMAIN: &[u8] = b"mixnet/vote/v1\0";

/// A signed body and its signature, as it travels and as it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedEnvelope {
    /// The signed document, JSON text, exactly as signed.
    pub body: String,
    /// Ed25519 signature over the domain tag and `body`, in hex.
    pub signature: String,
}

impl SignedEnvelope {
    /// Signs `body` for `domain` with `key`.
    pub fn seal(domain: &[u8], body: String, key: &IdentityKeyPair) -> Self {
        let signature = sign_body(domain, &body, key);
        SignedEnvelope { body, signature }
    }

    /// Checks that `signer` signed this body for `domain`.
    pub fn check(
        &self,
        domain: &[u8],
        signer: &NodeId,
        what: &'static str,
    ) -> Result<(), TopologyError> {
        check_body(domain, &self.body, signer, &self.signature, what)
    }
}

/// Signs `domain ‖ body` with `key`; the signature in hex.
pub fn sign_body(domain: &[u8], body: &str, key: &IdentityKeyPair) -> String {
    hex::encode(key.sign(&signed_bytes(domain, body)))
}

/// Checks that `signature` (hex) is `signer`'s over `domain ‖ body`.
pub fn check_body(
    domain: &[u8],
    body: &str,
    signer: &NodeId,
    signature: &str,
    what: &'static str,
) -> Result<(), TopologyError> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature.trim(), &mut bytes).map_err(|e| TopologyError::Malformed {
        what,
        reason: format!("signature is not 64 bytes of hex: {e}"),
    })?;
    if signer.verify(&signed_bytes(domain, body), &bytes) {
        Ok(())
    } else {
        Err(TopologyError::BadSignature { what })
    }
}

fn signed_bytes(domain: &[u8], body: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(domain.len() + body.len());
    bytes.extend_from_slice(domain);
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn signature_binds_body_domain_and_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let key = IdentityKeyPair::generate(&mut rng);
        let other = IdentityKeyPair::generate(&mut rng);
        let env = SignedEnvelope::seal(DESCRIPTOR_DOMAIN, "{\"a\":1}".into(), &key);
        assert_eq!(env.check(DESCRIPTOR_DOMAIN, &key.node_id(), "d"), Ok(()));
        let bad = TopologyError::BadSignature { what: "d" };
        assert_eq!(
            env.check(TOPOLOGY_DOMAIN, &key.node_id(), "d"),
            Err(bad.clone())
        );
        assert_eq!(
            env.check(DESCRIPTOR_DOMAIN, &other.node_id(), "d"),
            Err(bad.clone())
        );
        let mut tampered = env.clone();
        tampered.body = "{\"a\":2}".into();
        assert_eq!(
            tampered.check(DESCRIPTOR_DOMAIN, &key.node_id(), "d"),
            Err(bad)
        );
        let mut garbled = env;
        garbled.signature = "zz".into();
        assert!(matches!(
            garbled.check(DESCRIPTOR_DOMAIN, &key.node_id(), "d"),
            Err(TopologyError::Malformed { .. })
        ));
    }
}
