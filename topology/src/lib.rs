#![doc = include_str!("../README.md")]

pub mod client;
pub mod descriptor;
pub mod directory;
pub mod document;
pub mod envelope;
pub mod error;
pub mod layers;
pub mod params;
pub mod registry;
pub mod route;
mod serde_keys;

pub use client::{DirectoryClient, DirectoryClientError};
pub use descriptor::{EpochKey, NodeDescriptor, Role, SignedDescriptor};
pub use document::{NodeEntry, SignedTopology, Topology};
pub use error::{RouteError, TopologyError};
pub use layers::{MIX_LAYERS, assign_layers};
pub use params::{EpochClock, NetworkParams};
pub use registry::Registry;
pub use route::{RouteSelector, Weighting};
