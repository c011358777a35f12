//! Out-of-order and duplicated delivery, as the mixnet does it.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashSet;

use common::{NOW, parties};
use e2ee::{InitialInfo, Session, SessionError};
use rand::RngExt;

const PER_DIRECTION: usize = 200;
/// A message is delivered at most this many positions out of order.
const WINDOW: usize = 24;
const DUPLICATE_PERCENT: u32 = 25;

#[derive(Clone)]
struct InFlight {
    from_alice: bool,
    index: usize,
    bytes: Vec<u8>,
}

#[test]
fn two_hundred_each_way_shuffled_and_duplicated_decrypt_exactly_once() {
    for seed in [2024, 7, 99, 31337] {
        run(seed);
    }
}

fn run(seed: u64) {
    let mut p = parties(seed);
    let mut alice = Session::initiate(&mut p.rng, &p.alice, &p.bundle).unwrap();
    let mut bob: Option<Session> = None;
    let mut in_flight: Vec<InFlight> = Vec::new();
    let (mut sent_a, mut sent_b) = (0usize, 0usize);
    let mut decrypted: HashSet<(bool, usize)> = HashSet::new();
    let mut duplicates_refused = 0usize;
    let mut out_of_order = 0usize;
    // The ratchet key each message was sent under (headers are encrypted:
    // the sender records its own key).
    let mut sent_under: std::collections::HashMap<(bool, usize), [u8; 32]> =
        std::collections::HashMap::new();
    let mut alice_ratchet_keys: HashSet<[u8; 32]> = HashSet::new();
    let mut bob_ratchet_keys: HashSet<[u8; 32]> = HashSet::new();

    while sent_a < PER_DIRECTION || sent_b < PER_DIRECTION || !in_flight.is_empty() {
        // Send a burst from one side (Bob only once he has a session).
        let burst = p.rng.random_range(1..=4usize);
        let alice_turn = bob.is_none()
            || (sent_a < PER_DIRECTION && (sent_b >= PER_DIRECTION || p.rng.random_bool(0.5)));
        for _ in 0..burst {
            if alice_turn && sent_a < PER_DIRECTION {
                let bytes = alice
                    .encrypt(&mut p.rng, format!("a{sent_a}").as_bytes(), None)
                    .unwrap();
                sent_under.insert((true, sent_a), alice.own_ratchet_key());
                in_flight.push(InFlight {
                    from_alice: true,
                    index: sent_a,
                    bytes,
                });
                sent_a += 1;
            } else if !alice_turn && sent_b < PER_DIRECTION {
                let session = bob.as_mut().unwrap();
                let bytes = session
                    .encrypt(&mut p.rng, format!("b{sent_b}").as_bytes(), None)
                    .unwrap();
                sent_under.insert((false, sent_b), session.own_ratchet_key());
                in_flight.push(InFlight {
                    from_alice: false,
                    index: sent_b,
                    bytes,
                });
                sent_b += 1;
            }
        }
        // Deliver a few, each picked among the oldest WINDOW in flight.
        let deliveries = p.rng.random_range(1..=4usize).min(in_flight.len());
        for _ in 0..deliveries {
            let pick = p.rng.random_range(0..in_flight.len().min(WINDOW));
            if pick != 0 {
                out_of_order += 1;
            }
            let message = in_flight.remove(pick);
            if p.rng.random_range(0..100) < DUPLICATE_PERCENT {
                let at = p.rng.random_range(0..=in_flight.len().min(WINDOW));
                in_flight.insert(at, message.clone());
            }
            let result = if message.from_alice {
                deliver_to_bob(&mut bob, &p, &message.bytes)
            } else {
                alice.decrypt(NOW, &message.bytes)
            };
            let id = (message.from_alice, message.index);
            match result {
                Ok(plaintext) => {
                    let prefix = if message.from_alice { "a" } else { "b" };
                    assert_eq!(plaintext, format!("{prefix}{}", message.index).as_bytes());
                    assert!(decrypted.insert(id), "{id:?} decrypted twice");
                    let key = sent_under[&id];
                    if message.from_alice {
                        alice_ratchet_keys.insert(key);
                    } else {
                        bob_ratchet_keys.insert(key);
                    }
                }
                Err(SessionError::DuplicateMessage) => {
                    assert!(
                        decrypted.contains(&id),
                        "{id:?} refused as duplicate before it was read"
                    );
                    duplicates_refused += 1;
                }
                Err(other) => panic!("{id:?} refused: {other}"),
            }
        }
    }
    assert_eq!(decrypted.len(), 2 * PER_DIRECTION);
    assert!(
        duplicates_refused > 50,
        "only {duplicates_refused} duplicates exercised"
    );
    assert!(
        out_of_order > 100,
        "only {out_of_order} out-of-order deliveries"
    );
    // Interleaving made both sides step their DH ratchets many times.
    assert!(
        alice_ratchet_keys.len() >= 5,
        "{} alice ratchet keys",
        alice_ratchet_keys.len()
    );
    assert!(
        bob_ratchet_keys.len() >= 5,
        "{} bob ratchet keys",
        bob_ratchet_keys.len()
    );
    assert!(!alice.awaiting_reply());
}

fn deliver_to_bob(
    bob: &mut Option<Session>,
    p: &common::Parties,
    bytes: &[u8],
) -> Result<Vec<u8>, SessionError> {
    if let Some(info) = InitialInfo::parse(bytes).unwrap() {
        match bob {
            Some(session) => assert_eq!(info.handshake_id, session.handshake_id()),
            None => *bob = Some(Session::accept(&p.bob, &p.bob_prekeys, bytes)?),
        }
    }
    bob.as_mut()
        .expect("a ratchet message before any initial message")
        .decrypt(NOW, bytes)
}
