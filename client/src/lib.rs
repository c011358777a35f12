#![doc = include_str!("../README.md")]

pub mod core;
pub mod error;
pub mod sessions;
pub mod shell;

pub use crate::core::{ClientConfig, ClientCore, ClientEvent, ReplyHandle, RouteSource};
pub use error::{ClientError, DataFolderError, OpenError};
pub use sessions::{AddressCard, PeerIdentityKey};
pub use shell::{Client, ClientOptions, Outgoing, ReceivedMessage, ReplyPath, SendStatus};
