//! The recorder: appends records to the active changelog as changes succeed, rolls files over,
//! makes them durable, publishes them in the history index, and recovers after a crash.
//!
//! Invariants:
//! - A record is written to the active file before the filesystem replies to the operation it
//!   records. The active file is a shared mapping over blocks allocated in advance: a record
//!   is a memory copy into the page cache (no system call, no journal work per record), and
//!   survives the daemon being killed as a `write(2)` would. The space not yet written reads
//!   as zeros, which readers and recovery take as the end.
//! - DATA and META records appear at most once per GFID per file; ENTRY records always.
//! - A file is fsynced, then indexed (durably), then renamed to its dated path. Recovery can
//!   finish any of these steps.
//! - Before any changelog fsync, the `before_sync` hooks run (xtime marks, GFID index), so that
//!   what they protect is at least as durable as the changelog.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::codec::{self, Header};
use super::history::{self, FLAG_UNCLEAN, IndexEntry, IndexWriter};
use super::record::{EntryDetail, EntryName, Kind, Op, Origin, RECORD_EXCHANGE, Record};
use super::tail::{Tail, TailState};
use crate::mapped::MappedAppend;
use crate::types::{EpochMs, Gfid, VolumeId};

/// Tunables of recording.
#[derive(Clone, Debug)]
pub struct ChangelogConfig {
    /// How often a non-empty active file is published.
    pub rollover: Duration,
    /// How often the active file is made durable between rollovers.
    pub fsync_interval: Duration,
    /// How long changelogs that every consumer has processed are kept.
    pub retention: Duration,
}

