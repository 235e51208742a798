//! The consumer API for sync workers: which changelogs are there to process, in order, from a
//! time T on (history) or since the last one processed (live), with processing / processed
//! states kept durably per consumer; and retention of what every consumer has processed.
//!
//! A consumer's state is one number, the end time of the last changelog it processed, kept in
//! `<brick>/.georep/consumers/<name>`. Changelogs after it are *processing* once handed out by
//! `scan` and *processed* once `done` has been called for them (always in order).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::history::{self, IndexEntry, IndexSnapshot};
use crate::types::{BrickLayout, EpochMs};

/// A published changelog, as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogRef {
    pub entry: IndexEntry,
    pub path: PathBuf,
}

impl ChangelogRef {
    /// Opens the changelog. Publishing indexes a file before renaming it to its dated path, so
    /// for a moment it may still carry its active name (complete and synced by then).
    pub fn open(&self) -> Result<super::ChangelogFile, super::reader::ReadError> {
        match super::ChangelogFile::open(&self.path) {
            Err(super::reader::ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let dir = self.path.ancestors().nth(4).unwrap_or(Path::new("."));
                let active = dir.join(format!("{}{:020}", super::writer::ACTIVE_PREFIX, self.entry.first_seq));
                match super::ChangelogFile::open(&active) {
                    // Renamed meanwhile.
                    Err(_) => super::ChangelogFile::open(&self.path),
                    ok => ok,
                }
            }
            r => r,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Index(#[from] history::IndexError),
    #[error("invalid consumer name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
    #[error("changelog {0} is not the next to be processed")]
    OutOfOrder(u64),
}

/// An inotify watch on the history index, if it exists.
fn watch_index(dir: &Path) -> Option<nix::sys::inotify::Inotify> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .ok()
        .filter(|i| i.add_watch(&dir.join("history.idx"), AddWatchFlags::IN_MODIFY).is_ok())
}

/// What history can give from a time T on.
#[derive(Clone, Debug)]
pub struct History {
    pub changelogs: Vec<ChangelogRef>,
    /// False if changes after T may be missing from `changelogs` (recorded before the index
    /// began, removed by retention, or lost to an unclean stop): crawl instead.
    pub complete: bool,
}

const RETAINED_SINCE: &str = "retained-since";

pub struct Consumer {
    dir: PathBuf,
    state: PathBuf,
    processed_ms: u64,
    pending: Vec<ChangelogRef>,
    /// Watches the history index, so that a rollover is known at once.
    watch: Option<nix::sys::inotify::Inotify>,
}

fn refs(dir: &Path, snap: &IndexSnapshot, from: usize) -> Vec<ChangelogRef> {
    snap.entries[from..]
        .iter()
        .map(|e| ChangelogRef { entry: *e, path: history::changelog_path(dir, e.end_ms) })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    crate::durable::replace(path, text.as_bytes())
}

impl Consumer {
    /// Registers (or re-opens) the consumer `name` of a brick.
    pub fn register(brick: &BrickLayout, name: &str) -> Result<Consumer, ConsumerError> {
        if name.is_empty()
            || name.starts_with('.')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConsumerError::BadName(name.to_string()));
        }
        let cdir = brick.consumers_dir();
        fs::create_dir_all(&cdir).map_err(|source| ConsumerError::Io { path: cdir.clone(), source })?;
        let state = cdir.join(name);
        let processed_ms = match read_u64(&state) {
            Some(v) => v,
            None => {
                write_atomic(&state, "0\n").map_err(|source| ConsumerError::Io { path: state.clone(), source })?;
                0
            }
        };
        let dir = brick.changelog_dir();
        let watch = watch_index(&dir);
        Ok(Consumer { dir, state, processed_ms, pending: Vec::new(), watch })
    }

