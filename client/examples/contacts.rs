//! Contacts by name, short addresses and safety numbers through the library.
//!
//! `cargo run -p client --example contacts -- ALICE_DIR BOB_DIR BOB_CARD`:
//! Alice names Bob from his card, writes to him by name; Bob, who named
//! Alice from her short address only, sees the message under her name; both
//! print the safety number of their conversation, which must be the same.
//! Both folders were made by `mixnet-client init`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use client::{AddressCard, Client, ClientOptions, PeerAddress, SafetyNumber};

/// What the example saw: the name Bob's client showed, and both safety numbers.
pub struct Seen {
    /// The sender as Bob's client shows it.
    pub sender: String,
    /// Alice's safety number for Bob.
    pub alice_number: SafetyNumber,
    /// Bob's safety number for Alice.
    pub bob_number: SafetyNumber,
}

/// Runs the example on two data folders and Bob's card.
pub async fn run(alice_dir: &Path, bob_dir: &Path, bob_card: &AddressCard) -> Result<Seen> {
    let alice = Client::connect(alice_dir, ClientOptions::default()).await?;
    let bob = Client::connect(bob_dir, ClientOptions::default()).await?;
    alice.wait_connected().await?;
    bob.wait_connected().await?;
    // Alice has Bob's card; Bob only Alice's short address.
    alice
        .contacts()
        .add("bob".parse()?, PeerAddress::Card(bob_card.clone()))
        .await?;
    bob.contacts()
        .add("alice".parse()?, PeerAddress::Short(alice.short_address()))
        .await?;
    let short = alice.contacts().get("bob".parse()?).await?;
    alice
        .send(short, b"hello bob".to_vec())
        .await?
        .delivered()
        .await?;
    let message = tokio::time::timeout(Duration::from_secs(30), bob.recv())
        .await
        .context("nothing arrived in 30 s")?
        .context("bob's client stopped")?;
    if message.bytes != b"hello bob" {
        bail!("another message arrived");
    }
    let alice_number = alice.contacts().verify("bob".parse()?).await?;
    let bob_number = bob.contacts().verify("alice".parse()?).await?;
    println!("{}: hello bob", message.sender());
    println!("alice sees {alice_number}");
    println!("bob sees   {bob_number}");
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(Seen {
        sender: message.sender(),
        alice_number,
        bob_number,
    })
}

#[allow(dead_code)] // the tests call `run`
#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [alice, bob, card] = args.as_slice() else {
        bail!("usage: contacts ALICE_DIR BOB_DIR BOB_CARD");
    };
    let card: AddressCard = card.parse()?;
    run(Path::new(alice), Path::new(bob), &card)
        .await
        .map(|_| ())
}
