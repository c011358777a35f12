//! What a client remembers to recall its messages and to judge recalls of
//! the messages it received; kept in the session book, so it is sealed and
//! saved with it.
//!
//! - **Sent**: per message that may still be recalled, its recipient, its
//!   recall secret, its fragment count and until when a recall makes sense
//!   (the message's expiry, or [`RECALL_WINDOW`] after it was sent when it
//!   has none). Pruned at that instant; at most [`MAX_SENT_RECORDS`], the
//!   one that expires first giving way.
//! - **Received**: per message received, the identity of the peer whose
//!   session it came in and until when it is kept (the same rule). A recall
//!   notice is believed only from that identity. At most
//!   [`MAX_RECEIVED_RECORDS`].

use std::collections::BTreeMap;

use e2ee::UnixSeconds;
use protocol::ClientAddress;
use protocol::fragment::MessageId;
use protocol::recall::RecallSecret;
use serde::{Deserialize, Serialize};

use super::PeerIdentityKey;

/// How long a message without an expiry may be recalled (and its sender
/// remembered by its recipient): 7 days.
pub const RECALL_WINDOW: u64 = 7 * 24 * 3600;
/// Most sent messages remembered for recall.
pub const MAX_SENT_RECORDS: usize = 4096;
/// Most received messages remembered to judge recalls.
pub const MAX_RECEIVED_RECORDS: usize = 4096;

/// A sent message that may be recalled.
#[derive(Clone, Serialize, Deserialize)]
struct SentRecord {
    to: ClientAddress,
    secret: [u8; 32],
    fragments: u16,
    until: UnixSeconds,
}

/// A received message's sender.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct ReceivedRecord {
    peer: PeerIdentityKey,
    until: UnixSeconds,
}

/// What a sender needs to recall message `id`.
#[derive(Clone, Debug)]
pub struct RecallTicket {
    /// The message.
    pub id: MessageId,
    /// Its recipient.
    pub to: ClientAddress,
    /// Its recall secret.
    pub secret: RecallSecret,
    /// How many fragments it has.
    pub fragments: u16,
}

/// Why a message cannot be recalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecallError {
    /// No record: never sent by this client, sent without recall, or
    /// recalled already.
    #[error("no message with this id can be recalled (unknown, or recalled already)")]
    Unknown,
    /// Its lifetime (or the recall window) is over: no gateway keeps it
    /// and its recipient has forgotten who sent it.
    #[error("the message expired: it can no longer be recalled")]
    Expired,
}

/// What a recall notice that arrived comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeVerdict {
    /// From the peer that sent the message: it is recalled (and forgotten).
    Recalled,
    /// From another peer than the message's sender: refused.
    FromAnotherPeer,
    /// For a message this client does not know (never received, forgotten,
    /// or recalled already): refused.
    UnknownMessage,
}

impl NoticeVerdict {
    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeVerdict::Recalled => "recalled",
            NoticeVerdict::FromAnotherPeer => "another_peer",
            NoticeVerdict::UnknownMessage => "unknown_message",
        }
    }
}

/// Sent messages a client may recall and received ones it may be asked to forget.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct RecallBook {
    sent: BTreeMap<[u8; 16], SentRecord>,
    received: BTreeMap<[u8; 16], ReceivedRecord>,
}

impl std::fmt::Debug for RecallBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecallBook")
            .field("sent", &self.sent.len())
            .field("received", &self.received.len())
            .finish()
    }
}

/// Until when a message sent or received at `now` with expiry `expires_at` is remembered.
fn until(now: UnixSeconds, expires_at: Option<UnixSeconds>) -> UnixSeconds {
    expires_at.unwrap_or(UnixSeconds(now.0.saturating_add(RECALL_WINDOW)))
}

/// Removes the entry that expires first while `map` holds `max` or more.
fn make_room<V>(map: &mut BTreeMap<[u8; 16], V>, max: usize, until: impl Fn(&V) -> UnixSeconds) {
    while map.len() >= max {
        let Some(first) = map.iter().min_by_key(|(_, v)| until(v)).map(|(k, _)| *k) else {
            return;
        };
        map.remove(&first);
    }
}

impl RecallBook {
    /// Sent messages remembered.
    pub fn sent_len(&self) -> usize {
        self.sent.len()
    }

    /// Received messages remembered.
    pub fn received_len(&self) -> usize {
        self.received.len()
    }

    /// Forgets everything whose time is over at `now`.
    pub fn prune(&mut self, now: UnixSeconds) {
        self.sent.retain(|_, r| r.until > now);
        self.received.retain(|_, r| r.until > now);
    }

    /// Remembers a message sent at `now` so that it may be recalled.
    pub fn note_sent(
        &mut self,
        now: UnixSeconds,
        ticket: &RecallTicket,
        expires_at: Option<UnixSeconds>,
    ) {
        self.prune(now);
        make_room(&mut self.sent, MAX_SENT_RECORDS, |r| r.until);
        self.sent.insert(
            ticket.id.0,
            SentRecord {
                to: ticket.to,
                secret: ticket.secret.0,
                fragments: ticket.fragments,
                until: until(now, expires_at),
            },
        );
    }