    /// Forgets the consumer `name` of a brick (its progress mark), if it is there.
    pub fn remove(brick: &BrickLayout, name: &str) -> Result<(), ConsumerError> {
        let p = brick.consumers_dir().join(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ConsumerError::Io { path: p, source }),
        }
    }

    /// Waits until a changelog is published (the index grows) or `timeout` passes. Without
    /// inotify it simply sleeps.
    pub fn wait(&mut self, timeout: Duration) {
        use std::os::fd::AsFd;
        if self.watch.is_none() {
            // The index appears when the brick is first mounted.
            self.watch = watch_index(&self.dir);
        }
        let Some(w) = &self.watch else {
            std::thread::sleep(timeout);
            return;
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [nix::poll::PollFd::new(w.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX));
        // Drain, so that the next wait blocks again.
        while matches!(w.read_events(), Ok(ev) if !ev.is_empty()) {}
    }

    fn snapshot(&self) -> Result<IndexSnapshot, ConsumerError> {
        match history::read_index(&self.dir.join("history.idx")) {
            // Never mounted: nothing recorded yet, and no history to trust.
            Err(history::IndexError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(IndexSnapshot { created_ms: u64::MAX, entries: Vec::new() })
            }
            r => Ok(r?),
        }
    }

    /// End time of the last changelog processed (0: none).
    pub fn processed_ms(&self) -> u64 {
        self.processed_ms
    }

    /// Changelogs published after the last processed one, oldest first; they become
    /// *processing*.
    pub fn scan(&mut self) -> Result<&[ChangelogRef], ConsumerError> {
        let snap = self.snapshot()?;
        self.pending = refs(&self.dir, &snap, snap.first_after(self.processed_ms));
        Ok(&self.pending)
    }

    /// Changelogs holding changes made after `t_ms`, and whether they are all there are.
    pub fn history(&self, t_ms: u64) -> Result<History, ConsumerError> {
        let snap = self.snapshot()?;
        let from = snap.first_after(t_ms);
        let changelogs = refs(&self.dir, &snap, from);
        let retained = read_u64(&self.dir.join(RETAINED_SINCE)).unwrap_or(0);
        let complete =
            t_ms >= snap.created_ms && t_ms >= retained && !snap.entries[from..].iter().any(|e| e.is_unclean());
        Ok(History { changelogs, complete })
    }

    /// Marks `c` processed. Changelogs are processed in order: `c` must be the oldest one not
    /// yet processed.
    pub fn done(&mut self, c: &ChangelogRef) -> Result<(), ConsumerError> {
        if c.entry.end_ms <= self.processed_ms {
            return Ok(());
        }
        // The next to process is the oldest of the last scan; the index is read again only
        // when nothing was scanned (done() runs once per changelog: it must not cost O(index)).
        let next = match self.pending.first() {
            Some(p) => Some(p.entry.end_ms),
            None => {
                let snap = self.snapshot()?;
                snap.entries.get(snap.first_after(self.processed_ms)).map(|e| e.end_ms)
            }
        };
        if next != Some(c.entry.end_ms) {
            return Err(ConsumerError::OutOfOrder(c.entry.end_ms));
        }
        write_atomic(&self.state, &format!("{}\n", c.entry.end_ms))
            .map_err(|source| ConsumerError::Io { path: self.state.clone(), source })?;
        self.processed_ms = c.entry.end_ms;
        self.pending.retain(|p| p.entry.end_ms > c.entry.end_ms);
        Ok(())
    }

    /// Moves the progress mark to `t_ms`: changelogs that end by then count as processed,
    /// the next scan starts after them (a failback starts from its promotion point; the
    /// restored session from the moment the roles came back).
    pub fn resume_from(&mut self, t_ms: u64) -> Result<(), ConsumerError> {
        write_atomic(&self.state, &format!("{t_ms}\n"))
            .map_err(|source| ConsumerError::Io { path: self.state.clone(), source })?;
        self.processed_ms = t_ms;
        self.pending.clear();
        Ok(())
    }

    /// Changelogs handed out by the last `scan` and not yet done.
    pub fn processing(&self) -> &[ChangelogRef] {
        &self.pending
    }
}

