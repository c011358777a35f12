//! The client's data folder: its settings, its Sphinx key, its topology cache.
//!
//! ```text
//! D/client.toml     directory URL, pinned directory key, own gateway id, state_sealing
//! D/sphinx.key      the X25519 Sphinx secret key (mode 0600): 32 bytes in clear
//!                   with a key file; sealed like the book with a passphrase
//! D/topology.json   the last good signed topology (the directory client's cache)
//! D/state.key       the key that seals the session book (32 bytes, mode 0600;
//!                   absent when a passphrase seals it)
//! D/sessions.sealed the session book (identity, prekeys, sessions, contacts),
//!                   XChaCha20-Poly1305 under state.key or an Argon2id passphrase key
//! D/replies.sealed  the recoveries of the reply SURBs this client handed out
//!                   and can still read replies through (with the Unix second
//!                   they were saved), sealed like the book
//! D/partial/        fragments of messages and replies still being received
//!                   (the reassembly journal, `super::journal`; replies in it
//!                   sealed like the book)
//! D/client.lock     held (an advisory `flock`) by the one process running the
//!                   client; it holds that process's id, for the error a second
//!                   one gets
//! ```
//!
//! One process runs a client at a time ([`FolderLock`]). A gateway keeps one
//! session per client and a newer session replaces the older one, so two
//! processes of one folder would take the session from each other, each
//! redialling, and each receive the other's acknowledgements; and each keeps
//! the session book in memory, so the later save would undo the other's
//! changes. The kernel releases the lock when the process ends, however it
//! ends, so a crash leaves no stale lock behind.
//!
//! The address of the client is the Sphinx public key at the gateway, so
//! the key file is the client's identity: losing it loses the mailbox. With
//! a passphrase, every secret of the folder is sealed under the one key
//! derived from it (one Argon2id run opens the folder).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use e2ee::{PassphraseParams, SEALED_MAGIC, StateStore};
use protocol::{ClientAddress, NodeId, SphinxKeyPair};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::DataFolderError;
use client_core::sessions::{Restored, RotationSchedule, SessionBook};

const SETTINGS_FILE: &str = "client.toml";
const KEY_FILE: &str = "sphinx.key";
const TOPOLOGY_FILE: &str = "topology.json";
const STATE_KEY_FILE: &str = "state.key";
const SESSIONS_FILE: &str = "sessions.sealed";
const REPLIES_FILE: &str = "replies.sealed";
const LOCK_FILE: &str = "client.lock";
/// Length of the Sphinx secret key in clear.
const SPHINX_SECRET_LEN: usize = 32;

/// What seals the session book (and, with a passphrase, the Sphinx key) at rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateSealing {
    /// A random key in `state.key` (mode 0600) beside the book; the Sphinx
    /// key stays in clear (mode 0600), as a key beside it would protect nothing.
    #[default]
    KeyFile,
    /// A key derived with Argon2id from a passphrase the user gives at each
    /// start; it seals the session book and the Sphinx key.
    Passphrase,
    /// Two factors: a random device key in `state.key` (mode 0600) joined
    /// with the passphrase's Argon2id key; both are needed to open the book
    /// and the Sphinx key, so a stolen device without the passphrase, or a
    /// stolen backup without `state.key`, opens nothing.
    KeyFileAndPassphrase,
}

/// A passphrase that unlocks the data folder; wiped on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps `text`.
    pub fn new(text: String) -> Self {
        Passphrase(Zeroizing::new(text))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Reply SURB recoveries read back from their file.
pub struct SavedReplies {
    /// When they were saved.
    pub saved_at: e2ee::UnixSeconds,
    /// What `ClientCore::reply_surbs_to_bytes` wrote.
    pub recoveries: Zeroizing<Vec<u8>>,
}

/// The sealed session book file, the reply SURBs' file beside it, and the
/// key that seals both.
pub struct BookFile {
    path: PathBuf,
    replies_path: PathBuf,
    store: StateStore,
}

impl std::fmt::Debug for BookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BookFile({})", self.path.display())
    }
}

impl BookFile {
    /// Seals `book` and replaces the file with it (atomically, fsynced).
    pub fn save(
        &self,
        rng: &mut impl CryptoRng,
        book: &SessionBook,
    ) -> Result<(), DataFolderError> {
        let bad = |reason: String| DataFolderError::BadField {
            path: self.path.clone(),
            field: "(sessions)",
            reason,
        };
        let bytes = book.to_bytes().map_err(|e| bad(e.to_string()))?;
        let sealed = self
            .store
            .seal_bytes(rng, &bytes)
            .map_err(|e| bad(e.to_string()))?;
        write_atomic(&self.path, &sealed, 0o600)
    }

