//! The `directory` binary: `init` writes a key and a config, `run` serves,
//! `audit verify` checks an audit log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use audit::logging::LogFormat;
use audit::{AuditEvent, AuditLog, KeyFingerprint, KeyKind, SharedAuditLog};
use clap::{Parser, Subcommand};
use directory::DirectoryServer;
use directory::config::{
    CONFIG_FILE, DirectoryConfig, KEY_FILE, Voting, parse_authority_flag, read_key_file,
    write_key_file,
};
use protocol::IdentityKeyPair;
use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use topology::NetworkParams;

/// The mixnet's directory: collects signed node descriptors and publishes one
/// signed topology per epoch.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The operational log on stderr: `text`, or `json` (one object per
    /// line, for a SIEM).
    #[arg(long, global = true, default_value_t = LogFormat::Text, value_name = "text|json")]
    log_format: LogFormat,
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
        /// A directory authority of the network, as `URL,KEY` (repeat for
        /// each, this one included, as the nodes' `--authority`); none: this
        /// directory is the only authority. Make the key first with `directory key`.
        #[arg(long = "authority", value_name = "URL,KEY", value_parser = parse_authority_flag)]
        authorities: Vec<(String, String)>,
        /// Signatures of the authorities a consensus needs [default: a majority].
        #[arg(long)]
        authority_threshold: Option<usize>,
        /// Length of a voting round, seconds, the same at every authority [default: 300].
        #[arg(long)]
        round_secs: Option<u64>,
    },
    /// Writes a new key (mode 0600) into a folder, or keeps the one there,
    /// and prints its public half: what the other authorities list.
    Key {
        /// The folder to write `directory.key` into.
        #[arg(long)]
        dir: PathBuf,
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
    /// Checks an audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks an audit log's hash chain: prints the number of records, or
    /// names the first bad line and exits with status 1.
    Verify {
        /// The log, e.g. `audit.jsonl` beside `directory.toml`.
        file: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    audit::logging::init(cli.log_format, "info");
    if let Err(e) = run(cli) {
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
            authorities,
            authority_threshold,
            round_secs,
        } => init(
            &dir,
            listen,
            epoch_length_secs,
            genesis_unix_secs,
            Voting {
                authorities,
                threshold: authority_threshold,
                round_secs,
            },
        ),
        Command::Key { dir } => {
            println!("directory key: {}", key_in(&dir)?.node_id());
            Ok(())
        }
        Command::Id { config } => {
            let config = DirectoryConfig::load(&config)?;
            println!("{}", read_key_file(&config.key_file)?.node_id());
            Ok(())
        }
        Command::Run { config: path } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            let config = DirectoryConfig::from_file_text(&path, &text)?;
            let key = read_key_file(&config.key_file)?;
            let audit = open_audit_log(&config.audit_log)?;
            audit.record(&AuditEvent::Start {
                binary: "directory".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                identity: KeyFingerprint::of_public_key(key.node_id().as_bytes()),
            })?;
            audit.record(&AuditEvent::config_loaded(&path, text.as_bytes()))?;
            let served = tokio::runtime::Runtime::new()
                .context("cannot start the async runtime")
                .and_then(|runtime| runtime.block_on(serve(config, key, audit.clone())))
                .with_context(|| path.display().to_string());
            if let Err(e) = audit.record(&AuditEvent::Stop) {
                tracing::error!("audit log: cannot record `stop`: {e}");
            }
            served
        }
        Command::Audit(AuditCommand::Verify { file }) => {
            let verified = audit::verify_file(&file)?;
            println!("{}: {}", file.display(), verified.summary());
            Ok(())
        }
    }
}

/// The audit log at `path`, to append to; refuses one that does not verify.
fn open_audit_log(path: &Path) -> Result<SharedAuditLog> {
    let log = AuditLog::open(path, audit_clock()).context(
        "the audit log does not continue; keep it as evidence, move it aside, and start again to begin a new one",
    )?;
    Ok(SharedAuditLog::new(log))
}

#[allow(clippy::disallowed_methods)] // the binary owns the real clock
fn audit_clock() -> audit::AuditClock {
    std::sync::Arc::new(SystemTime::now)
}

#[allow(clippy::disallowed_methods)] // `init` stamps the genesis time from the real clock
fn init(
    dir: &Path,
    listen: SocketAddr,
    epoch_length_secs: u64,
    genesis: Option<u64>,
    voting: Voting,
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
    if voting.round_secs == Some(0) {
        bail!("--round-secs must be at least 1");
    }
    if voting.authorities.is_empty() && voting.threshold.is_some() {
        bail!("--authority-threshold is set but no --authority is listed");
    }
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() {
        bail!(
            "{}: a config already exists; refusing to overwrite it",
            config_path.display()
        );
    }
    let key = key_in(dir)?;
    let text = DirectoryConfig::template_voting(listen, &network, &voting);
    // The written file must be one `run` accepts: check the set now.
    let parsed = DirectoryConfig::parse(&text).map_err(|e| anyhow::anyhow!("{e}"));
    let parsed = parsed.context("--authority / --authority-threshold")?;
    if parsed.votes() {
        let set = parsed
            .authority_set()
            .context("--authority / --authority-threshold")?;
        if !set.contains(&key.node_id()) {
            bail!(
                "--authority: this directory's key {} is not listed; list every authority, this one included (`directory key --dir {}` prints it)",
                key.node_id(),
                dir.display()
            );
        }
    }
    std::fs::write(&config_path, text)
        .with_context(|| format!("{}: cannot write config", config_path.display()))?;
    println!("directory key: {}", key.node_id());
    println!("config: {}", config_path.display());
    Ok(())
}

/// The key in `dir`: the one there, or a new one (mode 0600).
fn key_in(dir: &Path) -> Result<IdentityKeyPair> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        return Ok(read_key_file(&path)?);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let mut rng = StdRng::try_from_rng(&mut SysRng).context("cannot seed the random generator")?;
    let key = IdentityKeyPair::generate(&mut rng);
    write_key_file(&path, &key)?;
    // Recorded in the log `init` points the config at.
    AuditLog::open(&dir.join(audit::DEFAULT_FILE_NAME), audit_clock())?.record(
        &AuditEvent::KeyCreated {
            key: KeyKind::Identity,
            fingerprint: KeyFingerprint::of_public_key(key.node_id().as_bytes()),
        },
    )?;
    Ok(key)
}

async fn serve(config: DirectoryConfig, key: IdentityKeyPair, audit: SharedAuditLog) -> Result<()> {
    // Listening for SIGTERM before the server says it is up: a stop sent
    // right after that line is a clean stop, not the default death.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut server = DirectoryServer::start_audited(&config, key, audit).await?;
    println!("directory {} listening on {}", server.id(), server.url());
    tokio::select! {
        result = server.wait() => result.context("directory stopped"),
        () = shutdown_signal(term) => {
            tracing::info!("shutting down");
            server.stop().await.context("directory shutdown")
        }
    }
}

/// Ctrl-C, or SIGTERM on `term` (registered by the caller).
async fn shutdown_signal(term: Option<tokio::signal::unix::Signal>) {
    let Some(mut term) = term else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
