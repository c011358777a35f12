//! A whole network on loopback: directory authorities, mix nodes and gateways.
//!
//! Every node is a real process started from the project's binaries with
//! fresh keys in a temporary folder; ports are picked free on 127.0.0.1.
//! The same code serves the `localnet` command and the end-to-end tests.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::keys::NodeId;

use crate::error::LocalnetError;
use crate::process::{
    NodeProcess, STOP_GRACE, StopOutcome, binary, is_stopping, run_to_completion, stop_all,
};

/// How long a node may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shape and parameters of a local network.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    /// Mix nodes in each of the three layers.
    pub mix_per_layer: usize,
    /// Gateways.
    pub gateways: usize,
    /// Key epoch length in seconds.
    pub epoch_secs: u64,
    /// Mean per-hop delay in milliseconds.
    pub mean_delay_ms: u64,
    /// Client sending rate λ_P (per second).
    pub lambda_p: f64,
    /// Client loop cover rate λ_L (per second).
    pub lambda_l: f64,
    /// Mix node loop cover rate λ_M (per second).
    pub lambda_m: f64,
    /// How often nodes fetch the topology, in milliseconds.
    pub refresh_ms: u64,
    /// Packets a mix node holds for its workers before dropping (its `input_queue`).
    pub input_queue: usize,
    /// Directory authorities: 1 publishes alone; more vote every
    /// `round_secs` and sign a consensus with a majority.
    pub authorities: usize,
    /// Length of the authorities' voting round, seconds.
    pub round_secs: u64,
    /// Region labels of the mix nodes: mix `i` gets `mix_regions[i % len]`
    /// (none when empty). The directory spreads each region over the layers.
    pub mix_regions: Vec<String>,
    /// Region labels of the gateways, the same way.
    pub gateway_regions: Vec<String>,
    /// The gateways' `[mailbox] group_commit_ms`; `None`: the gateway's default.
    pub group_commit_ms: Option<u64>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            mix_per_layer: 2,
            gateways: 0,
            epoch_secs: 600,
            mean_delay_ms: 20,
            lambda_p: 20.0,
            lambda_l: 2.0,
            lambda_m: 2.0,
            refresh_ms: 500,
            input_queue: 65_536,
            authorities: 1,
            round_secs: 1,
            mix_regions: Vec::new(),
            gateway_regions: Vec::new(),
            group_commit_ms: None,
        }
    }
}

/// What a node of the local network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// A mix node (`mixnode` binary).
    Mix,
    /// A gateway (`gateway` binary).
    Gateway,
}

impl NodeRole {
    fn binary(self) -> &'static str {
        match self {
            NodeRole::Mix => "mixnode",
            NodeRole::Gateway => "gateway",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            NodeRole::Mix => "mix",
            NodeRole::Gateway => "gateway",
        }
    }
}

/// A node (mix node or gateway) of the local network.
pub struct LocalNode {
    /// Its process.
    pub process: NodeProcess,
    /// Mix node or gateway.
    pub role: NodeRole,
    /// Its identity.
    pub id: NodeId,
    /// Its QUIC address for nodes.
    pub address: SocketAddr,
    /// Its QUIC address for clients (gateways).
    pub client_address: Option<SocketAddr>,
    /// Its `/metrics` URL.
    pub metrics_url: String,
    /// Its folder (keys, config, journal, mailbox).
    pub dir: PathBuf,
    /// Its number among the nodes of its role.
    pub index: usize,
}

/// A directory authority of the local network.
pub struct LocalAuthority {
    /// Its process.
    pub process: NodeProcess,
    /// Its base URL.
    pub url: String,
    /// Its public key.
    pub key: NodeId,
}

/// A running local network.
pub struct LocalNet {
    root: tempfile::TempDir,
    /// The first directory authority's process.
    pub directory: NodeProcess,
    /// The first directory authority's base URL.
    pub directory_url: String,
    /// The first directory authority's public key.
    pub directory_key: NodeId,
    /// The other directory authorities (none with one authority).
    pub other_authorities: Vec<LocalAuthority>,
    /// The mix nodes.
    pub mixnodes: Vec<LocalNode>,
    /// The gateways.
    pub gateways: Vec<LocalNode>,
    spec: NetworkSpec,
}