/// Removes published changelogs older than `retention`, whether every consumer processed them
/// or not: retention is the cap that keeps a secondary gone for long from filling the
/// primary's disk. A consumer left behind finds its history incomplete (`History::complete`)
/// and catches up by a crawl. Returns how many were removed.
pub fn apply_retention(dir: &Path, retention: Duration) -> Result<usize, ConsumerError> {
    let cutoff = EpochMs::now().0.saturating_sub(retention.as_millis() as u64);
    let snap = history::read_index(&dir.join("history.idx"))?;
    let retained_path = dir.join(RETAINED_SINCE);
    let retained = read_u64(&retained_path).unwrap_or(0);
    let mut removed = 0;
    let mut new_retained = retained;
    for e in &snap.entries[snap.first_after(retained)..] {
        if e.end_ms > cutoff {
            break;
        }
        let p = history::changelog_path(dir, e.end_ms);
        match fs::remove_file(&p) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConsumerError::Io { path: p, source }),
        }
        new_retained = e.end_ms;
        // Empty day directories go too (best effort).
        if let Some(day) = p.parent() {
            let _ = fs::remove_dir(day);
        }
    }
    if new_retained != retained {
        write_atomic(&retained_path, &format!("{new_retained}\n"))
            .map_err(|source| ConsumerError::Io { path: retained_path, source })?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::Duration;

    use super::*;
    use crate::changelog::writer::{ChangelogConfig, Recorder};
    use crate::changelog::{ChangelogFile, Op};
    use crate::types::{Gfid, VolumeId};

    fn recorder(brick: &BrickLayout) -> (Recorder, std::thread::JoinHandle<()>) {
        let cfg = ChangelogConfig {
            rollover: Duration::from_secs(3600),
            fsync_interval: Duration::from_secs(3600),
            retention: Duration::from_secs(3600),
        };
        Recorder::open(&brick.changelog_dir(), VolumeId([1; 16]), cfg).unwrap()
    }

    fn publish_one(rec: &Recorder, name: &str) {
        let g = Gfid::generate();
        rec.rename(g, (Gfid::ROOT, OsStr::new(name)), (Gfid::ROOT, OsStr::new("x")), Default::default()).unwrap();
        rec.rollover().unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }

    #[test]
    fn scan_done_history_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let brick = BrickLayout::new(dir.path());
        let (rec, _t) = recorder(&brick);
        let t0 = crate::types::EpochMs::now().0;
        for i in 0..5 {
            publish_one(&rec, &format!("n{i}"));
        }
        let mut c = Consumer::register(&brick, "worker-1").unwrap();
        let pending: Vec<ChangelogRef> = c.scan().unwrap().to_vec();
        assert_eq!(pending.len(), 5);
        assert!(pending.windows(2).all(|w| w[0].entry.end_ms < w[1].entry.end_ms));
        for p in &pending {
            let f = ChangelogFile::open(&p.path).unwrap();
            assert_eq!(f.records().0[0].op, Op::Rename);
        }
        // Out of order is refused; in order is durable across re-registration.
        assert!(matches!(c.done(&pending[1]), Err(ConsumerError::OutOfOrder(_))));
        c.done(&pending[0]).unwrap();
        c.done(&pending[1]).unwrap();
        assert_eq!(c.processing().len(), 3);
        let mut c2 = Consumer::register(&brick, "worker-1").unwrap();
        assert_eq!(c2.processed_ms(), pending[1].entry.end_ms);
        assert_eq!(c2.scan().unwrap().len(), 3);
        // History from a time: what follows it, and complete since recording began before it.
        let h = c2.history(pending[2].entry.end_ms).unwrap();
        assert_eq!(h.changelogs.len(), 2);
        assert!(h.complete);
        assert!(!c2.history(t0.saturating_sub(60_000)).unwrap().complete, "before the index began");
        assert!(Consumer::register(&brick, "../evil").is_err());
    }

    #[test]
    fn retention_is_a_cap_whatever_the_consumers() {
        let dir = tempfile::tempdir().unwrap();
        let brick = BrickLayout::new(dir.path());
        let (rec, _t) = recorder(&brick);
        for i in 0..4 {
            publish_one(&rec, &format!("n{i}"));
        }
        let mut a = Consumer::register(&brick, "a").unwrap();
        let b = Consumer::register(&brick, "b").unwrap();
        let all: Vec<ChangelogRef> = a.scan().unwrap().to_vec();
        for c in &all[..3] {
            a.done(c).unwrap();
        }
        // Nothing younger than the retention period goes, processed or not.
        assert_eq!(apply_retention(&brick.changelog_dir(), Duration::from_secs(3600)).unwrap(), 0);
        // Older, everything goes: b (which processed nothing) is left behind.
        assert_eq!(apply_retention(&brick.changelog_dir(), Duration::ZERO).unwrap(), 4);
        assert!(all.iter().all(|c| !c.path.exists()));
        assert!(!b.history(b.processed_ms()).unwrap().complete, "b must crawl");
        assert!(!a.history(a.processed_ms()).unwrap().complete, "a lost its last changelog too");
    }
}
