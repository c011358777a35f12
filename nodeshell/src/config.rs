//! The config sections every node has, and how a node's config file is read.
//!
//! A node's TOML file holds `[node]`, `[directory]`, `[metrics]` and a
//! packet-processing section (`[mixing]` in a mix node, `[processing]` in a
//! gateway: the same keys), which the runtime reads as a [`NodeConfig`], plus
//! its role's own sections ([`RoleSections`]: a gateway's `[clients]` and
//! `[mailbox]`). [`load`] reads the file once and parses it twice, the
//! common sections and the role's, each section refusing keys it does not
//! know; a section neither knows is refused by name. Every error is one line
//! naming the file, the field and its line.
//!
//! An optional `[audit]` section names the audit log (default: `audit.jsonl`
//! in `data_dir`).
//!
//! Only what is particular to one node lives in its file; network-wide
//! parameters (epoch length, delays, rates, packet size) come from the signed
//! topology.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use audit::AuditEvent;
use mixnode_core::SphinxCodecKind;
use protocol::keys::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use topology::{Authority, AuthoritySet};

/// The sections every node's file has (`audit` may be left out).
const COMMON_SECTIONS: [&str; 4] = ["node", "directory", "metrics", "audit"];

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
///
/// Either one directory (`url`, `public_key`), or several authorities
/// (`[[directory.authorities]]`, each with `url` and `public_key`, and
/// `threshold`, the signatures a topology needs: by default more than half).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// Base URL of the directory, e.g. `http://127.0.0.1:8080` (one authority).
    #[serde(default)]
    pub url: String,
    /// The directory's Ed25519 public key, base58: topologies are verified against it.
    #[serde(default)]
    pub public_key: String,
    /// The directory authorities, when there are several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<AuthorityEntry>,
    /// Signatures of `authorities` a topology needs (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
    /// How often to fetch the topology, in milliseconds (at least every eighth of an epoch).
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

/// One `[[directory.authorities]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityEntry {
    /// Base URL of the authority.
    pub url: String,
    /// Its Ed25519 public key, base58.
    pub public_key: String,
}

