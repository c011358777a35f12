//! Malformed, tampered and replayed input is refused with an error, never a
//! panic, and leaves the session able to read the genuine message; every
//! encode/decode pair round-trips.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{NOW, established, parties};
use e2ee::{InitialInfo, PrekeyBundle, Session, SessionError, StateStore, UnixSeconds};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tampered_messages_are_refused_and_the_original_still_reads(
        seed in any::<u64>(),
        text in proptest::collection::vec(any::<u8>(), 0..200),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        initial in any::<bool>(),
    ) {
        let (mut rng, mut alice, mut bob, message) = if initial {
            let mut p = parties(seed);
            let (mut alice, first) = common::first_message(&mut p, b"first");
            let bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
            let message = alice.encrypt(&mut p.rng, &text, None).unwrap();
            (p.rng, alice, bob, message)
        } else {
            let (mut rng, mut alice, bob) = established(seed);
            let message = alice.encrypt(&mut rng, &text, None).unwrap();
            (rng, alice, bob, message)
        };
        let mut tampered = message.clone();
        let index = position.index(tampered.len());
        tampered[index] ^= flip;
        prop_assert!(bob.decrypt(NOW, &tampered).is_err());
        prop_assert_eq!(bob.decrypt(NOW, &message).unwrap(), text.clone());
        // Replayed: refused as a duplicate.
        prop_assert_eq!(bob.decrypt(NOW, &message), Err(SessionError::DuplicateMessage));
        // The session still works both ways afterwards.
        let reply = bob.encrypt(&mut rng, b"ok", None).unwrap();
        prop_assert_eq!(alice.decrypt(NOW, &reply).unwrap(), b"ok".to_vec());
    }

    #[test]
    fn truncated_and_extended_messages_are_refused(
        seed in any::<u64>(),
        text in proptest::collection::vec(any::<u8>(), 0..100),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let (mut rng, mut alice, mut bob) = established(seed);
        let message = alice.encrypt(&mut rng, &text, None).unwrap();
        let truncated = &message[..cut.index(message.len())];
        prop_assert!(bob.decrypt(NOW, truncated).is_err());
        let mut extended = message.clone();
        extended.extend_from_slice(&extra);
        prop_assert!(bob.decrypt(NOW, &extended).is_err());
        prop_assert_eq!(bob.decrypt(NOW, &message).unwrap(), text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let (_, _, mut bob) = established(9);
        let p = parties(9);
        prop_assert!(bob.decrypt(NOW, &bytes).is_err());
        let _ = Session::accept(&p.bob, &p.bob_prekeys, &bytes);
        let _ = InitialInfo::parse(&bytes);
        prop_assert!(PrekeyBundle::decode(&bytes).is_err());
        let _ = Session::from_bytes(&bytes);
        let store = StateStore::from_raw_key([1u8; 32]).unwrap();
        prop_assert!(store.open(&bytes).is_err());
        let _ = StateStore::unlock_with_passphrase(b"pw", &bytes);
    }

    #[test]
    fn well_framed_garbage_is_refused_without_panic(
        kind in 3u8..=4,
        share_count in 0u8..=5,
        body in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let (_, _, mut bob) = established(10);
        let p = parties(10);
        // Suite and kind right, a plausible share count for initial messages, then garbage.
        let mut bytes = vec![1, kind];
        if kind == 3 {
            bytes.extend_from_slice(&p.alice.public().to_bytes());
            bytes.extend_from_slice(&11u32.to_be_bytes());
            bytes.extend_from_slice(&12u32.to_be_bytes());
            bytes.push(share_count);
        }
        bytes.extend_from_slice(&body);
        prop_assert!(bob.decrypt(NOW, &bytes).is_err());
        prop_assert!(Session::accept(&p.bob, &p.bob_prekeys, &bytes).is_err());
        let _ = InitialInfo::parse(&bytes);
    }

    #[test]
    fn plaintext_and_expiry_round_trip(
        seed in any::<u64>(),
        text in proptest::collection::vec(any::<u8>(), 0..2000),
        expires in proptest::option::of(NOW.0 + 1..u64::MAX),
    ) {
        let (mut rng, mut alice, mut bob) = established(seed);
        let message = alice.encrypt(&mut rng, &text, expires.map(UnixSeconds)).unwrap();
        let (plaintext, expiry) = bob.decrypt_with_expiry(NOW, &message).unwrap();
        prop_assert_eq!(plaintext, text);
        prop_assert_eq!(expiry, expires.map(UnixSeconds));
    }

    #[test]
    fn bundle_and_state_encodings_round_trip(seed in any::<u64>()) {
        let p = parties(seed);
        let bytes = p.bundle.encode();
        prop_assert_eq!(PrekeyBundle::decode(&bytes).unwrap(), p.bundle.clone());
        let (mut rng, mut alice, bob) = established(seed);
        let state = bob.to_bytes().unwrap();
        let mut restored = Session::from_bytes(&state).unwrap();
        prop_assert_eq!(restored.to_bytes().unwrap(), state);
        let message = alice.encrypt(&mut rng, b"after restore", None).unwrap();
        prop_assert_eq!(restored.decrypt(NOW, &message).unwrap(), b"after restore".to_vec());
    }
}

