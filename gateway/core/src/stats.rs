//! Counters of a [`GatewayCore`](crate::GatewayCore), readable from any thread.
//!
//! Plain atomics, like the mixer's: the core stays free of any exporter and
//! the binary's `/metrics` layer reads a [`GatewayStatsSnapshot`]. Every
//! label is coarse: nothing here is per client.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::source::SourceRequest;

/// Why the gateway dropped a packet or a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GatewayDropReason {
    /// A final-hop packet for a client this gateway does not serve.
    UnknownClient,
    /// Drop cover, which exists to be dropped here.
    DropCover,
    /// A forward payload that could not be opened or decoded as a frame.
    BadPayload,
    /// A forward frame of a kind that only travels through SURBs (ack, reply).
    UnexpectedFrame,
    /// The mailbox is full (for this client or in total).
    MailboxFull,
    /// The mailbox store failed to commit the message.
    StoreFailed,
    /// A client sent faster than its rate.
    Throttled,
    /// A client sent a packet before authenticating.
    Unauthenticated,
    /// A client asked to forward a packet to a node that is not in mix layer 1.
    NotLayer1,
    /// A recall naming no fragment, or more than
    /// [`MAX_RECALL_FRAGMENTS`](protocol::recall::MAX_RECALL_FRAGMENTS).
    BadRecall,
}

impl GatewayDropReason {
    /// Every reason, in label order.
    pub const ALL: [GatewayDropReason; 10] = [
        GatewayDropReason::UnknownClient,
        GatewayDropReason::DropCover,
        GatewayDropReason::BadPayload,
        GatewayDropReason::UnexpectedFrame,
        GatewayDropReason::MailboxFull,
        GatewayDropReason::StoreFailed,
        GatewayDropReason::Throttled,
        GatewayDropReason::Unauthenticated,
        GatewayDropReason::NotLayer1,
        GatewayDropReason::BadRecall,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayDropReason::UnknownClient => "unknown_client",
            GatewayDropReason::DropCover => "drop_cover",
            GatewayDropReason::BadPayload => "bad_payload",
            GatewayDropReason::UnexpectedFrame => "unexpected_frame",
            GatewayDropReason::MailboxFull => "mailbox_full",
            GatewayDropReason::StoreFailed => "store_failed",
            GatewayDropReason::Throttled => "throttled",
            GatewayDropReason::Unauthenticated => "unauthenticated",
            GatewayDropReason::NotLayer1 => "not_layer1",
            GatewayDropReason::BadRecall => "bad_recall",
        }
    }

    /// Position in [`GatewayDropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for GatewayDropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the prekey service did with a request that reached it (the label
/// of `gateway_prekey_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrekeyRequestOutcome {
    /// Answered with the bundle and a one-time prekey.
    Served,
    /// Answered with the bundle alone (no one-time prekey left, or none
    /// that fits the SURBs given).
    ServedWithoutOneTime,
    /// No client published that fingerprint: no answer.
    Unknown,
    /// Not a well-formed bundle request (another frame, a SURB packet, a
    /// payload that does not open, a SURB that cannot be used): no answer.
    Malformed,
    /// The bundle does not fit the SURBs given: no answer.
    TooFewSurbs,
    /// The prekey store failed: no answer.
    StoreFailed,
}

impl PrekeyRequestOutcome {
    /// Every outcome, in label order.
    pub const ALL: [PrekeyRequestOutcome; 6] = [
        PrekeyRequestOutcome::Served,
        PrekeyRequestOutcome::ServedWithoutOneTime,
        PrekeyRequestOutcome::Unknown,
        PrekeyRequestOutcome::Malformed,
        PrekeyRequestOutcome::TooFewSurbs,
        PrekeyRequestOutcome::StoreFailed,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PrekeyRequestOutcome::Served => "served",
            PrekeyRequestOutcome::ServedWithoutOneTime => "served_without_one_time",
            PrekeyRequestOutcome::Unknown => "unknown",
            PrekeyRequestOutcome::Malformed => "malformed",
            PrekeyRequestOutcome::TooFewSurbs => "too_few_surbs",
            PrekeyRequestOutcome::StoreFailed => "store_failed",
        }
    }

    /// Position in [`PrekeyRequestOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a client uploaded (the `kind` label of `gateway_prekey_uploads_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrekeyUploadKind {
    /// A published bundle.
    Published,
    /// One one-time prekey (a message of several counts each).
    OneTime,
}

