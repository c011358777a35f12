#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! Mailbox semantics on both stores: order, deletion on ack, retention,
//! quotas, and the redb file surviving a restart.

#[path = "../core/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use gateway::RedbStore;
use gateway_core::mailbox::{PutError, RegistrationDay};
use gateway_core::{
    GatewayConfig, GatewayCore, Mailbox, MailboxConfig, MailboxId, MailboxStore, MemoryStore,
    NewMessage,
};
use protocol::keys::{NodeId, SphinxKeyPair};
use protocol::packet::Delivery;
use protocol::packet::SURB_ID_SIZE;
use protocol::recall::RecallTag;
use protocol::surb::SurbId;
use protocol::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const ALICE: [u8; 32] = [1; 32];
const BOB: [u8; 32] = [2; 32];
const SURB: SurbId = SurbId([9; SURB_ID_SIZE]);

fn secs(s: u64) -> Timestamp {
    Timestamp::from_millis(s * 1_000)
}

fn config(retention_secs: u64) -> MailboxConfig {
    MailboxConfig {
        retention: Duration::from_secs(retention_secs),
        ..MailboxConfig::default()
    }
}

/// The same behaviour from any store.
fn check_semantics<S: MailboxStore>(store: S) {
    let mut m = Mailbox::open(store, config(100)).unwrap();
    let a1 = m.put(secs(0), &ALICE, SURB, b"a1".to_vec(), None).unwrap();
    let b1 = m.put(secs(1), &BOB, SURB, b"b1".to_vec(), None).unwrap();
    let a2 = m
        .put(
            secs(2),
            &ALICE,
            SurbId([0; SURB_ID_SIZE]),
            b"a22".to_vec(),
            None,
        )
        .unwrap();
    // The sender asks for 10 s: kept 10 s, not the 100 s retention.
    let a3 = m
        .put(
            secs(3),
            &ALICE,
            SURB,
            b"a3".to_vec(),
            Some(Duration::from_secs(10)),
        )
        .unwrap();
    // A sender cannot make a message outlive the retention.
    let b2 = m
        .put(
            secs(4),
            &BOB,
            SURB,
            b"b2".to_vec(),
            Some(Duration::from_secs(1_000)),
        )
        .unwrap();
    assert!(a1 < b1 && b1 < a2 && a2 < a3 && a3 < b2);

    let alice: Vec<_> = m.list(&ALICE, None, 10).unwrap();
    assert_eq!(
        alice.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a1, a2, a3]
    );
    assert_eq!(alice[1].payload, b"a22");
    assert!(alice[1].surb_id.is_forward());
    assert_eq!(alice[2].expires_at, secs(13));
    assert_eq!(m.list(&ALICE, Some(a1), 1).unwrap()[0].id, a2);
    assert!(
        m.list(&ALICE, Some(MailboxId(u64::MAX)), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.list(&BOB, None, 10).unwrap()[1].expires_at, secs(104));
    assert_eq!(m.usage().messages, 5);
    assert_eq!(m.usage().bytes, 11);
    assert_eq!(m.client_usage(&ALICE).messages, 3);

    // Only the owner's ack deletes.
    assert!(!m.delete(&BOB, a1).unwrap());
    assert!(m.delete(&ALICE, a1).unwrap());
    assert!(!m.delete(&ALICE, a1).unwrap());
    assert_eq!(m.usage().messages, 4);

    // Retention: a3 goes at 13 s, the rest at 100 s after they came.
    assert_eq!(m.next_expiry().unwrap(), Some(secs(13)));
    assert_eq!(m.expire(secs(12)).unwrap(), 0);
    assert_eq!(m.expire(secs(13)).unwrap(), 1);
    assert_eq!(m.expire(secs(101)).unwrap(), 1, "b1");
    assert_eq!(m.expire(secs(1_000)).unwrap(), 2, "a2 and b2");
    assert_eq!(m.usage().messages, 0);
    assert_eq!(m.usage().bytes, 0);
    assert!(m.list(&ALICE, None, 10).unwrap().is_empty());
    assert_eq!(m.next_expiry().unwrap(), None);
    // Ids keep growing after deletions.
    let next = m.put(secs(2_000), &BOB, SURB, vec![], None).unwrap();
    assert!(next > b2);
}

