#![doc = include_str!("../README.md")]

pub mod core;
pub mod error;
pub mod mailbox;
pub mod prekeys;
pub mod source;
pub mod stats;
pub mod throttle;

pub use crate::core::{
    FinalHop, FinalHopReport, GatewayAction, GatewayConfig, GatewayCore, SessionId, invite_digest,
};
pub use error::MailboxError;
pub use mailbox::{
    Mailbox, MailboxConfig, MailboxId, MailboxStore, MemoryStore, NewMessage, RecallDeletion,
    RegistrationDay, StoredMessage,
};
pub use prekeys::{
    Fingerprint, MemoryPrekeyStore, OneTimeAdded, PrekeyStore, PrekeyTake, PublishOutcome,
};
pub use source::{SourceLimiter, SourceLimits, SourcePrefix, SourceRequest};
pub use stats::{
    GatewayDropReason, GatewayStats, GatewayStatsSnapshot, PrekeyRequestOutcome, PrekeyUploadKind,
    PrekeyUploadOutcome,
};
pub use throttle::{ThrottleConfig, TokenBucket};
