//! The consumer API for sync workers: the records to process, in order, from where the
//! consumer is: published changelogs while some are left (History), then the active file as
//! it is appended to (tailing: `tail.rs`); the position kept durably per consumer; and
//! retention of what every consumer has processed.
//!
//! A consumer's position is two numbers in `<brick>/.georep/consumers/<name>`: the sequence
//! number of the first record not processed, and the time before which every change is
//! processed (the stime). Records are processed in recording order, and `done` is called only
//! once the secondary holds them durably.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::codec;
use super::history::{self, IndexEntry, IndexFollower, IndexSnapshot};
use super::record::{RECORD_EXCHANGE, Record};
use super::tail::Tail;
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
    #[error(transparent)]
    Read(#[from] super::reader::ReadError),
    #[error("invalid consumer name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
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

/// Where a consumer is: every record before `seq` is processed, and every change made before
/// `ms` (its stime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub ms: u64,
}

/// Records to process, in recording order, and where the consumer is once they are.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<Record>,
    pub end: Position,
    /// Published changelogs this chunk finishes (0: it was read from the active file).
    pub changelogs: usize,
}

/// The active file being tailed: where its next unread record begins.
struct Tailing {
    first_seq: u64,
    file: fs::File,
    off: u64,
    next_seq: u64,
}

pub struct Consumer {
    dir: PathBuf,
    state: PathBuf,
    pos: Position,
    index: IndexFollower,
    /// Published changelogs not wholly processed, oldest first.
    pending: VecDeque<IndexEntry>,
    /// The recorder's tail page, once there is one.
    tail: Option<Tail>,
    /// Its event count when the last `read` began: `wait` returns once it moves.
    seen_event: u32,
    tailing: Option<Tailing>,
    /// Without a tail page: a watch on the history index.
    watch: Option<nix::sys::inotify::Inotify>,
    /// A changelog flagged unclean was published since the last crawl began (or, at
    /// registration, one that ends where the consumer is or later): changes may be missing.
    unclean: bool,
    registered: bool,
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A consumer's state file: `<ms> <seq>`, or `<ms>` as written before tailing (the records
/// from the first changelog ending after it on are then unprocessed).
fn read_state(path: &Path) -> Option<(u64, Option<u64>)> {
    let text = fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let ms = it.next()?.parse().ok()?;
    let seq = match it.next() {
        Some(s) => Some(s.parse().ok()?),
        None => None,
    };
    Some((ms, seq))
}

fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    crate::durable::replace(path, text.as_bytes())
}

/// The first record not yet processed by a consumer at `ms` that only knows a time: the start
/// of the first changelog ending after it, else the end of the last one.
fn seq_after(snap: &IndexSnapshot, ms: u64) -> u64 {
    match snap.entries.get(snap.first_after(ms)) {
        Some(e) => e.first_seq,
        None => snap.entries.last().map(|e| e.first_seq + e.count as u64).unwrap_or(0),
    }
}

