//! The directory's durable state, in an embedded redb database.
//!
//! Two tables: registered descriptors (by node id: the signed envelope and the
//! epoch the node was last heard from) and published topologies (by epoch: the
//! signed envelope of the latest revision). Both are stored exactly as signed,
//! and verified again when read back, so a damaged or edited database cannot
//! make the directory publish something no node signed. A restarted directory
//! therefore keeps its nodes and serves the same documents as before.

use std::path::Path;

use protocol::{Epoch, NodeId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::registry::Registration;
use topology::descriptor::SignedDescriptor;
use topology::document::SignedTopology;
use topology::envelope::SignedEnvelope;

const DESCRIPTORS: TableDefinition<&[u8], &str> = TableDefinition::new("descriptors");
const TOPOLOGIES: TableDefinition<u64, &str> = TableDefinition::new("topologies");

/// Published topologies older than this many epochs are deleted.
pub const KEEP_EPOCHS: u64 = 168;

/// The database failed or holds something unreadable.
#[derive(Debug, Error)]
#[error("directory database: {0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error with this message.
    pub fn from_message(message: String) -> Self {
        StoreError(message)
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError(e.to_string())
    }
}

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError(e.to_string())
            }
        }
    )*};
}
store_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

#[derive(Serialize, Deserialize)]
struct StoredRegistration {
    descriptor: SignedEnvelope,
    last_seen: u64,
}

/// The open database.
pub struct DirectoryStore {
    db: Database,
}

impl DirectoryStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError(format!("{}: {e}", parent.display())))?;
        }
        let db =
            Database::create(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write()?;
        tx.open_table(DESCRIPTORS)?;
        tx.open_table(TOPOLOGIES)?;
        tx.commit()?;
        Ok(DirectoryStore { db })
    }

    /// Every stored registration, not yet verified.
    pub fn registrations(&self) -> Result<Vec<(SignedDescriptor, Epoch)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(DESCRIPTORS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, value) = row?;
            let stored: StoredRegistration = serde_json::from_str(value.value())?;
            out.push((SignedDescriptor(stored.descriptor), Epoch(stored.last_seen)));
        }
        Ok(out)
    }

    /// Records a registration (replacing the node's previous one).
    pub fn put_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        let stored = StoredRegistration {
            descriptor: registration.signed.0.clone(),
            last_seen: registration.last_seen.0,
        };
        let json = serde_json::to_string(&stored)?;
        let tx = self.db.begin_write()?;
        tx.open_table(DESCRIPTORS)?.insert(
            registration.descriptor.id.as_bytes().as_slice(),
            json.as_str(),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes the registrations of `ids`.
    pub fn remove_registrations(&self, ids: &[NodeId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(DESCRIPTORS)?;
            for id in ids {
                table.remove(id.as_bytes().as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every stored topology, oldest first, not yet verified.
    pub fn topologies(&self) -> Result<Vec<(Epoch, SignedTopology)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TOPOLOGIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (epoch, value) = row?;
            let signed: SignedTopology = serde_json::from_str(value.value())?;
            out.push((Epoch(epoch.value()), signed));
        }
        Ok(out)
    }

    /// Records the topology of `epoch` and deletes those older than [`KEEP_EPOCHS`].
    pub fn put_topology(&self, epoch: Epoch, signed: &SignedTopology) -> Result<(), StoreError> {
        let json = serde_json::to_string(signed)?;
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(TOPOLOGIES)?;
            table.insert(epoch.0, json.as_str())?;
            let horizon = epoch.0.saturating_sub(KEEP_EPOCHS);
            table.retain(|e, _| e >= horizon)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::IdentityKeyPair;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use topology::{MIX_LAYERS, NetworkParams, Topology};

    #[test]
    fn topologies_survive_reopening_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.redb");
        let mut rng = ChaCha20Rng::seed_from_u64(41);
        let key = IdentityKeyPair::generate(&mut rng);
        let t = Topology {
            epoch: Epoch(4),
            serial: 0,
            params: NetworkParams::default(),
            layers: vec![Vec::new(); MIX_LAYERS],
            gateways: Vec::new(),
            authorities: None,
        };
        let signed = t.sign(&key).unwrap();
        {
            let store = DirectoryStore::open(&path).unwrap();
            store.put_topology(Epoch(1), &signed).unwrap();
            store.put_topology(Epoch(2), &signed).unwrap();
        }
        let store = DirectoryStore::open(&path).unwrap();
        assert_eq!(
            store.topologies().unwrap(),
            vec![(Epoch(1), signed.clone()), (Epoch(2), signed.clone())]
        );
        store.put_topology(Epoch(KEEP_EPOCHS + 2), &signed).unwrap();
        let epochs: Vec<Epoch> = store
            .topologies()
            .unwrap()
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(epochs, vec![Epoch(2), Epoch(KEEP_EPOCHS + 2)]);
    }
}
