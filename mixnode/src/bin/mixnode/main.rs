//! The `mixnode` binary: `init` writes keys and a config, `run` mixes.
//!
//! The node lifecycle (keys, registration, epochs, workers, cover, metrics,
//! shutdown) is the node runtime's, in `nodeshell`; what is a mix node's own
//! is its config file and its role, in `release`: hold each packet until its
//! instant, then forward it.

mod config;
mod release;

use clap::{Parser, Subcommand};
use nodeshell::cli::{InitArgs, RunArgs, exit_on_error, init, init_logging};

use crate::config::Config;
use crate::release::MixRole;

/// A mix node of the mixnet.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an identity key and a commented config in a folder.
    Init(InitArgs),
    /// Run the node.
    Run(RunArgs),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Init(args) => init(&args.dir, |data_dir| {
            Config::template(&args.template(data_dir))
        }),
        Command::Run(args) => Config::load(&args.config).and_then(|config| {
            init_logging();
            nodeshell::run(config.node_config(), MixRole)
        }),
    };
    exit_on_error("mixnode", result);
}
