#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

//! Both mailbox stores against a reference model, under random sequences of
//! puts, acks, expiries, listings and (for redb) restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use gateway::RedbStore;
use gateway_core::{Mailbox, MailboxConfig, MailboxId, MemoryStore};
use proptest::prelude::*;
use protocol::packet::SURB_ID_SIZE;
use protocol::surb::SurbId;
use protocol::time::Timestamp;

#[derive(Clone, Debug)]
enum Op {
    Put {
        client: u8,
        len: usize,
        lifetime: Option<u64>,
    },
    Ack {
        client: u8,
        pick: usize,
    },
    Advance {
        secs: u64,
    },
    List {
        client: u8,
        after: Option<usize>,
        limit: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0usize..40, proptest::option::of(0u64..60))
            .prop_map(|(client, len, lifetime)| Op::Put { client, len, lifetime }),
        2 => (0u8..3, any::<usize>()).prop_map(|(client, pick)| Op::Ack { client, pick }),
        1 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
        2 => (0u8..3, proptest::option::of(any::<usize>()), 0usize..5)
            .prop_map(|(client, after, limit)| Op::List { client, after, limit }),
        1 => Just(Op::Restart),
    ]
}

const RETENTION: u64 = 30;

fn config() -> MailboxConfig {
    MailboxConfig {
        retention: Duration::from_secs(RETENTION),
        max_messages_per_client: 6,
        ..MailboxConfig::default()
    }
}

fn open_redb(path: &Path) -> Mailbox<RedbStore> {
    Mailbox::open(RedbStore::open(path).unwrap(), config()).unwrap()
}

/// What the reference keeps per message: client, expiry, payload.
type Model = BTreeMap<u64, ([u8; 32], Timestamp, Vec<u8>)>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn stores_agree_with_the_model(ops in proptest::collection::vec(op(), 1..20)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.redb");
        let mut memory = Mailbox::open(MemoryStore::new(), config()).unwrap();
        let mut redb = open_redb(&path);
        let mut model: Model = BTreeMap::new();
        let mut now = Timestamp::ZERO;
        let mut counter = 0u8;
        let mut last_id: Option<u64> = None;

        for op in ops {
            match op {
                Op::Put { client, len, lifetime } => {
                    counter = counter.wrapping_add(1);
                    let key = [client; 32];
                    let payload = vec![counter; len];
                    let lifetime = lifetime.map(Duration::from_secs);
                    let surb = SurbId([client; SURB_ID_SIZE]);
                    let a = memory.put(now, &key, surb, payload.clone(), lifetime);
                    let b = redb.put(now, &key, surb, payload.clone(), lifetime);
                    prop_assert_eq!(a.as_ref().map_err(|e| e.to_string()), b.as_ref().map_err(|e| e.to_string()));
                    let full = model.values().filter(|(c, _, _)| *c == key).count() >= 6;
                    prop_assert_eq!(a.is_err(), full);
                    if let Ok(id) = a {
                        let keep = lifetime.unwrap_or(Duration::MAX).min(Duration::from_secs(RETENTION));
                        prop_assert!(last_id.is_none_or(|l| l < id.0), "ids are never reused");
                        last_id = Some(id.0);
                        model.insert(id.0, (key, now.saturating_add(keep), payload));
                    }
                }
                Op::Ack { client, pick } => {
                    let key = [client; 32];
                    // Pick any id ever seen, possibly another client's or a deleted one.
                    let id = MailboxId((pick % 64) as u64);
                    let a = memory.delete(&key, id).unwrap();
                    let b = redb.delete(&key, id).unwrap();
                    prop_assert_eq!(a, b);
                    let owned = model.get(&id.0).is_some_and(|(c, _, _)| *c == key);
                    prop_assert_eq!(a, owned);
                    if owned {
                        model.remove(&id.0);
                    }
                }
                Op::Advance { secs } => {
                    now = now.saturating_add(Duration::from_secs(secs));
                    let a = memory.expire(now).unwrap();
                    let b = redb.expire(now).unwrap();
                    prop_assert_eq!(a, b);
                    let before = model.len();
                    model.retain(|_, (_, expires, _)| *expires > now);
                    prop_assert_eq!(a as usize, before - model.len());
                }
                Op::List { client, after, limit } => {
                    let key = [client; 32];
                    let ids: Vec<u64> = model.keys().copied().collect();
                    let after = after.and_then(|i| ids.get(i % ids.len().max(1))).map(|id| MailboxId(*id));
                    let a = memory.list(&key, after, limit).unwrap();
                    let b = redb.list(&key, after, limit).unwrap();
                    prop_assert_eq!(&a, &b);
                    let expected: Vec<(u64, Vec<u8>)> = model
                        .iter()
                        .filter(|(id, (c, _, _))| *c == key && after.is_none_or(|a| **id > a.0))
                        .take(limit)
                        .map(|(id, (_, _, p))| (*id, p.clone()))
                        .collect();
                    let got: Vec<(u64, Vec<u8>)> = a.into_iter().map(|m| (m.id.0, m.payload)).collect();
                    prop_assert_eq!(got, expected);
                }
                Op::Restart => {
                    drop(redb);
                    redb = open_redb(&path);
                }
            }
            prop_assert_eq!(memory.usage(), redb.usage());
            prop_assert_eq!(memory.usage().messages as usize, model.len());
            let bytes: usize = model.values().map(|(_, _, p)| p.len()).sum();
            prop_assert_eq!(redb.usage().bytes as usize, bytes);
            prop_assert_eq!(memory.next_expiry().unwrap(), redb.next_expiry().unwrap());
        }
    }
}
