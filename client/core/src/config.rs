//! Settings and limits of a [`ClientCore`](super::ClientCore).

use std::time::Duration;

use protocol::fragment::ReassemblyLimits;

/// Rates, timers and memory bounds of a client.
///
/// Every structure an outsider can fill has a bound here; docs/client.md
/// lists them with what happens when one is reached.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// λ_P: packets per second of the real-or-drop-cover stream.
    pub send_rate: f64,
    /// λ_L: loop cover packets per second (zero for none).
    pub loop_cover_rate: f64,
    /// When [`ClientCore::poll_transmit`](super::ClientCore::poll_transmit)
    /// runs more than this late for a tick (after a suspend, say), the clock
    /// restarts instead of sending every missed tick in a burst.
    pub max_tick_lag: Duration,
    /// Mean of the exponential delay drawn for each mix hop.
    pub mean_hop_delay: Duration,
    /// Added to a fragment's sampled round trip before it counts as lost.
    pub ack_margin: Duration,
    /// How long a reply fragment waits for its ack (the forward half of a
    /// reply's route was chosen by the other client, and its ack waits for
    /// that client's next send tick), before the ack route's own delays.
    pub reply_ack_timeout: Duration,
    /// Times a fragment is sent again before its message fails.
    pub max_retransmissions: u32,
    /// Most fragments queued or awaiting an ack, over all messages.
    pub max_unacked_fragments: usize,
    /// Most fragments one message (envelope) may have, sent or received.
    pub max_message_fragments: usize,
    /// Most reply SURBs one message may carry, sent or received.
    pub max_reply_surbs_per_message: usize,
    /// Most reply SURBs this client keeps the recovery of; the oldest go first.
    pub max_stored_reply_surbs: usize,
    /// How long this client keeps the recovery of a reply SURB it handed out.
    pub reply_surb_lifetime: Duration,
    /// Most acks for received replies waiting for a send tick.
    pub max_queued_reply_acks: usize,
    /// Most events waiting for [`ClientCore::poll_event`](super::ClientCore::poll_event).
    pub max_events: usize,
    /// Most partial incoming messages at once.
    pub max_partial_messages: usize,
    /// Timeout and byte bound of the reassembly of incoming messages.
    pub reassembly: ReassemblyLimits,
    /// Routes drawn at most for one packet, to find one without a suspect
    /// node (docs/client.md, "Route health"); 1 turns the avoidance off.
    pub route_candidates: usize,
    /// A mix node is suspect when more than this many copies through it
    /// failed (ack deadline passed) since the last one that was acked.
    pub suspect_threshold: u32,
    /// A node's failures are forgotten this long after its latest one, so a
    /// node that healed is used again.
    pub node_failure_memory: Duration,
    /// Most mix nodes with failures on record.
    pub max_tracked_nodes: usize,
    /// Loops missing one after the other before the client says its gateway
    /// may be dropping its mail ([`ClientEvent::LoopsMissing`](crate::ClientEvent::LoopsMissing)); zero: never.
    pub loop_alarm: u32,
    /// Added to a loop's sampled trip before it counts as missing.
    pub loop_margin: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            send_rate: 10.0,
            loop_cover_rate: 2.0,
            max_tick_lag: Duration::from_secs(1),
            mean_hop_delay: Duration::from_millis(50),
            ack_margin: Duration::from_secs(2),
            reply_ack_timeout: Duration::from_secs(30),
            max_retransmissions: 5,
            max_unacked_fragments: 4096,
            max_message_fragments: 4096,
            max_reply_surbs_per_message: 256,
            max_stored_reply_surbs: 4096,
            reply_surb_lifetime: Duration::from_secs(3600),
            max_queued_reply_acks: 1024,
            max_events: 4096,
            max_partial_messages: 256,
            reassembly: ReassemblyLimits::default(),
            route_candidates: 8,
            suspect_threshold: 2,
            node_failure_memory: Duration::from_secs(60),
            max_tracked_nodes: 1024,
            loop_alarm: 5,
            loop_margin: Duration::from_secs(30),
        }
    }
}
