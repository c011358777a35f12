#![doc = include_str!("../README.md")]

pub mod redb_store;

pub use redb_store::RedbStore;
