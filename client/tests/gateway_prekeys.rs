//! Prekeys kept at the gateway, through real processes (directory, mix
//! nodes, gateways on loopback): two clients start a session knowing only
//! each other's short address, each one-time prekey is handed out once, a
//! bundle of another identity served for a short address is refused, and a
//! short address whose gateway has no bundle fails with why. Needs the node
//! binaries built (`cargo build --bins`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(clippy::disallowed_methods)]

mod on_localnet;
#[path = "../examples/short_address.rs"]
mod short_address_example;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::ShortAddress;
use client::shell::link::QuicGatewayLink;
use client_core::sessions::IdentityFingerprint;
use client_core::sessions::SessionBook;
use localnet::probe::metric;
use localnet::{LocalNet, NetworkSpec};
use on_localnet::{receiver, short_of};
use protocol::ClientAddress;
use protocol::SphinxKeyPair;
use rand::SeedableRng;

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");
/// One-time prekeys a gateway took from its clients.
const ONE_TIME_STORED: &str = "gateway_prekey_uploads_total{kind=\"one_time\",outcome=\"stored\"}";

/// `send --to TO` with `text` on stdin: its exit status, stdout and stderr.
fn send(dir: &Path, to: &str, text: &str) -> Output {
    let mut child = Command::new(CLIENT)
        .args(["send", "--dir", dir.to_str().unwrap(), "--to", to])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Checks that a `send` succeeded, else panics with its stderr.
fn sent_ok(sent: &Output) {
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
}

/// The next JSON message `lines` gives within 30 s.
fn next_json(lines: &mpsc::Receiver<String>) -> serde_json::Value {
    let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Waits until `needle` on the `/metrics` page at `url` reaches `at_least`.
async fn metric_reaches(url: &str, needle: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = metric(url, needle).await;
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_start_from_short_addresses_with_one_time_prekeys_from_the_gateway() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let [alice, bob, carol, dora] = ["alice", "bob", "carol", "dora"].map(|n| root.path().join(n));
    on_localnet::init(&net, &alice, 0);
    on_localnet::init(&net, &bob, 1);
    on_localnet::init(&net, &carol, 1);
    on_localnet::init(&net, &dora, 0);
    let (alice_short, bob_short) = (short_of(&alice), short_of(&bob));
    let (gw0, gw1) = (&net.gateways[0].metrics_url, &net.gateways[1].metrics_url);

    // `init` published each card and 100 one-time prekeys at its gateway.
    assert_eq!(metric(gw0, "gateway_prekey_published_bundles").await, 2.0);
    assert_eq!(metric(gw1, "gateway_prekey_published_bundles").await, 2.0);
    assert_eq!(metric(gw0, ONE_TIME_STORED).await, 200.0);
    let (alice_receives, alice_lines) = receiver(&alice, &["--json"]);

    // Bob knows only Alice's short address: his client asks her gateway
    // for her bundle through the mixnet, and the session starts from it.
    let sent = send(&bob, &alice_short, "hello from a short address");
    sent_ok(&sent);
    let got = next_json(&alice_lines);
    assert_eq!(got["text"], "hello from a short address");
    assert_eq!(got["short_address"], bob_short.as_str());
    // Carol does the same: she gets another one-time prekey.
    let sent = send(&carol, &alice_short, "and from another");
    sent_ok(&sent);
    assert_eq!(next_json(&alice_lines)["text"], "and from another");

    // Each fetch handed out one key, each key once: two out of the store.
    assert_eq!(
        metric(gw0, "gateway_prekey_requests_total{outcome=\"served\"}").await,
        2.0
    );
    assert_eq!(
        metric(gw0, "gateway_one_time_prekeys_handed_total").await,
        2.0
    );
    // Alice's client refills the supply when it runs low, not before.
    assert_eq!(metric(gw0, ONE_TIME_STORED).await, 200.0);

    // While Alice's `receive` runs, her `send` from a second terminal is
    // handed to it (a second process of hers would take her gateway session
    // from the first): it reaches Bob, by his short address, waiting in his
    // mailbox until he runs his client.
    let sent = send(&alice, &bob_short, "hello back");
    sent_ok(&sent);
    let err = String::from_utf8_lossy(&sent.stderr);
    assert!(err.contains("handed to the client running on"), "{err}");
    // It prints what a `send` of its own would: `ready`, then the id.
    let out = String::from_utf8_lossy(&sent.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"ready"), "{out}");
    assert_eq!(lines.get(1).map(|id| id.len()), Some(32), "{out}");
    drop(alice_receives);
    let (_bob_receives, bob_lines) = receiver(&bob, &["--json"]);
    let got = next_json(&bob_lines);
    assert_eq!(got["text"], "hello back");
    assert_eq!(got["short_address"], alice_short.as_str());

    // (Bob's `receive` runs, and would refuse a second process of his, so
    // Carol writes from here on.)
    // Dora never ran a client since `init`: her short address works all
    // the same, and the message waits in her mailbox.
    let sent = send(&carol, &short_of(&dora), "for later");
    sent_ok(&sent);
    let (_dora_receives, dora_lines) = receiver(&dora, &["--json"]);
    assert_eq!(next_json(&dora_lines)["text"], "for later");

    // An identity the gateway keeps no bundle of: the send fails, saying
    // why and what to do.
    let nobody = ShortAddress {
        identity: IdentityFingerprint([9; 20]),
        gateway: net.gateways[0].id,
    };
    let sent = send(&carol, &nobody.to_string(), "anyone there?");
    assert!(!sent.status.success());
    let err = String::from_utf8_lossy(&sent.stderr);
    assert!(err.contains("gave no bundle"), "{err}");
    assert!(err.contains("address card"), "{err}");
    assert!(metric(gw0, "gateway_prekey_requests_total{outcome=\"unknown\"}").await >= 1.0);

    // The library example, on folders of their own: neither knows more of
    // the other than its short address.
    let [erin, frank] = ["erin", "frank"].map(|n| root.path().join(n));
    on_localnet::init(&net, &erin, 0);
    on_localnet::init(&net, &frank, 1);
    let (to_erin, to_frank) = short_address_example::run(&erin, &frank).await.unwrap();
    assert_eq!(to_erin.short_from().unwrap().to_string(), short_of(&frank));
    assert_eq!(to_frank.short_from().unwrap().to_string(), short_of(&erin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_of_another_identity_served_for_a_short_address_is_refused() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let bob = root.path().join("bob");
    on_localnet::init(&net, &bob, 1);
    let gateway = &net.gateways[0];
    // An identity whose short address is known before it published
    // anything at its gateway.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let victim_short = SessionBook::generate(&mut rng).short_address(gateway.id);

    // Mallory, a client of that gateway, publishes her own (well-signed)
    // bundle under the victim's fingerprint first: the gateway cannot
    // tell, the asker can.
    let keys = SphinxKeyPair::generate(&mut rng);
    let link = QuicGatewayLink::connect(gateway.client_address.unwrap(), gateway.id, &keys)
        .await
        .unwrap();
    let mut mallory = SessionBook::generate(&mut rng);
    let address = ClientAddress {
        client_key: keys.public().to_bytes(),
        gateway: gateway.id,
    };
    let forged = mallory.publication(address).encode();
    assert_ne!(
        IdentityFingerprint::of(&mallory.identity()),
        victim_short.identity
    );
    link.publish_prekeys(victim_short.identity.0, Some(forged), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        metric_reaches(
            &gateway.metrics_url,
            "gateway_prekey_published_bundles",
            1.0
        )
        .await,
        1.0
    );

    let sent = send(&bob, &victim_short.to_string(), "for the victim");
    assert!(!sent.status.success());
    let err = String::from_utf8_lossy(&sent.stderr);
    assert!(err.contains("bundle of another identity"), "{err}");
    // Served once (Mallory uploaded no one-time prekey), refused by the asker.
    assert_eq!(
        metric(
            &gateway.metrics_url,
            "gateway_prekey_requests_total{outcome=\"served_without_one_time\"}"
        )
        .await,
        1.0
    );
    link.close().await;
}
