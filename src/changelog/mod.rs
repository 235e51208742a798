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
pub mod writer;

pub use consumer::{ChangelogRef, Consumer, History};
pub use reader::ChangelogFile;
pub use record::{EntryDetail, EntryName, Kind, Op, Record};
pub use writer::{ChangelogConfig, Recorder};

/// All records of a brick in recording order: published changelogs (by the index), then any
/// active file. For tools (`georep changelog dump`) and tests.
pub fn brick_records(
    brick: &crate::types::BrickLayout,
) -> Result<Vec<Record>, Box<dyn std::error::Error + Send + Sync>> {
    let dir = brick.changelog_dir();
    let snap = history::read_index(&dir.join("history.idx"))?;
    let mut out = Vec::new();
    for e in &snap.entries {
        let p = history::changelog_path(&dir, e.end_ms);
        match ChangelogFile::open(&p) {
            Ok(f) => {
                f.for_each(|r| out.push(r));
            }
            Err(reader::ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut actives: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("current.")))
        .collect();
    actives.sort();
    for p in actives {
        if let Ok(f) = ChangelogFile::open(&p) {
            f.for_each(|r| out.push(r));
        }
    }
    Ok(out)
}
