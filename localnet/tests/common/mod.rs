//! Shared pieces of the multi-process tests.

pub use localnet::probe::*;

/// The stand-in gateway under its test name.
pub type TestGateway = ProbeGateway;
