//! What a message shows to whoever carries it, what a restored backup may
//! encrypt, when a session counts as answered, and statements signed by an
//! identity inside a session.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashSet;

use common::{NOW, established, first_message, parties};
use e2ee::{
    MESSAGE_NONCE_LEN, MESSAGE_TAG_LEN, MessageTag, RATCHET_HEADER_LEN, RATCHET_OVERHEAD, Session,
    SessionError, TAG_WINDOW,
};

/// Bytes 2.. of the header: everything but the suite and kind bytes.
const LINKABLE_FROM: usize = 2;

/// No `width`-byte window at the same offset of the headers of two different
/// messages is equal: nothing in one header can be matched in another.
fn assert_headers_share_nothing(messages: &[Vec<u8>], width: usize) {
    for offset in LINKABLE_FROM..=RATCHET_HEADER_LEN - width {
        let mut seen = HashSet::new();
        for (index, message) in messages.iter().enumerate() {
            assert!(
                seen.insert(message[offset..offset + width].to_vec()),
                "message {index} repeats bytes {offset}..{} of an earlier header",
                offset + width
            );
        }
    }
}

#[test]
fn the_headers_of_a_one_way_conversation_link_nothing() {
    let (mut rng, mut alice, mut bob) = established(60);
    // Fifty messages in one sending chain: one ratchet key, counters 0..50.
    let messages: Vec<Vec<u8>> = (0..50)
        .map(|_| alice.encrypt(&mut rng, b"same text", None).unwrap())
        .collect();
    let ratchet_key = alice.own_ratchet_key();
    assert_headers_share_nothing(&messages, 8);
    for message in &messages {
        assert_eq!(message.len(), RATCHET_OVERHEAD + b"same text".len());
        // The ratchet key, the only field constant for the chain, is never in clear.
        assert!(!message.windows(32).any(|w| w == ratchet_key));
    }
    // Tags all differ, and the recipient predicted every one of them.
    let tags: HashSet<MessageTag> = messages
        .iter()
        .map(|m| MessageTag::of(m).unwrap())
        .collect();
    assert_eq!(tags.len(), messages.len());
    let expected: HashSet<MessageTag> = bob.expected_tags().unwrap().into_iter().collect();
    assert!(tags.is_subset(&expected));
    for message in &messages {
        assert_eq!(bob.decrypt(NOW, message).unwrap(), b"same text");
    }
}

#[test]
fn expected_tags_follow_the_chains_and_the_skipped_keys() {
    let (mut rng, mut alice, mut bob) = established(61);
    let window = usize::try_from(TAG_WINDOW).unwrap();
    // Bob's current chain (Alice's) and the next one.
    assert_eq!(bob.expected_tags().unwrap().len(), 2 * window);
    let first = alice.encrypt(&mut rng, b"0", None).unwrap();
    let second = alice.encrypt(&mut rng, b"1", None).unwrap();
    let third = alice.encrypt(&mut rng, b"2", None).unwrap();
    bob.decrypt(NOW, &third).unwrap();
    // Two keys skipped: still expected, as stored keys.
    let expected = bob.expected_tags().unwrap();
    assert_eq!(expected.len(), 2 + 2 * window);
    for late in [&first, &second] {
        assert!(expected.contains(&MessageTag::of(late).unwrap()));
    }
    assert!(!expected.contains(&MessageTag::of(&third).unwrap()));
    bob.decrypt(NOW, &second).unwrap();
    bob.decrypt(NOW, &first).unwrap();
    // A message far ahead of the window is not predicted (the session still opens it).
    let ahead: Vec<Vec<u8>> = (0..TAG_WINDOW + 1)
        .map(|_| alice.encrypt(&mut rng, b"x", None).unwrap())
        .collect();
    let last = ahead.last().unwrap();
    assert!(
        !bob.expected_tags()
            .unwrap()
            .contains(&MessageTag::of(last).unwrap())
    );
    assert_eq!(bob.decrypt(NOW, last).unwrap(), b"x");
    // A new chain from Alice (after Bob's reply) was predicted as the next one.
    let reply = bob.encrypt(&mut rng, b"r", None).unwrap();
    alice.decrypt(NOW, &reply).unwrap();
    let new_chain = alice.encrypt(&mut rng, b"n", None).unwrap();
    assert!(
        bob.expected_tags()
            .unwrap()
            .contains(&MessageTag::of(&new_chain).unwrap())
    );
    // Restored from bytes, the session predicts the same tags.
    let mut restored = Session::from_bytes(&bob.to_bytes().unwrap()).unwrap();
    let mut before = bob.expected_tags().unwrap();
    let mut after = restored.expected_tags().unwrap();
    before.sort();
    after.sort();
    assert_eq!(before, after);
    assert_eq!(restored.decrypt(NOW, &new_chain).unwrap(), b"n");
}

