#![doc = include_str!("../README.md")]

pub mod auth;
pub mod core;
pub mod error;
pub mod link;
pub mod mailbox;
pub mod redb_store;
pub mod remote;
pub mod stats;
pub mod throttle;

pub use crate::core::{GatewayAction, GatewayConfig, GatewayCore, SessionId};
pub use error::{LinkError, MailboxError};
pub use link::{ClientMessage, CloseReason, GatewayMessage, LinkDecoder, LinkMessage};
pub use mailbox::{
    Mailbox, MailboxConfig, MailboxId, MailboxStore, MemoryStore, NewMessage, StoredMessage,
};
pub use redb_store::RedbStore;
pub use stats::{GatewayDropReason, GatewayStats, GatewayStatsSnapshot};
pub use throttle::{ThrottleConfig, TokenBucket};
