//! One-time prekeys: a first message of kind 0x05 that also uses one, the
//! checks on the signed key, and the responder's refusals.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{NOW, parties};
use e2ee::{
    INITIAL_ONE_TIME_PREFIX_LEN, INITIAL_PREFIX_LEN, InitialInfo, LocalIdentity,
    ONE_TIME_PREKEY_LEN, OneTimePrekeySecrets, PQ_CIPHERTEXT_LEN, PrekeyBundle, PrekeySecrets,
    RATCHET_OVERHEAD, Session, SessionError, SignedOneTimePrekey,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Offsets in a suite-1 initial message of kind 0x05 (docs/e2ee.md).
const ONE_TIME_ID: usize = 74;
const SHARE_COUNT: usize = 78;
const X25519_SHARE: usize = 79;
const ML_KEM_SHARE: usize = X25519_SHARE + 3 + 32;
const ONE_TIME_SHARE: usize = ML_KEM_SHARE + 3 + PQ_CIPHERTEXT_LEN;
const ONE_TIME_CIPHERTEXT: usize = ONE_TIME_SHARE + 3;

/// The one-time prekey id the tests hand out.
const OTK_ID: u32 = 0x0102_0304;

/// Bob's one-time prekey, its signed public half as it travels, and Alice's
/// first message made with it.
struct OneTimeStart {
    rng: ChaCha20Rng,
    alice: LocalIdentity,
    bob: LocalIdentity,
    bob_prekeys: PrekeySecrets,
    bundle: PrekeyBundle,
    secrets: OneTimePrekeySecrets,
    signed: SignedOneTimePrekey,
    alice_session: Session,
    first: Vec<u8>,
}

fn one_time_start(seed: u64, text: &[u8]) -> OneTimeStart {
    let mut p = parties(seed);
    let secrets = OneTimePrekeySecrets::generate(&mut p.rng, OTK_ID);
    let signed = SignedOneTimePrekey::decode(&p.bob.sign_one_time(&secrets).encode()).unwrap();
    let mut alice_session =
        Session::initiate_with(&mut p.rng, &p.alice, &p.bundle, Some(&signed)).unwrap();
    let first = alice_session.encrypt(&mut p.rng, text, None).unwrap();
    OneTimeStart {
        rng: p.rng,
        alice: p.alice,
        bob: p.bob,
        bob_prekeys: p.bob_prekeys,
        bundle: p.bundle,
        secrets,
        signed,
        alice_session,
        first,
    }
}

/// `initiator` starts a session with `responder` using one of the
/// responder's one-time prekeys, then both exchange ratchet messages.
fn round_trip(rng: &mut ChaCha20Rng, initiator: &LocalIdentity, responder: &LocalIdentity) {
    let prekeys = PrekeySecrets::generate(rng, 3, 4);
    let bundle = PrekeyBundle::decode(&responder.bundle(&prekeys).encode()).unwrap();
    let secrets = OneTimePrekeySecrets::generate(rng, 99);
    let signed = SignedOneTimePrekey::decode(&responder.sign_one_time(&secrets).encode()).unwrap();
    assert_eq!(signed.verify(&responder.public()), Ok(()));
    let mut a = Session::initiate_with(rng, initiator, &bundle, Some(&signed)).unwrap();
    let first = a.encrypt(rng, b"first", None).unwrap();
    let second = a.encrypt(rng, b"second, before any reply", None).unwrap();
    assert_eq!(first[1], 5, "initial kind with a one-time key");
    assert_eq!(
        first.len(),
        INITIAL_ONE_TIME_PREFIX_LEN + RATCHET_OVERHEAD + 5,
        "fixed overhead"
    );
    let info = InitialInfo::parse(&first).unwrap().unwrap();
    assert_eq!(info.one_time_id, Some(99));
    assert_eq!((info.spk_id, info.pq_id), (3, 4));
    assert_eq!(info.sender, initiator.public());
    let mut b = Session::accept_with(responder, &prekeys, Some(&secrets), &first).unwrap();
    assert_eq!(info.handshake_id, b.handshake_id());
    assert_eq!(b.handshake_id(), a.handshake_id());
    assert_eq!(b.peer_identity(), initiator.public());
    assert_eq!(b.decrypt(NOW, &first).unwrap(), b"first");
    assert_eq!(
        b.decrypt(NOW, &second).unwrap(),
        b"second, before any reply"
    );
    for round in 0..3u8 {
        let reply = b.encrypt(rng, &[b'b', round], None).unwrap();
        assert_eq!(reply[1], 4, "ratchet message");
        assert_eq!(a.decrypt(NOW, &reply).unwrap(), [b'b', round]);
        assert!(!a.awaiting_reply());
        let message = a.encrypt(rng, &[b'a', round], None).unwrap();
        assert_eq!(message[1], 4, "ratchet message once a reply came");
        assert_eq!(b.decrypt(NOW, &message).unwrap(), [b'a', round]);
    }
    assert!(a.peer_confirmed() && b.peer_confirmed());
}

#[test]
fn a_session_started_with_a_one_time_key_works_both_ways() {
    let mut rng = ChaCha20Rng::seed_from_u64(40);
    let alice = LocalIdentity::generate(&mut rng);
    let bob = LocalIdentity::generate(&mut rng);
    round_trip(&mut rng, &alice, &bob);
    round_trip(&mut rng, &bob, &alice);
}

#[test]
fn the_first_message_has_the_documented_layout() {
    let s = one_time_start(41, b"x");
    let first = &s.first;
    assert_eq!((first[0], first[1]), (1, 5));
    assert_eq!(&first[2..34], &s.alice.public().dh);
    assert_eq!(&first[ONE_TIME_ID..ONE_TIME_ID + 4], &OTK_ID.to_be_bytes());
    assert_eq!(first[SHARE_COUNT], 3);
    assert_eq!(&first[X25519_SHARE..X25519_SHARE + 3], &[1, 0, 32]);
    assert_eq!(&first[ML_KEM_SHARE..ML_KEM_SHARE + 3], &[2, 0x04, 0x40]);
    assert_eq!(
        &first[ONE_TIME_SHARE..ONE_TIME_CIPHERTEXT],
        &[3, 0x04, 0x40]
    );
    assert_eq!(
        ONE_TIME_CIPHERTEXT + PQ_CIPHERTEXT_LEN,
        INITIAL_ONE_TIME_PREFIX_LEN
    );
    assert_eq!(
        INITIAL_ONE_TIME_PREFIX_LEN,
        INITIAL_PREFIX_LEN + 4 + 3 + 1088
    );
    assert_eq!(
        first[INITIAL_ONE_TIME_PREFIX_LEN + 1],
        4,
        "inner ratchet message"
    );
    assert_eq!(ONE_TIME_PREKEY_LEN, 1 + 1 + 4 + 32 + 1184 + 64);
    assert_eq!(s.signed.encode().len(), ONE_TIME_PREKEY_LEN);
    // Without a one-time key the first message is kind 0x03, as before.
    let mut p = parties(41);
    let mut plain = Session::initiate_with(&mut p.rng, &p.alice, &p.bundle, None).unwrap();
    let plain_first = plain.encrypt(&mut p.rng, b"x", None).unwrap();
    assert_eq!(plain_first[1], 3);
    assert_eq!(plain_first.len(), INITIAL_PREFIX_LEN + RATCHET_OVERHEAD + 1);
    let info = InitialInfo::parse(&plain_first).unwrap().unwrap();
    assert_eq!(info.one_time_id, None);
}

#[test]
fn the_responder_needs_the_very_one_time_secret_the_message_names() {
    let mut s = one_time_start(42, b"hi");
    // Given none (deleted after a first use: a replay), or another id.
    assert_eq!(
        Session::accept_with(&s.bob, &s.bob_prekeys, None, &s.first).map(|_| ()),
        Err(SessionError::UnknownPrekey {
            spk_id: 11,
            pq_id: 12
        })
    );
    assert_eq!(
        Session::accept(&s.bob, &s.bob_prekeys, &s.first).map(|_| ()),
        Err(SessionError::UnknownPrekey {
            spk_id: 11,
            pq_id: 12
        })
    );
    let other_id = OneTimePrekeySecrets::generate(&mut s.rng, OTK_ID + 1);
    assert_eq!(
        Session::accept_with(&s.bob, &s.bob_prekeys, Some(&other_id), &s.first).map(|_| ()),
        Err(SessionError::UnknownPrekey {
            spk_id: 11,
            pq_id: 12
        })
    );
    // Same id, other keys: the message does not authenticate.
    let other_keys = OneTimePrekeySecrets::generate(&mut s.rng, OTK_ID);
    assert_eq!(
        Session::accept_with(&s.bob, &s.bob_prekeys, Some(&other_keys), &s.first).map(|_| ()),
        Err(SessionError::DecryptionFailed)
    );
    // The right one opens it.
    let mut bob = Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), &s.first).unwrap();
    assert_eq!(bob.decrypt(NOW, &s.first).unwrap(), b"hi");
    // A message that names no one-time key, given one, is refused too.
    let mut plain = Session::initiate(&mut s.rng, &s.alice, &s.bundle).unwrap();
    let plain_first = plain.encrypt(&mut s.rng, b"plain", None).unwrap();
    assert_eq!(
        Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), &plain_first).map(|_| ()),
        Err(SessionError::UnexpectedOneTimePrekey(OTK_ID))
    );
    assert!(Session::accept_with(&s.bob, &s.bob_prekeys, None, &plain_first).is_ok());
    // The initiator's session is not affected by any of this.
    assert!(s.alice_session.awaiting_reply());
}

