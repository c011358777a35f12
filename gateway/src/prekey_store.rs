//! The durable [`PrekeyStore`]: three tables in the mailbox's `redb`
//! database, reached through [`RedbStore::prekey_store`].
//!
//! | table | key | value |
//! |---|---|---|
//! | `prekey_bundles` | client key | fingerprint (20 B) · published bundle |
//! | `prekey_owners` | fingerprint | client key |
//! | `one_time_prekeys` | (client key, prekey id) | one-time prekey |
//!
//! Every change is one write transaction with `redb`'s default durability
//! (on disk when `commit` returns): a one-time prekey taken for an answer is
//! gone for good before the answer is built, so none is handed out twice,
//! across a crash too. A database written before the prekey service opens
//! (the three tables are created empty).

use std::sync::Arc;

use protocol::prekeys::{BundleAnswer, FINGERPRINT_SIZE, MAX_ONE_TIME_PREKEYS_PER_CLIENT};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use gateway_core::MailboxError;
use gateway_core::mailbox::ClientKey;
use gateway_core::prekeys::{
    Fingerprint, OneTimeAdded, PrekeyStore, PrekeyTake, PublishOutcome, one_time_room,
};

use crate::RedbStore;

/// Each client's published bundle, after its fingerprint.
pub(crate) const PREKEY_BUNDLES: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("prekey_bundles");
/// Which client holds each fingerprint.
pub(crate) const PREKEY_OWNERS: TableDefinition<[u8; FINGERPRINT_SIZE], [u8; 32]> =
    TableDefinition::new("prekey_owners");
/// Each client's one-time prekeys, by id.
pub(crate) const ONE_TIME_PREKEYS: TableDefinition<([u8; 32], u32), &[u8]> =
    TableDefinition::new("one_time_prekeys");

/// Creates the prekey tables if the database has none yet.
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), MailboxError> {
    txn.open_table(PREKEY_BUNDLES)
        .map_err(MailboxError::database)?;
    txn.open_table(PREKEY_OWNERS)
        .map_err(MailboxError::database)?;
    txn.open_table(ONE_TIME_PREKEYS)
        .map_err(MailboxError::database)?;
    Ok(())
}

/// Prekeys in the mailbox's `redb` database.
pub struct RedbPrekeyStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbPrekeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbPrekeyStore")
    }
}

impl RedbStore {
    /// The prekey store in the same database file.
    pub fn prekey_store(&self) -> RedbPrekeyStore {
        RedbPrekeyStore {
            db: self.database(),
        }
    }
}

/// Splits a `prekey_bundles` value into its fingerprint and bundle.
fn split_bundle(value: &[u8]) -> Result<(Fingerprint, &[u8]), MailboxError> {
    value
        .split_first_chunk::<FINGERPRINT_SIZE>()
        .map(|(fingerprint, published)| (*fingerprint, published))
        .ok_or(MailboxError::Corrupt("short prekey bundle record"))
}

/// Deletes every one-time prekey of `client`.
fn clear_one_time(txn: &WriteTransaction, client: &ClientKey) -> Result<(), MailboxError> {
    let mut one_time = txn
        .open_table(ONE_TIME_PREKEYS)
        .map_err(MailboxError::database)?;
    one_time
        .retain_in((*client, 0)..=(*client, u32::MAX), |_, _| false)
        .map_err(MailboxError::database)?;
    Ok(())
}