/// Ports this process handed out already: the probe sockets are closed
/// before a node binds, and the OS may offer a just-closed port again.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free port on 127.0.0.1 for both TCP and UDP (QUIC), never the same
/// twice in one process.
pub fn free_port() -> Result<u16, LocalnetError> {
    let mut handed = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..200 {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| LocalnetError::Io("port".into(), e.to_string()))?;
        let port = tcp
            .local_addr()
            .map_err(|e| LocalnetError::Io("port".into(), e.to_string()))?
            .port();
        if !handed.contains(&port) && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return Ok(port);
        }
    }
    Err(LocalnetError::Io("port".into(), "no free port".into()))
}

fn io(path: &Path, e: std::io::Error) -> LocalnetError {
    LocalnetError::Io(path.display().to_string(), e.to_string())
}

impl LocalNet {
    /// Starts a directory, `3 × mix_per_layer` mix nodes and the gateways; returns once all are ready.
    pub fn start(spec: NetworkSpec) -> Result<Self, LocalnetError> {
        let mut root = tempfile::Builder::new()
            .prefix("mixnet-localnet-")
            .tempdir()
            .map_err(|e| LocalnetError::Io("temporary folder".into(), e.to_string()))?;
        // LOCALNET_KEEP=1 keeps the folder (keys, configs, logs) for a post-mortem.
        if std::env::var_os("LOCALNET_KEEP").is_some() {
            root.disable_cleanup(true);
            eprintln!("localnet folder: {}", root.path().display());
        }
        let mut authorities = start_authorities(root.path(), &spec)?.into_iter();
        let first = authorities.next().ok_or_else(|| {
            LocalnetError::Failed("directory".into(), "no authority started".into())
        })?;
        let mut net = LocalNet {
            root,
            directory: first.process,
            directory_url: first.url,
            directory_key: first.key,
            other_authorities: authorities.collect(),
            mixnodes: Vec::new(),
            gateways: Vec::new(),
            spec,
        };
        for i in 0..net.spec.mix_per_layer * 3 {
            let node = net.start_node_retrying(NodeRole::Mix, i)?;
            net.mixnodes.push(node);
        }
        for i in 0..net.spec.gateways {
            let node = net.start_node_retrying(NodeRole::Gateway, i)?;
            net.gateways.push(node);
        }
        Ok(net)
    }

