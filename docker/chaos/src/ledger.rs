//! What a load reports, and the books kept on it.
//!
//! `mixnet-load` prints one [`Event`] per line (JSON). [`Ledger`] reads them
//! back — in the load itself for its closing summary, in `mixnet-chaos` for
//! each scenario — and [`Ledger::verdict`] counts what the invariants are
//! about: messages sent, acknowledged to their sender, delivered to their
//! recipient, delivered twice, never delivered, and how long the network
//! took to carry messages again after a fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One step of the load, with the wall-clock time it happened (unix ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Every client is connected and has its correspondents' cards.
    Ready {
        /// The client address of each client's gateway, in client order.
        gateways: Vec<String>,
        /// When.
        at: u64,
    },
    /// Client `from` handed message `seq` to its client library, for `to`.
    Sent {
        /// Sending client.
        from: usize,
        /// Receiving client.
        to: usize,
        /// The message's number among `from`'s.
        seq: u64,
        /// When.
        at: u64,
    },
    /// Every fragment of the message was acknowledged to its sender.
    Acked {
        /// Sending client.
        from: usize,
        /// The message's number.
        seq: u64,
        /// When.
        at: u64,
    },
    /// The client library gave the message up (a fragment never acknowledged).
    Failed {
        /// Sending client.
        from: usize,
        /// The message's number.
        seq: u64,
        /// When.
        at: u64,
    },
    /// Client `to` received message `seq` of `from`.
    Received {
        /// Sending client.
        from: usize,
        /// Receiving client.
        to: usize,
        /// The message's number.
        seq: u64,
        /// When.
        at: u64,
    },
    /// A client stopped sending and left its gateway (its mail waits there).
    Offline {
        /// The client.
        client: usize,
        /// When.
        at: u64,
    },
    /// A client connected again.
    Online {
        /// The client.
        client: usize,
        /// When.
        at: u64,
    },
    /// The load stopped: nothing more will be sent or reported.
    Done {
        /// When.
        at: u64,
    },
}

impl Event {
    /// The event as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a line written by [`Event::to_line`]; `None` for any other line.
    pub fn from_line(line: &str) -> Option<Event> {
        serde_json::from_str(line.trim()).ok()
    }
}

/// A message of the load: its sender and its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKey {
    /// Sending client.
    pub from: usize,
    /// Number among the sender's messages.
    pub seq: u64,
}

/// What is known of one message.
#[derive(Clone, Debug, Default)]
struct Record {
    sent_at: Option<u64>,
    acked_at: Option<u64>,
    failed: bool,
    received_at: Vec<u64>,
}

/// The books of one load run.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    messages: BTreeMap<MessageKey, Record>,
}

/// The counts a scenario is judged on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Messages handed to the client library.
    pub sent: usize,
    /// Messages acknowledged to their sender.
    pub acked: usize,
    /// Messages the client library gave up.
    pub failed: usize,
    /// Distinct messages delivered to their recipient.
    pub delivered: usize,
    /// Deliveries beyond the first of a message.
    pub duplicated: usize,
    /// Messages sent and never delivered.
    pub lost: usize,
    /// Messages acknowledged to their sender and never delivered.
    pub acked_not_delivered: usize,
    /// Deliveries of a message nobody reported sending.
    pub unknown: usize,
    /// From the end of the fault to the first delivery of a message sent
    /// after it, in ms: messages flow again.
    pub recovery_ms: Option<u64>,
    /// From the end of the fault until every message sent before it was
    /// delivered, in ms (0 when all were delivered before it ended).
    pub backlog_ms: Option<u64>,
    /// Median time from sending to delivery, in ms.
    pub median_latency_ms: Option<u64>,
}

impl Ledger {
    /// Books one event.
    pub fn apply(&mut self, event: &Event) {
        match *event {
            Event::Sent { from, seq, at, .. } => {
                self.record(from, seq).sent_at.get_or_insert(at);
            }
            Event::Acked { from, seq, at } => {
                self.record(from, seq).acked_at.get_or_insert(at);
            }
            Event::Failed { from, seq, .. } => self.record(from, seq).failed = true,
            Event::Received { from, seq, at, .. } => self.record(from, seq).received_at.push(at),
            Event::Ready { .. }
            | Event::Offline { .. }
            | Event::Online { .. }
            | Event::Done { .. } => {}
        }
    }

    fn record(&mut self, from: usize, seq: u64) -> &mut Record {
        self.messages.entry(MessageKey { from, seq }).or_default()
    }

    /// Messages sent and not yet both acknowledged (or failed) and delivered.
    pub fn outstanding(&self) -> usize {
        self.messages
            .values()
            .filter(|r| r.sent_at.is_some())
            .filter(|r| (r.acked_at.is_none() && !r.failed) || r.received_at.is_empty())
            .count()
    }

    /// The counts, with recovery measured from `fault_end` (unix ms) when given.
    pub fn verdict(&self, fault_end: Option<u64>) -> Verdict {
        let mut v = Verdict::default();
        let mut latencies = Vec::new();
        let mut recovery: Option<u64> = None;
        let mut backlog: Option<u64> = fault_end.map(|_| 0);
        for r in self.messages.values() {
            let first = r.received_at.iter().min().copied();
            v.duplicated += r.received_at.len().saturating_sub(1);
            let Some(sent) = r.sent_at else {
                v.unknown += r.received_at.len();
                continue;
            };
            v.sent += 1;
            v.acked += usize::from(r.acked_at.is_some());
            v.failed += usize::from(r.failed);
            match first {
                Some(at) => {
                    v.delivered += 1;
                    latencies.push(at.saturating_sub(sent));
                }
                None => {
                    v.lost += 1;
                    v.acked_not_delivered += usize::from(r.acked_at.is_some());
                }
            }
            if let (Some(end), Some(at)) = (fault_end, first) {
                if sent >= end {
                    let took = at.saturating_sub(end);
                    recovery = Some(recovery.map_or(took, |r| r.min(took)));
                } else {
                    backlog = backlog.map(|b| b.max(at.saturating_sub(end)));
                }
            }
            if fault_end.is_some_and(|end| sent < end) && first.is_none() {
                backlog = None;
            }
        }
        latencies.sort_unstable();
        v.median_latency_ms = latencies.get(latencies.len() / 2).copied();
        v.recovery_ms = recovery;
        v.backlog_ms = backlog;
        v
    }
}

