//! What a process has used, read from `/proc`: CPU time, resident memory
//! and context switches.
//!
//! The load tools divide these by the packets a node counted, so that a
//! node's cost is what an operator sees: every thread, kernel time
//! included, whatever the node's own metrics say.

use std::time::Duration;

use crate::error::LocalnetError;

/// CPU time, resident memory and context switches of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    /// User plus system time of every thread (10 ms resolution).
    pub cpu: Duration,
    /// Resident memory (VmRSS), in KiB.
    pub rss_kib: u64,
    /// Voluntary plus involuntary context switches of the threads alive now.
    pub context_switches: u64,
}

/// Clock ticks per second of `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`,
/// 100 on every Linux this runs on).
const CLOCK_TICKS: u64 = 100;

impl ProcessUsage {
    /// Reads the usage of process `pid`.
    pub fn read(pid: u32) -> Result<Self, LocalnetError> {
        let read = |path: String| {
            std::fs::read_to_string(&path).map_err(|e| LocalnetError::Io(path, e.to_string()))
        };
        let stat = read(format!("/proc/{pid}/stat"))?;
        // The command name may hold spaces: fields count from after its ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| {
            LocalnetError::Io(format!("/proc/{pid}/stat"), "no command name".into())
        })?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
        let tick = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
        let ticks = tick(11) + tick(12);
        let rss_kib = status_field(&read(format!("/proc/{pid}/status"))?, "VmRSS:");
        let mut context_switches = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                // A thread may end between the listing and the read.
                if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
                    context_switches += status_field(&status, "voluntary_ctxt_switches:")
                        + status_field(&status, "nonvoluntary_ctxt_switches:");
                }
            }
        }
        Ok(Self {
            cpu: Duration::from_millis(ticks * 1000 / CLOCK_TICKS),
            rss_kib,
            context_switches,
        })
    }
}

/// The first number after `name` at the start of a line of a `status` file.
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    // The test burns real CPU time to see it counted.
    #![allow(clippy::disallowed_methods)]

    use std::time::Instant;

    use super::*;

    #[test]
    fn a_process_is_read_with_its_cpu_memory_and_context_switches() {
        let me = std::process::id();
        let before = ProcessUsage::read(me).unwrap();
        // Busy for a few clock ticks of /proc (10 ms each), then asleep a few times.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = ProcessUsage::read(me).unwrap();
        assert!(after.cpu > before.cpu, "{before:?} {after:?}");
        assert!(after.rss_kib > 0);
        assert!(
            after.context_switches >= before.context_switches + 5,
            "{before:?} {after:?}"
        );
        assert!(ProcessUsage::read(u32::MAX).is_err());
    }

    #[test]
    fn status_fields_are_read_by_name() {
        let status = "Name:\tmixnode\nVmRSS:\t  17408 kB\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(status, "VmRSS:"), 17408);
        assert_eq!(status_field(status, "voluntary_ctxt_switches:"), 12);
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches:"), 3);
        assert_eq!(status_field(status, "VmHWM:"), 0);
    }
}
