//! The hybrid first message: both the X25519 and the ML-KEM share matter,
//! and neither may be left out.
// Test helpers outside #[test] fns may unwrap and index, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{NOW, first_message, parties};
use e2ee::{INITIAL_PREFIX_LEN, InitialInfo, PQ_CIPHERTEXT_LEN, Session, SessionError};

/// Offsets in a suite-1 initial message (docs/e2ee.md).
const SENDER_SIGNING_KEY: usize = 34;
const SHARE_COUNT: usize = 74;
const X25519_SHARE: usize = 75;
const X25519_KEY: usize = X25519_SHARE + 3;
const ML_KEM_SHARE: usize = X25519_KEY + 32;
const ML_KEM_CIPHERTEXT: usize = ML_KEM_SHARE + 3;

#[test]
fn layout_matches_the_documented_offsets() {
    let mut p = parties(1);
    let (_, first) = first_message(&mut p, b"x");
    assert_eq!(first[0], 1, "suite 1");
    assert_eq!(first[1], 3, "initial kind");
    assert_eq!(&first[2..34], &p.alice.public().dh);
    assert_eq!(
        &first[SENDER_SIGNING_KEY..SENDER_SIGNING_KEY + 32],
        &p.alice.public().signing
    );
    assert_eq!(first[SHARE_COUNT], 2);
    assert_eq!(&first[X25519_SHARE..X25519_KEY], &[1, 0, 32]);
    assert_eq!(&first[ML_KEM_SHARE..ML_KEM_CIPHERTEXT], &[2, 0x04, 0x40]);
    assert_eq!(ML_KEM_CIPHERTEXT + PQ_CIPHERTEXT_LEN, INITIAL_PREFIX_LEN);
    assert_eq!(first[INITIAL_PREFIX_LEN + 1], 4, "inner ratchet message");
    assert_eq!(
        first.len(),
        INITIAL_PREFIX_LEN + e2ee::RATCHET_OVERHEAD + 1,
        "fixed overhead"
    );
}

#[test]
fn untouched_first_message_is_accepted() {
    let mut p = parties(2);
    let (_, first) = first_message(&mut p, b"hi");
    let mut bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
    assert_eq!(bob.decrypt(NOW, &first).unwrap(), b"hi");
    assert_eq!(bob.peer_identity(), p.alice.public());
}

#[test]
fn flipping_any_bit_of_the_x25519_ephemeral_fails_the_session() {
    let mut p = parties(3);
    let (_, first) = first_message(&mut p, b"hi");
    for bit in 0..256 {
        let mut tampered = first.clone();
        tampered[X25519_KEY + bit / 8] ^= 1 << (bit % 8);
        let result = Session::accept(&p.bob, &p.bob_prekeys, &tampered);
        assert!(
            matches!(
                result,
                Err(SessionError::DecryptionFailed | SessionError::NonContributoryKey)
            ),
            "bit {bit}: {:?}",
            result.map(|_| ())
        );
    }
}