    /// Starts a node; if it exits before it is ready (e.g. another process
    /// took one of its ports between the probe and its bind), starts it
    /// again with fresh ports in a fresh folder, up to three times.
    fn start_node_retrying(&self, role: NodeRole, i: usize) -> Result<LocalNode, LocalnetError> {
        let mut attempt = 0;
        loop {
            match self.start_node(role, i, attempt) {
                Err(LocalnetError::NotReady(name, why)) if attempt < 2 && !is_stopping() => {
                    eprintln!("localnet: {name} did not start ({why}); trying again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The network's temporary folder.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The parameters the network was started with.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    fn start_node(
        &self,
        role: NodeRole,
        i: usize,
        attempt: usize,
    ) -> Result<LocalNode, LocalnetError> {
        let name = match attempt {
            0 => format!("{}{i}", role.prefix()),
            n => format!("{}{i}-{n}", role.prefix()),
        };
        let dir = self.root.path().join(name);
        let address: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let metrics_port = free_port()?;
        let client_address: Option<SocketAddr> = match role {
            NodeRole::Mix => None,
            NodeRole::Gateway => Some(([127, 0, 0, 1], free_port()?).into()),
        };
        let dir_arg = dir.display().to_string();
        let address_arg = address.to_string();
        let metrics_arg = format!("127.0.0.1:{metrics_port}");
        let clients_arg = client_address.map(|a| a.to_string()).unwrap_or_default();
        let pin_args = self.pin_args();
        let mut args = vec![
            "init",
            "--dir",
            &dir_arg,
            "--listen",
            &address_arg,
            "--metrics",
            &metrics_arg,
        ];
        args.extend(pin_args.iter().map(String::as_str));
        if client_address.is_some() {
            args.extend(["--clients", clients_arg.as_str()]);
        }
        let out = run_to_completion(&binary(role.binary()), &args)?;
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("identity "))
            .and_then(|t| NodeId::from_base58(t.trim()).ok())
            .ok_or_else(|| {
                LocalnetError::Failed(
                    format!("{} init", role.binary()),
                    "no identity printed".into(),
                )
            })?;
        let config_path = dir.join("config.toml");
        let text = std::fs::read_to_string(&config_path).map_err(|e| io(&config_path, e))?;
        let text = text
            .replace(
                "refresh_ms = 30000",
                &format!("refresh_ms = {}", self.spec.refresh_ms),
            )
            .replace(
                "input_queue = 65536",
                &format!("input_queue = {}", self.spec.input_queue),
            )
            // Every client of a local network connects from 127.0.0.1: the
            // limits per source address would count them all as one.
            .replace(
                "source_sessions_burst = 60",
                "source_sessions_burst = 100000",
            )
            .replace(
                "source_sessions_per_minute = 60",
                "source_sessions_per_minute = 100000",
            )
            .replace(
                "source_registrations_burst = 100",
                "source_registrations_burst = 100000",
            )
            .replace(
                "source_registrations_per_hour = 120",
                "source_registrations_per_hour = 100000",
            );
        let labels = match role {
            NodeRole::Mix => &self.spec.mix_regions,
            NodeRole::Gateway => &self.spec.gateway_regions,
        };
        let text = match self.spec.group_commit_ms {
            Some(ms) => text.replace("group_commit_ms = 10", &format!("group_commit_ms = {ms}")),
            None => text,
        };
        let text = match labels.get(i.checked_rem(labels.len()).unwrap_or(0)) {
            Some(region) => text.replace("# region = \"eu\"", &format!("region = \"{region}\"")),
            None => text,
        };
        std::fs::write(&config_path, text).map_err(|e| io(&config_path, e))?;
        let process = run_node(role, i, &dir)?;
        Ok(LocalNode {
            process,
            role,
            id,
            address,
            client_address,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            dir,
            index: i,
        })
    }

    /// The arguments that pin this network's directory (or authorities), as
    /// every node's and client's `init` takes them.
    pub fn pin_args(&self) -> Vec<String> {
        if self.other_authorities.is_empty() {
            return vec![
                "--directory".into(),
                self.directory_url.clone(),
                "--directory-key".into(),
                self.directory_key.to_base58(),
            ];
        }
        self.authorities()
            .into_iter()
            .flat_map(|(url, key)| ["--authority".into(), format!("{url},{}", key.to_base58())])
            .collect()
    }

    /// Every authority's URL and key, the first one first.
    pub fn authorities(&self) -> Vec<(String, NodeId)> {
        std::iter::once((self.directory_url.clone(), self.directory_key))
            .chain(
                self.other_authorities
                    .iter()
                    .map(|a| (a.url.clone(), a.key)),
            )
            .collect()
    }

    /// Kills directory authority `i` (0 is the first) at once (SIGKILL).
    pub fn kill_authority(&mut self, i: usize) {
        match i {
            0 => self.directory.kill(),
            i => {
                if let Some(a) = self.other_authorities.get_mut(i - 1) {
                    a.process.kill();
                }
            }
        }
    }

    /// The folder of directory authority `i` (0 is the first): key, config, database, log.
    pub fn authority_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(match i {
            0 => "directory".to_string(),
            i => format!("directory{i}"),
        })
    }

    fn authority_process(&mut self, i: usize) -> Option<&mut NodeProcess> {
        match i {
            0 => Some(&mut self.directory),
            i => self
                .other_authorities
                .get_mut(i - 1)
                .map(|a| &mut a.process),
        }
    }

    /// Starts directory authority `i` again (after a kill) with its key,
    /// config and database; returns once it serves.
    pub fn restart_authority(&mut self, i: usize) -> Result<(), LocalnetError> {
        let dir = self.authority_dir(i);
        let config = dir.join("directory.toml").display().to_string();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "directory".into());
        let mut process = NodeProcess::spawn(
            &name,
            &binary("directory"),
            &["run", "--config", &config],
            &dir.join("directory.log"),
        )?;
        process.wait_for_line("directory", READY_TIMEOUT)?;
        if let Some(slot) = self.authority_process(i) {
            slot.kill();
            *slot = process;
        }
        Ok(())
    }

    /// Replaces the key of directory authority `i` as its operators would:
    /// the old key file is kept as `directory.key.retired`, a new key is
    /// made, every authority's config names the new key instead of the old
    /// one, and every authority restarts. Returns the new key.
    pub fn replace_authority_key(&mut self, i: usize) -> Result<NodeId, LocalnetError> {
        let n = self.authorities().len();
        let old = self
            .authorities()
            .get(i)
            .map(|(_, key)| *key)
            .ok_or_else(|| LocalnetError::Failed("replace".into(), format!("no authority {i}")))?;
        for j in 0..n {
            if let Some(p) = self.authority_process(j) {
                p.kill();
            }
        }
        let dir = self.authority_dir(i);
        let key_file = dir.join("directory.key");
        std::fs::rename(&key_file, dir.join("directory.key.retired"))
            .map_err(|e| io(&key_file, e))?;
        let out = run_to_completion(
            &binary("directory"),
            &["key", "--dir", &dir.display().to_string()],
        )?;
        let new = out
            .lines()
            .find_map(|l| l.strip_prefix("directory key: "))
            .and_then(|t| NodeId::from_base58(t.trim()).ok())
            .ok_or_else(|| {
                LocalnetError::Failed("directory key".into(), "no key printed".into())
            })?;
        for j in 0..n {
            let path = self.authority_dir(j).join("directory.toml");
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let text = text.replace(&old.to_base58(), &new.to_base58());
            std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        }
        match i {
            0 => self.directory_key = new,
            i => {
                if let Some(a) = self.other_authorities.get_mut(i - 1) {
                    a.key = new;
                }
            }
        }
        for j in 0..n {
            self.restart_authority(j)?;
        }
        Ok(new)
    }

    /// Kills mix node `i` at once (SIGKILL).
    pub fn kill_mixnode(&mut self, i: usize) {
        if let Some(n) = self.mixnodes.get_mut(i) {
            n.process.kill();
        }
    }

    /// Starts mix node `i` again with its keys and state.
    pub fn restart_mixnode(&mut self, i: usize) -> Result<(), LocalnetError> {
        let dir =
            self.mixnodes.get(i).map(|n| n.dir.clone()).ok_or_else(|| {
                LocalnetError::Failed("restart".into(), format!("no mix node {i}"))
            })?;
        let process = run_node(NodeRole::Mix, i, &dir)?;
        if let Some(n) = self.mixnodes.get_mut(i) {
            n.process = process;
        }
        Ok(())
    }

    /// Kills gateway `i` at once (SIGKILL).
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(n) = self.gateways.get_mut(i) {
            n.process.kill();
        }
    }

