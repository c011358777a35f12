//! The audit log on disk: appended record by record, each synced before
//! the call returns.
//!
//! [`AuditLog::open`] reads the whole existing file and checks its chain
//! first: a log that continues is one that verifies. A log that does not is
//! refused, naming the file and the first bad line, and nothing is written
//! to it: the operator keeps the evidence, moves it aside, and the binary
//! starts a new chain on its next start.

use std::io::{BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use thiserror::Error;

use crate::chain::{self, ChainBreak, EncodeError, Verified, VerifyError};
use crate::event::AuditEvent;

/// Where an audit log reads the time of its records.
pub type AuditClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What went wrong with an audit log; every message names the file.
#[derive(Debug, Error)]
pub enum AuditError {
    /// The file could not be opened, read, written or synced.
    #[error("{}: {action}: {reason}", path.display())]
    Io {
        /// The log.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// What the OS said.
        reason: std::io::Error,
    },
    /// The existing log does not verify.
    #[error("{}: {chain}", path.display())]
    Broken {
        /// The log.
        path: PathBuf,
        /// Its first bad line.
        chain: ChainBreak,
    },
    /// A record could not be encoded.
    #[error("{}: {reason}", path.display())]
    Encode {
        /// The log.
        path: PathBuf,
        /// Why.
        reason: EncodeError,
    },
}

impl AuditError {
    /// The first bad line, when the error is a broken chain.
    pub fn chain_break(&self) -> Option<&ChainBreak> {
        match self {
            AuditError::Broken { chain, .. } => Some(chain),
            _ => None,
        }
    }
}

/// Reads and verifies the log at `path`.
pub fn verify_file(path: &Path) -> Result<Verified, AuditError> {
    let file = std::fs::File::open(path).map_err(|reason| AuditError::Io {
        path: path.to_path_buf(),
        action: "cannot open",
        reason,
    })?;
    chain::verify(BufReader::new(file)).map_err(|e| match e {
        VerifyError::Read { reason } => AuditError::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            reason,
        },
        VerifyError::Broken(chain) => AuditError::Broken {
            path: path.to_path_buf(),
            chain,
        },
    })
}

/// An open audit log, ready to append to.
pub struct AuditLog {
    path: PathBuf,
    file: std::fs::File,
    next_seq: u64,
    prev: [u8; 32],
    clock: AuditClock,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log at `path` to append to, creating it (mode 0640, and
    /// its folder) if it does not exist; an existing log must verify, and
    /// the next record continues its chain. Records are stamped by `clock`.
    pub fn open(path: &Path, clock: AuditClock) -> Result<Self, AuditError> {
        let io = |action| {
            let path = path.to_path_buf();
            move |reason| AuditError::Io {
                path,
                action,
                reason,
            }
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io("cannot create its folder"))?;
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(io("cannot open"))?;
        if !existed {
            // A new file's name is durable once its folder is synced.
            std::fs::File::open(parent)
                .and_then(|folder| folder.sync_all())
                .map_err(io("cannot sync its folder"))?;
        }
        let verified = match chain::verify(BufReader::new(&file)) {
            Ok(v) => v,
            Err(VerifyError::Read { reason }) => return Err(io("cannot read")(reason)),
            Err(VerifyError::Broken(chain)) => {
                return Err(AuditError::Broken {
                    path: path.to_path_buf(),
                    chain,
                });
            }
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            next_seq: verified.records,
            prev: verified.last_line_hash,
            clock,
        })
    }

    /// Appends `event` as the next record and syncs it to disk; returns its
    /// `seq`. On an error nothing is counted as written.
    pub fn record(&mut self, event: &AuditEvent) -> Result<u64, AuditError> {
        let seq = self.next_seq;
        let line = chain::encode(seq, (self.clock)(), event, &self.prev).map_err(|reason| {
            AuditError::Encode {
                path: self.path.clone(),
                reason,
            }
        })?;
        let mut bytes = line.into_bytes();
        let hash = chain::line_hash(&bytes);
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|reason| AuditError::Io {
                path: self.path.clone(),
                action: "cannot append a record",
                reason,
            })?;
        self.next_seq = seq.saturating_add(1);
        self.prev = hash;
        Ok(seq)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `seq` the next record gets (the number of records so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// An [`AuditLog`] the tasks of a running binary share; each record is
/// written whole before the next begins.
#[derive(Clone, Debug)]
pub struct SharedAuditLog {
    log: Arc<Mutex<AuditLog>>,
    path: Arc<PathBuf>,
}

impl SharedAuditLog {
    /// Shares `log`.
    pub fn new(log: AuditLog) -> Self {
        let path = Arc::new(log.path().to_path_buf());
        SharedAuditLog {
            log: Arc::new(Mutex::new(log)),
            path,
        }
    }

    /// Appends `event` and syncs it (a blocking write: events are rare);
    /// returns its `seq`.
    pub fn record(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        // A task that panicked while holding the lock left the log as it
        // was before its record or after it: both are whole records.
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.record(event)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{KeyFingerprint, KeyKind};
    use std::time::{Duration, UNIX_EPOCH};

    fn clock() -> AuditClock {
        Arc::new(|| UNIX_EPOCH + Duration::from_secs(1_750_000_000))
    }

    fn rotated(epoch: u64) -> AuditEvent {
        AuditEvent::KeyRotated {
            key: KeyKind::Sphinx,
            epoch,
            fingerprint: KeyFingerprint::of_public_key(&epoch.to_le_bytes()),
        }
    }

    #[test]
    fn a_reopened_log_continues_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("audit.jsonl");
        let mut log = AuditLog::open(&path, clock()).unwrap();
        assert_eq!(log.record(&AuditEvent::Stop).unwrap(), 0);
        assert_eq!(log.record(&rotated(1)).unwrap(), 1);
        drop(log);
        let shared = SharedAuditLog::new(AuditLog::open(&path, clock()).unwrap());
        assert_eq!(shared.record(&rotated(2)).unwrap(), 2);
        assert_eq!(shared.record(&AuditEvent::Stop).unwrap(), 3);
        let v = verify_file(&path).unwrap();
        assert_eq!(v.records, 4);
        assert_eq!(v.kinds.get("stop"), Some(&2));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().nth(2).unwrap().starts_with("{\"seq\":2,"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        // 0640, or less under a stricter umask: never readable by others.
        assert_eq!(mode & 0o137, 0, "{mode:o}");
    }

    #[test]
    fn a_log_that_does_not_verify_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, clock()).unwrap();
        for epoch in 0..3 {
            log.record(&rotated(epoch)).unwrap();
        }
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("\"epoch\":1", "\"epoch\":7", 1);
        std::fs::write(&path, &edited).unwrap();
        let e = AuditLog::open(&path, clock()).unwrap_err();
        assert_eq!(e.chain_break().map(|b| b.line), Some(2));
        let message = e.to_string();
        assert!(message.contains("audit.jsonl: line 2:"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
        let e = verify_file(&path).unwrap_err();
        assert_eq!(e.chain_break().map(|b| b.line), Some(2));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = verify_file(Path::new("/nonexistent/audit.jsonl")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/audit.jsonl: cannot open"),
            "{e}"
        );
    }
}
