//! Child processes that never outlive their owner.
//!
//! A [`NodeProcess`] is one binary of the network started with piped output.
//! It is ready when it prints its `ready` line; until then its output is
//! collected so that a process that dies at start can say why. Dropping it
//! sends SIGTERM, waits briefly for a graceful exit, then SIGKILLs: a test or
//! a Ctrl-C never leaves a process behind.

// Supervising processes means waiting on the real clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::LocalnetError;

/// Where the network's binaries are: `$MIXNET_BIN_DIR`, or beside the running executable.
pub fn binary(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("MIXNET_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test executables live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Runs `binary args...` to completion and returns its standard output.
pub fn run_to_completion(binary: &Path, args: &[&str]) -> Result<String, LocalnetError> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .map_err(|e| LocalnetError::Spawn(binary.display().to_string(), e.to_string()))?;
    if !out.status.success() {
        return Err(LocalnetError::Failed(
            binary.display().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running node of the network.
pub struct NodeProcess {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl NodeProcess {
    /// Starts `binary args...`; its stderr goes to `log_file`.
    pub fn spawn(
        name: &str,
        binary: &Path,
        args: &[&str],
        log_file: &Path,
    ) -> Result<Self, LocalnetError> {
        let log = std::fs::File::create(log_file)
            .map_err(|e| LocalnetError::Spawn(log_file.display().to_string(), e.to_string()))?;
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| LocalnetError::Spawn(binary.display().to_string(), e.to_string()))?;
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(NodeProcess {
            name: name.to_string(),
            child,
            lines,
            log: Vec::new(),
        })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line starting with `prefix` on stdout and returns it.
    pub fn wait_for_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, LocalnetError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) => self.log.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(LocalnetError::NotReady(
                        self.name.clone(),
                        "timed out".into(),
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(LocalnetError::NotReady(
                        self.name.clone(),
                        format!("exited ({status})"),
                    ));
                }
            }
        }
    }

    /// Lines printed on stdout so far that no wait consumed.
    pub fn drain_lines(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.log);
        out.extend(self.lines.try_iter());
        out
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace`, then kills
    /// it. Returns whether it exited by itself with success.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if !self.is_running() {
            return false;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(3));
    }
}
