//! Bundles published at the gateway and one-time prekeys: what an asker
//! believes of a served bundle, and a one-time key opening one handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use protocol::NodeId;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: UnixSeconds = UnixSeconds(1_000_000);

fn address(n: u8) -> ClientAddress {
    ClientAddress {
        client_key: [n; 32],
        gateway: NodeId([n + 100; 32]),
    }
}

/// Alice's book, her short address, her publication and `keys` one-time prekeys.
fn published(
    rng: &mut ChaCha20Rng,
    keys: usize,
) -> (SessionBook, ShortAddress, Vec<u8>, Vec<Vec<u8>>) {
    let mut alice = SessionBook::generate(rng);
    let short = alice.short_address(address(1).gateway);
    let publication = alice.publication(address(1)).encode();
    let one_time = alice
        .new_one_time_prekeys(rng, keys)
        .iter()
        .map(|k| k.encode())
        .collect();
    (alice, short, publication, one_time)
}

#[test]
fn a_served_bundle_is_believed_only_when_its_identity_signed_it_all() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (alice, short, publication, one_time) = published(&mut rng, 1);
    let (mallory, _, mallory_publication, mallory_keys) = published(&mut rng, 1);
    let mut bob = SessionBook::generate(&mut rng);

    // Mallory's own, well-signed bundle served for Alice's short address.
    let err = bob
        .learn_published(NOW, &short, &mallory_publication, None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionBookError::Published(PublishedError::OtherIdentity { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("another identity"), "{err}");

    // Every bit flip of the publication is refused.
    for byte in [
        0,
        5,
        20,
        50,
        80,
        publication.len() / 2,
        publication.len() - 1,
    ] {
        let mut bad = publication.clone();
        bad[byte] ^= 0x10;
        assert!(
            bob.learn_published(NOW, &short, &bad, None).is_err(),
            "byte {byte}"
        );
    }
    // The client key is signed: a gateway cannot point the bundle at another mailbox.
    let mut moved = publication.clone();
    moved[9] ^= 1;
    let err = bob.learn_published(NOW, &short, &moved, None).unwrap_err();
    assert!(
        err.to_string().contains("not signed by the identity"),
        "{err}"
    );

    // Alice's bundle with Mallory's one-time prekey.
    let err = bob
        .learn_published(NOW, &short, &publication, Some(&mallory_keys[0]))
        .unwrap_err();
    assert!(
        err.to_string().contains("not signed by the identity"),
        "{err}"
    );
    assert_eq!(bob.resolve(&short), None);

    // Alice's, whole: her address is learned and pinned to her identity.
    let learned = bob
        .learn_published(NOW, &short, &publication, Some(&one_time[0]))
        .unwrap();
    assert_eq!(learned, address(1));
    assert_eq!(bob.resolve(&short), Some(address(1)));
    assert_eq!(bob.identity_named(&short), Some(alice.identity()));
    drop(mallory);
}

#[test]
fn a_one_time_prekey_opens_one_first_message_and_is_erased() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let (mut alice, short, publication, one_time) = published(&mut rng, 2);
    assert_eq!(alice.one_time_prekeys_held(), 2);
    let mut bob = SessionBook::generate(&mut rng);
    let mut carol = SessionBook::generate(&mut rng);

    let to = bob
        .learn_published(NOW, &short, &publication, Some(&one_time[0]))
        .unwrap();
    let first = bob
        .seal(NOW, &mut rng, &to, Some(&address(2)), b"hi", None)
        .unwrap();
    assert_eq!(
        InitialInfo::parse(&first).unwrap().unwrap().one_time_id,
        Some(1)
    );
    let opened = alice.open(NOW, &first).unwrap();
    assert_eq!(opened.content, b"hi");
    assert_eq!(alice.one_time_prekeys_held(), 1);

    // Carol got the other key: her handshake uses it.
    carol
        .learn_published(NOW, &short, &publication, Some(&one_time[1]))
        .unwrap();
    let hers = carol
        .seal(NOW, &mut rng, &to, Some(&address(3)), b"hey", None)
        .unwrap();
    assert_eq!(
        InitialInfo::parse(&hers).unwrap().unwrap().one_time_id,
        Some(2)
    );
    assert_eq!(alice.open(NOW, &hers).unwrap().content, b"hey");
    assert_eq!(alice.one_time_prekeys_held(), 0);

    // Bob's first message again, to a fresh restore of Alice's book whose
    // sessions are gone: the replay record refuses it, and without it the
    // erased one-time secret would.
    let mut restored = SessionBook::from_bytes(&alice.to_bytes().unwrap()).unwrap();
    restored.sessions.clear();
    assert_eq!(
        restored.open(NOW, &first).unwrap_err(),
        SessionBookError::ReplayedHandshake
    );
    restored.replay = ReplayRecord::default();
    assert_eq!(
        restored.open(NOW, &first).unwrap_err(),
        SessionBookError::UnknownOneTimePrekey { id: 1 }
    );

    // Without a one-time key (the gateway had none left) the signed prekey alone works.
    let mut dave = SessionBook::generate(&mut rng);
    dave.learn_published(NOW, &short, &publication, None)
        .unwrap();
    let plain = dave
        .seal(NOW, &mut rng, &to, Some(&address(4)), b"yo", None)
        .unwrap();
    assert_eq!(
        InitialInfo::parse(&plain).unwrap().unwrap().one_time_id,
        None
    );
    assert_eq!(alice.open(NOW, &plain).unwrap().content, b"yo");
}

