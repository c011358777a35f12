//! Closed admission's files in the gateway's data folder: the invites the
//! operator issued, the ones used, and the revoked clients.
//!
//! ```text
//! D/invites        one hex SHA-256 digest per line (`gateway invite` appends)
//! D/invites.used   digests of invites a client used (the gateway appends, synced)
//! D/revoked        one client key per line, base58 (`gateway revoke` appends)
//! ```
//!
//! Files, not the mailbox database: the running gateway holds that one
//! open, and the operator's commands must work beside it. The gateway
//! reads the files again when they change. Only digests are kept, so the
//! list does not hold usable codes; the codes go to the people invited,
//! over whatever channel the organization trusts. What the gateway learns
//! from an invite: that the key that used it is the person it was given
//! to (closed admission is for an organization's own people); nothing
//! about whom they write to.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use gateway_core::invite_digest;
use gateway_core::mailbox::ClientKey;
use protocol::link::INVITE_LEN;
use rand::CryptoRng;

const INVITES: &str = "invites";
const USED: &str = "invites.used";
const REVOKED: &str = "revoked";

/// Why an enrollment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A client key that is not base58 of 32 bytes.
    #[error("{0:?} is not a client key (base58 of 32 bytes, or an address KEY@GATEWAY)")]
    BadClientKey(String),
}

/// What the files say now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Digests of invites issued and not used.
    pub unused: HashSet<[u8; 32]>,
    /// Revoked client keys.
    pub revoked: HashSet<ClientKey>,
}

/// The enrollment files of one data folder.
#[derive(Debug, Clone)]
pub struct EnrollmentFiles {
    dir: PathBuf,
    seen: Option<(Option<SystemTime>, Option<SystemTime>)>,
}

impl EnrollmentFiles {
    /// The files of data folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EnrollmentFiles {
            dir: dir.into(),
            seen: None,
        }
    }

    /// Issues `count` new invites: their digests are appended to
    /// `invites`; the codes (base58) are returned, to hand out once each.
    pub fn issue(
        &self,
        count: usize,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<String>, EnrollmentError> {
        let mut codes = Vec::with_capacity(count);
        let mut lines = String::new();
        for _ in 0..count {
            let mut code = [0u8; INVITE_LEN];
            rng.fill_bytes(&mut code);
            lines.push_str(&hex::encode(invite_digest(&code)));
            lines.push('\n');
            codes.push(bs58::encode(code).into_string());
        }
        self.append(INVITES, &lines)?;
        Ok(codes)
    }

    /// Revokes the client `key` (base58, or an address `KEY@GATEWAY`).
    pub fn revoke(&self, key: &str) -> Result<ClientKey, EnrollmentError> {
        let client = parse_key(key).ok_or_else(|| EnrollmentError::BadClientKey(key.into()))?;
        self.append(
            REVOKED,
            &format!("{}\n", bs58::encode(client).into_string()),
        )?;
        Ok(client)
    }

    /// Records invites used (synced to disk before the call returns).
    pub fn record_used(&self, digests: &[[u8; 32]]) -> Result<(), EnrollmentError> {
        if digests.is_empty() {
            return Ok(());
        }
        let lines: String = digests.iter().map(|d| hex::encode(d) + "\n").collect();
        self.append(USED, &lines)
    }

    /// What the files say, when `invites` or `revoked` changed since the
    /// last call (always on the first); unreadable lines are skipped.
    pub fn reload_if_changed(&mut self) -> Result<Option<Admission>, EnrollmentError> {
        let stamp = (self.modified(INVITES), self.modified(REVOKED));
        if self.seen == Some(stamp) {
            return Ok(None);
        }
        self.seen = Some(stamp);
        let used: HashSet<[u8; 32]> = self.lines(USED)?.iter().filter_map(|l| digest(l)).collect();
        let unused = self
            .lines(INVITES)?
            .iter()
            .filter_map(|l| digest(l))
            .filter(|d| !used.contains(d))
            .collect();
        let revoked = self
            .lines(REVOKED)?
            .iter()
            .filter_map(|l| parse_key(l))
            .collect();
        Ok(Some(Admission { unused, revoked }))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn modified(&self, name: &str) -> Option<SystemTime> {
        fs::metadata(self.path(name))
            .and_then(|m| m.modified())
            .ok()
    }

    fn lines(&self, name: &str) -> Result<Vec<String>, EnrollmentError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(|l| l.trim().to_string()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(EnrollmentError::Io { path, source }),
        }
    }

    fn append(&self, name: &str, text: &str) -> Result<(), EnrollmentError> {
        let path = self.path(name);
        let io = |source| EnrollmentError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

fn digest(line: &str) -> Option<[u8; 32]> {
    hex::decode(line).ok()?.try_into().ok()
}

fn parse_key(text: &str) -> Option<ClientKey> {
    let key = text.trim().split('@').next()?;
    bs58::decode(key).into_vec().ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rand::SeedableRng;

    #[test]
    fn issued_invites_are_unused_until_recorded_and_revocations_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = EnrollmentFiles::new(dir.path());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        assert_eq!(
            files.reload_if_changed().unwrap(),
            Some(Admission::default())
        );
        assert_eq!(files.reload_if_changed().unwrap(), None, "nothing changed");
        let codes = files.issue(3, &mut rng).unwrap();
        assert_eq!(codes.len(), 3);
        let code: [u8; 16] = bs58::decode(&codes[0])
            .into_vec()
            .unwrap()
            .try_into()
            .unwrap();
        // The file holds digests, never the codes.
        let stored = fs::read_to_string(dir.path().join(INVITES)).unwrap();
        assert!(!stored.contains(&codes[0]) && stored.lines().count() == 3);
        files.seen = None;
        let now = files.reload_if_changed().unwrap().unwrap();
        assert_eq!(now.unused.len(), 3);
        assert!(now.unused.contains(&invite_digest(&code)));
        files.record_used(&[invite_digest(&code)]).unwrap();
        let key = [7u8; 32];
        let address = format!("{}@gateway", bs58::encode(key).into_string());
        assert_eq!(files.revoke(&address).unwrap(), key);
        assert!(files.revoke("not a key").is_err());
        files.seen = None;
        let now = files.reload_if_changed().unwrap().unwrap();
        assert_eq!(now.unused.len(), 2);
        assert!(!now.unused.contains(&invite_digest(&code)));
        assert_eq!(now.revoked, HashSet::from([key]));
    }
}
