//! The client's data folder: its settings, its Sphinx key, its topology cache.
//!
//! ```text
//! D/client.toml     directory URL, pinned directory key, own gateway id
//! D/sphinx.key      the X25519 Sphinx secret key (32 bytes, mode 0600)
//! D/topology.json   the last good signed topology (the directory client's cache)
//! ```
//!
//! The address of the client is the Sphinx public key at the gateway, so
//! the key file is the client's identity: losing it loses the mailbox.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use protocol::{ClientAddress, NodeId, SphinxKeyPair};
use serde::{Deserialize, Serialize};

use crate::error::DataFolderError;

const SETTINGS_FILE: &str = "client.toml";
const KEY_FILE: &str = "sphinx.key";
const TOPOLOGY_FILE: &str = "topology.json";

/// What `client.toml` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSettings {
    /// Base URL of the directory, e.g. `http://127.0.0.1:8080`.
    pub directory_url: String,
    /// The pinned directory key (base58).
    pub directory_key: String,
    /// The id of this client's gateway (base58).
    pub gateway: String,
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
