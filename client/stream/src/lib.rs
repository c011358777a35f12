#![doc = include_str!("../README.md")]

pub mod ended;
pub mod frame;
pub mod stream;

pub use ended::EndedStreams;
pub use frame::{
    ResetReason, Segment, StreamFrameError, StreamId, StreamMessage, SurbReport, Target,
};
pub use stream::{
    SegmentOutcome, Stream, StreamConfig, StreamError, StreamEvent, StreamRole, StreamState,
    StreamStats,
};