#[test]
fn memory_store_semantics() {
    check_semantics(MemoryStore::new());
}

#[test]
fn redb_store_semantics() {
    let dir = tempfile::tempdir().unwrap();
    check_semantics(RedbStore::open(dir.path().join("mailbox.redb")).unwrap());
}

#[test]
fn quotas_refuse_instead_of_growing() {
    let mut m = Mailbox::open(
        MemoryStore::new(),
        MailboxConfig {
            max_messages_per_client: 2,
            max_total_bytes: 10,
            ..MailboxConfig::default()
        },
    )
    .unwrap();
    m.put(secs(0), &ALICE, SURB, vec![0; 3], None).unwrap();
    m.put(secs(0), &ALICE, SURB, vec![0; 3], None).unwrap();
    assert!(matches!(
        m.put(secs(0), &ALICE, SURB, vec![0; 1], None),
        Err(PutError::Full)
    ));
    m.put(secs(0), &BOB, SURB, vec![0; 4], None).unwrap();
    assert!(matches!(
        m.put(secs(0), &BOB, SURB, vec![0; 1], None),
        Err(PutError::Full)
    ));
    assert_eq!(m.usage().bytes, 10);
}

#[test]
fn redb_mailbox_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    let (kept, gone) = {
        let mut store = RedbStore::open(&path).unwrap();
        store.register_client(&ALICE, RegistrationDay(3)).unwrap();
        store.register_client(&ALICE, RegistrationDay(4)).unwrap();
        let mut m = Mailbox::open(store, config(100)).unwrap();
        let gone = m.put(secs(0), &ALICE, SURB, b"one".to_vec(), None).unwrap();
        let kept = m.put(secs(1), &ALICE, SURB, b"two".to_vec(), None).unwrap();
        assert!(m.delete(&ALICE, gone).unwrap());
        (kept, gone)
    };
    // The process is gone; a new one opens the same file.
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.clients().unwrap(),
        vec![(ALICE, Some(RegistrationDay(4)))]
    );
    let mut m = Mailbox::open(store, config(100)).unwrap();
    assert_eq!(m.usage().messages, 1);
    assert_eq!(m.usage().bytes, 3);
    let listed = m.list(&ALICE, None, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id,
            listed[0].payload.as_slice(),
            listed[0].surb_id
        ),
        (kept, b"two".as_slice(), SURB)
    );
    // Ids are never reused, not even the deleted one's.
    let new = m
        .put(secs(2), &ALICE, SURB, b"three".to_vec(), None)
        .unwrap();
    assert!(new > kept && new != gone);
    // Expiry instants survived too.
    assert_eq!(m.next_expiry().unwrap(), Some(secs(101)));
}

#[test]
fn redb_unregister_deletes_the_client_and_only_its_mail_durably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    {
        let mut store = RedbStore::open(&path).unwrap();
        store.register_client(&ALICE, RegistrationDay(1)).unwrap();
        store.register_client(&BOB, RegistrationDay(2)).unwrap();
        let mut m = Mailbox::open(store, config(100)).unwrap();
        for n in 0..3u8 {
            m.put(secs(0), &ALICE, SURB, vec![n; 10], None).unwrap();
        }
        m.put(secs(0), &BOB, SURB, vec![9; 4], None).unwrap();
        assert_eq!(m.unregister(&ALICE).unwrap(), 3);
        assert_eq!((m.usage().messages, m.usage().bytes), (1, 4));
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.clients().unwrap(),
        vec![(BOB, Some(RegistrationDay(2)))]
    );
    let mut m = Mailbox::open(store, config(100)).unwrap();
    assert_eq!((m.usage().messages, m.usage().bytes), (1, 4));
    assert!(m.list(&ALICE, None, 10).unwrap().is_empty());
    // Alice's expiry entries went with her messages: only Bob's is left.
    assert_eq!(m.expire(secs(1_000)).unwrap(), 1);
    assert_eq!(m.next_expiry().unwrap(), None);
}

