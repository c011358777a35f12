//! Helpers shared by the transport's integration tests (loopback only).
// Helpers of tests: a failed unwrap here is a failed test.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use transport::{Endpoint, LinkConfig, PeerId, Received};

/// The network's packet size.
pub const SIZE: usize = 2413;

/// Upper bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(4);

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn id(key: &SigningKey) -> PeerId {
    PeerId::from_signing_key(key)
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Settings with short timeouts so failures and reconnections are quick.
pub fn config() -> LinkConfig {
    let mut config = LinkConfig::new(loopback(), SIZE);
    config.backoff_initial = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    config.handshake_timeout = Duration::from_secs(1);
    config.drain_timeout = Duration::from_secs(1);
    config.backoff_seed = 7;
    config
}

pub fn bind(
    key: &SigningKey,
    pins: &[PeerId],
    config: LinkConfig,
) -> (Endpoint, mpsc::Receiver<Received>) {
    Endpoint::bind(key, pins.iter().copied(), config).unwrap()
}

/// A packet of `SIZE` bytes whose content depends on `tag` everywhere.
pub fn packet(tag: u32) -> Vec<u8> {
    let mut p = vec![0u8; SIZE];
    p[..4].copy_from_slice(&tag.to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(4) {
        *b = (i as u32).wrapping_mul(31).wrapping_add(tag) as u8;
    }
    p
}

pub fn tag_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[..4].try_into().unwrap())
}

/// Awaits `fut` for at most `WAIT`, failing the test with `what` otherwise.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub async fn recv(rx: &mut mpsc::Receiver<Received>) -> Received {
    within("a packet", rx.recv()).await.expect("channel open")
}

/// Waits until `condition` holds, checking every few milliseconds.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Sends tagged packets from `from` to `to` (one every 20 ms) until one
/// arrives on `rx`; returns the received packet. Used where a link has to
/// come up again first.
pub async fn deliver(
    from: &Endpoint,
    to: PeerId,
    addr: SocketAddr,
    rx: &mut mpsc::Receiver<Received>,
    tag: u32,
) -> Received {
    within("delivery over a new link", async {
        loop {
            let _ = from.send(to, addr, packet(tag));
            if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await
            {
                return got;
            }
        }
    })
    .await
}
