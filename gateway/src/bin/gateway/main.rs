//! The `gateway` binary: `init` writes keys and a config, `run` serves
//! clients and mailboxes.
//!
//! The node lifecycle (keys, registration, epochs, workers, loop cover,
//! metrics, shutdown) is the node runtime's, in `nodeshell`; what is a
//! gateway's own is here: its config file, the client listener (`clients`),
//! the thread that owns the gateway core and its mailbox (`core_loop`), the
//! role that wires them to the runtime (`role`) and their series (`metrics`).

mod clients;
mod config;
mod core_loop;
mod metrics;
mod role;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use nodeshell::cli::{InitArgs, RunArgs, exit_on_error, init, init_logging};

use crate::config::Config;
use crate::role::GatewayRole;

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
        #[command(flatten)]
        node: InitArgs,
        /// Address the QUIC endpoint for clients binds.
        #[arg(long, default_value = "0.0.0.0:1790")]
        clients: SocketAddr,
    },
    /// Run the gateway.
    Run(RunArgs),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Init { node, clients } => init(&node.dir, |data_dir| {
            Config::template(&node.template(data_dir), clients)
        }),
        Command::Run(args) => Config::load(&args.config).and_then(|config| {
            init_logging();
            let node = config.node_config();
            nodeshell::run(node, GatewayRole::open(config)?)
        }),
    };
    exit_on_error("gateway", result);
}
