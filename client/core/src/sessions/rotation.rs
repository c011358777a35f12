//! Prekey rotation in the book: asking the ring to rotate, the
//! correspondents due the new bundle and the messages that carry it, and
//! keeping the bundle a correspondent sends (docs/e2ee.md, "Prekey rotation").

use e2ee::{PrekeyBundle, UnixSeconds};
use protocol::ClientAddress;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use super::{PeerIdentityKey, Rotation, RotationSchedule, SessionBook, SessionBookError, content};

/// A correspondent due the current bundle, and when to send it.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Announcement {
    to: ClientAddress,
    /// A random moment within half the grace after the rotation, so that the
    /// correspondents' gateways do not all see a message at the same time.
    at: UnixSeconds,
}

impl SessionBook {
    /// Erases the retired prekeys whose card expired (and their replay
    /// record), then, when the current prekeys are due, retires them and
    /// makes new ones; the correspondents of established sessions are then
    /// due the new bundle ([`SessionBook::announcements`]), each at a random
    /// moment within half the grace. Save the book when the outcome
    /// [`Rotation::changed`].
    pub fn rotate_if_due(
        &mut self,
        now: UnixSeconds,
        schedule: &RotationSchedule,
        rng: &mut impl CryptoRng,
    ) -> Rotation {
        let rotation = self.prekeys.rotate_if_due(now, schedule, rng);
        if !rotation.erased.is_empty() {
            self.replay.retain_prekeys(&self.prekeys.held_spk_ids());
        }
        if rotation.rotated.is_some() {
            let spread = schedule.grace.as_secs() / 2;
            self.announce = self
                .established_correspondents()
                .into_iter()
                .map(|to| Announcement {
                    to,
                    at: UnixSeconds(
                        now.0
                            .saturating_add(rng.next_u64() % spread.saturating_add(1)),
                    ),
                })
                .collect();
        }
        rotation
    }

    /// When the book next has something to do: the current prekeys retire
    /// or retired ones are erased ([`SessionBook::rotate_if_due`]), or an
    /// announcement is due ([`SessionBook::announcements`]).
    pub fn next_prekey_change(&self, schedule: &RotationSchedule) -> UnixSeconds {
        self.announce
            .iter()
            .map(|a| a.at)
            .chain(std::iter::once(self.prekeys.next_change_at(schedule)))
            .min()
            .unwrap_or(UnixSeconds(0))
    }

    /// Retired prekeys held in their grace period.
    pub fn retired_prekeys(&self) -> usize {
        self.prekeys.retired_count()
    }

    /// The addresses of the peers of established sessions (ours, or
    /// answered) whose address is pinned to their identity; not our own,
    /// and not those of pseudonymous sessions, whose peers must not learn
    /// this book's identity.
    fn established_correspondents(&self) -> Vec<ClientAddress> {
        let own = PeerIdentityKey(self.identity.public());
        let mut addresses: Vec<ClientAddress> = self
            .sessions
            .values()
            .filter(|e| e.pool() == super::Pool::Established && e.peer != own)
            .filter_map(|e| e.address.filter(|a| self.pinned(a) == Some(e.peer)))
            .collect();
        addresses.sort_by_key(|a| (a.client_key, a.gateway.0));
        addresses.dedup();
        addresses
    }

    /// The identity pinned to `address`.
    pub(super) fn pinned(&self, address: &ClientAddress) -> Option<PeerIdentityKey> {
        self.contacts.get(address).map(|c| c.identity)
    }

    /// Seals the current bundle for every correspondent whose announcement
    /// is due at `now` since the last rotation, each in its most recently
    /// used session, and forgets them: send each message to its address
    /// (save the book first). `own` is claimed inside, as in
    /// [`SessionBook::seal`].
    pub fn announcements(
        &mut self,
        now: UnixSeconds,
        rng: &mut impl CryptoRng,
        own: Option<&ClientAddress>,
    ) -> Result<Vec<(ClientAddress, Vec<u8>)>, SessionBookError> {
        let bundle = self.prekeys.bundle(&self.identity).encode();
        let (due, later): (Vec<Announcement>, Vec<Announcement>) =
            std::mem::take(&mut self.announce)
                .into_iter()
                .partition(|a| a.at <= now);
        self.announce = later;
        let mut out = Vec::new();
        for Announcement { to, .. } in due {
            if let Some(id) = self.session_with(&to) {
                out.push((
                    to,
                    self.seal_with(rng, id, own, None, |claim| {
                        content::encode_bundle(claim, &bundle)
                    })?,
                ));
            }
        }
        Ok(out)
    }

    /// Correspondents still due the current bundle.
    pub fn pending_announcements(&self) -> usize {
        self.announce.len()
    }

    /// Correspondents whose announcement is due at `now`.
    pub fn announcements_due(&self, now: UnixSeconds) -> usize {
        self.announce.iter().filter(|a| a.at <= now).count()
    }

    /// Keeps `bytes`, a bundle `peer` sent in a session, as the bundle of
    /// `address` (pinned to `peer`) when it is signed by `peer` and expires
    /// no earlier than the one kept. Says whether it was kept.
    pub(super) fn keep_peer_bundle(
        &mut self,
        address: &ClientAddress,
        peer: PeerIdentityKey,
        bytes: &[u8],
    ) -> bool {
        let Ok(bundle) = PrekeyBundle::decode(bytes) else {
            return false;
        };
        let Some(contact) = self.contacts.get_mut(address) else {
            return false;
        };
        if contact.identity != peer || PeerIdentityKey(bundle.identity()) != peer {
            return false;
        }
        let kept_expiry = contact
            .bundle
            .as_deref()
            .and_then(|b| PrekeyBundle::decode(b).ok())
            .map(|b| b.expires_at());
        let newer = match kept_expiry {
            // A version-1 bundle kept: any signed expiry replaces it.
            None | Some(None) => true,
            Some(Some(kept)) => bundle.expires_at().is_some_and(|new| new >= kept),
        };
        if newer {
            contact.bundle = Some(bundle.encode());
        }
        newer
    }
}

/// `t` as an ISO 8601 UTC time, e.g. `2026-12-03T07:38:43Z`.
pub fn utc(t: UnixSeconds) -> String {
    // Days to a civil date (H. Hinnant's algorithm), in whole seconds.
    let days = t.0 / 86_400;
    let secs = t.0 % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
