//! The prekeys a gateway keeps for its clients and hands out to whoever
//! asks through the mixnet (docs/gateway.md, "Prekey service").
//!
//! A client publishes one bundle under its identity fingerprint and uploads
//! one-time prekeys; both are opaque bytes here (the asker checks their
//! signatures, never the gateway). An answer is the bundle and one one-time
//! prekey, which leaves the store as it is handed out, so each goes once.
//!
//! [`PrekeyStore`] holds the bytes and the per-client rules (one fingerprint
//! per client, a fingerprint held by one client only, at most
//! [`MAX_ONE_TIME_PREKEYS_PER_CLIENT`] one-time prekeys);
//! [`MemoryPrekeyStore`] is for tests and the simulator,
//! `gateway::RedbPrekeyStore` the durable one, in the mailbox database. The
//! sizes are checked by the core before a store sees them.

use std::collections::{BTreeMap, HashMap};

use protocol::prekeys::{
    BUNDLE_ANSWER_OVERHEAD, BundleAnswer, FINGERPRINT_SIZE, MAX_ONE_TIME_PREKEY_SIZE,
    MAX_ONE_TIME_PREKEYS_PER_CLIENT, MAX_PUBLISHED_BUNDLE_SIZE,
};

use crate::error::MailboxError;
use crate::mailbox::ClientKey;

/// A client identity's fingerprint: the name its bundle is asked for by.
pub type Fingerprint = [u8; FINGERPRINT_SIZE];

/// What [`PrekeyStore::publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Kept (replacing the client's earlier bundle).
    Published,
    /// Another client holds that fingerprint: nothing changed.
    FingerprintTaken,
}

/// What [`PrekeyStore::add_one_time`] did with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OneTimeAdded {
    /// Keys kept.
    pub stored: u32,
    /// Keys whose id the client already had kept (ignored).
    pub duplicate: u32,
    /// Keys refused because the client had [`MAX_ONE_TIME_PREKEYS_PER_CLIENT`].
    pub full: u32,
}

/// What [`PrekeyStore::take`] found for a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrekeyTake {
    /// No client published that fingerprint.
    Unknown,
    /// The published bundle alone does not fit the room given.
    DoesNotFit,
    /// The answer; its one-time prekey (if any) is gone from the store.
    Answer(BundleAnswer),
}

/// Where a gateway keeps its clients' prekeys.
///
/// Every method that changes the store has committed the change durably (as
/// far as the store is durable at all) when it returns `Ok`. Failures are
/// [`MailboxError`]s: the durable store lives in the mailbox database.
pub trait PrekeyStore {
    /// Keeps `published` as `client`'s bundle under `fingerprint`. A client
    /// has one fingerprint: publishing under a new one releases the old one
    /// and drops the one-time prekeys uploaded for it (they belong to the
    /// old identity). A fingerprint another client holds is refused.
    fn publish(
        &mut self,
        client: &ClientKey,
        fingerprint: &Fingerprint,
        published: &[u8],
    ) -> Result<PublishOutcome, MailboxError>;
    /// Keeps `client`'s one-time prekeys (id, bytes), up to
    /// [`MAX_ONE_TIME_PREKEYS_PER_CLIENT`]; an id already kept is ignored.
    fn add_one_time(
        &mut self,
        client: &ClientKey,
        keys: &[(u32, Vec<u8>)],
    ) -> Result<OneTimeAdded, MailboxError>;
    /// The bundle published under `fingerprint` and the one-time prekey of
    /// lowest id that fits, with it, in `room` encoded bytes
    /// ([`BundleAnswer::encoded_len`]); that key is removed (committed
    /// before this returns). No key fits, or none is left: the bundle alone.
    fn take(&mut self, fingerprint: &Fingerprint, room: usize) -> Result<PrekeyTake, MailboxError>;
    /// Whether `client` has a published bundle, and its one-time prekeys left.
    fn stock(&self, client: &ClientKey) -> Result<(bool, u32), MailboxError>;
    /// Deletes everything kept for `client`.
    fn remove_client(&mut self, client: &ClientKey) -> Result<(), MailboxError>;
    /// Published bundles kept.
    fn published_count(&self) -> Result<u64, MailboxError>;
}

