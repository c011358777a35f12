//! What a node writes to its audit log, and when.
//!
//! The log (`[audit] log`, by default `audit.jsonl` in the data folder) is
//! opened before anything else at `run`: a log that does not verify stops
//! the node there, naming the file and the first bad line, and is left
//! untouched (the operator moves it aside to start a new one). Then:
//!
//! - `init` records `key_created` for the identity it wrote;
//! - `run` records `start` (binary, version, identity) and
//!   `config_loaded` (the config's path and SHA-256, never its content)
//!   before it serves — if it cannot, the node does not start —, and
//!   `stop` when it ends in order (a crash leaves none);
//! - each epoch, `key_rotated` with the fingerprint of the Sphinx key made
//!   current;
//! - a gateway adds `client_enrolled` and `client_revoked` (crate `gateway`).
//!
//! Only administrative events: no traffic metadata — no packet, message,
//! delivery, session or connection, no time tied to a client, no client
//! address — is ever written here. A record that cannot be written while
//! the node runs is an error in the operational log; the node keeps
//! running.

use std::path::Path;

use anyhow::{Context, Result};
use audit::{AuditEvent, AuditLog, KeyFingerprint, KeyKind, SharedAuditLog};
use protocol::keys::IdentityKeyPair;

use crate::clock::audit_clock;
use crate::config::NodeConfig;

/// Opens the node's audit log to append to; refuses one that does not verify.
pub fn open(config: &NodeConfig) -> Result<SharedAuditLog> {
    let path = config.audit_log();
    let log = AuditLog::open(&path, audit_clock()).context(
        "the audit log does not continue; keep it as evidence, move it aside, and start again to begin a new one",
    )?;
    Ok(SharedAuditLog::new(log))
}

/// Records `key_created` for a new identity in the default log of the
/// folder `dir` (where `init` writes the config that points there).
pub fn identity_created(dir: &Path, identity: &IdentityKeyPair) -> Result<()> {
    let mut log = AuditLog::open(&dir.join(audit::DEFAULT_FILE_NAME), audit_clock())?;
    log.record(&AuditEvent::KeyCreated {
        key: KeyKind::Identity,
        fingerprint: identity_fingerprint(identity),
    })?;
    Ok(())
}

/// The `start` event of `binary` with the identity `identity`.
pub fn started(binary: &str, identity: &IdentityKeyPair) -> AuditEvent {
    AuditEvent::Start {
        binary: binary.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        identity: identity_fingerprint(identity),
    }
}

/// How an identity key appears in the audit log.
pub fn identity_fingerprint(identity: &IdentityKeyPair) -> KeyFingerprint {
    KeyFingerprint::of_public_key(identity.node_id().as_bytes())
}

/// Records `event` in `log` while the node runs: a failure is logged as an
/// error, and the node goes on.
pub fn record(log: &SharedAuditLog, event: &AuditEvent) {
    if let Err(e) = log.record(event) {
        tracing::error!("audit log: cannot record `{}`: {e}", event.kind());
    }
}

/// `<binary> audit verify FILE`: prints how many records the log holds,
/// by kind, and its last line's hash; an error names the first bad line.
pub fn verify_command(path: &Path) -> Result<()> {
    let verified = audit::verify_file(path)?;
    println!("{}: {}", path.display(), verified.summary());
    Ok(())
}
