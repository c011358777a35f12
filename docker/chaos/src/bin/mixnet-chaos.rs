//! `mixnet-chaos`: faults across the containers of docker/compose.yml,
//! judged by invariants.
//!
//! It starts the compose network under a project name of its own, checks
//! that the client container's demo delivered every message and that
//! Prometheus scrapes every node, then runs each scenario under a load of
//! real messages (`mixnet-load` in a container of its own, four clients on
//! two gateways): SIGKILL a mix node and start it again, pause one, cut a
//! gateway off the network, restart the gateway that holds an offline
//! client's mailbox, drop 10 % of one mix node's packets with nftables in
//! its network namespace, stop the directory. Each scenario is judged by the
//! invariants of `chaos::Verdict` (every acknowledged message delivered
//! exactly once, none twice, none lost, messages flowing again within the
//! stated time) and by the nodes' own metrics (every drop under a reason,
//! queues and memory bounded). It prints one table row per scenario, and
//! always removes the containers, network and volumes it made.

// Orchestration on the real clock; a failed check is an error, not a panic.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use chaos::metrics::{self, Sample};
use chaos::{Event, Ledger, Verdict};
use clap::Parser;

/// Runs the chaos scenarios on a fresh container network and prints the table.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The compose file of the network.
    #[arg(long, default_value = "docker/compose.yml")]
    compose: PathBuf,
    /// Compose project name (prefix of every container, network and volume).
    #[arg(long, default_value = "mixnet-chaos")]
    project: String,
    /// First three octets of the network's private /24.
    #[arg(long, default_value = "172.30.90")]
    net: String,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 20)]
    fault_secs: u64,
    /// Seconds of load before the fault, and after it before the load stops.
    #[arg(long, default_value_t = 8)]
    calm_secs: u64,
    /// Milliseconds between two messages of one load client.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Longest accepted time, after a fault ends, before messages flow again
    /// (a QUIC connection that outlived a cut resumes at its next probe,
    /// whose timeout doubled all through the cut: docs/operations.md).
    #[arg(long, default_value_t = 60)]
    max_recovery_secs: u64,
    /// Most resident memory a node may use, MiB.
    #[arg(long, default_value_t = 256)]
    max_rss_mib: u64,
    /// Writes the table (Markdown) to this file too.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Leaves the network running at the end (for a look around).
    #[arg(long)]
    keep: bool,
}

