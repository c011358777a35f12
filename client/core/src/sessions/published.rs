//! The bundle a client publishes at its gateway, for correspondents who
//! know only its short address (docs/e2ee.md, "Prekeys kept at the gateway").
//!
//! ```text
//! version (1) = 1 || serial (8) || client key (32) || gateway (32)
//!   || prekey bundle (variable) || signature (64)
//! signature = Ed25519 of the identity over
//!   labelled("mixnet-client/v1 published bundle", every byte before it)
//! ```
//!
//! The gateway stores it as opaque bytes and hands it out; it can withhold
//! it or hand out an old one (the serial and the bundle's expiry tell the
//! owner's newer one apart), never forge one: the asker believes it only
//! when the identity in the bundle has the fingerprint of the short address
//! asked for, the address is at that gateway, and both the bundle's and
//! this signature verify. Why sign the address too: the card's own bundle
//! does not cover it, and a gateway that swapped the client key would send
//! the correspondent's messages to a mailbox of its choosing.

use e2ee::{PrekeyBundle, SIGNATURE_LEN, SignedOneTimePrekey, UnixSeconds};
use protocol::{ClientAddress, NodeId};
use thiserror::Error;

use super::card::AddressCard;
use super::{PeerIdentityKey, ShortAddress};

/// Version byte of a published bundle.
const VERSION: u8 = 1;
/// What the identity's signature of a published bundle is labelled with.
const LABEL: &[u8] = b"mixnet-client/v1 published bundle";
/// Bytes before the prekey bundle: version, serial, client key, gateway.
const HEADER_LEN: usize = 1 + 8 + 32 + 32;

/// A client's address card, numbered and signed by its identity, as its
/// gateway keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedBundle {
    /// Higher for a later publication of the same identity.
    pub serial: u64,
    /// The card: the mailbox address and the prekey bundle.
    pub card: AddressCard,
    signature: [u8; SIGNATURE_LEN],
}

/// Why a bundle served by a gateway was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PublishedError {
    /// The bytes are not a published bundle.
    #[error("gateway {gateway} served a malformed bundle for {short}: {why}")]
    Malformed {
        /// The gateway asked.
        gateway: NodeId,
        /// The short address asked for.
        short: String,
        /// What is wrong.
        why: String,
    },
    /// The bundle is of another identity than the short address names.
    #[error("gateway {gateway} served the bundle of another identity than {short}")]
    OtherIdentity {
        /// The gateway asked.
        gateway: NodeId,
        /// The short address asked for.
        short: String,
    },
    /// The address, the bundle or the one-time prekey is not signed by the
    /// identity the short address names, or the address is at another gateway.
    #[error("gateway {gateway} served a bundle not signed by the identity of {short}")]
    BadSignature {
        /// The gateway asked.
        gateway: NodeId,
        /// The short address asked for.
        short: String,
    },
}

impl PublishedBundle {
    /// `card` numbered `serial`, signed by `identity` (which must be the card's).
    pub(super) fn sign(identity: &e2ee::LocalIdentity, serial: u64, card: AddressCard) -> Self {
        let body = body(serial, &card);
        let signature = identity.sign_labelled(LABEL, &body);
        PublishedBundle {
            serial,
            card,
            signature,
        }
    }

    /// The bytes the gateway stores.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = body(self.serial, &self.card);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Reads and checks a bundle `gateway` served for `short`, with the
    /// one-time prekey it handed out beside it (`None`: none left). Refused
    /// unless everything is signed by the identity `short` names and the
    /// address is at `short`'s gateway; an expired card is refused after,
    /// by the caller, with its date.
    pub fn verify(
        short: &ShortAddress,
        published: &[u8],
        one_time: Option<&[u8]>,
    ) -> Result<(Self, Option<SignedOneTimePrekey>), PublishedError> {
        let gateway = short.gateway;
        let malformed = |why: String| PublishedError::Malformed {
            gateway,
            short: short.to_string(),
            why,
        };
        let bad_signature = || PublishedError::BadSignature {
            gateway,
            short: short.to_string(),
        };
        let split = published
            .len()
            .checked_sub(SIGNATURE_LEN)
            .filter(|&n| n > HEADER_LEN)
            .ok_or_else(|| malformed(format!("{} bytes", published.len())))?;
        let (body, signature) = published.split_at(split);
        let signature: [u8; SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| malformed("signature".into()))?;
        let (header, bundle) = body.split_at(HEADER_LEN);
        let (version, rest) = header
            .split_first()
            .ok_or_else(|| malformed("empty".into()))?;
        if *version != VERSION {
            return Err(malformed(format!("unknown version {version}")));
        }
        let (serial, rest) = rest.split_at(8);
        let (client_key, gateway_bytes) = rest.split_at(32);
        let serial = u64::from_be_bytes(serial.try_into().map_err(|_| malformed("serial".into()))?);
        let address = ClientAddress {
            client_key: client_key
                .try_into()
                .map_err(|_| malformed("client key".into()))?,
            gateway: NodeId(
                gateway_bytes
                    .try_into()
                    .map_err(|_| malformed("gateway".into()))?,
            ),
        };
        // Decoding checks the bundle's own signature by the identity inside it.
        let bundle = PrekeyBundle::decode(bundle).map_err(|e| match e {
            e2ee::SessionError::BadBundleSignature => bad_signature(),
            other => malformed(other.to_string()),
        })?;
        let identity = bundle.identity();
        if !short.names(&PeerIdentityKey(identity)) {
            return Err(PublishedError::OtherIdentity {
                gateway,
                short: short.to_string(),
            });
        }
        if address.gateway != short.gateway || !identity.verify_labelled(LABEL, body, &signature) {
            return Err(bad_signature());
        }
        let one_time = match one_time {
            None => None,
            Some(bytes) => {
                let key = SignedOneTimePrekey::decode(bytes)
                    .map_err(|e| malformed(format!("one-time prekey: {e}")))?;
                key.verify(&identity).map_err(|_| bad_signature())?;
                Some(key)
            }
        };
        Ok((
            PublishedBundle {
                serial,
                card: AddressCard { address, bundle },
                signature,
            },
            one_time,
        ))
    }

    /// When its card expires (`None`: a card without expiry).
    pub fn expires_at(&self) -> Option<UnixSeconds> {
        self.card.expires_at()
    }
}

/// Every byte the signature covers.
fn body(serial: u64, card: &AddressCard) -> Vec<u8> {
    let bundle = card.bundle.encode();
    let mut out = Vec::with_capacity(HEADER_LEN + bundle.len() + SIGNATURE_LEN);
    out.push(VERSION);
    out.extend_from_slice(&serial.to_be_bytes());
    out.extend_from_slice(&card.address.client_key);
    out.extend_from_slice(&card.address.gateway.0);
    out.extend_from_slice(&bundle);
    out
}