    /// Seals the reply SURBs' recoveries (`ClientCore::reply_surbs_to_bytes`),
    /// with the Unix second `saved_at`, and replaces their file (atomically,
    /// fsynced).
    pub fn save_replies(
        &self,
        rng: &mut impl CryptoRng,
        saved_at: e2ee::UnixSeconds,
        recoveries: &[u8],
    ) -> Result<(), DataFolderError> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(8 + recoveries.len()));
        bytes.extend_from_slice(&saved_at.0.to_be_bytes());
        bytes.extend_from_slice(recoveries);
        let sealed = self
            .store
            .seal_bytes(rng, &bytes)
            .map_err(|e| self.replies_error(e.to_string()))?;
        write_atomic(&self.replies_path, &sealed, 0o600)
    }

    /// The reply SURBs' recoveries last saved, if there is a file.
    pub fn load_replies(&self) -> Result<Option<SavedReplies>, DataFolderError> {
        let Some(sealed) = read_optional(&self.replies_path)? else {
            return Ok(None);
        };
        let bytes = self
            .store
            .open_bytes(&sealed)
            .map_err(|e| self.replies_error(e.to_string()))?;
        let (saved_at, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| self.replies_error("cut short".into()))?;
        Ok(Some(SavedReplies {
            saved_at: e2ee::UnixSeconds(u64::from_be_bytes(*saved_at)),
            recoveries: Zeroizing::new(rest.to_vec()),
        }))
    }

    /// Seals a reply's frame for the reassembly journal, under the key that
    /// seals the book (no gateway sees its fragment header or SURB-ack).
    pub fn seal_reply(
        &self,
        rng: &mut impl CryptoRng,
        frame: &[u8],
    ) -> Result<Vec<u8>, e2ee::SessionError> {
        self.store.seal_bytes(rng, frame)
    }

    /// Opens a reply's frame [`BookFile::seal_reply`] sealed; refuses a
    /// wrong key and any tampering.
    pub fn open_reply(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, e2ee::SessionError> {
        self.store.open_bytes(sealed)
    }

    fn replies_error(&self, reason: String) -> DataFolderError {
        DataFolderError::BadField {
            path: self.replies_path.clone(),
            field: "(reply SURBs)",
            reason,
        }
    }
}

/// What `client.toml` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSettings {
    /// Base URL of the directory, e.g. `http://127.0.0.1:8080`.
    pub directory_url: String,
    /// The pinned directory key (base58).
    pub directory_key: String,
    /// The directory authorities, when there are several (then they replace
    /// `directory_url` and `directory_key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<topology::Authority>,
    /// Signatures of `authorities` a topology needs (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_threshold: Option<usize>,
    /// The id of this client's gateway (base58).
    pub gateway: String,
    /// What seals the session book: `key_file` (default) or `passphrase`.
    #[serde(default)]
    pub state_sealing: StateSealing,
    /// Regions every route must stay inside (data residency); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_regions: Vec<String>,
    /// The region label of the gateway when the folder was made (shown to
    /// the user; routes follow the topology's labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_region: Option<String>,
    /// Seconds the prekeys (and so the address card) are current before
    /// they rotate; absent: 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prekey_rotation_secs: Option<u64>,
    /// Seconds retired prekeys are kept after a rotation, so that first
    /// messages made from the previous card still open; absent: 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prekey_grace_secs: Option<u64>,
}

impl StoredSettings {
    /// Reads `client.toml` of `folder` from its text, and checks its keys,
    /// its authority set and its gateway id.
    pub fn parse(folder: &DataFolder, text: &str) -> Result<StoredSettings, DataFolderError> {
        let settings: StoredSettings =
            toml::from_str(text).map_err(|e| DataFolderError::BadField {
                path: folder.settings_path(),
                field: "(file)",
                reason: e.message().to_string(),
            })?;
        settings.authority_set(folder)?;
        settings.gateway(folder)?;
        Ok(settings)
    }

    /// The text of `client.toml` for these settings.
    pub fn to_toml(&self, folder: &DataFolder) -> Result<String, DataFolderError> {
        let text = toml::to_string(self).map_err(|e| DataFolderError::BadField {
            path: folder.settings_path(),
            field: "(all)",
            reason: e.to_string(),
        })?;
        Ok(format!(
            "# mixnet-client settings (written by `mixnet-client init`)\n{text}"
        ))
    }