#[test]
fn a_one_time_key_signed_by_another_identity_is_refused() {
    let mut p = parties(43);
    let mallory = LocalIdentity::generate(&mut p.rng);
    let secrets = OneTimePrekeySecrets::generate(&mut p.rng, 5);
    let forged = SignedOneTimePrekey::decode(&mallory.sign_one_time(&secrets).encode()).unwrap();
    assert_eq!(
        forged.verify(&p.bob.public()),
        Err(SessionError::BadBundleSignature)
    );
    assert_eq!(forged.verify(&mallory.public()), Ok(()));
    assert_eq!(
        Session::initiate_with(&mut p.rng, &p.alice, &p.bundle, Some(&forged)).map(|_| ()),
        Err(SessionError::BadBundleSignature)
    );
    // The signature covers the owner's whole identity: the same Ed25519 key
    // with another X25519 identity key does not verify.
    let genuine = p.bob.sign_one_time(&secrets);
    let mut other_dh = p.bob.public();
    other_dh.dh = mallory.public().dh;
    assert_eq!(
        genuine.verify(&other_dh),
        Err(SessionError::BadBundleSignature)
    );
}

#[test]
fn every_flipped_bit_of_a_signed_one_time_key_is_refused() {
    let mut p = parties(44);
    let secrets = OneTimePrekeySecrets::generate(&mut p.rng, 6);
    let bytes = p.bob.sign_one_time(&secrets).encode();
    let owner = p.bob.public();
    assert_eq!(
        SignedOneTimePrekey::decode(&bytes).unwrap().verify(&owner),
        Ok(())
    );
    for bit in 0..bytes.len() * 8 {
        let mut tampered = bytes.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let refused = match SignedOneTimePrekey::decode(&tampered) {
            Err(_) => true,
            Ok(decoded) => decoded.verify(&owner).is_err(),
        };
        assert!(refused, "bit {bit} flip accepted");
    }
    // Lengths other than exact.
    assert!(SignedOneTimePrekey::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut long = bytes.clone();
    long.push(0);
    assert!(SignedOneTimePrekey::decode(&long).is_err());
    for len in 0..bytes.len() {
        assert!(SignedOneTimePrekey::decode(&bytes[..len]).is_err(), "{len}");
    }
}

#[test]
fn flipped_bits_of_the_second_ciphertext_or_the_one_time_id_fail_the_session() {
    let s = one_time_start(45, b"hi");
    for byte in (0..PQ_CIPHERTEXT_LEN).step_by(13) {
        let mut tampered = s.first.clone();
        tampered[ONE_TIME_CIPHERTEXT + byte] ^= 1 << (byte % 8);
        assert_eq!(
            Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), &tampered).map(|_| ()),
            Err(SessionError::DecryptionFailed),
            "CT2 byte {byte}"
        );
    }
    for bit in 0..32 {
        let mut tampered = s.first.clone();
        tampered[ONE_TIME_ID + bit / 8] ^= 1 << (bit % 8);
        let result = Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), &tampered);
        assert!(
            matches!(
                result,
                Err(SessionError::UnknownPrekey { .. } | SessionError::DecryptionFailed)
            ),
            "id bit {bit}: {:?}",
            result.map(|_| ())
        );
    }
    // Untouched, it opens.
    assert!(Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), &s.first).is_ok());
}

