//! Session state sealed at rest: opens with the right key, refused otherwise.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{NOW, established};
use e2ee::{PassphraseParams, SessionError, StateStore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Argon2id parameters small enough for a fast test.
const TEST_PARAMS: PassphraseParams = PassphraseParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

#[test]
fn raw_key_round_trip_and_wrong_key_or_tampering_is_refused() {
    let (mut rng, mut alice, bob) = established(50);
    let store = StateStore::from_raw_key([7u8; 32]).unwrap();
    let sealed = store.seal(&mut rng, &bob).unwrap();
    let mut restored = store.open(&sealed).unwrap();
    let message = alice.encrypt(&mut rng, b"still works", None).unwrap();
    assert_eq!(restored.decrypt(NOW, &message).unwrap(), b"still works");

    let wrong = StateStore::from_raw_key([8u8; 32]).unwrap();
    assert_eq!(
        wrong.open(&sealed).map(|_| ()),
        Err(SessionError::SealedStateRejected)
    );
    for index in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x01;
        assert!(store.open(&tampered).is_err(), "flip at {index} accepted");
    }
    assert!(store.open(&sealed[..sealed.len() - 1]).is_err());
    let mut extended = sealed.clone();
    extended.push(0);
    assert!(store.open(&extended).is_err());
}

#[test]
fn passphrase_round_trip_and_wrong_passphrase_is_refused() {
    let (mut rng, mut alice, bob) = established(51);
    let store =
        StateStore::create_with_passphrase(&mut rng, b"correct horse", TEST_PARAMS).unwrap();
    let sealed = store.seal(&mut rng, &bob).unwrap();

    let unlocked = StateStore::unlock_with_passphrase(b"correct horse", &sealed).unwrap();
    let mut restored = unlocked.open(&sealed).unwrap();
    let message = alice.encrypt(&mut rng, b"hello", None).unwrap();
    assert_eq!(restored.decrypt(NOW, &message).unwrap(), b"hello");

    let wrong = StateStore::unlock_with_passphrase(b"battery staple", &sealed).unwrap();
    assert_eq!(
        wrong.open(&sealed).map(|_| ()),
        Err(SessionError::SealedStateRejected)
    );
    // A raw-key store does not open passphrase-sealed state.
    let raw = StateStore::from_raw_key([0u8; 32]).unwrap();
    assert_eq!(
        raw.open(&sealed).map(|_| ()),
        Err(SessionError::SealedStateRejected)
    );
    // Tampered salt or parameters derive another key (or are refused).
    let mut salt_flipped = sealed.clone();
    salt_flipped[6 + 12] ^= 0x80;
    let other = StateStore::unlock_with_passphrase(b"correct horse", &salt_flipped).unwrap();
    assert!(other.open(&salt_flipped).is_err());
}

#[test]
fn oversized_kdf_parameters_in_sealed_bytes_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(52);
    let (_, _, bob) = established(52);
    let store = StateStore::create_with_passphrase(&mut rng, b"pw", TEST_PARAMS).unwrap();
    let mut sealed = store.seal(&mut rng, &bob).unwrap();
    // memory_kib sits right after "E2SS", version and key source.
    sealed[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        StateStore::unlock_with_passphrase(b"pw", &sealed),
        Err(SessionError::PassphraseKdf(_))
    ));
}

#[test]
fn sealing_twice_gives_different_bytes() {
    let (mut rng, _, bob) = established(53);
    let store = StateStore::from_raw_key([9u8; 32]).unwrap();
    assert_ne!(
        store.seal(&mut rng, &bob).unwrap(),
        store.seal(&mut rng, &bob).unwrap()
    );
}

#[test]
fn two_factors_open_together_and_neither_alone() {
    let (mut rng, mut alice, bob) = established(52);
    let device = [9u8; 32];
    let store =
        StateStore::create_two_factor(&mut rng, &device, b"correct horse", TEST_PARAMS).unwrap();
    let sealed = store.seal(&mut rng, &bob).unwrap();

    let unlocked = StateStore::unlock_two_factor(&device, b"correct horse", &sealed).unwrap();
    let mut restored = unlocked.open(&sealed).unwrap();
    let message = alice.encrypt(&mut rng, b"both factors", None).unwrap();
    assert_eq!(restored.decrypt(NOW, &message).unwrap(), b"both factors");

    // The device key without the passphrase (a stolen laptop).
    let wrong_phrase = StateStore::unlock_two_factor(&device, b"battery staple", &sealed).unwrap();
    assert_eq!(
        wrong_phrase.open(&sealed).map(|_| ()),
        Err(SessionError::SealedStateRejected)
    );
    // The passphrase without the device key (a stolen backup).
    let wrong_device =
        StateStore::unlock_two_factor(&[8u8; 32], b"correct horse", &sealed).unwrap();
    assert_eq!(
        wrong_device.open(&sealed).map(|_| ()),
        Err(SessionError::SealedStateRejected)
    );
    // The passphrase alone, as if the folder were sealed with it only.
    assert!(StateStore::unlock_with_passphrase(b"correct horse", &sealed).is_err());
    // The device key alone, as a raw key.
    assert!(
        StateStore::from_raw_key(device)
            .unwrap()
            .open(&sealed)
            .is_err()
    );
    // Passphrase-only state is not taken for two-factor state.
    let single =
        StateStore::create_with_passphrase(&mut rng, b"correct horse", TEST_PARAMS).unwrap();
    let sealed_single = single.seal(&mut rng, &bob).unwrap();
    assert!(StateStore::unlock_two_factor(&device, b"correct horse", &sealed_single).is_err());
}
