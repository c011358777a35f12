#![doc = include_str!("../README.md")]

pub mod baseline;
pub mod build;
pub mod demo;
pub mod error;
pub mod fleet;
pub mod network;
pub mod probe;
pub mod process;
pub mod usage;

pub use error::LocalnetError;
pub use network::{LocalNet, LocalNode, NetworkSpec, NodeRole, free_port};
pub use process::{NodeProcess, StopOutcome, binary, stop_all, stop_everything};
