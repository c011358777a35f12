//! Messages on their way in: reassembly with its bounds, and the store of
//! reply SURBs this client handed out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use protocol::format::ReplyRecovery;
use protocol::fragment::{Fragment, MessageId, Reassembler, Reassembly};
use protocol::frame::FRAGMENT_CAPACITY;
use protocol::surb::SurbId;
use protocol::time::Timestamp;

use super::config::ClientConfig;
use super::envelope::{Envelope, EnvelopeKind};
use super::error::ClientError;
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

/// Version of [`ReplySurbStore::to_bytes`]'s layout.
const REPLY_SURBS_VERSION: u8 = 1;

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

    /// The live recoveries, oldest first, with the time each has left at
    /// `now`: `version (1) | per recovery: time left in ms (u64) | length
    /// (u16) | recovery`, all big endian.
    pub(crate) fn to_bytes(&self, now: Timestamp) -> Vec<u8> {
        let mut out = vec![REPLY_SURBS_VERSION];
        for (expires, id) in &self.order {
            let Some(recovery) = self.recoveries.get(id) else {
                continue;
            };
            let left = expires.saturating_duration_since(now);
            if left.is_zero() {
                continue;
            }
            let bytes = recovery.to_bytes();
            let Ok(len) = u16::try_from(bytes.len()) else {
                continue;
            };
            let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Reads what [`ReplySurbStore::to_bytes`] wrote `elapsed` ago, each
    /// recovery read by `read`; keeps those with time left (within `max`).
    /// Returns how many were kept; bytes that do not read back keep none.
    pub(crate) fn restore(
        &mut self,
        now: Timestamp,
        elapsed: Duration,
        bytes: &[u8],
        max: usize,
        read: impl Fn(&[u8]) -> Result<Rec, ClientError>,
        stats: &mut ClientStats,
    ) -> Result<usize, ClientError> {
        let bad = |why: &str| ClientError::BadReplySurbs(why.to_string());
        let (&version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != REPLY_SURBS_VERSION {
            return Err(bad("unknown version"));
        }
        let mut read_back = Vec::new();
        while !rest.is_empty() {
            let (millis, tail) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("cut short"))?;
            let (len, tail) = tail
                .split_first_chunk::<2>()
                .ok_or_else(|| bad("cut short"))?;
            let len = usize::from(u16::from_be_bytes(*len));
            let (recovery, tail) = tail.split_at_checked(len).ok_or_else(|| bad("cut short"))?;
            let left = Duration::from_millis(u64::from_be_bytes(*millis));
            read_back.push((left, read(recovery)?));
            rest = tail;
        }
        let mut kept = 0;
        for (left, recovery) in read_back {
            let Some(left) = left.checked_sub(elapsed).filter(|l| !l.is_zero()) else {
                continue;
            };
            self.insert(recovery, now.saturating_add(left), max, stats);
            kept += 1;
        }
        Ok(kept)
    }

    /// When the oldest recovery expires.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.order
            .iter()
            .find(|(_, id)| self.recoveries.contains_key(id))
            .map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::error::ProtocolError;
    use protocol::packet::SURB_ID_SIZE;

    /// A recovery that is only its id, and says so in its bytes.
    #[derive(Debug, Clone, PartialEq)]
    struct IdOnly(SurbId);

    impl ReplyRecovery for IdOnly {
        fn id(&self) -> SurbId {
            self.0
        }
        fn open(&self, _: &[u8]) -> Result<Vec<u8>, ProtocolError> {
            Ok(Vec::new())
        }
        fn to_bytes(&self) -> Vec<u8> {
            self.0.0.to_vec()
        }
    }

    fn read(bytes: &[u8]) -> Result<IdOnly, ClientError> {
        <[u8; SURB_ID_SIZE]>::try_from(bytes)
            .map(|id| IdOnly(SurbId(id)))
            .map_err(|_| ClientError::BadReplySurbs("length".into()))
    }

    fn id(n: u8) -> SurbId {
        SurbId([n; SURB_ID_SIZE])
    }

    #[test]
    fn recoveries_come_back_with_the_time_they_had_left_less_the_time_away() {
        let mut stats = ClientStats::default();
        let mut store = ReplySurbStore::default();
        let t0 = Timestamp::from_millis(10_000);
        store.insert(
            IdOnly(id(1)),
            t0.saturating_add(Duration::from_secs(5)),
            8,
            &mut stats,
        );
        store.insert(
            IdOnly(id(2)),
            t0.saturating_add(Duration::from_secs(60)),
            8,
            &mut stats,
        );
        store.insert(
            IdOnly(id(3)),
            t0.saturating_add(Duration::from_secs(90)),
            8,
            &mut stats,
        );
        store.remove(&id(3));
        let bytes = store.to_bytes(t0);

        // A new process, its clock from zero, 10 s after the save.
        let mut back = ReplySurbStore::default();
        let now = Timestamp::ZERO;
        let kept = back
            .restore(now, Duration::from_secs(10), &bytes, 8, read, &mut stats)
            .unwrap();
        assert_eq!(
            kept, 1,
            "the 5 s one ran out while away, the used one was not saved"
        );
        assert!(back.get(&id(1)).is_none());
        assert_eq!(back.get(&id(2)), Some(&IdOnly(id(2))));
        assert!(back.get(&id(3)).is_none());
        assert_eq!(
            back.next_expiry(),
            Some(now.saturating_add(Duration::from_secs(50)))
        );
    }

    #[test]
    fn damaged_bytes_restore_nothing_and_never_panic() {
        let mut stats = ClientStats::default();
        let mut store = ReplySurbStore::default();
        store.insert(IdOnly(id(1)), Timestamp::from_millis(60_000), 8, &mut stats);
        store.insert(IdOnly(id(2)), Timestamp::from_millis(60_000), 8, &mut stats);
        let bytes = store.to_bytes(Timestamp::ZERO);
        for cut in 0..bytes.len() {
            let mut back = ReplySurbStore::default();
            let result = back.restore(
                Timestamp::ZERO,
                Duration::ZERO,
                &bytes[..cut],
                8,
                read,
                &mut stats,
            );
            // A cut at an entry's end reads back the entries before it.
            if let Ok(kept) = result {
                assert_eq!(back.len(), kept);
            } else {
                assert_eq!(back.len(), 0, "cut at {cut}");
            }
        }
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        let mut back = ReplySurbStore::default();
        assert!(matches!(
            back.restore(Timestamp::ZERO, Duration::ZERO, &wrong, 8, read, &mut stats),
            Err(ClientError::BadReplySurbs(_))
        ));
        let mut back = ReplySurbStore::default();
        let kept = back
            .restore(Timestamp::ZERO, Duration::ZERO, &bytes, 8, read, &mut stats)
            .unwrap();
        assert_eq!(kept, 2);
    }
}