#[test]
fn a_message_past_its_expiry_is_refused() {
    let (mut rng, mut alice, mut bob) = established(40);
    let expires = UnixSeconds(NOW.0 + 60);
    let early = alice.encrypt(&mut rng, b"early", Some(expires)).unwrap();
    let at = alice.encrypt(&mut rng, b"at", Some(expires)).unwrap();
    let late = alice.encrypt(&mut rng, b"late", Some(expires)).unwrap();
    let forever = alice.encrypt(&mut rng, b"forever", None).unwrap();
    assert_eq!(
        bob.decrypt(UnixSeconds(NOW.0 + 59), &early).unwrap(),
        b"early"
    );
    assert_eq!(
        bob.decrypt(expires, &at),
        Err(SessionError::Expired {
            expires_at: expires.0,
            now: expires.0
        })
    );
    assert_eq!(
        bob.decrypt(UnixSeconds(u64::MAX), &late),
        Err(SessionError::Expired {
            expires_at: expires.0,
            now: u64::MAX
        })
    );
    // The refused message's key is gone: it cannot be read later either.
    assert_eq!(bob.decrypt(NOW, &late), Err(SessionError::DuplicateMessage));
    assert_eq!(
        bob.decrypt(UnixSeconds(u64::MAX), &forever).unwrap(),
        b"forever"
    );
}

#[test]
fn an_expired_first_message_creates_no_plaintext() {
    let mut p = parties(41);
    let mut alice = Session::initiate(&mut p.rng, &p.alice, &p.bundle).unwrap();
    let first = alice
        .encrypt(&mut p.rng, b"old news", Some(UnixSeconds(100)))
        .unwrap();
    let mut bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
    assert!(matches!(
        bob.decrypt(UnixSeconds(100), &first),
        Err(SessionError::Expired { .. })
    ));
}

#[test]
fn too_many_skipped_messages_are_refused_without_harm() {
    let (mut rng, mut alice, mut bob) = established(42);
    let mut last = Vec::new();
    for _ in 0..=e2ee::MAX_SKIP_PER_CHAIN + 1 {
        last = alice.encrypt(&mut rng, b"x", None).unwrap();
    }
    assert!(matches!(
        bob.decrypt(NOW, &last),
        Err(SessionError::TooManySkipped { .. })
    ));
    assert_eq!(bob.skipped_keys(), 0);
}

#[test]
fn skipped_keys_stay_bounded_and_evicted_ones_are_stale() {
    let (mut rng, mut alice, mut bob) = established(43);
    // Three chains of 900 skipped messages each: more than the total bound.
    let mut chains = Vec::new();
    for _ in 0..3 {
        let chain: Vec<Vec<u8>> = (0..901)
            .map(|i| {
                alice
                    .encrypt(&mut rng, format!("{i}").as_bytes(), None)
                    .unwrap()
            })
            .collect();
        bob.decrypt(NOW, chain.last().unwrap()).unwrap();
        let reply = bob.encrypt(&mut rng, b"r", None).unwrap();
        alice.decrypt(NOW, &reply).unwrap();
        assert!(bob.skipped_keys() <= e2ee::MAX_SKIPPED_TOTAL);
        chains.push(chain);
    }
    assert_eq!(bob.skipped_keys(), e2ee::MAX_SKIPPED_TOTAL);
    // The oldest stored keys were deleted first.
    assert_eq!(
        bob.decrypt(NOW, &chains[0][0]),
        Err(SessionError::StaleMessage)
    );
    assert_eq!(
        bob.decrypt(NOW, &chains[0][699]),
        Err(SessionError::StaleMessage)
    );
    assert_eq!(bob.decrypt(NOW, &chains[0][700]).unwrap(), b"700");
    assert_eq!(
        bob.decrypt(NOW, &chains[0][700]),
        Err(SessionError::DuplicateMessage)
    );
    assert_eq!(bob.decrypt(NOW, &chains[2][5]).unwrap(), b"5");
    // Read, then repeated: a duplicate, in an old chain as in the current one.
    assert_eq!(
        bob.decrypt(NOW, &chains[1][900]),
        Err(SessionError::DuplicateMessage)
    );
    assert_eq!(
        bob.decrypt(NOW, &chains[2][900]),
        Err(SessionError::DuplicateMessage)
    );
}

#[test]
fn unknown_suites_and_kinds_are_refused_by_a_session() {
    let (mut rng, mut alice, mut bob) = established(44);
    let message = alice.encrypt(&mut rng, b"x", None).unwrap();
    let mut suite = message.clone();
    suite[0] = 2;
    assert_eq!(bob.decrypt(NOW, &suite), Err(SessionError::UnknownSuite(2)));
    assert_eq!(
        InitialInfo::parse(&suite),
        Err(SessionError::UnknownSuite(2))
    );
    let mut kind = message.clone();
    kind[1] = 7;
    assert_eq!(
        bob.decrypt(NOW, &kind),
        Err(SessionError::UnknownMessageKind(7))
    );
    // Kinds 1 and 2 are format 1, refused as such.
    for old in [1u8, 2] {
        let mut v1 = message.clone();
        v1[1] = old;
        assert_eq!(
            bob.decrypt(NOW, &v1),
            Err(SessionError::OldMessageFormat(old))
        );
        assert_eq!(
            InitialInfo::parse(&v1),
            Err(SessionError::OldMessageFormat(old))
        );
    }
    assert_eq!(InitialInfo::parse(&message), Ok(None));
    // A ratchet message is not a first message.
    let p = parties(44);
    assert_eq!(
        Session::accept(&p.bob, &p.bob_prekeys, &message).map(|_| ()),
        Err(SessionError::UnknownMessageKind(4))
    );
    assert_eq!(bob.decrypt(NOW, &message).unwrap(), b"x");
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let run = |seed| {
        let (mut rng, mut alice, mut bob) = established(seed);
        let a = alice.encrypt(&mut rng, b"same", None).unwrap();
        bob.decrypt(NOW, &a).unwrap();
        let b = bob.encrypt(&mut rng, b"same", None).unwrap();
        (a, b, bob.to_bytes().unwrap().to_vec())
    };
    assert_eq!(run(45), run(45));
    assert_ne!(run(45).0, run(46).0);
}