#[test]
fn gateway_over_redb_delivers_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let bob = SphinxKeyPair::generate(&mut rng);
    let key = bob.public().to_bytes();
    let gw = NodeId([5; 32]);
    {
        let mailbox = Mailbox::open(RedbStore::open(&path).unwrap(), config(100)).unwrap();
        let mut core = GatewayCore::new(gw, GatewayConfig::default(), mailbox).unwrap();
        // Bob registers by connecting once, then leaves.
        let (c, _) = connect(&mut core, &mut rng, secs(0), &bob);
        core.close_session(c.session);
        for n in 1..=3u8 {
            let d = Delivery {
                destination: key,
                surb_id: SurbId([n; SURB_ID_SIZE]),
                payload: vec![n; protocol::link::DELIVERY_PAYLOAD_SIZE],
            };
            core.handle_delivery(secs(1), d);
        }
        // Bob saw the first one pushed but crashed before acking the others.
        let (c, messages) = connect(&mut core, &mut rng, secs(2), &bob);
        let ids = mailbox_ids(&messages);
        assert_eq!(ids.len(), 3);
        let ack = protocol::link::ClientMessage::AckDelivery { mailbox_id: ids[0] };
        core.handle_client_bytes(
            secs(2),
            c.session,
            &protocol::link::LinkMessage::encode(&ack),
        );
    }
    let mailbox = Mailbox::open(RedbStore::open(&path).unwrap(), config(100)).unwrap();
    let mut core = GatewayCore::new(gw, GatewayConfig::default(), mailbox).unwrap();
    assert!(core.is_registered(&key), "registration survives");
    assert_eq!(core.stats().snapshot().mailbox_messages, 2);
    let (_, messages) = connect(&mut core, &mut rng, secs(3), &bob);
    let payloads: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| match m {
            protocol::link::GatewayMessage::Deliver { payload, .. } => payload.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let size = protocol::link::DELIVERY_PAYLOAD_SIZE;
    assert_eq!(payloads, vec![vec![2u8; size], vec![3u8; size]]);
}

#[test]
fn the_gateway_expires_messages_after_the_retention_and_counts_them() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let config = GatewayConfig {
        expiry_interval: Duration::from_secs(5),
        ..GatewayConfig::default()
    };
    let mailbox = Mailbox::open(MemoryStore::new(), self::config(30)).unwrap();
    let mut core = GatewayCore::new(NodeId([6; 32]), config, mailbox).unwrap();
    let bob = SphinxKeyPair::generate(&mut rng);
    let key = bob.public().to_bytes();
    core.register_client(Timestamp::ZERO, &key).unwrap();
    for (n, at) in [(1u8, 0u64), (2, 10)] {
        core.handle_delivery(
            secs(at),
            Delivery {
                destination: key,
                surb_id: SurbId([n; SURB_ID_SIZE]),
                payload: vec![n; protocol::link::DELIVERY_PAYLOAD_SIZE],
            },
        );
    }
    // Drive the core by its own timer, as the shell would.
    let mut now = secs(0);
    let mut seen = Vec::new();
    while now <= secs(45) {
        core.handle_timeout(now);
        seen.push((now, core.stats().snapshot().expired));
        now = core.next_timeout();
    }
    let expired_at = |count| seen.iter().find(|(_, e)| *e >= count).map(|(t, _)| *t);
    // Retention 30 s, sweeps every 5 s: the first goes at the 30 s sweep, the second at 40 s.
    assert_eq!(expired_at(1), Some(secs(30)));
    assert_eq!(expired_at(2), Some(secs(40)));
    let s = core.stats().snapshot();
    assert_eq!((s.expired, s.mailbox_messages, s.mailbox_bytes), (2, 0, 0));
    // Bob comes back to nothing.
    let (_, messages) = connect(&mut core, &mut rng, now, &bob);
    assert!(messages.is_empty());
}

