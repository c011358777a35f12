//! Address cards and the identities pinned from them.

use std::fmt;
use std::str::FromStr;

use e2ee::{PeerIdentity, PrekeyBundle, UnixSeconds};
use protocol::ClientAddress;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::SessionBookError;

/// A client's address together with its prekey bundle: what a correspondent
/// needs to start a session. Text form: `<address>/<base58 bundle>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressCard {
    /// Where the client's mailbox is.
    pub address: ClientAddress,
    /// The client's signed prekeys (verified when the card is parsed).
    pub bundle: PrekeyBundle,
}

impl fmt::Display for AddressCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.address,
            bs58::encode(self.bundle.encode()).into_string()
        )
    }
}

impl AddressCard {
    /// When the card expires, signed in its bundle (`None`: a card of
    /// bundle version 1, which does not say).
    pub fn expires_at(&self) -> Option<UnixSeconds> {
        self.bundle.expires_at()
    }

    /// Refuses the card once it expired at `now`
    /// ([`SessionBookError::CardExpired`]): its owner no longer opens first
    /// messages made from it.
    pub fn check_not_expired(&self, now: UnixSeconds) -> Result<(), SessionBookError> {
        check_bundle(&self.address, &self.bundle, now)
    }
}

/// Refuses `bundle`, the card of `address`, once it expired at `now`.
pub(super) fn check_bundle(
    address: &ClientAddress,
    bundle: &PrekeyBundle,
    now: UnixSeconds,
) -> Result<(), SessionBookError> {
    match bundle.expires_at() {
        Some(expired_at) if bundle.is_expired(now) => Err(SessionBookError::CardExpired {
            address: address.to_string(),
            expired_at,
        }),
        _ => Ok(()),
    }
}

/// Why an address card could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CardError {
    /// No `/` between the address and the bundle.
    #[error("an address card is <address>/<bundle>; this has no bundle")]
    MissingBundle,
    /// The address part does not parse.
    #[error("bad address: {0}")]
    Address(String),
    /// The bundle is not base58, or fails its checks (signature, suite, length).
    #[error("bad prekey bundle: {0}")]
    Bundle(String),
}

impl FromStr for AddressCard {
    type Err = CardError;

    fn from_str(s: &str) -> Result<Self, CardError> {
        let (address, bundle) = s.trim().split_once('/').ok_or(CardError::MissingBundle)?;
        let address =
            ClientAddress::from_str(address).map_err(|e| CardError::Address(e.to_string()))?;
        let bytes = bs58::decode(bundle)
            .into_vec()
            .map_err(|e| CardError::Bundle(e.to_string()))?;
        let bundle = PrekeyBundle::decode(&bytes).map_err(|e| CardError::Bundle(e.to_string()))?;
        Ok(AddressCard { address, bundle })
    }
}

/// A peer's long-term identity, what a user compares out of band: its
/// X25519 identity key and its Ed25519 signing key, pinned together (a
/// session whose peer has the same X25519 key but another signing key is
/// another identity). Text form: base58 of the 64 bytes `dh || signing`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerIdentityKey(pub PeerIdentity);

impl fmt::Display for PeerIdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0.to_bytes()).into_string())
    }
}

impl fmt::Debug for PeerIdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerIdentityKey({self})")
    }
}
