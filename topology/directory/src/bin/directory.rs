//! The `directory` binary: `init` writes a key and a config, `run` serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use directory::DirectoryServer;
use directory::config::{CONFIG_FILE, DirectoryConfig, KEY_FILE, read_key_file, write_key_file};
use protocol::IdentityKeyPair;
use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use topology::NetworkParams;

/// The mixnet's directory: collects signed node descriptors and publishes one
/// signed topology per epoch.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a new key (mode 0600) and a commented config into a folder.
    Init {
        /// The folder to write `directory.key` and `directory.toml` into.
        #[arg(long)]
        dir: PathBuf,
        /// Address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Length of an epoch, seconds (short ones suit test networks).
        #[arg(long, default_value_t = 3600)]
        epoch_length_secs: u64,
        /// Start of epoch 0, unix seconds [default: now].
        #[arg(long)]
        genesis_unix_secs: Option<u64>,
    },
    /// Serves the directory described by a config file.
    Run {
        /// The config file written by `init`.
        #[arg(long)]
        config: PathBuf,
    },
    /// Prints the directory's public key (what clients and nodes pin).
    Id {
        /// The config file written by `init`.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("directory: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            dir,
            listen,
            epoch_length_secs,
            genesis_unix_secs,
        } => init(&dir, listen, epoch_length_secs, genesis_unix_secs),
        Command::Id { config } => {
            let config = DirectoryConfig::load(&config)?;
            println!("{}", read_key_file(&config.key_file)?.node_id());
            Ok(())
        }
        Command::Run { config: path } => {
            let config = DirectoryConfig::load(&path)?;
            let key = read_key_file(&config.key_file)?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime
                .block_on(serve(config, key))
                .with_context(|| path.display().to_string())
        }
    }
}

#[allow(clippy::disallowed_methods)] // `init` stamps the genesis time from the real clock
fn init(
    dir: &Path,
    listen: SocketAddr,
    epoch_length_secs: u64,
    genesis: Option<u64>,
) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let network = NetworkParams {
        genesis_unix_secs: genesis.unwrap_or(now),
        epoch_length: Duration::from_secs(epoch_length_secs),
        ..NetworkParams::default()
    };
    network.validate().context("--epoch-length-secs")?;
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() {
        bail!(
            "{}: a config already exists; refusing to overwrite it",
            config_path.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let mut rng = StdRng::try_from_rng(&mut SysRng).context("cannot seed the random generator")?;
    let key = IdentityKeyPair::generate(&mut rng);
    write_key_file(&dir.join(KEY_FILE), &key)?;
    std::fs::write(&config_path, DirectoryConfig::template(listen, &network))
        .with_context(|| format!("{}: cannot write config", config_path.display()))?;
    println!("directory key: {}", key.node_id());
    println!("config: {}", config_path.display());
    Ok(())
}

async fn serve(config: DirectoryConfig, key: IdentityKeyPair) -> Result<()> {
    let mut server = DirectoryServer::start(&config, key).await?;
    println!("directory {} listening on {}", server.id(), server.url());
    tokio::select! {
        result = server.wait() => result.context("directory stopped"),
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            server.stop().await.context("directory shutdown")
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
