//! The directory's config file and key file.
//!
//! One TOML file: where to listen, where the key and the database live, the
//! network-wide parameters the directory publishes (among them the genesis
//! time every party derives epoch numbers from). Relative paths are read from the
//! config file's folder, so a data folder can be moved as a whole. Every error
//! names the file, and the line and field when there is one, in one line.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use protocol::{IdentityKeyPair, NodeId};
use serde::Deserialize;
use thiserror::Error;

use topology::authority::{Authority, AuthoritySet};
use topology::params::{EpochClock, NetworkParams, RateProfile};

/// Name of the key file `directory init` writes.
pub const KEY_FILE: &str = "directory.key";
/// Name of the config file `directory init` writes.
pub const CONFIG_FILE: &str = "directory.toml";

/// What is wrong with a config or key file; the message names the file.
#[derive(Debug, Error)]
#[error("{}: {reason}", path.display())]
pub struct ConfigError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong, with the line and field when known.
    pub reason: String,
}

impl ConfigError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The directory's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// The directory's Ed25519 key (32 raw bytes, mode 0600).
    pub key_file: PathBuf,
    /// The redb database of descriptors and published topologies.
    pub db_path: PathBuf,
    /// The audit log of administrative events (docs/operations.md).
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// Epochs a node may stay silent and still be listed.
    #[serde(default = "default_max_absent_epochs")]
    pub max_absent_epochs: u64,
    /// Most nodes the directory keeps.
    #[serde(default = "default_max_nodes")]
    pub max_nodes: usize,
    /// If not empty, only these nodes may register (base58 ids).
    #[serde(
        default,
        deserialize_with = "topology::serde_keys::node_id_list::deserialize"
    )]
    pub allowed_nodes: Vec<NodeId>,
    /// The directory authorities of the network, this one included; empty
    /// for a network with this one authority only.
    #[serde(default)]
    pub authorities: Vec<AuthorityConfig>,
    /// Signatures a consensus needs; default: more than half of `authorities`.
    #[serde(default)]
    pub threshold: Option<usize>,
    /// Length of a voting round, seconds (every authority must use the same).
    #[serde(default = "default_round_secs")]
    pub round_secs: u64,
    /// Network-wide parameters published in every topology.
    #[serde(default)]
    pub network: NetworkParams,
    /// A named set of rates that replaces `network.lambda_p` and
    /// `network.mean_delay_ms` (`quiet` or `fast`).
    #[serde(default)]
    pub rate_profile: Option<RateProfile>,
}

/// One `[[authorities]]` entry: a directory authority's key and URL.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    /// Base URL of its HTTP API.
    pub url: String,
    /// Its Ed25519 public key, base58.
    #[serde(deserialize_with = "deserialize_node_id")]
    pub public_key: NodeId,
}

fn deserialize_node_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
    let text = String::deserialize(d)?;
    NodeId::from_base58(&text).map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
}

fn default_audit_log() -> PathBuf {
    PathBuf::from(audit::DEFAULT_FILE_NAME)
}

fn default_round_secs() -> u64 {
    300
}

fn default_max_absent_epochs() -> u64 {
    2
}

fn default_max_nodes() -> usize {
    10_000
}

