//! The history index: one fixed-size record per published changelog, in publishing order, so
//! that the changelogs from a time T on are found by binary search (O(log n)). It stores
//! timestamps, never paths: a changelog's path is derived from its end time.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"GEOREPHX";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
pub const ENTRY_LEN: usize = 32;

/// The file's records may be missing changes made just before its start: the brick's daemon
/// stopped uncleanly, or recording was off. A consumer must not trust history across it.
pub const FLAG_UNCLEAN: u16 = 1;

/// One published changelog.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexEntry {
    pub start_ms: u64,
    /// Rollover time; unique and strictly increasing along the index. Names the file.
    pub end_ms: u64,
    pub first_seq: u64,
    pub count: u32,
    pub flags: u16,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..8].copy_from_slice(&self.start_ms.to_le_bytes());
        b[8..16].copy_from_slice(&self.end_ms.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..28].copy_from_slice(&self.count.to_le_bytes());
        b[28..30].copy_from_slice(&self.flags.to_le_bytes());
        let check = crc32fast::hash(&b[0..30]) as u16;
        b[30..32].copy_from_slice(&check.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<IndexEntry> {
        let b: &[u8; ENTRY_LEN] = b.try_into().ok()?;
        let check = crc32fast::hash(&b[0..30]) as u16;
        if check.to_le_bytes() != b[30..32] {
            return None;
        }
        Some(IndexEntry {
            start_ms: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            end_ms: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            first_seq: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            count: u32::from_le_bytes(b[24..28].try_into().unwrap()),
            flags: u16::from_le_bytes(b[28..30].try_into().unwrap()),
        })
    }

    pub fn is_unclean(&self) -> bool {
        self.flags & FLAG_UNCLEAN != 0
    }
}

