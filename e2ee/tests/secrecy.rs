//! Forward secrecy and post-compromise security, seen through the public API.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{NOW, established};
use e2ee::{Session, SessionError};

#[test]
fn state_taken_after_reading_decrypts_none_of_the_captured_messages() {
    let (mut rng, mut alice, mut bob) = established(31);
    let before = bob.clone();
    let mut captured = Vec::new();
    for round in 0..4 {
        for i in 0..5 {
            captured.push(
                alice
                    .encrypt(&mut rng, format!("{round}.{i}").as_bytes(), None)
                    .unwrap(),
            );
        }
        for message in captured.iter().rev().take(5) {
            bob.decrypt(NOW, message).unwrap();
        }
        let reply = bob.encrypt(&mut rng, b"ack", None).unwrap();
        alice.decrypt(NOW, &reply).unwrap();
    }
    // A copy of Bob's state from before the deliveries reads the first chain:
    // the captured messages are not undecryptable by construction.
    let mut early = before.clone();
    assert_eq!(early.decrypt(NOW, &captured[0]).unwrap(), b"0.0");

    let cloned = bob.clone();
    let serialized = Session::from_bytes(&bob.to_bytes().unwrap()).unwrap();
    for attacker in [cloned, serialized] {
        for message in &captured {
            assert!(attacker.clone().decrypt(NOW, message).is_err());
        }
    }
}

#[test]
fn snapshot_stops_working_after_the_next_round_trip() {
    let (mut rng, mut alice, mut bob) = established(32);
    // T: the attacker copies both states.
    let alice_at_t = Session::from_bytes(&alice.to_bytes().unwrap()).unwrap();
    let bob_at_t = Session::from_bytes(&bob.to_bytes().unwrap()).unwrap();

    // Still on chains the snapshot knows: the compromise is real.
    let b_old = bob.encrypt(&mut rng, b"b-old", None).unwrap();
    assert_eq!(alice.decrypt(NOW, &b_old).unwrap(), b"b-old");
    assert_eq!(alice_at_t.clone().decrypt(NOW, &b_old).unwrap(), b"b-old");

    // One round trip: Alice sends with a fresh ratchet key, Bob answers with one.
    let a1 = alice.encrypt(&mut rng, b"a1", None).unwrap();
    assert_eq!(bob.decrypt(NOW, &a1).unwrap(), b"a1");
    let b1 = bob.encrypt(&mut rng, b"b1", None).unwrap();
    assert_eq!(alice.decrypt(NOW, &b1).unwrap(), b"b1");

    let mut after_a = Vec::new();
    let mut after_b = vec![b1];
    for i in 0..5 {
        let a = alice
            .encrypt(&mut rng, format!("a-new{i}").as_bytes(), None)
            .unwrap();
        bob.decrypt(NOW, &a).unwrap();
        after_a.push(a);
        let b = bob
            .encrypt(&mut rng, format!("b-new{i}").as_bytes(), None)
            .unwrap();
        alice.decrypt(NOW, &b).unwrap();
        after_b.push(b);
    }
    // A passive attacker replays everything it saw into its snapshots, in order.
    let mut alice_attacker = alice_at_t.clone();
    let _ = alice_attacker.decrypt(NOW, &b_old);
    for message in &after_b {
        // Refused because no key it can derive opens it (not as a duplicate).
        assert_eq!(
            alice_attacker.decrypt(NOW, message),
            Err(SessionError::DecryptionFailed)
        );
    }
    let mut bob_attacker = bob_at_t.clone();
    for message in &after_a {
        assert_eq!(
            bob_attacker.decrypt(NOW, message),
            Err(SessionError::DecryptionFailed)
        );
    }
}