/// Most records taken from the active file at once: the cap that keeps a batch, and so the
/// lag of what follows it, bounded under load.
pub const MAX_TAIL_RECORDS: usize = 8192;

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
        let dir = brick.changelog_dir();
        let (ms, seq) = match read_state(&state) {
            Some(v) => v,
            None => {
                write_atomic(&state, "0 0\n").map_err(|source| ConsumerError::Io { path: state.clone(), source })?;
                (0, Some(0))
            }
        };
        let mut c = Consumer {
            index: IndexFollower::new(&dir.join("history.idx")),
            dir,
            state,
            pos: Position { seq: seq.unwrap_or(0), ms },
            pending: VecDeque::new(),
            tail: None,
            seen_event: 0,
            tailing: None,
            watch: None,
            unclean: false,
            registered: false,
        };
        if seq.is_none() {
            c.pos.seq = seq_after(&c.snapshot()?, ms);
        }
        c.refresh()?;
        c.registered = true;
        Ok(c)
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

    fn snapshot(&self) -> Result<IndexSnapshot, ConsumerError> {
        match history::read_index(&self.dir.join("history.idx")) {
            // Never mounted: nothing recorded yet, and no history to trust.
            Err(history::IndexError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(IndexSnapshot { created_ms: u64::MAX, entries: Vec::new() })
            }
            r => Ok(r?),
        }
    }

    /// Reads what the index gained: the published changelogs holding unprocessed records.
    ///
    /// An unclean changelog is noted whatever its records: a tailing consumer may have read
    /// them all from the active file before the recorder was killed, and its recovery
    /// publishes the file flagged only afterwards. Each entry is read once, so one flag
    /// causes one crawl. (At registration, only those ending where the consumer is or later.)
    fn refresh(&mut self) -> Result<(), ConsumerError> {
        let seq = self.pos.seq;
        for e in self.index.poll()? {
            let end = e.first_seq + e.count as u64;
            if e.is_unclean() && (self.registered || end >= seq) {
                self.unclean = true;
            }
            if end > seq {
                self.pending.push_back(e);
            }
        }
        Ok(())
    }

    fn tail_page(&mut self) -> Option<&Tail> {
        if self.tail.is_none() {
            self.tail = Tail::open(&self.dir);
        }
        self.tail.as_ref()
    }

    /// Where the consumer is.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// End time of the last change processed (0: none): the stime.
    pub fn processed_ms(&self) -> u64 {
        self.pos.ms
    }

    /// The records not yet processed, oldest first, without waiting: whole published
    /// changelogs while there are some (at most `max_changelogs`: a backlog goes in coarse
    /// batches), else whatever the active file holds now (at most `MAX_TAIL_RECORDS`). Empty
    /// when there is nothing; its `end` then says until when nothing was missed.
    pub fn read(&mut self, max_changelogs: usize) -> Result<Chunk, ConsumerError> {
        // Before anything is looked at: a change after this makes `wait` return at once, and
        // one acknowledged before it is in what is read below.
        let t0 = EpochMs::now().0.saturating_sub(1);
        if let Some(t) = self.tail_page() {
            self.seen_event = t.event();
        }
        self.refresh()?;
        let from = self.pos.seq;
        if !self.pending.is_empty() {
            let mut chunk = Chunk::default();
            for e in self.pending.iter().take(max_changelogs.max(1)) {
                let c = ChangelogRef { entry: *e, path: history::changelog_path(&self.dir, e.end_ms) };
                c.open()?.for_each(|r| {
                    if r.seq >= from {
                        chunk.records.push(r)
                    }
                });
                chunk.end = Position { seq: e.first_seq + e.count as u64, ms: e.end_ms.max(self.pos.ms) };
                chunk.changelogs += 1;
            }
            return Ok(chunk);
        }
        let idle = Chunk { end: Position { seq: from, ms: t0.max(self.pos.ms) }, ..Chunk::default() };
        let Some(tail) = self.tail_page() else {
            return Ok(idle);
        };
        let s = tail.state();
        if s.next_seq <= from {
            return Ok(idle);
        }
        // A change made from now on is recorded again, even to a file the active one names.
        tail.mark_read();
        let stay = Chunk { end: self.pos, ..Chunk::default() };
        if from < s.first_seq {
            // Its file was rolled over and is being published: the index has it in a moment.
            return Ok(stay);
        }
        let t = match self.tailing.take() {
            Some(t) if t.first_seq == s.first_seq => t,
            _ => {
                let path = self.dir.join(format!("{}{:020}", super::writer::ACTIVE_PREFIX, s.first_seq));
                match fs::File::open(&path) {
                    Ok(file) => Tailing { first_seq: s.first_seq, file, off: codec::HEADER_LEN as u64, next_seq: 0 },
                    // Published meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stay),
                    Err(source) => return Err(ConsumerError::Io { path, source }),
                }
            }
        };
        // From where the last read stopped, if that is where the consumer is.
        let off = if t.next_seq == from { t.off } else { codec::HEADER_LEN as u64 };
        let mut buf = vec![0u8; s.end.saturating_sub(off) as usize];
        let mut got = 0;
        while got < buf.len() {
            match t.file.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ConsumerError::Io { path: self.dir.join("current"), source }),
            }
        }
        buf.truncate(got);
        let mut chunk = Chunk::default();
        let (mut used, mut next) = (0usize, from);
        // Twin records of an exchange go together.
        let mut exchange_run = 0usize;
        codec::decode_records_until(&buf, |r, end| {
            used = end;
            next = r.seq + 1;
            exchange_run = if r.flags & RECORD_EXCHANGE != 0 { exchange_run + 1 } else { 0 };
            if r.seq >= from {
                chunk.records.push(r);
            }
            chunk.records.len() < MAX_TAIL_RECORDS || !exchange_run.is_multiple_of(2)
        });
        let whole = used == buf.len() && off + used as u64 == s.end;
        chunk.end = Position { seq: next, ms: if whole { t0.max(self.pos.ms) } else { self.pos.ms } };
        self.tailing = Some(Tailing { off: off + used as u64, next_seq: next, ..t });
        Ok(chunk)
    }

    /// Sleeps until there may be something to read (a record appended, a changelog
    /// published) or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) {
        use std::os::fd::AsFd;
        let seen = self.seen_event;
        if let Some(t) = self.tail_page() {
            t.wait(seen, timeout);
            return;
        }
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

    /// Records that the records before `pos` are processed, durably (after the secondary made
    /// them durable).
    pub fn done(&mut self, pos: Position) -> Result<(), ConsumerError> {
        write_atomic(&self.state, &format!("{} {}\n", pos.ms, pos.seq))
            .map_err(|source| ConsumerError::Io { path: self.state.clone(), source })?;
        self.pos = pos;
        while self.pending.front().is_some_and(|e| e.first_seq + e.count as u64 <= pos.seq) {
            self.pending.pop_front();
        }
        Ok(())
    }

    /// Where recording is now, as far as the published changelogs say: a crawl that begins
    /// now sees every change recorded before it (and the active file's records, read again
    /// after it, change nothing it did not see).
    pub fn published_end(&mut self) -> Result<u64, ConsumerError> {
        self.refresh()?;
        Ok(self.index.last.map(|e| e.first_seq + e.count as u64).unwrap_or(0).max(self.pos.seq))
    }

    /// Whether the recorder stopped uncleanly since the last crawl began (changes just before
    /// its stop may be unrecorded: crawl); the question clears it, so a crawl that begins now
    /// answers it.
    pub fn take_unclean(&mut self) -> Result<bool, ConsumerError> {
        self.refresh()?;
        Ok(std::mem::take(&mut self.unclean))
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

    /// Whether the changelogs still hold every change after the consumer's position: false
    /// once retention removed some it had not processed, or if recording began after it.
    pub fn complete(&mut self) -> Result<bool, ConsumerError> {
        self.refresh()?;
        let retained = read_u64(&self.dir.join(RETAINED_SINCE)).unwrap_or(0);
        let removed = self.pending.front().is_some_and(|e| e.end_ms <= retained);
        Ok(self.pos.ms >= self.index.created_ms && !removed)
    }

    /// Moves the progress mark to `t_ms`: changelogs that end by then count as processed,
    /// the next read starts after them (a failback starts from its promotion point; the
    /// restored session from the moment the roles came back).
    pub fn resume_from(&mut self, t_ms: u64) -> Result<(), ConsumerError> {
        let seq = seq_after(&self.snapshot()?, t_ms);
        write_atomic(&self.state, &format!("{t_ms} {seq}\n"))
            .map_err(|source| ConsumerError::Io { path: self.state.clone(), source })?;
        self.pos = Position { seq, ms: t_ms };
        self.pending.clear();
        self.tailing = None;
        self.index = IndexFollower::new(&self.dir.join("history.idx"));
        self.refresh()
    }
}

