//! The gateway's entries in its node's audit log about clients: only that
//! its operator admitted (`client_enrolled`) or removed (`client_revoked`)
//! a client key, by the key's fingerprint.
//!
//! Nothing about what a client does is ever recorded — no session,
//! connection, packet, message or delivery, no time tied to its activity,
//! no address: the audit log must not tell who talks to whom, or when.
//! The running gateway's log is `Node::audit` (crate `nodeshell`).

use audit::{AuditError, AuditEvent, KeyFingerprint, SharedAuditLog};

/// Records that the client with key `client` was enrolled; returns the
/// record's `seq` once it is on disk.
pub fn client_enrolled(log: &SharedAuditLog, client: &KeyFingerprint) -> Result<u64, AuditError> {
    log.record(&AuditEvent::ClientEnrolled {
        client: client.clone(),
    })
}

/// Records that the client with key `client` was revoked; returns the
/// record's `seq` once it is on disk.
pub fn client_revoked(log: &SharedAuditLog, client: &KeyFingerprint) -> Result<u64, AuditError> {
    log.record(&AuditEvent::ClientRevoked {
        client: client.clone(),
    })
}

/// How a client's public key (the 32 bytes it authenticates with) appears
/// in the audit log.
pub fn client_fingerprint(public_key: &[u8; 32]) -> KeyFingerprint {
    KeyFingerprint::of_public_key(public_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit::AuditLog;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn enrolment_and_revocation_are_chained_records_of_the_fingerprint_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let clock: audit::AuditClock = Arc::new(|| UNIX_EPOCH + Duration::from_secs(1_750_000_000));
        let log = SharedAuditLog::new(AuditLog::open(&path, clock).unwrap());
        let key = [9u8; 32];
        let client = client_fingerprint(&key);
        assert_eq!(client_enrolled(&log, &client).unwrap(), 0);
        assert_eq!(client_revoked(&log, &client).unwrap(), 1);
        let verified = audit::verify_file(&path).unwrap();
        assert_eq!(verified.kinds.get("client_enrolled"), Some(&1));
        assert_eq!(verified.kinds.get("client_revoked"), Some(&1));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(client.as_str()));
        // Never the key itself.
        assert!(!text.contains(&hex::encode(key)), "{text}");
    }
}
