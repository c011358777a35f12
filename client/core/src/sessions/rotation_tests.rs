//! Prekey rotation in the session book: grace, erasure, expired cards, and
//! the new bundle sent to correspondents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use super::*;
use protocol::NodeId;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn address(n: u8) -> ClientAddress {
    ClientAddress {
        client_key: [n; 32],
        gateway: NodeId([n + 100; 32]),
    }
}

const T0: u64 = 1_000_000;
/// Ten seconds of use, five of grace.
const SCHEDULE: RotationSchedule = RotationSchedule {
    period: Duration::from_secs(10),
    grace: Duration::from_secs(5),
};

fn at(offset: u64) -> UnixSeconds {
    UnixSeconds(T0 + offset)
}

fn spk_of(card: &AddressCard) -> u32 {
    card.bundle.spk_id()
}

#[test]
fn the_card_expires_a_period_and_a_grace_after_its_prekeys_were_made() {
    let mut rng = ChaCha20Rng::seed_from_u64(40);
    let mut bob = SessionBook::generate_at(&mut rng, at(0), &SCHEDULE);
    let card = bob.card(address(2));
    assert_eq!(card.expires_at(), Some(at(15)));
    assert_eq!(bob.card_expires_at(), Some(at(15)));
    assert_eq!(card.to_string().parse::<AddressCard>().unwrap(), card);
    assert_eq!(bob.next_prekey_change(&SCHEDULE), at(10));
    // Not due before the period is over.
    assert!(!bob.rotate_if_due(at(9), &SCHEDULE, &mut rng).changed());
    assert_eq!(bob.card(address(2)), card);
    let rotation = bob.rotate_if_due(at(10), &SCHEDULE, &mut rng);
    assert_eq!(rotation.rotated, Some((1, 2)));
    assert!(rotation.erased.is_empty());
    let next = bob.card(address(2));
    assert_eq!((spk_of(&next), next.expires_at()), (2, Some(at(25))));
    assert_eq!(bob.retired_prekeys(), 1);
    // The retired prekeys are erased when their card expires.
    assert_eq!(bob.next_prekey_change(&SCHEDULE), at(15));
    let rotation = bob.rotate_if_due(at(15), &SCHEDULE, &mut rng);
    assert_eq!((rotation.rotated, rotation.erased), (None, vec![1]));
    assert_eq!(bob.retired_prekeys(), 0);
    // The ring survives serialization.
    let restored = SessionBook::from_bytes(&bob.to_bytes().unwrap()).unwrap();
    assert_eq!(restored.card(address(2)), next);
    assert_eq!(restored.next_prekey_change(&SCHEDULE), at(20));
}

#[test]
fn a_first_message_to_a_retired_prekey_opens_within_its_grace_and_not_after() {
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let mut bob = SessionBook::generate_at(&mut rng, at(0), &SCHEDULE);
    let b = address(2);
    let old_card = bob.card(b);
    // Two senders make first messages from the card before it rotates.
    let mut alice = SessionBook::generate(&mut rng);
    let mut carol = SessionBook::generate(&mut rng);
    alice.add_contact(&old_card);
    carol.add_contact(&old_card);
    let from_alice = alice
        .seal(at(9), &mut rng, &b, Some(&address(1)), b"early", None)
        .unwrap();
    let from_carol = carol
        .seal(at(14), &mut rng, &b, Some(&address(3)), b"late", None)
        .unwrap();
    bob.rotate_if_due(at(10), &SCHEDULE, &mut rng);
    assert_eq!(spk_of(&bob.card(b)), 2);
    // Within the grace: the retired prekey opens it, and records it.
    let opened = bob.open(at(12), &from_alice).unwrap();
    assert_eq!(
        (opened.content.as_slice(), opened.kind),
        (&b"early"[..], OpenedKind::Message)
    );
    assert_eq!(bob.replay.count(1), 1);
    assert_eq!(
        bob.open(at(12), &from_alice).unwrap_err().reason(),
        "duplicate"
    );
    // After it: the prekey and its replay record are gone.
    let rotation = bob.rotate_if_due(at(15), &SCHEDULE, &mut rng);
    assert_eq!(rotation.erased, vec![1]);
    assert_eq!(bob.replay.count(1), 0);
    let err = bob.open(at(16), &from_carol).unwrap_err();
    assert_eq!(err, SessionBookError::UnknownPrekey { spk_id: 1 });
    assert!(err.to_string().contains("erased"), "{err}");
    // The session Alice started within the grace goes on.
    let reply = bob
        .seal(at(16), &mut rng, &address(1), Some(&b), b"reply", None)
        .unwrap();
    assert_eq!(alice.open(at(16), &reply).unwrap().content, b"reply");
    // A new card opens new sessions.
    let mut dave = SessionBook::generate(&mut rng);
    dave.add_contact(&bob.card(b));
    let fresh = dave
        .seal(at(16), &mut rng, &b, Some(&address(4)), b"new card", None)
        .unwrap();
    assert_eq!(bob.open(at(16), &fresh).unwrap().content, b"new card");
    assert_eq!(bob.handshakes_recorded(), 1);
}

