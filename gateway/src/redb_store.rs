//! The durable [`MailboxStore`]: an embedded `redb` database file.
//!
//! Every change is one write transaction committed with `redb`'s default
//! durability (`Immediate`: the commit has reached the disk when `commit`
//! returns), so a message the gateway has acknowledged survives a crash.
//!
//! Tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `messages` | (client key, mailbox id) | expiry (u64 BE ns) · SURB id (16 B) · payload |
//! | `expiry` | (expiry ns, mailbox id) | client key |
//! | `clients` | client key | () |
//! | `meta` | `"next_id"` | first unused mailbox id |
//! | `message_tags` | (client key, mailbox id) | recall tag |
//! | `recall_tags` | (client key, recall tag, mailbox id) | () |
//!
//! The two tag tables came with recall: a database written before them
//! opens (they are created empty), and its messages have no tag, so no
//! recall deletes them. `recall_tags` is the index a recall looks its
//! client's tags up in; `message_tags` lets every other deletion (ack,
//! expiry, unregistration) remove a message's index entry.
//!
//! The prekey service's tables live in the same file
//! ([`crate::prekey_store`], [`RedbStore::prekey_store`]).
//!
//! Expiry instants are nanoseconds on the gateway's clock, which must
//! therefore be wall-clock based (see docs/gateway.md) for retention to
//! survive a restart.

use std::path::Path;
use std::sync::Arc;

use protocol::packet::SURB_ID_SIZE;
use protocol::recall::RecallTag;
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use gateway_core::MailboxError;
use gateway_core::mailbox::{
    ClientKey, MailboxId, MailboxStore, MailboxUsage, RegistrationDay, RemovedMessage,
    StoredMessage,
};

const MESSAGES: TableDefinition<([u8; 32], u64), &[u8]> = TableDefinition::new("messages");
const EXPIRY: TableDefinition<(u64, u64), [u8; 32]> = TableDefinition::new("expiry");
const CLIENTS: TableDefinition<[u8; 32], ()> = TableDefinition::new("clients");
/// The day (since the Unix epoch) each client was last seen.
const CLIENT_SEEN: TableDefinition<[u8; 32], u64> = TableDefinition::new("client_seen");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Each tagged message's recall tag.
const MESSAGE_TAGS: TableDefinition<([u8; 32], u64), [u8; 32]> =
    TableDefinition::new("message_tags");
/// The recall index: (client, tag, id) of every tagged message.
const RECALL_TAGS: TableDefinition<([u8; 32], [u8; 32], u64), ()> =
    TableDefinition::new("recall_tags");
const NEXT_ID: &str = "next_id";
const RECORD_HEADER: usize = 8 + SURB_ID_SIZE;

/// Mailboxes in a `redb` database file.
pub struct RedbStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbStore")
    }
}

fn encode_record(m: &StoredMessage) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + m.payload.len());
    v.extend_from_slice(&m.expires_at.as_nanos().to_be_bytes());
    v.extend_from_slice(&m.surb_id.0);
    v.extend_from_slice(&m.payload);
    v
}

fn decode_record(client: ClientKey, id: u64, bytes: &[u8]) -> Result<StoredMessage, MailboxError> {
    let (expiry, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(MailboxError::Corrupt("short record"))?;
    let (surb_id, payload) = rest
        .split_first_chunk::<SURB_ID_SIZE>()
        .ok_or(MailboxError::Corrupt("short record"))?;
    Ok(StoredMessage {
        id: MailboxId(id),
        client,
        expires_at: Timestamp::from_nanos(u64::from_be_bytes(*expiry)),
        surb_id: SurbId(*surb_id),
        payload: payload.to_vec(),
        recall_tag: None,
    })
}

fn payload_len(record_len: usize) -> u64 {
    record_len.saturating_sub(RECORD_HEADER) as u64
}

impl RedbStore {
    /// Opens the database at `path`, creating it (and its tables) if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MailboxError> {
        let db = Database::create(path).map_err(MailboxError::database)?;
        let txn = db.begin_write().map_err(MailboxError::database)?;
        {
            txn.open_table(MESSAGES).map_err(MailboxError::database)?;
            txn.open_table(EXPIRY).map_err(MailboxError::database)?;
            txn.open_table(CLIENTS).map_err(MailboxError::database)?;
            txn.open_table(CLIENT_SEEN)
                .map_err(MailboxError::database)?;
            txn.open_table(META).map_err(MailboxError::database)?;
            txn.open_table(MESSAGE_TAGS)
                .map_err(MailboxError::database)?;
            txn.open_table(RECALL_TAGS)
                .map_err(MailboxError::database)?;
            crate::prekey_store::create_tables(&txn)?;
        }
        txn.commit().map_err(MailboxError::database)?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    /// The database, shared with the prekey store.
    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }
}

