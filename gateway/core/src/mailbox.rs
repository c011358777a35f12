//! Mailboxes: what the gateway keeps for its clients until they take it.
//!
//! A message arrives at the gateway as the final hop of a Sphinx route. The
//! gateway commits it to its client's mailbox *before* it acknowledges it to
//! the sender (a crash after the ack must not lose it), pushes it to the client
//! when the client is online, and deletes it only when the client acknowledges
//! it (`AckDelivery`) or when its retention runs out, never merely because it
//! was pushed.
//!
//! [`Mailbox`] holds the policy (ids, retention, quotas, counts);
//! a [`MailboxStore`] holds the bytes. [`MemoryStore`] is for tests and the
//! simulator; `gateway::redb_store::RedbStore` is the durable one.
//!
//! Nothing about a message's sender is stored: a record is the recipient's
//! key, an id, an expiry instant, the SURB id, the payload and, for a
//! forward packet, its recall tag (a hash only the sender can name it by,
//! [`protocol::recall`]).
//!
//! A recall ([`Mailbox::recall`]) deletes the bodies of one client stored
//! under any of the tags it gives, in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use protocol::recall::RecallTag;
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use crate::error::MailboxError;

/// A client's X25519 Sphinx public key: whose mailbox a message is in.
pub type ClientKey = [u8; 32];

/// A message's id in the mailbox, unique for the gateway's lifetime and increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub u64);

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: MailboxId,
    /// The client it is for.
    pub client: ClientKey,
    /// When it is removed if the client has not acknowledged it.
    pub expires_at: Timestamp,
    /// The SURB id of a reply (all zero for forward packets).
    pub surb_id: SurbId,
    /// The frame (forward packets) or the sealed payload (SURB replies).
    pub payload: Vec<u8>,
    /// What a recall may delete it by (`None`: nothing may; SURB replies,
    /// recall notices, and messages stored before tags existed).
    pub recall_tag: Option<RecallTag>,
}

/// How much a mailbox (or a part of it) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MailboxUsage {
    /// Number of messages.
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
}

