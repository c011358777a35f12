//! The reassembly journal: the fragments of partial incoming messages and
//! replies, kept in the data folder so that a restart does not lose them.
//!
//! ```text
//! D/partial/<message id, 32 hex digits>   records, appended; each a u32 (big
//!     endian) whose top bit marks a reply and whose other bits give the
//!     length, then that many bytes: a forward delivery as the gateway
//!     handed it, or a reply's frame sealed like the session book
//! ```
//!
//! The gateway deletes a delivery once the client acknowledges it, and the
//! sender got its SURB-ack long before (for a reply, the client's own ack
//! may have gone too), so the fragments of a message that is half-received
//! when the client stops exist only here. The driver appends (and fsyncs) a
//! fragment before acknowledging it, replays every file into the core at
//! the next start, and removes a file when the core reports its message
//! complete or abandoned. A forward delivery is a sealed body that only the
//! client's key opens; a reply is kept as its frame (the SURB it came
//! through is used up, and with it the keys that opened it), which holds
//! the fragment's header and the replier's SURB-ack that no gateway sees,
//! so the driver seals it under the folder's state key before it comes
//! here. The journal checks records' lengths only, and the
//! core sorts them at replay (a file the core takes nothing from is
//! removed). See docs/client.md, "Data folder".

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use protocol::fragment::MessageId;
use protocol::link::DELIVERY_PAYLOAD_SIZE;

use crate::error::DataFolderError;
use client_core::ClientConfig;

/// The journal's folder in the data folder.
pub const PARTIAL_DIR: &str = "partial";

/// Bytes of a record's length prefix.
const LENGTH_SIZE: usize = 4;
/// A forward record is one delivery as the gateway handed it: a sealed body
/// of the one delivery size, which only the client's key opens.
const RECORD_SIZE: usize = DELIVERY_PAYLOAD_SIZE;
/// The bit of a record's prefix that marks a sealed reply.
const REPLY_FLAG: u32 = 1 << 31;
/// Longest sealed reply: a reply's frame (no longer than the delivery it
/// came in) and the sealing's header and tag.
const MAX_SEALED_REPLY: usize = RECORD_SIZE + 256;
/// Hex digits of a file name.
const NAME_LENGTH: usize = 32;

/// Bounds of the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalLimits {
    /// Most files (partial messages) at once.
    pub max_messages: usize,
    /// Most bytes in all files together.
    pub max_bytes: u64,
}

impl JournalLimits {
    /// The core's bounds: `max_partial_messages` files, and room for the
    /// deliveries that carry `reassembly.max_buffered_bytes` of fragments.
    pub fn for_config(config: &ClientConfig) -> Self {
        let fragments = config
            .reassembly
            .max_buffered_bytes
            .div_ceil(protocol::frame::FRAGMENT_CAPACITY) as u64;
        JournalLimits {
            max_messages: config.max_partial_messages,
            max_bytes: fragments.saturating_mul((LENGTH_SIZE + RECORD_SIZE) as u64),
        }
    }
}

/// One fragment in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalRecord {
    /// A forward delivery as the gateway handed it (one delivery long).
    Delivery(Vec<u8>),
    /// A reply's frame, sealed under the folder's state key.
    SealedReply(Vec<u8>),
}

impl JournalRecord {
    fn bytes(&self) -> &[u8] {
        match self {
            JournalRecord::Delivery(b) | JournalRecord::SealedReply(b) => b,
        }
    }

    /// The record's prefix, or `None` for a length the journal does not take.
    fn prefix(&self) -> Option<u32> {
        let reply = matches!(self, JournalRecord::SealedReply(_));
        let len = self.bytes().len();
        if !fits(reply, len) {
            return None;
        }
        let flag = if reply { REPLY_FLAG } else { 0 };
        Some(u32::try_from(len).ok()? | flag)
    }
}

/// Whether a record of `len` bytes is one the journal takes: a forward
/// delivery is one delivery long, a sealed reply is not empty and no longer
/// than any sealed reply.
fn fits(reply: bool, len: usize) -> bool {
    if reply {
        len > 0 && len <= MAX_SEALED_REPLY
    } else {
        len == RECORD_SIZE
    }
}

/// What [`PartialJournal::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The delivery is on disk (fsynced).
    Written,
    /// The journal is at one of its bounds: nothing written.
    Full,
}

