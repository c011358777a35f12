#![doc = include_str!("../README.md")]

pub mod client_audit;
pub mod config;
pub mod enrollment;
pub mod prekey_store;
pub mod redb_store;

pub use prekey_store::RedbPrekeyStore;
pub use redb_store::RedbStore;
