#![doc = include_str!("../README.md")]

pub mod error;

pub mod shell;

pub use client_core::ClientError;
pub use client_core::sessions::{AddressCard, PeerIdentityKey};
pub use client_core::{
    ClientConfig, ClientCore, ClientEvent, ReplyHandle, RouteSource, SendFailure,
};
pub use error::{DataFolderError, OpenError};
pub use shell::{Client, ClientOptions, Outgoing, ReceivedMessage, ReplyPath, SendStatus};
