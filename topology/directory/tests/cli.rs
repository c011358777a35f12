//! The `directory` binary: init, start-up errors, and serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use directory::DirectoryClient;
use protocol::NodeId;

fn directory() -> Command {
    Command::new(env!("CARGO_BIN_EXE_directory"))
}

/// The server process, killed however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn init_writes_an_owner_only_key_and_a_config_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = directory()
        .args(["init", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.path().join("directory.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    let again = directory()
        .args(["init", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success(), "init never overwrites");

    let config = dir.path().join("directory.toml");
    let id = directory()
        .args(["id", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let id = NodeId::from_base58(String::from_utf8(id.stdout).unwrap().trim()).unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(&id.to_base58()),
        "init prints the key to pin: {printed}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");

    // A test network's setup: any port, short epochs, a fixed genesis.
    let dir = tempfile::tempdir().unwrap();
    let out = directory()
        .args([
            "init",
            "--listen",
            "127.0.0.1:0",
            "--epoch-length-secs",
            "5",
        ])
        .args(["--genesis-unix-secs", "1700000000", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("directory.toml");
    let id = directory()
        .args(["id", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let id = NodeId::from_base58(String::from_utf8(id.stdout).unwrap().trim()).unwrap();

    // Serve on a free port, fetch a verified topology, then stop the process.
    let mut child = KillOnDrop(
        directory()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
    let line = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let url = line.split_whitespace().last().unwrap().to_string();
    assert!(line.contains(&id.to_base58()), "{line}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topology = runtime.block_on(async {
        let client = DirectoryClient::new(&url, id, None).unwrap();
        tokio::time::timeout(Duration::from_secs(5), client.refresh())
            .await
            .unwrap()
    });
    drop(child);
    let topology = topology.unwrap();
    assert!(topology.all_peer_ids().is_empty());
    assert_eq!(topology.params.mean_delay, Duration::from_millis(50));
    assert_eq!(topology.params.epoch_length, Duration::from_secs(5));
    assert_eq!(topology.params.genesis_unix_secs, 1_700_000_000);
}

#[test]
fn start_up_errors_are_one_line_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        directory()
            .args(["init", "--dir"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success()
    );
    let config = dir.path().join("directory.toml");
    let text = std::fs::read_to_string(&config).unwrap();

    let run = |config: &std::path::Path| {
        let out = directory()
            .args(["run", "--config"])
            .arg(config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("directory:"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        lines[0].to_string()
    };

    std::fs::write(
        &config,
        text.replace("mean_delay_ms = 50", "mean_delay_ms = \"fast\""),
    )
    .unwrap();
    let e = run(&config);
    assert!(
        e.contains("directory.toml") && e.contains("mean_delay_ms"),
        "{e}"
    );

    std::fs::write(&config, text.replace("127.0.0.1:8080", "192.0.2.1:8080")).unwrap();
    let e = run(&config);
    assert!(
        e.contains("directory.toml") && e.contains("`listen`"),
        "{e}"
    );

    std::fs::write(&config, &text).unwrap();
    std::fs::remove_file(dir.path().join("directory.key")).unwrap();
    let e = run(&config);
    assert!(
        e.contains("directory.key") && e.contains("cannot read key file"),
        "{e}"
    );

    let e = run(&dir.path().join("missing.toml"));
    assert!(e.contains("missing.toml"), "{e}");
}

/// Runs `directory` with `args`; (success, stdout, stderr).
fn run_directory(args: &[&str]) -> (bool, String, String) {
    let out = directory().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_the_authorities_section_from_flags_and_names_a_typo() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<String> = (0..3)
        .map(|i| root.path().join(format!("a{i}")).display().to_string())
        .collect();
    let keys: Vec<String> = dirs
        .iter()
        .map(|d| {
            let (ok, out, err) = run_directory(&["key", "--dir", d]);
            assert!(ok, "{err}");
            out.trim()
                .strip_prefix("directory key: ")
                .unwrap()
                .to_string()
        })
        .collect();
    // `key` again keeps the key.
    let (_, again, _) = run_directory(&["key", "--dir", &dirs[0]]);
    assert!(again.contains(&keys[0]));
    let flags: Vec<String> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, k)| {
            [
                "--authority".to_string(),
                format!("http://10.0.0.{i}:8080,{k}"),
            ]
        })
        .collect();
    let mut args = vec!["init", "--dir", &dirs[0], "--round-secs", "30"];
    args.extend(flags.iter().map(String::as_str));
    args.extend(["--authority-threshold", "3"]);
    let (ok, out, err) = run_directory(&args);
    assert!(ok, "{err}");
    assert!(
        out.contains(&keys[0]),
        "init keeps the key made by `key`: {out}"
    );
    let config = directory::config::DirectoryConfig::load(
        &std::path::Path::new(&dirs[0]).join("directory.toml"),
    )
    .unwrap();
    let set = config.authority_set().unwrap();
    assert_eq!((set.len(), set.threshold, config.round_secs), (3, 3, 30));

    // A typo in a key, a URL without its scheme, a threshold of half the
    // set, and a set without this directory: each a clear error, no config.
    let bad_key = format!("http://10.0.0.1:8080,{}x", keys[1]);
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--authority", &bad_key], "not an authority key"),
        (
            vec!["--authority", "10.0.0.1:8080,abc"],
            "not an authority URL",
        ),
        (
            [
                flags.iter().map(String::as_str).collect::<Vec<_>>(),
                vec!["--authority-threshold", "1"],
            ]
            .concat(),
            "threshold 1 of 3",
        ),
        // Every authority but this one (the second, whose folder is used).
        (
            flags[..2]
                .iter()
                .chain(&flags[4..])
                .map(String::as_str)
                .collect(),
            "is not listed",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["init", "--dir", &dirs[1]];
        args.extend(extra);
        let (ok, _, err) = run_directory(&args);
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !std::path::Path::new(&dirs[1])
                .join("directory.toml")
                .exists()
        );
    }
}