#[test]
fn a_batch_respects_quotas_within_itself_and_is_durable_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    let limits = MailboxConfig {
        max_messages_per_client: 3,
        ..config(100)
    };
    let batch: Vec<NewMessage> = (0..5u8)
        .map(|n| NewMessage {
            client: if n == 4 { BOB } else { ALICE },
            surb_id: SURB,
            payload: vec![n; 4],
            lifetime: None,
            recall_tag: None,
            id: None,
        })
        .collect();
    {
        let mut m = Mailbox::open(RedbStore::open(&path).unwrap(), limits).unwrap();
        let results = m.put_batch(secs(0), batch);
        let ok: Vec<bool> = results.iter().map(|r| r.is_ok()).collect();
        assert_eq!(ok, vec![true, true, true, false, true]);
        assert!(matches!(results[3], Err(PutError::Full)));
        assert_eq!(m.usage().messages, 4);
    }
    let m = Mailbox::open(RedbStore::open(&path).unwrap(), limits).unwrap();
    assert_eq!(m.client_usage(&ALICE).messages, 3);
    assert_eq!(m.client_usage(&BOB).messages, 1);
    let payloads: Vec<Vec<u8>> = m
        .list(&ALICE, None, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.payload)
        .collect();
    assert_eq!(payloads, vec![vec![0; 4], vec![1; 4], vec![2; 4]]);
}

/// Storing a batch and deleting acknowledged messages in one commit: both
/// happen, the counts follow, tags of the deleted messages go.
fn check_put_deleting<S: MailboxStore>(store: S) -> Mailbox<S> {
    let mut m = Mailbox::open(store, config(100)).unwrap();
    let first: Vec<MailboxId> = m
        .put_batch(
            secs(0),
            vec![tagged(ALICE, 1, b"a-1"), tagged(BOB, 2, b"b-1")],
        )
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let (results, deleted) = m.put_batch_deleting(
        secs(1),
        vec![tagged(ALICE, 3, b"a-2")],
        &[(ALICE, first[0]), (BOB, MailboxId(999))],
    );
    assert!(results[0].is_ok());
    assert_eq!(deleted.unwrap(), 1);
    assert_eq!(m.client_usage(&ALICE).messages, 1);
    assert_eq!(m.client_usage(&BOB).messages, 1);
    assert_eq!(m.usage().messages, 2);
    // Nothing to store: the deletes still go.
    let (results, deleted) = m.put_batch_deleting(secs(2), Vec::new(), &[(BOB, first[1])]);
    assert!(results.is_empty());
    assert_eq!(deleted.unwrap(), 1);
    assert_eq!(m.usage().messages, 1);
    m
}

#[test]
fn memory_store_put_deleting() {
    check_put_deleting(MemoryStore::new());
}

#[test]
fn redb_store_put_deleting_in_one_commit_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.redb");
    drop(check_put_deleting(RedbStore::open(&path).unwrap()));
    let mut m = Mailbox::open(RedbStore::open(&path).unwrap(), config(100)).unwrap();
    let left: Vec<Vec<u8>> = m
        .list(&ALICE, None, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.payload)
        .collect();
    assert_eq!(left, vec![b"a-2".to_vec()]);
    assert_eq!(m.usage().messages, 1);
    // The deleted message's recall tag went with it.
    let recalled = m.recall(&ALICE, &[RecallTag([1; 32])]).unwrap();
    assert_eq!(recalled.deleted, 0);
}

fn tagged(client: [u8; 32], tag: u8, payload: &[u8]) -> NewMessage {
    NewMessage {
        client,
        surb_id: SurbId([0; SURB_ID_SIZE]),
        payload: payload.to_vec(),
        lifetime: None,
        recall_tag: Some(RecallTag([tag; 32])),
        id: None,
    }
}