#[test]
fn an_expired_card_is_refused_and_says_when_it_expired() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let bob = SessionBook::generate_at(&mut rng, at(0), &SCHEDULE);
    let b = address(2);
    let card = bob.card(b);
    assert_eq!(card.check_not_expired(at(14)), Ok(()));
    let expired = SessionBookError::CardExpired {
        address: b.to_string(),
        expired_at: at(15),
    };
    assert_eq!(card.check_not_expired(at(15)), Err(expired.clone()));
    let text = expired.to_string();
    assert!(text.contains("expired at 1970-01-12T13:46:55Z"), "{text}");
    assert!(text.contains("current card"), "{text}");
    assert_eq!(expired.reason(), "card_expired");
    // A contact added while fresh is refused once it expired.
    let mut alice = SessionBook::generate(&mut rng);
    alice.add_contact(&card);
    assert_eq!(
        alice.seal(at(20), &mut rng, &b, None, b"too late", None),
        Err(expired)
    );
    assert_eq!(alice.session_count(), 0);
    // A card without an expiry (bundle version 1) never is.
    let legacy = SessionBook::generate(&mut rng).card(address(5));
    assert_eq!(legacy.expires_at(), None);
    assert_eq!(legacy.check_not_expired(UnixSeconds(u64::MAX)), Ok(()));
}

#[test]
fn correspondents_get_the_new_bundle_in_their_session_and_messages_keep_flowing() {
    let mut rng = ChaCha20Rng::seed_from_u64(43);
    let (a, b, c) = (address(1), address(2), address(3));
    let mut alice = SessionBook::generate_at(&mut rng, at(0), &SCHEDULE);
    let mut bob = SessionBook::generate_at(&mut rng, at(0), &SCHEDULE);
    let mut carol = SessionBook::generate(&mut rng);
    alice.add_contact(&bob.card(b));
    let first = alice
        .seal(at(1), &mut rng, &b, Some(&a), b"hi", None)
        .unwrap();
    bob.open(at(1), &first).unwrap();
    let reply = bob
        .seal(at(1), &mut rng, &a, Some(&b), b"hello", None)
        .unwrap();
    alice.open(at(1), &reply).unwrap();
    let answer = alice
        .seal(at(1), &mut rng, &b, Some(&a), b"answer", None)
        .unwrap();
    bob.open(at(1), &answer).unwrap();
    // Carol wrote once and was never answered: not established.
    carol.add_contact(&bob.card(b));
    let unanswered = carol
        .seal(at(2), &mut rng, &b, Some(&c), b"?", None)
        .unwrap();
    bob.open(at(2), &unanswered).unwrap();

    let rotation = bob.rotate_if_due(at(10), &SCHEDULE, &mut rng);
    assert_eq!(rotation.rotated, Some((1, 2)));
    assert_eq!(bob.pending_announcements(), 1);
    // Sent at a random moment within half the grace (2 s here).
    assert!(bob.next_prekey_change(&SCHEDULE) <= at(12));
    assert_eq!(bob.announcements_due(at(12)), 1);
    let sent = bob.announcements(at(12), &mut rng, Some(&b)).unwrap();
    assert_eq!(bob.pending_announcements(), 0);
    assert_eq!(sent.len(), 1);
    let (to, message) = &sent[0];
    assert_eq!(*to, a);
    // An ordinary ratchet message: nothing outside says what it carries.
    assert!(InitialInfo::parse(message).unwrap().is_none());
    let opened = alice.open(at(11), message).unwrap();
    assert_eq!(opened.kind, OpenedKind::PeerBundle { kept: true });
    assert!(opened.content.is_empty());
    let kept = PrekeyBundle::decode(alice.contacts[&b].bundle.as_ref().unwrap()).unwrap();
    assert_eq!(kept, bob.card(b).bundle);
    // The same bundle again, or an older one, changes nothing.
    let old = bob.card(b).bundle.clone();
    bob.rotate_if_due(at(20), &SCHEDULE, &mut rng);
    bob.announcements(at(22), &mut rng, Some(&b)).unwrap();
    assert!(!alice.keep_peer_bundle(&b, bob.identity(), &carol.card(c).bundle.encode()));
    alice.contacts.get_mut(&b).unwrap().bundle = Some(bob.card(b).bundle.encode());
    assert!(!alice.keep_peer_bundle(&b, bob.identity(), &old.encode()));

    // Past the grace of both rotations, the ratchet goes on both ways.
    bob.rotate_if_due(at(40), &SCHEDULE, &mut rng);
    assert_eq!(bob.retired_prekeys(), 0);
    for n in 0..3u8 {
        let there = alice
            .seal(at(41), &mut rng, &b, Some(&a), &[n], None)
            .unwrap();
        assert_eq!(bob.open(at(41), &there).unwrap().content, [n]);
        let back = bob
            .seal(at(41), &mut rng, &a, Some(&b), &[n, n], None)
            .unwrap();
        assert_eq!(alice.open(at(41), &back).unwrap().content, [n, n]);
    }
}

