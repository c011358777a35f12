//! The demo conversation the `localnet` command runs: two clients, each on
//! its own gateway, exchange a message each way with the `mixnet-client`
//! command, so a new user sees the whole path work before reading further.

// Waiting for processes happens on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::LocalnetError;
use crate::network::LocalNet;
use crate::process::{NodeProcess, binary, output};

/// Creates a client folder on gateway `gateway` and returns its address card.
fn init_client(net: &LocalNet, dir: &Path, gateway: usize) -> Result<String, LocalnetError> {
    let gw = net
        .gateways
        .get(gateway)
        .ok_or_else(|| LocalnetError::Failed("demo".into(), format!("no gateway {gateway}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = output(
            Command::new(binary("mixnet-client"))
                .args(["init", "--dir", &dir.display().to_string()])
                .args(net.pin_args())
                .args(["--gateway", &gw.id.to_base58()]),
        )?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        // The gateway may not be in the published topology yet.
        if Instant::now() > deadline {
            return Err(LocalnetError::Failed(
                "mixnet-client init".into(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Sends one message from `from` to `to_address` while `to` receives it; returns what arrived.
fn exchange(
    from: &Path,
    to: &Path,
    to_address: &str,
    text: &str,
) -> Result<(String, Duration), LocalnetError> {
    let mut receiver = NodeProcess::spawn(
        "receive",
        &binary("mixnet-client"),
        &[
            "receive",
            "--dir",
            &to.display().to_string(),
            "--count",
            "1",
        ],
        &to.join("receive.log"),
    )?;
    receiver.wait_for_line("ready", Duration::from_secs(30))?;
    let start = Instant::now();
    let out = output(Command::new(binary("mixnet-client")).args([
        "send",
        "--dir",
        &from.display().to_string(),
        "--to",
        to_address,
        text,
    ]))?;
    if !out.status.success() {
        return Err(LocalnetError::Failed(
            "mixnet-client send".into(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let line = receiver.wait_for_line("", Duration::from_secs(60))?;
    // `receive` prints "TIME SENDER: TEXT"; the demo shows the text.
    let text = line
        .split_once(' ')
        .and_then(|(_, rest)| rest.split_once(": "))
        .map_or(line.as_str(), |(_, text)| text)
        .to_string();
    Ok((text, start.elapsed()))
}

/// Runs the demo: Alice on the first gateway, Bob on the second.
pub fn run_demo(net: &LocalNet) -> Result<(), LocalnetError> {
    let alice = net.root().join("alice");
    let bob = net.root().join("bob");
    let alice_address = init_client(net, &alice, 0)?;
    let bob_address = init_client(net, &bob, 1 % net.gateways.len().max(1))?;
    // A card is the address, a slash, and the prekeys: show the address.
    let short = |card: &str| card.split('/').next().unwrap_or_default().to_string();
    println!("alice      {}", short(&alice_address));
    println!("bob        {}", short(&bob_address));
    let (got, took) = exchange(
        &alice,
        &bob,
        &bob_address,
        "Hello Bob! Nobody can tell I am writing to you.",
    )?;
    println!("alice → bob   {got:?}   ({} ms, acked)", took.as_millis());
    let (got, took) = exchange(
        &bob,
        &alice,
        &alice_address,
        "Hello Alice! Nor that I answer.",
    )?;
    println!("bob → alice   {got:?}   ({} ms, acked)", took.as_millis());
    println!(
        "Each message crossed three mix nodes, which delayed it and mixed it with cover traffic;"
    );
    println!("its content was end-to-end encrypted (X25519 + ML-KEM-768 start, double ratchet).");
    Ok(())
}
