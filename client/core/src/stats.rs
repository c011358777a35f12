//! Counters of a client core.

use crate::events::DeliveryOutcome;

/// Why a delivery handed over by the gateway was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryDrop {
    /// The payload did not open, or did not hold a valid frame.
    NotAFrame,
    /// The frame's kind does not fit how it arrived (an ack on a forward
    /// packet, a data fragment through a reply SURB, ...).
    UnexpectedKind,
    /// The SURB id is not one of ours, or was used or expired already.
    UnknownSurb,
    /// An ack names a fragment other than the one its SURB was made for.
    AckMismatch,
    /// A fragment breaks the fragmentation rules or the size limit.
    BadFragment,
    /// The reassembly refused the fragment (memory or partial-message bound,
    /// or it contradicts earlier fragments).
    ReassemblyRefused,
    /// A reassembled message is not a valid envelope.
    BadEnvelope,
    /// A reply's ack could not be queued (queue full) or built.
    ReplyAckDropped,
}

impl DeliveryDrop {
    /// Every reason, in a fixed order.
    pub const ALL: [DeliveryDrop; 8] = [
        DeliveryDrop::NotAFrame,
        DeliveryDrop::UnexpectedKind,
        DeliveryDrop::UnknownSurb,
        DeliveryDrop::AckMismatch,
        DeliveryDrop::BadFragment,
        DeliveryDrop::ReassemblyRefused,
        DeliveryDrop::BadEnvelope,
        DeliveryDrop::ReplyAckDropped,
    ];

    /// A short label, for metrics.
    pub fn label(self) -> &'static str {
        match self {
            DeliveryDrop::NotAFrame => "not_a_frame",
            DeliveryDrop::UnexpectedKind => "unexpected_kind",
            DeliveryDrop::UnknownSurb => "unknown_surb",
            DeliveryDrop::AckMismatch => "ack_mismatch",
            DeliveryDrop::BadFragment => "bad_fragment",
            DeliveryDrop::ReassemblyRefused => "reassembly_refused",
            DeliveryDrop::BadEnvelope => "bad_envelope",
            DeliveryDrop::ReplyAckDropped => "reply_ack_dropped",
        }
    }
}

/// What a client core has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Real packets sent on λ_P ticks (fragments, retransmissions, reply acks).
    pub real_sent: u64,
    /// Drop cover packets sent on λ_P ticks.
    pub drop_cover_sent: u64,
    /// Loop cover packets sent on λ_L ticks.
    pub loop_cover_sent: u64,
    /// Times a Poisson clock restarted because the caller came more than
    /// `max_tick_lag` late (the missed ticks are not sent).
    pub clock_jumps: u64,
    /// Ticks that sent nothing because no route (or packet) could be built.
    pub ticks_without_packet: u64,
    /// Fragment copies that could not be built (no route to the recipient's
    /// gateway, or an unusable reply SURB); each counts as a lost copy.
    pub unsendable: u64,
    /// Fragments sent again after their ack deadline passed.
    pub retransmissions: u64,
    /// Acks for reply fragments sent back by this client.
    pub reply_acks_sent: u64,
    /// Recalls queued ([`ClientCore::recall`](crate::ClientCore::recall)).
    pub recalls_sent: u64,
    /// Requests for a correspondent's bundle sent to its gateway (each attempt).
    pub bundle_requests_sent: u64,
    /// Bundles a gateway answered with (their signatures not checked yet).
    pub bundles_fetched: u64,
    /// Fetches of a bundle that got no readable answer.
    pub bundle_fetches_failed: u64,
    /// Deliveries handed to the core.
    pub deliveries: u64,
    /// Loop cover packets that came back.
    pub loop_cover_received: u64,
    /// Loops that did not come back by their deadline.
    pub loops_missing: u64,
    /// Loops that came back after they were counted missing.
    pub loops_late: u64,
    /// SURB-acks of cover packets that came back.
    pub cover_acks_received: u64,
    /// SURB-acks of cover packets that did not come back by their deadline.
    pub cover_acks_missing: u64,
    /// Drop cover packets that reached this client (someone sealed drop cover to our key).
    pub drop_cover_received: u64,
    /// Acks that acknowledged a fragment for the first time.
    pub acks_received: u64,
    /// Acks of fragments already acknowledged.
    pub duplicate_acks: u64,
    /// Fragments (or whole messages) received again and ignored.
    pub duplicate_fragments: u64,
    /// Complete messages handed to the application (replies included).
    pub messages_received: u64,
    /// Incoming messages abandoned after the reassembly timeout.
    pub reassembly_timeouts: u64,
    /// Messages that failed ([`ClientEvent::SendFailed`](super::ClientEvent::SendFailed)):
    /// a fragment unacknowledged after its last retransmission, a reply out
    /// of SURBs, or an expiry that passed first (also in `expired_unsent`).
    pub send_failures: u64,
    /// Messages that failed because their expiry passed (or was less than a
    /// second after the gateway would get the copy) before a fragment's next
    /// copy could leave.
    pub expired_unsent: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Reply SURB recoveries evicted (store full) or expired unused.
    pub reply_surbs_evicted: u64,
    /// Routes taken after routes through suspect mix nodes were set aside.
    pub routes_avoiding_suspects: u64,
    /// Routes taken through a suspect mix node because every route drawn
    /// crossed one (the one with the fewest failures).
    pub routes_through_suspects: u64,
    /// Copies whose ack deadline passed, each a failure for its mix nodes.
    pub route_failures: u64,
    /// Deliveries dropped, by reason (indexed like [`DeliveryDrop::ALL`]).
    pub dropped: [u64; 8],
}

impl ClientStats {
    /// Deliveries dropped for `reason`.
    pub fn dropped_for(&self, reason: DeliveryDrop) -> u64 {
        self.dropped.get(reason as usize).copied().unwrap_or(0)
    }

    /// Deliveries dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Counts a delivery dropped for `reason`, and says so.
    pub(crate) fn drop_delivery(&mut self, reason: DeliveryDrop) -> DeliveryOutcome {
        if let Some(n) = self.dropped.get_mut(reason as usize) {
            *n += 1;
        }
        DeliveryOutcome::Dropped(reason)
    }
}
