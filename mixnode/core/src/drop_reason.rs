//! Why a packet was dropped.
//!
//! Every drop has a reason, and every reason is a metric label: an operator
//! must be able to tell an attack (replays, forged MACs) from a misconfiguration
//! (retired keys) from overload (full queues).

/// Why a node refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Not exactly one packet long.
    WrongSize,
    /// The header could not be parsed.
    Malformed,
    /// The header's MAC fails under every live key (forged, corrupted, or for a retired key).
    UnknownKey,
    /// Seen before under the same key.
    Replay,
    /// A Sphinx version this node does not speak.
    UnknownVersion,
    /// The sender asked for a delay above the node's cap.
    DelayTooLong,
    /// The payload could not be unwrapped.
    BadPayload,
    /// A final-hop packet reached a mix node that is not its destination.
    UnexpectedFinalHop,
    /// The node's outgoing queue was full.
    QueueFull,
    /// The next hop is not in the current topology.
    UnknownNextHop,
    /// The link to the next hop is closed.
    LinkDown,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 11] = [
        DropReason::WrongSize,
        DropReason::Malformed,
        DropReason::UnknownKey,
        DropReason::Replay,
        DropReason::UnknownVersion,
        DropReason::DelayTooLong,
        DropReason::BadPayload,
        DropReason::UnexpectedFinalHop,
        DropReason::QueueFull,
        DropReason::UnknownNextHop,
        DropReason::LinkDown,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::WrongSize => "wrong_size",
            DropReason::Malformed => "malformed",
            DropReason::UnknownKey => "unknown_key",
            DropReason::Replay => "replay",
            DropReason::UnknownVersion => "unknown_version",
            DropReason::DelayTooLong => "delay_too_long",
            DropReason::BadPayload => "bad_payload",
            DropReason::UnexpectedFinalHop => "unexpected_final_hop",
            DropReason::QueueFull => "queue_full",
            DropReason::UnknownNextHop => "unknown_next_hop",
            DropReason::LinkDown => "link_down",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
