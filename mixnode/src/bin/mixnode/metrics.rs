//! The node's Prometheus metrics.
//!
//! Labels stay coarse: a drop reason, never a peer or a client, since
//! per-peer series would publish traffic patterns to whoever scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use mixnode_core::DropReason;

/// Label set of the drop counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Why the packet was dropped.
    pub reason: &'static str,
}

/// Every metric the node exports.
pub struct NodeMetrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Packets that arrived from links.
    pub received: Counter,
    /// Packets released to the next hop.
    pub forwarded: Counter,
    /// Drops by reason.
    pub dropped: Family<DropLabels, Counter>,
    /// Replayed packets (also counted as drops with reason "replay").
    pub replays: Counter,
    /// Packets held for their release instant.
    pub queue_depth: Gauge,
    /// Delays the senders chose, per hop.
    pub hop_delay: Histogram,
    /// Loop cover packets sent.
    pub cover_sent: Counter,
    /// Own loop cover packets that came back.
    pub cover_returned: Counter,
    /// Open QUIC links.
    pub links_open: Gauge,
    /// Current key epoch.
    pub epoch: Gauge,
    /// Topology documents refused for a bad signature.
    pub topology_bad_signature: Counter,
    /// Nodes (mixes and gateways) in the topology the node works on.
    pub topology_nodes: Gauge,
    /// Drops inside the link layer, by reason.
    pub link_dropped: Family<DropLabels, Counter>,
    /// Certificates refused because their key is not pinned.
    pub unpinned_refused: Counter,
}

impl NodeMetrics {
    /// Registers every metric under the `mixnode` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mixnode");
        let received = Counter::default();
        let forwarded = Counter::default();
        let dropped = Family::<DropLabels, Counter>::default();
        let replays = Counter::default();
        let queue_depth = Gauge::default();
        let hop_delay = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let cover_sent = Counter::default();
        let cover_returned = Counter::default();
        let links_open = Gauge::default();
        let epoch = Gauge::default();
        let topology_bad_signature = Counter::default();
        let topology_nodes = Gauge::default();
        let link_dropped = Family::<DropLabels, Counter>::default();
        let unpinned_refused = Counter::default();
        registry.register(
            "packets_received",
            "Packets that arrived from links",
            received.clone(),
        );
        registry.register(
            "packets_forwarded",
            "Packets released to their next hop",
            forwarded.clone(),
        );
        registry.register(
            "packets_dropped",
            "Packets dropped, by reason",
            dropped.clone(),
        );
        registry.register("replays", "Replayed packets refused", replays.clone());
        registry.register(
            "queue_depth",
            "Packets held until their release instant",
            queue_depth.clone(),
        );
        registry.register(
            "hop_delay_seconds",
            "Per-hop delay chosen by senders",
            hop_delay.clone(),
        );
        registry.register("cover_sent", "Loop cover packets sent", cover_sent.clone());
        registry.register(
            "cover_returned",
            "Own loop cover packets that came back",
            cover_returned.clone(),
        );
        registry.register("links_open", "Open QUIC links", links_open.clone());
        registry.register("epoch", "Current key epoch", epoch.clone());
        registry.register(
            "topology_bad_signature",
            "Topology documents refused for a bad signature",
            topology_bad_signature.clone(),
        );
        registry.register(
            "topology_nodes",
            "Nodes in the topology the node works on",
            topology_nodes.clone(),
        );
        registry.register(
            "link_packets_dropped",
            "Packets dropped by the link layer, by reason",
            link_dropped.clone(),
        );
        registry.register(
            "links_unpinned_refused",
            "Connections refused because the peer's key is not in the topology",
            unpinned_refused.clone(),
        );
        for reason in transport::LinkDropReason::ALL {
            let _ = link_dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            });
        }
        // Every reason appears from the start, at zero.
        for reason in DropReason::ALL {
            let _ = dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            });
        }
        NodeMetrics {
            registry,
            received,
            forwarded,
            dropped,
            replays,
            queue_depth,
            hop_delay,
            cover_sent,
            cover_returned,
            links_open,
            epoch,
            topology_bad_signature,
            topology_nodes,
            link_dropped,
            unpinned_refused,
        }
    }

    /// Copies the link layer's counters into the exported metrics.
    pub fn observe_links(&self, stats: &transport::LinkStats) {
        self.links_open
            .set(i64::try_from(stats.links_open()).unwrap_or(i64::MAX));
        for reason in transport::LinkDropReason::ALL {
            let c = self.link_dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            });
            c.inc_by(stats.dropped(reason).saturating_sub(c.get()));
        }
        self.unpinned_refused.inc_by(
            stats
                .peers_rejected()
                .saturating_sub(self.unpinned_refused.get()),
        );
    }

    /// Counts one drop.
    pub fn count_drop(&self, reason: DropReason) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.as_str(),
            })
            .inc();
        if reason == DropReason::Replay {
            self.replays.inc();
        }
    }

    /// The exposition text, in the Prometheus text format (what `promtool check metrics` reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        directory::metrics::openmetrics_to_prometheus(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_labelled_by_reason_and_replays_counted_twice() {
        let m = NodeMetrics::new();
        m.count_drop(DropReason::Replay);
        m.count_drop(DropReason::WrongSize);
        let text = m.encode();
        assert!(
            text.contains(r#"mixnode_packets_dropped_total{reason="replay"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"mixnode_packets_dropped_total{reason="wrong_size"} 1"#));
        assert!(text.contains(r#"mixnode_packets_dropped_total{reason="unknown_key"} 0"#));
        assert!(text.contains("mixnode_replays_total 1"));
        assert!(text.contains("# TYPE mixnode_replays_total counter"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn passes_promtool_when_installed() {
        let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool not installed; the localnet test checks a live node");
            return;
        };
        let m = NodeMetrics::new();
        m.hop_delay.observe(0.05);
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(m.encode().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