/// `changelogs/YYYY/MM/DD/CHANGELOG.<end_ms>`, the date in UTC.
pub fn changelog_path(dir: &Path, end_ms: u64) -> PathBuf {
    let (y, m, d) = civil_from_days((end_ms / 86_400_000) as i64);
    dir.join(format!("{y:04}")).join(format!("{m:02}")).join(format!("{d:02}")).join(format!("CHANGELOG.{end_ms}"))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("history index {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("history index {0}: not a georep history index")]
    BadHeader(PathBuf),
}

fn header(created_ms: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(MAGIC);
    b[8..10].copy_from_slice(&VERSION.to_le_bytes());
    b[10..12].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
    b[16..24].copy_from_slice(&created_ms.to_le_bytes());
    let crc = crc32fast::hash(&b[0..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A read-only snapshot of the index.
#[derive(Clone, Debug)]
pub struct IndexSnapshot {
    /// When recording began on this brick: nothing before it was ever recorded.
    pub created_ms: u64,
    pub entries: Vec<IndexEntry>,
}

impl IndexSnapshot {
    /// Index of the first changelog holding changes made after `t_ms`, by binary search.
    pub fn first_after(&self, t_ms: u64) -> usize {
        self.entries.partition_point(|e| e.end_ms <= t_ms)
    }
}

fn parse(path: &Path, b: &[u8]) -> Result<(IndexSnapshot, usize), IndexError> {
    if b.len() < HEADER_LEN
        || &b[0..8] != MAGIC
        || u16::from_le_bytes([b[8], b[9]]) != VERSION
        || crc32fast::hash(&b[0..28]).to_le_bytes() != b[28..32]
    {
        return Err(IndexError::BadHeader(path.to_path_buf()));
    }
    let created_ms = u64::from_le_bytes(b[16..24].try_into().unwrap());
    let mut entries = Vec::with_capacity((b.len() - HEADER_LEN) / ENTRY_LEN);
    let mut good = HEADER_LEN;
    for chunk in b[HEADER_LEN..].chunks(ENTRY_LEN) {
        match IndexEntry::decode(chunk) {
            Some(e) if entries.last().is_none_or(|l: &IndexEntry| l.end_ms < e.end_ms) => {
                entries.push(e);
                good += ENTRY_LEN;
            }
            _ => break,
        }
    }
    Ok((IndexSnapshot { created_ms, entries }, good))
}

/// Reads the index at `path` (a torn tail is ignored).
pub fn read_index(path: &Path) -> Result<IndexSnapshot, IndexError> {
    let b = std::fs::read(path).map_err(|source| IndexError::Io { path: path.to_path_buf(), source })?;
    parse(path, &b).map(|(s, _)| s)
}

/// When the first change after `after_ms` was recorded (the start of the first published
/// changelog ending after it that holds records), if there is one: what a worker that is not
/// running leaves pending.
pub fn first_change_after(path: &Path, after_ms: u64) -> Option<u64> {
    let snap = read_index(path).ok()?;
    snap.entries[snap.first_after(after_ms)..].iter().find(|e| e.count > 0).map(|e| e.start_ms.max(after_ms))
}

/// Follows the index as it grows: each `poll` reads only what was appended since the last,
/// so a consumer that looks after every batch does not read the whole index each time.
pub struct IndexFollower {
    path: PathBuf,
    file: Option<File>,
    off: u64,
    /// When recording began (`u64::MAX` until the index exists).
    pub created_ms: u64,
    /// The newest entry read.
    pub last: Option<IndexEntry>,
}

impl IndexFollower {
    pub fn new(path: &Path) -> IndexFollower {
        IndexFollower { path: path.to_path_buf(), file: None, off: 0, created_ms: u64::MAX, last: None }
    }

    /// The entries appended since the last poll (all of them on the first). A torn entry at
    /// the end is left for the next poll.
    pub fn poll(&mut self) -> Result<Vec<IndexEntry>, IndexError> {
        let io = |source| IndexError::Io { path: self.path.clone(), source };
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io(e)),
            }
        }
        let file = self.file.as_ref().unwrap();
        let mut b = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read_at(&mut chunk, self.off + b.len() as u64).map_err(io)?;
            if n == 0 {
                break;
            }
            b.extend_from_slice(&chunk[..n]);
        }
        let mut body = &b[..];
        if self.off == 0 {
            if b.len() < HEADER_LEN {
                return Ok(Vec::new());
            }
            let (snap, _) = parse(&self.path, &b[..HEADER_LEN])?;
            self.created_ms = snap.created_ms;
            self.off = HEADER_LEN as u64;
            body = &b[HEADER_LEN..];
        }
        let mut out = Vec::new();
        for c in body.chunks_exact(ENTRY_LEN) {
            match IndexEntry::decode(c) {
                Some(e) if self.last.is_none_or(|l| l.end_ms < e.end_ms) => {
                    out.push(e);
                    self.last = Some(e);
                    self.off += ENTRY_LEN as u64;
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

/// The writer side, owned by the brick's mount daemon.
pub struct IndexWriter {
    path: PathBuf,
    file: File,
    len: u64,
    pub last: Option<IndexEntry>,
    pub created_ms: u64,
}

impl IndexWriter {
    /// Opens (creating if needed) the index and cuts a torn tail.
    pub fn open(path: &Path) -> Result<IndexWriter, IndexError> {
        let io = |source| IndexError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        let mut b = std::fs::read(path).map_err(io)?;
        if b.is_empty() {
            let created_ms = crate::types::EpochMs::now().0;
            file.write_all(&header(created_ms)).map_err(io)?;
            file.sync_all().map_err(io)?;
            b = header(created_ms).to_vec();
        }
        let (snap, good) = parse(path, &b)?;
        if good < b.len() {
            file.set_len(good as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(IndexWriter {
            path: path.to_path_buf(),
            file,
            len: good as u64,
            last: snap.entries.last().copied(),
            created_ms: snap.created_ms,
        })
    }

    /// Appends `e` and makes it durable.
    pub fn append(&mut self, e: IndexEntry) -> Result<(), IndexError> {
        let io = |source| IndexError::Io { path: self.path.clone(), source };
        self.file.write_all_at(&e.encode(), self.len).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len += ENTRY_LEN as u64;
        self.last = Some(e);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        let p = changelog_path(Path::new("/c"), 1_795_000_000_123);
        assert_eq!(p, Path::new("/c/2026/11/18/CHANGELOG.1795000000123"));
    }

    #[test]
    fn index_binary_search_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.idx");
        let mut w = IndexWriter::open(&p).unwrap();
        for i in 1..=100u64 {
            w.append(IndexEntry { start_ms: i * 10 - 5, end_ms: i * 10, first_seq: i, count: 1, flags: 0 }).unwrap();
        }
        drop(w);
        // a torn half record at the end
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[7u8; 13]).unwrap();
        let s = read_index(&p).unwrap();
        assert_eq!(s.entries.len(), 100);
        assert_eq!(s.first_after(0), 0);
        assert_eq!(s.first_after(10), 1);
        assert_eq!(s.first_after(15), 1);
        assert_eq!(s.first_after(1000), 100);
        let mut follow = IndexFollower::new(&p);
        assert_eq!(follow.poll().unwrap().len(), 100, "the torn entry is left");
        let mut w = IndexWriter::open(&p).unwrap();
        assert_eq!(w.last.unwrap().end_ms, 1000);
        assert_eq!(std::fs::metadata(&p).unwrap().len() as usize, HEADER_LEN + 100 * ENTRY_LEN);
        // A follower reads only what was appended, where the torn entry was.
        assert!(follow.poll().unwrap().is_empty());
        w.append(IndexEntry { start_ms: 1001, end_ms: 1010, first_seq: 101, count: 1, flags: 0 }).unwrap();
        assert_eq!(follow.poll().unwrap().iter().map(|e| e.end_ms).collect::<Vec<_>>(), [1010]);
        assert_eq!(follow.created_ms, s.created_ms);
    }
}