impl PrekeyUploadKind {
    /// Every kind, in label order.
    pub const ALL: [PrekeyUploadKind; 2] = [PrekeyUploadKind::Published, PrekeyUploadKind::OneTime];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PrekeyUploadKind::Published => "published",
            PrekeyUploadKind::OneTime => "one_time",
        }
    }
}

/// What became of an upload (the `outcome` label of `gateway_prekey_uploads_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrekeyUploadOutcome {
    /// Kept.
    Stored,
    /// Empty, or over its cap
    /// ([`MAX_PUBLISHED_BUNDLE_SIZE`](protocol::prekeys::MAX_PUBLISHED_BUNDLE_SIZE),
    /// [`MAX_ONE_TIME_PREKEY_SIZE`](protocol::prekeys::MAX_ONE_TIME_PREKEY_SIZE)).
    BadSize,
    /// A bundle under a fingerprint another client holds.
    FingerprintTaken,
    /// A one-time prekey whose id the client already had kept.
    Duplicate,
    /// A one-time prekey beyond
    /// [`MAX_ONE_TIME_PREKEYS_PER_CLIENT`](protocol::prekeys::MAX_ONE_TIME_PREKEYS_PER_CLIENT).
    Full,
    /// The prekey store failed.
    StoreFailed,
}

impl PrekeyUploadOutcome {
    /// Every outcome, in label order.
    pub const ALL: [PrekeyUploadOutcome; 6] = [
        PrekeyUploadOutcome::Stored,
        PrekeyUploadOutcome::BadSize,
        PrekeyUploadOutcome::FingerprintTaken,
        PrekeyUploadOutcome::Duplicate,
        PrekeyUploadOutcome::Full,
        PrekeyUploadOutcome::StoreFailed,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PrekeyUploadOutcome::Stored => "stored",
            PrekeyUploadOutcome::BadSize => "bad_size",
            PrekeyUploadOutcome::FingerprintTaken => "fingerprint_taken",
            PrekeyUploadOutcome::Duplicate => "duplicate",
            PrekeyUploadOutcome::Full => "full",
            PrekeyUploadOutcome::StoreFailed => "store_failed",
        }
    }
}

const UPLOAD_SLOTS: usize = PrekeyUploadKind::ALL.len() * PrekeyUploadOutcome::ALL.len();

fn upload_slot(kind: PrekeyUploadKind, outcome: PrekeyUploadOutcome) -> usize {
    kind as usize * PrekeyUploadOutcome::ALL.len() + outcome as usize
}

/// What a gateway has done so far.
#[derive(Debug, Default)]
pub struct GatewayStats {
    sessions: AtomicU64,
    online_clients: AtomicU64,
    mailbox_messages: AtomicU64,
    mailbox_bytes: AtomicU64,
    stored: AtomicU64,
    taken_unstored: AtomicU64,
    held: AtomicU64,
    expired: AtomicU64,
    delivered: AtomicU64,
    acknowledged: AtomicU64,
    acks_sent: AtomicU64,
    acks_late: AtomicU64,
    ack_failures: AtomicU64,
    forwarded: AtomicU64,
    throttled: AtomicU64,
    malformed: AtomicU64,
    auth_refused: AtomicU64,
    authenticated: AtomicU64,
    sessions_refused: AtomicU64,
    auth_timeouts: AtomicU64,
    registered: AtomicU64,
    registrations_expired: AtomicU64,
    sessions_source_limited: AtomicU64,
    registrations_source_limited: AtomicU64,
    enrolled: AtomicU64,
    enrollments_refused: AtomicU64,
    revoked: AtomicU64,
    recalls: AtomicU64,
    recalls_unmatched: AtomicU64,
    recalled: AtomicU64,
    dropped: [AtomicU64; GatewayDropReason::ALL.len()],
    prekey_requests: [AtomicU64; PrekeyRequestOutcome::ALL.len()],
    one_time_handed: AtomicU64,
    prekey_uploads: [AtomicU64; UPLOAD_SLOTS],
    published_bundles: AtomicU64,
}

