//! Which session a ratchet message belongs to, by its routing tag.
//!
//! Every session predicts the tags of the messages it can open next
//! ([`e2ee::Session::expected_tags`]: its stored skipped keys and a window
//! ahead in its current and next receiving chains); this table maps each
//! predicted tag to its session, so a message is routed with one lookup
//! and a message no session expects costs no cryptography at all.
//!
//! The table only grows between rebuilds: after each message a session
//! reports the tags that became expected ([`e2ee::Session::take_new_tags`],
//! about one per message), and tags that stopped being expected stay until
//! the table is rebuilt from every session's expected tags, once it holds
//! twice what it held after the last rebuild. A stale tag leads to its
//! session, which refuses the message as a duplicate (or to a dropped
//! session: no match). It is not serialized: the book rebuilds it from its
//! sessions when it is restored.

use std::collections::HashMap;

use e2ee::{MessageTag, Session, SessionError};

use super::SessionId;

/// Entries allowed beyond twice the size after the last rebuild.
const SLACK: usize = 4096;

/// The routing table of a book.
#[derive(Default)]
pub(super) struct TagRoutes {
    by_tag: HashMap<MessageTag, SessionId>,
    /// Entries right after the last rebuild.
    rebuilt_len: usize,
}

impl TagRoutes {
    /// The session expecting `tag` (or that expected it before).
    pub(super) fn session_of(&self, tag: &MessageTag) -> Option<SessionId> {
        self.by_tag.get(tag).copied()
    }

    /// Adds the tags session `id` came to expect since it was last asked.
    pub(super) fn add(&mut self, id: SessionId, session: &mut Session) -> Result<(), SessionError> {
        for tag in session.take_new_tags()? {
            self.by_tag.insert(tag, id);
        }
        Ok(())
    }

    /// Whether stale entries are now at least half of the table.
    pub(super) fn needs_rebuild(&self) -> bool {
        self.by_tag.len() > 2 * self.rebuilt_len + SLACK
    }

    /// Replaces the table with the tags every session expects now.
    pub(super) fn rebuild<'a>(
        &mut self,
        sessions: impl Iterator<Item = (SessionId, &'a mut Session)>,
    ) -> Result<(), SessionError> {
        self.by_tag.clear();
        for (id, session) in sessions {
            for tag in session.expected_tags()? {
                self.by_tag.insert(tag, id);
            }
            // What was new is in the table now.
            session.take_new_tags()?;
        }
        self.rebuilt_len = self.by_tag.len();
        Ok(())
    }

    /// Number of tags routed (stale ones included).
    pub(super) fn len(&self) -> usize {
        self.by_tag.len()
    }
}
