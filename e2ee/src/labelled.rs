//! Signatures of the identity over documents of the client's own, outside
//! any session (a bundle published at the gateway, say).
//!
//! Why a label: the same Ed25519 key signs prekey bundles and session
//! statements; every document kind signs under its own label, length
//! prefixed, so a signature made for one kind never verifies as another.

use crate::bundle::{LocalIdentity, PeerIdentity};
use crate::session::SIGNATURE_LEN;

/// Prefix of every labelled signature's message.
const LABEL_LABELLED: &[u8] = b"mixnet-e2ee/v2 labelled document";

/// `LABEL_LABELLED || len(label) u16 || label || document`.
fn labelled_message(label: &[u8], document: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(LABEL_LABELLED.len() + 2 + label.len() + document.len());
    message.extend_from_slice(LABEL_LABELLED);
    // Labels are short constants of the caller; longer ones are cut in the
    // length only, which still separates them.
    message.extend_from_slice(&(label.len().min(u16::MAX as usize) as u16).to_be_bytes());
    message.extend_from_slice(label);
    message.extend_from_slice(document);
    message
}

impl LocalIdentity {
    /// Signs `document` under `label` with the identity's Ed25519 key
    /// (deterministic; not deniable: anyone can check it).
    pub fn sign_labelled(&self, label: &[u8], document: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign(&labelled_message(label, document))
    }
}

impl PeerIdentity {
    /// Whether `signature` is this identity's signature of `document` under `label`.
    pub fn verify_labelled(
        &self,
        label: &[u8],
        document: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> bool {
        self.verify(&labelled_message(label, document), signature)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_labelled_signature_verifies_only_for_its_signer_label_and_document() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let alice = LocalIdentity::generate(&mut rng);
        let bob = LocalIdentity::generate(&mut rng);
        let signature = alice.sign_labelled(b"doc", b"hello");
        assert!(alice.public().verify_labelled(b"doc", b"hello", &signature));
        assert!(
            !alice
                .public()
                .verify_labelled(b"doc2", b"hello", &signature)
        );
        assert!(!alice.public().verify_labelled(b"doc", b"hellp", &signature));
        assert!(!bob.public().verify_labelled(b"doc", b"hello", &signature));
        // Moving bytes between the label and the document changes the message.
        assert!(!alice.public().verify_labelled(b"do", b"chello", &signature));
    }
}
