//! Errors of the gateway core.

use thiserror::Error;

/// What failed in a mailbox store.
#[derive(Debug, Error, Clone)]
pub enum MailboxError {
    /// The database could not be opened, read or written.
    #[error("mailbox database: {0}")]
    Database(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be decoded (the file is corrupt or from another version).
    #[error("mailbox record is corrupt: {0}")]
    Corrupt(&'static str),
}

impl MailboxError {
    /// A failure of the database under a store, keeping its cause.
    pub fn database(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        MailboxError::Database(std::sync::Arc::new(cause))
    }
}
