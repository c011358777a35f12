//! Prekeys kept at the gateway: the sizes, and the answer a gateway sends
//! to whoever asks for a client's bundle.
//!
//! A client uploads, over its authenticated client link, a *published
//! bundle* (opaque bytes to the gateway, signed by the client's identity;
//! the asker checks it, never the gateway) under its identity fingerprint,
//! and a supply of one-time prekeys
//! ([`ClientMessage::PublishBundle`](crate::link::ClientMessage::PublishBundle),
//! [`ClientMessage::AddOneTimePrekeys`](crate::link::ClientMessage::AddOneTimePrekeys)).
//! Anyone asks the gateway for a fingerprint's bundle through the mixnet
//! ([`BundleRequestFrame`](crate::frame::BundleRequestFrame), to
//! [`PREKEY_SERVICE_DESTINATION`](crate::address::PREKEY_SERVICE_DESTINATION));
//! the gateway answers through the request's SURBs with a [`BundleAnswer`],
//! cut into reply fragments.
//!
//! Layout of an answer (big endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version ([`BUNDLE_ANSWER_VERSION`]) |
//! | 2 | published bundle length (at most [`MAX_PUBLISHED_BUNDLE_SIZE`]) |
//! | n | published bundle |
//! | 2 | one-time prekey length (0: none; at most [`MAX_ONE_TIME_PREKEY_SIZE`]) |
//! | m | one-time prekey |

use crate::error::ProtocolError;

/// Bytes of a client identity's fingerprint, the name its bundle is kept under.
pub const FINGERPRINT_SIZE: usize = 20;
/// Largest published bundle a gateway keeps.
pub const MAX_PUBLISHED_BUNDLE_SIZE: usize = 2048;
/// Largest one-time prekey a gateway keeps.
pub const MAX_ONE_TIME_PREKEY_SIZE: usize = 1400;
/// Most one-time prekeys a gateway keeps for one client.
pub const MAX_ONE_TIME_PREKEYS_PER_CLIENT: usize = 100;
/// Most SURBs a bundle request carries (an answer takes at most this many reply fragments).
pub const BUNDLE_REQUEST_SURBS: usize = 2;
/// Version byte of a [`BundleAnswer`].
pub const BUNDLE_ANSWER_VERSION: u8 = 1;
/// Bytes of an answer besides its two fields: version and two lengths.
pub const BUNDLE_ANSWER_OVERHEAD: usize = 1 + 2 + 2;

/// What a gateway answers a bundle request with: the published bundle and
/// one one-time prekey, handed out once (none when the supply is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleAnswer {
    /// The published bundle, as its client uploaded it.
    pub published: Vec<u8>,
    /// One one-time prekey, as its client uploaded it (`None`: none left).
    pub one_time: Option<Vec<u8>>,
}

impl BundleAnswer {
    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        BUNDLE_ANSWER_OVERHEAD + self.published.len() + self.one_time.as_ref().map_or(0, Vec::len)
    }

    /// The encoding. A field over its cap makes bytes that
    /// [`BundleAnswer::decode`] refuses; an empty one-time prekey reads back
    /// as none.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(BUNDLE_ANSWER_VERSION);
        push_field(&mut out, &self.published);
        push_field(&mut out, self.one_time.as_deref().unwrap_or_default());
        out
    }

    /// Reads an answer; refuses another version, a field over its cap, a
    /// truncated field and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let bad = |what: &str| ProtocolError::BadBundleAnswer(what.to_string());
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != BUNDLE_ANSWER_VERSION {
            return Err(ProtocolError::BadBundleAnswer(format!(
                "unknown version {version}"
            )));
        }
        let (published, rest) = read_field(rest, MAX_PUBLISHED_BUNDLE_SIZE, "published bundle")?;
        let (one_time, rest) = read_field(rest, MAX_ONE_TIME_PREKEY_SIZE, "one-time prekey")?;
        if !rest.is_empty() {
            return Err(ProtocolError::BadBundleAnswer(format!(
                "{} bytes after the one-time prekey",
                rest.len()
            )));
        }
        Ok(BundleAnswer {
            published: published.to_vec(),
            one_time: (!one_time.is_empty()).then(|| one_time.to_vec()),
        })
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