/// The largest one-time prekey that fits an answer of `room` bytes beside a
/// published bundle of `published` bytes (`None`: not even the bundle fits).
pub fn one_time_room(room: usize, published: usize) -> Option<usize> {
    room.checked_sub(BUNDLE_ANSWER_OVERHEAD + published)
}

/// Whether a published bundle has a size the gateway keeps.
pub fn published_size_ok(published: &[u8]) -> bool {
    (1..=MAX_PUBLISHED_BUNDLE_SIZE).contains(&published.len())
}

/// Whether a one-time prekey has a size the gateway keeps.
pub fn one_time_size_ok(key: &[u8]) -> bool {
    (1..=MAX_ONE_TIME_PREKEY_SIZE).contains(&key.len())
}

/// What one client has kept in a [`MemoryPrekeyStore`].
#[derive(Clone, Debug, Default)]
struct ClientPrekeys {
    bundle: Option<(Fingerprint, Vec<u8>)>,
    one_time: BTreeMap<u32, Vec<u8>>,
}

/// Prekeys in memory, for tests and the simulator.
#[derive(Clone, Debug, Default)]
pub struct MemoryPrekeyStore {
    owners: HashMap<Fingerprint, ClientKey>,
    clients: HashMap<ClientKey, ClientPrekeys>,
}

impl MemoryPrekeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PrekeyStore for MemoryPrekeyStore {
    fn publish(
        &mut self,
        client: &ClientKey,
        fingerprint: &Fingerprint,
        published: &[u8],
    ) -> Result<PublishOutcome, MailboxError> {
        if self.owners.get(fingerprint).is_some_and(|o| o != client) {
            return Ok(PublishOutcome::FingerprintTaken);
        }
        let kept = self.clients.entry(*client).or_default();
        if let Some((old, _)) = &kept.bundle
            && old != fingerprint
        {
            self.owners.remove(old);
            kept.one_time.clear();
        }
        kept.bundle = Some((*fingerprint, published.to_vec()));
        self.owners.insert(*fingerprint, *client);
        Ok(PublishOutcome::Published)
    }

    fn add_one_time(
        &mut self,
        client: &ClientKey,
        keys: &[(u32, Vec<u8>)],
    ) -> Result<OneTimeAdded, MailboxError> {
        let kept = self.clients.entry(*client).or_default();
        let mut added = OneTimeAdded::default();
        for (id, key) in keys {
            if kept.one_time.contains_key(id) {
                added.duplicate += 1;
            } else if kept.one_time.len() >= MAX_ONE_TIME_PREKEYS_PER_CLIENT {
                added.full += 1;
            } else {
                kept.one_time.insert(*id, key.clone());
                added.stored += 1;
            }
        }
        Ok(added)
    }

    fn take(&mut self, fingerprint: &Fingerprint, room: usize) -> Result<PrekeyTake, MailboxError> {
        let Some(kept) = self
            .owners
            .get(fingerprint)
            .and_then(|owner| self.clients.get_mut(owner))
        else {
            return Ok(PrekeyTake::Unknown);
        };
        let Some((_, published)) = &kept.bundle else {
            return Ok(PrekeyTake::Unknown);
        };
        let Some(key_room) = one_time_room(room, published.len()) else {
            return Ok(PrekeyTake::DoesNotFit);
        };
        let id = kept
            .one_time
            .iter()
            .find(|(_, key)| !key.is_empty() && key.len() <= key_room)
            .map(|(id, _)| *id);
        Ok(PrekeyTake::Answer(BundleAnswer {
            published: published.clone(),
            one_time: id.and_then(|id| kept.one_time.remove(&id)),
        }))
    }

