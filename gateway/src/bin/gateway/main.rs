//! The `gateway` binary: `init` writes keys and a config, `run` serves
//! clients and mailboxes.
//!
//! The node lifecycle (command line, keys, registration, epochs, workers,
//! loop cover, metrics, shutdown) is the node runtime's, in `nodeshell`;
//! what is a gateway's own is here: its config file (`gateway::config`, in
//! the library so that the fuzz checks read it as this binary does), the client
//! listener (`clients`), the thread that owns the gateway core and its
//! mailbox (`core_loop`), the role that wires them to the runtime (`role`),
//! and their series (`metrics`).

mod clients;
mod core_loop;
mod metrics;
mod role;

use std::path::PathBuf;

use gateway::config;

/// The gateway's own commands: closed admission (docs/gateway.md).
#[derive(Debug, clap::Subcommand)]
enum AdmissionCommand {
    /// Issue one-time invites for a gateway in closed admission: prints
    /// one code per line, to hand out once each (only their digests are kept).
    Invite {
        /// The gateway's config file (its data folder holds the invites).
        #[arg(long)]
        config: PathBuf,
        /// How many invites.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Revoke a client: the running gateway deletes its registration and
    /// mailbox, closes its session and refuses it from then on.
    Revoke {
        /// The gateway's config file.
        #[arg(long)]
        config: PathBuf,
        /// The client's key (base58) or address (KEY@GATEWAY).
        client: String,
    },
}

fn main() {
    nodeshell::cli::main_with::<role::GatewayRole, config::GatewayInit, AdmissionCommand>(
        "gateway",
        "A gateway of the mixnet: clients' entry point and mailbox",
        config::template,
        admission,
    );
}

/// Runs `invite` or `revoke` on the files of the gateway's data folder.
fn admission(command: AdmissionCommand) -> anyhow::Result<()> {
    use anyhow::Context;
    use rand::SeedableRng;
    let config = match &command {
        AdmissionCommand::Invite { config, .. } | AdmissionCommand::Revoke { config, .. } => {
            nodeshell::config::load::<config::GatewaySections>(config)?
        }
    };
    let files = gateway::enrollment::EnrollmentFiles::new(&config.node.node.data_dir);
    match command {
        AdmissionCommand::Invite {
            count,
            config: path,
        } => {
            let mut rng = rand_chacha::ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
                .context("cannot seed the random generator")?;
            for code in files.issue(count, &mut rng)? {
                println!("{code}");
            }
            if config.role.clients.admission != config::Admission::Closed {
                eprintln!(
                    "note: {} has admission = \"open\": the gateway asks for invites only once it is \"closed\"",
                    path.display()
                );
            }
        }
        AdmissionCommand::Revoke { client, .. } => {
            files.revoke(&client)?;
            eprintln!("revoked: a running gateway deletes its registration within a second");
        }
    }
    Ok(())
}