impl MailboxUsage {
    fn add(&mut self, bytes: u64) {
        self.messages = self.messages.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn remove(&mut self, bytes: u64) {
        self.messages = self.messages.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// What a recall deleted from one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RecallDeletion {
    /// Messages deleted (copies of one fragment each count).
    pub deleted: u64,
    /// Distinct tags that matched at least one message.
    pub tags_matched: u64,
}

/// A removed message: whose, which, and how many payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedMessage {
    /// The client it was for.
    pub client: ClientKey,
    /// Its id.
    pub id: MailboxId,
    /// Its payload length.
    pub bytes: u64,
}

/// Where a [`Mailbox`] keeps its messages and its registered clients.
///
/// Every method that changes the store has committed the change durably (as
/// far as the store is durable at all) when it returns `Ok`.
pub trait MailboxStore {
    /// Commits `message`; its id is above every id stored before.
    fn put(&mut self, message: &StoredMessage) -> Result<(), MailboxError>;
    /// Commits `messages` (ids increasing), all or none; a durable store
    /// does it in one transaction, so one disk sync covers the whole batch.
    fn put_batch(&mut self, messages: &[StoredMessage]) -> Result<(), MailboxError> {
        messages.iter().try_for_each(|m| self.put(m))
    }
    /// Up to `limit` messages of `client` with ids above `after`, in id order.
    fn list(
        &self,
        client: &ClientKey,
        after: Option<MailboxId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, MailboxError>;
    /// Deletes message `id` of `client`; `None` if there is no such message.
    fn delete(
        &mut self,
        client: &ClientKey,
        id: MailboxId,
    ) -> Result<Option<RemovedMessage>, MailboxError>;
    /// Deletes every listed message that exists (one transaction in a durable store).
    fn delete_batch(
        &mut self,
        messages: &[(ClientKey, MailboxId)],
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        let mut removed = Vec::new();
        for (client, id) in messages {
            removed.extend(self.delete(client, *id)?);
        }
        Ok(removed)
    }
    /// Commits `messages` (as [`MailboxStore::put_batch`]) and deletes the
    /// listed acknowledged messages that exist (as
    /// [`MailboxStore::delete_batch`]); a durable store does both in one
    /// transaction, all or none, so one disk sync covers them. Returns the
    /// messages deleted.
    fn put_and_delete_batch(
        &mut self,
        messages: &[StoredMessage],
        acked: &[(ClientKey, MailboxId)],
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        self.put_batch(messages)?;
        if acked.is_empty() {
            return Ok(Vec::new());
        }
        self.delete_batch(acked)
    }
    /// Deletes every message of `client` stored under one of `tags` (one
    /// transaction in a durable store); messages of other clients are
    /// never touched.
    fn delete_tagged(
        &mut self,
        client: &ClientKey,
        tags: &[RecallTag],
    ) -> Result<Vec<(RecallTag, RemovedMessage)>, MailboxError>;
    /// Deletes up to `limit` messages that expire at or before `now`, earliest first.
    fn expire(&mut self, now: Timestamp, limit: usize)
    -> Result<Vec<RemovedMessage>, MailboxError>;
    /// The earliest expiry instant of any stored message.
    fn next_expiry(&self) -> Result<Option<Timestamp>, MailboxError>;
    /// What each client has stored (read once, when the mailbox opens).
    fn usage_by_client(&self) -> Result<Vec<(ClientKey, MailboxUsage)>, MailboxError>;
    /// The first id never used: above every id ever stored, even deleted ones.
    fn next_id(&self) -> Result<MailboxId, MailboxError>;
    /// Records that the gateway serves `client`, last seen on day `seen`
    /// ([`RegistrationDay`]); registering again only moves the day.
    fn register_client(
        &mut self,
        client: &ClientKey,
        seen: RegistrationDay,
    ) -> Result<(), MailboxError>;
    /// Every client the gateway serves, with the day it was last seen (`None`
    /// for a registration kept by a version that did not record it).
    fn clients(&self) -> Result<Vec<(ClientKey, Option<RegistrationDay>)>, MailboxError>;
    /// Forgets `client` and deletes every message stored for it (one
    /// transaction in a durable store).
    fn unregister_client(
        &mut self,
        client: &ClientKey,
    ) -> Result<Vec<RemovedMessage>, MailboxError>;
}

/// A day, counted from the Unix epoch: all a gateway keeps of when a client
/// was last connected, so that unused registrations can expire without a
/// record of connection times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistrationDay(pub u64);

impl RegistrationDay {
    /// The day `now` falls on.
    pub fn of(now: Timestamp) -> Self {
        RegistrationDay(now.as_nanos() / 86_400_000_000_000)
    }
}

/// Retention and quotas of a [`Mailbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxConfig {
    /// How long an unacknowledged message is kept.
    pub retention: Duration,
    /// Most messages one client's mailbox may hold.
    pub max_messages_per_client: u64,
    /// Most payload bytes all mailboxes together may hold.
    pub max_total_bytes: u64,
    /// Most messages removed by one call to [`Mailbox::expire`] (one transaction).
    pub expiry_batch: usize,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            retention: Duration::from_secs(24 * 3600),
            max_messages_per_client: 10_000,
            max_total_bytes: 1 << 30,
            expiry_batch: 10_000,
        }
    }
}

/// Why a message was not stored.
#[derive(Debug, thiserror::Error, Clone)]
pub enum PutError {
    /// The client's mailbox, or the gateway's total, is full.
    #[error("mailbox full")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MailboxError),
}

/// A message to store with [`Mailbox::put_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The client it is for.
    pub client: ClientKey,
    /// The SURB id of a reply (all zero for forward packets).
    pub surb_id: SurbId,
    /// The frame (forward packets) or the sealed payload (SURB replies).
    pub payload: Vec<u8>,
    /// A lifetime the sender asked for, if any (capped by the retention).
    pub lifetime: Option<Duration>,
    /// What a recall may delete it by (`None`: nothing may).
    pub recall_tag: Option<RecallTag>,
    /// The id it was given before it was stored ([`Mailbox::reserve_id`]:
    /// it was pushed to its client first); `None`: the next id.
    pub id: Option<MailboxId>,
}

/// The gateway's mailboxes: ids, retention, quotas and counts over a [`MailboxStore`].
#[derive(Debug)]
pub struct Mailbox<S> {
    store: S,
    config: MailboxConfig,
    next_id: u64,
    total: MailboxUsage,
    per_client: HashMap<ClientKey, MailboxUsage>,
}

