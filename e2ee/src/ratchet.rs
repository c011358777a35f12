//! The Double Ratchet with encrypted headers: an X25519 DH ratchet driving
//! HKDF root steps, HMAC-SHA256 symmetric chains that give one key per
//! message, and a header key per chain (as in the Signal specification's
//! header-encryption variant) so that nothing in a message links it to
//! another one.
//!
//! Every message carries a routing tag, `HMAC(header key, number)`, that the
//! recipient can predict for the next [`TAG_WINDOW`] messages of its current
//! receiving chain and of the next one ([`Ratchet::expected_tags`]), and a
//! random nonce that salts the message key, so a state restored from a
//! backup never encrypts two plaintexts under one key and nonce.
//!
//! Keys of messages that were skipped (not yet arrived) are kept in a
//! bounded window. A message whose number is below what a chain has reached
//! and whose key is not stored was already decrypted: it is refused as a
//! duplicate without any key being tried.

use std::collections::VecDeque;

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::handshake::{KIND_RATCHET, contributory, unknown_kind};
use crate::secret::Secret32;
use crate::suite::{CipherSuite, HeaderKey, MESSAGE_NONCE_LEN, MESSAGE_TAG_LEN, TAG_LEN};
use crate::wire::Reader;

/// At most this many message keys are skipped in one chain.
pub const MAX_SKIP_PER_CHAIN: u32 = 1000;
/// At most this many skipped message keys are stored in a session; the oldest are deleted first.
pub const MAX_SKIPPED_TOTAL: usize = 2000;
/// How many past receiving chains a session remembers (header key and
/// length, no message key) to refuse duplicates from them.
pub const MAX_PAST_CHAINS: usize = 128;
/// How many messages ahead a session predicts the routing tags of, in its
/// current receiving chain (from the next number expected) and in the next
/// one (from its first message).
pub const TAG_WINDOW: u32 = 64;
/// Length of the cleartext header fields of a ratchet message, once decrypted:
/// ratchet key, previous chain length, message number.
const HEADER_PLAIN_LEN: usize = 32 + 4 + 4;
/// Length of the fields before the encrypted header: suite, kind, tag, nonce.
pub(crate) const HEADER_CLEAR_LEN: usize = 2 + MESSAGE_TAG_LEN + MESSAGE_NONCE_LEN;
/// Length of a ratchet message's header on the wire: suite, kind, routing
/// tag, random nonce, and the encrypted header with its AEAD tag.
pub const RATCHET_HEADER_LEN: usize = HEADER_CLEAR_LEN + HEADER_PLAIN_LEN + TAG_LEN;

/// The header of a ratchet message, as the sender wrote it (it travels encrypted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RatchetHeader {
    pub(crate) ratchet_key: [u8; 32],
    pub(crate) previous_chain_len: u32,
    pub(crate) number: u32,
}

impl RatchetHeader {
    fn encode(&self) -> [u8; HEADER_PLAIN_LEN] {
        let mut out = [0u8; HEADER_PLAIN_LEN];
        let (key, rest) = out.split_at_mut(32);
        key.copy_from_slice(&self.ratchet_key);
        let (pn, n) = rest.split_at_mut(4);
        pn.copy_from_slice(&self.previous_chain_len.to_be_bytes());
        n.copy_from_slice(&self.number.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let mut reader = Reader::new(bytes);
        let header = Self {
            ratchet_key: reader.array("ratchet key")?,
            previous_chain_len: reader.u32("previous chain length")?,
            number: reader.u32("message number")?,
        };
        reader.finish("header length")?;
        Ok(header)
    }
}

/// A received ratchet message split into its wire fields (nothing decrypted).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WireHeader<'a> {
    pub(crate) suite: CipherSuite,
    pub(crate) tag: [u8; MESSAGE_TAG_LEN],
    pub(crate) nonce: [u8; MESSAGE_NONCE_LEN],
    /// Suite, kind, tag and nonce: the encrypted header's associated data.
    clear: &'a [u8],
    sealed: &'a [u8],
    /// The whole header as received (associated data of the body).
    pub(crate) bytes: &'a [u8],
}

