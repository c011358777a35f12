//! The administrative events a record can hold, and nothing else.
//!
//! Every field of every event is about the operator's own node: its
//! software, its config, its keys, the documents it signs, and which client
//! keys its operator admitted or removed. No event carries traffic
//! metadata — no packet, message, delivery, session or connection, no time
//! tied to a client's activity, no client address — and a new event must
//! not either: the audit log is read by people who must not learn who talks
//! to whom.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// An administrative event, as one audit record states it: the `event`
/// member names the kind, the others are its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The binary started.
    Start {
        /// `mixnode`, `gateway` or `directory`.
        binary: String,
        /// Its version.
        version: String,
        /// Its identity key.
        identity: KeyFingerprint,
    },
    /// The binary stopped cleanly (a crash leaves no `stop`).
    Stop,
    /// The binary read its config file.
    ConfigLoaded {
        /// The file's path, as given on the command line.
        path: String,
        /// SHA-256 of the file's bytes (hex): which config, not what it says.
        sha256: String,
    },
    /// A key was created.
    KeyCreated {
        /// Which key.
        key: KeyKind,
        /// Its public half's fingerprint.
        fingerprint: KeyFingerprint,
    },
    /// A node's Sphinx key changed with the epoch.
    KeyRotated {
        /// Which key.
        key: KeyKind,
        /// The epoch the key is current in.
        epoch: u64,
        /// Its public half's fingerprint.
        fingerprint: KeyFingerprint,
    },
    /// A directory authority signed and sent its vote for a round.
    VotePublished {
        /// The epoch voted on.
        epoch: u64,
        /// The revision of the epoch's document voted on.
        revision: u64,
    },
    /// A directory authority signed a topology (a consensus, or, as the only
    /// authority, the document it publishes alone).
    ConsensusSigned {
        /// The epoch of the document.
        epoch: u64,
        /// Its revision within the epoch.
        revision: u64,
    },
    /// A gateway's operator admitted a client key.
    ClientEnrolled {
        /// The client's key.
        client: KeyFingerprint,
    },
    /// A gateway's operator removed a client key.
    ClientRevoked {
        /// The client's key.
        client: KeyFingerprint,
    },
}

/// Which kind of key a key event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A node's or an authority's Ed25519 identity.
    Identity,
    /// A node's X25519 Sphinx key of one epoch.
    Sphinx,
}

/// How a key appears in the audit log: the SHA-256 of its public half, in
/// lowercase hex. Never made from a secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyFingerprint(String);

impl KeyFingerprint {
    /// The fingerprint of the public key `public`.
    pub fn of_public_key(public: &[u8]) -> Self {
        KeyFingerprint(sha256_hex(public))
    }

    /// The fingerprint as it appears in a record: 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl AuditEvent {
    /// The `event` member of its record.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Start { .. } => "start",
            AuditEvent::Stop => "stop",
            AuditEvent::ConfigLoaded { .. } => "config_loaded",
            AuditEvent::KeyCreated { .. } => "key_created",
            AuditEvent::KeyRotated { .. } => "key_rotated",
            AuditEvent::VotePublished { .. } => "vote_published",
            AuditEvent::ConsensusSigned { .. } => "consensus_signed",
            AuditEvent::ClientEnrolled { .. } => "client_enrolled",
            AuditEvent::ClientRevoked { .. } => "client_revoked",
        }
    }

    /// The event [`AuditEvent::ConfigLoaded`] for the config file at `path`
    /// whose bytes are `bytes`.
    pub fn config_loaded(path: &std::path::Path, bytes: &[u8]) -> Self {
        AuditEvent::ConfigLoaded {
            path: path.display().to_string(),
            sha256: sha256_hex(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_serializes_with_its_kind_first() {
        let fp = KeyFingerprint::of_public_key(&[7; 32]);
        let events = [
            AuditEvent::Start {
                binary: "mixnode".into(),
                version: "0.1.0".into(),
                identity: fp.clone(),
            },
            AuditEvent::Stop,
            AuditEvent::config_loaded(std::path::Path::new("/etc/n.toml"), b"x"),
            AuditEvent::KeyCreated {
                key: KeyKind::Identity,
                fingerprint: fp.clone(),
            },
            AuditEvent::KeyRotated {
                key: KeyKind::Sphinx,
                epoch: 3,
                fingerprint: fp.clone(),
            },
            AuditEvent::VotePublished {
                epoch: 4,
                revision: 0,
            },
            AuditEvent::ConsensusSigned {
                epoch: 4,
                revision: 1,
            },
            AuditEvent::ClientEnrolled { client: fp.clone() },
            AuditEvent::ClientRevoked { client: fp },
        ];
        for event in events {
            let json = serde_json::to_string(&event).unwrap();
            let start = format!("{{\"event\":\"{}\"", event.kind());
            assert!(json.starts_with(&start), "{json}");
        }
    }

    #[test]
    fn a_config_is_recorded_by_its_digest_only() {
        let event = AuditEvent::config_loaded(std::path::Path::new("n.toml"), b"secret = 1\n");
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert!(json.contains(&sha256_hex(b"secret = 1\n")), "{json}");
        assert_eq!(sha256_hex(b"").len(), 64);
    }
}
