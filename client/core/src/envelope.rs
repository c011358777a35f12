//! The client-level envelope: what a client's message looks like before it is
//! cut into fragments.
//!
//! Layout (big endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version ([`ENVELOPE_VERSION`]) |
//! | 1 | kind: 1 = message, 2 = reply |
//! | 16 | id of the message answered (kind 2 only) |
//! | 2 | number `n` of reply SURBs |
//! | n × [`SURB_SIZE`] | reply SURBs the recipient may answer through |
//! | rest | content |
//!
//! The envelope is what [`fragment_message`](protocol::fragment::fragment_message)
//! cuts; the receiver reads it once the message is reassembled.

use protocol::fragment::MessageId;
use protocol::surb::{SURB_SIZE, Surb};

/// Version byte of the envelope format.
pub const ENVELOPE_VERSION: u8 = 1;

/// Header of a message: version, kind, SURB count.
const MESSAGE_HEADER: usize = 1 + 1 + 2;
/// Header of a reply: version, kind, message answered, SURB count.
const REPLY_HEADER: usize = 1 + 1 + 16 + 2;

const KIND_MESSAGE: u8 = 1;
const KIND_REPLY: u8 = 2;

/// What an envelope is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// A message sent to a client address.
    Message,
    /// A reply sent through the SURBs of the message it answers.
    Reply {
        /// The message answered.
        in_reply_to: MessageId,
    },
}

/// A decoded envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Message or reply.
    pub kind: EnvelopeKind,
    /// SURBs the recipient may answer through.
    pub reply_surbs: Vec<Surb>,
    /// The application's bytes.
    pub content: Vec<u8>,
}

/// Why an envelope could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Shorter than its header or its SURBs.
    Truncated,
    /// Unknown version byte.
    UnknownVersion,
    /// Unknown kind byte.
    UnknownKind,
    /// More SURBs than the receiver accepts.
    TooManySurbs,
}

impl Envelope {
    /// Bytes of the envelope of a message with `reply_surbs` SURBs and
    /// `content_len` bytes of content.
    pub fn message_len(reply_surbs: usize, content_len: usize) -> usize {
        MESSAGE_HEADER + reply_surbs * SURB_SIZE + content_len
    }

    /// Bytes of the envelope of a reply (no SURBs) of `content_len` bytes.
    pub fn reply_len(content_len: usize) -> usize {
        REPLY_HEADER + content_len
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        let surbs = u16::try_from(self.reply_surbs.len()).unwrap_or(u16::MAX);
        let mut out =
            Vec::with_capacity(REPLY_HEADER + usize::from(surbs) * SURB_SIZE + self.content.len());
        out.push(ENVELOPE_VERSION);
        match self.kind {
            EnvelopeKind::Message => out.push(KIND_MESSAGE),
            EnvelopeKind::Reply { in_reply_to } => {
                out.push(KIND_REPLY);
                out.extend_from_slice(&in_reply_to.0);
            }
        }
        out.extend_from_slice(&surbs.to_be_bytes());
        for surb in self.reply_surbs.iter().take(usize::from(surbs)) {
            out.extend_from_slice(&surb.0);
        }
        out.extend_from_slice(&self.content);
        out
    }

    /// Reads an envelope carrying at most `max_surbs` reply SURBs.
    pub fn decode(bytes: &[u8], max_surbs: usize) -> Result<Envelope, EnvelopeError> {
        let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Truncated)?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnknownVersion);
        }
        let (&kind, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
        let (kind, rest) = match kind {
            KIND_MESSAGE => (EnvelopeKind::Message, rest),
            KIND_REPLY => {
                let (id, rest) = rest.split_at_checked(16).ok_or(EnvelopeError::Truncated)?;
                let id = <[u8; 16]>::try_from(id).map_err(|_| EnvelopeError::Truncated)?;
                (
                    EnvelopeKind::Reply {
                        in_reply_to: MessageId(id),
                    },
                    rest,
                )
            }
            _ => return Err(EnvelopeError::UnknownKind),
        };
        let (count, rest) = rest.split_at_checked(2).ok_or(EnvelopeError::Truncated)?;
        let count = <[u8; 2]>::try_from(count).map_err(|_| EnvelopeError::Truncated)?;
        let count = usize::from(u16::from_be_bytes(count));
        if count > max_surbs {
            return Err(EnvelopeError::TooManySurbs);
        }
        let (surbs, content) = rest
            .split_at_checked(count * SURB_SIZE)
            .ok_or(EnvelopeError::Truncated)?;
        Ok(Envelope {
            kind,
            reply_surbs: surbs
                .chunks_exact(SURB_SIZE)
                .map(|s| Surb(s.to_vec()))
                .collect(),
            content: content.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_envelope() -> impl Strategy<Value = Envelope> {
        (
            proptest::option::of(any::<[u8; 16]>()),
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), SURB_SIZE..=SURB_SIZE),
                0..4,
            ),
            proptest::collection::vec(any::<u8>(), 0..3000),
        )
            .prop_map(|(reply, surbs, content)| Envelope {
                kind: match reply {
                    Some(id) => EnvelopeKind::Reply {
                        in_reply_to: MessageId(id),
                    },
                    None => EnvelopeKind::Message,
                },
                reply_surbs: surbs.into_iter().map(Surb).collect(),
                content,
            })
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(env in arb_envelope()) {
            prop_assert_eq!(Envelope::decode(&env.encode(), 4), Ok(env));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = Envelope::decode(&bytes, 8);
        }
    }

    #[test]
    fn refuses_bad_version_kind_truncation_and_surb_excess() {
        let env = Envelope {
            kind: EnvelopeKind::Message,
            reply_surbs: vec![Surb(vec![7; SURB_SIZE]); 2],
            content: b"hi".to_vec(),
        };
        let bytes = env.encode();
        assert_eq!(
            Envelope::decode(&bytes, 1),
            Err(EnvelopeError::TooManySurbs)
        );
        assert_eq!(
            Envelope::decode(&bytes[..bytes.len() - 3 - SURB_SIZE], 2),
            Err(EnvelopeError::Truncated)
        );
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(
            Envelope::decode(&bad, 2),
            Err(EnvelopeError::UnknownVersion)
        );
        bad[0] = ENVELOPE_VERSION;
        bad[1] = 9;
        assert_eq!(Envelope::decode(&bad, 2), Err(EnvelopeError::UnknownKind));
        assert_eq!(Envelope::decode(&[], 2), Err(EnvelopeError::Truncated));
    }
}