impl DirectorySection {
    /// The pinned authority set: the one directory, or the listed authorities.
    pub fn authority_set(&self) -> Result<AuthoritySet> {
        if self.authorities.is_empty() {
            let key = NodeId::from_base58(&self.public_key)
                .map_err(|e| anyhow::anyhow!("`directory.public_key`: {e}"))?;
            return Ok(AuthoritySet::single(key, self.url.trim_end_matches('/')));
        }
        let authorities = self
            .authorities
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let id = NodeId::from_base58(&a.public_key)
                    .map_err(|e| anyhow::anyhow!("`directory.authorities[{i}].public_key`: {e}"))?;
                Ok(Authority {
                    id,
                    url: a.url.trim_end_matches('/').to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        AuthoritySet::new(authorities, self.threshold)
            .map_err(|e| anyhow::anyhow!("`directory.authorities`: {e}"))
    }

    /// The first authority's URL, for messages.
    pub fn first_url(&self) -> &str {
        self.authorities
            .first()
            .map_or(self.url.as_str(), |a| a.url.as_str())
    }
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

/// `[audit]`: the audit log of administrative events (docs/operations.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The log's file; relative paths are taken from `node.data_dir`.
    /// Default: `audit.jsonl` in `node.data_dir`.
    #[serde(default)]
    pub log: Option<PathBuf>,
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
    /// Which Sphinx implementation unwraps packets: `native` (our own, the
    /// default) or `reference` (`sphinx-packet`); both read the same bytes.
    pub sphinx_codec: SphinxCodecKind,
}

impl Default for ProcessingSection {
    fn default() -> Self {
        ProcessingSection {
            workers: 0,
            input_queue: 65_536,
            link_queue: 8_192,
            sphinx_codec: SphinxCodecKind::Native,
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
    /// `[audit]`
    pub audit: AuditSection,
}

impl NodeConfig {
    /// The node-side address announced to the network: `public_address`, or the one bound.
    pub fn public_address(&self, bound: SocketAddr) -> SocketAddr {
        self.node.public_address.unwrap_or(bound)
    }

    /// The audit log's file: `audit.log` (relative paths from `data_dir`),
    /// or `audit.jsonl` in `data_dir`.
    pub fn audit_log(&self) -> PathBuf {
        let data_dir = &self.node.data_dir;
        match &self.audit.log {
            Some(log) => data_dir.join(log),
            None => data_dir.join(audit::DEFAULT_FILE_NAME),
        }
    }

    /// Checks what parsing alone cannot; errors name `path` and the field.
    fn check(&self, path: &Path) -> Result<()> {
        if self.directory.authorities.is_empty() && self.directory.public_key.trim().is_empty() {
            bail!("{}: `directory.public_key` is empty", path.display());
        }
        if !self.directory.authorities.is_empty()
            && (!self.directory.url.is_empty() || !self.directory.public_key.is_empty())
        {
            bail!(
                "{}: `directory.url` and `directory.public_key` name one directory; with `[[directory.authorities]]` leave them out",
                path.display()
            );
        }
        if !self.directory.authorities.is_empty() {
            self.directory
                .authority_set()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// The sections a role adds to its node's config file.
pub trait RoleSections: DeserializeOwned {
    /// The name of the packet-processing section in this role's file:
    /// `mixing` or `processing`.
    const PROCESSING: &'static str;
    /// The role's own sections (each a type with `deny_unknown_fields`).
    const SECTIONS: &'static [&'static str];

    /// Checks what parsing alone cannot; errors name `path` and the field.
    fn check(&self, _path: &Path) -> Result<()> {
        Ok(())
    }
}

/// A node's whole config file: the runtime's sections and the role's.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFile<S> {
    /// The sections every node has.
    pub node: NodeConfig,
    /// The role's own sections.
    pub role: S,
    /// The audit event of this file being read: its path and the SHA-256
    /// of its bytes.
    pub loaded: AuditEvent,
}

/// The common sections as they stand in a file (the processing section
/// under either name; the other name is refused as an unknown section).
#[derive(Deserialize)]
struct CommonSections {
    node: NodeSection,
    directory: DirectorySection,
    metrics: MetricsSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    mixing: Option<ProcessingSection>,
    #[serde(default)]
    processing: Option<ProcessingSection>,
}

/// Reads and checks the node's config file at `path`.
pub fn load<S: RoleSections>(path: &Path) -> Result<NodeFile<S>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read config", path.display()))?;
    parse(path, &text)
}

/// Parses and checks `text`, the config file at `path`: one line of error
/// that names the file, and the field and line at fault.
pub fn parse<S: RoleSections>(path: &Path, text: &str) -> Result<NodeFile<S>> {
    let parse_error =
        |e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string()));
    let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
    let known: Vec<&str> = COMMON_SECTIONS
        .iter()
        .chain([&S::PROCESSING])
        .chain(S::SECTIONS)
        .copied()
        .collect();
    if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
        bail!(
            "{}: unknown section `{unknown}` (the sections are {})",
            path.display(),
            known.join(", ")
        );
    }
    let common: CommonSections = toml::from_str(text).map_err(parse_error)?;
    let role: S = toml::from_str(text).map_err(parse_error)?;
    let processing = match S::PROCESSING {
        "mixing" => common.mixing,
        "processing" => common.processing,
        other => bail!(
            "{}: no processing section is called `{other}`",
            path.display()
        ),
    };
    let node = NodeConfig {
        node: common.node,
        directory: common.directory,
        metrics: common.metrics,
        processing: processing.unwrap_or_default(),
        audit: common.audit,
    };
    node.check(path)?;
    role.check(path)?;
    Ok(NodeFile {
        node,
        role,
        loaded: AuditEvent::config_loaded(path, text.as_bytes()),
    })
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
    /// `[[directory.authorities]]` as (url, public key); empty for one directory.
    pub authorities: &'a [(String, String)],
    /// `directory.threshold`, with several authorities.
    pub threshold: Option<usize>,
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
            authorities: &[],
            threshold: None,
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
        let pin = if self.authorities.is_empty() {
            format!(
                r#"# Where the directory service answers (one authority).
url = "{directory}"
# The directory's public key (base58); topologies signed by any other key are refused.
public_key = "{directory_key}"
# With several directory authorities, leave out `url` and `public_key` and list
# each in a [[directory.authorities]] table (url, public_key) instead.
# threshold = 2
"#,
                directory = self.directory,
                directory_key = self.directory_key,
            )
        } else {
            let threshold = match self.threshold {
                Some(k) => format!("threshold = {k}\n"),
                None => "# threshold = 2\n".into(),
            };
            let tables: String = self
                .authorities
                .iter()
                .map(|(url, key)| {
                    format!(
                        "\n[[directory.authorities]]\nurl = \"{url}\"\npublic_key = \"{key}\"\n"
                    )
                })
                .collect();
            format!(
                r#"# Signatures of the authorities below a topology needs (default: more than
# half of them). The authorities publish changes to their set in the
# topology; the node follows them without editing this file.
{threshold}{tables}"#
            )
        };
        let (pin, tables) = match pin.find("\n[[") {
            Some(i) => pin.split_at(i + 1),
            None => (pin.as_str(), ""),
        };
        format!(
            r#"[directory]
{pin}# How often to fetch the topology, in milliseconds (at least every eighth of an epoch).
refresh_ms = {refresh}
{tables}
[metrics]
# Prometheus scrapes http://<listen>/metrics
listen = "{metrics}"
"#,
            refresh = default_refresh_ms(),
            metrics = self.metrics,
        )
    }

