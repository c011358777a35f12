//! Building the network's binaries from this checkout, as the `localnet`
//! command does before it starts them.
//!
//! `cargo run -p localnet` resolves the features of every crate in
//! `localnet`'s dependency tree; the `cargo build` it then runs resolves them
//! over the packages it names. Were the two sets different (the client and
//! its end-to-end crypto ask more of `tokio`, `serde`, `chacha20` than
//! `localnet` alone does), every crate they share would be compiled a second
//! time, with the other features. So the build names `localnet` among its
//! packages, and `localnet` depends on `client`, the one package whose tree
//! is not already inside its own: both builds then resolve each shared
//! crate the same way, and compile it once. A test keeps it so.

use std::path::Path;
use std::process::Command;

use crate::error::LocalnetError;
use crate::process::status;

/// The packages the build names: this one, and those of the network's
/// binaries (`mixnode`, `gateway`, `mixnet-client`, `directory`).
pub const PACKAGES: [&str; 5] = ["localnet", "mixnode", "gateway", "client", "directory"];

/// The workspace this crate was built in.
pub fn workspace() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

/// The `cargo` that runs this process (`$CARGO`), or the one on the path.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the binaries of [`PACKAGES`] in the workspace, in release mode or
/// not; cargo's output goes to the terminal.
pub fn build_binaries(release: bool) -> Result<(), LocalnetError> {
    let mut cmd = cargo();
    cmd.current_dir(workspace()).args(["build", "--bins"]);
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    if release {
        cmd.arg("--release");
    }
    let done = status(&mut cmd)?;
    if !done.success() {
        return Err(LocalnetError::Failed(
            "cargo build".into(),
            done.to_string(),
        ));
    }
    Ok(())
}
