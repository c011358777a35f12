//! The `directory` binary's audit log, as a real process writes it: a run
//! leaves a chain that `directory audit verify` accepts; one edited byte or
//! one removed line makes it fail naming the line, and `run` refuses to
//! continue such a log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    missing_docs
)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use directory::DirectoryClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use protocol::NodeId;
use sha2::{Digest, Sha256};

fn directory() -> Command {
    Command::new(env!("CARGO_BIN_EXE_directory"))
}

/// The server process, killed however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn verify(log: &Path) -> Output {
    directory()
        .args(["audit", "verify"])
        .arg(log)
        .output()
        .unwrap()
}

/// `directory run` until it is ready; returns the process and its URL.
fn start(config: &Path) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(
        directory()
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let url = line.split_whitespace().last().unwrap().to_string();
    (child, url)
}

/// Sends SIGTERM and waits (at most 10 s) for a clean exit; returns stderr.
fn stop(mut child: KillOnDrop) -> String {
    let pid = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    stderr
}

#[test]
fn a_run_leaves_a_chain_that_verifies_and_any_edit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    ok(&directory()
        .args([
            "init",
            "--listen",
            "127.0.0.1:0",
            "--epoch-length-secs",
            "5",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap());
    let config = dir.path().join("directory.toml");
    let log = dir.path().join("audit.jsonl");
    let id = ok(&directory()
        .args(["id", "--config"])
        .arg(&config)
        .output()
        .unwrap());
    let id = NodeId::from_base58(id.trim()).unwrap();

    // Serve, have a topology signed (the only authority signs on request),
    // and stop with SIGTERM.
    let (child, url) = start(&config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = DirectoryClient::new(&url, id, None).unwrap();
        tokio::time::timeout(Duration::from_secs(5), client.refresh())
            .await
            .unwrap()
            .unwrap();
    });
    let stderr = stop(child);
    // `--log-format json`: every line of the operational log is an object.
    assert!(stderr.lines().count() >= 2, "{stderr}");
    for line in stderr.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }

    // The chain verifies, and holds the events of the run in order.
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events[..3], ["key_created", "start", "config_loaded"]);
    assert_eq!(events.last(), Some(&"stop"));
    assert!(
        events[3..events.len() - 1]
            .iter()
            .all(|e| *e == "consensus_signed")
    );
    assert!(events.contains(&"consensus_signed"), "{events:?}");
    let printed = ok(&verify(&log));
    let expected = format!("{} records, chain intact", records.len());
    assert!(printed.contains(&expected), "{printed}");
    for (seq, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], seq);
        assert!(record["time"].as_str().unwrap().ends_with('Z'), "{record}");
    }
    let fingerprint = hex::encode(Sha256::digest(id.as_bytes()));
    assert_eq!(records[0]["fingerprint"], fingerprint.as_str());
    assert_eq!(records[1]["identity"], fingerprint.as_str());
    assert_eq!(records[1]["version"], env!("CARGO_PKG_VERSION"));
    let config_bytes = std::fs::read(&config).unwrap();
    assert_eq!(
        records[2]["sha256"],
        hex::encode(Sha256::digest(&config_bytes)).as_str()
    );
    // The config's path, never its content.
    assert!(
        !text.contains("listen") && !text.contains("127.0.0.1"),
        "{text}"
    );

    // One byte changed in a middle record: verify fails and names it.
    let lines: Vec<&str> = text.lines().collect();
    let mut edited = text.clone().into_bytes();
    let at = lines[0].len() + 1 + lines[1].len() + 1 + lines[2].find("\"sha256\":\"").unwrap() + 10;
    edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&log, &edited).unwrap();
    let out = verify(&log);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("audit.jsonl: line 3:"), "{message}");
    assert!(message.contains("edited"), "{message}");

    // A line removed: verify names the gap.
    let without: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&log, &without).unwrap();
    let out = verify(&log);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("line 2: seq 2 where 1 was expected"),
        "{message}"
    );

    // `run` refuses to continue a log that does not verify, and leaves it.
    let out = directory()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("audit.jsonl: line 2:") && message.contains("move it aside"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), without);

    // The original log, put back, is continued by the next run.
    std::fs::write(&log, &text).unwrap();
    let (child, _) = start(&config);
    stop(child);
    let printed = ok(&verify(&log));
    let expected = format!("{} records, chain intact", records.len() + 3);
    assert!(printed.contains(&expected), "{printed}");
}