impl Default for ChangelogConfig {
    fn default() -> Self {
        ChangelogConfig {
            rollover: Duration::from_millis(500),
            fsync_interval: Duration::from_millis(500),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("changelog {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Index(#[from] history::IndexError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecorderError + '_ {
    move |source| RecorderError::Io { path: path.to_path_buf(), source }
}

/// Prefix of active (not yet published) changelog files; the suffix is their first sequence.
pub(crate) const ACTIVE_PREFIX: &str = "current.";
/// Marker left while a brick is mounted with recording off.
pub const RECORDING_OFF_MARKER: &str = "recording-off";

struct Active {
    /// The file, its header and records (`MappedAppend`: records are memory copies).
    out: MappedAppend,
    path: PathBuf,
    header: Header,
    count: u32,
    next_seq: u64,
    /// DATA and META recorded in this file, per GFID and origin (a change through a user's
    /// mount is not hidden behind one a receiver made, nor the other way round).
    seen_data: HashSet<(Gfid, Origin)>,
    seen_meta: HashSet<(Gfid, Origin)>,
    /// The tail page's read count when the seen-sets were last emptied: once a reader has
    /// taken records, a change to a file the active file already names is recorded again.
    reads_seen: u64,
    /// Files open for writing (passthrough writes are invisible to us): re-recorded each file.
    open_writers: HashMap<(Gfid, Origin), u32>,
    buf: Vec<u8>,
    /// Set on the first file after an unclean stop.
    unclean: bool,
    /// A write failed: the file is poisoned and every later record fails.
    failed: bool,
}

type Hook = Box<dyn Fn() + Send + Sync>;

struct Shared {
    dir: PathBuf,
    volume: VolumeId,
    cfg: ChangelogConfig,
    active: Mutex<Active>,
    index: Mutex<IndexWriter>,
    before_sync: Mutex<Vec<Hook>>,
    /// The active file's published end, for readers that tail it.
    tail: Tail,
    /// Set when a record could not be written: from then on no change may happen unrecorded.
    failed: AtomicBool,
    stop: AtomicBool,
    wake: Condvar,
    wake_lock: Mutex<()>,
}

/// Handle to a brick's changelog recorder. Cloning shares it.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

/// Space the active file is given at a time.
const ACTIVE_CHUNK: u64 = 1 << 20;
/// Room made sure of in the active file before a change (`ensure_room`), for the changes being
/// made at once (a change's records are at most a few KiB: names, a symlink's target); more
/// before a creation, so that removals, which free a full disk, still find room.
pub const ROOM_CHANGE: u64 = 64 << 10;
pub const ROOM_NEW: u64 = 256 << 10;

/// A new active file, its header written, `ACTIVE_CHUNK` bytes allocated and mapped.
fn create_active(
    dir: &Path,
    volume: VolumeId,
    first_seq: u64,
) -> Result<(MappedAppend, PathBuf, Header), RecorderError> {
    let path = dir.join(format!("{ACTIVE_PREFIX}{first_seq:020}"));
    let file =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).map_err(io_err(&path))?;
    let header = Header { volume, start_ms: EpochMs::now().0, first_seq };
    file.write_all_at(&header.encode(), 0).map_err(io_err(&path))?;
    let out = MappedAppend::new(Arc::new(file), codec::HEADER_LEN as u64, ACTIVE_CHUNK).map_err(io_err(&path))?;
    Ok((out, path, header))
}

fn fsync_dir(dir: &Path) -> Result<(), RecorderError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl Recorder {
    /// Opens the changelog directory of a brick, recovering whatever a crash left, and starts the
    /// rollover thread.
    pub fn open(
        dir: &Path,
        volume: VolumeId,
        cfg: ChangelogConfig,
    ) -> Result<(Recorder, JoinHandle<()>), RecorderError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut index = IndexWriter::open(&dir.join("history.idx"))?;
        let marker = dir.join(RECORDING_OFF_MARKER);
        let mut unclean = marker.exists();
        let next_seq = recover(dir, &mut index, &mut unclean)?;
        if unclean {
            // The flag goes on the next file published; the marker may go now.
            let _ = fs::remove_file(&marker);
        }
        let (out, path, header) = create_active(dir, volume, next_seq)?;
        fsync_dir(dir)?;
        let tail = Tail::create(dir, TailState { first_seq: next_seq, end: out.len(), next_seq })
            .map_err(io_err(&dir.join(super::tail::TAIL_FILE)))?;
        let reads_seen = tail.reads();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            volume,
            cfg,
            active: Mutex::new(Active {
                out,
                path,
                header,
                count: 0,
                next_seq,
                seen_data: HashSet::new(),
                seen_meta: HashSet::new(),
                reads_seen,
                open_writers: HashMap::new(),
                buf: Vec::with_capacity(512),
                unclean,
                failed: false,
            }),
            index: Mutex::new(index),
            before_sync: Mutex::new(Vec::new()),
            tail,
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
        });
        let rec = Recorder { shared };
        let r2 = rec.clone();
        let thread = std::thread::Builder::new()
            .name("changelog-rollover".into())
            .spawn(move || r2.rollover_loop())
            .map_err(io_err(dir))?;
        Ok((rec, thread))
    }

    /// True once a record could not be written: the filesystem must refuse further changes.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Makes sure the active file has `room` bytes ahead for the records of a change before it
    /// is made: a full disk refuses the change up front, rather than leaving it made and
    /// unrecorded, which would stop recording.
    pub fn ensure_room(&self, room: u64) -> io::Result<()> {
        let mut a = self.shared.active.lock();
        if a.failed {
            return Err(io::Error::other("changelog is failed"));
        }
        a.out.reserve(room)
    }

    /// Registers a hook run before every changelog fsync.
    pub fn before_sync(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.shared.before_sync.lock().push(Box::new(hook));
    }

    fn append(&self, a: &mut Active, op: Op, gfid: Gfid, entry: Option<EntryDetail>, o: Origin) -> io::Result<()> {
        self.append_all(a, [(op, gfid, entry, 0, o)])
    }

    /// Appends records with one copy into the mapping: all of them are in the file, or (the
    /// daemon killed in the middle) a torn tail that recovery cuts.
    fn append_all(
        &self,
        a: &mut Active,
        recs: impl IntoIterator<Item = (Op, Gfid, Option<EntryDetail>, u8, Origin)>,
    ) -> io::Result<()> {
        if a.failed {
            return Err(io::Error::other("changelog is failed"));
        }
        a.buf.clear();
        let mut n = 0u64;
        for (op, gfid, entry, flags, o) in recs {
            let (flags, from) = (flags | o.flags(), o.volume());
            let rec = Record { seq: a.next_seq + n, op, gfid, entry, xattr: None, flags, from };
            codec::encode_record(&rec, &mut a.buf);
            n += 1;
        }
        let Active { out, buf, .. } = &mut *a;
        if let Err(e) = out.append(buf) {
            a.failed = true;
            self.shared.failed.store(true, Ordering::Release);
            log::error!("changelog write failed, recording stops: {e}");
            return Err(e);
        }
        a.next_seq += n;
        a.count += n as u32;
        self.publish_tail(a);
        Ok(())
    }

    fn publish_tail(&self, a: &Active) {
        self.shared.tail.publish(TailState { first_seq: a.header.first_seq, end: a.out.len(), next_seq: a.next_seq });
    }

    /// Whether a DATA (`data`) or META change of `key` is the first the active file gets
    /// since a reader last took records from it (the once-per-file deduplication; a reader
    /// tailing the file must see every change made after it read).
    fn first(&self, a: &mut Active, data: bool, key: (Gfid, Origin)) -> bool {
        let reads = self.shared.tail.reads();
        if reads != a.reads_seen {
            a.reads_seen = reads;
            a.seen_data.clear();
            a.seen_meta.clear();
        }
        if data { a.seen_data.insert(key) } else { a.seen_meta.insert(key) }
    }

    /// Records a file made whole at once (an aux mount's whole-file create): its ENTRY, then
    /// DATA and META (each once per file), in one write.
    pub fn whole_file(&self, op: Op, gfid: Gfid, detail: EntryDetail, o: Origin) -> io::Result<()> {
        debug_assert_eq!(op.kind(), Kind::Entry);
        let mut a = self.shared.active.lock();
        let data = self.first(&mut a, true, (gfid, o));
        let meta = self.first(&mut a, false, (gfid, o));
        let recs = [(op, gfid, Some(detail), 0, o), (Op::Write, gfid, None, 0, o), (Op::Setattr, gfid, None, 0, o)];
        let keep = [true, data, meta];
        self.append_all(&mut a, recs.into_iter().zip(keep).filter(|(_, k)| *k).map(|(r, _)| r))
    }

    /// Records an ENTRY operation. Never deduplicated.
    pub fn entry(&self, op: Op, gfid: Gfid, detail: EntryDetail, o: Origin) -> io::Result<()> {
        debug_assert_eq!(op.kind(), Kind::Entry);
        let mut a = self.shared.active.lock();
        self.append(&mut a, op, gfid, Some(detail), o)
    }

    /// Records the rename of `gfid` from `from` to `to`.
    pub fn rename(&self, gfid: Gfid, from: (Gfid, &OsStr), to: (Gfid, &OsStr), o: Origin) -> io::Result<()> {
        let mut a = self.shared.active.lock();
        self.append(&mut a, Op::Rename, gfid, Some(rename_detail(from, to)), o)
    }

    /// Records an atomic exchange of two names: two RENAME records, both flagged, written
    /// together.
    pub fn exchange(
        &self,
        a_gfid: Gfid,
        a: (Gfid, &OsStr),
        b_gfid: Gfid,
        b: (Gfid, &OsStr),
        o: Origin,
    ) -> io::Result<()> {
        let mut act = self.shared.active.lock();
        let f = RECORD_EXCHANGE;
        self.append_all(
            &mut act,
            [
                (Op::Rename, a_gfid, Some(rename_detail(a, b)), f, o),
                (Op::Rename, b_gfid, Some(rename_detail(b, a)), f, o),
            ],
        )
    }

    /// Records a DATA change of `gfid`, once per file.
    pub fn data(&self, op: Op, gfid: Gfid, o: Origin) -> io::Result<()> {
        let mut a = self.shared.active.lock();
        if !self.first(&mut a, true, (gfid, o)) {
            return Ok(());
        }
        self.append(&mut a, op, gfid, None, o)
    }

    /// Records a META change of `gfid`, once per file.
    pub fn meta(&self, op: Op, gfid: Gfid, o: Origin) -> io::Result<()> {
        let mut a = self.shared.active.lock();
        if !self.first(&mut a, false, (gfid, o)) {
            return Ok(());
        }
        self.append(&mut a, op, gfid, None, o)
    }

    /// A file was opened for writing: recorded now, at every rollover while open, and at close.
    pub fn open_writer(&self, gfid: Gfid, op: Op, o: Origin) -> io::Result<()> {
        let mut a = self.shared.active.lock();
        *a.open_writers.entry((gfid, o)).or_insert(0) += 1;
        if !self.first(&mut a, true, (gfid, o)) {
            return Ok(());
        }
        self.append(&mut a, op, gfid, None, o)
    }

    pub fn close_writer(&self, gfid: Gfid, o: Origin) -> io::Result<()> {
        let mut a = self.shared.active.lock();
        if let Some(n) = a.open_writers.get_mut(&(gfid, o)) {
            *n -= 1;
            if *n == 0 {
                a.open_writers.remove(&(gfid, o));
            }
        }
        if !self.first(&mut a, true, (gfid, o)) {
            return Ok(());
        }
        self.append(&mut a, Op::Write, gfid, None, o)
    }

    fn run_hooks(&self) {
        for h in self.shared.before_sync.lock().iter() {
            h();
        }
    }

    /// Makes the active file durable (hooks first).
    pub fn sync(&self) -> Result<(), RecorderError> {
        let (file, path) = {
            let a = self.shared.active.lock();
            (a.out.file().clone(), a.path.clone())
        };
        self.run_hooks();
        file.sync_data().map_err(io_err(&path))
    }

    /// Publishes the active file if it holds records, and opens a new one.
    pub fn rollover(&self) -> Result<(), RecorderError> {
        let sh = &self.shared;
        let (old_file, old_path, old_header, count, unclean, old_len) = {
            let mut a = sh.active.lock();
            if a.count == 0 {
                return Ok(());
            }
            let (out, path, header) = create_active(&sh.dir, sh.volume, a.next_seq)?;
            // The old mapping goes before the old file is cut to its records.
            let (old_file, old_len) = std::mem::replace(&mut a.out, out).unmap();
            let old = (
                old_file,
                std::mem::replace(&mut a.path, path),
                std::mem::replace(&mut a.header, header),
                a.count,
                a.unclean,
                old_len,
            );
            a.count = 0;
            a.unclean = false;
            a.seen_data.clear();
            a.seen_meta.clear();
            // Files still open for writing are re-recorded in the new file.
            let writers: Vec<(Gfid, Origin)> = a.open_writers.keys().copied().collect();
            for (g, o) in writers {
                a.seen_data.insert((g, o));
                let _ = self.append(&mut a, Op::Write, g, None, o);
            }
            // Readers move to the new file.
            self.publish_tail(&a);
            old
        };
        self.run_hooks();
        old_file.set_len(old_len).map_err(io_err(&old_path))?;
        old_file.sync_data().map_err(io_err(&old_path))?;
        let mut index = sh.index.lock();
        let prev_end = index.last.map(|e| e.end_ms).unwrap_or(0);
        let end_ms = EpochMs::now().0.max(prev_end + 1).max(old_header.start_ms);
        let entry = IndexEntry {
            start_ms: old_header.start_ms,
            end_ms,
            first_seq: old_header.first_seq,
            count,
            flags: if unclean { FLAG_UNCLEAN } else { 0 },
        };
        index.append(entry)?;
        // A reader that had not finished the old file finds it in the index now.
        sh.tail.notify();
        publish(&sh.dir, &old_path, end_ms)?;
        Ok(())
    }

    fn rollover_loop(&self) {
        let sh = &self.shared;
        let tick = sh.cfg.rollover.min(sh.cfg.fsync_interval).max(Duration::from_millis(10));
        let mut last_roll = Instant::now();
        let mut last_retention = Instant::now();
        while !sh.stop.load(Ordering::Acquire) {
            {
                let mut g = sh.wake_lock.lock();
                if !sh.stop.load(Ordering::Acquire) {
                    sh.wake.wait_for(&mut g, tick);
                }
            }
            if sh.stop.load(Ordering::Acquire) {
                break;
            }
            let r = if last_roll.elapsed() >= sh.cfg.rollover {
                last_roll = Instant::now();
                self.rollover()
            } else {
                self.sync()
            };
            if let Err(e) = r {
                log::error!("changelog: {e}");
            }
            if last_retention.elapsed() >= Duration::from_secs(30) {
                last_retention = Instant::now();
                if let Err(e) = super::consumer::apply_retention(&sh.dir, sh.cfg.retention) {
                    log::warn!("changelog retention: {e}");
                }
            }
        }
    }

    /// Stops the rollover thread, publishes what is left and removes the empty active file:
    /// a clean stop.
    pub fn shutdown(&self, thread: JoinHandle<()>) -> Result<(), RecorderError> {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _g = self.shared.wake_lock.lock();
            self.shared.wake.notify_all();
        }
        let _ = thread.join();
        {
            // No re-recording of open writers into a file nobody will publish.
            self.shared.active.lock().open_writers.clear();
        }
        self.rollover()?;
        let a = self.shared.active.lock();
        if a.count == 0 {
            fs::remove_file(&a.path).map_err(io_err(&a.path))?;
            fsync_dir(&self.shared.dir)?;
        }
        Ok(())
    }

    /// Number of records written so far (the next sequence number).
    pub fn next_seq(&self) -> u64 {
        self.shared.active.lock().next_seq
    }
}