#[test]
fn flipping_bits_of_the_ml_kem_ciphertext_fails_the_session() {
    let mut p = parties(4);
    let (_, first) = first_message(&mut p, b"hi");
    for byte in (0..PQ_CIPHERTEXT_LEN)
        .step_by(17)
        .chain([PQ_CIPHERTEXT_LEN - 1])
    {
        for bit in [0u8, 3, 7] {
            let mut tampered = first.clone();
            tampered[ML_KEM_CIPHERTEXT + byte] ^= 1 << bit;
            let result = Session::accept(&p.bob, &p.bob_prekeys, &tampered);
            assert_eq!(
                result.map(|_| ()),
                Err(SessionError::DecryptionFailed),
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn a_tampered_first_message_cannot_reach_an_existing_session_either() {
    let mut p = parties(5);
    let (mut alice, first) = first_message(&mut p, b"hi");
    let second = alice.encrypt(&mut p.rng, b"again", None).unwrap();
    let mut bob = Session::accept(&p.bob, &p.bob_prekeys, &first).unwrap();
    for offset in [X25519_KEY + 5, ML_KEM_CIPHERTEXT + 100] {
        let mut tampered = second.clone();
        tampered[offset] ^= 0x10;
        assert_eq!(
            bob.decrypt(NOW, &tampered),
            Err(SessionError::HandshakeMismatch)
        );
    }
    assert_eq!(bob.decrypt(NOW, &second).unwrap(), b"again");
}

/// Rebuilds an initial message keeping only the share that `keep` names.
fn with_one_share(first: &[u8], keep_x25519: bool) -> Vec<u8> {
    let mut out = first[..SHARE_COUNT].to_vec();
    out.push(1);
    if keep_x25519 {
        out.extend_from_slice(&first[X25519_SHARE..ML_KEM_SHARE]);
    } else {
        out.extend_from_slice(&first[ML_KEM_SHARE..INITIAL_PREFIX_LEN]);
    }
    out.extend_from_slice(&first[INITIAL_PREFIX_LEN..]);
    out
}

#[test]
fn a_first_message_missing_either_share_is_refused() {
    let mut p = parties(6);
    let (_, first) = first_message(&mut p, b"hi");
    let no_pq = with_one_share(&first, true);
    let no_classical = with_one_share(&first, false);
    for (message, missing) in [(&no_pq, "ML-KEM-768"), (&no_classical, "X25519")] {
        assert_eq!(
            Session::accept(&p.bob, &p.bob_prekeys, message).map(|_| ()),
            Err(SessionError::MissingKeyShare(missing))
        );
        assert_eq!(
            InitialInfo::parse(message),
            Err(SessionError::MissingKeyShare(missing))
        );
    }
    let mut none = first[..SHARE_COUNT].to_vec();
    none.push(0);
    none.extend_from_slice(&first[INITIAL_PREFIX_LEN..]);
    assert!(matches!(
        Session::accept(&p.bob, &p.bob_prekeys, &none),
        Err(SessionError::MissingKeyShare(_))
    ));
}

#[test]
fn duplicated_or_unknown_shares_are_refused() {
    let mut p = parties(7);
    let (_, first) = first_message(&mut p, b"hi");
    let mut doubled = first[..SHARE_COUNT].to_vec();
    doubled.push(3);
    doubled.extend_from_slice(&first[X25519_SHARE..INITIAL_PREFIX_LEN]);
    doubled.extend_from_slice(&first[X25519_SHARE..ML_KEM_SHARE]);
    doubled.extend_from_slice(&first[INITIAL_PREFIX_LEN..]);
    assert_eq!(
        Session::accept(&p.bob, &p.bob_prekeys, &doubled).map(|_| ()),
        Err(SessionError::UnexpectedKeyShare(1))
    );
    let mut unknown = first.clone();
    unknown[X25519_SHARE] = 9;
    assert_eq!(
        Session::accept(&p.bob, &p.bob_prekeys, &unknown).map(|_| ()),
        Err(SessionError::UnexpectedKeyShare(9))
    );
}

#[test]
fn unknown_suites_and_foreign_prekeys_are_refused() {
    let mut p = parties(8);
    let (_, first) = first_message(&mut p, b"hi");
    let mut suite2 = first.clone();
    suite2[0] = 2;
    assert_eq!(
        Session::accept(&p.bob, &p.bob_prekeys, &suite2).map(|_| ()),
        Err(SessionError::UnknownSuite(2))
    );
    let other_prekeys = e2ee::PrekeySecrets::generate(&mut p.rng, 11, 12);
    assert_eq!(
        Session::accept(&p.bob, &other_prekeys, &first).map(|_| ()),
        Err(SessionError::DecryptionFailed),
        "same ids, different keys"
    );
    let rotated = e2ee::PrekeySecrets::generate(&mut p.rng, 13, 12);
    assert_eq!(
        Session::accept(&p.bob, &rotated, &first).map(|_| ()),
        Err(SessionError::UnknownPrekey {
            spk_id: 11,
            pq_id: 12
        })
    );
    let info = InitialInfo::parse(&first).unwrap().unwrap();
    assert_eq!(
        (info.spk_id, info.pq_id, info.sender),
        (11, 12, p.alice.public())
    );
}
