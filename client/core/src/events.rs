//! What the core tells its user, and the handle that answers a message.

use std::collections::VecDeque;
use std::time::Duration;

use protocol::NodeId;
use protocol::fragment::MessageId;
use protocol::prekeys::FINGERPRINT_SIZE;
use protocol::surb::{SURB_SIZE, Surb, SurbId};

use super::stats::{ClientStats, DeliveryDrop};

/// The SURBs a sender attached to a message: the way to answer it without
/// knowing its sender's address. Pass it to
/// [`ClientCore::reply`](super::ClientCore::reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyHandle {
    pub(crate) in_reply_to: MessageId,
    pub(crate) surbs: Vec<Surb>,
}

impl ReplyHandle {
    /// The message this handle answers.
    pub fn in_reply_to(&self) -> MessageId {
        self.in_reply_to
    }

    /// SURBs left in the handle (a reply needs one per fragment).
    pub fn surbs_left(&self) -> usize {
        self.surbs.len()
    }

    /// Takes `n` of the handle's SURBs into a new handle answering the same
    /// message (all of them if it has fewer), so that one batch of SURBs
    /// can carry several replies.
    pub fn split_off(&mut self, n: usize) -> ReplyHandle {
        let keep = self.surbs.len().saturating_sub(n);
        ReplyHandle {
            in_reply_to: self.in_reply_to,
            surbs: self.surbs.split_off(keep),
        }
    }

    /// The handle as bytes, to keep it beyond the process (a CLI's `reply`):
    /// the answered message id (16), then the SURBs, [`SURB_SIZE`] bytes each.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.surbs.len() * SURB_SIZE);
        out.extend_from_slice(&self.in_reply_to.0);
        for surb in &self.surbs {
            out.extend_from_slice(&surb.0);
        }
        out
    }

    /// Reads [`ReplyHandle::to_bytes`]; `None` when the length does not fit.
    pub fn from_bytes(bytes: &[u8]) -> Option<ReplyHandle> {
        let (id, surbs) = bytes.split_at_checked(16)?;
        if surbs.len() % SURB_SIZE != 0 {
            return None;
        }
        Some(ReplyHandle {
            in_reply_to: MessageId(<[u8; 16]>::try_from(id).ok()?),
            surbs: surbs
                .chunks_exact(SURB_SIZE)
                .map(|s| Surb(s.to_vec()))
                .collect(),
        })
    }
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A message (or a reply) arrived, complete; each is reported once.
    Received {
        /// The sender's id of the message.
        id: MessageId,
        /// The content.
        bytes: Vec<u8>,
        /// How to answer, when the sender attached reply SURBs.
        reply: Option<ReplyHandle>,
        /// For a reply: the id of the message of ours it answers.
        in_reply_to: Option<MessageId>,
    },
    /// Every fragment of a message we sent was acknowledged.
    Delivered {
        /// The message.
        id: MessageId,
    },
    /// Every fragment of a reply sent without acknowledgements
    /// ([`crate::ClientCore::reply_unacknowledged`]) left: nothing more
    /// will be known of it.
    Sent {
        /// The message.
        id: MessageId,
    },
    /// A fragment of a message we sent was not acknowledged after the last
    /// retransmission (or a reply ran out of SURBs to retransmit through, or
    /// its expiry passed before it could be sent).
    SendFailed {
        /// The message.
        id: MessageId,
        /// What is known of why.
        reason: SendFailure,
    },
    /// One more fragment of a message we sent was acknowledged.
    Progress {
        /// The message.
        id: MessageId,
        /// Fragments acknowledged so far.
        acked: usize,
        /// Fragments of the message.
        total: usize,
    },
    /// An incoming message stopped receiving fragments and was abandoned.
    ReceiveTimedOut {
        /// The sender's id of the message.
        id: MessageId,
    },
    /// A gateway answered a request for the bundle of `fingerprint`
    /// ([`crate::ClientCore::fetch_bundle`]); the signatures are for the
    /// caller to check (the gateway may lie).
    BundleFetched {
        /// The gateway asked.
        gateway: NodeId,
        /// The identity fingerprint asked for.
        fingerprint: [u8; FINGERPRINT_SIZE],
        /// The published bundle, as the gateway keeps it.
        published: Vec<u8>,
        /// The one-time prekey it handed out (`None`: it had none left).
        one_time: Option<Vec<u8>>,
    },
    /// No readable answer came for the bundle of `fingerprint`.
    BundleFetchFailed {
        /// The gateway asked.
        gateway: NodeId,
        /// The identity fingerprint asked for.
        fingerprint: [u8; FINGERPRINT_SIZE],
        /// Why.
        reason: FetchFailure,
    },
    /// Loops sent to this client's own mailbox stopped coming back: its
    /// gateway (which cannot tell them from mail) may be dropping its mail.
    LoopsMissing {
        /// Loops missing one after the other.
        in_a_row: u32,
    },
}

