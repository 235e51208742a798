//! The GFID changelog: the record model, its on-disk codec, the recorder (rollover, fsync,
//! crash recovery), the mmap reader, the history index and the consumer API.
//!
//! This module knows nothing of FUSE, SSH or async runtimes: it is fed records by the
//! filesystem and read by sync workers and tools. The format is in `docs/changelog-format.md`.

pub mod codec;
pub mod consumer;
pub mod dump;
pub mod history;
pub mod reader;
pub mod record;
pub mod tail;
pub mod writer;

pub use consumer::{ChangelogRef, Chunk, Consumer, History, Position};
pub use reader::ChangelogFile;
pub use record::{EntryDetail, EntryName, Kind, Op, Origin, Record};
pub use writer::{ChangelogConfig, Recorder};

/// All records of a brick in recording order: published changelogs (by the index), then any
/// active files. For tools (`georep changelog dump`) and tests. Retries if a rollover happens
/// while reading, so that the result is one consistent snapshot.
pub fn brick_records(
    brick: &crate::types::BrickLayout,
) -> Result<Vec<Record>, Box<dyn std::error::Error + Send + Sync>> {
    brick_records_since(brick, 0)
}

/// As `brick_records`, from the first changelog holding changes after `t_ms` on.
pub fn brick_records_since(
    brick: &crate::types::BrickLayout,
    t_ms: u64,
) -> Result<Vec<Record>, Box<dyn std::error::Error + Send + Sync>> {
    let dir = brick.changelog_dir();
    let index = dir.join("history.idx");
    loop {
        let snap = history::read_index(&index)?;
        let mut actives: Vec<_> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("current.")))
            .collect();
        actives.sort();
        let mut out = Vec::new();
        for e in &snap.entries[snap.first_after(t_ms)..] {
            let p = history::changelog_path(&dir, e.end_ms);
            match ChangelogFile::open(&p) {
                Ok(f) => {
                    f.for_each(|r| out.push(r));
                }
                // Removed by retention.
                Err(reader::ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut raced = false;
        for p in actives {
            match ChangelogFile::open(&p) {
                Ok(f) => {
                    f.for_each(|r| out.push(r));
                }
                Err(_) => raced = true,
            }
        }
        if !raced && history::read_index(&index)?.entries.len() == snap.entries.len() {
            return Ok(out);
        }
    }
}
