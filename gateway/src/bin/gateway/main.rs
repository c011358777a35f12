//! The `gateway` binary: `init` writes keys and a config, `run` serves
//! clients and mailboxes.

mod clients;
mod config;
mod core_loop;
mod cover;
mod metrics;
mod node;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nodeshell::keystore::KeyStore;
use protocol::keys::IdentityKeyPair;
use rand::SeedableRng;

use crate::config::Config;

/// A gateway of the mixnet: clients' entry point and mailbox.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an identity key and a commented config in a folder.
    Init {
        /// Folder for the keys, the config, the mailbox and the gateway's state.
        #[arg(long)]
        dir: PathBuf,
        /// Address the QUIC endpoint for mix nodes binds.
        #[arg(long, default_value = "0.0.0.0:1789")]
        listen: SocketAddr,
        /// Address the QUIC endpoint for clients binds.
        #[arg(long, default_value = "0.0.0.0:1790")]
        clients: SocketAddr,
        /// Address of the `/metrics` endpoint.
        #[arg(long, default_value = "127.0.0.1:9100")]
        metrics: SocketAddr,
        /// Base URL of the directory.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        directory: String,
        /// The directory's public key (base58).
        #[arg(long, default_value = "")]
        directory_key: String,
    },
    /// Run the gateway.
    Run {
        /// The config file written by `init`.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            dir,
            listen,
            clients,
            metrics,
            directory,
            directory_key,
        } => init(&dir, listen, clients, metrics, &directory, &directory_key),
        Command::Run { config } => run(&config),
    };
    if let Err(e) = result {
        eprintln!("gateway: {e:#}");
        std::process::exit(1);
    }
}

fn init(
    dir: &std::path::Path,
    listen: SocketAddr,
    clients: SocketAddr,
    metrics: SocketAddr,
    directory: &str,
    directory_key: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let config_path = dir.join("config.toml");
    if config_path.exists() {
        anyhow::bail!(
            "{}: already exists; refusing to overwrite",
            config_path.display()
        );
    }
    let mut rng = rand_chacha::ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
        .context("cannot seed the random generator")?;
    let identity = IdentityKeyPair::generate(&mut rng);
    KeyStore::new(dir).create_identity(&identity)?;
    let data_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::write(
        &config_path,
        Config::template(
            &data_dir,
            listen,
            clients,
            metrics,
            directory,
            directory_key,
        ),
    )
    .with_context(|| format!("{}: cannot write config", config_path.display()))?;
    println!("identity {}", identity.node_id());
    println!("config   {}", config_path.display());
    Ok(())
}

fn run(path: &std::path::Path) -> Result<()> {
    let config = Config::load(path)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    node::run(config)
}
