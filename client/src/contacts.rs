//! Addresses as people write them, and contacts by name.
//!
//! Three text forms name a correspondent ([`PeerAddress`]): a short address
//! (identity fingerprint and gateway, 78 characters with a checksum), a
//! plain address (`key@gateway`), or an address card (`key@gateway/bundle`).
//! Each can be given a name ([`Contacts::add`]); a name stands for the
//! identity (docs/client.md, "Contacts").

use std::str::FromStr;

use client_core::ClientError;
use client_core::sessions::{
    AddressCard, CardError, ContactError, ContactName, NamedContact, PeerIdentityKey, SafetyNumber,
    SessionBook, SessionBookError, ShortAddress, ShortAddressError,
};
use e2ee::UnixSeconds;
use protocol::{ClientAddress, ProtocolError};
use thiserror::Error;

use crate::Client;

/// Where a message goes: a full address, or a short address the client
/// resolves to the address pinned to its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A mailbox address (Sphinx key and gateway).
    Address(ClientAddress),
    /// An identity fingerprint and gateway.
    Short(ShortAddress),
}

impl From<ClientAddress> for Recipient {
    fn from(address: ClientAddress) -> Self {
        Recipient::Address(address)
    }
}

impl From<&ClientAddress> for Recipient {
    fn from(address: &ClientAddress) -> Self {
        Recipient::Address(*address)
    }
}

impl From<ShortAddress> for Recipient {
    fn from(short: ShortAddress) -> Self {
        Recipient::Short(short)
    }
}

impl From<&ShortAddress> for Recipient {
    fn from(short: &ShortAddress) -> Self {
        Recipient::Short(*short)
    }
}

/// An address in one of its three text forms.
// A card is the large form (its bundle's keys and expiry); a `PeerAddress`
// is parsed once from text and handed on, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddress {
    /// `key@gateway/bundle`: the address and the signed prekeys.
    Card(AddressCard),
    /// `key@gateway`.
    Address(ClientAddress),
    /// The short address.
    Short(ShortAddress),
}

/// Why an address could not be read, by the form it looked like.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PeerAddressError {
    /// It has a `/`, like a card, and is not one.
    #[error("not an address card: {0}")]
    Card(#[source] CardError),
    /// It has an `@`, like a plain address, and is not one.
    #[error("not an address (key@gateway): {0}")]
    Address(#[source] ProtocolError),
    /// It is not a short address.
    #[error("not a short address: {0}")]
    Short(#[source] ShortAddressError),
}

impl FromStr for PeerAddress {
    type Err = PeerAddressError;

    fn from_str(text: &str) -> Result<Self, PeerAddressError> {
        let text = text.trim();
        if text.contains('/') {
            text.parse()
                .map(PeerAddress::Card)
                .map_err(PeerAddressError::Card)
        } else if text.contains('@') {
            text.parse()
                .map(PeerAddress::Address)
                .map_err(PeerAddressError::Address)
        } else {
            text.parse()
                .map(PeerAddress::Short)
                .map_err(PeerAddressError::Short)
        }
    }
}

/// Names `to` `name` in `book`: a card is added as a contact too, unless
/// it expired at `now`; a plain address must have its identity pinned
/// already (by a card or a session). Returns the short address the name
/// stands for.
pub fn add_named(
    book: &mut SessionBook,
    name: ContactName,
    to: &PeerAddress,
    now: UnixSeconds,
) -> Result<ShortAddress, SessionBookError> {
    match to {
        PeerAddress::Card(card) => {
            card.check_not_expired(now)?;
            Ok(book.add_named_card(name, card)?)
        }
        PeerAddress::Address(address) => {
            let short = book
                .short_of(address)
                .ok_or_else(|| ContactError::UnknownIdentity(address.to_string()))?;
            book.name_contact(name, short)?;
            Ok(short)
        }
        PeerAddress::Short(short) => {
            book.name_contact(name, *short)?;
            Ok(*short)
        }
    }
}

/// The safety number of a conversation with the contact `name`.
pub fn verify_named(book: &SessionBook, name: &ContactName) -> Result<SafetyNumber, ContactError> {
    let short = book.named(name)?;
    let peer = book
        .identity_named(&short)
        .ok_or_else(|| ContactError::NotMetYet(name.to_string()))?;
    Ok(book.safety_number(&peer))
}

/// The contacts of a running [`Client`] ([`Client::contacts`]): every call
/// goes to the client's task, which owns the session book and saves it.
pub struct Contacts<'a> {
    client: &'a Client,
}

impl<'a> Contacts<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Contacts { client }
    }

    /// Names `to` `name` ([`add_named`]); returns its short address.
    pub async fn add(
        &self,
        name: ContactName,
        to: PeerAddress,
    ) -> Result<ShortAddress, ClientError> {
        let now = crate::shell::clock::unix_now();
        self.client
            .with_book(true, move |book| {
                add_named(book, name, &to, now).map_err(ClientError::from)
            })
            .await
    }

    /// Every named contact, by name.
    pub async fn list(&self) -> Result<Vec<NamedContact>, ClientError> {
        self.client
            .with_book(false, |book| Ok(book.named_contacts()))
            .await
    }

    /// Forgets the name (sessions and the pinned identity stay).
    pub async fn remove(&self, name: ContactName) -> Result<ShortAddress, ClientError> {
        self.client
            .with_book(true, move |book| {
                book.remove_name(&name).map_err(into_client)
            })
            .await
    }

    /// The safety number of a conversation with `name`, to compare out of band.
    pub async fn verify(&self, name: ContactName) -> Result<SafetyNumber, ClientError> {
        self.client
            .with_book(false, move |book| {
                verify_named(book, &name).map_err(into_client)
            })
            .await
    }

    /// The short address named `name`, to send to.
    pub async fn get(&self, name: ContactName) -> Result<ShortAddress, ClientError> {
        self.client
            .with_book(false, move |book| book.named(&name).map_err(into_client))
            .await
    }

    /// The name of the contact with identity `peer`.
    pub async fn name_of(&self, peer: PeerIdentityKey) -> Result<Option<ContactName>, ClientError> {
        self.client
            .with_book(false, move |book| Ok(book.name_of(&peer).cloned()))
            .await
    }
}

fn into_client(e: ContactError) -> ClientError {
    ClientError::from(client_core::sessions::SessionBookError::from(e))
}
