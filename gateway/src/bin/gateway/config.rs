//! The gateway's TOML configuration.
//!
//! Only what is particular to this gateway lives here; network-wide
//! parameters (epoch length, delays, rates, packet size) come from the signed
//! topology. The client rate limit is the network's λ_P + λ_L.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gateway_core::MailboxConfig;
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

/// `[node]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Address the QUIC endpoint for mix nodes binds.
    pub listen: SocketAddr,
    /// Address mix nodes dial (announced in the descriptor); defaults to `listen`.
    #[serde(default)]
    pub public_address: Option<SocketAddr>,
    /// Folder with the keys, the mailbox, the replay journal and the topology cache.
    pub data_dir: PathBuf,
    /// Optional region label for data-residency routing.
    #[serde(default)]
    pub region: Option<String>,
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

/// `[directory]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// Base URL of the directory, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The directory's Ed25519 public key, base58: topologies are verified against it.
    pub public_key: String,
    /// How often to fetch the topology, in milliseconds (at least every eighth of an epoch).
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

fn default_refresh_ms() -> u64 {
    30_000
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of the `/metrics` HTTP endpoint.
    pub listen: SocketAddr,
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

/// `[processing]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingSection {
    /// Worker threads unwrapping final-hop packets; 0 means one per core.
    pub workers: usize,
    /// Packets waiting for a worker before new ones are dropped.
    pub input_queue: usize,
    /// Packets waiting on one outgoing link before new ones are dropped.
    pub link_queue: usize,
}

impl Default for ProcessingSection {
    fn default() -> Self {
        ProcessingSection {
            workers: 0,
            input_queue: 65_536,
            link_queue: 8_192,
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
        if config.directory.public_key.trim().is_empty() {
            bail!("{}: `directory.public_key` is empty", path.display());
        }
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

    /// The node-side address announced to the network.
    pub fn public_address(&self, bound: SocketAddr) -> SocketAddr {
        self.node.public_address.unwrap_or(bound)
    }

    /// The client-side address announced to the network.
    pub fn client_address(&self, bound: SocketAddr) -> SocketAddr {
        self.clients.public_address.unwrap_or(bound)
    }

    /// A commented config for `gateway init`.
    pub fn template(
        data_dir: &Path,
        listen: SocketAddr,
        clients: SocketAddr,
        metrics: SocketAddr,
        directory: &str,
        directory_key: &str,
    ) -> String {
        format!(
            r#"# Gateway configuration.
# Network-wide parameters (epoch length, delays, rates) come from the signed
# topology published by the directory, not from this file.

[node]
# Address the QUIC endpoint for mix nodes binds (final-hop packets arrive here).
listen = "{listen}"
# Address mix nodes dial, if different from `listen` (e.g. behind NAT).
# public_address = "203.0.113.7:1789"
# Keys (mode 0600), the mailbox (mailbox.redb), the replay journal and the topology cache.
data_dir = "{data_dir}"
# Optional region label, for clients that keep routes inside chosen jurisdictions.
# region = "eu"

[clients]
# Address the QUIC endpoint for clients binds.
listen = "{clients}"
# Address clients dial, if different from `listen`; announced as `client_address`.
# public_address = "203.0.113.7:1790"
# Most client sessions at once.
max_sessions = 10000
# Messages waiting to be written to one client before it is disconnected as too slow.
session_queue = 256

[directory]
# Where the directory service answers.
url = "{directory}"
# The directory's public key (base58); topologies signed by any other key are refused.
public_key = "{directory_key}"
# How often to fetch the topology, in milliseconds (at least every eighth of an epoch).
refresh_ms = 30000

[metrics]
# Prometheus scrapes http://<listen>/metrics
listen = "{metrics}"

[mailbox]
# How long a message the client has not acknowledged is kept (seconds; 7 days).
retention_secs = 604800
# Most messages one client's mailbox may hold; beyond, new ones are refused (no ack).
max_messages_per_client = 10000
# Most payload bytes all mailboxes together may hold.
max_total_bytes = 1073741824

[processing]
# Threads unwrapping Sphinx packets; 0 means one per core.
workers = 0
# Packets waiting for a worker before new arrivals are dropped (reason "queue_full").
input_queue = 65536
# Packets waiting on one outgoing link before new ones are dropped.
link_queue = 8192
"#,
            data_dir = data_dir.display(),
        )
    }
}

/// The first line of a multi-line parser message, with its location.
fn one_line(message: &str) -> String {
    message
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults_and_names_every_key() {
        let dir = Path::new("/var/lib/gateway");
        let text = Config::template(
            dir,
            "127.0.0.1:1789".parse().unwrap(),
            "127.0.0.1:1790".parse().unwrap(),
            "127.0.0.1:9100".parse().unwrap(),
            "http://127.0.0.1:8080",
            "KEY",
        );
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.processing, ProcessingSection::default());
        assert_eq!(c.mailbox, MailboxSection::default());
        assert_eq!(c.mailbox.retention_secs, 7 * 24 * 3600);
        assert_eq!(c.clients.max_sessions, default_max_sessions());
        assert_eq!(c.clients.session_queue, default_session_queue());
        assert_eq!(c.directory.refresh_ms, default_refresh_ms());
        assert_eq!(c.node.data_dir, dir);
        assert_eq!(c.public_address(c.node.listen), c.node.listen);
        assert_eq!(c.client_address(c.clients.listen), c.clients.listen);
        for key in [
            "listen",
            "public_address",
            "data_dir",
            "region",
            "max_sessions",
            "session_queue",
            "url",
            "public_key",
            "refresh_ms",
            "retention_secs",
            "max_messages_per_client",
            "max_total_bytes",
            "workers",
            "input_queue",
            "link_queue",
        ] {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("gateway-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[node]\nlisten = \"nope\"\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        assert!(e.contains("listen"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let missing = Config::load(&dir.join("missing.toml")).unwrap_err();
        assert!(format!("{missing:#}").contains("missing.toml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
