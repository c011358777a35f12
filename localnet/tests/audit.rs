//! The audit logs of a real network: after a run across an epoch boundary
//! and a clean stop, every node's and the directory's log verifies with its
//! own binary's `audit verify` and holds the run's administrative events;
//! an edited byte or a removed line makes it fail, naming the line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use localnet::process::binary;
use localnet::{LocalNet, NetworkSpec, NodeRole};

fn verify(binary_name: &str, log: &Path) -> Output {
    Command::new(binary(binary_name))
        .args(["audit", "verify"])
        .arg(log)
        .output()
        .unwrap()
}

/// The `event` of each record of the log at `path`.
fn events(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["event"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn every_log_of_a_run_verifies_and_an_edit_is_named() {
    let mut net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 1,
        epoch_secs: 3,
        lambda_m: 0.0,
        ..NetworkSpec::default()
    })
    .unwrap();
    // Past at least one epoch boundary: every node rotates its Sphinx key.
    std::thread::sleep(Duration::from_secs(5));
    let mut nodes = Vec::new();
    for node in net.mixnodes.iter_mut().chain(net.gateways.iter_mut()) {
        assert!(node.process.stop(Duration::from_secs(5)));
        let name = match node.role {
            NodeRole::Mix => "mixnode",
            NodeRole::Gateway => "gateway",
        };
        nodes.push((name, node.dir.join("audit.jsonl")));
    }
    assert!(net.stop_directory());
    nodes.push(("directory", net.authority_dir(0).join("audit.jsonl")));

    for (name, log) in &nodes {
        let out = verify(name, log);
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(printed.contains("chain intact"), "{name}: {printed}");
        let events = events(log);
        assert_eq!(
            events[..3],
            ["key_created", "start", "config_loaded"],
            "{name}"
        );
        assert_eq!(events.last().unwrap(), "stop", "{name}: {events:?}");
        let wanted = if *name == "directory" {
            "consensus_signed"
        } else {
            "key_rotated"
        };
        assert!(events.iter().any(|e| e == wanted), "{name}: {events:?}");
    }

    // One byte of the mix node's third record changed; then its second
    // line removed.
    let (name, log) = &nodes[0];
    let text = std::fs::read_to_string(log).unwrap();
    let third = text.lines().take(2).map(|l| l.len() + 1).sum::<usize>();
    let at = third + text.lines().nth(2).unwrap().find("\"sha256\":\"").unwrap() + 10;
    let mut edited = text.clone().into_bytes();
    edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(log, &edited).unwrap();
    let out = verify(name, log);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("audit.jsonl: line 3: its hash does not match"),
        "{message}"
    );
    let without: String = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(log, without).unwrap();
    let out = verify(name, log);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("line 2: seq 2 where 1 was expected"),
        "{message}"
    );
}

#[test]
fn voting_authorities_record_their_votes_and_signatures() {
    let mut net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 1,
        epoch_secs: 12,
        round_secs: 1,
        authorities: 3,
        lambda_m: 0.0,
        ..NetworkSpec::default()
    })
    .unwrap();
    // A few rounds.
    std::thread::sleep(Duration::from_secs(3));
    let logs: Vec<_> = (0..3)
        .map(|i| net.authority_dir(i).join("audit.jsonl"))
        .collect();
    net.stop();
    for log in &logs {
        let out = verify("directory", log);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = events(log);
        assert_eq!(events[..3], ["key_created", "start", "config_loaded"]);
        for wanted in ["vote_published", "consensus_signed", "stop"] {
            assert!(events.iter().any(|e| e == wanted), "{wanted}: {events:?}");
        }
    }
}