impl Verdict {
    /// The invariants this verdict breaks, one line each; empty when all hold.
    ///
    /// Every message acknowledged to its sender is delivered exactly once,
    /// none is delivered twice, none is lost or given up, nothing arrives
    /// that was not sent, and when a fault ended, messages flowed again
    /// within `max_recovery_ms`.
    pub fn violations(&self, max_recovery_ms: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        if self.sent == 0 {
            out.push("no message was sent".to_string());
        }
        if self.acked_not_delivered > 0 {
            out.push(format!(
                "{} acknowledged messages never delivered",
                self.acked_not_delivered
            ));
        }
        if self.duplicated > 0 {
            out.push(format!("{} duplicate deliveries", self.duplicated));
        }
        if self.lost > 0 {
            out.push(format!("{} messages lost", self.lost));
        }
        if self.failed > 0 {
            out.push(format!("{} messages given up by their sender", self.failed));
        }
        if self.unknown > 0 {
            out.push(format!("{} deliveries of unknown messages", self.unknown));
        }
        if let Some(max) = max_recovery_ms {
            match self.recovery_ms {
                None => out.push("no message sent after the fault was delivered".to_string()),
                Some(ms) if ms > max => {
                    out.push(format!("recovery took {ms} ms, more than {max} ms"))
                }
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sent(from: usize, seq: u64, at: u64) -> Event {
        Event::Sent {
            from,
            to: from + 1,
            seq,
            at,
        }
    }

    fn received(from: usize, seq: u64, at: u64) -> Event {
        Event::Received {
            from,
            to: from + 1,
            seq,
            at,
        }
    }

    #[test]
    fn events_read_back_from_their_lines() {
        let events = [
            Event::Ready {
                gateways: vec!["10.0.0.1:1790".into()],
                at: 1,
            },
            sent(0, 1, 2),
            Event::Acked {
                from: 0,
                seq: 1,
                at: 3,
            },
            received(0, 1, 4),
            Event::Offline { client: 2, at: 5 },
            Event::Done { at: 6 },
        ];
        for e in events {
            assert_eq!(Event::from_line(&e.to_line()), Some(e));
        }
        assert_eq!(Event::from_line("ready"), None);
    }

    #[test]
    fn a_clean_run_breaks_nothing() {
        let mut l = Ledger::default();
        for seq in 0..10 {
            l.apply(&sent(0, seq, 100 * seq));
            l.apply(&received(0, seq, 100 * seq + 40));
            l.apply(&Event::Acked {
                from: 0,
                seq,
                at: 100 * seq + 80,
            });
        }
        let v = l.verdict(None);
        assert_eq!((v.sent, v.delivered, v.acked), (10, 10, 10));
        assert_eq!(v.median_latency_ms, Some(40));
        assert_eq!(l.outstanding(), 0);
        assert!(v.violations(None).is_empty(), "{:?}", v.violations(None));
    }

    #[test]
    fn duplicates_losses_and_strangers_are_each_named() {
        let mut l = Ledger::default();
        l.apply(&sent(0, 1, 0));
        l.apply(&received(0, 1, 10));
        l.apply(&received(0, 1, 20));
        l.apply(&sent(0, 2, 0));
        l.apply(&Event::Acked {
            from: 0,
            seq: 2,
            at: 30,
        });
        l.apply(&received(5, 9, 10));
        let v = l.verdict(None);
        assert_eq!(v.duplicated, 1);
        assert_eq!(v.lost, 1);
        assert_eq!(v.acked_not_delivered, 1);
        assert_eq!(v.unknown, 1);
        assert_eq!(l.outstanding(), 2);
        let broken = v.violations(None).join("; ");
        for needle in ["duplicate", "lost", "acknowledged", "unknown"] {
            assert!(broken.contains(needle), "{broken}");
        }
    }

    #[test]
    fn recovery_counts_from_the_end_of_the_fault() {
        let mut l = Ledger::default();
        // Sent during the fault (ends at 1000), delivered after it.
        l.apply(&sent(0, 1, 500));
        l.apply(&received(0, 1, 1800));
        // Sent after it.
        l.apply(&sent(0, 2, 1100));
        l.apply(&received(0, 2, 1400));
        l.apply(&sent(0, 3, 1200));
        l.apply(&received(0, 3, 1300));
        let v = l.verdict(Some(1000));
        assert_eq!(v.recovery_ms, Some(300));
        assert_eq!(v.backlog_ms, Some(800));
        assert!(v.violations(Some(300)).is_empty());
        assert_eq!(v.violations(Some(200)).len(), 1);
    }

    #[test]
    fn no_delivery_after_the_fault_is_no_recovery() {
        let mut l = Ledger::default();
        l.apply(&sent(0, 1, 1500));
        let v = l.verdict(Some(1000));
        assert_eq!(v.recovery_ms, None);
        assert_eq!(v.backlog_ms, Some(0));
        assert!(
            v.violations(Some(10_000))
                .iter()
                .any(|s| s.contains("after the fault"))
        );
    }
}
