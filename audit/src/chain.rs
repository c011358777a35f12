//! The record format and the hash chain.
//!
//! A log is lines of UTF-8, each ending in `\n`, each one JSON object with
//! no whitespace, its members in this order:
//!
//! ```text
//! {"seq":0,"time":"2025-06-01T12:00:00Z","event":"start",<fields of the event>,"prev":"000…0","hash":"5e1f…"}
//! ```
//!
//! - `seq`: the record's number, from 0, one more on each line;
//! - `time`: when it was written, RFC 3339 in UTC, to the second;
//! - `event` and the event's own fields ([`crate::AuditEvent`]);
//! - `prev`: the SHA-256 (hex) of the previous line's bytes, its `\n`
//!   excluded; 64 zeros on the first line;
//! - `hash`: the SHA-256 (hex) of the record's *body*: the line's bytes
//!   with its last member `,"hash":"…"` removed, i.e. the JSON object
//!   `{"seq":…,…,"prev":"…"}` exactly as written.
//!
//! Editing any byte of a line breaks its `hash`; removing, inserting or
//! swapping lines breaks `seq` and `prev`. What the chain alone cannot show
//! is the removal of the last lines: compare the last hash [`verify`]
//! reports with one kept elsewhere (docs/operations.md).

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::event::AuditEvent;

/// The `prev` of the first record: 64 zeros.
pub const GENESIS_PREV: [u8; 32] = [0; 32];

/// The longest line a log may hold, newline excluded; administrative
/// records are far shorter, and a longer line is not read into memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The last member of every line, up to its hex digits.
const HASH_MEMBER: &str = ",\"hash\":\"";

/// A record before its hash: the fields, in the order the body lists them.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev: &'a str,
}

/// What one line of a log is wrong with.
#[derive(Debug, Error)]
pub enum RecordProblem {
    /// The file ends in the middle of a line.
    #[error(
        "incomplete record (no newline at its end): the log was cut while a record was written"
    )]
    Incomplete,
    /// The line is longer than [`MAX_LINE_BYTES`].
    #[error("longer than {MAX_LINE_BYTES} bytes: not an audit record")]
    TooLong,
    /// The line ends without a `hash` member of 64 hex digits.
    #[error("no `hash` member of 64 hex digits at the end of the line")]
    NoHash,
    /// The line's bytes do not hash to its `hash`.
    #[error("its hash does not match its bytes: the record was edited")]
    HashMismatch,
    /// The line is not a JSON record with `seq`, `time`, `event`, `prev`.
    #[error("not a JSON audit record: {reason}")]
    NotJson {
        /// What the parser said.
        reason: serde_json::Error,
    },
    /// `seq` is not the next number.
    #[error(
        "seq {found} where {expected} was expected: a record before it was removed, or records were reordered or inserted"
    )]
    UnexpectedSeq {
        /// The `seq` of the line.
        found: u64,
        /// The `seq` the chain expected.
        expected: u64,
    },
    /// `prev` is not the hash of the line before.
    #[error(
        "`prev` is not the hash of the line before it: a record was removed, reordered or replaced"
    )]
    PrevMismatch,
}

/// Where a log first goes wrong: the line (from 1) and what is wrong with it.
#[derive(Debug, Error)]
#[error("line {line}: {problem}")]
pub struct ChainBreak {
    /// The line at fault, counted from 1 (the record with `seq` = line − 1).
    pub line: u64,
    /// What is wrong with it.
    pub problem: RecordProblem,
}

/// What reading or checking a log failed on.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The log could not be read.
    #[error("cannot read: {reason}")]
    Read {
        /// What the OS said.
        reason: std::io::Error,
    },
    /// The chain is broken.
    #[error(transparent)]
    Broken(ChainBreak),
}

/// A log that verified: how many records, the end of its chain, and how
/// many records of each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Records in the log.
    pub records: u64,
    /// SHA-256 of the last line (what the next record's `prev` is); zeros
    /// for an empty log.
    pub last_line_hash: [u8; 32],
    /// Records by `event` kind.
    pub kinds: BTreeMap<String, u64>,
}

impl Verified {
    /// The hash of the last line in hex: what to note elsewhere to detect
    /// a log cut short later.
    pub fn last_line_hash_hex(&self) -> String {
        hex::encode(self.last_line_hash)
    }

    /// One line for an operator: `N records, chain intact (kind n, …);
    /// last line sha256 …`.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "{} record{}, chain intact ({}); last line sha256 {}",
            self.records,
            if self.records == 1 { "" } else { "s" },
            kinds.join(", "),
            self.last_line_hash_hex()
        )
    }
}

