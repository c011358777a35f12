//! The `mixnode` binary: `init` writes keys and a config, `run` mixes.
//!
//! The node lifecycle (command line, keys, registration, epochs, workers,
//! cover, metrics, shutdown) is the node runtime's, in `nodeshell`; what is
//! a mix node's own is its config file (`config`) and its role (`release`):
//! hold each packet until its instant, then forward it.

mod config;
mod release;

use nodeshell::cli::InitArgs;

fn main() {
    nodeshell::cli::main::<release::MixRole, InitArgs>(
        "mixnode",
        "A mix node of the mixnet",
        |args, data_dir| config::template(&args.template(data_dir)),
    );
}
