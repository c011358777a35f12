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

/// What a gateway has done so far.
#[derive(Debug, Default)]
pub struct GatewayStats {
    sessions: AtomicU64,
    online_clients: AtomicU64,
    mailbox_messages: AtomicU64,
    mailbox_bytes: AtomicU64,
    stored: AtomicU64,
    expired: AtomicU64,
    delivered: AtomicU64,
    acknowledged: AtomicU64,
    acks_sent: AtomicU64,
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
    /// Messages removed because their retention ran out.
    pub expired: u64,
    /// `Deliver` messages pushed to clients (a redelivery counts again).
    pub delivered: u64,
    /// Messages deleted after the client's `AckDelivery`.
    pub acknowledged: u64,
    /// SURB-acks sent back into the mixnet.
    pub acks_sent: u64,
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
            expired: load(&self.expired),
            delivered: load(&self.delivered),
            acknowledged: load(&self.acknowledged),
            acks_sent: load(&self.acks_sent),
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
}