/// The members of a line verification reads (the event's own fields are
/// covered by the hash and need no reading).
#[derive(Deserialize)]
struct LineFields {
    seq: u64,
    #[allow(dead_code)] // required to be present, not interpreted
    time: String,
    event: String,
    prev: String,
    hash: String,
}

/// Encodes the record `seq` of `event` at `time`, following the line whose
/// hash is `prev`; returns the line without its newline.
pub fn encode(
    seq: u64,
    time: SystemTime,
    event: &AuditEvent,
    prev: &[u8; 32],
) -> Result<String, EncodeError> {
    let time = rfc3339(time)?;
    let prev = hex::encode(prev);
    let body = serde_json::to_string(&Body {
        seq,
        time: &time,
        event,
        prev: &prev,
    })
    .map_err(|reason| EncodeError::Json { reason })?;
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let Some(open) = body.strip_suffix('}') else {
        return Err(EncodeError::NotAnObject);
    };
    Ok(format!("{open}{HASH_MEMBER}{hash}\"}}"))
}

/// Why a record could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The time cannot be written in RFC 3339 (before year 0 or after 9999).
    #[error("the time cannot be written in RFC 3339")]
    Time,
    /// The record did not serialize.
    #[error("cannot serialize the record: {reason}")]
    Json {
        /// What serde said.
        reason: serde_json::Error,
    },
    /// The record did not serialize as an object.
    #[error("the record did not serialize as a JSON object")]
    NotAnObject,
}

/// `time` in RFC 3339, UTC, to the second.
fn rfc3339(time: SystemTime) -> Result<String, EncodeError> {
    let time = time::OffsetDateTime::from(time);
    let time = time.replace_nanosecond(0).map_err(|_| EncodeError::Time)?;
    time.format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| EncodeError::Time)
}

/// SHA-256 of a line's bytes (newline excluded): the next record's `prev`.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

/// Checks one line (newline excluded) as the record `expected_seq`
/// following the line whose hash is `prev`; returns its `event` kind.
pub fn check_line(
    line: &[u8],
    expected_seq: u64,
    prev: &[u8; 32],
) -> Result<String, RecordProblem> {
    // The hash first: an edited byte is reported as an edit, wherever it is.
    let suffix_len = HASH_MEMBER.len() + 64 + 2;
    let split = line
        .len()
        .checked_sub(suffix_len)
        .ok_or(RecordProblem::NoHash)?;
    let (open, suffix) = line.split_at(split);
    let digits = suffix
        .strip_prefix(HASH_MEMBER.as_bytes())
        .and_then(|s| s.strip_suffix(b"\"}"))
        .ok_or(RecordProblem::NoHash)?;
    let mut stated = [0u8; 32];
    hex::decode_to_slice(digits, &mut stated).map_err(|_| RecordProblem::NoHash)?;
    let mut body = Sha256::new();
    body.update(open);
    body.update(b"}");
    if <[u8; 32]>::from(body.finalize()) != stated {
        return Err(RecordProblem::HashMismatch);
    }
    let fields: LineFields =
        serde_json::from_slice(line).map_err(|reason| RecordProblem::NotJson { reason })?;
    // The parser read the same `hash` the suffix stated (a second `hash`
    // member would have been refused as a duplicate).
    if fields.hash.as_bytes() != digits {
        return Err(RecordProblem::NoHash);
    }
    if fields.seq != expected_seq {
        return Err(RecordProblem::UnexpectedSeq {
            found: fields.seq,
            expected: expected_seq,
        });
    }
    if fields.prev != hex::encode(prev) {
        return Err(RecordProblem::PrevMismatch);
    }
    Ok(fields.event)
}

