//! The book's prekeys over time: the current ones, whose card is handed
//! out, and the retired ones kept until their card expires, so that a first
//! message made from an older card still opens; then they are erased.
//!
//! ```text
//! made ──── period ────> retired (new prekeys made) ──── grace ────> erased
//!                                                                     = the card's signed expiry
//! ```
//!
//! A card made from prekeys says, signed, when they are erased: the moment
//! they were made plus the period and the grace. Rotation comes when the
//! period is over, or earlier when the card would otherwise expire less than
//! a grace after it (a schedule shortened since), so that a new card is
//! always out a full grace before the previous one expires. Prekeys of a
//! book made before rotation existed have no expiry (their card is of
//! bundle version 1): they retire at the first rotation check and are
//! erased one grace later.

use std::time::Duration;

use e2ee::{LocalIdentity, PrekeyBundle, PrekeySecrets, UnixSeconds};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// When a book's prekeys rotate: every `period`, the retired ones kept for
/// `grace` more (a first message made from their card still opens), then
/// erased. Tests set both to seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationSchedule {
    /// How long prekeys are current (their card is the one handed out).
    pub period: Duration,
    /// How long retired prekeys are kept after they are replaced.
    pub grace: Duration,
}

impl RotationSchedule {
    /// Seven days of use, seven days of grace.
    pub const DEFAULT: RotationSchedule = RotationSchedule {
        period: Duration::from_secs(7 * 24 * 3600),
        grace: Duration::from_secs(7 * 24 * 3600),
    };

    fn period_secs(&self) -> u64 {
        self.period.as_secs().max(1)
    }

    fn grace_secs(&self) -> u64 {
        self.grace.as_secs()
    }
}

impl Default for RotationSchedule {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What [`super::SessionBook::rotate_if_due`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// The signed prekey id that was current and retired, and its successor
    /// (`None`: the current prekeys stay).
    pub rotated: Option<(u32, u32)>,
    /// Signed prekey ids whose secrets were erased (their grace ended).
    pub erased: Vec<u32>,
}

impl Rotation {
    /// Whether the book changed (and should be saved).
    pub fn changed(&self) -> bool {
        self.rotated.is_some() || !self.erased.is_empty()
    }
}

/// Prekeys replaced by newer ones, kept until `erase_at`.
#[derive(Clone, Serialize, Deserialize)]
struct Retired {
    secrets: PrekeySecrets,
    /// The expiry of their card (or, for prekeys without one, the end of
    /// the grace after their retirement).
    erase_at: UnixSeconds,
}

/// The current prekeys and the retired ones still in their grace period.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PrekeyRing {
    current: PrekeySecrets,
    /// When the current prekeys were made (`None`: before rotation existed).
    made_at: Option<UnixSeconds>,
    /// The signed expiry of the current card (`None`: a version-1 card).
    expires_at: Option<UnixSeconds>,
    /// Oldest first.
    retired: Vec<Retired>,
}

impl PrekeyRing {
    /// Prekeys without an expiry (a book made without a clock, or before
    /// rotation existed): they retire at the first rotation check.
    pub(crate) fn unscheduled(current: PrekeySecrets) -> Self {
        PrekeyRing {
            current,
            made_at: None,
            expires_at: None,
            retired: Vec::new(),
        }
    }

    /// Fresh prekeys made at `now`, whose card expires after a period and a grace.
    pub(crate) fn generate(
        rng: &mut impl CryptoRng,
        now: UnixSeconds,
        schedule: &RotationSchedule,
    ) -> Self {
        let mut ring = Self::unscheduled(PrekeySecrets::generate(rng, 1, 1));
        ring.made_at = Some(now);
        ring.expires_at = Some(expiry(now, schedule));
        ring
    }

    pub(crate) fn current(&self) -> &PrekeySecrets {
        &self.current
    }

    /// The signed expiry of the current card.
    pub(crate) fn expires_at(&self) -> Option<UnixSeconds> {
        self.expires_at
    }

    /// The current card's bundle.
    pub(crate) fn bundle(&self, identity: &LocalIdentity) -> PrekeyBundle {
        identity.bundle_until(&self.current, self.expires_at)
    }

    /// The prekeys a first message names, current or retired and not yet erased.
    pub(crate) fn find(&self, spk_id: u32, pq_id: u32) -> Option<&PrekeySecrets> {
        std::iter::once(&self.current)
            .chain(self.retired.iter().map(|r| &r.secrets))
            .find(|p| p.spk_id() == spk_id && p.pq_id() == pq_id)
    }

    /// Signed prekey ids held, current first.
    pub(crate) fn held_spk_ids(&self) -> Vec<u32> {
        std::iter::once(self.current.spk_id())
            .chain(self.retired.iter().map(|r| r.secrets.spk_id()))
            .collect()
    }

    /// Retired prekeys held (in their grace period).
    pub(crate) fn retired_count(&self) -> usize {
        self.retired.len()
    }

    /// When the current prekeys are due to retire.
    pub(crate) fn rotation_due_at(&self, schedule: &RotationSchedule) -> UnixSeconds {
        match (self.made_at, self.expires_at) {
            (Some(made), Some(expires)) => UnixSeconds(
                made.0
                    .saturating_add(schedule.period_secs())
                    .min(expires.0.saturating_sub(schedule.grace_secs())),
            ),
            _ => UnixSeconds(0),
        }
    }

    /// The next moment [`PrekeyRing::rotate_if_due`] has something to do.
    pub(crate) fn next_change_at(&self, schedule: &RotationSchedule) -> UnixSeconds {
        self.retired
            .iter()
            .map(|r| r.erase_at)
            .chain(std::iter::once(self.rotation_due_at(schedule)))
            .min()
            .unwrap_or(UnixSeconds(0))
    }

    /// Erases the retired prekeys whose card expired, then, when the
    /// current ones are due, retires them and makes new ones.
    pub(crate) fn rotate_if_due(
        &mut self,
        now: UnixSeconds,
        schedule: &RotationSchedule,
        rng: &mut impl CryptoRng,
    ) -> Rotation {
        let mut outcome = Rotation::default();
        // Dropping a `PrekeySecrets` wipes its secrets.
        self.retired.retain(|r| {
            let keep = r.erase_at > now;
            if !keep {
                outcome.erased.push(r.secrets.spk_id());
            }
            keep
        });
        if self.rotation_due_at(schedule) > now {
            return outcome;
        }
        let old_spk = self.current.spk_id();
        let next_id = |id: u32| id.checked_add(1).unwrap_or(1);
        let fresh = PrekeySecrets::generate(rng, next_id(old_spk), next_id(self.current.pq_id()));
        let erase_at = self
            .expires_at
            .unwrap_or(UnixSeconds(now.0.saturating_add(schedule.grace_secs())));
        let old = std::mem::replace(&mut self.current, fresh);
        if erase_at > now {
            self.retired.push(Retired {
                secrets: old,
                erase_at,
            });
        } else {
            outcome.erased.push(old_spk);
        }
        self.made_at = Some(now);
        self.expires_at = Some(expiry(now, schedule));
        outcome.rotated = Some((old_spk, self.current.spk_id()));
        outcome
    }
}

/// The expiry of a card made at `now`: after a period and a grace.
fn expiry(now: UnixSeconds, schedule: &RotationSchedule) -> UnixSeconds {
    UnixSeconds(
        now.0
            .saturating_add(schedule.period_secs())
            .saturating_add(schedule.grace_secs()),
    )
}
