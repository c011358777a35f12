//! Contacts, short addresses and the CLI's output through real processes
//! (directory, mix nodes, gateways on loopback): `receive --json`, names,
//! safety numbers, `send --to NAME`, and the library examples. Needs the
//! node binaries built (`cargo build --bins`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(clippy::disallowed_methods)]

#[path = "../examples/contacts.rs"]
mod contacts_example;
mod on_localnet;
#[path = "../examples/who_wrote.rs"]
mod who_wrote_example;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use client::ShortAddress;
use localnet::{LocalNet, NetworkSpec};
use on_localnet::{cli, failed, ok, receiver, short_of};

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `send`: its stdout is `ready`, then the message id (32 hex digits).
fn send(dir: &Path, to: &str, stdin: &[u8], args: &[&str]) -> String {
    let mut child = Command::new(CLIENT)
        .args(["send", "--dir", dir.to_str().unwrap(), "--to", to])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = ok(child.wait_with_output().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "ready");
    assert_eq!(lines[1].len(), 32, "{out}");
    assert!(lines[1].bytes().all(|b| b.is_ascii_hexdigit()));
    lines[1].to_string()
}

#[test]
fn names_short_addresses_json_and_safety_numbers_through_real_processes() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| root.path().join(n));
    let alice_card = on_localnet::init(&net, &alice, 0);
    let bob_card = on_localnet::init(&net, &bob, 1);
    on_localnet::init(&net, &carol, 0);
    let (alice_short, bob_short, carol_short) =
        (short_of(&alice), short_of(&bob), short_of(&carol));
    // Short: 78 characters instead of a card's 2 300, with the gateway in it.
    assert!(alice_short.len() <= 80, "{alice_short}");
    assert!(alice_card.to_string().len() > 1800);
    let parsed: ShortAddress = bob_short.parse().unwrap();
    assert_eq!(parsed.gateway, net.gateways[1].id);

    // Alice names Bob from his card; Bob names Alice from her short address.
    let added = ok(cli(
        &alice,
        &["contacts", "add", "bob", &bob_card.to_string()],
    ));
    assert_eq!(added.trim(), format!("bob {bob_short}"));
    ok(cli(&bob, &["contacts", "add", "alice", &alice_short]));
    assert_eq!(
        ok(cli(&bob, &["contacts", "list"])).trim(),
        format!("alice {alice_short} unmet")
    );
    // Bob knows only Alice's fingerprint: no safety number yet, and says why.
    let err = failed(cli(&bob, &["contacts", "verify", "alice"]));
    assert!(err.contains("only the fingerprint"), "{err}");
    // Parse errors say what is wrong.
    let mut typo = alice_short.clone().into_bytes();
    typo.swap(10, 11);
    if typo[10] == typo[11] {
        typo.swap(20, 22);
    }
    let err = failed(cli(
        &bob,
        &["contacts", "add", "al", std::str::from_utf8(&typo).unwrap()],
    ));
    assert!(err.contains("checksum does not match"), "{err}");
    let err = failed(cli(&bob, &["contacts", "add", "al", &alice_short[..60]]));
    assert!(err.contains("characters are missing or extra"), "{err}");
    let err = failed(cli(&bob, &["contacts", "add", "2al", &alice_short]));
    assert!(err.contains("must start with a letter"), "{err}");
    let err = failed(cli(&bob, &["contacts", "add", "alicia", &alice_short]));
    assert!(err.contains("already, named alice"), "{err}");

    // Alice writes by name; Bob's `receive --json` shows her under her name.
    let (mut bob_receives, lines) = receiver(&bob, &["--json", "--count", "2"]);
    let before = now();
    let first = send(&alice, "bob", b"hello bob", &[]);
    let binary = send(&alice, "bob", &[0xff, 0x00, 0x01], &["--lifetime", "600"]);
    let mut got = Vec::new();
    for _ in 0..2 {
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        got.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    got.sort_by_key(|m| m["id"] != first.as_str());
    let (text, bytes) = (&got[0], &got[1]);
    assert_eq!(text["id"], first.as_str());
    assert_eq!(text["sender"], "alice");
    assert_eq!(text["contact"], "alice");
    assert_eq!(text["short_address"], alice_short.as_str());
    assert_eq!(text["text"], "hello bob");
    assert!(text["expires"].is_null());
    let time = text["time"].as_u64().unwrap();
    assert!(time >= before && time <= now(), "{text}");
    assert_eq!(bytes["id"], binary.as_str());
    assert!(bytes.get("text").is_none());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bytes["bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, [0xff, 0x00, 0x01]);
    let expires = bytes["expires"].as_u64().unwrap();
    assert!(expires >= before + 600 && expires <= now() + 601, "{bytes}");
    assert!(bob_receives.0.wait().unwrap().success());

    // Both now hold each other's identity: the same safety number.
    let alice_number = ok(cli(&alice, &["contacts", "verify", "bob"]));
    let bob_number = ok(cli(&bob, &["contacts", "verify", "alice"]));
    assert_eq!(alice_number, bob_number);
    let digits: String = alice_number.split_whitespace().collect();
    assert_eq!(digits.len(), 60);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        ok(cli(&bob, &["contacts", "list"])).trim(),
        format!("alice {alice_short} reachable")
    );

    // Bob answers by name (her address came with her messages); Alice reads
    // `TIME bob: TEXT`. Carol, unknown to Alice, writes to Alice's card and
    // is shown under her short address.
    let (mut alice_receives, lines) = receiver(&alice, &["--count", "2"]);
    send(&bob, "alice", b"hi alice", &[]);
    send(&carol, &alice_card.to_string(), b"who am I?", &[]);
    let mut seen: Vec<String> = (0..2)
        .map(|_| lines.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    seen.sort_by_key(|l| !l.contains(" bob: "));
    for (line, sender, text) in [
        (&seen[0], "bob", "hi alice"),
        (&seen[1], carol_short.as_str(), "who am I?"),
    ] {
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert_eq!(rest, format!("{sender}: {text}"));
    }
    assert!(alice_receives.0.wait().unwrap().success());

    // A short address whose identity nobody told Carol about: her client
    // fetches its bundle from Bob's gateway (Bob connected, so published
    // it) and the message goes.
    send(&carol, &bob_short, b"x", &[]);
    let err = failed(cli(&carol, &["send", "--to", "nobody", "x"]));
    assert!(err.contains("no contact named nobody"), "{err}");

    // Removing a name: messages are shown under the short address again.
    ok(cli(&alice, &["contacts", "remove", "bob"]));
    assert_eq!(ok(cli(&alice, &["contacts", "list"])), "");

    // The library examples, on folders of their own.
    let [dave, erin] = ["dave", "erin"].map(|n| root.path().join(n));
    on_localnet::init(&net, &dave, 0);
    let erin_card = on_localnet::init(&net, &erin, 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen = runtime
        .block_on(contacts_example::run(&dave, &erin, &erin_card))
        .unwrap();
    assert_eq!(seen.sender, "alice");
    assert_eq!(seen.alice_number, seen.bob_number);
    let message = runtime
        .block_on(who_wrote_example::run(&dave, &erin))
        .unwrap();
    assert_eq!(message.sender(), "alice", "erin named dave `alice`");
    assert_eq!(message.from, Some(alice_of(&dave)));
    let expires = message.expires_at.unwrap();
    let lives = expires.duration_since(message.received_at).unwrap();
    assert!(
        lives <= Duration::from_secs(601) && lives >= Duration::from_secs(540),
        "{lives:?}"
    );
}

/// The plain address of the client of `dir`.
fn alice_of(dir: &Path) -> protocol::ClientAddress {
    ok(cli(dir, &["address", "--plain"]))
        .trim()
        .parse()
        .unwrap()
}
