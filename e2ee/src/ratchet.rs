//! The Double Ratchet: an X25519 DH ratchet driving HKDF root steps, and
//! HMAC-SHA256 symmetric chains that give one key per message.
//!
//! Keys of messages that were skipped (not yet arrived) are kept in a
//! bounded window. A message whose number is below what a chain has reached
//! and whose key is not stored was already decrypted: it is refused as a
//! duplicate without any key being tried.

use std::collections::VecDeque;

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::SessionError;
use crate::handshake::{KIND_RATCHET, contributory};
use crate::secret::Secret32;
use crate::suite::CipherSuite;
use crate::wire::Reader;

/// At most this many message keys are skipped in one chain.
pub const MAX_SKIP_PER_CHAIN: u32 = 1000;
/// At most this many skipped message keys are stored in a session; the oldest are deleted first.
pub const MAX_SKIPPED_TOTAL: usize = 2000;
/// How many past receiving chains a session remembers (ratchet key and
/// length, no key) to refuse duplicates from them.
pub const MAX_PAST_CHAINS: usize = 128;
/// Length of a ratchet message header.
pub const RATCHET_HEADER_LEN: usize = 2 + 32 + 4 + 4;

/// The cleartext header of a ratchet message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RatchetHeader {
    pub(crate) suite: CipherSuite,
    pub(crate) ratchet_key: [u8; 32],
    pub(crate) previous_chain_len: u32,
    pub(crate) number: u32,
}

impl RatchetHeader {
    pub(crate) fn encode(&self) -> [u8; RATCHET_HEADER_LEN] {
        let mut out = [0u8; RATCHET_HEADER_LEN];
        let (head, rest) = out.split_at_mut(2);
        head.copy_from_slice(&[self.suite.id(), KIND_RATCHET]);
        let (key, rest) = rest.split_at_mut(32);
        key.copy_from_slice(&self.ratchet_key);
        let (pn, n) = rest.split_at_mut(4);
        pn.copy_from_slice(&self.previous_chain_len.to_be_bytes());
        n.copy_from_slice(&self.number.to_be_bytes());
        out
    }

    /// Decodes a header from the front of a ratchet message; returns it and the ciphertext.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), SessionError> {
        let mut reader = Reader::new(bytes);
        let suite = CipherSuite::from_id(reader.u8("suite")?)?;
        let kind = reader.u8("message kind")?;
        if kind != KIND_RATCHET {
            return Err(SessionError::UnknownMessageKind(kind));
        }
        let header = Self {
            suite,
            ratchet_key: reader.array("ratchet key")?,
            previous_chain_len: reader.u32("previous chain length")?,
            number: reader.u32("message number")?,
        };
        Ok((header, reader.rest()))
    }
}

/// A stored key of a message that has not arrived yet.
#[derive(Clone, Serialize, Deserialize)]
struct SkippedKey {
    ratchet_key: [u8; 32],
    number: u32,
    key: Secret32,
}

/// What is remembered of a receiving chain after the DH ratchet moved on:
/// no key, only how far it went.
#[derive(Clone, Serialize, Deserialize)]
struct PastChain {
    ratchet_key: [u8; 32],
    /// Messages `0..end` of the chain were decrypted or had their key stored.
    end: u32,
    /// Stored keys below this number were deleted to keep the window bounded.
    evicted_below: u32,
}

/// The state of one side of a Double Ratchet.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ratchet {
    suite: CipherSuite,
    root: Secret32,
    own_secret: Secret32,
    own_public: [u8; 32],
    remote: Option<[u8; 32]>,
    send_chain: Option<Secret32>,
    send_number: u32,
    previous_send_len: u32,
    recv_chain: Option<Secret32>,
    recv_number: u32,
    /// Stored keys of the current receiving chain below this number were deleted.
    recv_evicted_below: u32,
    /// A new DH ratchet key was received; the next send starts a new sending chain.
    send_step_pending: bool,
    skipped: VecDeque<SkippedKey>,
    past_chains: VecDeque<PastChain>,
}

/// The receiving side's changes for one message, applied only once the
/// message has authenticated.
struct Staged {
    root: Secret32,
    remote: Option<[u8; 32]>,
    recv_chain: Option<Secret32>,
    recv_number: u32,
    send_step_pending: bool,
    new_skipped: Vec<SkippedKey>,
    retired: Option<PastChain>,
}

impl Staged {
    /// Derives and stages the keys of the current receiving chain up to (not including) `until`.
    fn skip_until(&mut self, suite: CipherSuite, until: u32) -> Result<(), SessionError> {
        let (Some(remote), Some(mut chain)) = (self.remote, self.recv_chain.clone()) else {
            return Ok(());
        };
        if until <= self.recv_number {
            return Ok(());
        }
        let requested = u64::from(until - self.recv_number);
        if requested > u64::from(MAX_SKIP_PER_CHAIN) {
            return Err(SessionError::TooManySkipped {
                requested,
                limit: MAX_SKIP_PER_CHAIN,
            });
        }
        while self.recv_number < until {
            let (next, key) = suite.kdf_chain(&chain)?;
            self.new_skipped.push(SkippedKey {
                ratchet_key: remote,
                number: self.recv_number,
                key,
            });
            chain = next;
            self.recv_number += 1;
        }
        self.recv_chain = Some(chain);
        Ok(())
    }
}