    /// Starts gateway `i` again with its keys and mailbox.
    pub fn restart_gateway(&mut self, i: usize) -> Result<(), LocalnetError> {
        let dir =
            self.gateways.get(i).map(|n| n.dir.clone()).ok_or_else(|| {
                LocalnetError::Failed("restart".into(), format!("no gateway {i}"))
            })?;
        let process = run_node(NodeRole::Gateway, i, &dir)?;
        if let Some(n) = self.gateways.get_mut(i) {
            n.process = process;
        }
        Ok(())
    }

    /// Stops the directory (SIGTERM); returns whether it exited cleanly.
    pub fn stop_directory(&mut self) -> bool {
        self.directory.stop(Duration::from_secs(3))
    }

    /// Stops every process of the network at once: SIGTERM to all of them,
    /// one wait for all, SIGKILL for those still running after the grace
    /// period. Dropping the network does the same.
    pub fn stop(&mut self) -> StopOutcome {
        let nodes = self.mixnodes.iter_mut().chain(self.gateways.iter_mut());
        stop_all(
            nodes
                .map(|n| &mut n.process)
                .chain(std::iter::once(&mut self.directory))
                .chain(self.other_authorities.iter_mut().map(|a| &mut a.process)),
            STOP_GRACE,
        )
    }
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        // Before the fields drop: each process would otherwise be stopped in
        // turn, and the folder removed while they still run.
        let _ = self.stop();
    }
}

