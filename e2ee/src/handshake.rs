//! The hybrid (PQXDH-style) first message: three X25519 agreements plus an
//! ML-KEM-768 encapsulation, all fed into one HKDF-SHA256 root key, with
//! both parties' whole identities (X25519 and Ed25519 keys) in the transcript.
//! With a one-time prekey, a fourth X25519 agreement and a second ML-KEM-768
//! encapsulation join them (message kind 0x05).

use ml_kem::{Decapsulate, Encapsulate, TryKeyInit};
use rand::CryptoRng;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::bundle::{LocalIdentity, PeerIdentity, PqEncapsulationKey, PrekeyBundle, PrekeySecrets};
use crate::one_time::{OneTimePrekeySecrets, SignedOneTimePrekey};
use crate::secret::Secret32;
use crate::suite::{
    CipherSuite, HeaderKey, LABEL_HANDSHAKE, LABEL_HANDSHAKE_ID, LABEL_TRANSCRIPT, split_secrets,
};
use crate::wire::Reader;

/// Message kind byte of a format-1 initial message (no longer read).
pub(crate) const KIND_INITIAL_V1: u8 = 1;
/// Message kind byte of a format-1 ratchet message (no longer read).
pub(crate) const KIND_RATCHET_V1: u8 = 2;
/// Message kind byte of an initial (handshake-carrying) message.
pub(crate) const KIND_INITIAL: u8 = 3;
/// Message kind byte of a ratchet message.
pub(crate) const KIND_RATCHET: u8 = 4;
/// Message kind byte of an initial message that also uses a one-time prekey.
pub(crate) const KIND_INITIAL_ONE_TIME: u8 = 5;
/// Key-share type: X25519 ephemeral public key.
const SHARE_X25519: u8 = 1;
/// Key-share type: ML-KEM-768 ciphertext to the signed PQ prekey.
const SHARE_ML_KEM_768: u8 = 2;
/// Key-share type: ML-KEM-768 ciphertext to the one-time PQ prekey (kind 0x05 only).
const SHARE_ML_KEM_768_ONE_TIME: u8 = 3;
/// At most this many key shares are read from an initial message.
const MAX_SHARES: u8 = 4;
/// Length of an ML-KEM-768 ciphertext.
pub const PQ_CIPHERTEXT_LEN: usize = 1088;
/// Length of the handshake prefix of a suite-1 initial message.
pub const INITIAL_PREFIX_LEN: usize =
    2 + PeerIdentity::LEN + 4 + 4 + 1 + (3 + 32) + (3 + PQ_CIPHERTEXT_LEN);
/// Length of the handshake prefix of a suite-1 initial message that uses a
/// one-time prekey (kind 0x05): the one-time id and a second ML-KEM share more.
pub const INITIAL_ONE_TIME_PREFIX_LEN: usize = INITIAL_PREFIX_LEN + 4 + (3 + PQ_CIPHERTEXT_LEN);

/// Whether `kind` is one of the initial-message kinds (0x03, 0x05).
pub(crate) fn is_initial_kind(kind: u8) -> bool {
    kind == KIND_INITIAL || kind == KIND_INITIAL_ONE_TIME
}

/// Refuses the kinds of format 1 with their own error, and any other unknown kind.
pub(crate) fn unknown_kind(kind: u8) -> SessionError {
    match kind {
        KIND_INITIAL_V1 | KIND_RATCHET_V1 => SessionError::OldMessageFormat(kind),
        other => SessionError::UnknownMessageKind(other),
    }
}

/// The handshake part of an initial message (everything before the inner ratchet message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InitialPrefix {
    pub(crate) suite: CipherSuite,
    pub(crate) sender: PeerIdentity,
    pub(crate) spk_id: u32,
    pub(crate) pq_id: u32,
    pub(crate) ephemeral: [u8; 32],
    pub(crate) kem_ciphertext: Vec<u8>,
    /// The one-time prekey used, if any (kind 0x05).
    pub(crate) one_time: Option<OneTimeShare>,
}