const MIXES: [&str; 6] = ["mix0", "mix1", "mix2", "mix3", "mix4", "mix5"];
const GATEWAYS: [&str; 2] = ["gateway0", "gateway1"];
/// The bound of a mix node's queues (its `input_queue`).
const QUEUE_BOUND: f64 = 65_536.0;
/// Longest run of the whole suite before it gives up and cleans up.
const SUITE_DEADLINE: Duration = Duration::from_secs(25 * 60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs a command; its stdout, or an error with the first line of its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        bail!(
            "{} {}: {}",
            cmd.get_program().to_string_lossy(),
            args.join(" "),
            line.trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker(args: &[&str]) -> Result<String> {
    run(Command::new("docker").args(args))
}

/// The compose network of one run: its names, addresses and ports.
struct Network {
    compose: PathBuf,
    project: String,
    net: String,
    prometheus_port: u16,
    directory_port: u16,
    keep: bool,
    containers: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Network {
    fn compose(&self, args: &[&str]) -> Result<String> {
        run(Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.compose)
            .args(args)
            .env("MIXNET_NET", &self.net)
            .env("MIXNET_PROMETHEUS_PORT", self.prometheus_port.to_string())
            .env("MIXNET_DIRECTORY_PORT", self.directory_port.to_string()))
    }

    /// The container id of a service (kept: a restart keeps the container).
    fn container(&self, service: &str) -> Result<String> {
        let mut ids = self
            .containers
            .lock()
            .map_err(|_| anyhow::anyhow!("container cache poisoned"))?;
        if let Some(id) = ids.get(service) {
            return Ok(id.clone());
        }
        let id = self.compose(&["ps", "-q", service])?;
        if id.is_empty() {
            bail!("{service}: no container");
        }
        ids.insert(service.to_string(), id.clone());
        Ok(id)
    }

    /// The name Docker gave a network or volume of the project (compose
    /// versions differ in how they spell it).
    fn resource(&self, kind: &str, name: &str) -> Result<String> {
        let found = docker(&[
            kind,
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.{kind}={name}"),
            "--format",
            "{{.Name}}",
        ])?;
        match found.lines().next() {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => bail!("no {kind} `{name}` in project {}", self.project),
        }
    }

    fn network_name(&self) -> Result<String> {
        self.resource("network", "mixnet")
    }

    fn ip(&self, service: &str) -> String {
        let last = match service {
            "directory" => 2,
            "prometheus" => 3,
            "gateway0" => 21,
            "gateway1" => 22,
            "client" => 31,
            mix => 11 + mix.trim_start_matches("mix").parse::<u8>().unwrap_or(0),
        };
        format!("{}.{last}", self.net)
    }

    fn metrics(&self, service: &str) -> Result<Vec<Sample>> {
        let addr: SocketAddr = format!("{}:9100", self.ip(service)).parse()?;
        let text = metrics::http_get(addr, "/metrics", Duration::from_secs(3))
            .map_err(anyhow::Error::msg)?;
        Ok(metrics::parse(&text))
    }

    fn prometheus(&self, path: &str) -> Result<serde_json::Value> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.prometheus_port));
        let body =
            metrics::http_get(addr, path, Duration::from_secs(5)).map_err(anyhow::Error::msg)?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Resident memory of a service's main process, MiB (read in /proc).
    fn rss_mib(&self, service: &str) -> Result<f64> {
        let id = self.container(service)?;
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &id])?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("{service}: /proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{service}: no VmRSS"))?;
        Ok(kib / 1024.0)
    }

    fn wait_healthy(&self, services: &[&str], within: Duration) -> Result<()> {
        let start = Instant::now();
        for s in services {
            loop {
                let id = self.container(s)?;
                let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &id])?;
                if health == "healthy" {
                    break;
                }
                if start.elapsed() > within {
                    bail!("{s}: not healthy after {} s ({health})", within.as_secs());
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(())
    }

    fn down(&self) {
        if self.keep {
            eprintln!("chaos: network left running (project {})", self.project);
            return;
        }
        if let Err(e) = self.compose(&["down", "-v", "-t", "2", "--remove-orphans"]) {
            eprintln!("chaos: cleaning up: {e}");
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.down();
    }
}

/// A running `mixnet-load` container, its events read on a thread.
struct Load {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Event>,
    ledger: Ledger,
    gateways: Vec<String>,
    name: String,
}

impl Load {
    fn start(net: &Network, interval_ms: u64) -> Result<Load> {
        let name = format!("{}-load", net.project);
        let _ = docker(&["rm", "-f", &name]);
        let shared = format!(
            "{}:/var/lib/mixnet/shared:ro",
            net.resource("volume", "shared")?
        );
        let directory = format!("MIXNET_DIRECTORY=http://{}:8080", net.ip("directory"));
        let interval = interval_ms.to_string();
        let mut child = Command::new("docker")
            .args(["run", "--rm", "-i", "--name", &name, "--network"])
            .arg(net.network_name()?)
            .args([
                "--label",
                "mixnet.chaos=load",
                "-v",
                &shared,
                "-e",
                &directory,
            ])
            .args(["--tmpfs", "/var/lib/mixnet/load:uid=10001,gid=10001"])
            .args([
                "mixnet:latest",
                "load",
                "--json",
                "--control",
                "--messages",
                "0",
            ])
            .args(["--clients", "4", "--interval-ms", &interval])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot run docker")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(e) = Event::from_line(&line)
                    && tx.send(e).is_err()
                {
                    break;
                }
            }
        });
        let mut load = Load {
            child,
            stdin,
            events,
            ledger: Ledger::default(),
            gateways: Vec::new(),
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while load.gateways.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match load.events.recv_timeout(left) {
                Ok(Event::Ready { gateways, .. }) => load.gateways = gateways,
                Ok(_) => {}
                Err(_) => bail!("the load did not get ready within 120 s"),
            }
        }
        Ok(load)
    }

    /// Books the events that arrived; returns whether `Done` was among them.
    fn pump(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Done { .. }) => return true,
                Ok(e) => self.ledger.apply(&e),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
            }
        }
    }

    fn command(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}").context("the load stopped")?;
        self.stdin.flush().context("the load stopped")
    }

    /// Waits for an event that `matches`, booking everything, for `secs` at most.
    fn wait_for(&mut self, secs: u64, matches: impl Fn(&Event) -> bool) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(secs);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    let hit = matches(&e);
                    self.ledger.apply(&e);
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) => break,
            }
        }
        bail!("the load did not report the expected event within {secs} s")
    }

    /// Stops sending, waits for the last acks and deliveries, ends the container.
    fn finish(mut self) -> Result<Ledger> {
        self.command("stop")?;
        let deadline = Instant::now() + Duration::from_secs(150);
        while !self.pump(Duration::from_millis(500)) {
            if Instant::now() > deadline {
                let _ = docker(&["rm", "-f", &self.name]);
                bail!("the load did not finish within 150 s of `stop`");
            }
        }
        let _ = self.child.wait();
        Ok(std::mem::take(&mut self.ledger))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = docker(&["rm", "-f", &self.name]);
            let _ = self.child.wait();
        }
    }
}