fn run_node(role: NodeRole, i: usize, dir: &Path) -> Result<NodeProcess, LocalnetError> {
    let config = dir.join("config.toml").display().to_string();
    let mut process = NodeProcess::spawn(
        &format!("{}{i}", role.prefix()),
        &binary(role.binary()),
        &["run", "--config", &config],
        &dir.join(format!("{}.log", role.binary())),
    )?;
    process.wait_for_line("ready", READY_TIMEOUT)?;
    Ok(process)
}

/// Starts the directory authorities of `spec`: one publishing alone, or
/// several that vote, each knowing the others.
fn start_authorities(
    root: &Path,
    spec: &NetworkSpec,
) -> Result<Vec<LocalAuthority>, LocalnetError> {
    let bin = binary("directory");
    let n = spec.authorities.max(1);
    let mut made = Vec::new();
    for i in 0..n {
        let dir = root.join(match i {
            0 => "directory".to_string(),
            i => format!("directory{i}"),
        });
        let out = run_to_completion(&bin, &["init", "--dir", &dir.display().to_string()])?;
        let key = out
            .lines()
            .find_map(|l| l.strip_prefix("directory key: "))
            .and_then(|t| NodeId::from_base58(t.trim()).ok())
            .ok_or_else(|| {
                LocalnetError::Failed("directory init".into(), "no key printed".into())
            })?;
        made.push((dir, free_port()?, key));
    }
    let tables: String = if n > 1 {
        made.iter()
            .map(|(_, port, key)| {
                format!(
                    "[[authorities]]\nurl = \"http://127.0.0.1:{port}\"\npublic_key = \"{}\"\n\n",
                    key.to_base58()
                )
            })
            .collect()
    } else {
        String::new()
    };
    #[allow(clippy::disallowed_methods)] // the network's genesis is now
    let genesis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut started = Vec::new();
    for (dir, port, key) in made {
        let config_path = dir.join("directory.toml");
        let config = format!(
            r#"listen = "127.0.0.1:{port}"
key_file = "directory.key"
db_path = "directory.redb"
max_absent_epochs = 2
max_nodes = 1000
round_secs = {round}

{tables}[network]
genesis_unix_secs = {genesis}
epoch_length_secs = {epoch}
mean_delay_ms = {delay}
max_delay_ms = 10000
lambda_p = {lp:?}
lambda_l = {ll:?}
lambda_d = 0.0
lambda_m = {lm:?}
packet_size = {size}
"#,
            round = spec.round_secs,
            epoch = spec.epoch_secs,
            delay = spec.mean_delay_ms,
            lp = spec.lambda_p,
            ll = spec.lambda_l,
            lm = spec.lambda_m,
            size = protocol::packet::PACKET_SIZE,
        );
        std::fs::write(&config_path, config).map_err(|e| io(&config_path, e))?;
        let config_arg = config_path.display().to_string();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "directory".into());
        let process = NodeProcess::spawn(
            &name,
            &bin,
            &["run", "--config", &config_arg],
            &dir.join("directory.log"),
        )?;
        started.push(LocalAuthority {
            process,
            url: format!("http://127.0.0.1:{port}"),
            key,
        });
    }
    for authority in &mut started {
        authority
            .process
            .wait_for_line("directory", READY_TIMEOUT)?;
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..64).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
        }
    }
}
