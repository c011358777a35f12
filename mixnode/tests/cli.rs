//! The `mixnode` binary's start: keys, config, and one-line errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mixnode(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mixnode"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn init(dir: &Path, metrics: &str) {
    let (ok, out, err) = mixnode(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        metrics,
        "--directory-key",
        "11111111111111111111111111111111",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("identity "), "{out}");
}

fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    lines[0]
}

#[test]
fn init_writes_an_owner_only_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "127.0.0.1:0");
    let mode = std::fs::metadata(dir.path().join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(dir.path().join("config.toml").exists());
    let (ok, _, err) = mixnode(&["init", "--dir", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(one_error_line(&err).contains("config.toml"), "{err}");
}

#[test]
fn start_up_errors_are_one_line_naming_the_file_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (ok, _, err) = mixnode(&["run", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(one_error_line(&err).contains("nope.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\nlisten = \"not an address\"\ndata_dir = \".\"\n",
    )
    .unwrap();
    let (ok, _, err) = mixnode(&["run", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    let line = one_error_line(&err);
    assert!(
        line.contains("bad.toml") && line.contains("listen"),
        "{err}"
    );

    // A config whose key file is gone names the key file.
    let node = dir.path().join("node");
    init(&node, "127.0.0.1:0");
    std::fs::remove_file(node.join("identity.key")).unwrap();
    let (ok, _, err) = mixnode(&[
        "run",
        "--config",
        node.join("config.toml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(one_error_line(&err).contains("identity.key"), "{err}");

    // A port in use names the field.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let busy = dir.path().join("busy");
    init(&busy, &port);
    let (ok, _, err) = mixnode(&[
        "run",
        "--config",
        busy.join("config.toml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(one_error_line(&err).contains("metrics.listen"), "{err}");
}