/// Runs `nft` in the network namespace of container `id`, from a helper
/// container that shares it with NET_ADMIN (the node itself runs without
/// privileges); returns its output.
fn nft(id: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "-i", "--network", &format!("container:{id}")])
        .args([
            "--cap-add",
            "NET_ADMIN",
            "--user",
            "0",
            "--label",
            "mixnet.chaos=nft",
        ])
        .args(["--entrypoint", "/usr/sbin/nft", "mixnet:latest"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run docker")?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// A fault: what starts it, what ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    KillMix,
    PauseMix,
    DisconnectGateway,
    RestartGateway,
    LossOnMix,
    DirectoryDown,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::KillMix,
        Scenario::PauseMix,
        Scenario::DisconnectGateway,
        Scenario::RestartGateway,
        Scenario::LossOnMix,
        Scenario::DirectoryDown,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::KillMix => "kill-mix",
            Scenario::PauseMix => "pause-mix",
            Scenario::DisconnectGateway => "disconnect-gateway",
            Scenario::RestartGateway => "restart-gateway",
            Scenario::LossOnMix => "loss-10pct",
            Scenario::DirectoryDown => "directory-down",
        }
    }

    fn describe(self, secs: u64) -> String {
        match self {
            Scenario::KillMix => format!("SIGKILL mix2, start it again {secs} s later"),
            Scenario::PauseMix => format!("pause mix3 for {secs} s"),
            Scenario::DisconnectGateway => {
                format!("disconnect gateway1 from the network for {secs} s")
            }
            Scenario::RestartGateway => {
                "restart the gateway holding offline client1's mailbox".to_string()
            }
            Scenario::LossOnMix => format!("drop 10 % of mix4's UDP packets for {secs} s"),
            Scenario::DirectoryDown => format!("stop the directory for {secs} s"),
        }
    }
}

/// One row of the table.
struct Outcome {
    scenario: Scenario,
    verdict: Verdict,
    max_queue: f64,
    max_rss_mib: f64,
    broken: Vec<String>,
}

/// Samples every node's queue depth and memory; keeps the maxima.
#[derive(Default)]
struct NodeWatch {
    max_queue: f64,
    max_rss_mib: f64,
}

impl NodeWatch {
    fn sample(&mut self, net: &Network, skip: &[&str]) {
        for s in MIXES.iter().chain(GATEWAYS.iter()) {
            if skip.contains(s) {
                continue;
            }
            if let Ok(m) = net.metrics(s) {
                self.max_queue = self
                    .max_queue
                    .max(metrics::sum(&m, "mixnode_queue_depth", ""));
            }
            if let Ok(rss) = net.rss_mib(s) {
                self.max_rss_mib = self.max_rss_mib.max(rss);
            }
        }
    }
}

/// Packets a mix node received and has no outcome for: not forwarded, not
/// dropped under a reason, not held in its queue, not its own cover back.
/// Only the few a worker holds at the instant of the scrape may be missing.
fn unaccounted(m: &[Sample]) -> f64 {
    let received = metrics::sum(m, "mixnode_packets_received_total", "");
    let forwarded = metrics::sum(m, "mixnode_packets_forwarded_total", "");
    let dropped = metrics::sum(m, "mixnode_packets_dropped_total", "");
    let held = metrics::sum(m, "mixnode_queue_depth", "");
    let cover = metrics::sum(m, "mixnode_cover_returned_total", "");
    received - forwarded - dropped - held - cover
}

/// Packets in a worker's hands at a scrape, at most.
const IN_FLIGHT: f64 = 32.0;

