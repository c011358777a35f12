//! The gateway's TOML configuration: the sections every node has (packet
//! processing under `[processing]`), plus `[clients]` and `[mailbox]`.
//!
//! Only what is particular to this gateway lives here; network-wide
//! parameters (epoch length, delays, rates, packet size) come from the signed
//! topology. The client rate limit is the network's λ_P + λ_L.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use gateway_core::MailboxConfig;
use nodeshell::config::{
    DirectorySection, MetricsSection, NodeConfig, NodeSection, ProcessingSection, Template,
};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The node side: links with mix nodes.
    pub node: NodeSection,
    /// The client side.
    pub clients: ClientsSection,
    /// The directory service.
    pub directory: DirectorySection,
    /// The Prometheus endpoint.
    pub metrics: MetricsSection,
    /// Retention and quotas.
    #[serde(default)]
    pub mailbox: MailboxSection,
    /// Packet processing.
    #[serde(default)]
    pub processing: ProcessingSection,
}

/// `[clients]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsSection {
    /// Address the QUIC endpoint for clients binds.
    pub listen: SocketAddr,
    /// Address clients dial (announced as `client_address`); defaults to `listen`.
    #[serde(default)]
    pub public_address: Option<SocketAddr>,
    /// Most client sessions at once.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Messages waiting to be written to one client before it is disconnected as too slow.
    #[serde(default = "default_session_queue")]
    pub session_queue: usize,
}

fn default_max_sessions() -> usize {
    10_000
}

fn default_session_queue() -> usize {
    256
}

/// `[mailbox]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxSection {
    /// How long an unacknowledged message is kept, in seconds.
    pub retention_secs: u64,
    /// Most messages one client's mailbox may hold.
    pub max_messages_per_client: u64,
    /// Most payload bytes all mailboxes together may hold.
    pub max_total_bytes: u64,
}

impl Default for MailboxSection {
    fn default() -> Self {
        MailboxSection {
            retention_secs: 7 * 24 * 3600,
            max_messages_per_client: 10_000,
            max_total_bytes: 1 << 30,
        }
    }
}

impl MailboxSection {
    /// The mailbox settings these give.
    pub fn mailbox_config(&self) -> MailboxConfig {
        MailboxConfig {
            retention: Duration::from_secs(self.retention_secs),
            max_messages_per_client: self.max_messages_per_client,
            max_total_bytes: self.max_total_bytes,
            ..MailboxConfig::default()
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Config> {
        let config: Config = nodeshell::config::load(path)?;
        config.node_config().check(path)?;
        if config.mailbox.retention_secs == 0 {
            bail!(
                "{}: `mailbox.retention_secs` must be above 0",
                path.display()
            );
        }
        if config.clients.session_queue == 0 || config.clients.max_sessions == 0 {
            bail!(
                "{}: `clients.session_queue` and `clients.max_sessions` must be above 0",
                path.display()
            );
        }
        Ok(config)
    }

    /// The sections the node runtime reads.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig::new(&self.node, &self.directory, &self.metrics, &self.processing)
    }

    /// The client-side address announced to the network.
    pub fn client_address(&self, bound: SocketAddr) -> SocketAddr {
        self.clients.public_address.unwrap_or(bound)
    }

    /// A commented config for `gateway init`, its clients' endpoint on `clients`.
    pub fn template(common: &Template, clients: SocketAddr) -> String {
        format!(
            r#"# Gateway configuration.
# Network-wide parameters (epoch length, delays, rates) come from the signed
# topology published by the directory, not from this file.

{node}
[clients]
# Address the QUIC endpoint for clients binds.
listen = "{clients}"
# Address clients dial, if different from `listen`; announced as `client_address`.
# public_address = "203.0.113.7:1790"
# Most client sessions at once.
max_sessions = 10000
# Messages waiting to be written to one client before it is disconnected as too slow.
session_queue = 256

{directory_and_metrics}
[mailbox]
# How long a message the client has not acknowledged is kept (seconds; 7 days).
retention_secs = 604800
# Most messages one client's mailbox may hold; beyond, new ones are refused (no ack).
max_messages_per_client = 10000
# Most payload bytes all mailboxes together may hold.
max_total_bytes = 1073741824

{processing}"#,
            node = common
                .node("the mailbox (mailbox.redb), the replay journal and the topology cache"),
            directory_and_metrics = common.directory_and_metrics(),
            processing = common.processing("processing"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults_and_names_every_key() {
        let dir = Path::new("/var/lib/gateway");
        let text = Config::template(&Template::example(dir), "127.0.0.1:1790".parse().unwrap());
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.processing, ProcessingSection::default());
        assert_eq!(c.mailbox, MailboxSection::default());
        assert_eq!(c.mailbox.retention_secs, 7 * 24 * 3600);
        assert_eq!(c.clients.max_sessions, default_max_sessions());
        assert_eq!(c.clients.session_queue, default_session_queue());
        assert_eq!(c.node.data_dir, dir);
        assert_eq!(c.client_address(c.clients.listen), c.clients.listen);
        let keys = [
            "max_sessions",
            "session_queue",
            "retention_secs",
            "max_messages_per_client",
            "max_total_bytes",
        ];
        for key in nodeshell::config::TEMPLATE_KEYS.iter().chain(&keys) {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
    }

    #[test]
    fn gateway_fields_are_checked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let text = Config::template(
            &Template::example(dir.path()),
            "127.0.0.1:1790".parse().unwrap(),
        )
        .replace("retention_secs = 604800", "retention_secs = 0");
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("gateway.toml") && e.contains("mailbox.retention_secs"),
            "{e}"
        );
    }
}