    fn stock(&self, client: &ClientKey) -> Result<(bool, u32), MailboxError> {
        Ok(self.clients.get(client).map_or((false, 0), |kept| {
            (
                kept.bundle.is_some(),
                u32::try_from(kept.one_time.len()).unwrap_or(u32::MAX),
            )
        }))
    }

    fn remove_client(&mut self, client: &ClientKey) -> Result<(), MailboxError> {
        if let Some(ClientPrekeys {
            bundle: Some((fingerprint, _)),
            ..
        }) = self.clients.remove(client)
        {
            self.owners.remove(&fingerprint);
        }
        Ok(())
    }

    fn published_count(&self) -> Result<u64, MailboxError> {
        Ok(self.owners.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientKey = [1; 32];
    const B: ClientKey = [2; 32];

    #[test]
    fn a_fingerprint_belongs_to_one_client_and_a_new_one_drops_the_old_keys() {
        let mut store = MemoryPrekeyStore::new();
        assert_eq!(
            store.publish(&A, &[7; 20], b"a").unwrap(),
            PublishOutcome::Published
        );
        assert_eq!(
            store.publish(&B, &[7; 20], b"b").unwrap(),
            PublishOutcome::FingerprintTaken
        );
        store.add_one_time(&A, &[(1, vec![1])]).unwrap();
        assert_eq!(store.stock(&A).unwrap(), (true, 1));
        // The same fingerprint again keeps the one-time keys.
        store.publish(&A, &[7; 20], b"a2").unwrap();
        assert_eq!(store.stock(&A).unwrap(), (true, 1));
        // A new fingerprint releases the old one and drops its keys.
        store.publish(&A, &[8; 20], b"a3").unwrap();
        assert_eq!(store.stock(&A).unwrap(), (true, 0));
        assert_eq!(store.take(&[7; 20], 4000).unwrap(), PrekeyTake::Unknown);
        assert_eq!(
            store.publish(&B, &[7; 20], b"b").unwrap(),
            PublishOutcome::Published
        );
        assert_eq!(store.published_count().unwrap(), 2);
        store.remove_client(&A).unwrap();
        assert_eq!(store.published_count().unwrap(), 1);
        assert_eq!(store.take(&[8; 20], 4000).unwrap(), PrekeyTake::Unknown);
    }

    #[test]
    fn take_hands_out_the_lowest_key_that_fits_once() {
        let mut store = MemoryPrekeyStore::new();
        store.publish(&A, &[7; 20], &[0; 10]).unwrap();
        store
            .add_one_time(&A, &[(5, vec![5; 100]), (3, vec![3; 10])])
            .unwrap();
        // Room for the bundle and a key of 20 bytes: key 3 (10 bytes) fits.
        let room = BUNDLE_ANSWER_OVERHEAD + 10 + 20;
        let PrekeyTake::Answer(first) = store.take(&[7; 20], room).unwrap() else {
            panic!("no answer");
        };
        assert_eq!(first.one_time, Some(vec![3; 10]));
        // Key 5 does not fit that room: the bundle alone, key 5 stays.
        let PrekeyTake::Answer(second) = store.take(&[7; 20], room).unwrap() else {
            panic!("no answer");
        };
        assert_eq!(second.one_time, None);
        assert_eq!(store.stock(&A).unwrap(), (true, 1));
        assert_eq!(store.take(&[7; 20], 10).unwrap(), PrekeyTake::DoesNotFit);
    }

    #[test]
    fn the_supply_is_capped_and_duplicates_ignored() {
        let mut store = MemoryPrekeyStore::new();
        let keys: Vec<(u32, Vec<u8>)> = (0..MAX_ONE_TIME_PREKEYS_PER_CLIENT as u32 + 5)
            .map(|id| (id, vec![1]))
            .collect();
        let added = store.add_one_time(&A, &keys).unwrap();
        assert_eq!((added.stored, added.full), (100, 5));
        let again = store.add_one_time(&A, &keys[..3]).unwrap();
        assert_eq!(again.duplicate, 3);
        assert_eq!(store.stock(&A).unwrap(), (false, 100));
    }
}