/// A copy of [`GatewayStats`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayStatsSnapshot {
    /// Client sessions open now, authenticated or not.
    pub sessions: u64,
    /// Clients with an authenticated session now.
    pub online_clients: u64,
    /// Messages in the mailbox now.
    pub mailbox_messages: u64,
    /// Payload bytes in the mailbox now.
    pub mailbox_bytes: u64,
    /// Messages committed to the mailbox.
    pub stored: u64,
    /// Messages pushed to an online client and acknowledged before they
    /// were due to be written: never stored.
    pub taken_unstored: u64,
    /// Messages pushed and held in memory now, not stored (yet).
    pub held: u64,
    /// Messages removed because their retention ran out.
    pub expired: u64,
    /// `Deliver` messages pushed to clients (a redelivery counts again).
    pub delivered: u64,
    /// Messages deleted after the client's `AckDelivery`.
    pub acknowledged: u64,
    /// SURB-acks sent back into the mixnet.
    pub acks_sent: u64,
    /// SURB-acks that left more than [`ACK_LATE_AFTER`](crate::core::ACK_LATE_AFTER) past their instant.
    pub acks_late: u64,
    /// SURB-acks that could not be built (a malformed SURB in a stored fragment).
    pub ack_failures: u64,
    /// Client packets forwarded into layer 1.
    pub forwarded: u64,
    /// Client packets dropped for exceeding the rate (also in `dropped`).
    pub throttled: u64,
    /// Malformed link messages (each closes its session).
    pub malformed: u64,
    /// Sessions refused because the client failed authentication.
    pub auth_refused: u64,
    /// Sessions that authenticated.
    pub authenticated: u64,
    /// Sessions closed at once because the gateway was full (sessions or clients).
    pub sessions_refused: u64,
    /// Sessions closed for not authenticating in time.
    pub auth_timeouts: u64,
    /// Clients the gateway serves now.
    pub registered: u64,
    /// Registrations forgotten, with their mailboxes, after going unused.
    pub registrations_expired: u64,
    /// Sessions refused because their source address opened too many.
    pub sessions_source_limited: u64,
    /// Registrations refused because their source address made too many.
    pub registrations_source_limited: u64,
    /// Clients registered with an invite (closed admission).
    pub enrolled: u64,
    /// Sessions refused for want of an unused invite, or for a revoked key.
    pub enrollments_refused: u64,
    /// Clients revoked.
    pub revoked: u64,
    /// Recalls handled (well-formed, for a client served here).
    pub recalls: u64,
    /// Recalls whose secret matched no stored message (a wrong secret, or
    /// everything was delivered already).
    pub recalls_unmatched: u64,
    /// Messages deleted by recalls.
    pub recalled: u64,
    /// Drops, indexed by [`GatewayDropReason::index`].
    pub dropped: [u64; GatewayDropReason::ALL.len()],
    /// Bundle requests, indexed by [`PrekeyRequestOutcome::index`].
    pub prekey_requests: [u64; PrekeyRequestOutcome::ALL.len()],
    /// One-time prekeys handed out (each once).
    pub one_time_handed: u64,
    /// Prekey uploads by kind and outcome ([`GatewayStatsSnapshot::prekey_uploads`]).
    pub prekey_uploads: [u64; UPLOAD_SLOTS],
    /// Published bundles kept now.
    pub published_bundles: u64,
}

