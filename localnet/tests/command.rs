//! The `localnet` command: a network, the demo conversation, and Ctrl-C
//! that leaves no process behind.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            found.push(pid);
        }
    }
    found
}

#[test]
fn localnet_runs_the_demo_and_ctrl_c_leaves_no_process_behind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_localnet"))
        .args(["--no-build", "--mean-delay-ms", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("localnet prints its summary");
        let done = line.starts_with("Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(text.contains("mix5"), "{text}");
    assert!(text.contains("gateway1"), "{text}");
    assert!(
        text.contains("alice → bob   \"Hello Bob!"),
        "the demo ran: {text}"
    );
    assert!(
        text.contains("bob → alice   \"Hello Alice!"),
        "the demo ran: {text}"
    );
    let folder = lines
        .iter()
        .find_map(|l| l.strip_prefix("folder"))
        .map(|f| f.trim().to_string())
        .unwrap();
    assert!(
        processes_mentioning(&folder).len() >= 9,
        "directory, 6 mixes, 2 gateways"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "localnet stops on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        processes_mentioning(&folder),
        Vec::<u32>::new(),
        "no process left behind"
    );
}