    /// The commented `[audit]` section.
    pub fn audit(&self) -> String {
        format!(
            r#"[audit]
# The audit log: administrative events only (start, stop, this file's
# SHA-256, key rotations, a gateway's client enrolments), hash-chained;
# never traffic. Check it with `<binary> audit verify FILE`.
# Default: {default} in `data_dir`; relative paths are taken from `data_dir`.
# log = "/var/log/mixnet/audit.jsonl"
"#,
            default = audit::DEFAULT_FILE_NAME,
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
# Sphinx implementation: "native" (our own, faster) or "reference" (the
# sphinx-packet crate, as a fallback). Both read the same packets.
sphinx_codec = "native"
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
    "threshold",
    "workers",
    "input_queue",
    "link_queue",
    "sphinx_codec",
    "log",
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A role with one section of its own.
    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Extra {
        #[serde(default)]
        extra: ExtraSection,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct ExtraSection {
        size: u32,
    }

    impl RoleSections for Extra {
        const PROCESSING: &'static str = "processing";
        const SECTIONS: &'static [&'static str] = &["extra"];

        fn check(&self, path: &Path) -> Result<()> {
            if self.extra.size > 9 {
                bail!("{}: `extra.size` is above 9", path.display());
            }
            Ok(())
        }
    }

    fn template(dir: &Path) -> String {
        let t = Template::example(dir);
        format!(
            "{}\n{}\n{}\n{}",
            t.node("the journal"),
            t.directory_and_metrics(),
            t.audit(),
            t.processing("processing")
        )
    }

    #[test]
    fn several_authorities_are_pinned_with_their_threshold() {
        let dir = Path::new("/var/lib/node");
        let keys: Vec<String> = (1..=3u8).map(|b| NodeId([b; 32]).to_base58()).collect();
        let authorities: Vec<(String, String)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("http://127.0.0.1:808{i}"), k.clone()))
            .collect();
        let t = Template {
            authorities: &authorities,
            threshold: Some(3),
            ..Template::example(dir)
        };
        let text = format!(
            "{}\n{}\n{}",
            t.node("the journal"),
            t.directory_and_metrics(),
            t.processing("processing")
        );
        let file = parse::<Extra>(Path::new("node.toml"), &text).unwrap();
        let set = file.node.directory.authority_set().unwrap();
        assert_eq!((set.len(), set.threshold), (3, 3));
        assert_eq!(file.node.directory.refresh_ms, default_refresh_ms());
        // A threshold of half the set or less is refused, naming the field.
        let e = error(&text.replace("threshold = 3", "threshold = 1"));
        assert!(
            e.contains("directory.authorities") && e.contains("threshold"),
            "{e}"
        );
        // One directory and a list at once is refused.
        let e = error(&text.replace("[directory]", "[directory]\nurl = \"http://x\""));
        assert!(e.contains("directory.url"), "{e}");
    }

