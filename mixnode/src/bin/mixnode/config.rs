//! The node's TOML configuration.
//!
//! Only what is particular to this node lives here; network-wide parameters
//! (epoch length, delays, rates, packet size) come from the signed topology.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node.
    pub node: NodeSection,
    /// The directory service.
    pub directory: DirectorySection,
    /// The Prometheus endpoint.
    pub metrics: MetricsSection,
    /// Packet processing.
    #[serde(default)]
    pub mixing: MixingSection,
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Address other nodes dial (announced in the descriptor); defaults to `listen`.
    #[serde(default)]
    pub public_address: Option<SocketAddr>,
    /// Folder with the keys, the replay journal and the topology cache.
    pub data_dir: PathBuf,
    /// Optional region label for data-residency routing.
    #[serde(default)]
    pub region: Option<String>,
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

/// `[mixing]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixingSection {
    /// Worker threads unwrapping packets; 0 means one per core.
    pub workers: usize,
    /// Packets waiting for a worker before new ones are dropped.
    pub input_queue: usize,
    /// Packets waiting on one outgoing link before new ones are dropped.
    pub link_queue: usize,
}

impl Default for MixingSection {
    fn default() -> Self {
        MixingSection {
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
        Ok(config)
    }

    /// The address announced to the network.
    pub fn public_address(&self) -> SocketAddr {
        self.node.public_address.unwrap_or(self.node.listen)
    }

    /// A commented config for `mixnode init`.
    pub fn template(
        data_dir: &Path,
        listen: SocketAddr,
        metrics: SocketAddr,
        directory: &str,
        directory_key: &str,
    ) -> String {
        format!(
            r#"# Mix node configuration.
# Network-wide parameters (epoch length, delays, cover rates) come from the
# signed topology published by the directory, not from this file.

[node]
# Address the QUIC endpoint binds.
listen = "{listen}"
# Address other nodes dial, if different from `listen` (e.g. behind NAT).
# public_address = "203.0.113.7:1789"
# Keys (mode 0600), the replay journal and the topology cache.
data_dir = "{data_dir}"
# Optional region label, for clients that keep routes inside chosen jurisdictions.
# region = "eu"

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

[mixing]
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
        let dir = Path::new("/var/lib/mixnode");
        let text = Config::template(
            dir,
            "127.0.0.1:1789".parse().unwrap(),
            "127.0.0.1:9100".parse().unwrap(),
            "http://127.0.0.1:8080",
            "KEY",
        );
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.mixing, MixingSection::default());
        assert_eq!(c.directory.refresh_ms, default_refresh_ms());
        assert_eq!(c.node.data_dir, dir);
        assert_eq!(c.public_address(), c.node.listen);
        for key in [
            "listen",
            "public_address",
            "data_dir",
            "region",
            "url",
            "public_key",
            "refresh_ms",
            "workers",
            "input_queue",
            "link_queue",
        ] {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("mixnode-config-test-{}", std::process::id()));
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