    /// The pinned directory key.
    pub fn directory_key(&self, folder: &DataFolder) -> Result<NodeId, DataFolderError> {
        NodeId::from_base58(&self.directory_key).map_err(|e| DataFolderError::BadField {
            path: folder.settings_path(),
            field: "directory_key",
            reason: e.to_string(),
        })
    }

    /// The pinned authority set: the one directory, or the listed authorities.
    pub fn authority_set(
        &self,
        folder: &DataFolder,
    ) -> Result<topology::AuthoritySet, DataFolderError> {
        if self.authorities.is_empty() {
            let key = self.directory_key(folder)?;
            return Ok(topology::AuthoritySet::single(key, &self.directory_url));
        }
        topology::AuthoritySet::new(self.authorities.clone(), self.authority_threshold).map_err(
            |e| DataFolderError::BadField {
                path: folder.settings_path(),
                field: "authorities",
                reason: e.to_string(),
            },
        )
    }

    /// The prekey rotation schedule of these settings (7 days each by default).
    pub fn rotation_schedule(&self) -> RotationSchedule {
        let default = RotationSchedule::DEFAULT;
        RotationSchedule {
            period: self
                .prekey_rotation_secs
                .map_or(default.period, std::time::Duration::from_secs),
            grace: self
                .prekey_grace_secs
                .map_or(default.grace, std::time::Duration::from_secs),
        }
    }

    /// The gateway id.
    pub fn gateway(&self, folder: &DataFolder) -> Result<NodeId, DataFolderError> {
        NodeId::from_base58(&self.gateway).map_err(|e| DataFolderError::BadField {
            path: folder.settings_path(),
            field: "gateway",
            reason: e.to_string(),
        })
    }
}

/// Everything secret in a data folder, opened: what a client runs on.
pub struct UnlockedFolder {
    /// The settings.
    pub settings: StoredSettings,
    /// The Sphinx key pair (the client's address at its gateway).
    pub keys: SphinxKeyPair,
    /// The session book.
    pub book: SessionBook,
    /// Where the book is sealed after each change.
    pub book_file: BookFile,
    gateway: NodeId,
}

impl UnlockedFolder {
    /// The client's address: its Sphinx public key at its gateway.
    pub fn address(&self) -> ClientAddress {
        ClientAddress {
            client_key: self.keys.public().to_bytes(),
            gateway: self.gateway,
        }
    }
}

impl std::fmt::Debug for UnlockedFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnlockedFolder")
            .field("address", &self.address())
            .field("book", &self.book)
            .finish_non_exhaustive()
    }
}

/// The claim of one process on a data folder: while it lives no other
/// [`DataFolder::lock`] of the folder succeeds, in this process or another.
#[derive(Debug)]
pub struct FolderLock {
    _file: fs::File,
}

/// A client's data folder.
#[derive(Clone, Debug)]
pub struct DataFolder {
    path: PathBuf,
}

