//! Two clients that know only each other's short address, through the library.
//!
//! `cargo run -p client --example short_address -- ALICE_DIR BOB_DIR`:
//! both connect (each publishes its signed card and one-time prekeys at its
//! gateway); Bob writes to Alice's short address, which his client turns
//! into a session by fetching her bundle from her gateway through the
//! mixnet; Alice answers to Bob's short address the same way. Both folders
//! were made by `mixnet-client init`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use client::{Client, ClientOptions, ReceivedMessage};

/// Waits up to 30 s for the next message of `client`.
async fn next(client: &Client) -> Result<ReceivedMessage> {
    tokio::time::timeout(Duration::from_secs(30), client.recv())
        .await
        .context("nothing arrived in 30 s")?
        .context("the client stopped")
}

/// Runs the example on two data folders; returns what Alice and Bob received.
pub async fn run(alice_dir: &Path, bob_dir: &Path) -> Result<(ReceivedMessage, ReceivedMessage)> {
    let alice = Client::connect(alice_dir, ClientOptions::default()).await?;
    let bob = Client::connect(bob_dir, ClientOptions::default()).await?;
    alice.wait_connected().await?;
    bob.wait_connected().await?;
    // All each of them was told of the other: 78 characters.
    let (alice_short, bob_short) = (alice.short_address(), bob.short_address());
    // The first message waits for Alice's bundle (a few round trips of the
    // mixnet at most), then goes like any other.
    bob.send(alice_short, b"hello alice".to_vec())
        .await?
        .delivered()
        .await?;
    let to_alice = next(&alice).await?;
    alice
        .send(bob_short, b"hello bob".to_vec())
        .await?
        .delivered()
        .await?;
    let to_bob = next(&bob).await?;
    if to_alice.bytes != b"hello alice" || to_bob.bytes != b"hello bob" {
        bail!("another message arrived");
    }
    println!("alice got {:?} from {}", "hello alice", to_alice.sender());
    println!("bob got {:?} from {}", "hello bob", to_bob.sender());
    alice.shutdown().await;
    bob.shutdown().await;
    Ok((to_alice, to_bob))
}

#[allow(dead_code)] // the tests call `run`
#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [alice, bob] = args.as_slice() else {
        bail!("usage: short_address ALICE_DIR BOB_DIR");
    };
    run(Path::new(alice), Path::new(bob)).await.map(|_| ())
}
