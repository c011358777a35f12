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
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
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

/// Starts the `localnet` command in a process group of its own, as a shell
/// starts a job: its children join the group, and Ctrl-C reaches them all.
fn start_localnet(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_localnet"))
        .args(args)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(format!("stderr: {line}"));
        }
    });
    (child, rx)
}

/// What a terminal does on Ctrl-C: SIGINT to every process of the job.
fn ctrl_c(child: &Child) {
    kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGINT).unwrap();
}

/// Waits for `child` to exit and returns how long it took.
fn time_exit(child: &mut Child, began: Instant) -> Duration {
    let deadline = began + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "localnet stops on Ctrl-C");
        std::thread::sleep(Duration::from_millis(10));
    }
    began.elapsed()
}

#[test]
fn localnet_runs_the_demo_and_ctrl_c_leaves_no_process_behind() {
    let (mut child, rx) = start_localnet(&["--no-build", "--mean-delay-ms", "10"]);
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

    // Some traffic first, so that links are open when the nodes stop.
    std::thread::sleep(Duration::from_secs(2));
    let began = Instant::now();
    ctrl_c(&child);
    let took = time_exit(&mut child, began);
    assert!(child.wait().unwrap().success());
    eprintln!("Ctrl-C to the prompt: {} ms", took.as_millis());
    assert!(
        took < Duration::from_secs(3),
        "Ctrl-C returns the prompt within 3 s, took {took:?}"
    );
    let stopped: Vec<String> = rx.try_iter().collect();
    assert!(
        stopped.iter().any(|l| l.contains("stopped in")),
        "{stopped:?}"
    );
    assert!(
        !stopped.iter().any(|l| l.contains("killed after")),
        "every node exits by itself: {stopped:?}"
    );
    assert_eq!(
        processes_mentioning(&folder),
        Vec::<u32>::new(),
        "no process left behind"
    );
}

/// Processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: the command may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn ctrl_c_while_the_network_starts_stops_what_has_started() {
    let (mut child, rx) = start_localnet(&["--no-build", "--no-demo", "--mix-per-layer", "3"]);
    // Wait until the directory and two mix nodes run, but not all nodes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let cmdline = loop {
        let running = children_of(child.id())
            .into_iter()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .find(|c| c.contains("/mix1/config.toml"));
        if let Some(cmdline) = running {
            break cmdline;
        }
        assert!(Instant::now() < deadline, "nodes start");
        std::thread::sleep(Duration::from_millis(10));
    };
    let at = cmdline.find("mixnet-localnet-").unwrap();
    let folder = cmdline[at..].split('/').next().unwrap().to_string();
    let began = Instant::now();
    ctrl_c(&child);
    let took = time_exit(&mut child, began);
    let said: Vec<String> = rx.try_iter().collect();
    assert!(
        !said.iter().any(|l| l.starts_with("Ctrl-C")),
        "interrupted before the network was up: {said:?}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(130), "{said:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        processes_mentioning(&folder),
        Vec::<u32>::new(),
        "no process left behind"
    );
}
