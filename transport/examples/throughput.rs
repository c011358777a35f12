//! Measures one link on loopback: two endpoints, `N` packets of 2413 B from
//! one to the other, as fast as the bounded queue accepts them.
//!
//! `cargo run --release -p transport --example throughput [N]`

use std::time::Duration;

use transport::{Endpoint, LinkConfig, PeerId};

const SIZE: usize = 2413;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let ka = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let kb = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let listen = "127.0.0.1:0".parse()?;
    let (a, _rx_a) = Endpoint::bind(
        &ka,
        [PeerId::from_signing_key(&kb)],
        LinkConfig::new(listen, SIZE),
    )?;
    let (b, mut rx_b) = Endpoint::bind(
        &kb,
        [PeerId::from_signing_key(&ka)],
        LinkConfig::new(listen, SIZE),
    )?;
    // The real clock is what this example measures.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0u32;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), rx_b.recv()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        got
    });
    let mut sent = 0u32;
    while sent < n {
        if a.send(b.peer_id(), b.local_addr(), vec![7u8; SIZE]).is_ok() {
            sent += 1;
        } else {
            tokio::task::yield_now().await;
        }
    }
    let got = receiver.await?;
    let secs = start.elapsed().as_secs_f64();
    let stats = a.stats();
    println!(
        "{got}/{n} packets in {secs:.2} s: {:.0} packets/s, {:.1} Mbit/s; sender refused {} (queue full) while pacing",
        f64::from(got) / secs,
        f64::from(got) * SIZE as f64 * 8.0 / secs / 1e6,
        stats.dropped(transport::LinkDropReason::QueueFull),
    );
    a.close().await;
    b.close().await;
    Ok(())
}
