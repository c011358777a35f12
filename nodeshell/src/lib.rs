#![doc = include_str!("../README.md")]

pub mod clock;
pub mod journal;
pub mod keystore;
pub mod signal;
pub mod workers;