/// The one-time part of a kind-0x05 prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OneTimeShare {
    /// Id of the one-time prekey (its X25519 and ML-KEM-768 keys).
    pub(crate) id: u32,
    /// `CT2`: the ML-KEM-768 ciphertext to the one-time PQ prekey.
    pub(crate) kem_ciphertext: Vec<u8>,
}

impl InitialPrefix {
    /// Encodes the prefix; the inner ratchet message follows it on the wire.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INITIAL_ONE_TIME_PREFIX_LEN);
        out.push(self.suite.id());
        out.push(match self.one_time {
            Some(_) => KIND_INITIAL_ONE_TIME,
            None => KIND_INITIAL,
        });
        out.extend_from_slice(&self.sender.to_bytes());
        out.extend_from_slice(&self.spk_id.to_be_bytes());
        out.extend_from_slice(&self.pq_id.to_be_bytes());
        match &self.one_time {
            Some(one_time) => {
                out.extend_from_slice(&one_time.id.to_be_bytes());
                out.push(3);
                push_share(&mut out, SHARE_X25519, &self.ephemeral);
                push_share(&mut out, SHARE_ML_KEM_768, &self.kem_ciphertext);
                push_share(
                    &mut out,
                    SHARE_ML_KEM_768_ONE_TIME,
                    &one_time.kem_ciphertext,
                );
            }
            None => {
                out.push(2);
                push_share(&mut out, SHARE_X25519, &self.ephemeral);
                push_share(&mut out, SHARE_ML_KEM_768, &self.kem_ciphertext);
            }
        }
        out
    }

    /// Decodes a prefix from the front of `bytes`; returns it and its length.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, usize), SessionError> {
        let mut reader = Reader::new(bytes);
        let suite = CipherSuite::from_id(reader.u8("suite")?)?;
        let kind = reader.u8("message kind")?;
        if !is_initial_kind(kind) {
            return Err(unknown_kind(kind));
        }
        let with_one_time = kind == KIND_INITIAL_ONE_TIME;
        let sender = PeerIdentity {
            dh: reader.array::<32>("sender identity key")?,
            signing: reader.array::<32>("sender signing key")?,
        };
        let spk_id = reader.u32("signed prekey id")?;
        let pq_id = reader.u32("pq prekey id")?;
        let one_time_id = if with_one_time {
            Some(reader.u32("one-time prekey id")?)
        } else {
            None
        };
        let count = reader.u8("key share count")?;
        if count > MAX_SHARES {
            return Err(SessionError::Malformed("too many key shares"));
        }
        let mut ephemeral: Option<[u8; 32]> = None;
        let mut kem_ciphertext: Option<Vec<u8>> = None;
        let mut one_time_ciphertext: Option<Vec<u8>> = None;
        for _ in 0..count {
            let kind = reader.u8("key share type")?;
            let len = usize::from(reader.u16("key share length")?);
            let body = reader.take(len, "key share")?;
            match kind {
                SHARE_X25519 if ephemeral.is_none() => {
                    let key = <[u8; 32]>::try_from(body)
                        .map_err(|_| SessionError::Malformed("x25519 share length"))?;
                    ephemeral = Some(key);
                }
                SHARE_ML_KEM_768 if kem_ciphertext.is_none() => {
                    if body.len() != PQ_CIPHERTEXT_LEN {
                        return Err(SessionError::Malformed("ml-kem share length"));
                    }
                    kem_ciphertext = Some(body.to_vec());
                }
                SHARE_ML_KEM_768_ONE_TIME if with_one_time && one_time_ciphertext.is_none() => {
                    if body.len() != PQ_CIPHERTEXT_LEN {
                        return Err(SessionError::Malformed("one-time ml-kem share length"));
                    }
                    one_time_ciphertext = Some(body.to_vec());
                }
                other => return Err(SessionError::UnexpectedKeyShare(other)),
            }
        }
        let ephemeral = ephemeral.ok_or(SessionError::MissingKeyShare("X25519"))?;
        let kem_ciphertext = kem_ciphertext.ok_or(SessionError::MissingKeyShare("ML-KEM-768"))?;
        let one_time = match one_time_id {
            Some(id) => Some(OneTimeShare {
                id,
                kem_ciphertext: one_time_ciphertext
                    .ok_or(SessionError::MissingKeyShare("one-time ML-KEM-768"))?,
            }),
            None => None,
        };
        let len = bytes.len().saturating_sub(reader.remaining());
        let prefix = Self {
            suite,
            sender,
            spk_id,
            pq_id,
            ephemeral,
            kem_ciphertext,
            one_time,
        };
        Ok((prefix, len))
    }
}

