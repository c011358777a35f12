//! Recall on a local network of real processes, through the `mixnet-client`
//! binary: a message recalled while its recipient is offline is never
//! received (its gateway deleted it; the notice it stored names a message
//! the recipient does not know, and is dropped); a message
//! recalled after delivery is reported recalled by the recipient's
//! `receive` (the recall handed to the sender's running `receive`); an id
//! the client did not send is refused with a clear error.
//! Needs the node binaries built beside the test (or `MIXNET_BIN_DIR`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Real processes run on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use localnet::probe::metric;
use localnet::{LocalNet, NetworkSpec};

mod on_localnet;

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");

/// Runs `mixnet-client ARGS --dir DIR`, killed after `limit`.
fn run(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(CLIENT)
        .args(args)
        .args(["--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The last line of `stdout` (after `ready`).
fn last_line(stdout: &str) -> String {
    stdout.trim().lines().last().unwrap_or("").to_string()
}

/// `send`: the id it printed, once the message is delivered.
fn send(alice: &Path, to: &str, text: &str) -> String {
    let out = run(alice, &["send", "--to", to, text], Duration::from_secs(60));
    last_line(&ok(&out, "send"))
}

/// `recall --id ID`, until the recall is delivered.
fn recall(dir: &Path, id: &str) -> Output {
    run(dir, &["recall", "--id", id], Duration::from_secs(60))
}

/// The next line `receive --count 1 --json` prints, as JSON.
fn receive_one(bob: &Path) -> serde_json::Value {
    let out = run(
        bob,
        &["receive", "--count", "1", "--json"],
        Duration::from_secs(60),
    );
    let line = last_line(&ok(&out, "receive"));
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_before_and_after_delivery() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 1,
        mean_delay_ms: 10,
        lambda_p: 50.0,
        lambda_l: 2.0,
        refresh_ms: 300,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let (alice, bob, mallory) = (
        root.path().join("alice"),
        root.path().join("bob"),
        root.path().join("mallory"),
    );
    on_localnet::init(&net, &alice, 0);
    let bob_card = on_localnet::init(&net, &bob, 0).to_string();
    on_localnet::init(&net, &mallory, 0);
    let gateway_metrics = &net.gateways[0].metrics_url;

    // Before delivery: Bob is offline; the message waits in his mailbox,
    // the recall deletes it there; the notice waits in its place.
    let first = send(&alice, &bob_card, "sent by mistake");
    assert_eq!(first.len(), 32, "send prints the message id: {first:?}");
    let out = recall(&alice, &first);
    ok(&out, "recall before delivery");
    // (A retransmitted copy of the fragment, if one was stored, goes too.)
    assert!(metric(gateway_metrics, "gateway_recalled_messages_total").await >= 1.0);
    // A second recall of the same message: nothing left to recall.
    let again = recall(&alice, &first);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cannot recall"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Bob comes online: the first thing he receives is the next message,
    // never the recalled one.
    let second = send(&alice, &bob_card, "meant to be sent");
    let got = receive_one(&bob);
    assert_eq!(got["id"], second.as_str(), "{got}");
    assert_eq!(got["text"], "meant to be sent");

    // After delivery: the recall reaches Bob's client in the session, and
    // his `receive` reports it. Alice's `receive` runs meanwhile, so her
    // `recall` is handed to it rather than refused.
    let (alice_receives, _) = on_localnet::receiver(&alice, &[]);
    let out = recall(&alice, &second);
    ok(&out, "recall after delivery");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("handed to the client running on"), "{said}");
    drop(alice_receives);
    let got = receive_one(&bob);
    assert_eq!(got["recalled"], second.as_str(), "{got}");

    // Anyone but the sender: Mallory's client has no such message.
    let out = recall(&mallory, &second);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot recall"), "{said}");
    // Not an id at all.
    let out = recall(&mallory, "xyz");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a message id"));
    for name in [
        "gateway_recalls_total",
        "gateway_recalls_unmatched_total",
        "gateway_recalled_messages_total",
    ] {
        eprintln!("{name} {}", metric(gateway_metrics, name).await);
    }
    assert!(
        metric(gateway_metrics, "gateway_recalls_total").await >= 2.0,
        "two recalls (and perhaps a retransmitted copy) reached the gateway"
    );
    // The recall after delivery usually finds nothing left to delete; it
    // may find a retransmitted copy Bob had not taken yet, so the count is
    // not exact.
    assert!(metric(gateway_metrics, "gateway_recalls_unmatched_total").await <= 1.0);
}
