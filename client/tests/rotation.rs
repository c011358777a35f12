//! Prekey rotation on a local network of real processes: two clients made
//! with `init --prekey-rotation 3s --prekey-grace 3s` keep a conversation
//! going both ways across two rotations of each side (the first prekeys
//! erased by then), each receiving the other's new bundle inside the
//! session; then a third client given the first card after it expired gets
//! a clear error from `mixnet-client send` and a non-zero exit, and one
//! given the current card reaches its owner. Needs the node binaries built
//! beside the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Real processes run on the real clock: deadlines for their start-up.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::shell::ShellStats;
use client::{AddressCard, Client, ClientOptions};
use localnet::{LocalNet, NetworkSpec};

mod on_localnet;

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");
const FAST: [&str; 4] = ["--prekey-rotation", "3s", "--prekey-grace", "3s"];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `init` at gateway 0 with `extra` flags: the card and what it said on stderr.
fn init(net: &LocalNet, dir: &Path, extra: &[&str]) -> (AddressCard, String) {
    let gateway = net.gateways[0].id.to_base58();
    let mut args = vec!["--gateway", gateway.as_str()];
    args.extend_from_slice(extra);
    on_localnet::init_with(net, dir, &args, |_| true).unwrap_or_else(|e| panic!("init: {e}"))
}

/// Sends `text` from `from` to `to` and waits for it at `to`.
async fn exchange(from: &Client, to: &Client, text: String) {
    from.send(to.address(), text.clone().into_bytes())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(20), to.recv())
        .await
        .expect("message in time")
        .unwrap();
    assert_eq!(m.bytes, text.into_bytes());
    assert_eq!(m.from, Some(from.address()));
}

fn rotations(c: &Client) -> u64 {
    ShellStats::get(&c.stats().prekey_rotations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_outlive_rotations_and_an_expired_card_is_refused() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 1,
        mean_delay_ms: 5,
        lambda_p: 50.0,
        lambda_l: 2.0,
        refresh_ms: 300,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let carol_dir = root.path().join("carol");
    let (_, said) = init(&net, &carol_dir, &[]);
    assert!(said.contains("card expires"), "{said}");
    let (alice_card, said) = init(&net, &root.path().join("alice"), &FAST);
    let (bob_card, _) = init(&net, &root.path().join("bob"), &FAST);
    // The card says, signed, when it expires: made + 3 s + 3 s.
    let expires = bob_card.expires_at().expect("an expiring card").0;
    assert!(expires <= unix_now() + 6, "{expires}");
    assert!(said.contains("card expires"), "{said}");

    let mut options = ClientOptions::default();
    options.core.ack_margin = Duration::from_millis(1500);
    let alice = on_localnet::connect(&root.path().join("alice"), options.clone()).await;
    let bob = on_localnet::connect(&root.path().join("bob"), options).await;
    alice.add_contact(&bob_card).await.unwrap();

    // Both ways until each side rotated twice (its first prekeys are then
    // erased), and two rounds more.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    let mut after = 0;
    while after < 2 {
        exchange(&alice, &bob, format!("alice {round}")).await;
        exchange(&bob, &alice, format!("bob {round}")).await;
        round += 1;
        if rotations(&alice) >= 2 && rotations(&bob) >= 2 {
            after += 1;
        }
        assert!(Instant::now() < deadline, "no two rotations in 60 s");
    }
    eprintln!(
        "{round} rounds; rotations alice {} bob {}",
        rotations(&alice),
        rotations(&bob)
    );
    // The new cards, and each side got the other's new bundle in the session.
    assert_ne!(alice.card().bundle, alice_card.bundle);
    assert_ne!(bob.card().bundle, bob_card.bundle);
    assert!(bob.card().expires_at() > bob_card.expires_at());
    for c in [&alice, &bob] {
        assert!(ShellStats::get(&c.stats().bundles_sent) >= 1);
        assert!(ShellStats::get(&c.stats().bundles_received) >= 1);
        assert_eq!(ShellStats::get(&c.stats().undecryptable), 0);
    }

    // A new correspondent with Bob's first card, now expired: a clear error.
    assert!(unix_now() >= expires);
    let out = Command::new(CLIENT)
        .args(["send", "--dir", carol_dir.to_str().unwrap()])
        .args(["--to", &bob_card.to_string(), "too late"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("expired at") && stderr.contains(&format!("(unix {expires})")),
        "{stderr}"
    );
    assert!(
        stderr.contains("ask its owner for their current card"),
        "{stderr}"
    );

    // With the current card, it reaches Bob.
    let out = Command::new(CLIENT)
        .args(["send", "--dir", carol_dir.to_str().unwrap()])
        .args(["--to", &bob.card().to_string(), "just in time"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let m = tokio::time::timeout(Duration::from_secs(20), bob.recv())
        .await
        .expect("carol's message in time")
        .unwrap();
    assert_eq!(m.bytes, b"just in time");
    alice.shutdown().await;
    bob.shutdown().await;
}