impl DirectoryConfig {
    /// Reads and checks `path`; relative paths inside are taken from its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
        Self::from_file_text(path, &text)
    }

    /// Parses and checks `text`, read from `path`; relative paths inside
    /// are taken from its folder.
    pub fn from_file_text(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::parse(text).map_err(|reason| ConfigError::new(path, reason))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.key_file = base.join(&config.key_file);
        config.db_path = base.join(&config.db_path);
        config.audit_log = base.join(&config.audit_log);
        Ok(config)
    }

    /// Parses and checks config text; the error names the line and field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config: DirectoryConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text
                        .get(..span.start)
                        .map_or(0, |t| t.lines().count().max(1));
                    let line = if text.get(..span.start).is_some_and(|t| t.ends_with('\n')) {
                        line + 1
                    } else {
                        line
                    };
                    let source = text
                        .lines()
                        .nth(line.saturating_sub(1))
                        .unwrap_or("")
                        .trim();
                    format!("line {line} (`{source}`): {message}")
                }
                None => message,
            }
        })?;
        if let Some(profile) = config.rate_profile {
            profile.apply(&mut config.network);
        }
        config
            .network
            .validate()
            .map_err(|e| format!("[network]: {e}"))?;
        if config.max_nodes == 0 {
            return Err("max_nodes must be at least 1".into());
        }
        if config.round_secs == 0 {
            return Err("round_secs must be at least 1".into());
        }
        if !config.authorities.is_empty() {
            config
                .authority_set()
                .map_err(|e| format!("[[authorities]]: {e}"))?;
        } else if config.threshold.is_some() {
            return Err("threshold is set but there are no [[authorities]]".into());
        }
        Ok(config)
    }

    /// The authority set of `[[authorities]]` and `threshold` (refused when
    /// empty: a directory alone uses [`AuthoritySet::single`]).
    pub fn authority_set(&self) -> Result<AuthoritySet, topology::TopologyError> {
        AuthoritySet::new(
            self.authorities
                .iter()
                .map(|a| Authority {
                    id: a.public_key,
                    url: a.url.trim_end_matches('/').to_string(),
                })
                .collect(),
            self.threshold,
        )
    }

    /// Whether this directory is one of several authorities that vote.
    pub fn votes(&self) -> bool {
        !self.authorities.is_empty()
    }

    /// The epoch clock every party derives from these settings.
    pub fn epoch_clock(&self) -> EpochClock {
        self.network.epoch_clock()
    }

    /// The commented config `directory init` writes by default.
    pub fn example(genesis_unix_secs: u64) -> String {
        let network = NetworkParams {
            genesis_unix_secs,
            ..NetworkParams::default()
        };
        Self::template(SocketAddr::from(([127, 0, 0, 1], 8080)), &network)
    }

    /// A commented config listening on `listen` and publishing `network`,
    /// as the network's only authority.
    pub fn template(listen: SocketAddr, network: &NetworkParams) -> String {
        Self::template_voting(listen, network, &Voting::default())
    }

    /// A commented config listening on `listen`, publishing `network`, and
    /// voting with the authorities of `voting` (none: the only authority).
    pub fn template_voting(listen: SocketAddr, network: &NetworkParams, voting: &Voting) -> String {
        let n = network;
        let genesis_unix_secs = n.genesis_unix_secs;
        let threshold = match voting.threshold {
            Some(k) => format!("threshold = {k}"),
            None => "# threshold = 2".to_string(),
        };
        let authorities: String = if voting.authorities.is_empty() {
            "#   [[authorities]]\n#   url = \"http://10.0.0.1:8080\"\n#   public_key = \"<base58>\"\n"
                .to_string()
        } else {
            voting
                .authorities
                .iter()
                .map(|(url, key)| format!("[[authorities]]\nurl = {url:?}\npublic_key = {key:?}\n"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            r#"# Directory of the mixnet: collects signed node descriptors and publishes
# one signed topology per epoch over HTTP.

# Address of the HTTP API (POST /v1/descriptors, GET /v1/topology[/{{epoch}}]).
listen = "{listen}"
# The directory's Ed25519 key; clients and nodes pin its public half.
# Relative paths are read from this file's folder.
key_file = "{KEY_FILE}"
# Embedded database (redb) of descriptors and published topologies.
db_path = "directory.redb"
# The audit log: administrative events only (start, stop, this file's SHA-256,
# votes published, documents signed), hash-chained; never traffic. Check it
# with `directory audit verify FILE`.
audit_log = "{audit_log}"
# A node that has not registered for more than this many epochs drops out.
max_absent_epochs = {}
# Most nodes the directory keeps.
max_nodes = {}
# Node ids (base58) allowed to register; empty = anyone with a valid descriptor.
# With several authorities, a node is listed only if a majority lets it in.
allowed_nodes = []
# A named set of client rates for the whole network, replacing lambda_p and
# mean_delay_ms below: "quiet" (10/s, 50 ms) or "fast" (100/s, 20 ms, for
# byte streams; see docs/streams.md). Absent: the values below.
# rate_profile = "fast"
# Length of a voting round, seconds; every authority must use the same value.
# Each round agrees on one consensus (a revision of the current epoch, or the
# next epoch's first one). Unused by a directory that is the only authority.
round_secs = {}
# Signatures a consensus needs (default: more than half of the authorities).
{threshold}
# The directory authorities of the network, this one included, each with its
# [[authorities]] table (url, public_key). None: this directory is the only
# authority (n = k = 1) and publishes alone.
{authorities}

# Network-wide parameters, published in every topology document.
[network]
# Start of epoch 0 in unix seconds. epoch = floor((now - genesis) / epoch length).
# Every node and client derives epoch numbers from this value: never change it.
genesis_unix_secs = {genesis_unix_secs}
# Length of a key epoch, seconds.
epoch_length_secs = {}
# Mean of the exponential per-hop delay, milliseconds.
mean_delay_ms = {}
# Longest per-hop delay a node honours, milliseconds.
max_delay_ms = {}
# Client sending rate, real or drop cover (per second).
lambda_p = {:?}
# Client loop cover rate (per second).
lambda_l = {:?}
# Client extra drop cover rate (per second; 0 = drop cover only through lambda_p).
lambda_d = {:?}
# Mix node loop cover rate (per second).
lambda_m = {:?}
# Bytes of every packet on every link (fixed by the software).
packet_size = {}
"#,
            default_max_absent_epochs(),
            default_max_nodes(),
            voting.round_secs.unwrap_or_else(default_round_secs),
            n.epoch_length.as_secs(),
            n.mean_delay.as_millis(),
            n.max_delay.as_millis(),
            n.lambda_p,
            n.lambda_l,
            n.lambda_d,
            n.lambda_m,
            n.packet_size,
            audit_log = audit::DEFAULT_FILE_NAME,
        )
    }
}

/// The voting part of a config `directory init` writes.
#[derive(Clone, Debug, Default)]
pub struct Voting {
    /// Every authority of the network as (URL, base58 key), this one included.
    pub authorities: Vec<(String, String)>,
    /// Signatures a consensus needs (default: a majority).
    pub threshold: Option<usize>,
    /// Length of a voting round, seconds (default 300).
    pub round_secs: Option<u64>,
}

/// Reads an `--authority URL,KEY` flag (the directory's and the nodes'):
/// an http(s) URL and a base58 authority key.
pub fn parse_authority_flag(text: &str) -> Result<(String, String), String> {
    let (url, key) = text
        .split_once(',')
        .ok_or_else(|| format!("`{text}`: expected URL,KEY"))?;
    let (url, key) = (url.trim(), key.trim());
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 256 {
        return Err(format!(
            "`{url}`: not an authority URL (http:// or https://, at most 256 bytes)"
        ));
    }
    NodeId::from_base58(key).map_err(|e| format!("`{key}`: not an authority key: {e}"))?;
    Ok((url.to_string(), key.to_string()))
}

/// Writes a new key file (mode 0600); refuses to overwrite one.
pub fn write_key_file(path: &Path, key: &IdentityKeyPair) -> Result<(), ConfigError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ConfigError::new(path, format!("cannot create key file: {e}")))?;
    file.write_all(key.secret_bytes().as_slice())
        .and_then(|()| file.sync_all())
        .map_err(|e| ConfigError::new(path, format!("cannot write key file: {e}")))
}

