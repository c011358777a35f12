#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `gateway init` and the start-up errors of `gateway run`, without a network.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn init_writes_an_owner_only_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gw");
    let out = gateway()
        .args(["init", "--dir"])
        .arg(&gw)
        .args(["--directory-key", "KEY"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(gw.join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = std::fs::read_to_string(gw.join("config.toml")).unwrap();
    assert!(config.contains("[clients]") && config.contains("retention_secs = 604800"));
    let again = gateway().args(["init", "--dir"]).arg(&gw).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

/// Runs `gateway run` on `config` and returns its one-line error.
fn start_error(config: &std::path::Path) -> String {
    let out = gateway()
        .args(["run", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn start_up_errors_are_one_line_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gw");
    let out = gateway()
        .args(["init", "--dir"])
        .arg(&gw)
        .args(["--directory-key", "KEY"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = gw.join("config.toml");
    let good = std::fs::read_to_string(&config).unwrap();

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        good.replace("retention_secs = 604800", "retention_secs = \"week\""),
    )
    .unwrap();
    let e = start_error(&bad);
    assert!(
        e.contains("bad.toml") && e.contains("retention_secs"),
        "{e}"
    );

    std::fs::write(&bad, good.replace("[clients]", "[clients]\nlisen = \"x\"")).unwrap();
    let e = start_error(&bad);
    assert!(e.contains("bad.toml") && e.contains("lisen"), "{e}");

    std::fs::write(
        &bad,
        good.replace("public_key = \"KEY\"", "public_key = \"\""),
    )
    .unwrap();
    let e = start_error(&bad);
    assert!(e.contains("directory.public_key"), "{e}");

    std::fs::remove_file(gw.join("identity.key")).unwrap();
    let e = start_error(&config);
    assert!(e.contains("identity.key"), "{e}");

    let e = start_error(&dir.path().join("missing.toml"));
    assert!(e.contains("missing.toml"), "{e}");
}
