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

use gateway::config;

fn main() {
    nodeshell::cli::main::<role::GatewayRole, config::GatewayInit>(
        "gateway",
        "A gateway of the mixnet: clients' entry point and mailbox",
        config::template,
    );
}