/// Checks that every drop a node counts carries a reason, and that a mix
/// node has an outcome for every packet it received.
fn check_drop_reasons(net: &Network, broken: &mut Vec<String>) {
    for s in MIXES.iter().chain(GATEWAYS.iter()) {
        match net.metrics(s) {
            Ok(m) => {
                let missing = unaccounted(&m);
                if s.starts_with("mix") && missing.abs() > IN_FLIGHT {
                    broken.push(format!(
                        "{s}: {missing} received packets neither forwarded, dropped under a reason, held nor returned cover"
                    ));
                }
                let drops: Vec<&Sample> = m
                    .iter()
                    .filter(|x| x.name.ends_with("dropped_total"))
                    .collect();
                if drops.is_empty() {
                    broken.push(format!("{s}: no drop counters exported"));
                }
                for d in drops {
                    if !d.labels.contains("reason=\"") || d.labels.contains("reason=\"\"") {
                        broken.push(format!("{s}: {} counts drops without a reason", d.name));
                    }
                }
            }
            Err(e) => broken.push(format!("{s}: metrics unreadable after the fault: {e}")),
        }
    }
}

/// Holds the fault for `secs`, sampling the nodes and booking the load's events.
fn hold(net: &Network, load: &mut Load, watch: &mut NodeWatch, secs: u64, skip: &[&str]) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        watch.sample(net, skip);
        load.pump(Duration::from_secs(2));
    }
}

fn run_scenario(net: &Network, cli: &Cli, scenario: Scenario) -> Result<Outcome> {
    let mut load = Load::start(net, cli.interval_ms)?;
    let mut watch = NodeWatch::default();
    hold(net, &mut load, &mut watch, cli.calm_secs, &[]);
    let secs = cli.fault_secs;
    let fault_end = match scenario {
        Scenario::KillMix => {
            let id = net.container("mix2")?;
            docker(&["kill", "-s", "KILL", &id])?;
            hold(net, &mut load, &mut watch, secs, &["mix2"]);
            docker(&["start", &id])?;
            now_ms()
        }
        Scenario::PauseMix => {
            let id = net.container("mix3")?;
            docker(&["pause", &id])?;
            hold(net, &mut load, &mut watch, secs, &["mix3"]);
            docker(&["unpause", &id])?;
            now_ms()
        }
        Scenario::DisconnectGateway => {
            let id = net.container("gateway1")?;
            let network = net.network_name()?;
            docker(&["network", "disconnect", &network, &id])?;
            hold(net, &mut load, &mut watch, secs, &["gateway1"]);
            let ip = net.ip("gateway1");
            docker(&[
                "network", "connect", "--ip", &ip, "--alias", "gateway1", &network, &id,
            ])?;
            now_ms()
        }
        Scenario::RestartGateway => {
            // Client 1's mailbox: the gateway its load client uses.
            let address = load.gateways.get(1).cloned().unwrap_or_default();
            let gateway = GATEWAYS
                .iter()
                .find(|g| address.starts_with(&format!("{}:", net.ip(g))))
                .with_context(|| format!("no gateway at {address}"))?;
            load.command("offline 1")?;
            load.wait_for(90, |e| matches!(e, Event::Offline { client: 1, .. }))?;
            // Mail for client 1 piles up in its mailbox, then the gateway restarts.
            hold(net, &mut load, &mut watch, secs / 2, &[]);
            let id = net.container(gateway)?;
            docker(&["restart", "-t", "5", &id])?;
            net.wait_healthy(&[gateway], Duration::from_secs(60))?;
            hold(net, &mut load, &mut watch, secs / 2, &[]);
            let back = now_ms();
            load.command("online 1")?;
            load.wait_for(90, |e| matches!(e, Event::Online { client: 1, .. }))?;
            back
        }
        Scenario::LossOnMix => {
            let id = net.container("mix4")?;
            let rules = "table inet chaos {\n\
                 chain input { type filter hook input priority 0; policy accept; meta l4proto udp numgen random mod 10 == 0 counter drop; }\n\
                 chain output { type filter hook output priority 0; policy accept; meta l4proto udp numgen random mod 10 == 0 counter drop; }\n\
                 }\n";
            nft(&id, &["-f", "-"], Some(rules))?;
            hold(net, &mut load, &mut watch, secs, &[]);
            let listed = nft(&id, &["list", "table", "inet", "chaos"], None)?;
            nft(&id, &["delete", "table", "inet", "chaos"], None)?;
            let dropped: u64 = listed
                .split("counter packets ")
                .skip(1)
                .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
            if dropped == 0 {
                bail!("mix4: the loss rules dropped nothing");
            }
            eprintln!("chaos: loss-10pct: nftables dropped {dropped} of mix4's UDP packets");
            now_ms()
        }
        Scenario::DirectoryDown => {
            let id = net.container("directory")?;
            docker(&["stop", "-t", "5", &id])?;
            hold(net, &mut load, &mut watch, secs, &[]);
            docker(&["start", &id])?;
            now_ms()
        }
    };
    net.wait_healthy(&MIXES, Duration::from_secs(60))?;
    net.wait_healthy(&GATEWAYS, Duration::from_secs(60))?;
    hold(net, &mut load, &mut watch, cli.calm_secs, &[]);
    let ledger = load.finish()?;
    let verdict = ledger.verdict(Some(fault_end));
    let mut broken = verdict.violations(Some(cli.max_recovery_secs * 1000));
    check_drop_reasons(net, &mut broken);
    watch.sample(net, &[]);
    if watch.max_queue > QUEUE_BOUND {
        broken.push(format!("a queue held {} packets", watch.max_queue));
    }
    if watch.max_rss_mib > cli.max_rss_mib as f64 {
        broken.push(format!(
            "a node used {:.0} MiB, more than {} MiB",
            watch.max_rss_mib, cli.max_rss_mib
        ));
    }
    Ok(Outcome {
        scenario,
        verdict,
        max_queue: watch.max_queue,
        max_rss_mib: watch.max_rss_mib,
        broken,
    })
}

