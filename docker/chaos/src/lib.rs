//! Load and chaos tools for the container network of `docker/`.
//!
//! Two programs share this crate:
//!
//! - `mixnet-load` runs inside a container of the network: several real
//!   clients, spread over the gateways, send numbered messages to each other
//!   and report every step (sent, acknowledged, received) as one JSON line
//!   ([`Event`]). Its ledger ([`Ledger`]) says at the end whether every
//!   message arrived exactly once.
//! - `mixnet-chaos` runs on the host: it starts the compose network, runs a
//!   load through each fault (a mix killed, paused, a gateway cut off, a
//!   gateway restarted under an offline client's mailbox, 10 % loss on a
//!   node's links, the directory stopped), and judges each scenario by the
//!   invariants of [`Verdict`].
//!
//! What is *not* here: the network itself (the node binaries, configured by
//! `docker/entrypoint.sh`), and any fault injection inside the nodes: faults
//! come from outside, as an operator's hosts would suffer them.

pub mod dashboard;
pub mod ledger;
pub mod metrics;

pub use ledger::{Event, Ledger, MessageKey, Verdict};
