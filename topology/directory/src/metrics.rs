//! The directory's Prometheus metrics, served at `GET /metrics`.
//!
//! Every refused descriptor is counted by reason, so an operator sees a
//! misconfigured node (bad signature, stale keys) or a flood of strangers
//! (not allowed, directory full) without reading logs. No label names a node.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use topology::error::TopologyError;

/// Label set of the refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why the descriptor was refused.
    pub reason: &'static str,
}

/// Every metric the directory exports.
pub struct DirectoryMetrics {
    registry: Registry,
    /// Descriptors recorded.
    pub descriptors_accepted: Counter,
    /// Descriptors refused, by reason.
    pub descriptors_refused: Family<RefusalLabels, Counter>,
    /// Topology documents served.
    pub topologies_served: Counter,
    /// Registered nodes.
    pub nodes: Gauge,
    /// The current epoch.
    pub epoch: Gauge,
    /// Votes of other authorities recorded.
    pub votes_accepted: Counter,
    /// Votes of other authorities fetched from a peer and recorded.
    pub votes_pulled: Counter,
    /// Votes refused, by reason.
    pub votes_refused: Family<RefusalLabels, Counter>,
    /// Own votes or signatures that could not be delivered to a peer in time.
    pub posts_failed: Family<RefusalLabels, Counter>,
    /// Signatures of other authorities added to a consensus.
    pub signatures_accepted: Counter,
    /// Signatures refused, by reason.
    pub signatures_refused: Family<RefusalLabels, Counter>,
    /// Consensus documents published (complete with `k` signatures).
    pub consensus_published: Counter,
    /// Rounds that ended without a consensus, by reason.
    pub consensus_failed: Family<RefusalLabels, Counter>,
    /// Valid signatures on the latest published consensus.
    pub consensus_signatures: Gauge,
    /// Epoch of the latest published consensus.
    pub consensus_epoch: Gauge,
}

impl DirectoryMetrics {
    /// Registers every metric under the `directory` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("directory");
        let metrics = DirectoryMetrics {
            descriptors_accepted: Counter::default(),
            descriptors_refused: Family::default(),
            topologies_served: Counter::default(),
            nodes: Gauge::default(),
            epoch: Gauge::default(),
            votes_accepted: Counter::default(),
            votes_pulled: Counter::default(),
            votes_refused: Family::default(),
            posts_failed: Family::default(),
            signatures_accepted: Counter::default(),
            signatures_refused: Family::default(),
            consensus_published: Counter::default(),
            consensus_failed: Family::default(),
            consensus_signatures: Gauge::default(),
            consensus_epoch: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "descriptors_accepted",
            "Node descriptors recorded",
            metrics.descriptors_accepted.clone(),
        );
        registry.register(
            "descriptors_refused",
            "Node descriptors refused, by reason",
            metrics.descriptors_refused.clone(),
        );
        registry.register(
            "topologies_served",
            "Signed topology documents served",
            metrics.topologies_served.clone(),
        );
        registry.register("nodes", "Registered nodes", metrics.nodes.clone());
        registry.register("epoch", "Current epoch", metrics.epoch.clone());
        registry.register(
            "votes_accepted",
            "Votes of other authorities recorded",
            metrics.votes_accepted.clone(),
        );
        registry.register(
            "votes_pulled",
            "Votes of other authorities fetched from a peer (GET /v1/votes) and recorded",
            metrics.votes_pulled.clone(),
        );
        registry.register(
            "votes_refused",
            "Votes refused, by reason",
            metrics.votes_refused.clone(),
        );
        registry.register(
            "posts_failed",
            "Exchanges with a peer that failed in time: own vote (reason=vote) or signature (reason=signature) not delivered, held votes not fetched (reason=pull)",
            metrics.posts_failed.clone(),
        );
        registry.register(
            "signatures_accepted",
            "Signatures of other authorities added to a consensus",
            metrics.signatures_accepted.clone(),
        );
        registry.register(
            "signatures_refused",
            "Consensus signatures refused, by reason",
            metrics.signatures_refused.clone(),
        );
        registry.register(
            "consensus_published",
            "Consensus documents published with enough signatures",
            metrics.consensus_published.clone(),
        );
        registry.register(
            "consensus_failed",
            "Voting rounds that ended without a consensus, by reason",
            metrics.consensus_failed.clone(),
        );
        registry.register(
            "consensus_signatures",
            "Valid signatures on the latest published consensus",
            metrics.consensus_signatures.clone(),
        );
        registry.register(
            "consensus_epoch",
            "Epoch of the latest published consensus",
            metrics.consensus_epoch.clone(),
        );
        DirectoryMetrics {
            registry,
            ..metrics
        }
    }

    /// Counts a refusal under its reason.
    pub fn refused(&self, error: &TopologyError) {
        let reason = match error {
            TopologyError::Malformed { .. } => "malformed",
            TopologyError::BadSignature { .. } | TopologyError::WrongSigner { .. } => {
                "bad_signature"
            }
            TopologyError::NotAllowed(_) | TopologyError::NotAnAuthority(_) => "not_allowed",
            TopologyError::Refused(_)
            | TopologyError::InvalidParams(_)
            | TopologyError::TooFewSignatures { .. } => "refused",
        };
        self.descriptors_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Counts `family` under `reason`.
    pub fn count(family: &Family<RefusalLabels, Counter>, reason: &'static str) {
        family.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        openmetrics_to_prometheus(&text)
    }
}

/// Content type of [`DirectoryMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as Prometheus text.
///
/// `prometheus-client` writes OpenMetrics, where a counter family `x` has
/// samples `x_total`; the Prometheus text format (which `promtool check
/// metrics` and older scrapers read) wants the HELP and TYPE lines to name
/// `x_total` too, and has no `# UNIT` or `# EOF` lines.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

impl Default for DirectoryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_help_and_type_under_its_own_name() {
        let metrics = DirectoryMetrics::new();
        metrics.refused(&TopologyError::NotAllowed(protocol::NodeId([1; 32])));
        metrics.descriptors_accepted.inc();
        let text = metrics.encode();
        assert!(!text.contains("# EOF"));
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP in\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE in\n{text}"
            );
        }
        assert!(text.contains("directory_descriptors_refused_total{reason=\"not_allowed\"} 1"));
        // Where promtool is installed (CI installs it), it must accept the output.
        if let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
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
}
