//! How a client proves to its gateway that it holds the secret of its address.
//!
//! The gateway opens every session with a fresh X25519 key pair and sends the
//! public half as a challenge. The client answers with its client key (the
//! X25519 Sphinx public key of its address) and
//!
//! ```text
//! proof = HMAC-SHA256(key = X25519(client_secret, gateway_ephemeral),
//!                     AUTH_CONTEXT || gateway id || gateway_ephemeral || client_key)
//! ```
//!
//! The gateway computes the same shared secret from its ephemeral secret and
//! the claimed client key, and checks the tag in constant time. Only a holder
//! of the client's secret can produce it; the ephemeral key makes each proof
//! good for one session of one gateway only. A client key of low order (whose
//! shared secret is all zero, known to everyone) is refused.

use crate::keys::{NodeId, random_bytes};
use hmac::{Hmac, KeyInit, Mac};
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

/// Domain separation for the proof's transcript.
pub const AUTH_CONTEXT: &[u8] = b"mixnet gateway client auth v1";

type HmacSha256 = Hmac<Sha256>;

/// The gateway's side of one session's authentication.
pub struct AuthChallenge {
    gateway: NodeId,
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for AuthChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthChallenge({:?})", self.gateway)
    }
}

impl AuthChallenge {
    /// A fresh challenge from gateway `gateway`.
    pub fn new(gateway: NodeId, rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let secret = StaticSecret::from(random_bytes(rng));
        let public = PublicKey::from(&secret);
        AuthChallenge {
            gateway,
            secret,
            public,
        }
    }

    /// The public key sent to the client.
    pub fn ephemeral(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Whether `proof` shows that the sender holds the secret of `client_key`.
    pub fn verify(&self, client_key: &[u8; 32], proof: &[u8; 32]) -> bool {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*client_key));
        if !shared.was_contributory() {
            return false;
        }
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(shared.as_bytes()) else {
            return false;
        };
        update_transcript(&mut mac, &self.gateway, &self.ephemeral(), client_key);
        mac.verify_slice(proof).is_ok()
    }
}

/// The client's answer to a challenge: its proof of holding `client_secret`.
pub fn prove(
    client_secret: &StaticSecret,
    gateway: &NodeId,
    gateway_ephemeral: &[u8; 32],
) -> [u8; 32] {
    let client_key = PublicKey::from(client_secret).to_bytes();
    let shared = client_secret.diffie_hellman(&PublicKey::from(*gateway_ephemeral));
    // HMAC accepts keys of any length; the fallback is never taken.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(shared.as_bytes()) else {
        return [0; 32];
    };
    update_transcript(&mut mac, gateway, gateway_ephemeral, &client_key);
    mac.finalize().into_bytes().into()
}

fn update_transcript(
    mac: &mut HmacSha256,
    gateway: &NodeId,
    ephemeral: &[u8; 32],
    client_key: &[u8; 32],
) {
    mac.update(AUTH_CONTEXT);
    mac.update(gateway.as_bytes());
    mac.update(ephemeral);
    mac.update(client_key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn only_the_key_holder_for_this_challenge_passes() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let gw = NodeId([9; 32]);
        let client = StaticSecret::from(random_bytes(&mut rng));
        let key = PublicKey::from(&client).to_bytes();
        let challenge = AuthChallenge::new(gw, &mut rng);
        let proof = prove(&client, &gw, &challenge.ephemeral());
        assert!(challenge.verify(&key, &proof));

        // Another secret claiming the same key fails.
        let impostor = StaticSecret::from(random_bytes(&mut rng));
        assert!(!challenge.verify(&key, &prove(&impostor, &gw, &challenge.ephemeral())));
        // A proof for another challenge or another gateway fails.
        let other = AuthChallenge::new(gw, &mut rng);
        assert!(!other.verify(&key, &proof));
        assert!(!challenge.verify(
            &key,
            &prove(&client, &NodeId([8; 32]), &challenge.ephemeral())
        ));
        // A low-order key is refused whatever the proof.
        assert!(!challenge.verify(&[0; 32], &[0; 32]));
    }
}
