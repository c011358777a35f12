//! One-time prekeys: their secrets, kept until a first message uses them,
//! and the publication the gateway serves (docs/e2ee.md, "Prekeys kept at
//! the gateway").
//!
//! Why a cap on what is kept: the gateway hands each key out once, but the
//! asker may never write; a key handed out and never used would be kept
//! forever. The book keeps the newest [`MAX_HELD`]; a first message naming
//! an older one is refused as naming an unknown prekey, and its sender
//! starts again with a fresh bundle.

use std::collections::BTreeMap;

use e2ee::{LocalIdentity, OneTimePrekeySecrets, SignedOneTimePrekey};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// Most one-time secrets a book keeps (handed out or not).
pub const MAX_HELD: usize = 400;

/// The one-time prekeys of one client and its publication at the gateway.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct OneTimePrekeys {
    /// By id; the lowest ids are the oldest.
    secrets: BTreeMap<u32, OneTimePrekeySecrets>,
    /// The id the next key gets.
    next_id: u32,
    /// Serial of the last bundle published (0: none yet).
    published_serial: u64,
}

impl OneTimePrekeys {
    /// `count` new keys, their secrets kept (the oldest dropped beyond
    /// [`MAX_HELD`]), their public halves signed by `identity` for upload.
    pub(super) fn generate(
        &mut self,
        rng: &mut impl CryptoRng,
        identity: &LocalIdentity,
        count: usize,
    ) -> Vec<SignedOneTimePrekey> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let secrets = OneTimePrekeySecrets::generate(rng, self.next_id);
            out.push(identity.sign_one_time(&secrets));
            self.secrets.insert(self.next_id, secrets);
        }
        while self.secrets.len() > MAX_HELD {
            self.secrets.pop_first();
        }
        out
    }

    /// The secret of key `id`, if still held.
    pub(super) fn get(&self, id: u32) -> Option<&OneTimePrekeySecrets> {
        self.secrets.get(&id)
    }

    /// Erases key `id` (a first message used it).
    pub(super) fn erase(&mut self, id: u32) {
        self.secrets.remove(&id);
    }

    /// Secrets held.
    pub(super) fn held(&self) -> usize {
        self.secrets.len()
    }

    /// The serial for the next publication.
    pub(super) fn next_serial(&mut self) -> u64 {
        self.published_serial = self.published_serial.saturating_add(1);
        self.published_serial
    }
}