fn rename_detail(from: (Gfid, &OsStr), to: (Gfid, &OsStr)) -> EntryDetail {
    EntryDetail {
        mode: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        entry: EntryName { pgfid: from.0, name: from.1.to_os_string() },
        new_entry: Some(EntryName { pgfid: to.0, name: to.1.to_os_string() }),
        target: None,
    }
}

/// Renames an active file to its dated path, durably.
fn publish(dir: &Path, active: &Path, end_ms: u64) -> Result<(), RecorderError> {
    let dest = history::changelog_path(dir, end_ms);
    let parent = dest.parent().unwrap();
    if !parent.exists() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        fsync_dir(parent.parent().unwrap())?;
    }
    fs::rename(active, &dest).map_err(io_err(active))?;
    fsync_dir(parent)?;
    fsync_dir(dir)?;
    Ok(())
}

/// Finishes what a crash interrupted: every `current.*` file is cut at its torn tail, then
/// indexed (if not yet) and published, or removed if empty. Returns the next sequence number.
fn recover(dir: &Path, index: &mut IndexWriter, unclean: &mut bool) -> Result<u64, RecorderError> {
    let mut next_seq = index.last.map(|e| e.first_seq + e.count as u64).unwrap_or(0);
    let mut actives: Vec<(u64, PathBuf)> = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err(dir))? {
        let ent = ent.map_err(io_err(dir))?;
        let name = ent.file_name();
        let Some(seq) = name.to_str().and_then(|n| n.strip_prefix(ACTIVE_PREFIX)).and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        actives.push((seq, ent.path()));
    }
    actives.sort();
    for (_, path) in actives {
        *unclean = true;
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let header = match Header::decode(&bytes) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("changelog recovery: {}: {e}; removed", path.display());
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
        };
        let mut count = 0u32;
        let mut last_seq = None;
        let tail = codec::decode_records(&bytes[codec::HEADER_LEN..], |r| {
            count += 1;
            last_seq = Some(r.seq);
        });
        if let codec::Tail::Truncated { offset } | codec::Tail::Corrupt { offset } = tail {
            let good = (codec::HEADER_LEN + offset) as u64;
            log::warn!("changelog recovery: {}: torn tail cut at byte {good}", path.display());
            file.set_len(good).map_err(io_err(&path))?;
        }
        file.sync_all().map_err(io_err(&path))?;
        if count == 0 {
            fs::remove_file(&path).map_err(io_err(&path))?;
            next_seq = next_seq.max(header.first_seq);
            continue;
        }
        next_seq = next_seq.max(last_seq.unwrap() + 1);
        let end_ms = match index.last {
            // Indexed before the crash, not yet renamed.
            Some(e) if e.first_seq == header.first_seq && e.start_ms == header.start_ms => e.end_ms,
            last => {
                let end_ms = EpochMs::now().0.max(last.map(|e| e.end_ms + 1).unwrap_or(0)).max(header.start_ms);
                index.append(IndexEntry {
                    start_ms: header.start_ms,
                    end_ms,
                    first_seq: header.first_seq,
                    count,
                    flags: FLAG_UNCLEAN,
                })?;
                end_ms
            }
        };
        publish(dir, &path, end_ms)?;
    }
    Ok(next_seq)
}