/// What the journal held at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Each partial message's records, in the order they were appended;
    /// messages by age of their last append, oldest first.
    pub messages: Vec<(MessageId, Vec<JournalRecord>)>,
    /// Files removed instead: older than the reassembly timeout, or malformed.
    pub discarded: usize,
}

/// One file per partial incoming message in the `partial/` folder of the
/// data folder.
#[derive(Debug)]
pub struct PartialJournal {
    dir: PathBuf,
    limits: JournalLimits,
    /// Size of each file the journal knows.
    files: HashMap<MessageId, u64>,
    bytes: u64,
}

fn io_error(path: &Path, e: std::io::Error) -> DataFolderError {
    DataFolderError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn file_name(id: &MessageId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_name(name: &str) -> Option<MessageId> {
    if name.len() != NAME_LENGTH || !name.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        let digits = name.get(2 * i..2 * i + 2)?;
        if digits.chars().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(MessageId(id))
}

/// A file's records, and the length of its whole records (a crash during an
/// append may leave a torn last record, which was never acknowledged to the
/// gateway). `None` when a forward record is not one delivery long, or a
/// reply is empty or longer than any sealed reply.
fn parse_records(bytes: &[u8]) -> Option<(Vec<JournalRecord>, usize)> {
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        let Some(prefix) = bytes.get(at..at + LENGTH_SIZE) else {
            return Some((records, at));
        };
        let mut len = [0u8; LENGTH_SIZE];
        len.copy_from_slice(prefix);
        let prefix = u32::from_be_bytes(len);
        let reply = prefix & REPLY_FLAG != 0;
        let len = (prefix & !REPLY_FLAG) as usize;
        if !fits(reply, len) {
            return None;
        }
        let Some(record) = bytes.get(at + LENGTH_SIZE..at + LENGTH_SIZE + len) else {
            return Some((records, at));
        };
        records.push(if reply {
            JournalRecord::SealedReply(record.to_vec())
        } else {
            JournalRecord::Delivery(record.to_vec())
        });
        at += LENGTH_SIZE + len;
    }
}

impl PartialJournal {
    /// The journal in `dir` (created, mode 0700, if missing), with the
    /// bounds of the default [`ClientConfig`] until the client sets its own.
    pub fn open(dir: impl Into<PathBuf>) -> Result<PartialJournal, DataFolderError> {
        let dir = dir.into();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(PartialJournal {
            dir,
            limits: JournalLimits::for_config(&ClientConfig::default()),
            files: HashMap::new(),
            bytes: 0,
        })
    }

    /// The folder of the journal.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the bounds (files already there count, and stay).
    pub fn set_limits(&mut self, limits: JournalLimits) {
        self.limits = limits;
    }

    /// Partial messages journaled.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no message is journaled.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes in all files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether message `id` has a file.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.files.contains_key(id)
    }

    fn path(&self, id: &MessageId) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Reads every file at start: those whose last append is older than
    /// `max_age` at `now`, and those that do not parse, are removed; the
    /// others are kept (a torn last record is cut off) and returned for
    /// replay. File contents are input: nothing here panics on them.
    pub fn recover(&mut self, now: SystemTime, max_age: Duration) -> Recovered {
        let mut recovered = Recovered::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!("cannot read {}: {e}", self.dir.display());
                return recovered;
            }
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let id = entry.file_name().to_str().and_then(parse_name);
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let stale = now.duration_since(modified).is_ok_and(|age| age > max_age);
            let parsed = match id {
                Some(id) if !stale => read_file(&path).and_then(|bytes| {
                    parse_records(&bytes).map(|(records, whole)| (id, records, whole, bytes))
                }),
                _ => None,
            };
            match parsed {
                Some((id, records, whole, bytes)) if !records.is_empty() => {
                    if whole < bytes.len() && !truncate(&path, whole as u64) {
                        remove(&path);
                        recovered.discarded += 1;
                        continue;
                    }
                    found.push((modified, id, records, whole as u64));
                }
                _ => {
                    tracing::info!("discarding journal file {}", path.display());
                    remove(&path);
                    recovered.discarded += 1;
                }
            }
        }
        found.sort_by_key(|f| (f.0, f.1));
        for (_, id, records, size) in found {
            self.files.insert(id, size);
            self.bytes = self.bytes.saturating_add(size);
            recovered.messages.push((id, records));
        }
        recovered
    }

    /// Appends a fragment of message `id` to its file and fsyncs it (and
    /// the folder, for a new file). Beyond the bounds, writes nothing and
    /// returns [`Appended::Full`].
    pub fn append(
        &mut self,
        id: &MessageId,
        record: &JournalRecord,
    ) -> Result<Appended, DataFolderError> {
        let path = self.path(id);
        let bytes = record.bytes();
        let prefix = record.prefix().ok_or_else(|| DataFolderError::BadField {
            path: path.clone(),
            field: "(delivery)",
            reason: format!("{} bytes cannot be journaled", bytes.len()),
        })?;
        let size = (LENGTH_SIZE + bytes.len()) as u64;
        let known = self.files.get(id).copied();
        if (known.is_none() && self.files.len() >= self.limits.max_messages)
            || self.bytes.saturating_add(size) > self.limits.max_bytes
        {
            return Ok(Appended::Full);
        }
        let mut line = Vec::with_capacity(LENGTH_SIZE + bytes.len());
        line.extend_from_slice(&prefix.to_be_bytes());
        line.extend_from_slice(bytes);
        let mut options = fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|e| io_error(&path, e))?;
        let written = file
            .write_all(&line)
            .and_then(|()| file.sync_data())
            .and_then(|()| match known {
                // A new file's name must survive a crash too.
                None => fs::File::open(&self.dir).and_then(|d| d.sync_all()),
                Some(_) => Ok(()),
            });
        if let Err(e) = written {
            // Whatever part was written is a torn record: cut it off.
            let _ = file.set_len(known.unwrap_or(0));
            if known.is_none() {
                remove(&path);
            }
            return Err(io_error(&path, e));
        }
        self.files.insert(*id, known.unwrap_or(0) + size);
        self.bytes = self.bytes.saturating_add(size);
        Ok(Appended::Written)
    }

    /// Removes message `id`'s file, if it has one.
    pub fn remove(&mut self, id: &MessageId) {
        if let Some(size) = self.files.remove(id) {
            self.bytes = self.bytes.saturating_sub(size);
            remove(&self.path(id));
        }
    }
}

