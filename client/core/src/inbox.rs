//! Messages on their way in: reassembly with its bounds, and the store of
//! reply SURBs this client handed out.

use std::collections::{HashMap, HashSet, VecDeque};

use protocol::format::ReplyRecovery;
use protocol::fragment::{Fragment, MessageId, Reassembler, Reassembly};
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use super::config::ClientConfig;
use super::envelope::{Envelope, EnvelopeKind};
use super::events::{ClientEvent, DeliveryOutcome, EventQueue, ReplyHandle};
use super::stats::{ClientStats, DeliveryDrop};

/// Reassembly of incoming messages, with a bound on partial messages.
#[derive(Debug)]
pub(crate) struct Inbox {
    reassembler: Reassembler,
    /// Messages the reassembler holds partially (its count is not enough to
    /// tell a new message from a known one).
    partial: HashSet<MessageId>,
}

impl Inbox {
    pub(crate) fn new(config: &ClientConfig) -> Self {
        Inbox {
            reassembler: Reassembler::new(config.reassembly),
            partial: HashSet::new(),
        }
    }

    /// Partial messages held.
    pub(crate) fn partial_messages(&self) -> usize {
        self.partial.len()
    }

    /// Bytes held in partial messages.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.reassembler.buffered_bytes()
    }

    /// When reassembly next has a timeout to handle.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.reassembler.next_deadline()
    }

    /// Abandons partial messages that stopped progressing.
    pub(crate) fn handle_timeouts(
        &mut self,
        now: Timestamp,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) {
        for id in self.reassembler.expire(now) {
            self.partial.remove(&id);
            stats.reassembly_timeouts += 1;
            events.push(ClientEvent::ReceiveTimedOut { id }, stats);
        }
    }

    /// Takes one fragment of a message or reply and says what became of it;
    /// one held, completed or already there may be acknowledged.
    pub(crate) fn receive(
        &mut self,
        now: Timestamp,
        fragment: Fragment,
        config: &ClientConfig,
        stats: &mut ClientStats,
        events: &mut EventQueue,
    ) -> DeliveryOutcome {
        if !fits_fragmentation(&fragment, config) {
            return stats.drop_delivery(DeliveryDrop::BadFragment);
        }
        let id = fragment.id.message;
        if fragment.count > 1
            && !self.partial.contains(&id)
            && self.partial.len() >= config.max_partial_messages
        {
            return stats.drop_delivery(DeliveryDrop::ReassemblyRefused);
        }
        let fragments = fragment.count;
        match self.reassembler.insert(now, fragment) {
            Reassembly::Pending => {
                self.partial.insert(id);
                DeliveryOutcome::Held {
                    message: id,
                    fragments,
                }
            }
            Reassembly::Duplicate => {
                stats.duplicate_fragments += 1;
                DeliveryOutcome::Duplicate
            }
            Reassembly::Refused(_) => stats.drop_delivery(DeliveryDrop::ReassemblyRefused),
            Reassembly::Complete { id, message } => {
                self.partial.remove(&id);
                match Envelope::decode(&message, config.max_reply_surbs_per_message) {
                    Ok(envelope) => {
                        stats.messages_received += 1;
                        let in_reply_to = match envelope.kind {
                            EnvelopeKind::Message => None,
                            EnvelopeKind::Reply { in_reply_to } => Some(in_reply_to),
                        };
                        let reply = if envelope.reply_surbs.is_empty() {
                            None
                        } else {
                            Some(ReplyHandle {
                                in_reply_to: id,
                                surbs: envelope.reply_surbs,
                            })
                        };
                        let queued = events.push(
                            ClientEvent::Received {
                                id,
                                bytes: envelope.content,
                                reply,
                                in_reply_to,
                            },
                            stats,
                        );
                        if queued {
                            DeliveryOutcome::Completed { message: id }
                        } else {
                            DeliveryOutcome::Ended { message: id }
                        }
                    }
                    Err(_) => {
                        stats.drop_delivery(DeliveryDrop::BadEnvelope);
                        DeliveryOutcome::Ended { message: id }
                    }
                }
            }
        }
    }
}

/// Whether a fragment is one `fragment_message` could have cut from a
/// message within our size limit: every piece but the last is full, the last
/// is not empty. This keeps a hostile sender from pinning large bookkeeping
/// with tiny fragments.
fn fits_fragmentation(fragment: &Fragment, config: &ClientConfig) -> bool {
    let count = usize::from(fragment.count);
    if count > config.max_message_fragments {
        return false;
    }
    if count == 1 {
        return true;
    }
    if fragment.id.index + 1 < fragment.count {
        fragment.data.len() == FRAGMENT_CAPACITY
    } else {
        !fragment.data.is_empty()
    }
}

/// Recoveries of the reply SURBs this client attached to its messages,
/// bounded in number and in age; the oldest go first.
#[derive(Debug)]
pub(crate) struct ReplySurbStore<Rec> {
    recoveries: HashMap<SurbId, Rec>,
    /// Ids in the order they were stored, with their expiry.
    order: VecDeque<(Timestamp, SurbId)>,
}

impl<Rec> Default for ReplySurbStore<Rec> {
    fn default() -> Self {
        ReplySurbStore {
            recoveries: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<Rec: ReplyRecovery> ReplySurbStore<Rec> {
    /// Recoveries held.
    pub(crate) fn len(&self) -> usize {
        self.recoveries.len()
    }

    /// Keeps a recovery until `expires`, evicting the oldest beyond `max`.
    pub(crate) fn insert(
        &mut self,
        recovery: Rec,
        expires: Timestamp,
        max: usize,
        stats: &mut ClientStats,
    ) {
        while self.recoveries.len() >= max.max(1) {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            if self.recoveries.remove(&old).is_some() {
                stats.reply_surbs_evicted += 1;
            }
        }
        if self.order.len() > max.saturating_mul(2) {
            // Used SURBs leave their ids behind in `order`; drop them.
            let live = &self.recoveries;
            self.order.retain(|(_, id)| live.contains_key(id));
        }
        let id = recovery.id();
        self.recoveries.insert(id, recovery);
        self.order.push_back((expires, id));
    }

    /// The recovery of `id`.
    pub(crate) fn ids(&self) -> impl Iterator<Item = SurbId> + '_ {
        self.recoveries.keys().copied()
    }

    pub(crate) fn get(&self, id: &SurbId) -> Option<&Rec> {
        self.recoveries.get(id)
    }

    /// Forgets the recovery of `id` (a SURB is used once).
    pub(crate) fn remove(&mut self, id: &SurbId) {
        self.recoveries.remove(id);
    }

    /// Forgets recoveries that expired by `now`.
    pub(crate) fn expire(&mut self, now: Timestamp, stats: &mut ClientStats) {
        while let Some(&(expires, id)) = self.order.front() {
            if expires > now && self.recoveries.contains_key(&id) {
                break;
            }
            self.order.pop_front();
            if self.recoveries.remove(&id).is_some() {
                stats.reply_surbs_evicted += 1;
            }
        }
    }

    /// When the oldest recovery expires.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.order
            .iter()
            .find(|(_, id)| self.recoveries.contains_key(id))
            .map(|(t, _)| *t)
    }
}