fn io_error(path: &Path, e: std::io::Error) -> DataFolderError {
    DataFolderError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads `path`, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, DataFolderError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

impl DataFolder {
    /// The folder at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataFolder { path: path.into() }
    }

    /// Path of `client.toml`.
    pub fn settings_path(&self) -> PathBuf {
        self.path.join(SETTINGS_FILE)
    }

    /// Path of the key file.
    pub fn key_path(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    /// Path of the topology cache.
    pub fn topology_path(&self) -> PathBuf {
        self.path.join(TOPOLOGY_FILE)
    }

    /// Path of the key that seals the session book.
    pub fn state_key_path(&self) -> PathBuf {
        self.path.join(STATE_KEY_FILE)
    }

    /// Path of the sealed session book.
    pub fn sessions_path(&self) -> PathBuf {
        self.path.join(SESSIONS_FILE)
    }

    /// Path of the sealed reply SURBs' recoveries.
    pub fn replies_path(&self) -> PathBuf {
        self.path.join(REPLIES_FILE)
    }

    /// Path of the lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.path.join(LOCK_FILE)
    }

    /// Claims the folder for this process, or fails at once with
    /// [`DataFolderError::InUse`] (naming the holder's process id) when
    /// another claim on it lives.
    pub fn lock(&self) -> Result<FolderLock, DataFolderError> {
        // Only a client's folder is claimed: a mistyped `--dir` is told by
        // the settings file it lacks, and no lock file is left in it.
        let settings = self.settings_path();
        fs::metadata(&settings).map_err(|e| io_error(&settings, e))?;
        let path = self.lock_path();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok());
                return Err(DataFolderError::InUse {
                    path: self.path.clone(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|e| io_error(&path, e))?;
        Ok(FolderLock { _file: file })
    }

    /// Creates the folder with `settings`, the Sphinx key `keys` and a new
    /// session book (new identity and prekeys), all sealed as
    /// `settings.state_sealing` says: with a passphrase, `passphrase` seals
    /// the Sphinx key and the book; otherwise a new `state.key` seals the
    /// book. Refuses to overwrite an existing key.
    pub fn init(
        &self,
        rng: &mut impl CryptoRng,
        settings: &StoredSettings,
        keys: &SphinxKeyPair,
        passphrase: Option<&Passphrase>,
    ) -> Result<UnlockedFolder, DataFolderError> {
        let key_path = self.key_path();
        if key_path.exists() || self.sessions_path().exists() {
            return Err(DataFolderError::Exists { path: key_path });
        }
        let gateway = settings.gateway(self)?;
        fs::create_dir_all(&self.path).map_err(|e| io_error(&self.path, e))?;
        let store = match settings.state_sealing {
            StateSealing::KeyFile => {
                let mut key = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(key.as_mut_slice());
                write_atomic(&self.state_key_path(), key.as_slice(), 0o600)?;
                write_atomic(&key_path, keys.secret_bytes().as_slice(), 0o600)?;
                self.raw_store(*key)?
            }
            StateSealing::Passphrase => {
                let phrase = self.required(passphrase)?;
                let store = StateStore::create_with_passphrase(
                    rng,
                    phrase.0.as_bytes(),
                    PassphraseParams::default(),
                )
                .map_err(|e| self.sealed_error(&self.sessions_path(), e.to_string()))?;
                self.write_sealed_key(rng, &store, keys)?;
                store
            }
            StateSealing::KeyFileAndPassphrase => {
                let phrase = self.required(passphrase)?;
                let mut device = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(device.as_mut_slice());
                write_atomic(&self.state_key_path(), device.as_slice(), 0o600)?;
                let store = StateStore::create_two_factor(
                    rng,
                    &device,
                    phrase.0.as_bytes(),
                    PassphraseParams::default(),
                )
                .map_err(|e| self.sealed_error(&self.sessions_path(), e.to_string()))?;
                self.write_sealed_key(rng, &store, keys)?;
                store
            }
        };
        let text = settings.to_toml(self)?;
        write_atomic(&self.settings_path(), text.as_bytes(), 0o644)?;
        let book_file = BookFile {
            path: self.sessions_path(),
            replies_path: self.replies_path(),
            store,
        };
        let book = new_book(rng, settings);
        book_file.save(rng, &book)?;
        Ok(UnlockedFolder {
            settings: settings.clone(),
            keys: keys.clone(),
            book,
            book_file,
            gateway,
        })
    }

    /// Reads the settings (no secret).
    pub fn settings(&self) -> Result<StoredSettings, DataFolderError> {
        let path = self.settings_path();
        let text = fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        StoredSettings::parse(self, &text)
    }

    /// Opens every secret of the folder: the Sphinx key and the session
    /// book, with `state.key` or `passphrase` as `client.toml` says. A book
    /// or key that does not open (wrong passphrase or key, tampering) is an
    /// error, never replaced.
    ///
    /// Older folders are brought up to date: with a passphrase, a Sphinx key
    /// stored in clear (before this version sealed it) is sealed, and the
    /// clear file overwritten; a session book of format 1 keeps its identity
    /// and prekeys but loses its sessions and contacts (their format
    /// changed). Both are logged as warnings.
    pub fn unlock(
        &self,
        rng: &mut impl CryptoRng,
        passphrase: Option<&Passphrase>,
    ) -> Result<UnlockedFolder, DataFolderError> {
        let settings = self.settings()?;
        let gateway = settings.gateway(self)?;
        let key_path = self.key_path();
        let key_bytes = Zeroizing::new(fs::read(&key_path).map_err(|e| io_error(&key_path, e))?);
        let sessions_path = self.sessions_path();
        let sealed_book = read_optional(&sessions_path)?;
        let key_is_sealed = key_bytes.starts_with(&SEALED_MAGIC);
        let (store, keys) = match settings.state_sealing {
            StateSealing::KeyFile => {
                if key_is_sealed {
                    return Err(DataFolderError::BadField {
                        path: key_path,
                        field: "(key)",
                        reason: "sealed with a passphrase, but client.toml says \
                                 state_sealing = \"key_file\""
                            .into(),
                    });
                }
                let state_key_path = self.state_key_path();
                let state_key = match read_optional(&state_key_path)? {
                    Some(bytes) => Zeroizing::new(bytes),
                    None if sealed_book.is_none() => {
                        let mut key = Zeroizing::new(vec![0u8; 32]);
                        rng.fill_bytes(&mut key);
                        write_atomic(&state_key_path, &key, 0o600)?;
                        key
                    }
                    None => {
                        return Err(io_error(
                            &state_key_path,
                            std::io::ErrorKind::NotFound.into(),
                        ));
                    }
                };
                let state_key = <[u8; 32]>::try_from(state_key.as_slice()).map_err(|_| {
                    DataFolderError::BadField {
                        path: state_key_path.clone(),
                        field: "(key)",
                        reason: format!("{} bytes, expected 32", state_key.len()),
                    }
                })?;
                (self.raw_store(state_key)?, self.clear_key(&key_bytes)?)
            }
            StateSealing::Passphrase => {
                let phrase = self.required(passphrase)?.0.as_bytes();
                // The parameters and salt are in any file sealed with the passphrase.
                let store = match (&sealed_book, key_is_sealed) {
                    (Some(sealed), _) => StateStore::unlock_with_passphrase(phrase, sealed),
                    (None, true) => StateStore::unlock_with_passphrase(phrase, &key_bytes),
                    (None, false) => {
                        StateStore::create_with_passphrase(rng, phrase, PassphraseParams::default())
                    }
                }
                .map_err(|e| self.sealed_error(&sessions_path, e.to_string()))?;
                let keys = if key_is_sealed {
                    let secret = store.open_bytes(&key_bytes).map_err(|e| {
                        self.sealed_error(
                            &key_path,
                            format!("{e} (wrong passphrase, or a damaged file)"),
                        )
                    })?;
                    self.clear_key(&secret)?
                } else {
                    // Written in clear by a version that did not seal it: seal it now.
                    let keys = self.clear_key(&key_bytes)?;
                    self.write_sealed_key(rng, &store, &keys)?;
                    tracing::warn!(
                        "{}: the Sphinx key was stored in clear; it is now sealed with the passphrase",
                        key_path.display()
                    );
                    keys
                };
                (store, keys)
            }
            StateSealing::KeyFileAndPassphrase => {
                let phrase = self.required(passphrase)?.0.as_bytes();
                let state_key_path = self.state_key_path();
                let device = match read_optional(&state_key_path)? {
                    Some(bytes) => Zeroizing::new(bytes),
                    None => {
                        return Err(DataFolderError::BadField {
                            path: state_key_path,
                            field: "(key)",
                            reason: "missing: this folder opens only with both this device \
                                     key file and the passphrase"
                                .into(),
                        });
                    }
                };
                let device = <[u8; 32]>::try_from(device.as_slice())
                    .map(Zeroizing::new)
                    .map_err(|_| DataFolderError::BadField {
                        path: state_key_path.clone(),
                        field: "(key)",
                        reason: format!("{} bytes, expected 32", device.len()),
                    })?;
                let sealed = sealed_book.as_deref().unwrap_or(&key_bytes);
                let store = StateStore::unlock_two_factor(&device, phrase, sealed)
                    .map_err(|e| self.sealed_error(&sessions_path, e.to_string()))?;
                let secret = store.open_bytes(&key_bytes).map_err(|e| {
                    self.sealed_error(
                        &key_path,
                        format!(
                            "{e} (a wrong passphrase or device key file, or a damaged file: \
                             both factors are needed)"
                        ),
                    )
                })?;
                (store, self.clear_key(&secret)?)
            }
        };
        let book_file = BookFile {
            path: sessions_path.clone(),
            replies_path: self.replies_path(),
            store,
        };
        let book = match sealed_book {
            Some(sealed) => {
                let bytes = book_file.store.open_bytes(&sealed).map_err(|e| {
                    self.sealed_error(
                        &sessions_path,
                        format!("{e} (wrong key or passphrase, or a damaged file)"),
                    )
                })?;
                let (book, restored) = SessionBook::restore(&bytes)
                    .map_err(|e| self.sealed_error(&sessions_path, e.to_string()))?;
                let upgrade = match restored {
                    Restored::Current => None,
                    Restored::UpgradedFromFormat1 => {
                        tracing::warn!(
                            "{}: a session book of format 1: identity and prekeys kept, \
                             sessions and contacts dropped (add your contacts' cards again)",
                            sessions_path.display()
                        );
                        Some(())
                    }
                    Restored::UpgradedFromFormat2 | Restored::UpgradedFromFormat3 => {
                        tracing::info!(
                            "{}: a session book of an older format brought to format 5 (named \
                             contacts, prekey rotation, recall records, one-time prekeys); its \
                             prekeys retire at the next start",
                            sessions_path.display()
                        );
                        Some(())
                    }
                    Restored::UpgradedFromFormat4 => {
                        tracing::info!(
                            "{}: a session book of format 4 brought to format 5 (one-time prekeys)",
                            sessions_path.display()
                        );
                        Some(())
                    }
                };
                if upgrade.is_some() {
                    book_file.save(rng, &book)?;
                }
                book
            }
            None => {
                let book = new_book(rng, &settings);
                book_file.save(rng, &book)?;
                book
            }
        };
        Ok(UnlockedFolder {
            settings,
            keys,
            book,
            book_file,
            gateway,
        })
    }

    fn required<'a>(
        &self,
        passphrase: Option<&'a Passphrase>,
    ) -> Result<&'a Passphrase, DataFolderError> {
        passphrase.ok_or_else(|| DataFolderError::BadField {
            path: self.settings_path(),
            field: "state_sealing",
            reason: "the folder is sealed with a passphrase and none was given".into(),
        })
    }

    fn raw_store(&self, key: [u8; 32]) -> Result<StateStore, DataFolderError> {
        StateStore::from_raw_key(key)
            .map_err(|e| self.sealed_error(&self.state_key_path(), e.to_string()))
    }

    fn sealed_error(&self, path: &Path, reason: String) -> DataFolderError {
        let field = if path == self.key_path() {
            "(key)"
        } else {
            "(sessions)"
        };
        DataFolderError::BadField {
            path: path.to_path_buf(),
            field,
            reason,
        }
    }

    /// The Sphinx key pair from its 32 secret bytes.
    fn clear_key(&self, bytes: &[u8]) -> Result<SphinxKeyPair, DataFolderError> {
        let secret =
            <[u8; SPHINX_SECRET_LEN]>::try_from(bytes).map_err(|_| DataFolderError::BadField {
                path: self.key_path(),
                field: "(key)",
                reason: format!("{} bytes, expected {SPHINX_SECRET_LEN}", bytes.len()),
            })?;
        Ok(SphinxKeyPair::from_secret_bytes(secret))
    }

    /// Seals the Sphinx secret key with `store` into the key file; a clear
    /// key file there is overwritten with zeros first (best effort: a
    /// copy-on-write file system may keep the old blocks).
    fn write_sealed_key(
        &self,
        rng: &mut impl CryptoRng,
        store: &StateStore,
        keys: &SphinxKeyPair,
    ) -> Result<(), DataFolderError> {
        let path = self.key_path();
        let sealed = store
            .seal_bytes(rng, keys.secret_bytes().as_slice())
            .map_err(|e| self.sealed_error(&path, e.to_string()))?;
        if let Ok(mut old) = fs::OpenOptions::new().write(true).open(&path) {
            let _ = old.write_all(&[0u8; SPHINX_SECRET_LEN]);
            let _ = old.sync_all();
        }
        write_atomic(&path, &sealed, 0o600)
    }
}