impl<'a> WireHeader<'a> {
    /// Splits a ratchet message into its header and its body ciphertext.
    pub(crate) fn parse(message: &'a [u8]) -> Result<(Self, &'a [u8]), SessionError> {
        let mut reader = Reader::new(message);
        let suite = CipherSuite::from_id(reader.u8("suite")?)?;
        let kind = reader.u8("message kind")?;
        if kind != KIND_RATCHET {
            return Err(unknown_kind(kind));
        }
        let tag = reader.array("routing tag")?;
        let nonce = reader.array("message nonce")?;
        let sealed = reader.take(HEADER_PLAIN_LEN + TAG_LEN, "encrypted header")?;
        let (bytes, body) = message
            .split_at_checked(RATCHET_HEADER_LEN)
            .ok_or(SessionError::Malformed("header"))?;
        let clear = bytes
            .get(..HEADER_CLEAR_LEN)
            .ok_or(SessionError::Malformed("header"))?;
        let header = Self {
            suite,
            tag,
            nonce,
            clear,
            sealed,
            bytes,
        };
        Ok((header, body))
    }

    /// Decrypts the header under a chain's header seal key (the tag, as
    /// part of the associated data, is authenticated with it):
    /// `DecryptionFailed` under any other key.
    fn open(&self, seal_key: &Secret32) -> Result<RatchetHeader, SessionError> {
        let plain = self
            .suite
            .open_header(seal_key, &self.nonce, self.clear, self.sealed)?;
        RatchetHeader::decode(&plain)
    }
}

/// What the sender needs to write one message: its header, routing tag,
/// header seal key and message key.
pub(crate) struct Outgoing {
    header: RatchetHeader,
    tag: [u8; MESSAGE_TAG_LEN],
    seal_key: Secret32,
    pub(crate) message_key: Secret32,
}