impl<S: MailboxStore> Mailbox<S> {
    /// Opens the mailboxes kept in `store`, counting what it holds.
    pub fn open(store: S, config: MailboxConfig) -> Result<Self, MailboxError> {
        let mut total = MailboxUsage::default();
        let mut per_client = HashMap::new();
        for (client, usage) in store.usage_by_client()? {
            total.messages = total.messages.saturating_add(usage.messages);
            total.bytes = total.bytes.saturating_add(usage.bytes);
            per_client.insert(client, usage);
        }
        let next_id = store.next_id()?.0;
        Ok(Mailbox {
            store,
            config,
            next_id,
            total,
            per_client,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MailboxConfig {
        &self.config
    }

    /// Stores a message for `client`, committed before this returns. It expires
    /// after the retention, or after `lifetime` if the sender set a shorter one.
    pub fn put(
        &mut self,
        now: Timestamp,
        client: &ClientKey,
        surb_id: SurbId,
        payload: Vec<u8>,
        lifetime: Option<Duration>,
    ) -> Result<MailboxId, PutError> {
        let message = NewMessage {
            client: *client,
            surb_id,
            payload,
            lifetime,
            recall_tag: None,
            id: None,
        };
        self.put_batch(now, vec![message])
            .pop()
            .unwrap_or(Err(PutError::Full))
    }

    /// Stores several messages with one commit (one disk sync for the batch);
    /// returns, in order, each message's id or why it was not stored. When
    /// this returns, every message given an id is durable.
    pub fn put_batch(
        &mut self,
        now: Timestamp,
        messages: Vec<NewMessage>,
    ) -> Vec<Result<MailboxId, PutError>> {
        self.put_batch_deleting(now, messages, &[]).0
    }

    /// Stores several messages and deletes several acknowledged ones with
    /// one commit (one disk sync for both): returns, in order, each
    /// message's id or why it was not stored, and how many of the
    /// acknowledged messages existed (or the store's error: then nothing
    /// was stored and nothing deleted). When this returns, every message
    /// given an id is durable.
    pub fn put_batch_deleting(
        &mut self,
        now: Timestamp,
        messages: Vec<NewMessage>,
        acked: &[(ClientKey, MailboxId)],
    ) -> (
        Vec<Result<MailboxId, PutError>>,
        Result<usize, MailboxError>,
    ) {
        let mut results = Vec::with_capacity(messages.len());
        let mut accepted = Vec::with_capacity(messages.len());
        let mut total = self.total;
        let mut added: HashMap<ClientKey, u64> = HashMap::new();
        let mut next_id = self.next_id;
        for m in messages {
            let bytes = m.payload.len() as u64;
            let pending = added.get(&m.client).copied().unwrap_or(0);
            let stored = self.client_usage(&m.client).messages;
            if stored.saturating_add(pending) >= self.config.max_messages_per_client
                || total.bytes.saturating_add(bytes) > self.config.max_total_bytes
            {
                results.push(Err(PutError::Full));
                continue;
            }
            let keep = m
                .lifetime
                .map_or(self.config.retention, |l| l.min(self.config.retention));
            let id = m.id.unwrap_or_else(|| {
                let id = MailboxId(next_id);
                next_id = next_id.saturating_add(1);
                id
            });
            total.add(bytes);
            *added.entry(m.client).or_default() += 1;
            results.push(Ok(id));
            accepted.push(StoredMessage {
                id,
                client: m.client,
                expires_at: now.saturating_add(keep),
                surb_id: m.surb_id,
                payload: m.payload,
                recall_tag: m.recall_tag,
            });
        }
        if accepted.is_empty() {
            return (results, self.delete_batch(acked));
        }
        let removed = match self.store.put_and_delete_batch(&accepted, acked) {
            Ok(removed) => removed,
            Err(e) => {
                let results = results
                    .into_iter()
                    .map(|r| r.and(Err(PutError::Store(e.clone()))))
                    .collect();
                return (results, Err(e));
            }
        };
        self.next_id = next_id;
        self.total = total;
        for m in &accepted {
            self.per_client
                .entry(m.client)
                .or_default()
                .add(m.payload.len() as u64);
        }
        for r in &removed {
            self.forget(r);
        }
        (results, Ok(removed.len()))
    }

    /// Takes the next id for a message not stored yet (one pushed to its
    /// client before it is stored, if ever), so that it keeps its place in
    /// the order of ids. An id reserved and never stored is never used again
    /// while the gateway runs; after a restart it may be, since it names no
    /// stored message.
    pub fn reserve_id(&mut self) -> MailboxId {
        let id = MailboxId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    /// Up to `limit` undelivered messages of `client` with ids above `after`, oldest first.
    pub fn list(
        &self,
        client: &ClientKey,
        after: Option<MailboxId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, MailboxError> {
        if limit == 0 || self.client_usage(client).messages == 0 {
            return Ok(Vec::new());
        }
        self.store.list(client, after, limit)
    }

    /// Deletes message `id` of `client` (the client acknowledged it); `false`
    /// if `client` has no such message.
    pub fn delete(&mut self, client: &ClientKey, id: MailboxId) -> Result<bool, MailboxError> {
        match self.store.delete(client, id)? {
            Some(removed) => {
                self.forget(&removed);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Deletes several acknowledged messages with one commit; returns how many existed.
    pub fn delete_batch(
        &mut self,
        messages: &[(ClientKey, MailboxId)],
    ) -> Result<usize, MailboxError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let removed = self.store.delete_batch(messages)?;
        for r in &removed {
            self.forget(r);
        }
        Ok(removed.len())
    }

    /// A recall for `client`: deletes its messages stored under one of
    /// `tags` (one commit). Messages of other clients are never touched,
    /// whatever their tags.
    pub fn recall(
        &mut self,
        client: &ClientKey,
        tags: &[RecallTag],
    ) -> Result<RecallDeletion, MailboxError> {
        if tags.is_empty() || self.client_usage(client).messages == 0 {
            return Ok(RecallDeletion::default());
        }
        let removed = self.store.delete_tagged(client, tags)?;
        let mut matched: Vec<RecallTag> = removed.iter().map(|(tag, _)| *tag).collect();
        matched.sort_unstable();
        matched.dedup();
        for (_, r) in &removed {
            self.forget(r);
        }
        Ok(RecallDeletion {
            deleted: removed.len() as u64,
            tags_matched: matched.len() as u64,
        })
    }

    /// Removes every message whose retention ran out by `now` (at most one
    /// batch per call); returns how many were removed.
    pub fn expire(&mut self, now: Timestamp) -> Result<u64, MailboxError> {
        let removed = self.store.expire(now, self.config.expiry_batch.max(1))?;
        for r in &removed {
            self.forget(r);
        }
        Ok(removed.len() as u64)
    }

    /// The earliest instant a stored message expires.
    pub fn next_expiry(&self) -> Result<Option<Timestamp>, MailboxError> {
        self.store.next_expiry()
    }

    /// What all mailboxes hold.
    pub fn usage(&self) -> MailboxUsage {
        self.total
    }

    /// What `client`'s mailbox holds.
    pub fn client_usage(&self, client: &ClientKey) -> MailboxUsage {
        self.per_client.get(client).copied().unwrap_or_default()
    }

    /// Forgets `client` and deletes its messages; returns how many there were.
    pub fn unregister(&mut self, client: &ClientKey) -> Result<u64, MailboxError> {
        let removed = self.store.unregister_client(client)?;
        for r in &removed {
            self.forget(r);
        }
        Ok(removed.len() as u64)
    }

    /// The store, for registering clients (changing messages behind the
    /// mailbox's back would break its counts).
    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn forget(&mut self, removed: &RemovedMessage) {
        self.total.remove(removed.bytes);
        if let Some(u) = self.per_client.get_mut(&removed.client) {
            u.remove(removed.bytes);
            if u.messages == 0 {
                self.per_client.remove(&removed.client);
            }
        }
    }
}

#[derive(Clone, Debug)]
struct MemoryRecord {
    expires_at: Timestamp,
    surb_id: SurbId,
    payload: Vec<u8>,
    recall_tag: Option<RecallTag>,
}

/// A [`MailboxStore`] in memory: for tests and the simulator. Not durable.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    messages: BTreeMap<(ClientKey, u64), MemoryRecord>,
    expiry: BTreeMap<(Timestamp, u64), ClientKey>,
    /// (client, tag, id) of every tagged message.
    tags: BTreeSet<(ClientKey, RecallTag, u64)>,
    clients: BTreeMap<ClientKey, RegistrationDay>,
    next_id: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl MailboxStore for MemoryStore {
    fn put(&mut self, m: &StoredMessage) -> Result<(), MailboxError> {
        self.messages.insert(
            (m.client, m.id.0),
            MemoryRecord {
                expires_at: m.expires_at,
                surb_id: m.surb_id,
                payload: m.payload.clone(),
                recall_tag: m.recall_tag,
            },
        );
        if let Some(tag) = m.recall_tag {
            self.tags.insert((m.client, tag, m.id.0));
        }
        self.expiry.insert((m.expires_at, m.id.0), m.client);
        self.next_id = self.next_id.max(m.id.0.saturating_add(1));
        Ok(())
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
        Ok(self
            .messages
            .range((*client, start)..=(*client, u64::MAX))
            .take(limit)
            .map(|((client, id), r)| StoredMessage {
                id: MailboxId(*id),
                client: *client,
                expires_at: r.expires_at,
                surb_id: r.surb_id,
                payload: r.payload.clone(),
                recall_tag: r.recall_tag,
            })
            .collect())
    }

    fn delete(
        &mut self,
        client: &ClientKey,
        id: MailboxId,
    ) -> Result<Option<RemovedMessage>, MailboxError> {
        Ok(self.messages.remove(&(*client, id.0)).map(|r| {
            self.expiry.remove(&(r.expires_at, id.0));
            if let Some(tag) = r.recall_tag {
                self.tags.remove(&(*client, tag, id.0));
            }
            RemovedMessage {
                client: *client,
                id,
                bytes: r.payload.len() as u64,
            }
        }))
    }

    fn expire(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        let due: Vec<(Timestamp, u64)> = self
            .expiry
            .range(..=(now, u64::MAX))
            .take(limit)
            .map(|(k, _)| *k)
            .collect();
        let mut removed = Vec::with_capacity(due.len());
        for key in due {
            if let Some(client) = self.expiry.remove(&key)
                && let Some(r) = self.messages.remove(&(client, key.1))
            {
                if let Some(tag) = r.recall_tag {
                    self.tags.remove(&(client, tag, key.1));
                }
                removed.push(RemovedMessage {
                    client,
                    id: MailboxId(key.1),
                    bytes: r.payload.len() as u64,
                });
            }
        }
        Ok(removed)
    }

    fn delete_tagged(
        &mut self,
        client: &ClientKey,
        tags: &[RecallTag],
    ) -> Result<Vec<(RecallTag, RemovedMessage)>, MailboxError> {
        let mut ids = Vec::new();
        for tag in tags {
            ids.extend(
                self.tags
                    .range((*client, *tag, 0)..=(*client, *tag, u64::MAX))
                    .map(|(_, tag, id)| (*tag, *id)),
            );
        }
        let mut removed = Vec::with_capacity(ids.len());
        for (tag, id) in ids {
            if let Some(r) = self.delete(client, MailboxId(id))? {
                removed.push((tag, r));
            }
        }
        Ok(removed)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, MailboxError> {
        Ok(self.expiry.keys().next().map(|(t, _)| *t))
    }

    fn usage_by_client(&self) -> Result<Vec<(ClientKey, MailboxUsage)>, MailboxError> {
        let mut usage: BTreeMap<ClientKey, MailboxUsage> = BTreeMap::new();
        for ((client, _), r) in &self.messages {
            usage
                .entry(*client)
                .or_default()
                .add(r.payload.len() as u64);
        }
        Ok(usage.into_iter().collect())
    }

    fn next_id(&self) -> Result<MailboxId, MailboxError> {
        Ok(MailboxId(self.next_id))
    }

    fn register_client(
        &mut self,
        client: &ClientKey,
        seen: RegistrationDay,
    ) -> Result<(), MailboxError> {
        self.clients.insert(*client, seen);
        Ok(())
    }

    fn clients(&self) -> Result<Vec<(ClientKey, Option<RegistrationDay>)>, MailboxError> {
        Ok(self.clients.iter().map(|(c, d)| (*c, Some(*d))).collect())
    }

    fn unregister_client(
        &mut self,
        client: &ClientKey,
    ) -> Result<Vec<RemovedMessage>, MailboxError> {
        self.clients.remove(client);
        let ids: Vec<u64> = self
            .messages
            .range((*client, 0)..=(*client, u64::MAX))
            .map(|((_, id), _)| *id)
            .collect();
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            removed.extend(self.delete(client, MailboxId(id))?);
        }
        Ok(removed)
    }
}
