//! `mixnet-client` against a network of real processes (directory, mix
//! nodes, gateways) on loopback. Needs the `directory`, `mixnode` and
//! `gateway` binaries built beside the test (`cargo build --bins`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Real processes run on the real clock: deadlines for their start-up.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use localnet::{LocalNet, NetworkSpec};

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");

/// Runs `mixnet-client init` until the directory lists `gateway` (it
/// registers shortly after it starts); returns the printed address.
fn init(net: &LocalNet, dir: &std::path::Path, gateway: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(CLIENT)
            .args(["init", "--dir", dir.to_str().unwrap()])
            .args(["--directory", &net.directory_url])
            .args(["--directory-key", &net.directory_key.to_base58()])
            .args(["--gateway", gateway])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap().trim().to_string();
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(Instant::now() < deadline, "init never succeeded: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lines of a child's stdout, through a channel (so reads can time out).
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    lines_from(child.stdout.take().unwrap())
}

/// Lines read from `pipe`, through a channel.
fn lines_from(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    rx
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `secs` for `child` to exit; returns its status.
fn exit_within(child: &mut KillOnDrop, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cli_send_and_receive_through_real_gateways_and_mix_nodes() {
    let mut net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (root.path().join("alice"), root.path().join("bob"));
    init(&net, &alice_dir, &net.gateways[0].id.to_base58());
    let bob = init(&net, &bob_dir, &net.gateways[1].id.to_base58());

    let mut receiver = KillOnDrop(
        Command::new(CLIENT)
            .args([
                "receive",
                "--dir",
                bob_dir.to_str().unwrap(),
                "--count",
                "1",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut receiver.0);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );

    let sent = Command::new(CLIENT)
        .args(["send", "--dir", alice_dir.to_str().unwrap(), "--to", &bob])
        .arg("hello through the mixnet")
        .output()
        .unwrap();
    let progress = String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "{progress}");
    // `ready`, then the message's id.
    let stdout = String::from_utf8_lossy(&sent.stdout).to_string();
    let (ready, id) = stdout.trim().split_once('\n').unwrap();
    assert_eq!(ready, "ready");
    assert_eq!(id.len(), 32, "{stdout}");
    // The first message of a session carries the hybrid handshake (1.2 KB)
    // beside three reply SURBs: two fragments.
    assert!(progress.contains("waiting for ack 0/2"), "{progress}");
    assert!(progress.contains("delivered"), "{progress}");

    // `TIME SENDER: TEXT`; Bob does not know Alice: her short address.
    let line = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(line.ends_with(": hello through the mixnet"), "{line}");
    assert!(exit_within(&mut receiver, 10, "receive --count 1").success());

    // Carol only ran `init` (which registered her at her gateway): mail sent
    // to her card before she ever connected waits for her first `receive`.
    let carol_dir = root.path().join("carol");
    let carol = init(&net, &carol_dir, &net.gateways[1].id.to_base58());
    let sent = Command::new(CLIENT)
        .args(["send", "--dir", alice_dir.to_str().unwrap(), "--to", &carol])
        .arg("written before you came")
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let mut carol_receives = KillOnDrop(
        Command::new(CLIENT)
            .args(["receive", "--dir", carol_dir.to_str().unwrap()])
            .args(["--count", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let carol_lines = lines_of(&mut carol_receives.0);
    assert_eq!(
        carol_lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );
    let line = carol_lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(line.ends_with(": written before you came"), "{line}");
    assert!(exit_within(&mut carol_receives, 10, "carol's receive").success());

    // Two `chat`s: lines out, lines in.
    let alice = init(
        &net,
        &root.path().join("alice2"),
        &net.gateways[0].id.to_base58(),
    );
    let chat = |dir: &std::path::Path, to: &str| {
        KillOnDrop(
            Command::new(CLIENT)
                .args(["chat", "--dir", dir.to_str().unwrap(), "--to", to])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let mut alice_chat = chat(&root.path().join("alice2"), &bob);
    let mut bob_chat = chat(&bob_dir, &alice);
    let alice_lines = lines_of(&mut alice_chat.0);
    let bob_lines = lines_of(&mut bob_chat.0);
    for lines in [&alice_lines, &bob_lines] {
        assert_eq!(
            lines.recv_timeout(Duration::from_secs(20)).unwrap(),
            "ready"
        );
    }
    let mut alice_in = alice_chat.0.stdin.take().unwrap();
    let mut bob_in = bob_chat.0.stdin.take().unwrap();
    writeln!(alice_in, "hi bob").unwrap();
    let line = bob_lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(line.ends_with(": hi bob"), "{line}");
    writeln!(bob_in, "hi alice").unwrap();
    let line = alice_lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(line.ends_with(": hi alice"), "{line}");
    // End of stdin: each exits once what it sent is delivered.
    drop((alice_in, bob_in));
    for child in [&mut alice_chat, &mut bob_chat] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chat did not exit at the end of stdin"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // Bob's gateway goes down: a send to him fails, in about 6 tries'
    // round trips (docs/client.md), and says what to check.
    net.kill_gateway(1);
    let started = Instant::now();
    let sent = Command::new(CLIENT)
        .args(["send", "--dir", alice_dir.to_str().unwrap(), "--to", &bob])
        .arg("anyone there?")
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&sent.stderr);
    assert!(!sent.status.success());
    assert!(
        err.contains("no acknowledgement from the recipient's gateway after 6 tries")
            && err.contains("down or unreachable"),
        "{err}"
    );
    assert!(took < Duration::from_secs(60), "failed after {took:?}");

    // And `init` at a gateway that is down makes no card, and says why.
    let late_dir = root.path().join("late");
    let out = Command::new(CLIENT)
        .args(["init", "--dir", late_dir.to_str().unwrap()])
        .args(["--directory", &net.directory_url])
        .args(["--directory-key", &net.directory_key.to_base58()])
        .args(["--gateway", &net.gateways[1].id.to_base58()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no card printed");
    assert!(
        err.contains("cannot register at gateway") && err.contains("No address card was made"),
        "{err}"
    );
    assert!(!late_dir.join("sphinx.key").exists());
}

/// `receive --dir DIR` as a child with both pipes read: stdout after its
/// `ready`, and stderr.
fn receive_logged(dir: &std::path::Path) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = KillOnDrop(
        Command::new(CLIENT)
            .args(["receive", "--dir", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = lines_of(&mut child.0);
    assert_eq!(
        stdout.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );
    let stderr = lines_from(child.0.stderr.take().unwrap());
    (child, stderr)
}

#[test]
fn a_second_client_of_one_address_is_refused_here_and_not_fought_from_elsewhere() {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 1,
        ..NetworkSpec::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let alice = root.path().join("alice");
    init(&net, &alice, &net.gateways[0].id.to_base58());
    // A copy of the folder, as if carried to a second machine: another
    // lock file, the same address.
    let copy = root.path().join("alice-copy");
    let copied = Command::new("cp")
        .args(["-r", alice.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());

    let (first, first_log) = receive_logged(&alice);
    // On this machine a second process of the folder is refused at once,
    // naming the first.
    let second = Command::new(CLIENT)
        .args(["receive", "--dir", alice.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let holder = format!("in use by another mixnet-client (process {})", first.0.id());
    assert!(err.contains(&holder), "{err}");

    // The first listens for `send` and `recall` of other processes on a
    // socket only the folder's owner may open; a request it does not know
    // is answered with a refusal, and the client goes on.
    let socket = alice.join("client.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    for stranger in ["not json\n", "{\"delete\":{\"id\":\"x\"}}\n"] {
        let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        conn.write_all(stranger.as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(conn).read_line(&mut reply).unwrap();
        assert!(reply.starts_with("{\"failed\":\"not a request"), "{reply}");
    }

    // The copy elsewhere takes the gateway session: the first gives way
    // and waits the longest backoff (15 to 30 s) before it dials again,
    // rather than taking the session back.
    let (_copy, copy_log) = receive_logged(&copy);
    let deadline = Instant::now() + Duration::from_secs(10);
    let gave_way = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = first_log.recv_timeout(left).unwrap();
        if line.contains("another client of this address took the gateway session") {
            break line;
        }
    };
    assert!(gave_way.contains("trying again in"), "{gave_way}");
    std::thread::sleep(Duration::from_secs(5));
    let first_more: Vec<String> = first_log.try_iter().collect();
    let copy_lines: Vec<String> = copy_log.try_iter().collect();
    let lost = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("session lost") || l.contains("took the gateway session"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(lost(&first_more), Vec::<String>::new());
    assert_eq!(lost(&copy_lines), Vec::<String>::new());
    drop(first);
}
