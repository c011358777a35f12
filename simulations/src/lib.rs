#![doc = include_str!("../README.md")]

pub mod anonymity;
pub mod closed_form;
pub mod confidence;
pub mod engine;
pub mod error;
pub mod events;
pub mod metrics;
pub mod network;
pub mod output;
pub mod page;
pub mod plot;
pub mod report;
pub mod residency;
pub mod routes;
pub mod scenario;
pub mod sim_codec;
pub mod sweep;
pub mod tally;
pub mod trace_codec;

pub use confidence::{Interval, run_seeds, write_seeds};
pub use engine::run;
pub use error::SimError;
pub use output::write_run;
pub use page::SourceFile;
pub use report::{Report, RunOutput};
pub use scenario::{CodecKind, Scenario};
pub use sweep::{Sweep, SweepRow};
pub use trace_codec::TraceCodec;