fn read_file(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| tracing::warn!("cannot read {}: {e}", path.display()))
        .ok()?;
    Some(bytes)
}

fn truncate(path: &Path, len: u64) -> bool {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_data()))
        .map_err(|e| tracing::warn!("cannot truncate {}: {e}", path.display()))
        .is_ok()
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    // Files' modification times are wall-clock times.
    #![allow(clippy::disallowed_methods)]

    use super::*;

    /// A delivery as the gateway hands it (opaque to the journal: a sealed
    /// body of the one delivery size), standing for fragment `index` of
    /// `count` of message `id`.
    fn delivery_bytes(id: MessageId, index: u16, count: u16) -> Vec<u8> {
        let mut bytes = vec![index as u8; RECORD_SIZE];
        bytes[..16].copy_from_slice(&id.0);
        bytes[16..18].copy_from_slice(&count.to_be_bytes());
        bytes
    }

    fn delivery(id: MessageId, index: u16, count: u16) -> JournalRecord {
        JournalRecord::Delivery(delivery_bytes(id, index, count))
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    const AGE: Duration = Duration::from_secs(120);

    #[test]
    fn appended_deliveries_are_recovered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = PartialJournal::open(dir.path().join("partial")).unwrap();
        let (a, b) = (id(1), id(2));
        let d = [
            delivery(a, 2, 4),
            delivery(a, 0, 4),
            delivery(b, 1, 2),
            delivery(a, 3, 4),
        ];
        for (m, x) in [(a, &d[0]), (a, &d[1]), (b, &d[2]), (a, &d[3])] {
            assert_eq!(journal.append(&m, x).unwrap(), Appended::Written);
        }
        assert_eq!(journal.len(), 2);
        assert_eq!(journal.bytes(), 4 * (4 + RECORD_SIZE as u64));
        assert!(dir.path().join("partial").join("01".repeat(16)).is_file());

        let mut again = PartialJournal::open(dir.path().join("partial")).unwrap();
        let recovered = again.recover(SystemTime::now(), AGE);
        assert_eq!(recovered.discarded, 0);
        let mut messages = recovered.messages;
        messages.sort_by_key(|(m, _)| *m);
        assert_eq!(
            messages,
            vec![
                (a, vec![d[0].clone(), d[1].clone(), d[3].clone()]),
                (b, vec![d[2].clone()]),
            ]
        );
        assert_eq!(again.len(), 2);
        assert_eq!(again.bytes(), journal.bytes());
    }

    #[test]
    fn removed_messages_are_gone_and_unknown_ids_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = PartialJournal::open(dir.path()).unwrap();
        journal.append(&id(1), &delivery(id(1), 0, 3)).unwrap();
        journal.append(&id(2), &delivery(id(2), 0, 3)).unwrap();
        journal.remove(&id(1));
        journal.remove(&id(9));
        assert!(!journal.contains(&id(1)));
        assert!(journal.contains(&id(2)));
        assert_eq!(journal.bytes(), 4 + RECORD_SIZE as u64);
        assert!(!dir.path().join(file_name(&id(1))).exists());
        let recovered = PartialJournal::open(dir.path())
            .unwrap()
            .recover(SystemTime::now(), AGE);
        assert_eq!(recovered.messages.len(), 1);
        assert_eq!(recovered.messages[0].0, id(2));
    }

    #[test]
    fn bounds_refuse_new_messages_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = PartialJournal::open(dir.path()).unwrap();
        let record = 4 + RECORD_SIZE as u64;
        journal.set_limits(JournalLimits {
            max_messages: 2,
            max_bytes: 3 * record,
        });
        assert_eq!(
            journal.append(&id(1), &delivery(id(1), 0, 3)).unwrap(),
            Appended::Written
        );
        assert_eq!(
            journal.append(&id(2), &delivery(id(2), 0, 3)).unwrap(),
            Appended::Written
        );
        // A third message: too many files.
        assert_eq!(
            journal.append(&id(3), &delivery(id(3), 0, 3)).unwrap(),
            Appended::Full
        );
        assert!(!dir.path().join(file_name(&id(3))).exists());
        // A known message may grow, up to the byte bound.
        assert_eq!(
            journal.append(&id(1), &delivery(id(1), 1, 3)).unwrap(),
            Appended::Written
        );
        assert_eq!(
            journal.append(&id(2), &delivery(id(2), 1, 3)).unwrap(),
            Appended::Full
        );
        assert_eq!(journal.bytes(), 3 * record);
        // Room again once a message is removed.
        journal.remove(&id(1));
        assert_eq!(
            journal.append(&id(3), &delivery(id(3), 0, 3)).unwrap(),
            Appended::Written
        );
        assert_eq!(journal.len(), 2);
    }

    #[test]
    fn the_default_bounds_follow_the_core() {
        let config = ClientConfig::default();
        let limits = JournalLimits::for_config(&config);
        assert_eq!(limits.max_messages, config.max_partial_messages);
        // Every fragment the core may buffer fits, at the largest delivery.
        let fragments = config.reassembly.max_buffered_bytes / protocol::frame::FRAGMENT_CAPACITY;
        assert!(limits.max_bytes >= (fragments * (4 + RECORD_SIZE)) as u64);
    }

    #[test]
    fn corrupt_foreign_and_stale_files_are_removed_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let good = delivery(id(1), 0, 2);
        let mut journal = PartialJournal::open(dir.path()).unwrap();
        journal.append(&id(1), &good).unwrap();
        // A record that is not a frame.
        let mut garbage = 100u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[7u8; 100]);
        fs::write(path(&file_name(&id(2))), &garbage).unwrap();
        // A length beyond any delivery.
        fs::write(path(&file_name(&id(3))), u32::MAX.to_be_bytes()).unwrap();
        // A record one byte short of a delivery.
        let mut short = (RECORD_SIZE as u32 - 1).to_be_bytes().to_vec();
        short.extend_from_slice(&delivery_bytes(id(5), 0, 2)[1..]);
        fs::write(path(&file_name(&id(4))), &short).unwrap();
        // A record one byte longer.
        let mut long = (RECORD_SIZE as u32 + 1).to_be_bytes().to_vec();
        long.extend_from_slice(&delivery_bytes(id(6), 0, 2));
        long.push(0);
        fs::write(path(&file_name(&id(6))), &long).unwrap();
        // Names that are no message id, and an empty file.
        let mut foreign = (RECORD_SIZE as u32).to_be_bytes().to_vec();
        foreign.extend_from_slice(&delivery_bytes(id(5), 0, 2));
        fs::write(path("notes.txt"), b"hello").unwrap();
        fs::write(path(&"AB".repeat(16)), &foreign).unwrap();
        fs::write(path(&file_name(&id(7))), b"").unwrap();

        let mut again = PartialJournal::open(dir.path()).unwrap();
        let recovered = again.recover(SystemTime::now(), AGE);
        assert_eq!(recovered.messages, vec![(id(1), vec![good])]);
        assert_eq!(recovered.discarded, 7);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);

        // At a later start, the last append is older than the timeout.
        let later = SystemTime::now() + AGE + Duration::from_secs(1);
        let recovered = PartialJournal::open(dir.path())
            .unwrap()
            .recover(later, AGE);
        assert!(recovered.messages.is_empty());
        assert_eq!(recovered.discarded, 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = PartialJournal::open(dir.path()).unwrap();
        let first = delivery(id(1), 0, 3);
        journal.append(&id(1), &first).unwrap();
        let file = dir.path().join(file_name(&id(1)));
        let mut torn = fs::read(&file).unwrap();
        torn.extend_from_slice(&(RECORD_SIZE as u32).to_be_bytes());
        torn.extend_from_slice(&delivery_bytes(id(1), 1, 3)[..100]);
        fs::write(&file, &torn).unwrap();

        let mut again = PartialJournal::open(dir.path()).unwrap();
        let recovered = again.recover(SystemTime::now(), AGE);
        assert_eq!(recovered.messages, vec![(id(1), vec![first.clone()])]);
        assert_eq!(fs::read(&file).unwrap().len(), 4 + RECORD_SIZE);
        // Appends go on after the whole records.
        let second = delivery(id(1), 1, 3);
        again.append(&id(1), &second).unwrap();
        let recovered = PartialJournal::open(dir.path())
            .unwrap()
            .recover(SystemTime::now(), AGE);
        assert_eq!(recovered.messages, vec![(id(1), vec![first, second])]);
    }

    #[test]
    fn sealed_replies_are_kept_beside_deliveries_and_their_lengths_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = PartialJournal::open(dir.path()).unwrap();
        let reply = JournalRecord::SealedReply(vec![9u8; 2100]);
        let forward = delivery(id(1), 1, 3);
        assert_eq!(journal.append(&id(1), &reply).unwrap(), Appended::Written);
        assert_eq!(journal.append(&id(1), &forward).unwrap(), Appended::Written);
        assert_eq!(journal.bytes(), (4 + 2100 + 4 + RECORD_SIZE) as u64);
        // The prefix of a reply has the top bit set; a forward one does not.
        let file = fs::read(dir.path().join(file_name(&id(1)))).unwrap();
        assert_eq!(file[..4], (2100u32 | REPLY_FLAG).to_be_bytes());
        assert_eq!(
            file[4 + 2100..4 + 2100 + 4],
            (RECORD_SIZE as u32).to_be_bytes()
        );

        // An empty reply, or one longer than any sealed reply, is refused.
        for bad in [Vec::new(), vec![1u8; MAX_SEALED_REPLY + 1]] {
            assert!(
                journal
                    .append(&id(2), &JournalRecord::SealedReply(bad))
                    .is_err()
            );
        }
        assert!(!dir.path().join(file_name(&id(2))).exists());

        let recovered = PartialJournal::open(dir.path())
            .unwrap()
            .recover(SystemTime::now(), AGE);
        assert_eq!(recovered.messages, vec![(id(1), vec![reply, forward])]);
        assert_eq!(recovered.discarded, 0);

        // On disk, a reply prefix with a length beyond a sealed reply (or
        // zero) makes the file malformed: removed, not replayed.
        for len in [0u32, MAX_SEALED_REPLY as u32 + 1, u32::MAX] {
            let mut bad = (len | REPLY_FLAG).to_be_bytes().to_vec();
            bad.extend_from_slice(&[3u8; 64]);
            fs::write(dir.path().join(file_name(&id(3))), &bad).unwrap();
            let recovered = PartialJournal::open(dir.path())
                .unwrap()
                .recover(SystemTime::now(), AGE);
            assert_eq!(recovered.discarded, 1, "length {len}");
            assert_eq!(recovered.messages.len(), 1);
            assert!(!dir.path().join(file_name(&id(3))).exists());
        }
    }
}