/// Removes the recall index entries of message `id` of `client`, if it had a tag.
fn untag(txn: &redb::WriteTransaction, client: ClientKey, id: u64) -> Result<(), MailboxError> {
    let mut message_tags = txn
        .open_table(MESSAGE_TAGS)
        .map_err(MailboxError::database)?;
    let tag = message_tags
        .remove((client, id))
        .map_err(MailboxError::database)?
        .map(|t| t.value());
    if let Some(tag) = tag {
        txn.open_table(RECALL_TAGS)
            .map_err(MailboxError::database)?
            .remove((client, tag, id))
            .map_err(MailboxError::database)?;
    }
    Ok(())
}

/// The recall tag of message `id` of `client`, if it has one.
fn tag_of(
    table: &impl ReadableTable<([u8; 32], u64), [u8; 32]>,
    client: ClientKey,
    id: u64,
) -> Result<Option<RecallTag>, MailboxError> {
    Ok(table
        .get((client, id))
        .map_err(MailboxError::database)?
        .map(|t| RecallTag(t.value())))
}

/// Writes `batch` (ids increasing) into `txn`: the messages, their expiry
/// and recall index entries, and the first unused id.
fn insert_messages(
    txn: &redb::WriteTransaction,
    batch: &[StoredMessage],
) -> Result<(), MailboxError> {
    let Some(last) = batch.iter().map(|m| m.id.0).max() else {
        return Ok(());
    };
    {
        let mut messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
        let mut expiry = txn.open_table(EXPIRY).map_err(MailboxError::database)?;
        let mut message_tags = txn
            .open_table(MESSAGE_TAGS)
            .map_err(MailboxError::database)?;
        let mut recall_tags = txn
            .open_table(RECALL_TAGS)
            .map_err(MailboxError::database)?;
        for m in batch {
            messages
                .insert((m.client, m.id.0), encode_record(m).as_slice())
                .map_err(MailboxError::database)?;
            expiry
                .insert((m.expires_at.as_nanos(), m.id.0), m.client)
                .map_err(MailboxError::database)?;
            if let Some(tag) = m.recall_tag {
                message_tags
                    .insert((m.client, m.id.0), tag.0)
                    .map_err(MailboxError::database)?;
                recall_tags
                    .insert((m.client, tag.0, m.id.0), ())
                    .map_err(MailboxError::database)?;
            }
        }
        let mut meta = txn.open_table(META).map_err(MailboxError::database)?;
        let next = meta
            .get(NEXT_ID)
            .map_err(MailboxError::database)?
            .map_or(0, |v| v.value());
        meta.insert(NEXT_ID, next.max(last.saturating_add(1)))
            .map_err(MailboxError::database)?;
    }
    Ok(())
}

/// Removes from `txn` every listed message that exists; returns them.
fn remove_messages(
    txn: &redb::WriteTransaction,
    batch: &[(ClientKey, MailboxId)],
) -> Result<Vec<RemovedMessage>, MailboxError> {
    let mut removed = Vec::new();
    {
        let mut messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
        let mut expiry = txn.open_table(EXPIRY).map_err(MailboxError::database)?;
        for (client, id) in batch {
            let Some(record) = messages
                .remove((*client, id.0))
                .map_err(MailboxError::database)?
            else {
                continue;
            };
            let record = decode_record(*client, id.0, record.value())?;
            expiry
                .remove((record.expires_at.as_nanos(), id.0))
                .map_err(MailboxError::database)?;
            untag(txn, *client, id.0)?;
            removed.push(RemovedMessage {
                client: *client,
                id: *id,
                bytes: record.payload.len() as u64,
            });
        }
    }
    Ok(removed)
}

impl MailboxStore for RedbStore {
    fn put(&mut self, m: &StoredMessage) -> Result<(), MailboxError> {
        self.put_batch(std::slice::from_ref(m))
    }

