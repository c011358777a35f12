//! Fragments as they arrive from the network, into a reassembler.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::fragment::{
    Fragment, MESSAGE_OVERHEAD, MessageId, PIECE_OVERHEAD, Reassembler, Reassembly,
    ReassemblyLimits,
};
use protocol::time::Timestamp;

use crate::input::Input;

/// The bound the check's reassembler keeps (small, so the fuzzer reaches it).
pub const MAX_BUFFERED: usize = 8 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A sequence of steps: `0, record` = a fragment (its encoding) arrives;
/// `1, seconds` = time passes and expired messages are dropped. Checked:
/// the buffer bound holds; a refused or duplicate fragment changes neither
/// the buffered bytes nor the partial messages; a completed message is the
/// pieces that arrived for it, in order, and comes out once.
pub fn fragment_reassembly(data: &[u8]) {
    let mut input = Input::new(data);
    let mut reassembler = Reassembler::new(ReassemblyLimits {
        timeout: TIMEOUT,
        max_buffered_bytes: MAX_BUFFERED,
    });
    let mut now = Timestamp::ZERO;
    // What the check expects: the pieces held per message.
    let mut held: BTreeMap<MessageId, BTreeMap<u16, Vec<u8>>> = BTreeMap::new();
    // Completed messages and when: refused as duplicates until forgotten.
    let mut completed: BTreeMap<MessageId, Timestamp> = BTreeMap::new();
    while !input.is_empty() {
        match input.u8() % 2 {
            0 => {
                let Ok(fragment) = Fragment::decode(input.record()) else {
                    continue;
                };
                let before = (reassembler.buffered_bytes(), reassembler.pending_messages());
                let expect = fragment.clone();
                match reassembler.insert(now, fragment) {
                    Reassembly::Complete { id, message } => {
                        assert_eq!(id, expect.id.message);
                        assert!(
                            completed.insert(id, now).is_none(),
                            "a message completes once"
                        );
                        let mut pieces = held.remove(&id).unwrap_or_default();
                        pieces.insert(expect.id.index, expect.data);
                        assert_eq!(pieces.len(), usize::from(expect.count));
                        let whole: Vec<u8> = pieces.into_values().flatten().collect();
                        assert_eq!(message, whole, "the pieces, in order");
                    }
                    Reassembly::Pending => {
                        let pieces = held.entry(expect.id.message).or_default();
                        assert!(pieces.insert(expect.id.index, expect.data).is_none());
                    }
                    Reassembly::Duplicate | Reassembly::Refused(_) => {
                        let after = (reassembler.buffered_bytes(), reassembler.pending_messages());
                        assert_eq!(before, after, "a refused fragment changes nothing");
                    }
                }
            }
            _ => {
                now = now.saturating_add(Duration::from_secs(u64::from(input.u8())));
                for id in reassembler.expire(now) {
                    assert!(held.remove(&id).is_some(), "only partial messages expire");
                }
                completed.retain(|_, t| now.saturating_duration_since(*t) < TIMEOUT);
            }
        }
        assert!(reassembler.buffered_bytes() <= MAX_BUFFERED, "memory bound");
        let model: usize = held
            .values()
            .map(|p| MESSAGE_OVERHEAD + p.values().map(|d| d.len() + PIECE_OVERHEAD).sum::<usize>())
            .sum();
        assert_eq!(reassembler.buffered_bytes(), model, "buffered bytes add up");
        assert_eq!(reassembler.pending_messages(), held.len());
    }
}
