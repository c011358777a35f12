//! The fixed pool of threads that unwraps packets.
//!
//! Sphinx unwrapping is CPU-bound (two X25519 multiplications a packet): when
//! packets come faster than one thread opens them, a node hands them to one
//! thread per core through a bounded queue (at low load the intake opens a
//! lone packet itself, see [`crate::node`]). When the queue is full the packet is refused
//! at once (the caller counts the drop), so a flood costs a counter, not memory.
//! At shutdown the threads stop after the packet in their hands: what is
//! still queued is dropped, not unwrapped for a node that is leaving.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// How many workers to start: `configured`, or one per core when it is 0.
pub fn worker_count(configured: usize) -> usize {
    if configured == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        configured
    }
}

/// The queue between the intake and the threads: a bounded deque under a
/// lock. A thread that finds it empty sleeps on a condition variable at once
/// (no spinning, no `sched_yield`), and a packet wakes a thread only when
/// one sleeps, so a pool busy under a flood takes packets without a system
/// call.
struct WorkQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

struct QueueState {
    packets: VecDeque<Vec<u8>>,
    /// Threads waiting for a packet.
    sleeping: usize,
    /// Threads still taking packets.
    running: usize,
    /// No packet is taken any more (the pool is closing, or every thread has
    /// stopped).
    closed: bool,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A thread that panicked in `handle` left the queue consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, packet: Vec<u8>) -> bool {
        let mut state = self.lock();
        if state.closed || state.packets.len() >= self.capacity {
            return false;
        }
        state.packets.push_back(packet);
        let wake = state.sleeping > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    fn is_empty(&self) -> bool {
        self.lock().packets.is_empty()
    }

    /// The next packet, waiting for one; `None` once closed and empty.
    fn pop(&self) -> Option<Vec<u8>> {
        let mut state = self.lock();
        loop {
            if let Some(packet) = state.packets.pop_front() {
                return Some(packet);
            }
            if state.closed {
                return None;
            }
            state.sleeping += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.sleeping -= 1;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// A thread has stopped; after the last one the queue refuses packets.
    fn thread_done(&self) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        if state.running == 0 {
            state.closed = true;
        }
    }
}

/// Queues packets for the worker threads (see [`PacketWorkers::submitter`]).
#[derive(Clone)]
pub struct Submitter {
    queue: Arc<WorkQueue>,
}

impl Submitter {
    /// Queues a packet; false when the queue is full or closed (count the drop).
    pub fn try_submit(&self, packet: Vec<u8>) -> bool {
        self.queue.push(packet)
    }

    /// Whether no packet waits in the queue (the threads may still be busy
    /// with the packets in their hands).
    pub fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Worker threads fed through one bounded queue.
pub struct PacketWorkers {
    queue: Arc<WorkQueue>,
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl PacketWorkers {
    /// Starts `count` threads named `{name}-{i}`, each calling `handle` on
    /// the packets of a queue of `capacity`. A thread stops when `handle`
    /// returns false or the queue is closed.
    pub fn start<H>(count: usize, capacity: usize, name: &str, handle: H) -> Result<Self>
    where
        H: Fn(Vec<u8>) -> bool + Send + Sync + 'static,
    {
        let count = count.max(1);
        let queue = Arc::new(WorkQueue {
            state: Mutex::new(QueueState {
                packets: VecDeque::new(),
                sleeping: 0,
                running: count,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        });
        let handle = Arc::new(handle);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..count {
            let work = queue.clone();
            let handle = handle.clone();
            let stopping = stopping.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Some(packet) = work.pop() {
                        if stopping.load(Ordering::Relaxed) || !handle(packet) {
                            break;
                        }
                    }
                    work.thread_done();
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // Those already started stop with the queue.
                    queue.close();
                    return Err(e).context("cannot start worker threads");
                }
            }
        }
        Ok(PacketWorkers {
            queue,
            threads,
            stopping,
        })
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether the pool has no threads (never: at least one is started).
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Queues a packet; false when the queue is full or closed (count the drop).
    pub fn try_submit(&self, packet: Vec<u8>) -> bool {
        self.queue.push(packet)
    }

    /// A handle that queues packets for the threads, for the intake task.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            queue: self.queue.clone(),
        }
    }

    /// Closes the queue and waits for every thread to finish what is queued.
    pub fn join(self) {
        self.queue.close();
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Stops every thread after the packet in its hands, dropping what is
    /// still queued, and waits for them.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_packet_is_handled_and_a_full_queue_refuses() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let pool = PacketWorkers::start(2, 1000, "test", move |p| {
            s.fetch_add(p.len(), Ordering::Relaxed);
            true
        })
        .unwrap();
        assert_eq!(pool.len(), 2);
        for _ in 0..100 {
            assert!(pool.try_submit(vec![0; 3]));
        }
        pool.join();
        assert_eq!(seen.load(Ordering::Relaxed), 300);

        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let blocked =
            PacketWorkers::start(1, 2, "blocked", move |_| gate_rx.recv().is_ok()).unwrap();
        let accepted = (0..10).filter(|_| blocked.try_submit(vec![1])).count();
        // One packet in the worker's hands at most, two in the queue.
        assert!((2..=3).contains(&accepted), "{accepted}");
        drop(gate_tx);
        blocked.join();

        // Stopping drops what is queued instead of handling it.
        let handled = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let h = handled.clone();
        let busy = PacketWorkers::start(1, 100, "busy", move |_| {
            let _ = gate_rx.recv();
            h.fetch_add(1, Ordering::Relaxed);
            true
        })
        .unwrap();
        for _ in 0..50 {
            assert!(busy.try_submit(vec![2]));
        }
        let stopper = std::thread::spawn(move || busy.stop());
        // Let the stop flag be set while the worker waits at the gate.
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(gate_tx);
        stopper.join().unwrap();
        assert!(handled.load(Ordering::Relaxed) <= 2);
        // When every thread has stopped (the role took no more), the queue refuses.
        let done = PacketWorkers::start(2, 10, "done", |_| false).unwrap();
        assert!(done.try_submit(vec![3]));
        assert!(done.try_submit(vec![3]));
        let mut tries = 0;
        while done.try_submit(vec![3]) {
            tries += 1;
            assert!(tries < 2000, "still accepting");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        done.join();
        assert_eq!(worker_count(3), 3);
        assert!(worker_count(0) >= 1);
    }
}