impl Ratchet {
    /// Initiator state: SK from the handshake, the responder's signed prekey as first remote ratchet key.
    pub(crate) fn initiator(
        rng: &mut impl CryptoRng,
        suite: CipherSuite,
        root: Secret32,
        remote: [u8; 32],
    ) -> Result<Self, SessionError> {
        let own_secret = Secret32::random(rng);
        let own_public = public_of(&own_secret);
        let dh = contributory(
            StaticSecret::from(*own_secret.expose()).diffie_hellman(&PublicKey::from(remote)),
        )?;
        let (root, send_chain) = suite.kdf_root(&root, dh.as_bytes())?;
        let mut state = Self::responder(suite, root, own_secret);
        state.own_public = own_public;
        state.remote = Some(remote);
        state.send_chain = Some(send_chain);
        Ok(state)
    }

    /// Responder state: SK from the handshake, our signed prekey as first own ratchet key.
    pub(crate) fn responder(suite: CipherSuite, root: Secret32, signed_prekey: Secret32) -> Self {
        let own_public = public_of(&signed_prekey);
        Self {
            suite,
            root,
            own_secret: signed_prekey,
            own_public,
            remote: None,
            send_chain: None,
            send_number: 0,
            previous_send_len: 0,
            recv_chain: None,
            recv_number: 0,
            recv_evicted_below: 0,
            send_step_pending: false,
            skipped: VecDeque::new(),
            past_chains: VecDeque::new(),
        }
    }

    /// Number of skipped message keys currently stored.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Derives the next sending message key; returns the header and the key.
    pub(crate) fn next_send(
        &mut self,
        rng: &mut impl CryptoRng,
    ) -> Result<(RatchetHeader, Secret32), SessionError> {
        if self.send_step_pending {
            let remote = self.remote.ok_or(SessionError::StateEncoding(
                "pending step without remote key",
            ))?;
            let own_secret = Secret32::random(rng);
            let dh = contributory(
                StaticSecret::from(*own_secret.expose()).diffie_hellman(&PublicKey::from(remote)),
            )?;
            let (root, chain) = self.suite.kdf_root(&self.root, dh.as_bytes())?;
            self.own_public = public_of(&own_secret);
            self.own_secret = own_secret;
            self.root = root;
            self.send_chain = Some(chain);
            self.previous_send_len = self.send_number;
            self.send_number = 0;
            self.send_step_pending = false;
        }
        let chain = self
            .send_chain
            .as_ref()
            .ok_or(SessionError::StateEncoding("no sending chain"))?;
        if self.send_number == u32::MAX {
            return Err(SessionError::ChainExhausted);
        }
        let (next, key) = self.suite.kdf_chain(chain)?;
        let header = RatchetHeader {
            suite: self.suite,
            ratchet_key: self.own_public,
            previous_chain_len: self.previous_send_len,
            number: self.send_number,
        };
        self.send_chain = Some(next);
        self.send_number += 1;
        Ok((header, key))
    }

    /// Finds or derives the key of a received message and opens it with
    /// `open`. The state changes only if `open` succeeds.
    pub(crate) fn receive<T>(
        &mut self,
        header: &RatchetHeader,
        open: impl FnOnce(&Secret32) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        if let Some(index) = self
            .skipped
            .iter()
            .position(|s| s.ratchet_key == header.ratchet_key && s.number == header.number)
        {
            let skipped = self.skipped.get(index).ok_or(SessionError::StaleMessage)?;
            let value = open(&skipped.key)?;
            self.skipped.remove(index);
            return Ok(value);
        }
        self.refuse_already_seen(header)?;
        let (staged, key) = self.stage(header)?;
        let value = open(&key)?;
        self.commit(staged);
        Ok(value)
    }

    /// Refuses a message of a chain we already hold, whose key is not stored.
    fn refuse_already_seen(&self, header: &RatchetHeader) -> Result<(), SessionError> {
        let (end, evicted_below) = if self.remote == Some(header.ratchet_key) {
            (self.recv_number, self.recv_evicted_below)
        } else if let Some(past) = self
            .past_chains
            .iter()
            .find(|c| c.ratchet_key == header.ratchet_key)
        {
            if header.number >= past.end {
                // The peer said this chain ended before that number.
                return Err(SessionError::StaleMessage);
            }
            (past.end, past.evicted_below)
        } else {
            return Ok(());
        };
        if header.number >= end {
            Ok(())
        } else if header.number < evicted_below {
            Err(SessionError::StaleMessage)
        } else {
            Err(SessionError::DuplicateMessage)
        }
    }

