#![doc = include_str!("../README.md")]

pub mod codec;
pub mod drop_reason;
pub mod mixer;
pub mod release;
pub mod stats;

pub use codec::{
    ConfiguredSphinxCodec, HopCodec, HopOutput, ReferenceSphinxCodec, SphinxCodec, SphinxCodecKind,
};
pub use drop_reason::DropReason;
pub use mixer::{Action, Mixer, MixerConfig, MixerRole, Transmit};
pub use release::ReleaseQueue;
pub use stats::MixerStats;