/// A new session book made now, its prekeys on the schedule of `settings`.
fn new_book(rng: &mut impl CryptoRng, settings: &StoredSettings) -> SessionBook {
    SessionBook::generate_at(rng, super::clock::unix_now(), &settings.rotation_schedule())
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, with
/// permissions `mode` from creation on.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DataFolderError> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
    file.sync_all().map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn settings(sealing: StateSealing) -> StoredSettings {
        StoredSettings {
            directory_url: "http://127.0.0.1:1".into(),
            directory_key: NodeId([7; 32]).to_base58(),
            authorities: Vec::new(),
            authority_threshold: None,
            gateway: NodeId([9; 32]).to_base58(),
            state_sealing: sealing,
            route_regions: Vec::new(),
            mailbox_region: None,
            prekey_rotation_secs: None,
            prekey_grace_secs: None,
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_folder_is_held_by_one_claim_at_a_time_and_freed_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        let missing = folder.lock().unwrap_err().to_string();
        assert!(missing.contains("client.toml"), "{missing}");
        assert!(!folder.lock_path().exists());
        fs::write(folder.settings_path(), "").unwrap();
        let held = folder.lock().unwrap();
        // A second claim, even from this process, is refused at once and
        // names the holder.
        match folder.lock() {
            Err(DataFolderError::InUse { path, holder }) => {
                assert_eq!(path, dir.path());
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("a second claim got {other:?}"),
        }
        let text = DataFolder::new(dir.path()).lock().unwrap_err().to_string();
        assert!(
            text.contains(&format!("(process {})", std::process::id())),
            "{text}"
        );
        drop(held);
        // The lock file stays behind, and does not stop the next claim.
        assert!(folder.lock_path().exists());
        let again = folder.lock().unwrap();
        drop(again);
    }

    #[test]
    fn init_then_unlock_round_trips_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path().join("c"));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let keys = SphinxKeyPair::generate(&mut rng);
        let settings = settings(StateSealing::KeyFile);
        let created = folder.init(&mut rng, &settings, &keys, None).unwrap();
        let opened = folder.unlock(&mut rng, None).unwrap();
        assert_eq!(opened.settings, settings);
        assert_eq!(opened.keys.public(), keys.public());
        assert_eq!(opened.address(), created.address());
        assert_eq!(opened.address().gateway, NodeId([9; 32]));
        assert_eq!(opened.book.identity(), created.book.identity());
        #[cfg(unix)]
        for path in [
            folder.key_path(),
            folder.state_key_path(),
            folder.sessions_path(),
        ] {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        assert!(matches!(
            folder.init(&mut rng, &settings, &keys, None),
            Err(DataFolderError::Exists { .. })
        ));
    }

    #[test]
    fn two_factors_open_the_folder_together_and_neither_alone() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path().join("laptop"));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let keys = SphinxKeyPair::generate(&mut rng);
        let right = Passphrase::new("correct horse".into());
        let sealing = settings(StateSealing::KeyFileAndPassphrase);
        let created = folder
            .init(&mut rng, &sealing, &keys, Some(&right))
            .unwrap();
        // Nothing secret in clear: the Sphinx key and the book are sealed.
        let key_file = fs::read(folder.key_path()).unwrap();
        assert!(key_file.starts_with(&SEALED_MAGIC));
        assert!(
            !key_file
                .windows(32)
                .any(|w| w == keys.secret_bytes().as_slice())
        );
        #[cfg(unix)]
        assert_eq!(mode(&folder.state_key_path()), 0o600);

        // Both factors: the folder opens.
        let opened = folder.unlock(&mut rng, Some(&right)).unwrap();
        assert_eq!(opened.address(), created.address());
        assert_eq!(opened.book.identity(), created.book.identity());

        // The device without the passphrase (a stolen laptop).
        let wrong = Passphrase::new("battery staple".into());
        let err = folder
            .unlock(&mut rng, Some(&wrong))
            .unwrap_err()
            .to_string();
        assert!(err.contains("both factors"), "{err}");
        assert!(folder.unlock(&mut rng, None).is_err());

        // A backup without the device key file, with the right passphrase.
        let backup = DataFolder::new(dir.path().join("backup"));
        fs::create_dir_all(dir.path().join("backup")).unwrap();
        for name in [SETTINGS_FILE, KEY_FILE, SESSIONS_FILE] {
            fs::copy(
                dir.path().join("laptop").join(name),
                dir.path().join("backup").join(name),
            )
            .unwrap();
        }
        let err = backup
            .unlock(&mut rng, Some(&right))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state.key") && err.contains("missing"),
            "{err}"
        );
        // ... or with another device's key file in its place.
        fs::write(backup.state_key_path(), [5u8; 32]).unwrap();
        let err = backup
            .unlock(&mut rng, Some(&right))
            .unwrap_err()
            .to_string();
        assert!(err.contains("both factors"), "{err}");
        // Restoring the device key file opens it again.
        fs::copy(folder.state_key_path(), backup.state_key_path()).unwrap();
        assert_eq!(
            backup.unlock(&mut rng, Some(&right)).unwrap().address(),
            created.address()
        );
    }

    #[test]
    fn the_session_book_is_refused_under_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let keys = SphinxKeyPair::generate(&mut rng);
        let book = folder
            .init(&mut rng, &settings(StateSealing::KeyFile), &keys, None)
            .unwrap()
            .book;
        let sealed = fs::read(folder.sessions_path()).unwrap();
        assert!(!sealed.windows(32).any(|w| w == book.identity().0.dh));
        fs::write(folder.state_key_path(), [9u8; 32]).unwrap();
        let err = folder.unlock(&mut rng, None).unwrap_err().to_string();
        assert!(err.contains("sessions.sealed"), "{err}");
    }

    #[test]
    fn with_a_passphrase_the_sphinx_key_is_sealed_like_the_book() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let keys = SphinxKeyPair::generate(&mut rng);
        let right = Passphrase::new("correct horse".into());
        let created = folder
            .init(
                &mut rng,
                &settings(StateSealing::Passphrase),
                &keys,
                Some(&right),
            )
            .unwrap();
        assert!(!folder.state_key_path().exists());
        let stored = fs::read(folder.key_path()).unwrap();
        assert!(stored.starts_with(&SEALED_MAGIC));
        assert!(
            !stored
                .windows(32)
                .any(|w| w == keys.secret_bytes().as_slice())
        );
        #[cfg(unix)]
        assert_eq!(mode(&folder.key_path()), 0o600);
        let opened = folder.unlock(&mut rng, Some(&right)).unwrap();
        assert_eq!(opened.keys.public(), keys.public());
        assert_eq!(opened.book.identity(), created.book.identity());
        let wrong = Passphrase::new("wrong".into());
        assert!(folder.unlock(&mut rng, Some(&wrong)).is_err());
        let none = folder.unlock(&mut rng, None).unwrap_err().to_string();
        assert!(none.contains("passphrase"), "{none}");
        // A sealed key under a folder that says key_file is refused, not read.
        let text = fs::read_to_string(folder.settings_path())
            .unwrap()
            .replace("passphrase", "key_file");
        fs::write(folder.settings_path(), text).unwrap();
        let err = folder.unlock(&mut rng, None).unwrap_err().to_string();
        assert!(err.contains("sphinx.key"), "{err}");
    }

    #[test]
    fn an_older_passphrase_folder_gets_its_clear_sphinx_key_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let keys = SphinxKeyPair::generate(&mut rng);
        let phrase = Passphrase::new("pw".into());
        folder
            .init(
                &mut rng,
                &settings(StateSealing::Passphrase),
                &keys,
                Some(&phrase),
            )
            .unwrap();
        // As an older version left it: the key in clear beside a sealed book.
        fs::write(folder.key_path(), keys.secret_bytes().as_slice()).unwrap();
        assert!(folder.unlock(&mut rng, None).is_err());
        let opened = folder.unlock(&mut rng, Some(&phrase)).unwrap();
        assert_eq!(opened.keys.public(), keys.public());
        let stored = fs::read(folder.key_path()).unwrap();
        assert!(stored.starts_with(&SEALED_MAGIC));
        assert!(
            !stored
                .windows(32)
                .any(|w| w == keys.secret_bytes().as_slice())
        );
        let again = folder.unlock(&mut rng, Some(&phrase)).unwrap();
        assert_eq!(again.keys.public(), keys.public());
    }

    #[test]
    fn the_rotation_schedule_is_read_from_the_settings_and_made_cards_carry_it() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let keys = SphinxKeyPair::generate(&mut rng);
        let mut settings = settings(StateSealing::KeyFile);
        assert_eq!(settings.rotation_schedule(), RotationSchedule::DEFAULT);
        settings.prekey_rotation_secs = Some(30);
        settings.prekey_grace_secs = Some(10);
        let created = folder.init(&mut rng, &settings, &keys, None).unwrap();
        let text = fs::read_to_string(folder.settings_path()).unwrap();
        assert!(text.contains("prekey_rotation_secs = 30"), "{text}");
        let opened = folder.unlock(&mut rng, None).unwrap();
        let schedule = opened.settings.rotation_schedule();
        assert_eq!(
            (schedule.period.as_secs(), schedule.grace.as_secs()),
            (30, 10)
        );
        let now = super::super::clock::unix_now().0;
        let expires = created.book.card(created.address()).expires_at().unwrap().0;
        assert!(
            (now + 39..=now + 40).contains(&expires),
            "{expires} vs {now}"
        );
        assert_eq!(opened.book.card_expires_at().unwrap().0, expires);
    }

    #[test]
    fn bad_gateway_field_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        fs::write(
            folder.settings_path(),
            "directory_url = \"x\"\ndirectory_key = \"11111111111111111111111111111111\"\ngateway = \"nope\"\n",
        )
        .unwrap();
        let err = folder.settings().unwrap_err().to_string();
        assert!(
            err.contains("client.toml") && err.contains("gateway"),
            "{err}"
        );
    }
}
