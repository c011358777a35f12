//! The config sections every node has, and how a node's config file is read.
//!
//! A node's TOML file holds `[node]`, `[directory]`, `[metrics]` and a
//! packet-processing section (`[mixing]` in a mix node, `[processing]` in a
//! gateway: the same keys), plus its role's own sections. Each binary
//! declares its whole `Config` (so that `deny_unknown_fields` names a
//! misspelt key in any section) from these types, and hands the common part
//! to the runtime as a [`NodeConfig`].
//!
//! Only what is particular to one node lives in its file; network-wide
//! parameters (epoch length, delays, rates, packet size) come from the signed
//! topology.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `[node]`: this node's addresses and folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Address the QUIC endpoint for other nodes binds.
    pub listen: SocketAddr,
    /// Address other nodes dial (announced in the descriptor); defaults to the bound address.
    #[serde(default)]
    pub public_address: Option<SocketAddr>,
    /// Folder with the keys, the replay journal, the topology cache (and a gateway's mailbox).
    pub data_dir: PathBuf,
    /// Optional region label for data-residency routing.
    #[serde(default)]
    pub region: Option<String>,
}

/// `[directory]`: where the topology comes from.
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

/// The default of `directory.refresh_ms`.
pub fn default_refresh_ms() -> u64 {
    30_000
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of the `/metrics` HTTP endpoint.
    pub listen: SocketAddr,
}

/// `[mixing]` (mix node) or `[processing]` (gateway): packet processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingSection {
    /// Worker threads unwrapping packets; 0 means one per core.
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

/// The sections of a node's config the runtime reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// `[node]`
    pub node: NodeSection,
    /// `[directory]`
    pub directory: DirectorySection,
    /// `[metrics]`
    pub metrics: MetricsSection,
    /// `[mixing]` or `[processing]`
    pub processing: ProcessingSection,
}

impl NodeConfig {
    /// The common sections of a binary's config.
    pub fn new(
        node: &NodeSection,
        directory: &DirectorySection,
        metrics: &MetricsSection,
        processing: &ProcessingSection,
    ) -> Self {
        NodeConfig {
            node: node.clone(),
            directory: directory.clone(),
            metrics: metrics.clone(),
            processing: processing.clone(),
        }
    }

    /// The node-side address announced to the network: `public_address`, or the one bound.
    pub fn public_address(&self, bound: SocketAddr) -> SocketAddr {
        self.node.public_address.unwrap_or(bound)
    }

    /// Checks what parsing alone cannot; errors name `path` and the field.
    pub fn check(&self, path: &Path) -> Result<()> {
        if self.directory.public_key.trim().is_empty() {
            bail!("{}: `directory.public_key` is empty", path.display());
        }
        Ok(())
    }
}

/// Reads and parses the TOML file at `path`: one line of error that names
/// the file, and the field and line at fault.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read config", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string())))
}

/// A parser message on one line: its location and text, without the
/// excerpt of the file it draws.
fn one_line(message: &str) -> String {
    message
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `init` writes in the sections every node has.
pub struct Template<'a> {
    /// The node's folder.
    pub data_dir: &'a Path,
    /// `node.listen`.
    pub listen: SocketAddr,
    /// `metrics.listen`.
    pub metrics: SocketAddr,
    /// `directory.url`.
    pub directory: &'a str,
    /// `directory.public_key`.
    pub directory_key: &'a str,
}

impl<'a> Template<'a> {
    /// The template of a node in `data_dir` on loopback, as tests write it.
    pub fn example(data_dir: &'a Path) -> Self {
        Template {
            data_dir,
            listen: ([127, 0, 0, 1], 1789).into(),
            metrics: ([127, 0, 0, 1], 9100).into(),
            directory: "http://127.0.0.1:8080",
            directory_key: "KEY",
        }
    }

    /// The commented `[node]` section; `holds` says what the folder keeps
    /// besides the keys, e.g. "the replay journal and the topology cache".
    pub fn node(&self, holds: &str) -> String {
        format!(
            r#"[node]
# Address the QUIC endpoint for other nodes binds.
listen = "{listen}"
# Address other nodes dial, if different from `listen` (e.g. behind NAT).
# public_address = "203.0.113.7:1789"
# Keys (mode 0600), {holds}.
data_dir = "{data_dir}"
# Optional region label, for clients that keep routes inside chosen jurisdictions.
# region = "eu"
"#,
            listen = self.listen,
            data_dir = self.data_dir.display(),
        )
    }

    /// The commented `[directory]` and `[metrics]` sections.
    pub fn directory_and_metrics(&self) -> String {
        format!(
            r#"[directory]
# Where the directory service answers.
url = "{directory}"
# The directory's public key (base58); topologies signed by any other key are refused.
public_key = "{directory_key}"
# How often to fetch the topology, in milliseconds (at least every eighth of an epoch).
refresh_ms = {refresh}

[metrics]
# Prometheus scrapes http://<listen>/metrics
listen = "{metrics}"
"#,
            directory = self.directory,
            directory_key = self.directory_key,
            refresh = default_refresh_ms(),
            metrics = self.metrics,
        )
    }

    /// The commented packet-processing section, under the name `section`.
    pub fn processing(&self, section: &str) -> String {
        let d = ProcessingSection::default();
        format!(
            r#"[{section}]
# Threads unwrapping Sphinx packets; 0 means one per core.
workers = {workers}
# Packets waiting for a worker before new arrivals are dropped (reason "queue_full").
input_queue = {input_queue}
# Packets waiting on one outgoing link before new ones are dropped.
link_queue = {link_queue}
"#,
            workers = d.workers,
            input_queue = d.input_queue,
            link_queue = d.link_queue,
        )
    }
}

/// Every key the common sections of a template name, for the binaries'
/// tests that their example config names every key.
pub const TEMPLATE_KEYS: &[&str] = &[
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
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        node: NodeSection,
        directory: DirectorySection,
        metrics: MetricsSection,
        #[serde(default)]
        processing: ProcessingSection,
    }

    fn template(dir: &Path) -> String {
        let t = Template::example(dir);
        format!(
            "{}\n{}\n{}",
            t.node("the journal"),
            t.directory_and_metrics(),
            t.processing("processing")
        )
    }

    #[test]
    fn the_common_sections_parse_to_their_defaults_and_name_every_key() {
        let dir = Path::new("/var/lib/node");
        let text = template(dir);
        let c: Example = toml::from_str(&text).unwrap();
        assert_eq!(c.processing, ProcessingSection::default());
        assert_eq!(c.directory.refresh_ms, default_refresh_ms());
        assert_eq!(c.node.data_dir, dir);
        assert_eq!(c.metrics.listen.port(), 9100);
        for key in TEMPLATE_KEYS {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
    }

    #[test]
    fn errors_name_the_file_and_field_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[node]\nlisten = \"nope\"\n").unwrap();
        let e = load::<Example>(&path).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        assert!(e.contains("listen"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let missing = load::<Example>(&dir.path().join("missing.toml")).unwrap_err();
        assert!(format!("{missing:#}").contains("missing.toml"));

        let text = template(dir.path()).replace("public_key = \"KEY\"", "public_key = \" \"");
        let c: Example = toml::from_str(&text).unwrap();
        let config = NodeConfig::new(&c.node, &c.directory, &c.metrics, &c.processing);
        let e = config.check(&path).unwrap_err().to_string();
        assert!(
            e.contains("bad.toml") && e.contains("directory.public_key"),
            "{e}"
        );
    }
}