/// Why a fetch of a bundle failed ([`ClientEvent::BundleFetchFailed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchFailure {
    /// No answer came after this many requests.
    NoAnswer {
        /// Requests sent.
        attempts: u32,
    },
    /// An answer came and did not parse.
    Unreadable,
    /// No route leads to the gateway (it is not in the topology, or not
    /// inside the client's regions), or none home for the answer.
    NoRoute,
}

/// The bounded queue of events waiting for the application.
#[derive(Debug)]
pub(crate) struct EventQueue {
    events: VecDeque<ClientEvent>,
    max: usize,
}

impl EventQueue {
    pub(crate) fn new(max: usize) -> Self {
        EventQueue {
            events: VecDeque::new(),
            max,
        }
    }

    /// Queues `event`, or drops and counts it when the queue is full.
    /// Queues `event`; false (and counted) when the queue is full.
    pub(crate) fn push(&mut self, event: ClientEvent, stats: &mut ClientStats) -> bool {
        if self.events.len() >= self.max {
            stats.events_dropped += 1;
            false
        } else {
            self.events.push_back(event);
            true
        }
    }

    pub(crate) fn pop(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// Where a reply's frame handed to [`crate::ClientCore::handle_reply_frame`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplySource {
    /// Delivered now by the gateway, under this reply SURB.
    Delivered(SurbId),
    /// Read back from the shell's journal after a restart.
    Journaled,
}

/// What [`ClientCore::handle_delivery`](crate::ClientCore::handle_delivery)
/// did with one delivery, so that a shell never infers it from counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A new fragment of `message` (cut in `fragments`), which is still incomplete.
    Held {
        /// The message.
        message: MessageId,
        /// Fragments the message was cut into.
        fragments: u16,
    },
    /// A fragment already held, or of a message already complete.
    Duplicate,
    /// The fragment completed `message`: a [`ClientEvent::Received`] (or,
    /// for the answer of a gateway, a [`ClientEvent::BundleFetched`]) is queued.
    Completed {
        /// The message.
        message: MessageId,
    },
    /// The fragment completed `message`, and no event will tell of it (a bad
    /// envelope, or the event queue was full).
    Ended {
        /// The message.
        message: MessageId,
    },
    /// The SURB-ack of one of our fragments came back (a repeated ack too).
    Acked,
    /// Loop cover came back, or drop cover arrived.
    Cover,
    /// Dropped, for this reason (also counted in the stats).
    Dropped(DeliveryDrop),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_handle_round_trips_through_bytes() {
        let handle = ReplyHandle {
            in_reply_to: MessageId([3; 16]),
            surbs: vec![Surb(vec![1; SURB_SIZE]), Surb(vec![2; SURB_SIZE])],
        };
        let bytes = handle.to_bytes();
        assert_eq!(ReplyHandle::from_bytes(&bytes), Some(handle));
        assert_eq!(ReplyHandle::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(ReplyHandle::from_bytes(&bytes[..10]), None);
        assert_eq!(
            ReplyHandle::from_bytes(&bytes[..16]).map(|h| h.surbs_left()),
            Some(0)
        );
    }
}

/// Why a message we sent was given up: what the sender can know, and no more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// A fragment was never acknowledged: `tries` copies, the first sent
    /// `over` before the last deadline passed. The recipient's gateway did
    /// not store any copy: it is down or cut off, or it does not serve the
    /// recipient (it refuses mail for clients it has not registered: an
    /// address card from before its owner registered, or one whose
    /// registration expired); or the mixnet lost every copy.
    NoAck {
        /// Copies sent.
        tries: u32,
        /// From the first copy to the last deadline.
        over: Duration,
    },
    /// No copy could be built: the recipient's gateway is not (any more) in
    /// the topology, or a reply's SURB did not parse.
    Unsendable {
        /// Copies attempted.
        tries: u32,
    },
    /// The message's lifetime ended before a copy could leave.
    Expired,
    /// A reply used up the SURBs it was given before it was acknowledged.
    OutOfSurbs,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::NoAck { tries, over } => write!(
                f,
                "no acknowledgement from the recipient's gateway after {tries} tries over {} s: \
                 that gateway is down or unreachable, or it does not know the recipient \
                 (an address card whose owner never connected, or stayed away past the \
                 gateway's registration expiry)",
                over.as_secs()
            ),
            SendFailure::Unsendable { tries } => write!(
                f,
                "none of {tries} copies could be built: the recipient's gateway is not in the \
                 current topology (the card may be outdated or from another network)"
            ),
            SendFailure::Expired => f.write_str("its lifetime ended before it could be sent"),
            SendFailure::OutOfSurbs => f.write_str(
                "the reply used up the SURBs it was given: the correspondent's gateway may be down",
            ),
        }
    }
}
