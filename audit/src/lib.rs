#![doc = include_str!("../README.md")]

pub mod chain;
pub mod event;
pub mod file;
pub mod logging;

pub use chain::{ChainBreak, RecordProblem, Verified, VerifyError, verify};
pub use event::{AuditEvent, KeyFingerprint, KeyKind, sha256_hex};
pub use file::{AuditClock, AuditError, AuditLog, SharedAuditLog, verify_file};

/// The name of the audit log in a node's or an authority's data folder,
/// where it is kept unless the config names another file.
pub const DEFAULT_FILE_NAME: &str = "audit.jsonl";
