#![doc = include_str!("../README.md")]

pub mod auditing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cover;
pub mod epochs;
pub mod intake;
pub mod journal;
pub mod keystore;
pub mod links;
pub mod metrics;
pub mod node;
pub mod registration;
pub mod shutdown;
pub mod workers;

pub use config::NodeConfig;
pub use node::{Node, NodeKind, Opened, Role, RoleInput, RoleTasks, run};
