//! The plaintext inside a session message: a version, flags, the sender's
//! signed address claim when it sends one, and the application's bytes.
//!
//! ```text
//! version (1) = 2 || flags (1) || [address (64) || signature (64)  if flags & 1] || content
//! ```
//!
//! Flag 2: the content is not the application's but the sender's new prekey
//! bundle, sent in every established session when its prekeys rotate, which
//! the recipient's book keeps for the sender's address and does not deliver.
//! Flag 4: a recall notice; its content is exactly the 16-byte id of the
//! message its sender recalls (docs/e2ee.md, "Recall"). At most one of the two.
//!
//! The signature is the sender identity's Ed25519 signature of
//! `"mixnet-client/v2 sender address" || address`, bound to the session by
//! [`e2ee::Session::sign_statement`] (handshake id, both identities).

use protocol::fragment::MessageId;
use protocol::{ClientAddress, NodeId};
use zeroize::Zeroizing;

use super::SessionBookError;
use e2ee::SIGNATURE_LEN;

/// Version byte of the plaintext inside a session message.
pub const CONTENT_VERSION: u8 = 2;
/// Flag: the sender's signed address claim follows.
const FLAG_SENDER: u8 = 1;
/// Flag: the content is the sender's new prekey bundle (a control message).
const FLAG_BUNDLE: u8 = 2;
/// Flag: a recall notice; the content is the recalled message's id.
const FLAG_RECALL: u8 = 4;
/// Length of a client address (Sphinx key and gateway id).
const ADDRESS_LEN: usize = 64;
/// Bytes a message carrying a sender claim adds: the address and its signature.
pub const CLAIM_LEN: usize = ADDRESS_LEN + SIGNATURE_LEN;
/// What the sender's identity signs, before the address.
const CLAIM_LABEL: &[u8] = b"mixnet-client/v2 sender address";

/// "My address is `address`", signed by the sender's identity in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct SenderClaim {
    pub(super) address: ClientAddress,
    #[serde(with = "signature_bytes")]
    pub(super) signature: [u8; SIGNATURE_LEN],
}

/// The statement a sender signs to claim `address`.
pub(super) fn claim_statement(address: &ClientAddress) -> Vec<u8> {
    let mut statement = Vec::with_capacity(CLAIM_LABEL.len() + ADDRESS_LEN);
    statement.extend_from_slice(CLAIM_LABEL);
    statement.extend_from_slice(&address.client_key);
    statement.extend_from_slice(&address.gateway.0);
    statement
}

/// The plaintext of a session message.
pub(super) fn encode(claim: Option<&SenderClaim>, content: &[u8]) -> Zeroizing<Vec<u8>> {
    encode_flagged(claim, 0, content)
}

/// The plaintext of a message that carries our new prekey bundle.
pub(super) fn encode_bundle(claim: Option<&SenderClaim>, bundle: &[u8]) -> Zeroizing<Vec<u8>> {
    encode_flagged(claim, FLAG_BUNDLE, bundle)
}

/// The plaintext of a recall notice for message `id`.
pub(super) fn encode_recall(claim: Option<&SenderClaim>, id: &MessageId) -> Zeroizing<Vec<u8>> {
    encode_flagged(claim, FLAG_RECALL, &id.0)
}

fn encode_flagged(claim: Option<&SenderClaim>, flags: u8, content: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(2 + CLAIM_LEN + content.len()));
    out.push(CONTENT_VERSION);
    out.push(claim.map_or(0, |_| FLAG_SENDER) | flags);
    if let Some(claim) = claim {
        out.extend_from_slice(&claim.address.client_key);
        out.extend_from_slice(&claim.address.gateway.0);
        out.extend_from_slice(&claim.signature);
    }
    out.extend_from_slice(content);
    out
}

/// A decoded session plaintext.
pub(super) struct Content {
    pub(super) claim: Option<SenderClaim>,
    pub(super) content: Vec<u8>,
    /// The content is the sender's new prekey bundle, not the application's.
    pub(super) bundle: bool,
    /// For a recall notice: the message it recalls (`content` is then empty).
    pub(super) recalls: Option<MessageId>,
}

pub(super) fn decode(plaintext: &[u8]) -> Result<Content, SessionBookError> {
    let [version, flags, rest @ ..] = plaintext else {
        return Err(SessionBookError::BadContent);
    };
    if *version != CONTENT_VERSION
        || flags & !(FLAG_SENDER | FLAG_BUNDLE | FLAG_RECALL) != 0
        || flags & (FLAG_BUNDLE | FLAG_RECALL) == FLAG_BUNDLE | FLAG_RECALL
    {
        return Err(SessionBookError::BadContent);
    }
    let mut rest = rest;
    let mut claim = None;
    if flags & FLAG_SENDER != 0 {
        let (key, tail) = rest
            .split_first_chunk::<32>()
            .ok_or(SessionBookError::BadContent)?;
        let (gateway, tail) = tail
            .split_first_chunk::<32>()
            .ok_or(SessionBookError::BadContent)?;
        let (signature, tail) = tail
            .split_first_chunk::<SIGNATURE_LEN>()
            .ok_or(SessionBookError::BadContent)?;
        claim = Some(SenderClaim {
            address: ClientAddress {
                client_key: *key,
                gateway: NodeId(*gateway),
            },
            signature: *signature,
        });
        rest = tail;
    }
    if flags & FLAG_RECALL != 0 {
        let id = <[u8; 16]>::try_from(rest).map_err(|_| SessionBookError::BadContent)?;
        return Ok(Content {
            claim,
            content: Vec::new(),
            bundle: false,
            recalls: Some(MessageId(id)),
        });
    }
    Ok(Content {
        claim,
        content: rest.to_vec(),
        bundle: flags & FLAG_BUNDLE != 0,
        recalls: None,
    })
}

/// Serde for a 64-byte signature (serde implements arrays up to 32).
mod signature_bytes {
    use e2ee::SIGNATURE_LEN;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &[u8; SIGNATURE_LEN],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut low = [0u8; SIGNATURE_LEN / 2];
        let mut high = [0u8; SIGNATURE_LEN / 2];
        let (a, b) = bytes.split_at(SIGNATURE_LEN / 2);
        low.copy_from_slice(a);
        high.copy_from_slice(b);
        (low, high).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; SIGNATURE_LEN], D::Error> {
        let (low, high) = <([u8; 32], [u8; 32])>::deserialize(deserializer)?;
        let mut out = [0u8; SIGNATURE_LEN];
        let (a, b) = out.split_at_mut(SIGNATURE_LEN / 2);
        a.copy_from_slice(&low);
        b.copy_from_slice(&high);
        Ok(out)
    }
}
