#![doc = include_str!("../README.md")]

pub mod client;
pub mod config;
mod http;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod state;
pub mod store;
mod voting;

pub use client::{DirectoryClient, DirectoryClientError};
pub use config::{ConfigError, DirectoryConfig};
pub use http::WallClock;
pub use registry::Registry;
pub use server::{DirectoryError, DirectoryServer};
pub use state::DirectoryState;
pub use store::{DirectoryStore, StoreError};
