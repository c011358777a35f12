//! The hybrid (PQXDH-style) first message: three X25519 agreements plus an
//! ML-KEM-768 encapsulation, all fed into one HKDF-SHA256 root key, with
//! both parties' whole identities (X25519 and Ed25519 keys) in the transcript.

use ml_kem::{Decapsulate, Encapsulate, TryKeyInit};
use rand::CryptoRng;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::bundle::{LocalIdentity, PeerIdentity, PqEncapsulationKey, PrekeyBundle, PrekeySecrets};
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
/// Key-share type: X25519 ephemeral public key.
const SHARE_X25519: u8 = 1;
/// Key-share type: ML-KEM-768 ciphertext.
const SHARE_ML_KEM_768: u8 = 2;
/// At most this many key shares are read from an initial message.
const MAX_SHARES: u8 = 4;
/// Length of an ML-KEM-768 ciphertext.
pub const PQ_CIPHERTEXT_LEN: usize = 1088;
/// Length of the handshake prefix of a suite-1 initial message.
pub const INITIAL_PREFIX_LEN: usize =
    2 + PeerIdentity::LEN + 4 + 4 + 1 + (3 + 32) + (3 + PQ_CIPHERTEXT_LEN);

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
}

impl InitialPrefix {
    /// Encodes the prefix; the inner ratchet message follows it on the wire.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INITIAL_PREFIX_LEN);
        out.push(self.suite.id());
        out.push(KIND_INITIAL);
        out.extend_from_slice(&self.sender.to_bytes());
        out.extend_from_slice(&self.spk_id.to_be_bytes());
        out.extend_from_slice(&self.pq_id.to_be_bytes());
        out.push(2);
        push_share(&mut out, SHARE_X25519, &self.ephemeral);
        push_share(&mut out, SHARE_ML_KEM_768, &self.kem_ciphertext);
        out
    }

    /// Decodes a prefix from the front of `bytes`; returns it and its length.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, usize), SessionError> {
        let mut reader = Reader::new(bytes);
        let suite = CipherSuite::from_id(reader.u8("suite")?)?;
        let kind = reader.u8("message kind")?;
        if kind != KIND_INITIAL {
            return Err(unknown_kind(kind));
        }
        let sender = PeerIdentity {
            dh: reader.array::<32>("sender identity key")?,
            signing: reader.array::<32>("sender signing key")?,
        };
        let spk_id = reader.u32("signed prekey id")?;
        let pq_id = reader.u32("pq prekey id")?;
        let count = reader.u8("key share count")?;
        if count > MAX_SHARES {
            return Err(SessionError::Malformed("too many key shares"));
        }
        let mut ephemeral: Option<[u8; 32]> = None;
        let mut kem_ciphertext: Option<Vec<u8>> = None;
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
                other => return Err(SessionError::UnexpectedKeyShare(other)),
            }
        }
        let ephemeral = ephemeral.ok_or(SessionError::MissingKeyShare("X25519"))?;
        let kem_ciphertext = kem_ciphertext.ok_or(SessionError::MissingKeyShare("ML-KEM-768"))?;
        let len = bytes.len().saturating_sub(reader.remaining());
        let prefix = Self {
            suite,
            sender,
            spk_id,
            pq_id,
            ephemeral,
            kem_ciphertext,
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

/// Initiator side: agrees on SK with the owner of `bundle`.
pub(crate) fn initiate(
    rng: &mut impl CryptoRng,
    identity: &LocalIdentity,
    bundle: &PrekeyBundle,
) -> Result<HandshakeKeys, SessionError> {
    let suite = bundle.suite();
    let peer = bundle.identity();
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

    let prefix = InitialPrefix {
        suite,
        sender: identity.public(),
        spk_id: bundle.spk_id(),
        pq_id: bundle.pq_id(),
        ephemeral: ephemeral_public,
        kem_ciphertext: kem_ciphertext.to_vec(),
    };
    let secrets = derive_root(
        &prefix,
        &peer,
        &bundle.spk(),
        bundle.pq_public(),
        [&dh1, &dh2, &dh3],
        &kem_secret,
    )?;
    let encoded = prefix.encode();
    Ok(finish(secrets, &prefix, encoded, peer))
}

/// Responder side: recomputes SK from an initial prefix (decoded, and as
/// received in `encoded`) with our secrets.
pub(crate) fn respond(
    identity: &LocalIdentity,
    prekeys: &PrekeySecrets,
    prefix: &InitialPrefix,
    encoded: &[u8],
) -> Result<HandshakeKeys, SessionError> {
    if prefix.spk_id != prekeys.spk_id() || prefix.pq_id != prekeys.pq_id() {
        return Err(SessionError::UnknownPrekey {
            spk_id: prefix.spk_id,
            pq_id: prefix.pq_id,
        });
    }
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
    let secrets = derive_root(
        prefix,
        &us,
        &prekeys.spk_public(),
        &prekeys.pq_public_bytes(),
        [&dh1, &dh2, &dh3],
        &kem_secret,
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

/// `SK || HKa || NHKb = HKDF(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 || SS_kem,
/// info = LABEL_HANDSHAKE || transcript hash, L = 160)`, each header key being
/// a seal key and a tag key. The transcript holds both identities whole
/// (X25519 and Ed25519 keys).
fn derive_root(
    prefix: &InitialPrefix,
    responder: &PeerIdentity,
    responder_spk: &[u8; 32],
    responder_pq_public: &[u8],
    dh: [&SharedSecret; 3],
    kem_secret: &[u8; 32],
) -> Result<[Secret32; 5], SessionError> {
    let suite = prefix.suite;
    let transcript = suite.hash(&[
        LABEL_TRANSCRIPT,
        &[suite.id()],
        &prefix.sender.to_bytes(),
        &responder.to_bytes(),
        &prefix.spk_id.to_be_bytes(),
        responder_spk,
        &prefix.pq_id.to_be_bytes(),
        responder_pq_public,
        &prefix.ephemeral,
        &prefix.kem_ciphertext,
    ]);
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 5));
    ikm.extend_from_slice(&[0xFF; 32]);
    for secret in dh {
        ikm.extend_from_slice(secret.as_bytes());
    }
    ikm.extend_from_slice(kem_secret);
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
        let sent = initiate(&mut rng, &alice, &bundle).unwrap();
        assert_eq!(sent.prefix.len(), INITIAL_PREFIX_LEN);
        let (prefix, len) = InitialPrefix::decode(&sent.prefix).unwrap();
        assert_eq!(len, INITIAL_PREFIX_LEN);
        assert_eq!(prefix.encode(), sent.prefix);
        let received = respond(&bob, &prekeys, &prefix, &sent.prefix).unwrap();
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
        let sent = initiate(&mut rng, &alice, &bundle).unwrap();
        let (prefix, _) = InitialPrefix::decode(&sent.prefix).unwrap();
        let root_with = |prefix: &InitialPrefix| {
            respond(&bob, &prekeys, prefix, &prefix.encode()).map(|keys| *keys.root.expose())
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
    fn low_order_ephemeral_is_refused() {
        let (mut rng, alice, bob, prekeys, bundle) = setup();
        let sent = initiate(&mut rng, &alice, &bundle).unwrap();
        let (mut prefix, _) = InitialPrefix::decode(&sent.prefix).unwrap();
        prefix.ephemeral = [0u8; 32];
        assert_eq!(
            respond(&bob, &prekeys, &prefix, &prefix.encode()).map(|_| ()),
            Err(SessionError::NonContributoryKey)
        );
    }
}