fn push_share(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    // Share bodies are 32 or 1088 bytes: always below u16::MAX.
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// What both sides know after the handshake.
pub(crate) struct HandshakeKeys {
    /// The shared root key SK.
    pub(crate) root: Secret32,
    /// Header key of the initiator's first sending chain (HKa).
    pub(crate) initiator_header: HeaderKey,
    /// Header key of the responder's first sending chain (NHKb).
    pub(crate) responder_header: HeaderKey,
    /// The encoded initial prefix.
    pub(crate) prefix: Vec<u8>,
    /// Hash of the prefix: names the handshake.
    pub(crate) handshake_id: [u8; 32],
    /// Identities of initiator then responder, bound into every AEAD.
    pub(crate) identities: (PeerIdentity, PeerIdentity),
}

/// Handshake id of an encoded prefix.
pub(crate) fn handshake_id(suite: CipherSuite, prefix: &[u8]) -> [u8; 32] {
    suite.hash(&[LABEL_HANDSHAKE_ID, prefix])
}

/// The one-time part of a handshake, on either side: the one-time prekey's
/// public keys and the two secrets `DH4` and `SS2` (both wiped on drop).
/// Its id and `CT2` are read from the prefix.
struct OneTimeAgreement {
    opk: [u8; 32],
    pq_public: Vec<u8>,
    dh4: SharedSecret,
    kem_secret: Zeroizing<[u8; 32]>,
}

/// Initiator side: agrees on SK with the owner of `bundle`, also using
/// `one_time` (checked to be signed by the bundle's identity) if given.
pub(crate) fn initiate(
    rng: &mut impl CryptoRng,
    identity: &LocalIdentity,
    bundle: &PrekeyBundle,
    one_time: Option<&SignedOneTimePrekey>,
) -> Result<HandshakeKeys, SessionError> {
    let suite = bundle.suite();
    let peer = bundle.identity();
    if let Some(one_time) = one_time {
        if one_time.suite() != suite {
            return Err(SessionError::SuiteMismatch {
                session: suite.id(),
                message: one_time.suite().id(),
            });
        }
        one_time.verify(&peer)?;
    }
    let ephemeral = StaticSecret::from(*Secret32::random(rng).expose());
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let spk = PublicKey::from(bundle.spk());
    let dh1 = contributory(identity.dh_secret().diffie_hellman(&spk))?;
    let dh2 = contributory(ephemeral.diffie_hellman(&PublicKey::from(peer.dh)))?;
    let dh3 = contributory(ephemeral.diffie_hellman(&spk))?;
    let encapsulation_key = PqEncapsulationKey::new_from_slice(bundle.pq_public())
        .map_err(|_| SessionError::Malformed("pq prekey"))?;
    let (kem_ciphertext, kem_secret) = encapsulation_key.encapsulate_with_rng(rng);
    let kem_secret = Zeroizing::new(<[u8; 32]>::from(kem_secret));
    let mut one_time_share = None;
    let agreement = match one_time {
        Some(one_time) => {
            let opk = one_time.x25519();
            let dh4 = contributory(ephemeral.diffie_hellman(&PublicKey::from(opk)))?;
            let key = PqEncapsulationKey::new_from_slice(one_time.pq_public())
                .map_err(|_| SessionError::Malformed("one-time pq prekey"))?;
            let (ciphertext, kem_secret) = key.encapsulate_with_rng(rng);
            one_time_share = Some(OneTimeShare {
                id: one_time.id(),
                kem_ciphertext: ciphertext.to_vec(),
            });
            Some(OneTimeAgreement {
                opk,
                pq_public: one_time.pq_public().to_vec(),
                dh4,
                kem_secret: Zeroizing::new(<[u8; 32]>::from(kem_secret)),
            })
        }
        None => None,
    };

    let prefix = InitialPrefix {
        suite,
        sender: identity.public(),
        spk_id: bundle.spk_id(),
        pq_id: bundle.pq_id(),
        ephemeral: ephemeral_public,
        kem_ciphertext: kem_ciphertext.to_vec(),
        one_time: one_time_share,
    };
    let secrets = derive_root(
        &prefix,
        &peer,
        &bundle.spk(),
        bundle.pq_public(),
        [&dh1, &dh2, &dh3],
        &kem_secret,
        agreement.as_ref(),
    )?;
    let encoded = prefix.encode();
    Ok(finish(secrets, &prefix, encoded, peer))
}

/// Responder side: recomputes SK from an initial prefix (decoded, and as
/// received in `encoded`) with our secrets, and the one-time secret the
/// prefix names, if it names one.
pub(crate) fn respond(
    identity: &LocalIdentity,
    prekeys: &PrekeySecrets,
    one_time: Option<&OneTimePrekeySecrets>,
    prefix: &InitialPrefix,
    encoded: &[u8],
) -> Result<HandshakeKeys, SessionError> {
    let unknown = SessionError::UnknownPrekey {
        spk_id: prefix.spk_id,
        pq_id: prefix.pq_id,
    };
    if prefix.spk_id != prekeys.spk_id() || prefix.pq_id != prekeys.pq_id() {
        return Err(unknown);
    }
    let one_time = match (&prefix.one_time, one_time) {
        (None, None) => None,
        (Some(named), Some(secrets)) if named.id == secrets.id() => Some((named, secrets)),
        (Some(_), _) => return Err(unknown),
        (None, Some(secrets)) => {
            return Err(SessionError::UnexpectedOneTimePrekey(secrets.id()));
        }
    };
    if !prefix.sender.signing_key_is_valid() {
        return Err(SessionError::Malformed("sender signing key"));
    }
    let us = identity.public();
    let sender = PublicKey::from(prefix.sender.dh);
    let ephemeral = PublicKey::from(prefix.ephemeral);
    let spk = prekeys.spk_secret();
    let dh1 = contributory(spk.diffie_hellman(&sender))?;
    let dh2 = contributory(identity.dh_secret().diffie_hellman(&ephemeral))?;
    let dh3 = contributory(spk.diffie_hellman(&ephemeral))?;
    let kem_secret = prekeys
        .pq_decapsulation_key()
        .decapsulate_slice(&prefix.kem_ciphertext)
        .map_err(|_| SessionError::Malformed("ml-kem share length"))?;
    let kem_secret = Zeroizing::new(<[u8; 32]>::from(kem_secret));
    let agreement = match one_time {
        Some((named, secrets)) => {
            let dh4 = contributory(secrets.x25519_secret().diffie_hellman(&ephemeral))?;
            let kem_secret = secrets
                .pq_decapsulation_key()
                .decapsulate_slice(&named.kem_ciphertext)
                .map_err(|_| SessionError::Malformed("one-time ml-kem share length"))?;
            Some(OneTimeAgreement {
                opk: secrets.x25519_public(),
                pq_public: secrets.pq_public_bytes(),
                dh4,
                kem_secret: Zeroizing::new(<[u8; 32]>::from(kem_secret)),
            })
        }
        None => None,
    };
    let secrets = derive_root(
        prefix,
        &us,
        &prekeys.spk_public(),
        &prekeys.pq_public_bytes(),
        [&dh1, &dh2, &dh3],
        &kem_secret,
        agreement.as_ref(),
    )?;
    Ok(finish(secrets, prefix, encoded.to_vec(), us))
}

fn finish(
    [
        root,
        initiator_seal,
        initiator_tag,
        responder_seal,
        responder_tag,
    ]: [Secret32; 5],
    prefix: &InitialPrefix,
    encoded: Vec<u8>,
    responder: PeerIdentity,
) -> HandshakeKeys {
    HandshakeKeys {
        root,
        initiator_header: HeaderKey {
            seal: initiator_seal,
            tag: initiator_tag,
        },
        responder_header: HeaderKey {
            seal: responder_seal,
            tag: responder_tag,
        },
        handshake_id: handshake_id(prefix.suite, &encoded),
        prefix: encoded,
        identities: (prefix.sender, responder),
    }
}

/// `SK || HKa || NHKb = HKDF(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 || SS_kem
/// [|| DH4 || SS2], info = LABEL_HANDSHAKE || transcript hash, L = 160)`, each
/// header key being a seal key and a tag key. The transcript holds both
/// identities whole (X25519 and Ed25519 keys) and, with a one-time prekey,
/// its id, its two public keys and `CT2` at the end.
fn derive_root(
    prefix: &InitialPrefix,
    responder: &PeerIdentity,
    responder_spk: &[u8; 32],
    responder_pq_public: &[u8],
    dh: [&SharedSecret; 3],
    kem_secret: &[u8; 32],
    one_time: Option<&OneTimeAgreement>,
) -> Result<[Secret32; 5], SessionError> {
    let suite = prefix.suite;
    let one_time = match (&prefix.one_time, one_time) {
        (Some(share), Some(agreement)) => Some((share, agreement)),
        (None, None) => None,
        _ => return Err(SessionError::Malformed("one-time share")),
    };
    let suite_id = [suite.id()];
    let sender = prefix.sender.to_bytes();
    let responder = responder.to_bytes();
    let spk_id = prefix.spk_id.to_be_bytes();
    let pq_id = prefix.pq_id.to_be_bytes();
    let one_time_id = one_time.map(|(share, _)| share.id.to_be_bytes());
    let mut parts: Vec<&[u8]> = vec![
        LABEL_TRANSCRIPT,
        &suite_id,
        &sender,
        &responder,
        &spk_id,
        responder_spk,
        &pq_id,
        responder_pq_public,
        &prefix.ephemeral,
        &prefix.kem_ciphertext,
    ];
    if let (Some((share, agreement)), Some(id)) = (one_time, one_time_id.as_ref()) {
        parts.extend_from_slice(&[
            id,
            &agreement.opk,
            &agreement.pq_public,
            &share.kem_ciphertext,
        ]);
    }
    let transcript = suite.hash(&parts);
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 7));
    ikm.extend_from_slice(&[0xFF; 32]);
    for secret in dh {
        ikm.extend_from_slice(secret.as_bytes());
    }
    ikm.extend_from_slice(kem_secret);
    if let Some((_, agreement)) = one_time {
        ikm.extend_from_slice(agreement.dh4.as_bytes());
        ikm.extend_from_slice(agreement.kem_secret.as_slice());
    }
    let mut info = Vec::with_capacity(LABEL_HANDSHAKE.len() + 32);
    info.extend_from_slice(LABEL_HANDSHAKE);
    info.extend_from_slice(&transcript);
    let mut okm = Zeroizing::new([0u8; 160]);
    suite.hkdf(&[0u8; 32], &ikm, &info, okm.as_mut_slice())?;
    Ok(split_secrets(okm.as_slice()))
}

