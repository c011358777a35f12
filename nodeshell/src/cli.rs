//! What every node binary's command line is: `init`, `run` and `audit verify`.
//!
//! `init --dir D` creates the folder, an identity key (mode 0600) and a
//! commented config that names every key; `run --config F` runs the node;
//! `audit verify FILE` checks an audit log's chain. `--log-format json`
//! (before or after the command) writes the operational log as JSON lines.
//! An error ends the process with one line naming the binary, and status 1.
//! A node binary's `main` is one call to [`main`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use audit::logging::LogFormat;
use clap::{Args, FromArgMatches, Subcommand};
use protocol::keys::IdentityKeyPair;
use rand::SeedableRng;

use crate::config::Template;
use crate::keystore::KeyStore;
use crate::node::Role;

/// The commands of a node binary, `init` taking the arguments `I`, and the
/// role's own commands `E`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand<I: Args, E: Subcommand> {
    /// Create an identity key and a commented config in a folder.
    Init(I),
    /// Run the node.
    Run(RunArgs),
    /// Check an audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The role's own commands.
    #[command(flatten)]
    Role(E),
}

/// No commands beyond those every node has.
#[derive(Debug, Subcommand)]
pub enum NoCommands {}

/// `audit` subcommands (the same in every binary).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's hash chain: prints the number of records, or
    /// names the first bad line and exits with status 1.
    Verify {
        /// The log, e.g. `<data_dir>/audit.jsonl`.
        file: PathBuf,
    },
}

/// The options every command of a node binary takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The operational log on stderr: `text`, or `json` (one object per
    /// line, for a SIEM).
    #[arg(long, global = true, default_value_t = LogFormat::Text, value_name = "text|json")]
    pub log_format: LogFormat,
}

/// The arguments of a node's `init`: those every node takes, and the role's.
pub trait InitCommand: Args + FromArgMatches {
    /// The arguments every node takes.
    fn common(&self) -> &InitArgs;
}

impl InitCommand for InitArgs {
    fn common(&self) -> &InitArgs {
        self
    }
}

/// A node binary's `main`: parses the command line of `binary` (described
/// by `about` in its help), then runs `init` — writing the config text that
/// `config_text` makes from the arguments and the folder — or `run`, with
/// the role `R`. An error ends the process: one line, status 1.
pub fn main<R: Role, I: InitCommand>(
    binary: &'static str,
    about: &'static str,
    config_text: impl FnOnce(&I, &Path) -> String,
) {
    main_with::<R, I, NoCommands>(binary, about, config_text, |never| match never {});
}

/// [`main`] with the role's own commands `E`, which `role_command` runs.
pub fn main_with<R: Role, I: InitCommand, E: Subcommand>(
    binary: &'static str,
    about: &'static str,
    config_text: impl FnOnce(&I, &Path) -> String,
    role_command: impl FnOnce(E) -> Result<()>,
) {
    let command = NodeCommand::<I, E>::augment_subcommands(clap::Command::new(binary));
    // After the options, whose doc comment would otherwise be the about.
    let matches = GlobalArgs::augment_args(command)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .get_matches();
    let global = GlobalArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = NodeCommand::<I, E>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match command {
        NodeCommand::Init(args) => {
            init(&args.common().dir, |data_dir| config_text(&args, data_dir))
        }
        NodeCommand::Run(args) => crate::config::load(&args.config).and_then(|file| {
            audit::logging::init(global.log_format, "info");
            crate::node::run::<R>(file)
        }),
        NodeCommand::Audit(AuditCommand::Verify { file }) => crate::auditing::verify_command(&file),
        NodeCommand::Role(command) => role_command(command),
    };
    exit_on_error(binary, result);
}

/// The arguments of `init` every node takes.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder for the keys, the config and the node's state.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address the QUIC endpoint for other nodes binds.
    #[arg(long, default_value = "0.0.0.0:1789")]
    pub listen: SocketAddr,
    /// Address of the `/metrics` endpoint.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub metrics: SocketAddr,
    /// Base URL of the directory.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub directory: String,
    /// The directory's public key (base58).
    #[arg(long, default_value = "")]
    pub directory_key: String,
    /// A directory authority, as `URL,KEY` (repeat for each; replaces
    /// `--directory` and `--directory-key`).
    #[arg(long = "authority", value_name = "URL,KEY", value_parser = directory::config::parse_authority_flag)]
    pub authorities: Vec<(String, String)>,
    /// Signatures of the authorities a topology needs [default: a majority].
    #[arg(long)]
    pub authority_threshold: Option<usize>,
}

impl InitArgs {
    /// What the common sections of the config will say, for the folder `data_dir`.
    pub fn template<'a>(&'a self, data_dir: &'a Path) -> Template<'a> {
        Template {
            data_dir,
            listen: self.listen,
            metrics: self.metrics,
            directory: &self.directory,
            directory_key: &self.directory_key,
            authorities: &self.authorities,
            threshold: self.authority_threshold,
        }
    }
}

/// The arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file written by `init`.
    #[arg(long)]
    pub config: PathBuf,
}

/// Creates `dir`, a new identity key in it, and `config.toml` with the text
/// `config_text` writes for the folder's absolute path. Refuses to overwrite
/// a config. Prints the identity and the config's path.
fn init(dir: &Path, config_text: impl FnOnce(&Path) -> String) -> Result<()> {
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
    crate::auditing::identity_created(dir, &identity)?;
    let data_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::write(&config_path, config_text(&data_dir))
        .with_context(|| format!("{}: cannot write config", config_path.display()))?;
    println!("identity {}", identity.node_id());
    println!("config   {}", config_path.display());
    Ok(())
}

/// Ends the process on an error: `binary: error: cause…` on one line, status 1.
fn exit_on_error(binary: &str, result: Result<()>) {
    if let Err(e) = result {
        eprintln!("{binary}: {e:#}");
        std::process::exit(1);
    }
}
