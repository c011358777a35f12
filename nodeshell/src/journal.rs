//! The crash-safe replay journal.
//!
//! The in-memory replay filter dies with the process. So that a node killed
//! with SIGKILL and restarted still refuses a packet it had already forwarded,
//! every accepted packet's replay tag is appended here, and the journal is
//! written out (handed to the kernel) before the packet is released: a packet
//! that left the node is always in the journal. On start, the journal is read
//! back into the filter. At each key rotation it is rewritten without the
//! retired epochs, so it stays bounded by two epochs of traffic.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use protocol::epoch::Epoch;
use protocol::replay::ReplayRecord;

const RECORD: usize = 8 + 32;

/// An append-only file of replay records.
pub struct ReplayJournal {
    path: PathBuf,
    out: BufWriter<File>,
    dirty: bool,
    /// The key epoch the node was in at the last [`ReplayJournal::follow_epoch`].
    epoch: Option<Epoch>,
}

impl ReplayJournal {
    /// Opens (or creates) the journal at `path` and returns the records already in it.
    pub fn open(path: &Path) -> Result<(ReplayJournal, Vec<ReplayRecord>)> {
        let records = read_records(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open replay journal", path.display()))?;
        // Drop a torn last record so that new records stay aligned.
        file.set_len((records.len() * RECORD) as u64)
            .with_context(|| format!("{}: cannot repair replay journal", path.display()))?;
        Ok((
            ReplayJournal {
                path: path.to_path_buf(),
                out: BufWriter::new(file),
                dirty: false,
                epoch: None,
            },
            records,
        ))
    }

    /// Appends a record (buffered until [`ReplayJournal::flush`]).
    pub fn append(&mut self, record: &ReplayRecord) -> Result<()> {
        self.out.write_all(&record.epoch.0.to_le_bytes())?;
        self.out.write_all(&record.tag)?;
        self.dirty = true;
        Ok(())
    }

    /// Hands buffered records to the kernel (survives a process crash).
    pub fn flush(&mut self) -> Result<()> {
        if self.dirty {
            self.out.flush()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Keeps the journal to the live epochs: called with the node's current
    /// key epoch, it rewrites the journal without the epochs before the
    /// previous one when the epoch has changed since the last call (their
    /// keys, and so their tags, are retired). The first call only notes the epoch.
    pub fn follow_epoch(&mut self, current: Epoch) -> Result<()> {
        let last = self.epoch.replace(current);
        match last {
            Some(last) if last != current => self.compact(current.previous().unwrap_or(current)),
            _ => Ok(()),
        }
    }

    /// Rewrites the journal keeping only epochs from `oldest_kept` on.
    pub fn compact(&mut self, oldest_kept: Epoch) -> Result<()> {
        self.flush()?;
        let kept: Vec<ReplayRecord> = read_records(&self.path)?
            .into_iter()
            .filter(|r| r.epoch >= oldest_kept)
            .collect();
        let tmp = self.path.with_extension("tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            for r in &kept {
                w.write_all(&r.epoch.0.to_le_bytes())?;
                w.write_all(&r.tag)?;
            }
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        let file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.out = BufWriter::new(file);
        Ok(())
    }
}

fn read_records(path: &Path) -> Result<Vec<ReplayRecord>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .with_context(|| format!("{}: cannot read replay journal", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("{}: cannot read replay journal", path.display()));
        }
    }
    // A torn last record (crash mid-write) is ignored.
    Ok(bytes
        .chunks_exact(RECORD)
        .filter_map(|c| {
            let (epoch, tag) = c.split_at(8);
            Some(ReplayRecord {
                epoch: Epoch(u64::from_le_bytes(epoch.try_into().ok()?)),
                tag: tag.try_into().ok()?,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_compaction_drops_old_epochs() {
        let dir = std::env::temp_dir().join(format!("mixnode-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replay.journal");
        let (mut j, old) = ReplayJournal::open(&path).unwrap();
        assert!(old.is_empty());
        for e in 0..3u64 {
            j.append(&ReplayRecord {
                epoch: Epoch(e),
                tag: [e as u8; 32],
            })
            .unwrap();
        }
        j.flush().unwrap();
        // A torn write at the end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        let (mut j, back) = ReplayJournal::open(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].tag, [2; 32]);
        j.append(&ReplayRecord {
            epoch: Epoch(2),
            tag: [9; 32],
        })
        .unwrap();
        j.flush().unwrap();
        let (mut j, back) = ReplayJournal::open(&path).unwrap();
        assert_eq!(back.len(), 4, "records after a torn one stay aligned");
        assert_eq!(back[3].tag, [9; 32]);
        j.compact(Epoch(1)).unwrap();
        let (mut j, kept) = ReplayJournal::open(&path).unwrap();
        assert_eq!(
            kept.iter().map(|r| r.epoch.0).collect::<Vec<_>>(),
            vec![1, 2, 2]
        );
        // Following the epochs: the first call notes it, a change compacts.
        j.follow_epoch(Epoch(2)).unwrap();
        j.follow_epoch(Epoch(2)).unwrap();
        let (mut j, kept) = ReplayJournal::open(&path).unwrap();
        assert_eq!(kept.len(), 3);
        j.follow_epoch(Epoch(2)).unwrap();
        j.follow_epoch(Epoch(3)).unwrap();
        let (_, kept) = ReplayJournal::open(&path).unwrap();
        assert_eq!(
            kept.iter().map(|r| r.epoch.0).collect::<Vec<_>>(),
            vec![2, 2]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