fn refs(dir: &Path, snap: &IndexSnapshot, from: usize) -> Vec<ChangelogRef> {
    snap.entries[from..]
        .iter()
        .map(|e| ChangelogRef { entry: *e, path: history::changelog_path(dir, e.end_ms) })
        .collect()
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
    use std::time::{Duration, Instant};

    use super::*;
    use crate::changelog::writer::{ChangelogConfig, Recorder};
    use crate::changelog::{Op, Origin};
    use crate::types::{Gfid, VolumeId};

    fn recorder(brick: &BrickLayout) -> (Recorder, std::thread::JoinHandle<()>) {
        let cfg = ChangelogConfig {
            rollover: Duration::from_secs(3600),
            fsync_interval: Duration::from_secs(3600),
            retention: Duration::from_secs(3600),
        };
        Recorder::open(&brick.changelog_dir(), VolumeId([1; 16]), cfg).unwrap()
    }

    fn record(rec: &Recorder, name: &str) {
        let g = Gfid::generate();
        rec.rename(g, (Gfid::ROOT, OsStr::new(name)), (Gfid::ROOT, OsStr::new("x")), Default::default()).unwrap();
    }

    fn publish_one(rec: &Recorder, name: &str) {
        record(rec, name);
        rec.rollover().unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }

    fn names(c: &Chunk) -> Vec<String> {
        c.records.iter().map(|r| r.entry.as_ref().unwrap().entry.name.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn published_changelogs_in_batches_then_the_active_file_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let brick = BrickLayout::new(dir.path());
        let (rec, _t) = recorder(&brick);
        let t0 = crate::types::EpochMs::now().0;
        for i in 0..5 {
            publish_one(&rec, &format!("n{i}"));
        }
        let mut c = Consumer::register(&brick, "worker-1").unwrap();
        // The backlog: whole changelogs, two at a time.
        let a = c.read(2).unwrap();
        assert_eq!((names(&a), a.changelogs, a.end.seq), (vec!["n0".into(), "n1".into()], 2, 2));
        c.done(a.end).unwrap();
        // Durable across re-registration.
        let mut c = Consumer::register(&brick, "worker-1").unwrap();
        assert_eq!(c.position(), a.end);
        let b = c.read(64).unwrap();
        assert_eq!(names(&b), ["n2", "n3", "n4"]);
        c.done(b.end).unwrap();
        // Caught up: nothing, and nothing missed until now.
        let idle = c.read(64).unwrap();
        assert!(idle.records.is_empty() && idle.end.seq == 5 && idle.end.ms >= b.end.ms);
        // The active file, read as records are appended, without a rollover.
        record(&rec, "live0");
        record(&rec, "live1");
        let l = c.read(64).unwrap();
        assert_eq!((names(&l), l.changelogs, l.end.seq), (vec!["live0".into(), "live1".into()], 0, 7));
        c.done(l.end).unwrap();
        // A sleeping reader is woken by the next record.
        assert!(c.read(64).unwrap().records.is_empty());
        let r2 = rec.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            record(&r2, "live2");
        });
        let t = Instant::now();
        c.wait(Duration::from_secs(20));
        assert!(t.elapsed() < Duration::from_secs(10), "woken late: {:?}", t.elapsed());
        h.join().unwrap();
        // Read but not done, then rolled over: the published file gives the rest, once.
        let l2 = c.read(64).unwrap();
        assert_eq!(names(&l2), ["live2"]);
        c.done(l2.end).unwrap();
        record(&rec, "live3");
        rec.rollover().unwrap();
        let p = c.read(64).unwrap();
        assert_eq!((names(&p), p.changelogs), (vec!["live3".into()], 1));
        c.done(p.end).unwrap();
        assert!(c.read(64).unwrap().records.is_empty());
        // A state written before tailing (a time only) resumes after the changelogs ending by it.
        let snap = history::read_index(&brick.changelog_dir().join("history.idx")).unwrap();
        std::fs::write(brick.consumers_dir().join("old"), format!("{}\n", snap.entries[2].end_ms)).unwrap();
        let mut old = Consumer::register(&brick, "old").unwrap();
        assert_eq!(names(&old.read(2).unwrap()), ["n3", "n4"]);
        // History from a time: what follows it, and complete since recording began before it.
        let h = c.history(snap.entries[2].end_ms).unwrap();
        assert_eq!(h.changelogs.len(), 3);
        assert!(h.complete && c.complete().unwrap());
        assert!(!c.history(t0.saturating_sub(60_000)).unwrap().complete, "before the index began");
        assert!(Consumer::register(&brick, "../evil").is_err());
    }

    #[test]
    fn a_change_after_a_reader_took_the_file_is_recorded_again() {
        let dir = tempfile::tempdir().unwrap();
        let brick = BrickLayout::new(dir.path());
        let (rec, _t) = recorder(&brick);
        let mut c = Consumer::register(&brick, "w").unwrap();
        let g = Gfid::generate();
        let o = Origin::default();
        // Once per file while nobody reads...
        rec.data(Op::Write, g, o).unwrap();
        rec.data(Op::Write, g, o).unwrap();
        rec.meta(Op::Setattr, g, o).unwrap();
        let first = c.read(64).unwrap();
        assert_eq!(first.records.iter().map(|r| r.op).collect::<Vec<_>>(), [Op::Write, Op::Setattr]);
        c.done(first.end).unwrap();
        // ...and again once a reader has taken the records that named the file.
        rec.data(Op::Write, g, o).unwrap();
        rec.data(Op::Write, g, o).unwrap();
        rec.meta(Op::Setattr, g, o).unwrap();
        let again = c.read(64).unwrap();
        assert_eq!(again.records.iter().map(|r| r.op).collect::<Vec<_>>(), [Op::Write, Op::Setattr]);
    }

    #[test]
    fn an_unclean_stop_after_the_records_were_read_still_asks_for_a_crawl() {
        let dir = tempfile::tempdir().unwrap();
        let brick = BrickLayout::new(dir.path());
        let (rec, _t) = recorder(&brick);
        let mut c = Consumer::register(&brick, "w").unwrap();
        record(&rec, "a");
        let all = c.read(64).unwrap();
        c.done(all.end).unwrap();
        assert!(!c.take_unclean().unwrap());
        // Killed: the next recorder publishes the active file flagged unclean, although this
        // consumer has read every record of it.
        std::mem::forget(rec);
        let (rec2, _t2) = recorder(&brick);
        record(&rec2, "b");
        assert_eq!(names(&c.read(64).unwrap()), ["b"]);
        assert!(c.take_unclean().unwrap(), "the unclean stop went unnoticed");
        assert!(!c.take_unclean().unwrap(), "once");
        // A consumer registered afterwards at that place is told too.
        let mut again = Consumer::register(&brick, "w").unwrap();
        assert!(again.take_unclean().unwrap());
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
        let mut b = Consumer::register(&brick, "b").unwrap();
        let done = a.read(3).unwrap();
        a.done(done.end).unwrap();
        let all = history::read_index(&brick.changelog_dir().join("history.idx")).unwrap().entries;
        // Nothing younger than the retention period goes, processed or not.
        assert_eq!(apply_retention(&brick.changelog_dir(), Duration::from_secs(3600)).unwrap(), 0);
        assert!(a.complete().unwrap());
        // Older, everything goes: b (which processed nothing) is left behind.
        assert_eq!(apply_retention(&brick.changelog_dir(), Duration::ZERO).unwrap(), 4);
        assert!(all.iter().all(|e| !history::changelog_path(&brick.changelog_dir(), e.end_ms).exists()));
        assert!(!b.complete().unwrap(), "b must crawl");
        assert!(!a.complete().unwrap(), "a lost its last changelog too");
    }
}