    /// Computes, without changing the state, the key of a message not seen before.
    fn stage(&self, header: &RatchetHeader) -> Result<(Staged, Secret32), SessionError> {
        let mut staged = Staged {
            root: self.root.clone(),
            remote: self.remote,
            recv_chain: self.recv_chain.clone(),
            recv_number: self.recv_number,
            send_step_pending: self.send_step_pending,
            new_skipped: Vec::new(),
            retired: None,
        };
        if self.remote != Some(header.ratchet_key) {
            staged.skip_until(self.suite, header.previous_chain_len)?;
            staged.retired = staged.remote.map(|ratchet_key| PastChain {
                ratchet_key,
                end: staged.recv_number,
                evicted_below: self.recv_evicted_below,
            });
            let dh = contributory(
                StaticSecret::from(*self.own_secret.expose())
                    .diffie_hellman(&PublicKey::from(header.ratchet_key)),
            )?;
            let (root, chain) = self.suite.kdf_root(&staged.root, dh.as_bytes())?;
            staged.root = root;
            staged.recv_chain = Some(chain);
            staged.recv_number = 0;
            staged.remote = Some(header.ratchet_key);
            staged.send_step_pending = true;
        }
        staged.skip_until(self.suite, header.number)?;
        let chain = staged
            .recv_chain
            .as_ref()
            .ok_or(SessionError::StateEncoding("no receiving chain"))?;
        let (next, key) = self.suite.kdf_chain(chain)?;
        staged.recv_chain = Some(next);
        staged.recv_number = staged.recv_number.saturating_add(1);
        Ok((staged, key))
    }

    /// Applies the changes of an authenticated message.
    fn commit(&mut self, staged: Staged) {
        let Staged {
            root,
            remote,
            recv_chain,
            recv_number,
            send_step_pending,
            new_skipped,
            retired,
        } = staged;
        if let Some(past) = retired {
            if self.past_chains.len() >= MAX_PAST_CHAINS {
                self.past_chains.pop_front();
            }
            self.past_chains.push_back(past);
            self.recv_evicted_below = 0;
        }
        self.root = root;
        self.remote = remote;
        self.recv_chain = recv_chain;
        self.recv_number = recv_number;
        self.send_step_pending = send_step_pending;
        for key in new_skipped {
            if self.skipped.len() >= MAX_SKIPPED_TOTAL
                && let Some(evicted) = self.skipped.pop_front()
            {
                self.note_eviction(&evicted);
            }
            self.skipped.push_back(key);
        }
    }

    /// Remembers that a stored key was deleted, so its message is called stale, not duplicate.
    fn note_eviction(&mut self, evicted: &SkippedKey) {
        let below = evicted.number.saturating_add(1);
        if self.remote == Some(evicted.ratchet_key) {
            self.recv_evicted_below = self.recv_evicted_below.max(below);
        } else if let Some(past) = self
            .past_chains
            .iter_mut()
            .find(|c| c.ratchet_key == evicted.ratchet_key)
        {
            past.evicted_below = past.evicted_below.max(below);
        }
    }

    /// Test hook: every key an attacker holding this state can derive
    /// without new input: stored skipped keys, `depth` keys ahead on each
    /// chain, and `depth` keys of the chains a DH ratchet step with our
    /// private key and the last remote key would give.
    #[cfg(test)]
    pub(crate) fn attacker_keys(&self, depth: u32) -> Vec<Secret32> {
        let mut keys: Vec<Secret32> = self.skipped.iter().map(|s| s.key.clone()).collect();
        let mut chains: Vec<Secret32> = self
            .recv_chain
            .iter()
            .chain(self.send_chain.iter())
            .cloned()
            .collect();
        if let Some(remote) = self.remote {
            let dh = StaticSecret::from(*self.own_secret.expose())
                .diffie_hellman(&PublicKey::from(remote));
            let (_, chain) = self.suite.kdf_root(&self.root, dh.as_bytes()).unwrap();
            chains.push(chain);
        }
        for mut chain in chains {
            for _ in 0..depth {
                let (next, key) = self.suite.kdf_chain(&chain).unwrap();
                keys.push(key);
                chain = next;
            }
        }
        keys
    }
}

fn public_of(secret: &Secret32) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret.expose())).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = RatchetHeader {
            suite: CipherSuite::DEFAULT,
            ratchet_key: [9u8; 32],
            previous_chain_len: 3,
            number: 70_000,
        };
        let bytes = header.encode();
        let (decoded, rest) = RatchetHeader::decode(&bytes).unwrap();
        assert_eq!(decoded, header);
        assert!(rest.is_empty());
        for len in 0..bytes.len() {
            assert!(RatchetHeader::decode(&bytes[..len]).is_err());
        }
    }
}