impl GatewayStatsSnapshot {
    /// Drops for one reason.
    pub fn dropped(&self, reason: GatewayDropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// Drops for every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Bundle requests with one outcome.
    pub fn prekey_requests(&self, outcome: PrekeyRequestOutcome) -> u64 {
        self.prekey_requests
            .get(outcome.index())
            .copied()
            .unwrap_or(0)
    }

    /// Uploads of one kind with one outcome.
    pub fn prekey_uploads(&self, kind: PrekeyUploadKind, outcome: PrekeyUploadOutcome) -> u64 {
        self.prekey_uploads
            .get(upload_slot(kind, outcome))
            .copied()
            .unwrap_or(0)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl GatewayStats {
    pub(crate) fn set_sessions(&self, sessions: u64, online: u64) {
        self.sessions.store(sessions, Ordering::Relaxed);
        self.online_clients.store(online, Ordering::Relaxed);
    }
    pub(crate) fn set_mailbox(&self, messages: u64, bytes: u64) {
        self.mailbox_messages.store(messages, Ordering::Relaxed);
        self.mailbox_bytes.store(bytes, Ordering::Relaxed);
    }
    pub(crate) fn stored(&self) {
        bump(&self.stored);
    }
    pub(crate) fn taken_unstored(&self) {
        bump(&self.taken_unstored);
    }
    pub(crate) fn set_held(&self, n: u64) {
        self.held.store(n, Ordering::Relaxed);
    }
    pub(crate) fn expired(&self, n: u64) {
        self.expired.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn delivered(&self) {
        bump(&self.delivered);
    }
    pub(crate) fn acknowledged(&self, n: u64) {
        self.acknowledged.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn ack_sent(&self) {
        bump(&self.acks_sent);
    }
    pub(crate) fn ack_late(&self) {
        bump(&self.acks_late);
    }
    pub(crate) fn ack_failed(&self) {
        bump(&self.ack_failures);
    }
    pub(crate) fn forwarded(&self) {
        bump(&self.forwarded);
    }
    pub(crate) fn malformed(&self) {
        bump(&self.malformed);
    }
    pub(crate) fn auth_refused(&self) {
        bump(&self.auth_refused);
    }
    pub(crate) fn authenticated(&self) {
        bump(&self.authenticated);
    }
    pub(crate) fn session_refused(&self) {
        bump(&self.sessions_refused);
    }
    pub(crate) fn auth_timed_out(&self) {
        bump(&self.auth_timeouts);
    }
    pub(crate) fn set_registered(&self, n: u64) {
        self.registered.store(n, Ordering::Relaxed);
    }
    pub(crate) fn registrations_expired(&self, n: u64) {
        self.registrations_expired.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn enrolled(&self) {
        bump(&self.enrolled);
    }
    pub(crate) fn enrollment_refused(&self) {
        bump(&self.enrollments_refused);
    }
    pub(crate) fn revoked(&self) {
        bump(&self.revoked);
    }
    pub(crate) fn recall(&self, deleted: u64) {
        bump(&self.recalls);
        if deleted == 0 {
            bump(&self.recalls_unmatched);
        }
        self.recalled.fetch_add(deleted, Ordering::Relaxed);
    }
    pub(crate) fn source_limited(&self, request: SourceRequest) {
        bump(match request {
            SourceRequest::Session => &self.sessions_source_limited,
            SourceRequest::Registration => &self.registrations_source_limited,
        });
    }

    pub(crate) fn prekey_request(&self, outcome: PrekeyRequestOutcome) {
        if let Some(c) = self.prekey_requests.get(outcome.index()) {
            bump(c);
        }
        if outcome == PrekeyRequestOutcome::Served {
            bump(&self.one_time_handed);
        }
    }
    pub(crate) fn prekey_uploads(
        &self,
        kind: PrekeyUploadKind,
        outcome: PrekeyUploadOutcome,
        n: u64,
    ) {
        if let Some(c) = self.prekey_uploads.get(upload_slot(kind, outcome)) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub(crate) fn set_published_bundles(&self, n: u64) {
        self.published_bundles.store(n, Ordering::Relaxed);
    }

    /// Counts one drop (`Throttled` also counts in `throttled`).
    pub fn dropped(&self, reason: GatewayDropReason) {
        if reason == GatewayDropReason::Throttled {
            bump(&self.throttled);
        }
        if let Some(c) = self.dropped.get(reason.index()) {
            bump(c);
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> GatewayStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayStatsSnapshot {
            sessions: load(&self.sessions),
            online_clients: load(&self.online_clients),
            mailbox_messages: load(&self.mailbox_messages),
            mailbox_bytes: load(&self.mailbox_bytes),
            stored: load(&self.stored),
            taken_unstored: load(&self.taken_unstored),
            held: load(&self.held),
            expired: load(&self.expired),
            delivered: load(&self.delivered),
            acknowledged: load(&self.acknowledged),
            acks_sent: load(&self.acks_sent),
            acks_late: load(&self.acks_late),
            ack_failures: load(&self.ack_failures),
            forwarded: load(&self.forwarded),
            throttled: load(&self.throttled),
            malformed: load(&self.malformed),
            auth_refused: load(&self.auth_refused),
            authenticated: load(&self.authenticated),
            sessions_refused: load(&self.sessions_refused),
            auth_timeouts: load(&self.auth_timeouts),
            registered: load(&self.registered),
            registrations_expired: load(&self.registrations_expired),
            sessions_source_limited: load(&self.sessions_source_limited),
            registrations_source_limited: load(&self.registrations_source_limited),
            enrolled: load(&self.enrolled),
            enrollments_refused: load(&self.enrollments_refused),
            revoked: load(&self.revoked),
            recalls: load(&self.recalls),
            recalls_unmatched: load(&self.recalls_unmatched),
            recalled: load(&self.recalled),
            dropped: std::array::from_fn(|i| self.dropped.get(i).map_or(0, load)),
            prekey_requests: std::array::from_fn(|i| self.prekey_requests.get(i).map_or(0, load)),
            one_time_handed: load(&self.one_time_handed),
            prekey_uploads: std::array::from_fn(|i| self.prekey_uploads.get(i).map_or(0, load)),
            published_bundles: load(&self.published_bundles),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_indices_follow_all() {
        let mut labels: Vec<&str> = GatewayDropReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), GatewayDropReason::ALL.len());
        for (i, r) in GatewayDropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let stats = GatewayStats::default();
        stats.dropped(GatewayDropReason::Throttled);
        stats.dropped(GatewayDropReason::DropCover);
        let s = stats.snapshot();
        assert_eq!((s.throttled, s.dropped_total()), (1, 2));
    }

    #[test]
    fn prekey_labels_are_distinct_and_slots_do_not_collide() {
        let mut labels: Vec<&str> = PrekeyRequestOutcome::ALL
            .iter()
            .map(|o| o.as_str())
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), PrekeyRequestOutcome::ALL.len());
        for (i, o) in PrekeyRequestOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        let stats = GatewayStats::default();
        let mut n = 1;
        for kind in PrekeyUploadKind::ALL {
            for outcome in PrekeyUploadOutcome::ALL {
                stats.prekey_uploads(kind, outcome, n);
                n += 1;
            }
        }
        stats.prekey_request(PrekeyRequestOutcome::Served);
        stats.prekey_request(PrekeyRequestOutcome::ServedWithoutOneTime);
        let s = stats.snapshot();
        let mut n = 1;
        for kind in PrekeyUploadKind::ALL {
            for outcome in PrekeyUploadOutcome::ALL {
                assert_eq!(s.prekey_uploads(kind, outcome), n);
                n += 1;
            }
        }
        assert_eq!(s.one_time_handed, 1);
        assert_eq!(
            s.prekey_requests(PrekeyRequestOutcome::ServedWithoutOneTime),
            1
        );
    }
}
