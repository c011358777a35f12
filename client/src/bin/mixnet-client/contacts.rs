//! `mixnet-client contacts`: named contacts, kept in the sealed session
//! book of the data folder.

use std::path::Path;

use anyhow::{Context, Result};
use client::contacts::{add_named, verify_named};
use client::shell::clock::unix_now;
use client::shell::{DataFolder, os_seed};
use client::{ContactName, PeerAddress};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::{ContactsAction, unlock};

fn name(text: &str) -> Result<ContactName> {
    Ok(text.parse()?)
}

/// Runs `action` on the book of the folder `dir`, and saves the book when it changed.
pub fn run(dir: &Path, action: ContactsAction) -> Result<()> {
    let folder = DataFolder::new(dir);
    // A change is read, made and saved under the folder's lock, so that a
    // running client's later save cannot undo it.
    let _lock = match action {
        ContactsAction::Add { .. } | ContactsAction::Remove { .. } => Some(folder.lock()?),
        ContactsAction::List | ContactsAction::Verify { .. } => None,
    };
    let mut unlocked = unlock(&folder)?;
    let changed = match action {
        ContactsAction::Add {
            name: text,
            address,
        } => {
            let to: PeerAddress = address
                .parse()
                .with_context(|| format!("contacts add {text}: {address}"))?;
            let short = add_named(&mut unlocked.book, name(&text)?, &to, unix_now())?;
            println!("{text} {short}");
            true
        }
        ContactsAction::List => {
            for contact in unlocked.book.named_contacts() {
                let state = if contact.reachable {
                    "reachable"
                } else {
                    "unmet"
                };
                println!("{} {} {state}", contact.name, contact.short);
            }
            false
        }
        ContactsAction::Remove { name: text } => {
            unlocked.book.remove_name(&name(&text)?)?;
            true
        }
        ContactsAction::Verify { name: text } => {
            let number = verify_named(&unlocked.book, &name(&text)?)?;
            println!("{number}");
            false
        }
    };
    if changed {
        let mut rng = ChaCha20Rng::from_seed(os_seed()?);
        unlocked
            .book_file
            .save(&mut rng, &unlocked.book)
            .context("cannot save the contacts")?;
    }
    Ok(())
}