#[test]
fn a_restored_backup_never_encrypts_twice_under_one_key_and_nonce() {
    let (mut rng, mut alice, mut bob) = established(62);
    // Mid-chain (Alice's DH step after Bob's reply is done).
    let step = alice.encrypt(&mut rng, b"step", None).unwrap();
    bob.decrypt(NOW, &step).unwrap();
    let backup = alice.to_bytes().unwrap();
    let p1 = b"attack at dawn, bring the maps".to_vec();
    let c1 = alice.encrypt(&mut rng, &p1, None).unwrap();
    // The device is restored from the backup and encrypts something else
    // in the same chain position.
    let mut restored = Session::from_bytes(&backup).unwrap();
    let p2 = b"retreat at dusk, burn the map!".to_vec();
    assert_eq!(p1.len(), p2.len());
    let c2 = restored.encrypt(&mut rng, &p2, None).unwrap();
    // Same slot of the same chain: same routing tag (the recipient takes only one).
    assert_eq!(MessageTag::of(&c1).unwrap(), MessageTag::of(&c2).unwrap());
    // Fresh random nonces: the header and body are encrypted under new key
    // streams, so the XOR of the ciphertexts is not the XOR of the plaintexts.
    let nonce = 2 + MESSAGE_TAG_LEN;
    assert_ne!(
        c1[nonce..nonce + MESSAGE_NONCE_LEN],
        c2[nonce..nonce + MESSAGE_NONCE_LEN]
    );
    let body = RATCHET_HEADER_LEN + 8;
    let xor_c: Vec<u8> = c1[body..body + p1.len()]
        .iter()
        .zip(&c2[body..body + p2.len()])
        .map(|(a, b)| a ^ b)
        .collect();
    let xor_p: Vec<u8> = p1.iter().zip(&p2).map(|(a, b)| a ^ b).collect();
    assert_ne!(xor_c, xor_p, "key stream reused after a rollback");
    // The recipient reads the first and refuses the second as a duplicate.
    assert_eq!(bob.decrypt(NOW, &c1).unwrap(), p1);
    assert_eq!(bob.decrypt(NOW, &c2), Err(SessionError::DuplicateMessage));
}

#[test]
fn a_responder_session_is_confirmed_only_by_a_message_sent_after_its_reply() {
    let mut p = parties(63);
    let (mut alice, first) = first_message(&mut p, b"hi");
    let mut bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
    bob.decrypt(NOW, &first).unwrap();
    assert!(!bob.peer_confirmed() && !alice.peer_confirmed());
    // More initial-form messages before any reply: still unconfirmed.
    let again = alice.encrypt(&mut p.rng, b"again", None).unwrap();
    bob.decrypt(NOW, &again).unwrap();
    assert!(!bob.peer_confirmed());
    let reply = bob.encrypt(&mut p.rng, b"reply", None).unwrap();
    // An initial-form message that left before the reply arrived: not a confirmation.
    let crossed = alice.encrypt(&mut p.rng, b"crossed", None).unwrap();
    bob.decrypt(NOW, &crossed).unwrap();
    assert!(!bob.peer_confirmed());
    alice.decrypt(NOW, &reply).unwrap();
    assert!(alice.peer_confirmed());
    let answer = alice.encrypt(&mut p.rng, b"answer", None).unwrap();
    bob.decrypt(NOW, &answer).unwrap();
    assert!(bob.peer_confirmed());
    // Confirmation survives serialization.
    assert!(
        Session::from_bytes(&bob.to_bytes().unwrap())
            .unwrap()
            .peer_confirmed()
    );
}

#[test]
fn statements_verify_only_in_their_session_and_from_their_signer() {
    let (mut rng, alice, bob) = established(64);
    let p = parties(64);
    let signature = alice.sign_statement(&p.alice, b"I am at A").unwrap();
    assert_eq!(bob.verify_statement(b"I am at A", &signature), Ok(()));
    assert_eq!(
        bob.verify_statement(b"I am at B", &signature),
        Err(SessionError::BadStatementSignature)
    );
    // Our own statement is not taken as the peer's.
    assert_eq!(
        alice.verify_statement(b"I am at A", &signature),
        Err(SessionError::BadStatementSignature)
    );
    // The same identity in another session: the signature does not carry over.
    let mut other = Session::initiate(&mut rng, &p.alice, &p.bundle).unwrap();
    let first = other.encrypt(&mut rng, b"x", None).unwrap();
    let other_bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
    assert_eq!(
        other_bob.verify_statement(b"I am at A", &signature),
        Err(SessionError::BadStatementSignature)
    );
    // Only the session's own identity signs.
    assert_eq!(
        alice.sign_statement(&p.bob, b"I am at A"),
        Err(SessionError::IdentityMismatch)
    );
}

#[test]
fn the_new_tags_reported_always_cover_every_expected_tag() {
    use rand::RngExt;
    let (mut rng, mut alice, mut bob) = established(65);
    let mut known: HashSet<MessageTag> = bob.take_new_tags().unwrap().into_iter().collect();
    let mut reported_per_message = Vec::new();
    for round in 0..30 {
        let burst: Vec<Vec<u8>> = (0..rng.random_range(1..12))
            .map(|i| alice.encrypt(&mut rng, &[i], None).unwrap())
            .collect();
        // Delivered in a shuffled order, one lost now and then.
        let mut order: Vec<usize> = (0..burst.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for &i in &order {
            if rng.random_range(0..10) == 0 {
                continue;
            }
            bob.decrypt(NOW, &burst[i]).unwrap();
            let new = bob.take_new_tags().unwrap();
            reported_per_message.push(new.len());
            known.extend(new);
            let expected: HashSet<MessageTag> = bob.expected_tags().unwrap().into_iter().collect();
            assert!(expected.is_subset(&known), "round {round}");
        }
        if round % 3 == 0 {
            let reply = bob.encrypt(&mut rng, b"r", None).unwrap();
            alice.decrypt(NOW, &reply).unwrap();
        }
    }
    // Mostly one new tag per message; a window more for each new chain.
    let window = usize::try_from(TAG_WINDOW).unwrap();
    assert!(reported_per_message.iter().all(|n| *n <= 2 * window + 12));
    let ones = reported_per_message.iter().filter(|n| **n <= 12).count();
    assert!(ones * 2 > reported_per_message.len());
}