    fn error(text: &str) -> String {
        parse::<Extra>(Path::new("/etc/bad.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_common_sections_parse_to_their_defaults_and_name_every_key() {
        let dir = Path::new("/var/lib/node");
        let text = template(dir);
        let file = parse::<Extra>(Path::new("node.toml"), &text).unwrap();
        let c = &file.node;
        assert_eq!(c.processing, ProcessingSection::default());
        assert_eq!(c.directory.refresh_ms, default_refresh_ms());
        assert_eq!(c.node.data_dir, dir);
        assert_eq!(c.metrics.listen.port(), 9100);
        assert_eq!(c.public_address(c.node.listen), c.node.listen);
        assert_eq!(file.role, Extra::default());
        assert_eq!(c.audit_log(), dir.join("audit.jsonl"));
        let AuditEvent::ConfigLoaded { path, sha256 } = &file.loaded else {
            panic!("{:?}", file.loaded);
        };
        assert_eq!(path, "node.toml");
        assert_eq!(*sha256, audit::sha256_hex(text.as_bytes()));
        let elsewhere = text.replace("# log = ", "log = ");
        let file = parse::<Extra>(Path::new("node.toml"), &elsewhere).unwrap();
        assert_eq!(
            file.node.audit_log(),
            Path::new("/var/log/mixnet/audit.jsonl")
        );
        let relative = text.replace("# log = \"/var/log/mixnet/", "log = \"logs/");
        let file = parse::<Extra>(Path::new("node.toml"), &relative).unwrap();
        assert_eq!(file.node.audit_log(), dir.join("logs/audit.jsonl"));
        for key in TEMPLATE_KEYS {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
        let with_extra = format!("{text}\n[extra]\nsize = 3\n");
        let file = parse::<Extra>(Path::new("node.toml"), &with_extra).unwrap();
        assert_eq!(file.role.extra.size, 3);
    }

    #[test]
    fn errors_name_the_file_and_field_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[node]\nlisten = \"nope\"\n").unwrap();
        let e = load::<Extra>(&path).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        assert!(e.contains("listen"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let missing = load::<Extra>(&dir.path().join("missing.toml")).unwrap_err();
        assert!(format!("{missing:#}").contains("missing.toml"));

        let good = template(dir.path());
        for (text, names) in [
            (
                good.replace("public_key = \"KEY\"", "public_key = \" \""),
                "directory.public_key",
            ),
            (good.replace("workers = 0", "workers = \"all\""), "workers"),
            (good.replace("[metrics]", "[metrics]\nlisen = 1"), "lisen"),
            (format!("{good}\n[extra]\nsize = 10\n"), "extra.size"),
            (format!("{good}\n[extra]\nsise = 1\n"), "sise"),
            (format!("{good}\n[mixing]\n"), "unknown section `mixing`"),
            (format!("stray = 1\n{good}"), "unknown section `stray`"),
        ] {
            let e = error(&text);
            assert!(e.contains("bad.toml") && e.contains(names), "{names}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