impl Outgoing {
    /// The wire header: suite, kind, tag, `nonce`, and the header encrypted
    /// under the chain's header key with `nonce`.
    pub(crate) fn wire_header(
        &self,
        suite: CipherSuite,
        nonce: &[u8; MESSAGE_NONCE_LEN],
    ) -> Result<Vec<u8>, SessionError> {
        let mut out = Vec::with_capacity(RATCHET_HEADER_LEN);
        out.push(suite.id());
        out.push(KIND_RATCHET);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(nonce);
        let plain = Zeroizing::new(self.header.encode());
        let sealed = suite.seal_header(&self.seal_key, nonce, &out, plain.as_slice())?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// A stored key of a message that has not arrived yet.
#[derive(Clone, Serialize, Deserialize)]
struct SkippedKey {
    /// Header seal key of the message's chain.
    header: Secret32,
    number: u32,
    tag: [u8; MESSAGE_TAG_LEN],
    key: Secret32,
}

/// What is remembered of a receiving chain after the DH ratchet moved on:
/// its header seal key (to recognise its messages), no message key.
#[derive(Clone, Serialize, Deserialize)]
struct PastChain {
    header: Secret32,
    /// Messages `0..end` of the chain were decrypted or had their key stored.
    end: u32,
    /// Stored keys below this number were deleted to keep the window bounded.
    evicted_below: u32,
}

/// Most tags kept for [`Ratchet::take_new_tags`] between two calls; beyond,
/// the next call returns every expected tag instead.
const MAX_FRESH_TAGS: usize = 4096;

/// Routing tags the ratchet expects next, kept up to date as messages come
/// (not serialized: rebuilt on first use after a restore).
#[derive(Clone, Default)]
struct TagCache {
    filled: bool,
    /// Tags that became expected since the last `take_new_tags`.
    fresh: Vec<[u8; MESSAGE_TAG_LEN]>,
    /// `fresh` is incomplete: the next `take_new_tags` returns all tags.
    fresh_incomplete: bool,
    /// Number of the first tag in `current`.
    current_start: u32,
    /// Tags of messages `current_start..current_start + TAG_WINDOW` of the current receiving chain.
    current: VecDeque<[u8; MESSAGE_TAG_LEN]>,
    /// Tags of messages `0..TAG_WINDOW` of the next receiving chain.
    next: Vec<[u8; MESSAGE_TAG_LEN]>,
}

/// The state of one side of a Double Ratchet.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ratchet {
    suite: CipherSuite,
    root: Secret32,
    own_secret: Secret32,
    own_public: [u8; 32],
    /// Our ratchet key was generated by this side after the session began
    /// (false while the responder still uses its signed prekey).
    own_fresh: bool,
    remote: Option<[u8; 32]>,
    send_chain: Option<Secret32>,
    send_header: Option<HeaderKey>,
    next_send_header: HeaderKey,
    send_number: u32,
    previous_send_len: u32,
    recv_chain: Option<Secret32>,
    recv_header: Option<HeaderKey>,
    next_recv_header: HeaderKey,
    recv_number: u32,
    /// Stored keys of the current receiving chain below this number were deleted.
    recv_evicted_below: u32,
    /// A new DH ratchet key was received; the next send starts a new sending chain.
    send_step_pending: bool,
    /// A message came on a chain derived from one of our fresh ratchet keys:
    /// the peer has received one of our messages.
    peer_confirmed: bool,
    skipped: VecDeque<SkippedKey>,
    past_chains: VecDeque<PastChain>,
    #[serde(skip)]
    tags: TagCache,
}

/// The receiving side's changes for one message, applied only once the
/// message has authenticated.
struct Staged {
    root: Secret32,
    remote: Option<[u8; 32]>,
    recv_chain: Option<Secret32>,
    recv_header: Option<HeaderKey>,
    next_recv_header: HeaderKey,
    recv_number: u32,
    send_step_pending: bool,
    peer_confirmed: bool,
    new_skipped: Vec<SkippedKey>,
    retired: Option<PastChain>,
    new_chain: bool,
}

impl Staged {
    /// Derives and stages the keys of the current receiving chain up to (not including) `until`.
    fn skip_until(&mut self, suite: CipherSuite, until: u32) -> Result<(), SessionError> {
        let (Some(header_key), Some(mut chain)) =
            (self.recv_header.clone(), self.recv_chain.clone())
        else {
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
                tag: suite.message_tag(&header_key.tag, self.recv_number)?,
                header: header_key.seal.clone(),
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
    /// Initiator state: SK from the handshake, the responder's signed
    /// prekey as first remote ratchet key; `header` (HKa) heads our first
    /// chain, `peer_header` (NHKb) will head the responder's.
    pub(crate) fn initiator(
        rng: &mut impl CryptoRng,
        suite: CipherSuite,
        root: Secret32,
        remote: [u8; 32],
        header: HeaderKey,
        peer_header: HeaderKey,
    ) -> Result<Self, SessionError> {
        let own_secret = Secret32::random(rng);
        let own_public = public_of(&own_secret);
        let dh = contributory(
            StaticSecret::from(*own_secret.expose()).diffie_hellman(&PublicKey::from(remote)),
        )?;
        let step = suite.kdf_root(&root, dh.as_bytes())?;
        let mut state =
            Self::responder(suite, step.root, own_secret, step.next_header, peer_header);
        state.own_public = own_public;
        state.own_fresh = true;
        state.remote = Some(remote);
        state.send_chain = Some(step.chain);
        state.send_header = Some(header);
        Ok(state)
    }

    /// Responder state: SK from the handshake, our signed prekey as first
    /// own ratchet key; `header` (NHKb) will head our first chain,
    /// `peer_header` (HKa) heads the initiator's.
    pub(crate) fn responder(
        suite: CipherSuite,
        root: Secret32,
        signed_prekey: Secret32,
        header: HeaderKey,
        peer_header: HeaderKey,
    ) -> Self {
        let own_public = public_of(&signed_prekey);
        Self {
            suite,
            root,
            own_secret: signed_prekey,
            own_public,
            own_fresh: false,
            remote: None,
            send_chain: None,
            send_header: None,
            next_send_header: header,
            send_number: 0,
            previous_send_len: 0,
            recv_chain: None,
            recv_header: None,
            next_recv_header: peer_header,
            recv_number: 0,
            recv_evicted_below: 0,
            send_step_pending: false,
            peer_confirmed: false,
            skipped: VecDeque::new(),
            past_chains: VecDeque::new(),
            tags: TagCache::default(),
        }
    }

    /// Number of skipped message keys currently stored.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Whether a message came on a chain that only a peer who received one
    /// of our messages can have derived.
    pub(crate) fn peer_confirmed(&self) -> bool {
        self.peer_confirmed
    }

    /// Derives the next sending message key.
    pub(crate) fn next_send(&mut self, rng: &mut impl CryptoRng) -> Result<Outgoing, SessionError> {
        if self.send_step_pending {
            let remote = self.remote.ok_or(SessionError::StateEncoding(
                "pending step without remote key",
            ))?;
            let own_secret = Secret32::random(rng);
            let dh = contributory(
                StaticSecret::from(*own_secret.expose()).diffie_hellman(&PublicKey::from(remote)),
            )?;
            let step = self.suite.kdf_root(&self.root, dh.as_bytes())?;
            self.own_public = public_of(&own_secret);
            self.own_secret = own_secret;
            self.own_fresh = true;
            self.root = step.root;
            self.send_chain = Some(step.chain);
            self.send_header = Some(std::mem::replace(
                &mut self.next_send_header,
                step.next_header,
            ));
            self.previous_send_len = self.send_number;
            self.send_number = 0;
            self.send_step_pending = false;
        }
        let (Some(chain), Some(header_key)) = (self.send_chain.as_ref(), self.send_header.as_ref())
        else {
            return Err(SessionError::StateEncoding("no sending chain"));
        };
        if self.send_number == u32::MAX {
            return Err(SessionError::ChainExhausted);
        }
        let (next, message_key) = self.suite.kdf_chain(chain)?;
        let outgoing = Outgoing {
            header: RatchetHeader {
                ratchet_key: self.own_public,
                previous_chain_len: self.previous_send_len,
                number: self.send_number,
            },
            tag: self.suite.message_tag(&header_key.tag, self.send_number)?,
            seal_key: header_key.seal.clone(),
            message_key,
        };
        self.send_chain = Some(next);
        self.send_number += 1;
        Ok(outgoing)
    }

    /// Finds or derives the key of a received message and opens it with
    /// `open`. The state changes only if `open` succeeds.
    pub(crate) fn receive<T>(
        &mut self,
        wire: &WireHeader<'_>,
        open: impl FnOnce(&Secret32) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        if let Some(index) = self.skipped.iter().position(|s| s.tag == wire.tag) {
            let skipped = self.skipped.get(index).ok_or(SessionError::StaleMessage)?;
            let header = wire.open(&skipped.header)?;
            if header.number != skipped.number {
                return Err(SessionError::DecryptionFailed);
            }
            let value = open(&skipped.key)?;
            self.skipped.remove(index);
            return Ok(value);
        }
        if let Some(header_key) = &self.recv_header
            && let Ok(header) = wire.open(&header_key.seal)
        {
            if Some(header.ratchet_key) != self.remote {
                return Err(SessionError::DecryptionFailed);
            }
            if header.number < self.recv_number {
                return Err(if header.number < self.recv_evicted_below {
                    SessionError::StaleMessage
                } else {
                    SessionError::DuplicateMessage
                });
            }
            return self.receive_new(&header, false, open);
        }
        if let Ok(header) = wire.open(&self.next_recv_header.seal) {
            if Some(header.ratchet_key) == self.remote {
                return Err(SessionError::DecryptionFailed);
            }
            return self.receive_new(&header, true, open);
        }
        for past in self.past_chains.iter().rev() {
            if let Ok(header) = wire.open(&past.header) {
                return Err(
                    if header.number >= past.end || header.number < past.evicted_below {
                        SessionError::StaleMessage
                    } else {
                        SessionError::DuplicateMessage
                    },
                );
            }
        }
        Err(SessionError::DecryptionFailed)
    }

    /// Stages, opens and commits a message not seen before.
    fn receive_new<T>(
        &mut self,
        header: &RatchetHeader,
        new_chain: bool,
        open: impl FnOnce(&Secret32) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        let (staged, key) = self.stage(header, new_chain)?;
        let value = open(&key)?;
        self.commit(staged);
        Ok(value)
    }

    /// Computes, without changing the state, the key of a message not seen before.
    fn stage(
        &self,
        header: &RatchetHeader,
        new_chain: bool,
    ) -> Result<(Staged, Secret32), SessionError> {
        let mut staged = Staged {
            root: self.root.clone(),
            remote: self.remote,
            recv_chain: self.recv_chain.clone(),
            recv_header: self.recv_header.clone(),
            next_recv_header: self.next_recv_header.clone(),
            recv_number: self.recv_number,
            send_step_pending: self.send_step_pending,
            peer_confirmed: self.peer_confirmed,
            new_skipped: Vec::new(),
            retired: None,
            new_chain,
        };
        if new_chain {
            staged.skip_until(self.suite, header.previous_chain_len)?;
            staged.retired = staged.recv_header.as_ref().map(|header_key| PastChain {
                header: header_key.seal.clone(),
                end: staged.recv_number,
                evicted_below: self.recv_evicted_below,
            });
            let dh = contributory(
                StaticSecret::from(*self.own_secret.expose())
                    .diffie_hellman(&PublicKey::from(header.ratchet_key)),
            )?;
            let step = self.suite.kdf_root(&staged.root, dh.as_bytes())?;
            staged.root = step.root;
            staged.recv_chain = Some(step.chain);
            staged.recv_header = Some(std::mem::replace(
                &mut staged.next_recv_header,
                step.next_header,
            ));
            staged.recv_number = 0;
            staged.remote = Some(header.ratchet_key);
            staged.send_step_pending = true;
            // Our own key is fresh only once we have sent with it: the peer
            // derived this chain from a key it could only read in our message.
            staged.peer_confirmed |= self.own_fresh;
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
            recv_header,
            next_recv_header,
            recv_number,
            send_step_pending,
            peer_confirmed,
            new_skipped,
            retired,
            new_chain,
        } = staged;
        if let Some(past) = retired {
            if self.past_chains.len() >= MAX_PAST_CHAINS {
                self.past_chains.pop_front();
            }
            self.past_chains.push_back(past);
        }
        if new_chain {
            self.recv_evicted_below = 0;
        }
        self.root = root;
        self.remote = remote;
        self.recv_chain = recv_chain;
        self.recv_header = recv_header;
        self.next_recv_header = next_recv_header;
        self.recv_number = recv_number;
        self.send_step_pending = send_step_pending;
        self.peer_confirmed = peer_confirmed;
        for key in new_skipped {
            if self.skipped.len() >= MAX_SKIPPED_TOTAL
                && let Some(evicted) = self.skipped.pop_front()
            {
                self.note_eviction(&evicted);
            }
            // Most were in a window already; a key skipped beyond it is new.
            self.note_fresh(key.tag);
            self.skipped.push_back(key);
        }
        self.advance_tags(new_chain);
    }

    /// Remembers that a stored key was deleted, so its message is called stale, not duplicate.
    fn note_eviction(&mut self, evicted: &SkippedKey) {
        let below = evicted.number.saturating_add(1);
        let same_chain = |key: &Secret32| key.expose() == evicted.header.expose();
        if self
            .recv_header
            .as_ref()
            .is_some_and(|h| same_chain(&h.seal))
        {
            self.recv_evicted_below = self.recv_evicted_below.max(below);
        } else if let Some(past) = self.past_chains.iter_mut().find(|c| same_chain(&c.header)) {
            past.evicted_below = past.evicted_below.max(below);
        }
    }

    /// The routing tags of every message this state can open next: stored
    /// skipped keys, the next [`TAG_WINDOW`] numbers of the current receiving
    /// chain, and the first [`TAG_WINDOW`] of the next one.
    pub(crate) fn expected_tags(&mut self) -> Result<Vec<[u8; MESSAGE_TAG_LEN]>, SessionError> {
        if !self.tags.filled {
            self.fill_tags()?;
        }
        let mut tags =
            Vec::with_capacity(self.skipped.len() + self.tags.current.len() + self.tags.next.len());
        tags.extend(self.skipped.iter().map(|s| s.tag));
        tags.extend(self.tags.current.iter().copied());
        tags.extend(self.tags.next.iter().copied());
        Ok(tags)
    }

    /// Every tag that became expected since the previous call (the first
    /// call, or one after more than [`MAX_FRESH_TAGS`] changes, returns all
    /// expected tags: a superset is always a correct answer).
    pub(crate) fn take_new_tags(&mut self) -> Result<Vec<[u8; MESSAGE_TAG_LEN]>, SessionError> {
        if !self.tags.filled || self.tags.fresh_incomplete {
            let all = self.expected_tags()?;
            self.tags.fresh.clear();
            self.tags.fresh_incomplete = false;
            return Ok(all);
        }
        Ok(std::mem::take(&mut self.tags.fresh))
    }

    /// Records a tag that became expected.
    fn note_fresh(&mut self, tag: [u8; MESSAGE_TAG_LEN]) {
        if !self.tags.filled || self.tags.fresh_incomplete {
            return;
        }
        if self.tags.fresh.len() >= MAX_FRESH_TAGS {
            self.tags.fresh = Vec::new();
            self.tags.fresh_incomplete = true;
        } else {
            self.tags.fresh.push(tag);
        }
    }

    /// Computes the tag windows from scratch.
    fn fill_tags(&mut self) -> Result<(), SessionError> {
        self.tags = TagCache {
            current_start: self.recv_number,
            next: window(self.suite, &self.next_recv_header, 0)?,
            ..TagCache::default()
        };
        if let Some(header_key) = &self.recv_header {
            self.tags.current = window(self.suite, header_key, self.recv_number)?.into();
        }
        self.tags.filled = true;
        // Whoever follows changes has not seen these yet.
        self.tags.fresh_incomplete = true;
        Ok(())
    }

    /// Slides the tag windows after a message was committed; a new chain
    /// takes over the next chain's window. Any failure empties the cache,
    /// which is then rebuilt at the next call of `expected_tags`.
    fn advance_tags(&mut self, new_chain: bool) {
        if !self.tags.filled {
            return;
        }
        if self.slide_tags(new_chain).is_err() {
            self.tags = TagCache::default();
        }
    }

    fn slide_tags(&mut self, new_chain: bool) -> Result<(), SessionError> {
        if new_chain {
            let next = window(self.suite, &self.next_recv_header, 0)?;
            for tag in &next {
                self.note_fresh(*tag);
            }
            self.tags.current = std::mem::replace(&mut self.tags.next, next).into();
            self.tags.current_start = 0;
        }
        let Some(header_key) = self.recv_header.clone() else {
            return Ok(());
        };
        while self.tags.current_start < self.recv_number && !self.tags.current.is_empty() {
            self.tags.current.pop_front();
            self.tags.current_start += 1;
        }
        self.tags.current_start = self.tags.current_start.max(self.recv_number);
        let end = self.recv_number.saturating_add(TAG_WINDOW);
        let mut number = self
            .tags
            .current_start
            .saturating_add(self.tags.current.len() as u32);
        while number < end {
            let tag = self.suite.message_tag(&header_key.tag, number)?;
            self.note_fresh(tag);
            self.tags.current.push_back(tag);
            number += 1;
        }
        Ok(())
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
            let step = self.suite.kdf_root(&self.root, dh.as_bytes()).unwrap();
            chains.push(step.chain);
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

    /// Our current ratchet public key.
    pub(crate) fn own_public(&self) -> [u8; 32] {
        self.own_public
    }
}

/// Tags of messages `start..start + TAG_WINDOW` of the chain with `header_key`.
fn window(
    suite: CipherSuite,
    header_key: &HeaderKey,
    start: u32,
) -> Result<Vec<[u8; MESSAGE_TAG_LEN]>, SessionError> {
    (start..start.saturating_add(TAG_WINDOW))
        .map(|number| suite.message_tag(&header_key.tag, number))
        .collect()
}

fn public_of(secret: &Secret32) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret.expose())).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_refuses_other_lengths() {
        let header = RatchetHeader {
            ratchet_key: [9u8; 32],
            previous_chain_len: 3,
            number: 70_000,
        };
        let bytes = header.encode();
        assert_eq!(RatchetHeader::decode(&bytes).unwrap(), header);
        for len in 0..bytes.len() {
            assert!(RatchetHeader::decode(&bytes[..len]).is_err());
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(RatchetHeader::decode(&long).is_err());
    }

    #[test]
    fn a_wire_header_opens_under_its_key_only_and_authenticates_its_tag() {
        let suite = CipherSuite::DEFAULT;
        let key = Secret32::new([4u8; 32]);
        let outgoing = Outgoing {
            header: RatchetHeader {
                ratchet_key: [1u8; 32],
                previous_chain_len: 0,
                number: 7,
            },
            tag: suite.message_tag(&key, 7).unwrap(),
            seal_key: key.clone(),
            message_key: Secret32::new([0u8; 32]),
        };
        let mut message = outgoing
            .wire_header(suite, &[2u8; MESSAGE_NONCE_LEN])
            .unwrap();
        assert_eq!(message.len(), RATCHET_HEADER_LEN);
        message.extend_from_slice(b"body");
        let (wire, body) = WireHeader::parse(&message).unwrap();
        assert_eq!(body, b"body");
        assert_eq!(wire.open(&key).unwrap(), outgoing.header);
        assert!(wire.open(&Secret32::new([5u8; 32])).is_err());
        // The tag is authenticated with the header: another tag is refused.
        let mut wrong_tag = message.clone();
        wrong_tag[2] ^= 1;
        let (wire, _) = WireHeader::parse(&wrong_tag).unwrap();
        assert!(wire.open(&key).is_err());
    }
}