/// Reads a whole log and checks its chain; names the first bad line.
pub fn verify(mut reader: impl BufRead) -> Result<Verified, VerifyError> {
    let mut verified = Verified::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE_BYTES + 1).unwrap_or(u64::MAX);
        let read = Read::take(&mut reader, limit)
            .read_until(b'\n', &mut line)
            .map_err(|reason| VerifyError::Read { reason })?;
        if read == 0 {
            return Ok(verified);
        }
        let number = verified.records.saturating_add(1);
        let broken = |problem| {
            VerifyError::Broken(ChainBreak {
                line: number,
                problem,
            })
        };
        let Some(content) = line.strip_suffix(b"\n") else {
            return Err(broken(if line.len() > MAX_LINE_BYTES {
                RecordProblem::TooLong
            } else {
                RecordProblem::Incomplete
            }));
        };
        let kind =
            check_line(content, verified.records, &verified.last_line_hash).map_err(broken)?;
        *verified.kinds.entry(kind).or_default() += 1;
        verified.last_line_hash = line_hash(content);
        verified.records = number;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{KeyFingerprint, KeyKind};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A log of `n` records, as text.
    fn log(n: u64) -> String {
        let mut prev = GENESIS_PREV;
        let mut text = String::new();
        for seq in 0..n {
            let event = AuditEvent::KeyRotated {
                key: KeyKind::Sphinx,
                epoch: seq,
                fingerprint: KeyFingerprint::of_public_key(&seq.to_le_bytes()),
            };
            let line = encode(seq, at(1_750_000_000 + seq), &event, &prev).unwrap();
            prev = line_hash(line.as_bytes());
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    fn broken(text: &str) -> ChainBreak {
        match verify(text.as_bytes()) {
            Err(VerifyError::Broken(b)) => b,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn a_record_is_its_body_and_the_hash_of_the_body() {
        let line = encode(0, at(1_750_000_000), &AuditEvent::Stop, &GENESIS_PREV).unwrap();
        let zeros = "0".repeat(64);
        let body = format!(
            "{{\"seq\":0,\"time\":\"2025-06-15T15:06:40Z\",\"event\":\"stop\",\"prev\":\"{zeros}\"}}"
        );
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let expected = format!("{}{HASH_MEMBER}{hash}\"}}", body.trim_end_matches('}'));
        assert_eq!(line, expected);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["hash"], hash);
    }

    #[test]
    fn a_good_log_verifies_and_counts_its_kinds() {
        let text = log(5);
        let v = verify(text.as_bytes()).unwrap();
        assert_eq!(v.records, 5);
        assert_eq!(v.kinds.get("key_rotated"), Some(&5));
        let last = text.lines().last().unwrap();
        assert_eq!(v.last_line_hash, line_hash(last.as_bytes()));
        assert!(
            v.summary()
                .starts_with("5 records, chain intact (key_rotated 5); last line sha256 ")
        );
        assert_eq!(verify(&b""[..]).unwrap(), Verified::default());
    }

    #[test]
    fn every_single_byte_edit_is_found_on_its_line() {
        let text = log(4);
        let third = text.lines().take(2).map(|l| l.len() + 1).sum::<usize>();
        let third_len = text.lines().nth(2).unwrap().len();
        for i in third..third + third_len {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 0x01;
            let text = String::from_utf8_lossy(&bytes);
            let b = broken(&text);
            assert_eq!(b.line, 3, "byte {i}: {b}");
        }
    }

    #[test]
    fn a_removed_line_is_named_by_the_gap() {
        let text = log(5);
        let without: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let b = broken(&without);
        assert_eq!(b.line, 3);
        assert!(matches!(
            b.problem,
            RecordProblem::UnexpectedSeq {
                found: 3,
                expected: 2
            }
        ));
        assert!(
            b.to_string().contains("line 3: seq 3 where 2 was expected"),
            "{b}"
        );
    }

    #[test]
    fn reordered_lines_are_found() {
        let text = log(4);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(1, 2);
        let b = broken(&format!("{}\n", lines.join("\n")));
        assert_eq!(b.line, 2);
        assert!(matches!(b.problem, RecordProblem::UnexpectedSeq { .. }));
    }

    #[test]
    fn a_renumbered_and_rehashed_record_still_breaks_the_next_prev() {
        // Replace record 1 by a forged one with a correct seq and hash: the
        // record after it no longer follows.
        let text = log(3);
        let lines: Vec<&str> = text.lines().collect();
        let forged = encode(1, at(1), &AuditEvent::Stop, &line_hash(lines[0].as_bytes())).unwrap();
        let b = broken(&format!("{}\n{forged}\n{}\n", lines[0], lines[2]));
        assert_eq!(b.line, 3);
        assert!(matches!(b.problem, RecordProblem::PrevMismatch));
    }

    #[test]
    fn cut_garbage_and_long_lines_are_errors_not_panics() {
        let text = log(2);
        let b = broken(&text[..text.len() - 10]);
        assert_eq!(b.line, 2);
        assert!(matches!(b.problem, RecordProblem::Incomplete));
        for junk in ["\n", "{}\n", "not json at all\n", "\u{fffd}\n"] {
            let b = broken(&format!("{text}{junk}"));
            assert_eq!(b.line, 3, "{junk:?}");
        }
        let long = format!("{text}{}\n", "x".repeat(MAX_LINE_BYTES + 5));
        assert!(matches!(broken(&long).problem, RecordProblem::TooLong));
        // A line whose hash is right but whose body is not a record.
        let body = "{\"seq\":0}";
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let line = format!("{{\"seq\":0{HASH_MEMBER}{hash}\"}}\n");
        assert!(matches!(
            broken(&line).problem,
            RecordProblem::NotJson { .. }
        ));
    }
}
