//! The client's data folder: its settings, its Sphinx key, its topology cache.
//!
//! ```text
//! D/client.toml     directory URL, pinned directory key, own gateway id
//! D/sphinx.key      the X25519 Sphinx secret key (32 bytes, mode 0600)
//! D/topology.json   the last good signed topology (the directory client's cache)
//! D/state.key       the key that seals the session book (32 bytes, mode 0600;
//!                   absent when a passphrase seals it)
//! D/sessions.sealed the session book (identity, prekeys, sessions, contacts),
//!                   XChaCha20-Poly1305 under state.key or an Argon2id passphrase key
//! D/partial/        fragments of messages still being received (the reassembly
//!                   journal, `super::journal`)
//! ```
//!
//! The address of the client is the Sphinx public key at the gateway, so
//! the key file is the client's identity: losing it loses the mailbox.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use e2ee::{PassphraseParams, StateStore};
use protocol::{ClientAddress, NodeId, SphinxKeyPair};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::DataFolderError;
use client_core::sessions::SessionBook;

const SETTINGS_FILE: &str = "client.toml";
const KEY_FILE: &str = "sphinx.key";
const TOPOLOGY_FILE: &str = "topology.json";
const STATE_KEY_FILE: &str = "state.key";
const SESSIONS_FILE: &str = "sessions.sealed";

/// What seals the session book at rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateSealing {
    /// A random key in `state.key` (mode 0600) beside the book.
    #[default]
    KeyFile,
    /// A key derived with Argon2id from a passphrase the user gives at each start.
    Passphrase,
}

/// A passphrase that unlocks the session book; wiped on drop, never printed.
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

/// The sealed session book file and the key that seals it.
pub struct BookFile {
    path: PathBuf,
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
}

/// What `client.toml` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSettings {
    /// Base URL of the directory, e.g. `http://127.0.0.1:8080`.
    pub directory_url: String,
    /// The pinned directory key (base58).
    pub directory_key: String,
    /// The id of this client's gateway (base58).
    pub gateway: String,
    /// What seals the session book: `key_file` (default) or `passphrase`.
    #[serde(default)]
    pub state_sealing: StateSealing,
}