    fn put_batch(&mut self, batch: &[StoredMessage]) -> Result<(), MailboxError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        insert_messages(&txn, batch)?;
        txn.commit().map_err(MailboxError::database)?;
        Ok(())
    }

    fn put_and_delete_batch(
        &mut self,
        batch: &[StoredMessage],
        acked: &[(ClientKey, MailboxId)],
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        insert_messages(&txn, batch)?;
        let removed = remove_messages(&txn, acked)?;
        if batch.is_empty() && removed.is_empty() {
            txn.abort().map_err(MailboxError::database)?;
        } else {
            txn.commit().map_err(MailboxError::database)?;
        }
        Ok(removed)
    }

    fn list(
        &self,
        client: &ClientKey,
        after: Option<MailboxId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, MailboxError> {
        let start = match after {
            Some(MailboxId(id)) => match id.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
            None => 0,
        };
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        let messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
        let message_tags = txn
            .open_table(MESSAGE_TAGS)
            .map_err(MailboxError::database)?;
        let mut out = Vec::new();
        for entry in messages
            .range((*client, start)..=(*client, u64::MAX))
            .map_err(MailboxError::database)?
        {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(MailboxError::database)?;
            let (client, id) = key.value();
            let mut record = decode_record(client, id, value.value())?;
            record.recall_tag = tag_of(&message_tags, client, id)?;
            out.push(record);
        }
        Ok(out)
    }

    fn delete(
        &mut self,
        client: &ClientKey,
        id: MailboxId,
    ) -> Result<Option<RemovedMessage>, MailboxError> {
        Ok(self.delete_batch(&[(*client, id)])?.pop())
    }

    fn delete_batch(
        &mut self,
        batch: &[(ClientKey, MailboxId)],
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        let removed = remove_messages(&txn, batch)?;
        if removed.is_empty() {
            txn.abort().map_err(MailboxError::database)?;
        } else {
            txn.commit().map_err(MailboxError::database)?;
        }
        Ok(removed)
    }

    fn delete_tagged(
        &mut self,
        client: &ClientKey,
        tags: &[RecallTag],
    ) -> Result<Vec<(RecallTag, RemovedMessage)>, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        let mut removed = Vec::new();
        {
            let mut found = Vec::new();
            {
                let recall_tags = txn
                    .open_table(RECALL_TAGS)
                    .map_err(MailboxError::database)?;
                for tag in tags {
                    for entry in recall_tags
                        .range((*client, tag.0, 0)..=(*client, tag.0, u64::MAX))
                        .map_err(MailboxError::database)?
                    {
                        let (key, _) = entry.map_err(MailboxError::database)?;
                        let (_, _, id) = key.value();
                        found.push((*tag, id));
                    }
                }
            }
            let mut messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(MailboxError::database)?;
            for (tag, id) in found {
                untag(&txn, *client, id)?;
                let Some(record) = messages
                    .remove((*client, id))
                    .map_err(MailboxError::database)?
                else {
                    continue;
                };
                let record = decode_record(*client, id, record.value())?;
                expiry
                    .remove((record.expires_at.as_nanos(), id))
                    .map_err(MailboxError::database)?;
                removed.push((
                    tag,
                    RemovedMessage {
                        client: *client,
                        id: MailboxId(id),
                        bytes: record.payload.len() as u64,
                    },
                ));
            }
        }
        if removed.is_empty() {
            txn.abort().map_err(MailboxError::database)?;
        } else {
            txn.commit().map_err(MailboxError::database)?;
        }
        Ok(removed)
    }

    fn expire(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        let mut removed = Vec::new();
        {
            let mut expiry = txn.open_table(EXPIRY).map_err(MailboxError::database)?;
            let mut messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
            let mut due = Vec::new();
            for entry in expiry
                .range(..=(now.as_nanos(), u64::MAX))
                .map_err(MailboxError::database)?
            {
                if due.len() >= limit {
                    break;
                }
                let (key, client) = entry.map_err(MailboxError::database)?;
                due.push((key.value(), client.value()));
            }
            for ((at, id), client) in due {
                expiry.remove((at, id)).map_err(MailboxError::database)?;
                if let Some(record) = messages
                    .remove((client, id))
                    .map_err(MailboxError::database)?
                {
                    untag(&txn, client, id)?;
                    removed.push(RemovedMessage {
                        client,
                        id: MailboxId(id),
                        bytes: payload_len(record.value().len()),
                    });
                }
            }
        }
        if removed.is_empty() {
            txn.abort().map_err(MailboxError::database)?;
        } else {
            txn.commit().map_err(MailboxError::database)?;
        }
        Ok(removed)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, MailboxError> {
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        let expiry = txn.open_table(EXPIRY).map_err(MailboxError::database)?;
        Ok(expiry
            .first()
            .map_err(MailboxError::database)?
            .map(|(k, _)| Timestamp::from_nanos(k.value().0)))
    }

    fn usage_by_client(&self) -> Result<Vec<(ClientKey, MailboxUsage)>, MailboxError> {
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        let messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
        let mut out: Vec<(ClientKey, MailboxUsage)> = Vec::new();
        for entry in messages.iter().map_err(MailboxError::database)? {
            let (key, value) = entry.map_err(MailboxError::database)?;
            let (client, _) = key.value();
            let bytes = payload_len(value.value().len());
            match out.last_mut() {
                Some((last, usage)) if *last == client => {
                    usage.messages += 1;
                    usage.bytes += bytes;
                }
                _ => out.push((client, MailboxUsage { messages: 1, bytes })),
            }
        }
        Ok(out)
    }

    fn next_id(&self) -> Result<MailboxId, MailboxError> {
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        let meta = txn.open_table(META).map_err(MailboxError::database)?;
        Ok(MailboxId(
            meta.get(NEXT_ID)
                .map_err(MailboxError::database)?
                .map_or(0, |v| v.value()),
        ))
    }

    fn register_client(
        &mut self,
        client: &ClientKey,
        seen: RegistrationDay,
    ) -> Result<(), MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        {
            let mut clients = txn.open_table(CLIENTS).map_err(MailboxError::database)?;
            clients
                .insert(*client, ())
                .map_err(MailboxError::database)?;
            let mut days = txn
                .open_table(CLIENT_SEEN)
                .map_err(MailboxError::database)?;
            days.insert(*client, seen.0)
                .map_err(MailboxError::database)?;
        }
        txn.commit().map_err(MailboxError::database)?;
        Ok(())
    }

    fn clients(&self) -> Result<Vec<(ClientKey, Option<RegistrationDay>)>, MailboxError> {
        let txn = self.db.begin_read().map_err(MailboxError::database)?;
        let clients = txn.open_table(CLIENTS).map_err(MailboxError::database)?;
        let days = txn
            .open_table(CLIENT_SEEN)
            .map_err(MailboxError::database)?;
        let mut out = Vec::with_capacity(
            usize::try_from(clients.len().map_err(MailboxError::database)?).unwrap_or(0),
        );
        for entry in clients.iter().map_err(MailboxError::database)? {
            let client = entry.map_err(MailboxError::database)?.0.value();
            let seen = days
                .get(client)
                .map_err(MailboxError::database)?
                .map(|d| RegistrationDay(d.value()));
            out.push((client, seen));
        }
        Ok(out)
    }

    fn unregister_client(
        &mut self,
        client: &ClientKey,
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        let txn = self.db.begin_write().map_err(MailboxError::database)?;
        let mut removed = Vec::new();
        {
            let mut messages = txn.open_table(MESSAGES).map_err(MailboxError::database)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(MailboxError::database)?;
            let mut records = Vec::new();
            for entry in messages
                .range((*client, 0)..=(*client, u64::MAX))
                .map_err(MailboxError::database)?
            {
                let (key, value) = entry.map_err(MailboxError::database)?;
                let (_, id) = key.value();
                records.push(decode_record(*client, id, value.value())?);
            }
            for record in records {
                messages
                    .remove((*client, record.id.0))
                    .map_err(MailboxError::database)?;
                expiry
                    .remove((record.expires_at.as_nanos(), record.id.0))
                    .map_err(MailboxError::database)?;
                untag(&txn, *client, record.id.0)?;
                removed.push(RemovedMessage {
                    client: *client,
                    id: record.id,
                    bytes: record.payload.len() as u64,
                });
            }
            txn.open_table(CLIENTS)
                .map_err(MailboxError::database)?
                .remove(*client)
                .map_err(MailboxError::database)?;
            txn.open_table(CLIENT_SEEN)
                .map_err(MailboxError::database)?
                .remove(*client)
                .map_err(MailboxError::database)?;
        }
        txn.commit().map_err(MailboxError::database)?;
        Ok(removed)
    }
}
