//! Cost of end-to-end sessions in the client, beside the bare `e2ee` ratchet.
//!
//! Prints one table: each row's mean time per message and its ratio to the
//! baseline (a bare `Session::encrypt` + `decrypt` of 1 KiB in an
//! established chain), all measured in the same run on the same machine.
//! Run: `cargo bench -p client --bench sessions`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// A benchmark measures wall-clock time.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use client_core::sessions::SessionBook;
use e2ee::{LocalIdentity, PrekeySecrets, Session, StateStore, UnixSeconds};
use protocol::{ClientAddress, NodeId};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: UnixSeconds = UnixSeconds(1_000_000);
const SIZE: usize = 1024;
const SESSIONS: usize = 256;

fn address(n: usize) -> ClientAddress {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(n as u64).to_be_bytes());
    ClientAddress {
        client_key: key,
        gateway: NodeId([1; 32]),
    }
}

/// Mean time per item of `run` over `items` items.
fn per_item(items: usize, run: impl FnOnce()) -> Duration {
    let start = Instant::now();
    run();
    start.elapsed() / items as u32
}

/// Alice's and Bob's bare sessions after one round trip.
fn bare_pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let alice = LocalIdentity::generate(rng);
    let bob = LocalIdentity::generate(rng);
    let prekeys = PrekeySecrets::generate(rng, 1, 1);
    let mut a = Session::initiate(rng, &alice, &bob.bundle(&prekeys)).unwrap();
    let first = a.encrypt(rng, b"hi", None).unwrap();
    let mut b = Session::accept(&bob, &prekeys, &first).unwrap();
    b.decrypt(NOW, &first).unwrap();
    let back = b.encrypt(rng, b"hello", None).unwrap();
    a.decrypt(NOW, &back).unwrap();
    (a, b)
}

/// Bob's book with `n` peers in established sessions (each answered Bob's
/// reply, so the session left the unanswered pool), and the peers' books.
fn busy_book(rng: &mut ChaCha20Rng, n: usize) -> (SessionBook, Vec<SessionBook>) {
    let bob_address = address(0);
    let mut bob = SessionBook::generate(rng);
    let mut peers = Vec::new();
    for i in 1..=n {
        let mut peer = SessionBook::generate(rng);
        peer.add_contact(&bob.card(bob_address));
        let first = peer
            .seal(NOW, rng, &bob_address, Some(&address(i)), b"hi", None)
            .unwrap();
        let opened = bob.open(NOW, &first).unwrap();
        let back = bob.seal_in(rng, opened.session, None, b"ok", None).unwrap();
        peer.open(NOW, &back).unwrap();
        let answer = peer
            .seal(NOW, rng, &bob_address, Some(&address(i)), b"answer", None)
            .unwrap();
        bob.open(NOW, &answer).unwrap();
        peers.push(peer);
    }
    (bob, peers)
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let content = vec![7u8; SIZE];
    let rounds = 2000;

    let (mut a, mut b) = bare_pair(&mut rng);
    let baseline = per_item(rounds, || {
        for _ in 0..rounds {
            let m = a.encrypt(&mut rng, &content, None).unwrap();
            black_box(b.decrypt(NOW, &m).unwrap());
        }
    });

    let (mut bob, mut peers) = busy_book(&mut rng, 1);
    let bob_address = address(0);
    let one = per_item(rounds, || {
        for _ in 0..rounds {
            let m = peers[0]
                .seal(
                    NOW,
                    &mut rng,
                    &bob_address,
                    Some(&address(1)),
                    &content,
                    None,
                )
                .unwrap();
            black_box(bob.open(NOW, &m).unwrap());
        }
    });

    let (mut bob, mut peers) = busy_book(&mut rng, SESSIONS);
    // Messages from every peer in turn, on chains bob knows: each found by
    // its routing tag.
    let messages: Vec<Vec<u8>> = (0..rounds)
        .map(|i| {
            let p = i % SESSIONS;
            peers[p]
                .seal(
                    NOW,
                    &mut rng,
                    &bob_address,
                    Some(&address(p + 1)),
                    &content,
                    None,
                )
                .unwrap()
        })
        .collect();
    let routed = per_item(rounds, || {
        for m in &messages {
            black_box(bob.open(NOW, m).unwrap());
        }
    });

    // A message no session expects: refused by one lookup of its tag.
    let mut stranger = SessionBook::generate(&mut rng);
    let mut other = SessionBook::generate(&mut rng);
    stranger.add_contact(&other.card(address(9999)));
    let first = stranger
        .seal(NOW, &mut rng, &address(9999), None, b"x", None)
        .unwrap();
    let opened = other.open(NOW, &first).unwrap();
    let foreign = other
        .seal_in(&mut rng, opened.session, None, &content, None)
        .unwrap();
    let foreign_rounds = 2000;
    let trial = per_item(foreign_rounds, || {
        for _ in 0..foreign_rounds {
            black_box(bob.open(NOW, &foreign).unwrap_err());
        }
    });

    // Sealing the whole book, as the client does after each message.
    let store = StateStore::from_raw_key([3; 32]).unwrap();
    let bytes = bob.to_bytes().unwrap().len();
    let save_rounds = 50;
    let save = per_item(save_rounds, || {
        for _ in 0..save_rounds {
            let plain = bob.to_bytes().unwrap();
            black_box(store.seal_bytes(&mut rng, &plain).unwrap());
        }
    });

    let tags = bob.expected_tag_count();
    let row = |name: &str, d: Duration| {
        println!(
            "{name:<58} {:>10.1} µs {:>8.2}",
            d.as_secs_f64() * 1e6,
            d.as_secs_f64() / baseline.as_secs_f64()
        );
    };
    println!("{:<58} {:>13} {:>8}", "per 1 KiB message", "time", "ratio");
    row("bare e2ee encrypt + decrypt (baseline)", baseline);
    row("book seal + open, 1 session", one);
    row(
        &format!("book open, {SESSIONS} sessions, routed by tag"),
        routed,
    );
    row(
        &format!("book open, {SESSIONS} sessions, foreign message"),
        trial,
    );
    row(
        &format!("book serialize + seal, {SESSIONS} sessions ({bytes} B)"),
        save,
    );
    let sealed = peers[0]
        .seal(NOW, &mut rng, &bob_address, None, &content, None)
        .unwrap();
    println!(
        "bytes added to a {SIZE} B message in an established session: {}; \
         routing tags held for {SESSIONS} sessions: {tags}",
        sealed.len() - SIZE
    );
}