/// Starts the network; checks the demo's deliveries and Prometheus' targets.
fn start(cli: &Cli) -> Result<Network> {
    for image in ["mixnet:latest", "mixnet-prometheus:latest"] {
        docker(&["image", "inspect", image])
            .with_context(|| format!("no image {image}: run docker/build-images.sh first"))?;
    }
    let net = Network {
        compose: cli.compose.clone(),
        project: cli.project.clone(),
        net: cli.net.clone(),
        prometheus_port: free_port()?,
        directory_port: free_port()?,
        keep: cli.keep,
        containers: Default::default(),
    };
    // Leftovers of an earlier run that was killed.
    net.compose(&["down", "-v", "-t", "1", "--remove-orphans"])?;
    let began = Instant::now();
    net.compose(&["up", "-d"])?;
    net.wait_healthy(&["directory"], Duration::from_secs(60))?;
    net.wait_healthy(&MIXES, Duration::from_secs(90))?;
    net.wait_healthy(&GATEWAYS, Duration::from_secs(90))?;
    eprintln!(
        "chaos: network up in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    // The client container's demo: every message delivered exactly once.
    let client = net.container("client")?;
    let status = run(Command::new("timeout").args(["180", "docker", "wait", &client]))
        .context("the client container's demo did not end within 180 s")?;
    let log = docker(&["logs", &client]).unwrap_or_default();
    if status != "0" {
        bail!("the client container's demo failed (status {status}):\n{log}");
    }
    eprintln!("chaos: demo: {}", log.lines().last().unwrap_or_default());
    // Prometheus: every target up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let targets = net.prometheus("/api/v1/targets").unwrap_or_default();
        let active = targets
            .pointer("/data/activeTargets")
            .and_then(|a| a.as_array())
            .cloned()
            .unwrap_or_default();
        let up = active
            .iter()
            .filter(|t| t.get("health").and_then(|h| h.as_str()) == Some("up"))
            .count();
        if active.len() >= 10 && up == active.len() {
            eprintln!("chaos: Prometheus scrapes {up} targets, all up");
            break;
        }
        if Instant::now() > deadline {
            bail!("Prometheus: {up} of {} targets up after 60 s", active.len());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    check_dashboards(&net)?;
    Ok(net)
}

/// Every metric a Grafana dashboard of docker/grafana queries exists in Prometheus.
fn check_dashboards(net: &Network) -> Result<()> {
    let folder = net
        .compose
        .parent()
        .unwrap_or(Path::new("."))
        .join("grafana/dashboards");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok(());
    };
    // One more scrape, so that every series exists.
    std::thread::sleep(Duration::from_secs(6));
    let names = net.prometheus("/api/v1/label/__name__/values")?;
    let known: Vec<&str> = names
        .get("data")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut missing = Vec::new();
    let mut checked = 0;
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path())?;
        for name in chaos::dashboard::metric_names(&text)? {
            checked += 1;
            if !known.contains(&name.as_str()) {
                missing.push(format!("{}: {name}", entry.file_name().to_string_lossy()));
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "dashboards query metrics Prometheus does not have: {}",
            missing.join(", ")
        );
    }
    eprintln!("chaos: the dashboards' {checked} metric names all exist in Prometheus");
    Ok(())
}

