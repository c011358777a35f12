#![doc = include_str!("../README.md")]

pub mod frame;
pub mod stream;

pub use frame::{
    ResetReason, Segment, StreamFrameError, StreamId, StreamMessage, SurbReport, Target,
};
pub use stream::{
    SegmentOutcome, Stream, StreamConfig, StreamError, StreamEvent, StreamRole, StreamState,
    StreamStats,
};