#[test]
fn every_truncation_of_the_prefix_is_refused() {
    let s = one_time_start(46, b"hi");
    for len in 0..INITIAL_ONE_TIME_PREFIX_LEN {
        let cut = &s.first[..len];
        assert!(InitialInfo::parse(cut).is_err(), "parse of {len} bytes");
        assert!(
            Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), cut).is_err(),
            "accept of {len} bytes"
        );
    }
    // A prefix whole but the inner message cut short: refused too.
    for len in (INITIAL_ONE_TIME_PREFIX_LEN..s.first.len()).step_by(9) {
        assert!(
            Session::accept_with(&s.bob, &s.bob_prekeys, Some(&s.secrets), &s.first[..len])
                .is_err(),
            "accept of {len} bytes"
        );
    }
    let info = InitialInfo::parse(&s.first).unwrap().unwrap();
    assert_eq!(info.one_time_id, Some(OTK_ID));
    assert_eq!(info.handshake_id, s.alice_session.handshake_id());
}

#[test]
fn share_counts_and_types_are_checked_per_kind() {
    let s = one_time_start(47, b"hi");
    // Kind 0x05 without its second ML-KEM share.
    let mut missing = s.first[..ONE_TIME_SHARE].to_vec();
    missing[SHARE_COUNT] = 2;
    missing.extend_from_slice(&s.first[INITIAL_ONE_TIME_PREFIX_LEN..]);
    assert_eq!(
        InitialInfo::parse(&missing).map(|_| ()),
        Err(SessionError::MissingKeyShare("one-time ML-KEM-768"))
    );
    // Kind 0x05 with the second ML-KEM share twice.
    let mut doubled = s.first[..INITIAL_ONE_TIME_PREFIX_LEN].to_vec();
    doubled[SHARE_COUNT] = 4;
    doubled.extend_from_slice(&s.first[ONE_TIME_SHARE..]);
    assert_eq!(
        InitialInfo::parse(&doubled).map(|_| ()),
        Err(SessionError::UnexpectedKeyShare(3))
    );
    // The same bytes relabelled as kind 0x03 (without the one-time id):
    // a one-time share is not allowed there.
    let mut relabelled = s.first[..ONE_TIME_ID].to_vec();
    relabelled[1] = 3;
    relabelled.extend_from_slice(&s.first[SHARE_COUNT..]);
    assert_eq!(
        InitialInfo::parse(&relabelled).map(|_| ()),
        Err(SessionError::UnexpectedKeyShare(3))
    );
    // A kind-0x03 message relabelled as 0x05 reads its share count as an id and fails.
    let mut p = parties(47);
    let mut plain = Session::initiate(&mut p.rng, &p.alice, &p.bundle).unwrap();
    let mut plain_first = plain.encrypt(&mut p.rng, b"plain", None).unwrap();
    plain_first[1] = 5;
    assert!(InitialInfo::parse(&plain_first).is_err());
    assert!(Session::accept_with(&p.bob, &p.bob_prekeys, None, &plain_first).is_err());
}