impl PrekeyStore for RedbPrekeyStore {
    fn publish(
        &mut self,
        client: &ClientKey,
        fingerprint: &Fingerprint,
        published: &[u8],
    ) -> Result<PublishOutcome, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        {
            let mut owners = txn
                .open_table(PREKEY_OWNERS)
                .map_err(MailboxError::database)?;
            let owner = owners
                .get(*fingerprint)
                .map_err(MailboxError::database)?
                .map(|o| o.value());
            if owner.is_some_and(|o| o != *client) {
                drop(owners);
                txn.abort().map_err(MailboxError::database)?;
                return Ok(PublishOutcome::FingerprintTaken);
            }
            let mut bundles = txn
                .open_table(PREKEY_BUNDLES)
                .map_err(MailboxError::database)?;
            let old = match bundles.get(*client).map_err(MailboxError::database)? {
                Some(value) => Some(split_bundle(value.value())?.0),
                None => None,
            };
            if let Some(old) = old
                && old != *fingerprint
            {
                owners.remove(old).map_err(MailboxError::database)?;
                clear_one_time(&txn, client)?;
            }
            let mut value = Vec::with_capacity(FINGERPRINT_SIZE + published.len());
            value.extend_from_slice(fingerprint);
            value.extend_from_slice(published);
            bundles
                .insert(*client, value.as_slice())
                .map_err(MailboxError::database)?;
            owners
                .insert(*fingerprint, *client)
                .map_err(MailboxError::database)?;
        }
        txn.commit().map_err(MailboxError::database)?;
        Ok(PublishOutcome::Published)
    }

    fn add_one_time(
        &mut self,
        client: &ClientKey,
        keys: &[(u32, Vec<u8>)],
    ) -> Result<OneTimeAdded, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        let mut added = OneTimeAdded::default();
        {
            let mut one_time = txn
                .open_table(ONE_TIME_PREKEYS)
                .map_err(MailboxError::database)?;
            let mut held = one_time
                .range((*client, 0)..=(*client, u32::MAX))
                .map_err(MailboxError::database)?
                .count();
            for (id, key) in keys {
                if one_time
                    .get((*client, *id))
                    .map_err(MailboxError::database)?
                    .is_some()
                {
                    added.duplicate += 1;
                } else if held >= MAX_ONE_TIME_PREKEYS_PER_CLIENT {
                    added.full += 1;
                } else {
                    one_time
                        .insert((*client, *id), key.as_slice())
                        .map_err(MailboxError::database)?;
                    held += 1;
                    added.stored += 1;
                }
            }
        }
        if added.stored == 0 {
            txn.abort().map_err(MailboxError::database)?;
        } else {
            txn.commit().map_err(MailboxError::database)?;
        }
        Ok(added)
    }

    fn take(&mut self, fingerprint: &Fingerprint, room: usize) -> Result<PrekeyTake, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        let answer = {
            let owners = txn
                .open_table(PREKEY_OWNERS)
                .map_err(MailboxError::database)?;
            let bundles = txn
                .open_table(PREKEY_BUNDLES)
                .map_err(MailboxError::database)?;
            let Some(client) = owners
                .get(*fingerprint)
                .map_err(MailboxError::database)?
                .map(|o| o.value())
            else {
                drop((owners, bundles));
                txn.abort().map_err(MailboxError::database)?;
                return Ok(PrekeyTake::Unknown);
            };
            let published = match bundles.get(client).map_err(MailboxError::database)? {
                Some(value) => split_bundle(value.value())?.1.to_vec(),
                None => Vec::new(),
            };
            let Some(key_room) = one_time_room(room, published.len()) else {
                drop((owners, bundles));
                txn.abort().map_err(MailboxError::database)?;
                return Ok(PrekeyTake::DoesNotFit);
            };
            let mut one_time = txn
                .open_table(ONE_TIME_PREKEYS)
                .map_err(MailboxError::database)?;
            let mut chosen = None;
            for entry in one_time
                .range((client, 0)..=(client, u32::MAX))
                .map_err(MailboxError::database)?
            {
                let (key, value) = entry.map_err(MailboxError::database)?;
                let bytes = value.value();
                if !bytes.is_empty() && bytes.len() <= key_room {
                    chosen = Some((key.value().1, bytes.to_vec()));
                    break;
                }
            }
            if let Some((id, _)) = &chosen {
                one_time
                    .remove((client, *id))
                    .map_err(MailboxError::database)?;
            }
            BundleAnswer {
                published,
                one_time: chosen.map(|(_, key)| key),
            }
        };
        if answer.one_time.is_some() {
            txn.commit().map_err(MailboxError::database)?;
        } else {
            txn.abort().map_err(MailboxError::database)?;
        }
        Ok(PrekeyTake::Answer(answer))
    }

    fn stock(&self, client: &ClientKey) -> Result<(bool, u32), MailboxError> {
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        let bundles = txn
            .open_table(PREKEY_BUNDLES)
            .map_err(MailboxError::database)?;
        let one_time = txn
            .open_table(ONE_TIME_PREKEYS)
            .map_err(MailboxError::database)?;
        let published = bundles
            .get(*client)
            .map_err(MailboxError::database)?
            .is_some();
        let left = one_time
            .range((*client, 0)..=(*client, u32::MAX))
            .map_err(MailboxError::database)?
            .count();
        Ok((published, u32::try_from(left).unwrap_or(u32::MAX)))
    }

    fn remove_client(&mut self, client: &ClientKey) -> Result<(), MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        {
            let mut bundles = txn
                .open_table(PREKEY_BUNDLES)
                .map_err(MailboxError::database)?;
            let old = match bundles.remove(*client).map_err(MailboxError::database)? {
                Some(value) => Some(split_bundle(value.value())?.0),
                None => None,
            };
            if let Some(fingerprint) = old {
                txn.open_table(PREKEY_OWNERS)
                    .map_err(MailboxError::database)?
                    .remove(fingerprint)
                    .map_err(MailboxError::database)?;
            }
            clear_one_time(&txn, client)?;
        }
        txn.commit().map_err(MailboxError::database)?;
        Ok(())
    }

    fn published_count(&self) -> Result<u64, MailboxError> {
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        txn.open_table(PREKEY_OWNERS)
            .map_err(MailboxError::database)?
            .len()
            .map_err(MailboxError::database)
    }
}