/// Recall on any store: only the client's messages under the given tags
/// go (every copy), the counts follow, and an acknowledged or expired
/// message leaves no tag behind.
fn check_recall<S: MailboxStore>(store: S) -> Mailbox<S> {
    let mut m = Mailbox::open(store, config(100)).unwrap();
    let ids = m.put_batch(
        secs(0),
        vec![
            tagged(ALICE, 1, b"a-1"),
            tagged(ALICE, 1, b"a-1 again"),
            tagged(ALICE, 2, b"a-2"),
            tagged(ALICE, 3, b"a-3"),
            tagged(BOB, 1, b"b-1"),
        ],
    );
    let ids: Vec<MailboxId> = ids.into_iter().map(|r| r.unwrap()).collect();
    m.put(secs(0), &ALICE, SURB, b"untagged".to_vec(), None)
        .unwrap();
    let listed = m.list(&ALICE, None, 10).unwrap();
    assert_eq!(listed[0].recall_tag, Some(RecallTag([1; 32])));
    assert_eq!(listed[4].recall_tag, None);

    let deletion = m
        .recall(&ALICE, &[RecallTag([1; 32]), RecallTag([9; 32])])
        .unwrap();
    assert_eq!((deletion.deleted, deletion.tags_matched), (2, 1));
    assert_eq!(m.client_usage(&ALICE).messages, 3);
    assert_eq!(
        m.client_usage(&BOB).messages,
        1,
        "Bob's tag-1 message stays"
    );
    // Acknowledged: its tag goes with it; a recall then finds nothing.
    assert!(m.delete(&ALICE, ids[2]).unwrap());
    let deletion = m.recall(&ALICE, &[RecallTag([2; 32])]).unwrap();
    assert_eq!(deletion.deleted, 0);
    // Expired: the same.
    m.expire(secs(1_000)).unwrap();
    assert_eq!(m.recall(&BOB, &[RecallTag([1; 32])]).unwrap().deleted, 0);
    assert_eq!(m.usage().messages, 0);
    m
}

#[test]
fn memory_store_recall() {
    check_recall(MemoryStore::new());
}

#[test]
fn redb_store_recall_and_its_index_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.redb");
    check_recall(RedbStore::open(&path).unwrap());
    {
        let mut m = Mailbox::open(RedbStore::open(&path).unwrap(), config(100)).unwrap();
        m.put_batch(secs(0), vec![tagged(ALICE, 7, b"kept")]);
    }
    let mut m = Mailbox::open(RedbStore::open(&path).unwrap(), config(100)).unwrap();
    assert_eq!(
        m.list(&ALICE, None, 10).unwrap()[0].recall_tag,
        Some(RecallTag([7; 32]))
    );
    assert_eq!(m.recall(&ALICE, &[RecallTag([7; 32])]).unwrap().deleted, 1);
    assert_eq!(m.usage().messages, 0);
}

/// A database written before recall tags (no tag tables): it opens, its
/// messages are listed untagged, and no recall deletes them.
#[test]
fn a_database_from_before_recall_tags_opens_and_nothing_in_it_is_recallable() {
    use redb::{Database, TableDefinition};
    const MESSAGES: TableDefinition<([u8; 32], u64), &[u8]> = TableDefinition::new("messages");
    const EXPIRY: TableDefinition<(u64, u64), [u8; 32]> = TableDefinition::new("expiry");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let expires = secs(100).as_nanos();
            let mut record = expires.to_be_bytes().to_vec();
            record.extend_from_slice(&[0; SURB_ID_SIZE]);
            record.extend_from_slice(b"old mail");
            txn.open_table(MESSAGES)
                .unwrap()
                .insert((ALICE, 0), record.as_slice())
                .unwrap();
            txn.open_table(EXPIRY)
                .unwrap()
                .insert((expires, 0), ALICE)
                .unwrap();
            txn.open_table(META).unwrap().insert("next_id", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let mut m = Mailbox::open(RedbStore::open(&path).unwrap(), config(100)).unwrap();
    let listed = m.list(&ALICE, None, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].payload, b"old mail");
    assert_eq!(listed[0].recall_tag, None);
    assert_eq!(m.recall(&ALICE, &[RecallTag([0; 32])]).unwrap().deleted, 0);
    // New mail in the old file is recallable.
    m.put_batch(secs(1), vec![tagged(ALICE, 5, b"new")]);
    assert_eq!(m.recall(&ALICE, &[RecallTag([5; 32])]).unwrap().deleted, 1);
    assert_eq!(m.usage().messages, 1);
}