fn table(outcomes: &[Outcome], cli: &Cli) -> String {
    let mut t = String::from(
        "| scenario | fault | sent | acked | delivered | duplicated | lost | recovery | backlog cleared | median latency | max queue | max RSS | invariants |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let secs =
        |ms: Option<u64>| ms.map_or("—".to_string(), |m| format!("{:.1} s", m as f64 / 1000.0));
    for o in outcomes {
        let v = &o.verdict;
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ms | {:.0} | {:.0} MiB | {} |\n",
            o.scenario.name(),
            o.scenario.describe(cli.fault_secs),
            v.sent,
            v.acked,
            v.delivered,
            v.duplicated,
            v.lost,
            secs(v.recovery_ms),
            secs(v.backlog_ms),
            v.median_latency_ms.unwrap_or(0),
            o.max_queue,
            o.max_rss_mib,
            if o.broken.is_empty() {
                "hold".to_string()
            } else {
                o.broken.join("; ")
            },
        ));
    }
    t
}

/// Removes the load container and the project's containers, network and
/// volumes: what an interrupted or overdue run leaves.
fn emergency_cleanup(project: &str, compose: &Path) {
    let _ = docker(&["rm", "-f", &format!("{project}-load")]);
    let _ = Command::new("docker-compose")
        .arg("-p")
        .arg(project)
        .arg("-f")
        .arg(compose)
        .args(["down", "-v", "-t", "1", "--remove-orphans"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// However the run goes, it ends and cleans up: past the deadline, or on
/// Ctrl-C or SIGTERM.
fn guard(cli: &Cli) {
    let (project, compose) = (cli.project.clone(), cli.compose.clone());
    std::thread::spawn(move || {
        std::thread::sleep(SUITE_DEADLINE);
        eprintln!(
            "chaos: still running after {} s; stopping",
            SUITE_DEADLINE.as_secs()
        );
        emergency_cleanup(&project, &compose);
        std::process::exit(3);
    });
    let (project, compose) = (cli.project.clone(), cli.compose.clone());
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("chaos: interrupted; removing the network");
        emergency_cleanup(&project, &compose);
        std::process::exit(130);
    });
}

fn main() {
    let cli = Cli::parse();
    guard(&cli);
    match suite(&cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("chaos: {e:#}");
            std::process::exit(2);
        }
    }
}

fn suite(cli: &Cli) -> Result<bool> {
    let chosen: Vec<Scenario> = if cli.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        cli.scenarios
            .iter()
            .map(|n| {
                Scenario::ALL
                    .into_iter()
                    .find(|s| s.name() == n)
                    .with_context(|| format!("--scenarios: no scenario `{n}`"))
            })
            .collect::<Result<_>>()?
    };
    let net = start(cli)?;
    let mut outcomes = Vec::new();
    for s in chosen {
        let began = Instant::now();
        eprintln!("chaos: {}: {}", s.name(), s.describe(cli.fault_secs));
        let o = run_scenario(&net, cli, s).with_context(|| s.name())?;
        eprintln!(
            "chaos: {}: sent {}, delivered {}, duplicated {}, lost {}, recovery {:?} ms ({:.0} s){}",
            s.name(),
            o.verdict.sent,
            o.verdict.delivered,
            o.verdict.duplicated,
            o.verdict.lost,
            o.verdict.recovery_ms,
            began.elapsed().as_secs_f64(),
            if o.broken.is_empty() {
                String::new()
            } else {
                format!(": {}", o.broken.join("; "))
            }
        );
        outcomes.push(o);
    }
    let t = table(&outcomes, cli);
    println!("{t}");
    if let Some(path) = &cli.report {
        std::fs::write(path, &t).with_context(|| path.display().to_string())?;
    }
    let failed = outcomes.iter().filter(|o| !o.broken.is_empty()).count();
    println!(
        "chaos: {} passed, {} failed",
        outcomes.len() - failed,
        failed
    );
    Ok(failed == 0)
}
