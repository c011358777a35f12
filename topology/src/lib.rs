#![doc = include_str!("../README.md")]

pub mod descriptor;
pub mod document;
pub mod envelope;
pub mod error;
pub mod layers;
pub mod params;
pub mod route;
pub mod serde_keys;

pub use descriptor::{EpochKey, NodeDescriptor, Role, SignedDescriptor};
pub use document::{NodeEntry, SignedTopology, Topology};
pub use error::{RouteError, TopologyError};
pub use layers::{MIX_LAYERS, assign_layers};
pub use params::{EpochClock, NetworkParams};
pub use route::{RouteSelector, Weighting};