#[test]
fn one_time_secrets_survive_serialization() {
    let mut rng = ChaCha20Rng::seed_from_u64(48);
    let owner = LocalIdentity::generate(&mut rng);
    let secrets = OneTimePrekeySecrets::generate(&mut rng, 8);
    let bytes = postcard::to_stdvec(&secrets).unwrap();
    let restored: OneTimePrekeySecrets = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(restored.id(), 8);
    assert_eq!(
        owner.sign_one_time(&restored),
        owner.sign_one_time(&secrets)
    );
    // And the restored secret opens a first message made with the original's public half.
    let mut p = parties(48);
    let signed = p.bob.sign_one_time(&secrets);
    let mut alice = Session::initiate_with(&mut p.rng, &p.alice, &p.bundle, Some(&signed)).unwrap();
    let first = alice.encrypt(&mut p.rng, b"kept", None).unwrap();
    let mut bob = Session::accept_with(&p.bob, &p.bob_prekeys, Some(&restored), &first).unwrap();
    assert_eq!(bob.decrypt(NOW, &first).unwrap(), b"kept");
    // A one-time key of another session's owner is refused before anything is sent.
    let other_signed = owner.sign_one_time(&secrets);
    assert!(Session::initiate_with(&mut p.rng, &p.alice, &p.bundle, Some(&other_signed)).is_err());
}
