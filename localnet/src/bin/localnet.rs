//! `localnet`: a whole mixnet on this machine, until Ctrl-C.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use localnet::process::STOP_GRACE;
use localnet::{LocalNet, NetworkSpec};

/// Starts directory authorities, 3 × N mix nodes and gateways as real processes on loopback,
/// with fresh keys in a temporary folder, and prints where everything is.
/// Ctrl-C stops every process.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Mix nodes per layer.
    #[arg(long, default_value_t = 2)]
    mix_per_layer: usize,
    /// Gateways.
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Mean per-hop delay in milliseconds.
    #[arg(long, default_value_t = 50)]
    mean_delay_ms: u64,
    /// Key epoch length in seconds.
    #[arg(long, default_value_t = 600)]
    epoch_secs: u64,
    /// Directory authorities: 1 publishes alone, more vote and sign each
    /// topology with a majority.
    #[arg(long, default_value_t = 3)]
    authorities: usize,
    /// Length of the authorities' voting round, seconds.
    #[arg(long, default_value_t = 2)]
    round_secs: u64,
    /// Do not build the node binaries first (use those beside this one).
    #[arg(long)]
    no_build: bool,
    /// Do not run the demo conversation between two clients.
    #[arg(long)]
    no_demo: bool,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("localnet: {e:#}");
        std::process::exit(1);
    }
}

/// Builds, starts the network, prints where everything is and runs the demo.
fn start(cli: &Cli) -> Result<LocalNet> {
    if !cli.no_build {
        eprintln!("building the node binaries…");
        // The same profile as this binary's.
        localnet::build::build_binaries(!cfg!(debug_assertions))?;
    }
    let spec = NetworkSpec {
        mix_per_layer: cli.mix_per_layer,
        gateways: cli.gateways,
        mean_delay_ms: cli.mean_delay_ms,
        epoch_secs: cli.epoch_secs,
        refresh_ms: 2_000,
        authorities: cli.authorities.max(1),
        round_secs: cli.round_secs,
        ..NetworkSpec::default()
    };
    eprintln!(
        "starting {} directory authorities, {} mix nodes and {} gateways…",
        spec.authorities,
        spec.mix_per_layer * 3,
        spec.gateways
    );
    let net = LocalNet::start(spec)?;
    println!("folder     {}", net.root().display());
    for (i, (url, key)) in net.authorities().iter().enumerate() {
        println!("authority{i} {url}  (key {key})");
    }
    for (i, m) in net.mixnodes.iter().enumerate() {
        println!("mix{i}       {}  metrics {}", m.address, m.metrics_url);
    }
    for (i, g) in net.gateways.iter().enumerate() {
        let clients = g.client_address.map(|a| a.to_string()).unwrap_or_default();
        println!(
            "gateway{i}   {}  clients {clients}  metrics {}  id {}",
            g.address, g.metrics_url, g.id
        );
    }
    if !cli.no_demo && !net.gateways.is_empty() {
        eprintln!("demo: two clients talk through the network…");
        if let Err(e) = localnet::demo::run_demo(&net) {
            eprintln!("demo failed: {e}");
        }
    }
    Ok(net)
}

#[allow(clippy::disallowed_methods)] // reports how long stopping took
fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The handlers are in place before anything starts: a Ctrl-C at any
    // moment stops what has started instead of killing this process alone.
    let (mut interrupt, mut term) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
        let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        anyhow::Ok((interrupt, term))
    })?;
    let (started_tx, mut started) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("start".into())
        .spawn(move || {
            let _ = started_tx.send(start(&cli));
        })
        .context("cannot start the network's thread")?;
    let up = runtime.block_on(async {
        tokio::select! {
            up = &mut started => Some(up),
            _ = interrupt.recv() => None,
            _ = term.recv() => None,
        }
    });
    let mut net = match up {
        Some(Ok(up)) => up?,
        Some(Err(_)) => bail!("the network's thread ended early"),
        None => {
            // Interrupted while building or starting: stop whatever runs and
            // refuse whatever would start next. The start then fails and
            // removes its folder; leave without waiting long for it.
            eprintln!("stopping…");
            localnet::stop_everything(STOP_GRACE);
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), started).await });
            eprintln!("localnet: interrupted before the network was up");
            std::process::exit(130);
        }
    };
    println!("Ctrl-C stops every process.");
    runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    });
    eprintln!("stopping…");
    let began = Instant::now();
    let outcome = net.stop();
    drop(net);
    eprintln!(
        "stopped in {} ms{}",
        began.elapsed().as_millis(),
        match outcome.killed {
            0 => String::new(),
            n => format!(" ({n} killed after {} s)", STOP_GRACE.as_secs()),
        }
    );
    Ok(())
}
