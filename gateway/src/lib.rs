#![doc = include_str!("../README.md")]

pub mod client_audit;
pub mod config;
pub mod enrollment;
pub mod redb_store;

pub use redb_store::RedbStore;
