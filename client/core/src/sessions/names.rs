//! Contacts by name: a name the user chose, and the short address of the
//! identity it stands for.
//!
//! A name stands for an identity (its fingerprint, in the short address),
//! not for a Sphinx key: a message is shown under a contact's name when
//! the session that opened it has that identity, and a message to a name
//! goes to the address pinned to that identity (from its card, a session,
//! or a bundle).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::short::ShortAddress;

/// Longest contact name, in characters.
pub const MAX_NAME_LEN: usize = 32;

/// A contact's name: 1 to 32 letters, digits, `.`, `_` or `-`, starting
/// with a letter (so it is never taken for an address).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContactName(String);

impl ContactName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContactName({})", self.0)
    }
}

impl FromStr for ContactName {
    type Err = ContactError;

    fn from_str(text: &str) -> Result<Self, ContactError> {
        let bad = |why: &'static str| ContactError::BadName {
            name: text.chars().take(MAX_NAME_LEN + 8).collect(),
            why,
        };
        let mut chars = text.chars();
        match chars.next() {
            None => return Err(bad("it is empty")),
            Some(c) if !c.is_ascii_alphabetic() => return Err(bad("it must start with a letter")),
            Some(_) => {}
        }
        if text.chars().count() > MAX_NAME_LEN {
            return Err(bad("it is longer than 32 characters"));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(bad("only letters, digits, `.`, `_` and `-` are allowed"));
        }
        Ok(ContactName(text.to_string()))
    }
}

/// A named contact as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedContact {
    /// Its name.
    pub name: ContactName,
    /// The short address it was added with.
    pub short: ShortAddress,
    /// Whether the book knows its full identity and mailbox address (from
    /// a card, a session or a bundle), so a message can be sent to it now.
    pub reachable: bool,
}

/// Why a contact could not be added, found or removed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ContactError {
    /// The name is not acceptable.
    #[error("contact name {name:?}: {why}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The name is taken by another identity.
    #[error("a contact named {0} exists already, for another address: remove it first")]
    NameTaken(String),
    /// The identity has a name already.
    #[error("this address is a contact already, named {0}")]
    AlreadyNamed(String),
    /// No contact has this name.
    #[error("no contact named {0}")]
    UnknownName(String),
    /// The identity of a contact added by short address is not known yet.
    #[error(
        "only the fingerprint of {0}'s identity is known: exchange a message first, \
         or add its address card"
    )]
    NotMetYet(String),
    /// A plain address (`key@gateway`) whose identity is not known.
    #[error("no identity is known for {0}: add the contact with its short address or address card")]
    UnknownIdentity(String),
}
