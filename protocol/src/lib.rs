#![doc = include_str!("../README.md")]

pub mod address;
pub mod epoch;
pub mod error;
pub mod format;
pub mod fragment;
pub mod frame;
pub mod keys;
pub mod link;
pub mod packet;
pub mod poisson;
pub mod prekeys;
pub mod recall;
pub mod replay;
pub mod seal;
pub mod sphinx;
pub mod surb;
pub mod time;

pub use address::ClientAddress;
pub use epoch::Epoch;
pub use error::ProtocolError;
pub use keys::{IdentityKeyPair, NodeId, SphinxKeyPair};
pub use time::Timestamp;
