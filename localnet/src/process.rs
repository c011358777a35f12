//! Child processes that never outlive their owner.
//!
//! A [`NodeProcess`] is one binary of the network started with piped output.
//! It is ready when it prints its `ready` line; until then its output is
//! collected so that a process that dies at start can say why. Dropping it
//! sends SIGTERM, waits briefly for a graceful exit, then SIGKILLs: a test or
//! a Ctrl-C never leaves a process behind.
//!
//! [`stop_all`] stops many at once: SIGTERM to all, then one wait for all,
//! so a network stops in the time of its slowest node, not in the sum of
//! them. Every child this module starts is also listed in one table, so that
//! [`stop_everything`] can stop them from another thread (Ctrl-C while the
//! network is still starting) and refuse any new one from then on.

// Supervising processes means waiting on the real clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::LocalnetError;

/// How long a node has to exit after SIGTERM before it is killed. A node
/// exits within a second; the rest is room for a loaded machine.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Set by [`stop_everything`]: no process starts after it.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Children started here and not reaped yet. A child is reaped with this
/// lock held, so a pid in the table is never one the system has reused.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<i32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pid_of(child: &Child) -> Option<i32> {
    i32::try_from(child.id()).ok()
}

/// Starts `command`, listed in the table of live children; refused once
/// [`stop_everything`] has run.
fn spawn_listed(command: &mut Command, what: &str) -> Result<Child, LocalnetError> {
    let mut live = live();
    if STOPPING.load(Ordering::Acquire) {
        return Err(LocalnetError::Stopping);
    }
    let child = command
        .spawn()
        .map_err(|e| LocalnetError::Spawn(what.to_string(), e.to_string()))?;
    if let Some(pid) = pid_of(&child) {
        live.insert(pid);
    }
    Ok(child)
}

/// Whether [`stop_everything`] has run.
pub fn is_stopping() -> bool {
    STOPPING.load(Ordering::Acquire)
}

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

/// Runs `command` to completion, capturing its output; the child is listed
/// while it runs, so [`stop_everything`] stops it too.
pub fn output(command: &mut Command) -> Result<Output, LocalnetError> {
    let what = command.get_program().to_string_lossy().into_owned();
    let child = spawn_listed(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        &what,
    )?;
    let pid = pid_of(&child);
    let out = child.wait_with_output();
    if let Some(pid) = pid {
        live().remove(&pid);
    }
    out.map_err(|e| LocalnetError::Spawn(what, e.to_string()))
}

/// Runs `command` to completion with the terminal as its output; listed like [`output`].
pub fn status(command: &mut Command) -> Result<ExitStatus, LocalnetError> {
    let what = command.get_program().to_string_lossy().into_owned();
    let mut child = spawn_listed(command, &what)?;
    let pid = pid_of(&child);
    let status = child.wait();
    if let Some(pid) = pid {
        live().remove(&pid);
    }
    status.map_err(|e| LocalnetError::Spawn(what, e.to_string()))
}

/// Runs `binary args...` to completion and returns its standard output.
pub fn run_to_completion(binary: &Path, args: &[&str]) -> Result<String, LocalnetError> {
    let out = output(Command::new(binary).args(args))?;
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
    /// How it exited, once reaped.
    exit: Option<ExitStatus>,
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
        let mut child = spawn_listed(
            Command::new(binary)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log)),
            &binary.display().to_string(),
        )?;
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
            exit: None,
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
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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
                    // Its output closed: it is exiting, or has exited.
                    let deadline = Instant::now() + Duration::from_secs(1);
                    while self.poll_exit().is_none() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let status = self.exit.map(|s| s.to_string()).unwrap_or_default();
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
        self.poll_exit().is_none()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let mut live = live();
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        if let Some(pid) = pid_of(&self.child) {
            live.remove(&pid);
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace`, then kills
    /// it. Returns whether it exited by itself with success.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let was_running = self.is_running();
        let outcome = stop_all([&mut *self], grace);
        was_running && outcome == StopOutcome::default()
    }

    /// Reaps the process if it has exited (taking it off the table) and
    /// returns how it exited; None while it runs.
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let mut live = live();
        match self.child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => self.exit = Some(status),
            // Reaped by `stop_everything` already: gone all the same.
            Err(_) => self.exit = Some(ExitStatus::default()),
        }
        if let Some(pid) = pid_of(&self.child) {
            live.remove(&pid);
        }
        self.exit
    }

    /// Sends SIGTERM if the process still runs; false if it had exited already.
    fn terminate(&mut self) -> bool {
        if !self.is_running() {
            return false;
        }
        if let Some(pid) = pid_of(&self.child) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        true
    }
}

/// How a group of processes stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Processes that exited after SIGTERM, but with a failure status.
    pub failed: usize,
    /// Processes still running after the grace period, killed with SIGKILL.
    pub killed: usize,
}

/// Stops every running process at once: SIGTERM to all, a wait of at most
/// `grace` for all of them together, then SIGKILL for the stragglers.
pub fn stop_all<'a>(
    processes: impl IntoIterator<Item = &'a mut NodeProcess>,
    grace: Duration,
) -> StopOutcome {
    let mut stopping: Vec<&mut NodeProcess> = processes
        .into_iter()
        .filter_map(|p| p.terminate().then_some(p))
        .collect();
    let mut outcome = StopOutcome::default();
    let deadline = Instant::now() + grace;
    loop {
        stopping.retain_mut(|p| match p.poll_exit() {
            None => true,
            Some(status) => {
                if !status.success() {
                    outcome.failed += 1;
                }
                false
            }
        });
        if stopping.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in stopping {
        p.kill();
        outcome.killed += 1;
    }
    outcome
}

/// Stops every child this process started, from any thread: no new child
/// starts from now on; SIGTERM to all, at most `grace` for all of them, then
/// SIGKILL. For an owner interrupted before it holds its processes (Ctrl-C
/// while a network starts); their [`NodeProcess`] values then see them gone.
pub fn stop_everything(grace: Duration) -> StopOutcome {
    STOPPING.store(true, Ordering::Release);
    for &pid in live().iter() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let mut outcome = StopOutcome::default();
    let deadline = Instant::now() + grace;
    loop {
        let mut live = live();
        live.retain(
            |&pid| match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => true,
                Ok(WaitStatus::Exited(_, 0)) => false,
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    outcome.failed += 1;
                    false
                }
                Ok(_) => true,
                // Reaped by its owner meanwhile.
                Err(_) => false,
            },
        );
        if live.is_empty() {
            return outcome;
        }
        if Instant::now() >= deadline {
            for &pid in live.iter() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
                outcome.killed += 1;
            }
            live.clear();
            return outcome;
        }
        drop(live);
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.stop(STOP_GRACE);
    }
}
