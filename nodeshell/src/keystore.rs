//! Key files in the node's data folder.
//!
//! `identity.key` holds the Ed25519 identity secret; `sphinx/<epoch>.key` the
//! X25519 Sphinx secret of each live epoch. Every key file is created with
//! owner-only permissions (0600) and written atomically (temporary file, then
//! rename), so a crash never leaves half a key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use protocol::epoch::Epoch;
use protocol::keys::{IdentityKeyPair, SphinxKeyPair};

/// The key files of one node.
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The key store in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        KeyStore {
            dir: data_dir.to_path_buf(),
        }
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.key")
    }

    fn sphinx_path(&self, epoch: Epoch) -> PathBuf {
        self.dir.join("sphinx").join(format!("{}.key", epoch.0))
    }

    /// Writes a new identity; refuses to overwrite one.
    pub fn create_identity(&self, key: &IdentityKeyPair) -> Result<()> {
        let path = self.identity_path();
        if path.exists() {
            bail!(
                "{}: an identity key already exists; refusing to overwrite it",
                path.display()
            );
        }
        write_secret(&path, key.secret_bytes().as_slice())
    }

    /// Reads the identity.
    pub fn identity(&self) -> Result<IdentityKeyPair> {
        let bytes = read_secret(&self.identity_path())?;
        Ok(IdentityKeyPair::from_secret_bytes(&bytes))
    }

    /// Reads the Sphinx key of `epoch`, creating it with `rng` if it does not exist yet.
    pub fn sphinx_key(
        &self,
        epoch: Epoch,
        rng: &mut (impl rand::CryptoRng + ?Sized),
    ) -> Result<SphinxKeyPair> {
        let path = self.sphinx_path(epoch);
        if path.exists() {
            return Ok(SphinxKeyPair::from_secret_bytes(read_secret(&path)?));
        }
        let key = SphinxKeyPair::generate(rng);
        write_secret(&path, key.secret_bytes().as_slice())?;
        Ok(key)
    }

    /// Deletes the Sphinx keys of epochs before `oldest_kept`.
    pub fn retire_before(&self, oldest_kept: Epoch) -> Result<()> {
        let dir = self.dir.join("sphinx");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let epoch = name
                .to_str()
                .and_then(|n| n.strip_suffix(".key"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(e) = epoch
                && Epoch(e) < oldest_kept
            {
                std::fs::remove_file(entry.path()).with_context(|| {
                    format!("{}: cannot delete retired key", entry.path().display())
                })?;
            }
        }
        Ok(())
    }
}

/// Reads a 32-byte secret, naming the file in any error.
fn read_secret(path: &Path) -> Result<[u8; 32]> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: cannot read key file", path.display()))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "{}: a key file holds 32 bytes, this one {}",
            path.display(),
            bytes.len()
        )
    })
}

/// Writes a secret with mode 0600, atomically.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("{}: cannot create key file", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("{}: cannot write key file", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot write key file", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_owner_only_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("mixnode-keys-{}", std::process::id()));
        let store = KeyStore::new(&dir);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let id = IdentityKeyPair::generate(&mut rng);
        store.create_identity(&id).unwrap();
        assert!(store.create_identity(&id).is_err(), "never overwrites");
        assert_eq!(store.identity().unwrap().node_id(), id.node_id());
        let mode = std::fs::metadata(dir.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k1 = store.sphinx_key(Epoch(1), &mut rng).unwrap();
        assert_eq!(
            store.sphinx_key(Epoch(1), &mut rng).unwrap().public(),
            k1.public()
        );
        store.sphinx_key(Epoch(2), &mut rng).unwrap();
        store.retire_before(Epoch(2)).unwrap();
        assert!(!dir.join("sphinx/1.key").exists());
        assert!(dir.join("sphinx/2.key").exists());
        std::fs::write(dir.join("identity.key"), b"short").unwrap();
        let e = store.identity().err().unwrap().to_string();
        assert!(e.contains("identity.key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
