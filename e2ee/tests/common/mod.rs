//! Shared set-up for the behaviour tests.
#![allow(dead_code)]

use e2ee::{LocalIdentity, PrekeyBundle, PrekeySecrets, Session, UnixSeconds};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// A time well before any expiry the tests set.
pub const NOW: UnixSeconds = UnixSeconds(1_700_000_000);

/// Both parties' long-term keys and Bob's published bundle.
pub struct Parties {
    pub rng: ChaCha20Rng,
    pub alice: LocalIdentity,
    pub bob: LocalIdentity,
    pub bob_prekeys: PrekeySecrets,
    pub bundle: PrekeyBundle,
}

pub fn parties(seed: u64) -> Parties {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let alice = LocalIdentity::generate(&mut rng);
    let bob = LocalIdentity::generate(&mut rng);
    let bob_prekeys = PrekeySecrets::generate(&mut rng, 11, 12);
    let bundle = PrekeyBundle::decode(&bob.bundle(&bob_prekeys).encode()).unwrap();
    Parties {
        rng,
        alice,
        bob,
        bob_prekeys,
        bundle,
    }
}

/// Alice's session and her first (handshake-carrying) message to Bob.
pub fn first_message(p: &mut Parties, text: &[u8]) -> (Session, Vec<u8>) {
    let mut alice = Session::initiate(&mut p.rng, &p.alice, &p.bundle).unwrap();
    let first = alice.encrypt(&mut p.rng, text, None).unwrap();
    (alice, first)
}

/// A session after one round trip (Alice -> Bob -> Alice).
pub fn established(seed: u64) -> (ChaCha20Rng, Session, Session) {
    let mut p = parties(seed);
    let (mut alice, first) = first_message(&mut p, b"hello bob");
    let mut bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
    assert_eq!(bob.decrypt(NOW, &first).unwrap(), b"hello bob");
    let reply = bob.encrypt(&mut p.rng, b"hello alice", None).unwrap();
    assert_eq!(alice.decrypt(NOW, &reply).unwrap(), b"hello alice");
    assert!(!alice.awaiting_reply());
    (p.rng, alice, bob)
}