#[test]
fn one_time_secrets_survive_a_restore_and_are_capped() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut alice = SessionBook::generate(&mut rng);
    let keys = alice.new_one_time_prekeys(&mut rng, 3);
    let restored = SessionBook::from_bytes(&alice.to_bytes().unwrap()).unwrap();
    assert_eq!(restored.one_time_prekeys_held(), 3);
    let more = alice.new_one_time_prekeys(&mut rng, MAX_ONE_TIME_HELD);
    assert_eq!(alice.one_time_prekeys_held(), MAX_ONE_TIME_HELD);
    // Ids go on rising; the oldest were dropped.
    assert!(more.iter().all(|k| k.id() > keys[2].id()));
    assert!(alice.one_time.get(keys[0].id()).is_none());
    // Each publication is numbered higher.
    let first = alice.publication(address(1)).serial;
    assert!(alice.publication(address(1)).serial > first);
}

#[test]
fn sessions_under_pseudonyms_show_unlinkable_identities_and_keep_to_their_pool() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let mut opener = SessionBook::generate(&mut rng);
    let mut exit = SessionBook::generate(&mut rng);
    let (own, exit_address) = (address(1), address(2));
    opener.add_contact(&exit.card(exit_address));
    // An ordinary session first: it must survive the pseudonymous ones.
    let plain = opener
        .seal(NOW, &mut rng, &exit_address, Some(&own), b"me", None)
        .unwrap();
    assert_eq!(exit.open(NOW, &plain).unwrap().peer, opener.identity());

    let (a, b) = (Pseudonym::random(&mut rng), Pseudonym::random(&mut rng));
    let from_a = opener
        .seal_as(NOW, &mut rng, &exit_address, a, b"stream a", None)
        .unwrap();
    let from_b = opener
        .seal_as(NOW, &mut rng, &exit_address, b, b"stream b", None)
        .unwrap();
    let again_a = opener
        .seal_as(NOW, &mut rng, &exit_address, a, b"stream a again", None)
        .unwrap();
    let (seen_a, seen_b) = (
        exit.open(NOW, &from_a).unwrap(),
        exit.open(NOW, &from_b).unwrap(),
    );
    // Each pseudonym is its own identity, neither the opener's, and no
    // address is claimed under one.
    assert_ne!(seen_a.peer, seen_b.peer);
    assert_ne!(seen_a.peer, opener.identity());
    assert_ne!(seen_b.peer, opener.identity());
    assert_eq!((seen_a.from, seen_b.from), (None, None));
    // The same pseudonym stays in its session.
    let seen_again = exit.open(NOW, &again_a).unwrap();
    assert_eq!(
        (seen_again.peer, seen_again.session),
        (seen_a.peer, seen_a.session)
    );
    // The exit answers in the pseudonym's session; the opener reads it there.
    let answer = exit
        .seal_in(
            &mut rng,
            seen_a.session,
            Some(&exit_address),
            b"reply a",
            None,
        )
        .unwrap();
    let read = opener.open(NOW, &answer).unwrap();
    assert_eq!(read.content, b"reply a");
    // Even asked to, the opener claims no address under the pseudonym.
    let asked = opener
        .seal_in(&mut rng, read.session, Some(&own), b"claim?", None)
        .unwrap();
    assert_eq!(exit.open(NOW, &asked).unwrap().from, None);

    // Many pseudonyms evict only one another, never the ordinary session.
    for _ in 0..MAX_PSEUDONYMOUS + 10 {
        let p = Pseudonym::random(&mut rng);
        opener
            .seal_as(NOW, &mut rng, &exit_address, p, b"x", None)
            .unwrap();
    }
    assert_eq!(opener.pseudonymous_count(), MAX_PSEUDONYMOUS);
    let later = opener
        .seal(NOW, &mut rng, &exit_address, Some(&own), b"still me", None)
        .unwrap();
    // Still the first session's handshake (the exit has not answered in it yet).
    assert_eq!(
        InitialInfo::parse(&later).unwrap().unwrap().handshake_id,
        InitialInfo::parse(&plain).unwrap().unwrap().handshake_id,
        "the ordinary session was kept"
    );
    assert_eq!(exit.open(NOW, &later).unwrap().peer, opener.identity());
    // A forgotten pseudonym's session is gone (the pool was full, so adding
    // it evicted the oldest first).
    let last = Pseudonym::random(&mut rng);
    opener
        .seal_as(NOW, &mut rng, &exit_address, last, b"y", None)
        .unwrap();
    opener.forget_pseudonym(last);
    assert_eq!(opener.pseudonymous_count(), MAX_PSEUDONYMOUS - 1);
}