fn read_field<'a>(
    bytes: &'a [u8],
    max: usize,
    what: &str,
) -> Result<(&'a [u8], &'a [u8]), ProtocolError> {
    let (len, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| ProtocolError::BadBundleAnswer(format!("truncated {what} length")))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len > max {
        return Err(ProtocolError::BadBundleAnswer(format!(
            "{what} of {len} bytes, more than {max}"
        )));
    }
    rest.split_at_checked(len)
        .ok_or_else(|| ProtocolError::BadBundleAnswer(format!("truncated {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_answer() -> impl Strategy<Value = BundleAnswer> {
        (
            proptest::collection::vec(any::<u8>(), 0..=MAX_PUBLISHED_BUNDLE_SIZE),
            proptest::option::of(proptest::collection::vec(
                any::<u8>(),
                1..=MAX_ONE_TIME_PREKEY_SIZE,
            )),
        )
            .prop_map(|(published, one_time)| BundleAnswer {
                published,
                one_time,
            })
    }

    proptest! {
        #[test]
        fn answers_round_trip(answer in arb_answer()) {
            let bytes = answer.encode();
            prop_assert_eq!(bytes.len(), answer.encoded_len());
            prop_assert_eq!(BundleAnswer::decode(&bytes).unwrap(), answer);
        }

        #[test]
        fn every_truncation_and_extension_is_refused(answer in arb_answer(), extra in 1u8..) {
            let bytes = answer.encode();
            for cut in 0..bytes.len() {
                prop_assert!(BundleAnswer::decode(&bytes[..cut]).is_err(), "cut at {}", cut);
            }
            let mut longer = bytes;
            longer.push(extra);
            prop_assert!(BundleAnswer::decode(&longer).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let _ = BundleAnswer::decode(&bytes);
        }
    }

    #[test]
    fn the_layout_is_version_then_two_length_prefixed_fields() {
        let answer = BundleAnswer {
            published: vec![7, 8],
            one_time: Some(vec![9]),
        };
        assert_eq!(answer.encode(), [1, 0, 2, 7, 8, 0, 1, 9]);
        let alone = BundleAnswer {
            published: vec![7],
            one_time: None,
        };
        assert_eq!(alone.encode(), [1, 0, 1, 7, 0, 0]);
        assert_eq!(BundleAnswer::decode(&alone.encode()).unwrap(), alone);
    }

    #[test]
    fn oversize_fields_and_other_versions_are_refused() {
        let published = BundleAnswer {
            published: vec![0; MAX_PUBLISHED_BUNDLE_SIZE + 1],
            one_time: None,
        };
        assert!(BundleAnswer::decode(&published.encode()).is_err());
        let one_time = BundleAnswer {
            published: vec![1],
            one_time: Some(vec![0; MAX_ONE_TIME_PREKEY_SIZE + 1]),
        };
        assert!(BundleAnswer::decode(&one_time.encode()).is_err());
        let mut version = BundleAnswer {
            published: vec![1],
            one_time: None,
        }
        .encode();
        version[0] = 2;
        assert!(BundleAnswer::decode(&version).is_err());
    }

    #[test]
    fn the_largest_answer_needs_three_fragments_and_a_typical_one_two() {
        let capacity = crate::frame::FRAGMENT_CAPACITY;
        let largest = BUNDLE_ANSWER_OVERHEAD + MAX_PUBLISHED_BUNDLE_SIZE + MAX_ONE_TIME_PREKEY_SIZE;
        assert_eq!(largest.div_ceil(capacity), 3);
        // A bundle of about 1.2 KB and a one-time prekey of 1284 bytes.
        let typical = BUNDLE_ANSWER_OVERHEAD + 1200 + 1284;
        assert!(typical.div_ceil(capacity) <= BUNDLE_REQUEST_SURBS);
    }
}