/// Refuses an all-zero X25519 output (the peer sent a low-order point).
pub(crate) fn contributory(secret: SharedSecret) -> Result<SharedSecret, SessionError> {
    if secret.was_contributory() {
        Ok(secret)
    } else {
        Err(SessionError::NonContributoryKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn setup() -> (
        ChaCha20Rng,
        LocalIdentity,
        LocalIdentity,
        PrekeySecrets,
        PrekeyBundle,
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let alice = LocalIdentity::generate(&mut rng);
        let bob = LocalIdentity::generate(&mut rng);
        let prekeys = PrekeySecrets::generate(&mut rng, 4, 5);
        let bundle = bob.bundle(&prekeys);
        (rng, alice, bob, prekeys, bundle)
    }

    #[test]
    fn both_sides_derive_the_same_root_and_handshake_id() {
        let (mut rng, alice, bob, prekeys, bundle) = setup();
        let sent = initiate(&mut rng, &alice, &bundle, None).unwrap();
        assert_eq!(sent.prefix.len(), INITIAL_PREFIX_LEN);
        let (prefix, len) = InitialPrefix::decode(&sent.prefix).unwrap();
        assert_eq!(len, INITIAL_PREFIX_LEN);
        assert_eq!(prefix.encode(), sent.prefix);
        let received = respond(&bob, &prekeys, None, &prefix, &sent.prefix).unwrap();
        assert_eq!(sent.root.expose(), received.root.expose());
        assert_eq!(sent.handshake_id, received.handshake_id);
        assert_eq!(sent.identities, received.identities);
        assert_eq!(sent.identities, (alice.public(), bob.public()));
        assert_eq!(
            sent.initiator_header.seal.expose(),
            received.initiator_header.seal.expose()
        );
        assert_eq!(
            sent.responder_header.tag.expose(),
            received.responder_header.tag.expose()
        );
        assert_ne!(sent.root.expose(), sent.initiator_header.seal.expose());
        assert_ne!(
            sent.initiator_header.seal.expose(),
            sent.initiator_header.tag.expose()
        );
    }

    #[test]
    fn every_share_changes_the_root() {
        let (mut rng, alice, bob, prekeys, bundle) = setup();
        let sent = initiate(&mut rng, &alice, &bundle, None).unwrap();
        let (prefix, _) = InitialPrefix::decode(&sent.prefix).unwrap();
        let root_with = |prefix: &InitialPrefix| {
            respond(&bob, &prekeys, None, prefix, &prefix.encode()).map(|keys| *keys.root.expose())
        };
        assert_eq!(root_with(&prefix).unwrap(), *sent.root.expose());
        let mut ephemeral = prefix.clone();
        ephemeral.ephemeral[0] ^= 0x40;
        assert_ne!(root_with(&ephemeral).unwrap(), *sent.root.expose());
        let mut kem = prefix.clone();
        kem.kem_ciphertext[500] ^= 0x01;
        assert_ne!(root_with(&kem).unwrap(), *sent.root.expose());
        let mut sender = prefix.clone();
        sender.sender.dh = LocalIdentity::generate(&mut rng).public().dh;
        assert_ne!(root_with(&sender).unwrap(), *sent.root.expose());
        // The signing key is in the transcript: another one, another root.
        let mut signing = prefix.clone();
        signing.sender.signing = LocalIdentity::generate(&mut rng).public().signing;
        assert_ne!(root_with(&signing).unwrap(), *sent.root.expose());
    }

    #[test]
    fn with_a_one_time_key_dh4_ss2_and_every_one_time_field_change_the_root() {
        let (mut rng, alice, bob, prekeys, bundle) = setup();
        let one_time = OneTimePrekeySecrets::generate(&mut rng, 6);
        let signed = bob.sign_one_time(&one_time);
        let sent = initiate(&mut rng, &alice, &bundle, Some(&signed)).unwrap();
        assert_eq!(sent.prefix.len(), INITIAL_ONE_TIME_PREFIX_LEN);
        let (prefix, len) = InitialPrefix::decode(&sent.prefix).unwrap();
        assert_eq!(len, INITIAL_ONE_TIME_PREFIX_LEN);
        assert_eq!(prefix.encode(), sent.prefix);
        let received = respond(&bob, &prekeys, Some(&one_time), &prefix, &sent.prefix).unwrap();
        assert_eq!(sent.root.expose(), received.root.expose());
        assert_eq!(sent.handshake_id, received.handshake_id);

        // The root the responder would derive from `prefix` and these one-time values.
        let us = bob.public();
        let spk = prekeys.spk_secret();
        let ephemeral = PublicKey::from(prefix.ephemeral);
        let dh1 = spk.diffie_hellman(&PublicKey::from(prefix.sender.dh));
        let dh2 = bob.dh_secret().diffie_hellman(&ephemeral);
        let dh3 = spk.diffie_hellman(&ephemeral);
        let ss = prekeys
            .pq_decapsulation_key()
            .decapsulate_slice(&prefix.kem_ciphertext)
            .unwrap();
        let ss = <[u8; 32]>::from(ss);
        let root = |prefix: &InitialPrefix, agreement: Option<&OneTimeAgreement>| {
            *derive_root(
                prefix,
                &us,
                &prekeys.spk_public(),
                &prekeys.pq_public_bytes(),
                [&dh1, &dh2, &dh3],
                &ss,
                agreement,
            )
            .unwrap()[0]
                .expose()
        };
        let share = prefix.one_time.clone().unwrap();
        let agreement = || OneTimeAgreement {
            opk: one_time.x25519_public(),
            pq_public: one_time.pq_public_bytes(),
            dh4: one_time.x25519_secret().diffie_hellman(&ephemeral),
            kem_secret: Zeroizing::new(<[u8; 32]>::from(
                one_time
                    .pq_decapsulation_key()
                    .decapsulate_slice(&share.kem_ciphertext)
                    .unwrap(),
            )),
        };
        assert_eq!(root(&prefix, Some(&agreement())), *sent.root.expose());
        // DH4 alone.
        let other_dh4 = OneTimeAgreement {
            dh4: StaticSecret::from([7u8; 32]).diffie_hellman(&ephemeral),
            ..agreement()
        };
        assert_ne!(root(&prefix, Some(&other_dh4)), *sent.root.expose());
        // SS2 alone.
        let mut other_ss2 = agreement();
        other_ss2.kem_secret[0] ^= 1;
        assert_ne!(root(&prefix, Some(&other_ss2)), *sent.root.expose());
        // OPK, PQOPK, the id and CT2 alone, each in the transcript.
        let mut other_opk = agreement();
        other_opk.opk[0] ^= 1;
        assert_ne!(root(&prefix, Some(&other_opk)), *sent.root.expose());
        let mut other_pq = agreement();
        other_pq.pq_public[0] ^= 1;
        assert_ne!(root(&prefix, Some(&other_pq)), *sent.root.expose());
        let mut other_id = prefix.clone();
        other_id.one_time = Some(OneTimeShare {
            id: share.id ^ 1,
            ..share.clone()
        });
        assert_ne!(root(&other_id, Some(&agreement())), *sent.root.expose());
        let mut other_ct2 = prefix.clone();
        let mut ct2 = share.clone();
        ct2.kem_ciphertext[0] ^= 1;
        other_ct2.one_time = Some(ct2);
        assert_ne!(root(&other_ct2, Some(&agreement())), *sent.root.expose());
        // A share without its agreement (or the reverse) is refused.
        let mut without = prefix.clone();
        without.one_time = None;
        assert!(
            derive_root(
                &without,
                &us,
                &prekeys.spk_public(),
                &prekeys.pq_public_bytes(),
                [&dh1, &dh2, &dh3],
                &ss,
                Some(&agreement()),
            )
            .is_err()
        );
    }

    #[test]
    fn low_order_ephemeral_is_refused() {
        let (mut rng, alice, bob, prekeys, bundle) = setup();
        let sent = initiate(&mut rng, &alice, &bundle, None).unwrap();
        let (mut prefix, _) = InitialPrefix::decode(&sent.prefix).unwrap();
        prefix.ephemeral = [0u8; 32];
        assert_eq!(
            respond(&bob, &prekeys, None, &prefix, &prefix.encode()).map(|_| ()),
            Err(SessionError::NonContributoryKey)
        );
    }
}
