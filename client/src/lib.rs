#![doc = include_str!("../README.md")]

pub mod contacts;
pub mod error;

pub mod shell;

pub mod streams;

pub use client_core::ClientError;
pub use client_core::sessions::{
    AddressCard, ContactName, NamedContact, PeerIdentityKey, Pseudonym, SafetyNumber, ShortAddress,
};
pub use client_core::{
    ClientConfig, ClientCore, ClientEvent, ReplyHandle, RouteSource, SendFailure,
};
pub use contacts::{Contacts, PeerAddress, PeerAddressError, Recipient};
pub use error::{DataFolderError, OpenError, PolicyError};
pub use shell::{
    Client, ClientOptions, Outgoing, RecalledMessage, ReceivedMessage, ReplyPath, SendStatus,
};
