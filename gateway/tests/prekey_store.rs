#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! The prekey stores: the same rules in memory and in `redb`, the `redb`
//! one surviving a reopen (a one-time prekey taken stays taken), a
//! database from before the prekey service opening, and a gateway over
//! `redb` serving what it kept before a restart.

use gateway::{RedbPrekeyStore, RedbStore};
use gateway_core::prekeys::{MemoryPrekeyStore, PrekeyStore, PrekeyTake, PublishOutcome};
use gateway_core::{GatewayConfig, GatewayCore, Mailbox, MailboxConfig, MailboxStore};
use protocol::keys::NodeId;
use protocol::prekeys::{BUNDLE_ANSWER_OVERHEAD, BundleAnswer, MAX_ONE_TIME_PREKEYS_PER_CLIENT};

const ALICE: [u8; 32] = [1; 32];
const BOB: [u8; 32] = [2; 32];
const FP_A: [u8; 20] = [0xA1; 20];
const FP_B: [u8; 20] = [0xB2; 20];
/// Room for any answer of these tests.
const ROOM: usize = 4000;

fn answer(take: PrekeyTake) -> BundleAnswer {
    match take {
        PrekeyTake::Answer(answer) => answer,
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// The rules every store keeps; returns the store for more checks.
fn check_rules<S: PrekeyStore>(mut store: S) -> S {
    assert_eq!(store.stock(&ALICE).unwrap(), (false, 0));
    assert_eq!(store.take(&FP_A, ROOM).unwrap(), PrekeyTake::Unknown);
    assert_eq!(
        store.publish(&ALICE, &FP_A, b"alice v1").unwrap(),
        PublishOutcome::Published
    );
    assert_eq!(
        store.publish(&BOB, &FP_A, b"bob").unwrap(),
        PublishOutcome::FingerprintTaken
    );
    let added = store
        .add_one_time(
            &ALICE,
            &[(3, vec![3; 30]), (1, vec![1; 10]), (2, vec![2; 20])],
        )
        .unwrap();
    assert_eq!((added.stored, added.duplicate, added.full), (3, 0, 0));
    let again = store.add_one_time(&ALICE, &[(1, vec![9; 10])]).unwrap();
    assert_eq!(again.duplicate, 1);
    assert_eq!(store.stock(&ALICE).unwrap(), (true, 3));
    // Republishing under the same fingerprint keeps the keys.
    store.publish(&ALICE, &FP_A, b"alice v2").unwrap();
    assert_eq!(store.stock(&ALICE).unwrap(), (true, 3));

    // Lowest id first, each once.
    let first = answer(store.take(&FP_A, ROOM).unwrap());
    assert_eq!(first.published, b"alice v2");
    assert_eq!(first.one_time, Some(vec![1; 10]));
    // A room that fits the bundle and a key of 25 bytes: key 2, not key 3.
    let room = BUNDLE_ANSWER_OVERHEAD + 8 + 25;
    assert_eq!(
        answer(store.take(&FP_A, room).unwrap()).one_time,
        Some(vec![2; 20])
    );
    assert_eq!(answer(store.take(&FP_A, room).unwrap()).one_time, None);
    assert_eq!(store.take(&FP_A, 8).unwrap(), PrekeyTake::DoesNotFit);
    assert_eq!(store.stock(&ALICE).unwrap(), (true, 1));
    assert_eq!(
        answer(store.take(&FP_A, ROOM).unwrap()).one_time,
        Some(vec![3; 30])
    );
    assert_eq!(answer(store.take(&FP_A, ROOM).unwrap()).one_time, None);
    assert_eq!(store.stock(&ALICE).unwrap(), (true, 0));

    // The cap.
    let many: Vec<(u32, Vec<u8>)> = (0..MAX_ONE_TIME_PREKEYS_PER_CLIENT as u32 + 7)
        .map(|id| (id + 100, vec![7; 5]))
        .collect();
    let added = store.add_one_time(&ALICE, &many).unwrap();
    assert_eq!((added.stored, added.full), (100, 7));
    assert_eq!(store.stock(&ALICE).unwrap(), (true, 100));

    // A new fingerprint releases the old one and drops the old identity's keys.
    store.publish(&ALICE, &FP_B, b"alice new identity").unwrap();
    assert_eq!(store.stock(&ALICE).unwrap(), (true, 0));
    assert_eq!(store.take(&FP_A, ROOM).unwrap(), PrekeyTake::Unknown);
    assert_eq!(
        store.publish(&BOB, &FP_A, b"bob").unwrap(),
        PublishOutcome::Published
    );
    assert_eq!(store.published_count().unwrap(), 2);

    // Removing a client removes only its prekeys.
    store.add_one_time(&BOB, &[(1, vec![1])]).unwrap();
    store.remove_client(&ALICE).unwrap();
    assert_eq!(store.stock(&ALICE).unwrap(), (false, 0));
    assert_eq!(store.take(&FP_B, ROOM).unwrap(), PrekeyTake::Unknown);
    assert_eq!(store.stock(&BOB).unwrap(), (true, 1));
    assert_eq!(store.published_count().unwrap(), 1);
    store
}

#[test]
fn memory_store_rules() {
    check_rules(MemoryPrekeyStore::new());
}

#[test]
fn redb_store_rules() {
    let dir = tempfile::tempdir().unwrap();
    check_rules(
        RedbStore::open(dir.path().join("mailbox.redb"))
            .unwrap()
            .prekey_store(),
    );
}

fn open(path: &std::path::Path) -> (RedbStore, RedbPrekeyStore) {
    let store = RedbStore::open(path).unwrap();
    let prekeys = store.prekey_store();
    (store, prekeys)
}

#[test]
fn redb_prekeys_survive_a_reopen_and_a_taken_key_stays_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    let first = {
        let (_mailbox, mut prekeys) = open(&path);
        prekeys.publish(&ALICE, &FP_A, b"alice").unwrap();
        prekeys
            .add_one_time(&ALICE, &[(1, vec![1; 4]), (2, vec![2; 4]), (3, vec![3; 4])])
            .unwrap();
        answer(prekeys.take(&FP_A, ROOM).unwrap())
    };
    assert_eq!(first.one_time, Some(vec![1; 4]));
    let (_mailbox, mut prekeys) = open(&path);
    assert_eq!(prekeys.stock(&ALICE).unwrap(), (true, 2));
    assert_eq!(prekeys.published_count().unwrap(), 1);
    assert_eq!(
        prekeys.publish(&BOB, &FP_A, b"bob").unwrap(),
        PublishOutcome::FingerprintTaken,
        "the fingerprint is still Alice's"
    );
    let second = answer(prekeys.take(&FP_A, ROOM).unwrap());
    assert_eq!(second.published, b"alice");
    assert_eq!(second.one_time, Some(vec![2; 4]));
}

/// A database written before the prekey service (the mailbox tables only):
/// it opens, its mail is there, and it holds no prekeys until some come.
#[test]
fn a_database_from_before_the_prekey_service_opens() {
    use redb::{Database, TableDefinition};
    const CLIENTS: TableDefinition<[u8; 32], ()> = TableDefinition::new("clients");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(CLIENTS).unwrap().insert(ALICE, ()).unwrap();
        txn.open_table(META).unwrap().insert("next_id", 7).unwrap();
        txn.commit().unwrap();
    }
    let (mailbox, mut prekeys) = open(&path);
    let mailbox = Mailbox::open(mailbox, MailboxConfig::default()).unwrap();
    assert_eq!(mailbox.store().clients().unwrap().len(), 1);
    assert_eq!(prekeys.published_count().unwrap(), 0);
    assert_eq!(prekeys.stock(&ALICE).unwrap(), (false, 0));
    prekeys.publish(&ALICE, &FP_A, b"alice").unwrap();
    assert_eq!(prekeys.stock(&ALICE).unwrap(), (true, 0));
}

#[test]
fn a_gateway_over_redb_counts_the_bundles_it_kept_before_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    {
        let (_mailbox, mut prekeys) = open(&path);
        prekeys.publish(&ALICE, &FP_A, b"alice").unwrap();
        prekeys.publish(&BOB, &FP_B, b"bob").unwrap();
    }
    let (store, prekeys) = open(&path);
    let mailbox = Mailbox::open(store, MailboxConfig::default()).unwrap();
    let core = GatewayCore::new(NodeId([4; 32]), GatewayConfig::default(), mailbox)
        .unwrap()
        .with_prekey_store(prekeys);
    assert_eq!(core.stats().snapshot().published_bundles, 2);
    assert_eq!(core.prekeys().stock(&BOB).unwrap(), (true, 0));
}
