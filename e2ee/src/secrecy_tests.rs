//! Forward secrecy with full access to the state: an attacker who steals a
//! session after messages were read tries every key the state holds or can
//! derive, and none opens them.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::{LocalIdentity, PrekeyBundle, PrekeySecrets, Session, SessionError, UnixSeconds};

const NOW: UnixSeconds = UnixSeconds(1_700_000_000);
/// How many keys ahead on each chain the attacker derives.
const SEARCH_DEPTH: u32 = 64;

fn established(rng: &mut ChaCha20Rng) -> (Session, Session, Vec<u8>) {
    let alice_id = LocalIdentity::generate(rng);
    let bob_id = LocalIdentity::generate(rng);
    let prekeys = PrekeySecrets::generate(rng, 1, 2);
    let bundle = PrekeyBundle::decode(&bob_id.bundle(&prekeys).encode()).unwrap();
    let mut alice = Session::initiate(rng, &alice_id, &bundle).unwrap();
    let first = alice.encrypt(rng, b"first", None).unwrap();
    let mut bob = Session::accept(&bob_id, &prekeys, &first).unwrap();
    bob.decrypt(NOW, &first).unwrap();
    (alice, bob, first)
}

#[test]
fn stolen_state_after_reading_opens_none_of_the_read_messages() {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let (mut alice, mut bob, first) = established(&mut rng);
    let mut captured = vec![first];
    // Several round trips, with messages read out of order so that skipped
    // keys are created and then used.
    for round in 0..6 {
        let mut batch: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                alice
                    .encrypt(&mut rng, format!("a{round}.{i}").as_bytes(), None)
                    .unwrap()
            })
            .collect();
        batch.reverse();
        for message in &batch {
            bob.decrypt(NOW, message).unwrap();
        }
        captured.extend(batch);
        let reply = bob.encrypt(&mut rng, b"ack", None).unwrap();
        alice.decrypt(NOW, &reply).unwrap();
    }
    // Skip one message and read the next: a key stays stored for the skipped
    // one (it is not captured by the attacker, it is still in flight).
    let in_flight = alice.encrypt(&mut rng, b"late", None).unwrap();
    let after = alice.encrypt(&mut rng, b"after", None).unwrap();
    bob.decrypt(NOW, &after).unwrap();
    captured.push(after);
    assert_eq!(bob.skipped_keys(), 1);

    let stolen = [
        bob.clone(),
        Session::from_bytes(&bob.to_bytes().unwrap()).unwrap(),
    ];
    for attacker in &stolen {
        for (index, message) in captured.iter().enumerate() {
            assert!(
                !attacker.attacker_opens(message, SEARCH_DEPTH),
                "stolen state opened read message {index}"
            );
            let refused = attacker.clone().decrypt(NOW, message);
            assert!(
                matches!(
                    refused,
                    Err(SessionError::DuplicateMessage | SessionError::HandshakeMismatch)
                ),
                "{refused:?}"
            );
        }
        // The search is real: the stolen state does open what was still in flight.
        assert!(attacker.attacker_opens(&in_flight, SEARCH_DEPTH));
        assert_eq!(attacker.clone().decrypt(NOW, &in_flight).unwrap(), b"late");
    }
}

#[test]
fn random_garbage_never_panics_the_stolen_state() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (_, mut bob, first) = established(&mut rng);
    for _ in 0..200 {
        let len = rng.random_range(0..first.len() + 8);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        if let Some(b) = bytes.get_mut(0) {
            *b = 1;
        }
        assert!(bob.decrypt(NOW, &bytes).is_err());
    }
}
