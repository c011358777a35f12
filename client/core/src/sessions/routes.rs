//! Which session a ratchet message belongs to, by its routing tag.
//!
//! Every session predicts the tags of the messages it can open next
//! ([`e2ee::Session::expected_tags`]: its stored skipped keys and a window
//! ahead in its current and next receiving chains); this table maps each
//! predicted tag to its session, so a message is routed with one lookup
//! and a message no session expects costs no cryptography at all. It is
//! not serialized: the book rebuilds it from its sessions when it is restored.

use std::collections::{HashMap, HashSet, VecDeque};

use e2ee::{MessageTag, Session, SessionError};

use super::SessionId;

/// Tags of opened messages remembered, so that a repeat is called a duplicate.
const MAX_CONSUMED: usize = 1024;

/// The routing table of a book.
#[derive(Default)]
pub(super) struct TagRoutes {
    by_tag: HashMap<MessageTag, SessionId>,
    by_session: HashMap<SessionId, Vec<MessageTag>>,
    consumed: VecDeque<MessageTag>,
    consumed_set: HashSet<MessageTag>,
}

impl TagRoutes {
    /// The session expecting `tag`.
    pub(super) fn session_of(&self, tag: &MessageTag) -> Option<SessionId> {
        self.by_tag.get(tag).copied()
    }

    /// Whether a message with `tag` was opened lately.
    pub(super) fn was_consumed(&self, tag: &MessageTag) -> bool {
        self.consumed_set.contains(tag)
    }

    /// Remembers that the message with `tag` was opened.
    pub(super) fn consume(&mut self, tag: MessageTag) {
        if self.consumed_set.insert(tag) {
            self.consumed.push_back(tag);
        }
        while self.consumed.len() > MAX_CONSUMED {
            if let Some(old) = self.consumed.pop_front() {
                self.consumed_set.remove(&old);
            }
        }
    }

    /// Replaces the tags of session `id` with those it expects now.
    pub(super) fn refresh(
        &mut self,
        id: SessionId,
        session: &mut Session,
    ) -> Result<(), SessionError> {
        let tags = session.expected_tags()?;
        self.forget(id);
        for tag in &tags {
            self.by_tag.insert(*tag, id);
        }
        self.by_session.insert(id, tags);
        Ok(())
    }

    /// Removes the tags of session `id` (dropped).
    pub(super) fn forget(&mut self, id: SessionId) {
        for tag in self.by_session.remove(&id).unwrap_or_default() {
            if self.by_tag.get(&tag) == Some(&id) {
                self.by_tag.remove(&tag);
            }
        }
    }

    /// Number of tags routed.
    pub(super) fn len(&self) -> usize {
        self.by_tag.len()
    }
}
