//! Errors of the local network.

use thiserror::Error;

/// What went wrong starting or running the local network.
#[derive(Debug, Error)]
pub enum LocalnetError {
    /// A binary could not be started.
    #[error("cannot start {0}: {1}")]
    Spawn(String, String),
    /// A one-shot command failed.
    #[error("{0} failed: {1}")]
    Failed(String, String),
    /// A node did not become ready.
    #[error("{0} did not become ready: {1}")]
    NotReady(String, String),
    /// A file could not be written.
    #[error("{0}: {1}")]
    Io(String, String),
    /// The network is being stopped: no process starts any more.
    #[error("stopping: no new process starts")]
    Stopping,
}
