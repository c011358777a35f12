//! How a node stops: the signal, the request every task watches, and the
//! deadline for what may linger.
//!
//! On SIGTERM or Ctrl-C the runtime raises a [`Shutdown`] with a deadline
//! [`LINGER`] ahead. Every task selects on [`ShutdownSignal::requested`] and
//! ends its loop at once. What must be written is written to the end: the
//! replay journal and a gateway's mailbox are flushed by the tasks that own
//! them, whatever the time. What is only courtesy — queued packets drained
//! into links, a `Close(shutdown)` reaching each client, a scrape in flight —
//! gets until the deadline and is cut there. So a node exits within a second
//! of SIGTERM even when its peers are gone and its links can drain nothing.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How long, after the signal, lingering work (draining links, goodbyes to
/// clients, a scrape in flight) may go on before it is cut.
pub const LINGER: Duration = Duration::from_millis(500);

/// Returns once the process receives SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The side that raises the stop request (the runtime's).
pub struct Shutdown {
    sender: watch::Sender<Option<Instant>>,
}

/// The stop request, as every task sees it.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<Option<Instant>>,
}

impl Shutdown {
    /// A request not raised yet, and the signal its tasks watch.
    pub fn new() -> (Shutdown, ShutdownSignal) {
        let (sender, receiver) = watch::channel(None);
        (Shutdown { sender }, ShutdownSignal { receiver })
    }

    /// Raises the request; lingering work must end by `LINGER` from now.
    /// Returns that deadline.
    pub fn raise(&self) -> Instant {
        let deadline = Instant::now() + LINGER;
        self.sender.send_replace(Some(deadline));
        deadline
    }
}

impl ShutdownSignal {
    /// Resolves once the stop is requested (at once if it has been, or if
    /// the runtime is gone).
    pub async fn requested(&mut self) {
        let _ = self.receiver.wait_for(Option::is_some).await;
    }

    /// Whether the stop is requested.
    pub fn is_requested(&self) -> bool {
        self.receiver.borrow().is_some()
    }

    /// The instant by which lingering work must end: the request's deadline,
    /// or `LINGER` from now if none is raised yet.
    pub fn deadline(&self) -> Instant {
        self.receiver
            .borrow()
            .unwrap_or_else(|| Instant::now() + LINGER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_watcher_sees_the_request_and_its_deadline() {
        let (shutdown, signal) = Shutdown::new();
        let mut a = signal.clone();
        let mut b = signal;
        assert!(!a.is_requested());
        let waiting = tokio::spawn(async move {
            b.requested().await;
            b.deadline()
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let deadline = shutdown.raise();
        assert_eq!(waiting.await.ok(), Some(deadline));
        a.requested().await;
        assert!(a.is_requested());
        assert_eq!(deadline - Instant::now(), LINGER);
        // A request raised before a task looks is seen at once; so is a runtime gone.
        drop(shutdown);
        a.requested().await;
    }
}