    /// What it takes to recall message `id` at `now`.
    pub fn ticket(&self, now: UnixSeconds, id: &MessageId) -> Result<RecallTicket, RecallError> {
        let record = self.sent.get(&id.0).ok_or(RecallError::Unknown)?;
        if record.until <= now {
            return Err(RecallError::Expired);
        }
        Ok(RecallTicket {
            id: *id,
            to: record.to,
            secret: RecallSecret(record.secret),
            fragments: record.fragments,
        })
    }

    /// Forgets sent message `id` (its recall has left).
    pub fn forget_sent(&mut self, id: &MessageId) {
        self.sent.remove(&id.0);
    }

    /// Remembers that message `id`, received at `now`, came from `peer`.
    pub fn note_received(
        &mut self,
        now: UnixSeconds,
        id: &MessageId,
        peer: PeerIdentityKey,
        expires_at: Option<UnixSeconds>,
    ) {
        self.prune(now);
        make_room(&mut self.received, MAX_RECEIVED_RECORDS, |r| r.until);
        self.received.insert(
            id.0,
            ReceivedRecord {
                peer,
                until: until(now, expires_at),
            },
        );
    }

    /// Judges a recall notice for message `id` that `peer` sent: believed
    /// only from the peer the message came from, and then the message is
    /// forgotten (a second notice finds nothing).
    pub fn judge_notice(
        &mut self,
        now: UnixSeconds,
        id: &MessageId,
        peer: &PeerIdentityKey,
    ) -> NoticeVerdict {
        self.prune(now);
        match self.received.get(&id.0) {
            None => NoticeVerdict::UnknownMessage,
            Some(record) if record.peer != *peer => NoticeVerdict::FromAnotherPeer,
            Some(_) => {
                self.received.remove(&id.0);
                NoticeVerdict::Recalled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use protocol::NodeId;

    fn peer(n: u8) -> PeerIdentityKey {
        PeerIdentityKey(e2ee::PeerIdentity {
            dh: [n; 32],
            signing: [n; 32],
        })
    }

    fn ticket(n: u8) -> RecallTicket {
        RecallTicket {
            id: MessageId([n; 16]),
            to: ClientAddress {
                client_key: [n; 32],
                gateway: NodeId([0; 32]),
            },
            secret: RecallSecret([n; 32]),
            fragments: 2,
        }
    }

    #[test]
    fn a_sent_message_is_recallable_until_its_expiry() {
        let mut book = RecallBook::default();
        book.note_sent(UnixSeconds(100), &ticket(1), Some(UnixSeconds(200)));
        book.note_sent(UnixSeconds(100), &ticket(2), None);
        let t = book.ticket(UnixSeconds(150), &MessageId([1; 16])).unwrap();
        assert_eq!((t.fragments, t.secret), (2, RecallSecret([1; 32])));
        assert_eq!(
            book.ticket(UnixSeconds(200), &MessageId([1; 16]))
                .unwrap_err(),
            RecallError::Expired
        );
        assert_eq!(
            book.ticket(UnixSeconds(150), &MessageId([9; 16]))
                .unwrap_err(),
            RecallError::Unknown
        );
        // Without an expiry: the recall window.
        assert!(
            book.ticket(UnixSeconds(100 + RECALL_WINDOW - 1), &MessageId([2; 16]))
                .is_ok()
        );
        book.prune(UnixSeconds(300));
        assert_eq!(book.sent_len(), 1);
        book.forget_sent(&MessageId([2; 16]));
        assert_eq!(book.sent_len(), 0);
    }

    #[test]
    fn a_notice_is_believed_only_from_the_sender_and_only_once() {
        let mut book = RecallBook::default();
        let id = MessageId([5; 16]);
        book.note_received(UnixSeconds(10), &id, peer(1), None);
        assert_eq!(
            book.judge_notice(UnixSeconds(11), &id, &peer(2)),
            NoticeVerdict::FromAnotherPeer
        );
        assert_eq!(
            book.judge_notice(UnixSeconds(11), &MessageId([6; 16]), &peer(1)),
            NoticeVerdict::UnknownMessage
        );
        assert_eq!(
            book.judge_notice(UnixSeconds(12), &id, &peer(1)),
            NoticeVerdict::Recalled
        );
        assert_eq!(
            book.judge_notice(UnixSeconds(13), &id, &peer(1)),
            NoticeVerdict::UnknownMessage
        );
    }

    #[test]
    fn both_records_are_bounded() {
        let mut book = RecallBook::default();
        for i in 0..(MAX_RECEIVED_RECORDS as u64 + 10) {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            book.note_received(UnixSeconds(i), &MessageId(id), peer(1), None);
            let mut t = ticket(1);
            t.id = MessageId(id);
            book.note_sent(UnixSeconds(i), &t, None);
        }
        assert_eq!(book.received_len(), MAX_RECEIVED_RECORDS);
        assert_eq!(book.sent_len(), MAX_SENT_RECORDS);
    }
}
