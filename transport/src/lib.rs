#![doc = include_str!("../README.md")]

mod backoff;
mod config;
mod endpoint;
mod error;
pub mod gateway_link;
mod identity;
mod inbound;
mod outbound;
mod pins;
mod stats;
pub mod tls;

pub use backoff::Backoff;
pub use config::LinkConfig;
pub use endpoint::{Endpoint, Received};
pub use error::{SendError, TransportError};
pub use gateway_link::{GatewayDelivery, GatewayLinkError, QuicGatewayLink};
pub use identity::{NodeIdentity, PeerId};
pub use pins::PeerSet;
pub use stats::{LinkDropReason, LinkStats};
pub use tls::InboundPolicy;