/// Reads a key file written by [`write_key_file`].
pub fn read_key_file(path: &Path) -> Result<IdentityKeyPair, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(path, format!("cannot read key file: {e}")))?;
    let secret = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        ConfigError::new(
            path,
            format!("a key file holds 32 bytes, this one {}", bytes.len()),
        )
    })?;
    Ok(IdentityKeyPair::from_secret_bytes(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn example_parses_to_the_defaults_and_names_every_key() {
        let text = DirectoryConfig::example(1_700_000_000);
        let c = DirectoryConfig::parse(&text).unwrap();
        assert_eq!(
            c.network,
            NetworkParams {
                genesis_unix_secs: 1_700_000_000,
                ..NetworkParams::default()
            }
        );
        assert_eq!(c.max_absent_epochs, 2);
        assert_eq!(c.max_nodes, 10_000);
        for key in [
            "listen",
            "key_file",
            "db_path",
            "audit_log",
            "genesis_unix_secs",
            "max_absent_epochs",
            "max_nodes",
            "allowed_nodes",
            "round_secs",
            "epoch_length_secs",
            "mean_delay_ms",
            "max_delay_ms",
            "lambda_p",
            "lambda_l",
            "lambda_d",
            "lambda_m",
            "packet_size",
        ] {
            assert!(text.contains(&format!("\n{key} = ")), "{key} missing");
        }
    }

    #[test]
    fn a_voting_template_lists_the_authorities_and_parses() {
        let keys: Vec<String> = (1..=3u8)
            .map(|b| {
                IdentityKeyPair::from_secret_bytes(&[b; 32])
                    .node_id()
                    .to_base58()
            })
            .collect();
        let voting = Voting {
            authorities: keys
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("http://10.0.0.{i}:8080"), k.clone()))
                .collect(),
            threshold: Some(3),
            round_secs: Some(60),
        };
        let network = NetworkParams {
            genesis_unix_secs: 5,
            ..NetworkParams::default()
        };
        let text = DirectoryConfig::template_voting(
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            &network,
            &voting,
        );
        let c = DirectoryConfig::parse(&text).unwrap();
        assert_eq!(c.round_secs, 60);
        let set = c.authority_set().unwrap();
        assert_eq!((set.len(), set.threshold), (3, 3));
        assert_eq!(c.network, network);
        assert!(parse_authority_flag(&format!("http://x:1,{}", keys[0])).is_ok());
        for bad in [
            format!("htp://x:1,{}", keys[0]),
            "http://x:1,notakey".to_string(),
            keys[0].clone(),
        ] {
            assert!(parse_authority_flag(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rate_profile_replaces_the_rates() {
        let text = DirectoryConfig::example(1)
            .replace("# rate_profile = \"fast\"", "rate_profile = \"fast\"");
        let c = DirectoryConfig::parse(&text).unwrap();
        assert_eq!(c.network.lambda_p, 100.0);
        assert_eq!(c.network.mean_delay, std::time::Duration::from_millis(20));
        let text = DirectoryConfig::example(1)
            .replace("# rate_profile = \"fast\"", "rate_profile = \"warp\"");
        assert!(DirectoryConfig::parse(&text).is_err());
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let text = DirectoryConfig::example(1)
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\"");
        let e = DirectoryConfig::parse(&text).unwrap_err();
        assert!(e.contains("line 5") && e.contains("listen"), "{e}");
        assert!(!e.contains('\n'));
        let text = DirectoryConfig::example(1).replace("mean_delay_ms = 50", "mean_delay_ms = 0");
        assert!(
            DirectoryConfig::parse(&text)
                .unwrap_err()
                .contains("mean_delay_ms")
        );
        let text =
            DirectoryConfig::example(1).replace("allowed_nodes = []", "allowed_nodes = [\"xyz\"]");
        let e = DirectoryConfig::parse(&text).unwrap_err();
        assert!(e.contains("allowed_nodes") && e.contains("xyz"), "{e}");
        let e = DirectoryConfig::parse("bogus = 1").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        let e = DirectoryConfig::load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn the_audit_log_is_beside_the_config_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        let text = DirectoryConfig::example(1);
        let c = DirectoryConfig::from_file_text(&path, &text).unwrap();
        assert_eq!(c.audit_log, dir.path().join("audit.jsonl"));
        let without = text.replace("audit_log = \"audit.jsonl\"\n", "");
        let c = DirectoryConfig::from_file_text(&path, &without).unwrap();
        assert_eq!(c.audit_log, dir.path().join("audit.jsonl"));
        let elsewhere = text.replace(
            "audit_log = \"audit.jsonl\"",
            "audit_log = \"/var/log/a.jsonl\"",
        );
        let c = DirectoryConfig::from_file_text(&path, &elsewhere).unwrap();
        assert_eq!(c.audit_log, Path::new("/var/log/a.jsonl"));
    }

    #[test]
    fn key_file_is_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let key = IdentityKeyPair::from_secret_bytes(&[7; 32]);
        write_key_file(&path, &key).unwrap();
        assert!(write_key_file(&path, &key).is_err());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_key_file(&path).unwrap().node_id(), key.node_id());
        std::fs::write(&path, b"short").unwrap();
        let e = read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains(KEY_FILE) && e.contains("32 bytes"), "{e}");
    }
}