impl StoredSettings {
    /// The pinned directory key.
    pub fn directory_key(&self, folder: &DataFolder) -> Result<NodeId, DataFolderError> {
        NodeId::from_base58(&self.directory_key).map_err(|e| DataFolderError::BadField {
            path: folder.settings_path(),
            field: "directory_key",
            reason: e.to_string(),
        })
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

    /// Opens the session book, or creates it (new identity and prekeys, and
    /// with [`StateSealing::KeyFile`] a new `state.key`) on first use.
    /// A book that does not open (wrong passphrase or key, tampering) is an
    /// error, never replaced.
    pub fn session_book(
        &self,
        rng: &mut impl CryptoRng,
        sealing: StateSealing,
        passphrase: Option<&Passphrase>,
    ) -> Result<(SessionBook, BookFile), DataFolderError> {
        let path = self.sessions_path();
        let existing = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&path, e)),
        };
        let refused = |reason: String| DataFolderError::BadField {
            path: path.clone(),
            field: "(sessions)",
            reason,
        };
        let store = match (sealing, &existing) {
            (StateSealing::KeyFile, _) => {
                let key_path = self.state_key_path();
                let key = match fs::read(&key_path) {
                    Ok(bytes) => Zeroizing::new(bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && existing.is_none() => {
                        let mut key = Zeroizing::new(vec![0u8; 32]);
                        rng.fill_bytes(&mut key);
                        write_atomic(&key_path, &key, 0o600)?;
                        key
                    }
                    Err(e) => return Err(io_error(&key_path, e)),
                };
                let key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
                    DataFolderError::BadField {
                        path: key_path.clone(),
                        field: "(key)",
                        reason: format!("{} bytes, expected 32", key.len()),
                    }
                })?;
                StateStore::from_raw_key(key).map_err(|e| refused(e.to_string()))?
            }
            (StateSealing::Passphrase, sealed) => {
                let passphrase = passphrase.ok_or_else(|| DataFolderError::BadField {
                    path: self.settings_path(),
                    field: "state_sealing",
                    reason: "the session book is sealed with a passphrase and none was given"
                        .into(),
                })?;
                let phrase = passphrase.0.as_bytes();
                match sealed {
                    Some(sealed) => StateStore::unlock_with_passphrase(phrase, sealed),
                    None => {
                        StateStore::create_with_passphrase(rng, phrase, PassphraseParams::default())
                    }
                }
                .map_err(|e| refused(e.to_string()))?
            }
        };
        let file = BookFile {
            path: path.clone(),
            store,
        };
        match existing {
            Some(sealed) => {
                let bytes = file.store.open_bytes(&sealed).map_err(|e| {
                    refused(format!("{e} (wrong key or passphrase, or a damaged file)"))
                })?;
                let book = SessionBook::from_bytes(&bytes).map_err(|e| refused(e.to_string()))?;
                Ok((book, file))
            }
            None => {
                let book = SessionBook::generate(rng);
                file.save(rng, &book)?;
                Ok((book, file))
            }
        }
    }

    /// Creates the folder with `settings` and a new Sphinx key; refuses to
    /// overwrite an existing key.
    pub fn init(
        &self,
        settings: &StoredSettings,
        keys: &SphinxKeyPair,
    ) -> Result<(), DataFolderError> {
        let key_path = self.key_path();
        if key_path.exists() {
            return Err(DataFolderError::Exists { path: key_path });
        }
        fs::create_dir_all(&self.path).map_err(|e| io_error(&self.path, e))?;
        write_atomic(&key_path, keys.secret_bytes().as_slice(), 0o600)?;
        let text = toml::to_string(settings).map_err(|e| DataFolderError::BadField {
            path: self.settings_path(),
            field: "(all)",
            reason: e.to_string(),
        })?;
        let commented =
            format!("# mixnet-client settings (written by `mixnet-client init`)\n{text}");
        write_atomic(&self.settings_path(), commented.as_bytes(), 0o644)
    }

    /// Reads the settings and the key.
    pub fn load(&self) -> Result<(StoredSettings, SphinxKeyPair), DataFolderError> {
        let path = self.settings_path();
        let text = fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        let settings: StoredSettings =
            toml::from_str(&text).map_err(|e| DataFolderError::BadField {
                path: path.clone(),
                field: "(file)",
                reason: e.message().to_string(),
            })?;
        settings.directory_key(self)?;
        settings.gateway(self)?;
        let key_path = self.key_path();
        let bytes = fs::read(&key_path).map_err(|e| io_error(&key_path, e))?;
        let secret =
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| DataFolderError::BadField {
                path: key_path.clone(),
                field: "(key)",
                reason: format!("{} bytes, expected 32", bytes.len()),
            })?;
        Ok((settings, SphinxKeyPair::from_secret_bytes(secret)))
    }

    /// The client's address, from the stored key and gateway.
    pub fn address(&self) -> Result<ClientAddress, DataFolderError> {
        let (settings, keys) = self.load()?;
        Ok(ClientAddress {
            client_key: keys.public().to_bytes(),
            gateway: settings.gateway(self)?,
        })
    }
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

    #[test]
    fn init_then_load_round_trips_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path().join("c"));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let keys = SphinxKeyPair::generate(&mut rng);
        let settings = StoredSettings {
            directory_url: "http://127.0.0.1:1".into(),
            directory_key: NodeId([7; 32]).to_base58(),
            gateway: NodeId([9; 32]).to_base58(),
            state_sealing: StateSealing::KeyFile,
        };
        folder.init(&settings, &keys).unwrap();
        let (loaded, loaded_keys) = folder.load().unwrap();
        assert_eq!(loaded, settings);
        assert_eq!(loaded_keys.public(), keys.public());
        assert_eq!(folder.address().unwrap().gateway, NodeId([9; 32]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(folder.key_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            folder.init(&settings, &keys),
            Err(DataFolderError::Exists { .. })
        ));
    }

    #[test]
    fn the_session_book_is_created_once_reopened_and_refused_under_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DataFolder::new(dir.path());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let (book, _) = folder
            .session_book(&mut rng, StateSealing::KeyFile, None)
            .unwrap();
        let (again, _) = folder
            .session_book(&mut rng, StateSealing::KeyFile, None)
            .unwrap();
        assert_eq!(book.identity(), again.identity());
        let sealed = fs::read(folder.sessions_path()).unwrap();
        assert!(!sealed.windows(32).any(|w| w == book.identity().0));
        fs::write(folder.state_key_path(), [9u8; 32]).unwrap();
        let err = folder
            .session_book(&mut rng, StateSealing::KeyFile, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sessions.sealed"), "{err}");

        let other = DataFolder::new(dir.path().join("p"));
        fs::create_dir_all(dir.path().join("p")).unwrap();
        let right = Passphrase::new("correct horse".into());
        let (book, _) = other
            .session_book(&mut rng, StateSealing::Passphrase, Some(&right))
            .unwrap();
        assert!(!other.state_key_path().exists());
        let (again, _) = other
            .session_book(&mut rng, StateSealing::Passphrase, Some(&right))
            .unwrap();
        assert_eq!(book.identity(), again.identity());
        let wrong = Passphrase::new("wrong".into());
        assert!(
            other
                .session_book(&mut rng, StateSealing::Passphrase, Some(&wrong))
                .is_err()
        );
        assert!(
            other
                .session_book(&mut rng, StateSealing::Passphrase, None)
                .is_err()
        );
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
        let err = folder.load().unwrap_err().to_string();
        assert!(
            err.contains("client.toml") && err.contains("gateway"),
            "{err}"
        );
    }
}
