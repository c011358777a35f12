//! Who wrote, and when: a message's sender (contact name, short address or
//! `anonymous`), its time and its expiry, from [`ReceivedMessage`].
//!
//! `cargo run -p client --example who_wrote -- FROM_DIR TO_DIR`: the client
//! of `FROM_DIR` sends a message that lives ten minutes to the one of
//! `TO_DIR` (its short address must be known to the sender: a contact added
//! with its card), which prints what it knows about it. Both folders were
//! made by `mixnet-client init`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use client::{Client, ClientOptions, ReceivedMessage};

/// Sends one message from `from` to `to` and returns it as `to` received it.
#[allow(clippy::disallowed_methods)] // an application reads the real clock
pub async fn run(from: &Path, to: &Path) -> Result<ReceivedMessage> {
    let sender = Client::connect(from, ClientOptions::default()).await?;
    let receiver = Client::connect(to, ClientOptions::default()).await?;
    sender.wait_connected().await?;
    receiver.wait_connected().await?;
    let outgoing = sender
        .send_expiring(
            receiver.short_address(),
            b"written at a known time".to_vec(),
            Duration::from_secs(600),
        )
        .await
        .context("the receiver must be a contact of the sender (add its card)")?;
    let id = outgoing.id();
    outgoing.delivered().await?;
    let message = tokio::time::timeout(Duration::from_secs(30), receiver.recv())
        .await
        .context("nothing arrived in 30 s")?
        .context("the receiver stopped")?;
    if message.id != id {
        bail!("another message arrived first");
    }
    let age = SystemTime::now()
        .duration_since(message.received_at)
        .unwrap_or_default();
    println!(
        "from {} (identity {}), received {} s ago, expires {:?}",
        message.sender(),
        message.peer,
        age.as_secs(),
        message.expires_at,
    );
    sender.shutdown().await;
    receiver.shutdown().await;
    Ok(message)
}

#[allow(dead_code)] // the tests call `run`
#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        bail!("usage: who_wrote FROM_DIR TO_DIR");
    };
    run(Path::new(from), Path::new(to)).await.map(|_| ())
}