#[test]
fn a_book_without_a_schedule_retires_its_prekeys_at_the_first_check() {
    let mut rng = ChaCha20Rng::seed_from_u64(44);
    let mut bob = SessionBook::generate(&mut rng);
    let b = address(2);
    let legacy = bob.card(b);
    let mut alice = SessionBook::generate(&mut rng);
    alice.add_contact(&legacy);
    let first = alice
        .seal(at(0), &mut rng, &b, None, b"v1 card", None)
        .unwrap();
    let rotation = bob.rotate_if_due(at(0), &SCHEDULE, &mut rng);
    assert_eq!(rotation.rotated, Some((1, 2)));
    assert_eq!(bob.card(b).expires_at(), Some(at(15)));
    // Kept one grace, then erased.
    assert_eq!(bob.next_prekey_change(&SCHEDULE), at(5));
    assert_eq!(bob.open(at(4), &first).unwrap().content, b"v1 card");
    assert_eq!(
        bob.rotate_if_due(at(5), &SCHEDULE, &mut rng).erased,
        vec![1]
    );
}

#[test]
fn a_format_3_book_keeps_everything_and_its_prekeys_retire_at_the_first_check() {
    let mut rng = ChaCha20Rng::seed_from_u64(45);
    let mut alice = SessionBook::generate(&mut rng);
    let mut bob = SessionBook::generate(&mut rng);
    let (a, b) = (address(1), address(2));
    alice.add_contact(&bob.card(b));
    let first = alice
        .seal(at(0), &mut rng, &b, Some(&a), b"hi", None)
        .unwrap();
    bob.open(at(0), &first).unwrap();
    let mut old = vec![BOOK_VERSION_3];
    old.extend(
        postcard::to_stdvec(&(
            &bob.identity,
            bob.prekeys.current(),
            &super::format4_sessions(&bob),
            &bob.contacts,
            &bob.replay,
            bob.clock,
            &bob.names,
        ))
        .unwrap(),
    );
    let (mut upgraded, how) = SessionBook::restore(&old).unwrap();
    assert_eq!(how, Restored::UpgradedFromFormat3);
    assert_eq!(upgraded.recalls().sent_len(), 0);
    assert_eq!(upgraded.card(b), bob.card(b));
    assert_eq!(
        upgraded.open(at(0), &first).unwrap_err().reason(),
        "duplicate"
    );
    assert!(upgraded.rotate_if_due(at(1), &SCHEDULE, &mut rng).changed());
    assert!(SessionBook::from_bytes(&old).is_err());
}
