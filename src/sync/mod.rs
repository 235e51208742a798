//! The sync worker of one primary brick: a Hybrid crawl (the whole tree) for the initial sync,
//! then the Changelog crawl (published changelogs, in order). Per batch: entry operations by
//! GFID, then the data of every file changed in the batch (each file once however many
//! changelogs name it), then metadata; then a commit, and only after the receiver confirmed
//! the batch durable are its changelogs marked processed. A change the receiver could not
//! apply is counted and logged with its reason, never dropped silently.
//!
//! The worker reads the primary brick directly (as root), resolving GFIDs through the brick's
//! GFID index; it never writes to the brick.

pub mod failures;
pub mod link;
pub mod origin;
pub mod recover;
pub mod ssh;
pub mod verify;
pub mod worker;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::changelog::{Consumer, Kind, Op, Record, record::RECORD_EXCHANGE};
use crate::fs::gfid_index::{self, GfidIndex};
use crate::fs::sys::{self, FileHandle};
use crate::proto::{EntryOp, Failure, Inline, MetaOp, Msg, ROLLING_MAX, SumsAsk};
use crate::receiver::replicated_xattr;
use crate::types::{BrickLayout, EpochMs, Gfid, PRIVATE_DIR, VolumeId, XATTR_GFID};
use link::Link;
use origin::Labels;

/// An entry operation with the volume it was first made on.
type Labelled = (VolumeId, EntryOp);

/// Data is sent in chunks of this size.
pub const CHUNK: usize = 1 << 20;
/// Entry operations per message.
const ENTRY_BATCH: usize = 1024;
/// Bytes of inline content per message (a frame holds 8 MiB).
const ENTRY_BYTES: usize = 4 << 20;
/// Regular files up to this size travel whole inside their create (`EntryOp::Create::inline`):
/// one request on the secondary instead of a create, a data stream and a metadata pass. The
/// create request must fit one setxattr value (64 KiB) with the name and xattrs.
pub const INLINE_MAX: u64 = 48 << 10;
/// Files from this size on are sent by delta when the secondary has them.
pub const DELTA_MIN: u64 = 1 << 20;
/// A rolling delta travels in one message, so at most this big.
const ROLLING_DELTA_MAX: usize = 4 << 20;
/// The fine blocks of a delta's second round: 4 KiB, a page.
const FINE_LOG2: u8 = 12;
/// Sums asked for at once, at most (blocks), so that the answer fits a frame.
const SUMS_BUDGET: u64 = 256 << 10;

/// The delta block size of a file: 128 KiB, larger for files over 2 GiB (at most 16384
/// blocks a file), as a power of two.
fn block_log2(size: u64) -> u8 {
    let want = (size / 16384).max(128 << 10).next_power_of_two();
    want.trailing_zeros().clamp(17, 40) as u8
}

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Replicate xattrs (but ACLs) and ACLs (`system.posix_acl_*`).
    pub sync_xattrs: bool,
    pub sync_acls: bool,
    /// Drop deletions: the secondary keeps what the primary removed.
    pub ignore_deletes: bool,
    /// Delta transfer (`sync-method rsync`): a file the secondary already has is compared
    /// block by block and only the blocks that differ are sent. Else whole files (`tarssh`).
    pub delta: bool,
    /// Files from this size on go by delta (smaller ones whole).
    pub delta_min: u64,
    /// Changelogs per batch at most.
    pub changelogs_per_batch: usize,
    /// `change-detector xsync`: no changelogs, a Hybrid crawl every `change_interval`.
    pub xsync: bool,
    /// Tries of a change the secondary could not apply, before it is counted as a failure
    /// (`max-rsync-retries`).
    pub retries: u32,
    pub change_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            sync_xattrs: true,
            sync_acls: true,
            ignore_deletes: false,
            delta: true,
            delta_min: DELTA_MIN,
            changelogs_per_batch: 64,
            xsync: false,
            retries: 10,
            change_interval: Duration::from_secs(1),
        }
    }
}

impl WorkerOptions {
    fn wants_xattr(&self, name: &[u8]) -> bool {
        if name.starts_with(b"system.posix_acl_") { self.sync_acls } else { self.sync_xattrs }
    }
}

/// What a worker tells about its progress (the status file, the metrics).
pub trait Progress {
    /// The crawl now running: `Hybrid Crawl`, `History Crawl` or `Changelog Crawl`.
    fn crawl(&mut self, _status: &str) {}
    /// A batch is under way with this many entry, data and meta operations.
    fn pending(&mut self, _entry: u64, _data: u64, _meta: u64) {}
    /// A batch is durable on the secondary; every change before `stime_ms` is there.
    fn synced(&mut self, _stime_ms: u64, _stats: &Stats) {}
    /// Nothing is pending.
    fn idle(&mut self, _stime_ms: u64) {}
    /// Whether the worker may ship now (its node still holds the volume's term), asked before
    /// each batch; an error ends the worker.
    fn may_ship(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The secondary has every change before `stime_ms`, durably: asked before the stime
    /// moves on (the store records it while the term holds); an error ends the worker and the
    /// stime stays.
    fn advancing(&mut self, _stime_ms: u64) -> anyhow::Result<()> {
        Ok(())
    }
    /// A Hybrid crawl has sent `done` entries of about `total`.
    fn crawl_progress(&mut self, _done: u64, _total: u64) {}
    /// Something the operator should know about the session (empty: nothing).
    fn note(&mut self, _note: &str) {}
}

/// Tells nobody.
pub struct Quiet;
impl Progress for Quiet {}

/// What a crawl did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub files: u64,
    /// Content bytes sent (before compression).
    pub bytes: u64,
    /// Content bytes the secondary already had (delta transfer).
    pub delta_skipped: u64,
    pub meta: u64,
    pub failures: u64,
    /// Bytes on the wire (frames, after compression).
    pub wire_bytes: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.entries += o.entries;
        self.files += o.files;
        self.bytes += o.bytes;
        self.delta_skipped += o.delta_skipped;
        self.meta += o.meta;
        self.failures += o.failures;
        self.wire_bytes += o.wire_bytes;
    }
}

/// Read access to the primary brick by GFID.
pub struct Source {
    pub layout: BrickLayout,
    /// The brick's volume: where the changes its users made were first made.
    pub volume: VolumeId,
    root: File,
    handles: HashMap<Gfid, FileHandle>,
    /// Whether `handles` holds the whole index (else only what was prefetched).
    full: bool,
    /// Where what still fails after the retries is listed (a session's worker's).
    pub ledger: Option<failures::Ledger>,
}

impl Source {
    pub fn open(brick: &Path) -> anyhow::Result<Source> {
        let layout = BrickLayout::new(brick);
        let root = File::open(brick).with_context(|| format!("brick {}", brick.display()))?;
        let volume = match crate::fs::brick::volume_of(brick)? {
            Some(v) if layout.gfid_index().exists() => v,
            _ => anyhow::bail!("{} is not a georep brick", brick.display()),
        };
        Ok(Source { layout, volume, root, handles: HashMap::new(), full: false, ledger: None })
    }

    /// Makes the handles of `gfids` known, with a scan of the index rather than a full load
    /// when they are few (a live batch touches a handful of a large brick's inodes).
    pub fn prefetch(&mut self, gfids: impl IntoIterator<Item = Gfid>) -> io::Result<()> {
        if self.full {
            return Ok(());
        }
        let wanted: std::collections::HashSet<Gfid> =
            gfids.into_iter().filter(|g| !self.handles.contains_key(g)).collect();
        if wanted.len() > 4096 {
            self.handles = GfidIndex::load(&self.layout.gfid_index())?;
            self.full = true;
        } else if !wanted.is_empty() {
            self.handles.extend(GfidIndex::load_some(&self.layout.gfid_index(), &wanted)?);
        }
        Ok(())
    }

    /// An O_PATH descriptor of the inode with `gfid`; `Ok(None)` if it no longer exists.
    fn open_gfid(&mut self, gfid: &Gfid) -> io::Result<Option<OwnedFd>> {
        if *gfid == Gfid::ROOT {
            return sys::reopen(self.root.as_fd(), libc::O_PATH).map(Some);
        }
        for attempt in 0..2 {
            match gfid_index::resolve(&self.handles, self.root.as_fd(), gfid) {
                Ok(fd) => return Ok(Some(fd)),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESTALE)) => {
                    if attempt == 0 && !self.handles.contains_key(gfid) {
                        // Not loaded yet, or created after we loaded the index.
                        self.handles = GfidIndex::load(&self.layout.gfid_index())?;
                        self.full = true;
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn xattrs(
        fd: std::os::fd::BorrowedFd<'_>,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Vec<(std::ffi::OsString, Vec<u8>)>> {
        let mut buf = vec![0u8; 4096];
        let n = loop {
            match sys::listxattr_fd(fd, &mut buf) {
                Ok(n) => break n,
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e),
            }
        };
        let mut out = Vec::new();
        for name in buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty() && replicated_xattr(s) && wanted(s)) {
            let name = OsStr::from_bytes(name);
            if let Some(v) = sys::getxattr_vec(fd, name)? {
                out.push((name.to_os_string(), v));
            }
        }
        out.sort();
        Ok(out)
    }

    fn meta_of(fd: std::os::fd::BorrowedFd<'_>, gfid: Gfid, opts: &WorkerOptions) -> io::Result<MetaOp> {
        let st = sys::fstat(fd)?;
        let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        Ok(MetaOp {
            gfid,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            atime_ns: st.st_atime * 1_000_000_000 + st.st_atime_nsec,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            // Symlinks carry no replicated xattrs worth the trouble (user.* is refused on them).
            xattrs: if (opts.sync_xattrs || opts.sync_acls) && !is_link {
                Some(Self::xattrs(fd, |n| opts.wants_xattr(n))?)
            } else {
                None
            },
        })
    }

    /// The metadata of `gfid` now; `None` if it is gone.
    pub fn meta(&mut self, gfid: &Gfid, opts: &WorkerOptions) -> io::Result<Option<MetaOp>> {
        match self.open_gfid(gfid)? {
            Some(fd) => Self::meta_of(fd.as_fd(), *gfid, opts).map(Some),
            None => Ok(None),
        }
    }

    /// A small regular file whole (content and metadata), read from `fd`; `None` if it is
    /// not a regular file or too big to travel inline.
    fn inline_of(
        fd: std::os::fd::BorrowedFd<'_>,
        gfid: Gfid,
        opts: &WorkerOptions,
        readable: bool,
    ) -> io::Result<Option<Box<Inline>>> {
        let st = sys::fstat(fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 > INLINE_MAX {
            return Ok(None);
        }
        let content = if readable {
            sys::read_up_to(fd, st.st_size as usize, INLINE_MAX as usize)?
        } else {
            sys::read_up_to(
                sys::reopen(fd, libc::O_RDONLY | libc::O_NOATIME)?.as_fd(),
                st.st_size as usize,
                INLINE_MAX as usize,
            )?
        };
        if content.len() as u64 > INLINE_MAX {
            return Ok(None);
        }
        let meta = Self::meta_of(fd, gfid, opts)?;
        if meta.xattrs.as_ref().is_some_and(|x| x.iter().map(|(k, v)| k.len() + v.len() + 3).sum::<usize>() > 8192) {
            return Ok(None);
        }
        Ok(Some(Box::new(Inline { content, meta })))
    }

    /// `gfid` whole, if it is a small regular file that still exists.
    pub fn inline(&mut self, gfid: &Gfid, opts: &WorkerOptions) -> io::Result<Option<Box<Inline>>> {
        match self.open_gfid(gfid)? {
            Some(fd) => Self::inline_of(fd.as_fd(), *gfid, opts, false),
            None => Ok(None),
        }
    }

    /// Where `gfid` is in the brick now (for messages).
    pub fn path_of(&mut self, gfid: &Gfid) -> Option<PathBuf> {
        let fd = self.open_gfid(gfid).ok()??;
        // Removed, though something (the overlay's daemon) still holds it open.
        if sys::fstat(fd.as_fd()).ok()?.st_nlink == 0 {
            return None;
        }
        std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).ok()
    }

    /// The size of `gfid` if it is a regular file that still exists.
    fn file_size(&mut self, gfid: &Gfid) -> io::Result<Option<u64>> {
        let Some(fd) = self.open_gfid(gfid)? else { return Ok(None) };
        let st = sys::fstat(fd.as_fd())?;
        Ok((st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64))
    }

    /// Compares a file with the secondary's copy over `range`: `theirs` has the secondary's
    /// checksums of the blocks (`1 << block_log2` bytes) from the range's start on. Calls
    /// `differs` with the file's size, the offset and the bytes of each block that differs;
    /// returns the file's size and the bytes found equal, or `None` if it is no longer a
    /// regular file here.
    fn diff_blocks(
        &mut self,
        theirs: &crate::proto::FileSums,
        block_log2: u8,
        range: (u64, u64),
        mut differs: impl FnMut(u64, u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<Option<(u64, u64)>> {
        let Some(fd) = self.open_gfid(&theirs.gfid)? else { return Ok(None) };
        if sys::fstat(fd.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(None);
        }
        let f = File::from(sys::reopen(fd.as_fd(), libc::O_RDONLY | libc::O_NOATIME)?);
        let size = f.metadata()?.len();
        let block = 1usize << block_log2;
        let mut buf = vec![0u8; block];
        let (mut off, end) = (range.0, size.min(range.1));
        let mut i = 0usize;
        let mut skipped = 0u64;
        while off < end {
            let want = (end - off).min(block as u64) as usize;
            let n = read_full_at(&f, &mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            let same = theirs.sums.get(i).is_some_and(|s| *s == xxhash_rust::xxh3::xxh3_128(&buf[..n]))
                && off + (n as u64) <= theirs.size;
            if same {
                skipped += n as u64;
            } else {
                differs(size, off, &buf[..n])?;
            }
            off += n as u64;
            i += 1;
        }
        Ok(Some((size, skipped)))
    }

    /// Sends `range` (offset, length) of `gfid`, a regular file of `size` bytes.
    fn send_range(
        &mut self,
        link: &mut Link,
        batch: u64,
        gfid: Gfid,
        size: u64,
        range: (u64, u64),
        stats: &mut Stats,
    ) -> anyhow::Result<()> {
        let Some(fd) = self.open_gfid(&gfid)? else { return Ok(()) };
        let f = File::from(sys::reopen(fd.as_fd(), libc::O_RDONLY | libc::O_NOATIME)?);
        let mut buf = vec![0u8; range.1.min(1 << 20) as usize];
        let (mut off, end) = range;
        let end = end + off;
        let mut compress = true;
        while off < end {
            let want = (end - off).min(buf.len() as u64) as usize;
            let n = read_full_at(&f, &mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            link.send_data(&Msg::Data { batch, gfid, size, offset: off, bytes: buf[..n].to_vec() }, n, &mut compress)?;
            stats.bytes += n as u64;
            off += n as u64;
        }
        Ok(())
    }

    /// A rolling delta (rsync's algorithm, by `fast_rsync`) of a file whose data moved: the
    /// secondary's signature, then a delta of what it cannot find anywhere in its copy, with
    /// the XXH3-128 of the result for the receiver to check. False when it does not apply
    /// (no signature; a delta too big for one message, or not worth it): the caller then
    /// compares blocks in place.
    fn send_rolling(&mut self, link: &mut Link, batch: u64, gfid: Gfid, stats: &mut Stats) -> anyhow::Result<bool> {
        let Some(fd) = self.open_gfid(&gfid)? else { return Ok(false) };
        let f = File::from(sys::reopen(fd.as_fd(), libc::O_RDONLY | libc::O_NOATIME)?);
        let mut ours = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&f, ROLLING_MAX + 1), &mut ours)?;
        if ours.len() as u64 > ROLLING_MAX || !f.metadata()?.is_file() {
            return Ok(false);
        }
        // rsync's block size: about the square root of the file's size.
        let block = ((ours.len() as f64).sqrt() as u32).clamp(1024, 64 << 10) & !7;
        let (their_size, signature) = link.signature(batch, gfid, block)?;
        if their_size == u64::MAX {
            return Ok(false);
        }
        let Ok(signature) = fast_rsync::Signature::deserialize(signature) else { return Ok(false) };
        let mut delta = Vec::new();
        if fast_rsync::diff(&signature.index(), &ours, &mut delta).is_err()
            || delta.len() > ROLLING_DELTA_MAX
            || delta.len() * 2 > ours.len()
        {
            return Ok(false);
        }
        let (n, hash) = (delta.len(), xxhash_rust::xxh3::xxh3_128(&ours));
        let mut compress = true;
        link.send_data(&Msg::Patch { batch, gfid, size: ours.len() as u64, hash, delta }, n, &mut compress)?;
        stats.bytes += n as u64;
        stats.delta_skipped += (ours.len() - n) as u64;
        Ok(true)
    }

    /// Streams the content of `gfid` (if it is a regular file that still exists).
    pub fn send_data(&mut self, link: &mut Link, batch: u64, gfid: &Gfid, stats: &mut Stats) -> anyhow::Result<()> {
        let Some(fd) = self.open_gfid(gfid)? else { return Ok(()) };
        if sys::fstat(fd.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(());
        }
        let mut f = File::from(sys::reopen(fd.as_fd(), libc::O_RDONLY | libc::O_NOATIME)?);
        let size = f.metadata()?.len();
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK];
        let mut compress = true;
        loop {
            let mut n = 0;
            while n < CHUNK {
                let k = f.read(&mut buf[n..])?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 && offset > 0 {
                break;
            }
            link.send_data(
                &Msg::Data { batch, gfid: *gfid, size, offset, bytes: buf[..n].to_vec() },
                n,
                &mut compress,
            )?;
            offset += n as u64;
            stats.bytes += n as u64;
            if n < CHUNK {
                break;
            }
        }
        stats.files += 1;
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes at `off`, fewer only at the end of the file.
fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn entry_bytes(op: &EntryOp) -> usize {
    match op {
        EntryOp::Create { inline: Some(i), .. } => 128 + i.content.len(),
        _ => 128,
    }
}

/// Sends entry operations in messages bounded in count and bytes, each message's operations
/// of one origin.
fn send_entries(link: &mut Link, batch: u64, ops: Vec<Labelled>) -> anyhow::Result<()> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut from = None;
    for (label, op) in ops {
        if from != Some(label) || chunk.len() >= ENTRY_BATCH || bytes >= ENTRY_BYTES {
            if !chunk.is_empty() {
                link.send_entries(&Msg::Entries { batch, ops: std::mem::take(&mut chunk) }, bytes)?;
            }
            bytes = 0;
            link.set_origin(label)?;
            from = Some(label);
        }
        bytes += entry_bytes(&op);
        chunk.push(op);
    }
    if !chunk.is_empty() {
        link.send_entries(&Msg::Entries { batch, ops: chunk }, bytes)?;
    }
    Ok(())
}

/// Counts and logs what the secondary could not apply, with the path the GFID has on the
/// primary now (if it still exists) and the secondary's reason.
/// The failures that leave the secondary unlike the primary. An entry the secondary does not
/// have (`ENOENT`) for an inode the primary no longer has either is not one: a replayed
/// rename or link of a file since removed (after a restart, say) finds nothing to act on,
/// which is what the primary says.
fn unsettled(src: &mut Source, failures: Vec<Failure>) -> Vec<Failure> {
    failures
        .into_iter()
        .filter(|f| {
            let gone = f.errno == libc::ENOENT && !f.gfid.is_null() && src.path_of(&f.gfid).is_none();
            if gone {
                log::info!("{} is gone on both sides: {}", f.gfid, f.message);
            }
            !gone
        })
        .collect()
}

fn report(src: &mut Source, failures: Vec<Failure>, stats: &mut Stats) {
    for f in failures {
        stats.failures += 1;
        let path = src.path_of(&f.gfid).map(|p| p.display().to_string()).unwrap_or_else(|| "(gone)".into());
        log::error!(
            "secondary could not apply a change to {path} (gfid {}): {} (errno {})",
            f.gfid,
            f.message,
            f.errno
        );
    }
}

/// The second round of a delta: the secondary's checksums of these ranges (coarse blocks that
/// differ) in fine blocks, then the fine blocks that differ.
fn send_fine_blocks(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    refine: Vec<SumsAsk>,
    labels: &Labels,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let per_range = 1u64 << (block_log2(0) - FINE_LOG2);
    for chunk in refine.chunks((SUMS_BUDGET / 2 / per_range).max(1) as usize) {
        let answers = link.sums(batch, chunk.to_vec())?;
        let mut compress = true;
        for (ask, theirs) in chunk.iter().zip(answers) {
            let gfid = ask.gfid;
            link.set_origin(labels.of(&gfid))?;
            let mut sent = 0u64;
            let range = (ask.offset, ask.offset + ask.len);
            let found = src.diff_blocks(&theirs, FINE_LOG2, range, |size, off, bytes| {
                sent += bytes.len() as u64;
                let m = Msg::Data { batch, gfid, size, offset: off, bytes: bytes.to_vec() };
                link.send_data(&m, bytes.len(), &mut compress)
            })?;
            stats.bytes += sent;
            stats.delta_skipped += found.map_or(0, |(_, skipped)| skipped);
        }
    }
    Ok(())
}

/// Sends the content of these regular files (with their sizes): whole, or by delta.
fn send_files(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    files: &[(Gfid, u64)],
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    // Big files go by delta, in two rounds: the secondary's checksums of whole files in
    // coarse blocks, for many files at once; then of the coarse blocks that differ, in fine
    // blocks; only the fine blocks that differ travel.
    let mut delta: Vec<(Gfid, u8, u64)> = Vec::new();
    for (g, size) in files {
        if opts.delta && *size >= opts.delta_min {
            delta.push((*g, block_log2(*size), *size));
        } else {
            link.set_origin(labels.of(g))?;
            src.send_data(link, batch, g, stats)?;
        }
    }
    let mut group: Vec<SumsAsk> = Vec::new();
    let mut blocks = 0u64;
    for (i, (g, b, size)) in delta.iter().enumerate() {
        group.push(SumsAsk { gfid: *g, block_log2: *b, offset: 0, len: u64::MAX });
        blocks += size.div_ceil(1 << *b) + 1;
        if blocks >= SUMS_BUDGET / 2 || i + 1 == delta.len() {
            let asked = std::mem::take(&mut group);
            let logs: HashMap<Gfid, u8> = asked.iter().map(|a| (a.gfid, a.block_log2)).collect();
            let mut refine = Vec::new();
            for theirs in link.sums(batch, asked)? {
                link.set_origin(labels.of(&theirs.gfid))?;
                if theirs.size == u64::MAX {
                    src.send_data(link, batch, &theirs.gfid, stats)?;
                    continue;
                }
                let (gfid, log2) = (theirs.gfid, logs[&theirs.gfid]);
                let mut differing: Vec<(u64, u64)> = Vec::new();
                let Some((size, skipped)) = src.diff_blocks(&theirs, log2, (0, u64::MAX), |_, off, bytes| {
                    differing.push((off, bytes.len() as u64));
                    Ok(())
                })?
                else {
                    continue;
                };
                stats.files += 1;
                // Most blocks differ and the size changed: data moved (an insertion or a
                // deletion shifted what follows); a rolling delta finds it where it went.
                let moved = size != theirs.size && differing.len() as u64 * 2 > size.div_ceil(1 << log2);
                if moved && size.max(theirs.size) <= ROLLING_MAX && src.send_rolling(link, batch, gfid, stats)? {
                    continue;
                }
                stats.delta_skipped += skipped;
                if differing.is_empty() && theirs.size != size {
                    // Only the size differs (a truncation): an empty chunk sets it.
                    link.send(&Msg::Data { batch, gfid, size, offset: size, bytes: Vec::new() })?;
                }
                for (off, len) in differing {
                    if off >= theirs.size {
                        // Beyond the secondary's end: nothing there to compare with.
                        src.send_range(link, batch, gfid, size, (off, len), stats)?;
                    } else {
                        refine.push(SumsAsk { gfid, block_log2: FINE_LOG2, offset: off, len });
                    }
                }
            }
            send_fine_blocks(src, link, batch, refine, labels, stats)?;
            blocks = 0;
        }
    }
    Ok(())
}

/// Data a batch sends in parallel streams (`sync-jobs`) from this much on; below, one stream.
const PARALLEL_MIN: u64 = 4 << 20;

/// `sync-jobs`: the files are shared out among the link and its data streams, biggest first,
/// each stream fed by a thread of its own with its own view of the brick. The data streams'
/// receivers work in the first receiver's mount: that one has applied the batch's entries
/// before any data goes (an empty sums request is the barrier), and each data stream is
/// committed (its writes applied and durable) before the metadata goes, its failures kept for
/// the batch's commit.
fn send_data_parallel(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    mut files: Vec<(Gfid, u64)>,
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    link.sums(batch, Vec::new())?;
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let queue = parking_lot::Mutex::new(files.into_iter());
    let next = || queue.lock().next();
    let brick = src.layout.root.clone();
    let mut jobs = std::mem::take(&mut link.jobs);
    let (mine, theirs) = std::thread::scope(|s| {
        let threads: Vec<_> = jobs
            .iter_mut()
            .map(|l| {
                let (brick, next) = (&brick, &next);
                s.spawn(move || -> anyhow::Result<(Stats, Vec<Failure>)> {
                    let mut src = Source::open(brick)?;
                    let mut st = Stats::default();
                    let b = l.batch_id();
                    while let Some(f) = next() {
                        send_files(&mut src, l, b, &[f], labels, opts, &mut st)?;
                    }
                    Ok((st, l.commit(b)?))
                })
            })
            .collect();
        let mut mine = Ok(());
        while let Some(f) = next() {
            if let Err(e) = send_files(src, link, batch, &[f], labels, opts, stats) {
                mine = Err(e);
                break;
            }
        }
        (mine, threads.into_iter().map(|t| t.join()).collect::<Vec<_>>())
    });
    link.jobs = jobs;
    mine?;
    for t in theirs {
        let (st, failures) = t.map_err(|_| anyhow::anyhow!("a data stream's thread panicked"))??;
        stats.add(&st);
        link.failures_elsewhere.extend(failures);
    }
    Ok(())
}

/// Sends data then metadata: `(data, meta)` are the files whose content goes, and the inodes
/// whose metadata goes, in that order.
fn send_data_and_meta(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    (data, meta): (&BTreeSet<Gfid>, &[Gfid]),
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut files = Vec::with_capacity(data.len());
    for g in data {
        if let Some(size) = src.file_size(g)? {
            files.push((*g, size));
        }
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    if !link.jobs.is_empty() && files.len() > 1 && total >= PARALLEL_MIN {
        send_data_parallel(src, link, batch, files, labels, opts, stats)?;
    } else {
        send_files(src, link, batch, &files, labels, opts, stats)?;
    }
    let mut ops = Vec::new();
    for g in meta {
        if labels.of(g) != link.origin() || ops.len() >= ENTRY_BATCH {
            if !ops.is_empty() {
                link.send(&Msg::Meta { batch, ops: std::mem::take(&mut ops) })?;
            }
            link.set_origin(labels.of(g))?;
        }
        if let Some(m) = src.meta(g, opts)? {
            ops.push(m);
            stats.meta += 1;
        }
    }
    if !ops.is_empty() {
        link.send(&Msg::Meta { batch, ops })?;
    }
    Ok(())
}

/// The name of an entry op, as the failures list shows it.
fn op_name(op: &EntryOp) -> &'static str {
    match op {
        EntryOp::Create { mode, .. } => match *mode & libc::S_IFMT {
            libc::S_IFDIR => "MKDIR",
            libc::S_IFLNK => "SYMLINK",
            libc::S_IFREG => "CREATE",
            _ => "MKNOD",
        },
        EntryOp::Link { .. } => "LINK",
        EntryOp::Rename { .. } => "RENAME",
        EntryOp::Remove { dir: true, .. } => "RMDIR",
        EntryOp::Remove { .. } => "UNLINK",
    }
}

fn op_gfid(op: &EntryOp) -> Gfid {
    match op {
        EntryOp::Create { gfid, .. }
        | EntryOp::Link { gfid, .. }
        | EntryOp::Rename { gfid, .. }
        | EntryOp::Remove { gfid, .. } => *gfid,
    }
}

/// An entry op to keep for a retry: without its inline content (a retry sends data anew).
fn retained(op: &EntryOp) -> EntryOp {
    let mut op = op.clone();
    if let EntryOp::Create { inline, .. } = &mut op {
        *inline = None;
    }
    op
}

/// Commits `batch`; what the secondary could not apply is tried again, its entry ops (of
/// `entries`, the batch's), then its data and metadata as the primary has them now, up to
/// `opts.retries` times with a growing pause; what still fails is counted and logged.
#[allow(clippy::too_many_arguments)]
fn commit(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    entries: &[Labelled],
    carried: (&BTreeSet<Gfid>, &[Gfid]),
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut failures = unsettled(src, link.commit(batch)?);
    out_of_space(&failures)?;
    let mut attempt = 0u32;
    while !failures.is_empty() && attempt < opts.retries {
        attempt += 1;
        log::info!("{} changes failed; retry {attempt} of {}", failures.len(), opts.retries);
        std::thread::sleep(Duration::from_millis(50 * attempt as u64));
        let failed: std::collections::HashSet<Gfid> = failures.iter().map(|f| f.gfid).collect();
        let b = link.batch_id();
        let ops: Vec<Labelled> = entries.iter().filter(|(_, op)| failed.contains(&op_gfid(op))).cloned().collect();
        send_entries(link, b, ops)?;
        let mut data = BTreeSet::new();
        for g in &failed {
            if src.file_size(g)?.is_some() {
                data.insert(*g);
            }
        }
        let meta: Vec<Gfid> = failed.iter().copied().collect();
        let mut scratch = Stats::default();
        send_data_and_meta(src, link, b, (&data, &meta), labels, opts, &mut scratch)?;
        failures = unsettled(src, link.commit(b)?);
    }
    // Out of space is not the change's fault: nothing is skipped, the batch comes again
    // (its changelogs stay unprocessed) once there is room.
    let full = failures.iter().filter(|f| f.errno == libc::ENOSPC || f.errno == libc::EDQUOT).count();
    if full > 0 {
        anyhow::bail!(
            "the secondary is out of space ({full} changes could not be applied): the batch is retried until there is room"
        );
    }
    settle(src, &failures, entries, carried)?;
    report(src, failures, stats);
    stats.wire_bytes += link.take_wire_bytes();
    Ok(())
}

/// The ledger after a batch: what still failed listed (or counted again), what the batch
/// applied of what it listed taken off.
fn settle(
    src: &mut Source,
    failures: &[Failure],
    entries: &[Labelled],
    (data, meta): (&BTreeSet<Gfid>, &[Gfid]),
) -> anyhow::Result<()> {
    if src.ledger.is_none() {
        return Ok(());
    }
    let root = src.layout.root.clone();
    // One line per change: a file whose data and metadata both failed is one failed change.
    let mut failed: Vec<(Gfid, String, String, i32, String)> = Vec::new();
    for f in failures {
        // The receiver says which stage failed first in its message.
        let stage = f.message.split(':').next().unwrap_or("");
        let op = match stage {
            "data" | "patch" => "DATA".to_string(),
            "meta" => "META".to_string(),
            _ => match entries.iter().find(|(_, op)| op_gfid(op) == f.gfid) {
                Some((_, op)) => op_name(op).to_string(),
                None => stage.to_uppercase(),
            },
        };
        if let Some(known) = failed.iter_mut().find(|k| k.0 == f.gfid) {
            if !known.2.split(',').any(|o| o == op) {
                known.2 = format!("{},{op}", known.2);
            }
            continue;
        }
        let path = src.path_of(&f.gfid).and_then(|p| p.strip_prefix(&root).ok().map(|p| p.display().to_string()));
        failed.push((f.gfid, path.unwrap_or_default(), op, f.errno, f.message.clone()));
    }
    let gfids: std::collections::HashSet<Gfid> = entries.iter().map(|(_, op)| op_gfid(op)).collect();
    let applied = |g: &Gfid| gfids.contains(g) || data.contains(g) || meta.contains(g);
    if let Some(ledger) = &src.ledger {
        ledger.settle(&failed, &applied).context("the failures list")?;
    }
    Ok(())
}

/// Out of space is not the changes' fault: nothing is skipped, and nothing is tried again at
/// once (it would send the same data again for nothing, taking what the other sessions
/// need): the worker stops with this error, and the batch comes again (its changelogs stay
/// unprocessed) with the worker's backoff, until there is room.
fn out_of_space(failures: &[Failure]) -> anyhow::Result<()> {
    let full = failures.iter().filter(|f| f.errno == libc::ENOSPC || f.errno == libc::EDQUOT).count();
    if full > 0 {
        anyhow::bail!(
            "the secondary is out of space ({full} changes could not be applied): the batch is retried until there is room"
        );
    }
    // So is a secondary volume whose brick server went away under the receiver.
    let gone = failures.iter().filter(|f| f.errno == libc::ENOTCONN).count();
    if gone > 0 {
        anyhow::bail!(
            "the secondary volume went away under the receiver ({gone} changes could not be applied: ENOTCONN): the batch is retried"
        );
    }
    Ok(())
}

/// Asks the brick's server to give the entry at `path` (and any parent without one) a GFID,
/// recorded as new.
fn adopt(root: &Path, path: &Path) -> anyhow::Result<Gfid> {
    let rel = path.strip_prefix(root)?;
    crate::fs::server::adopt(&crate::daemon::dirs::Dirs::from_env().run, root, rel)
}

/// The entry operation that makes an entry as the brick has it (`md`).
fn create_op(
    gfid: Gfid,
    pgfid: Gfid,
    name: std::ffi::OsString,
    md: &std::fs::Metadata,
    target: Option<std::ffi::OsString>,
    inline: Option<Box<Inline>>,
) -> EntryOp {
    EntryOp::Create {
        gfid,
        pgfid,
        name,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev(),
        target,
        inline,
    }
}

/// The Hybrid crawl: the whole brick, parents before children, hard links as links.
pub fn hybrid_crawl(
    src: &mut Source,
    link: &mut Link,
    opts: &WorkerOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    let total = GfidIndex::estimate_len(&src.layout.gfid_index()).unwrap_or(0);
    progress.crawl_progress(0, total);
    let batch = link.batch_id();
    // Everything goes as this volume's (the crawl sees states, not where changes came from).
    let labels = Labels::new(src.volume, link.welcome.volume);
    link.set_origin(src.volume)?;
    let mut ops = Vec::new();
    // What was sent, without inline content, for retries.
    let mut sent: Vec<Labelled> = Vec::new();
    let mut ops_bytes = 0usize;
    let mut files = BTreeSet::new();
    let mut seen: HashMap<(u64, u64), Gfid> = HashMap::new();
    let mut dirs: Vec<Gfid> = Vec::new();
    let mut others: Vec<Gfid> = Vec::new();
    let mut queue: Vec<(PathBuf, Gfid)> = vec![(src.layout.root.clone(), Gfid::ROOT)];
    // Each directory's names, pruned on the secondary once its own entries are sent.
    let mut pending_prunes: Vec<(Gfid, Vec<std::ffi::OsString>)> = Vec::new();
    while let Some((dir, pgfid)) = queue.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<Vec<_>, _>>()?;
        names.sort_by_key(|e| e.file_name());
        let keep: Vec<_> = names
            .iter()
            .map(|e| e.file_name())
            .filter(|n| !(pgfid == Gfid::ROOT && n.as_bytes() == PRIVATE_DIR.as_bytes()))
            .collect();
        pending_prunes.push((pgfid, keep));
        // Files are opened relative to their directory: no path walk per file.
        let dirfd = File::open(&dir)?;
        for e in names {
            let name = e.file_name();
            if pgfid == Gfid::ROOT && name.as_bytes() == PRIVATE_DIR.as_bytes() {
                continue;
            }
            let p = e.path();
            // A regular file (by d_type) is opened once, for its attributes, GFID and content;
            // without following a symlink that replaced it meanwhile, nor blocking on a fifo.
            let file = if e.file_type()?.is_file() {
                let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOATIME;
                match sys::openat(dirfd.as_fd(), &name, flags, 0) {
                    Ok(f) => Some(File::from(f)),
                    // Gone or replaced meanwhile: the changelogs carry what happened.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP | libc::ENXIO)) => continue,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            let (md, gfid) = match &file {
                Some(f) => (f.metadata()?, sys::getxattr_vec(f.as_fd(), OsStr::new(XATTR_GFID))?),
                None => (std::fs::symlink_metadata(&p)?, xattr::get(&p, XATTR_GFID)?),
            };
            let gfid = match gfid.and_then(|v| Gfid::from_slice(&v)) {
                Some(g) => g,
                // Made while nothing recorded (its brick server killed between making and
                // recording it, or written straight into the brick): the brick server gives it
                // a GFID and records it as new, and it goes now with that GFID.
                None => match adopt(&src.layout.root, &p) {
                    Ok(g) => g,
                    Err(e) => {
                        log::error!("{}: no GFID, and none could be given: {e:#}", p.display());
                        stats.failures += 1;
                        continue;
                    }
                },
            };
            if !md.is_dir() && md.nlink() > 1 {
                if let Some(first) = seen.get(&(md.dev(), md.ino())) {
                    let op = EntryOp::Link { gfid: *first, pgfid, name: name.clone() };
                    sent.push((src.volume, op.clone()));
                    ops.push(op);
                    continue;
                }
                seen.insert((md.dev(), md.ino()), gfid);
            }
            let target =
                if md.file_type().is_symlink() { Some(std::fs::read_link(&p)?.into_os_string()) } else { None };
            let inline = match &file {
                Some(f) if md.is_file() && md.len() <= INLINE_MAX => Source::inline_of(f.as_fd(), gfid, opts, true)?,
                _ => None,
            };
            let whole = inline.is_some();
            if let Some(i) = &inline {
                stats.files += 1;
                stats.bytes += i.content.len() as u64;
                stats.meta += 1;
            }
            let op = create_op(gfid, pgfid, name.clone(), &md, target, inline);
            ops_bytes += entry_bytes(&op);
            sent.push((src.volume, retained(&op)));
            ops.push(op);
            stats.entries += 1;
            if stats.entries % 1000 == 0 {
                progress.crawl_progress(stats.entries, total.max(stats.entries));
                progress.may_ship()?;
            }
            if md.is_dir() {
                queue.push((p, gfid));
                dirs.push(gfid);
            } else if !whole {
                if md.is_file() {
                    files.insert(gfid);
                }
                others.push(gfid);
            }
            if ops.len() >= ENTRY_BATCH || ops_bytes >= ENTRY_BYTES {
                link.send_entries(&Msg::Entries { batch, ops: std::mem::take(&mut ops) }, ops_bytes)?;
                ops_bytes = 0;
            }
        }
    }
    if !ops.is_empty() {
        link.send_entries(&Msg::Entries { batch, ops }, ops_bytes)?;
    }
    if !opts.ignore_deletes {
        for (pgfid, keep) in pending_prunes {
            link.send(&Msg::Prune { batch, pgfid, keep })?;
        }
    }
    // Directories' metadata last, deepest first, so that nothing changes their times after.
    dirs.reverse();
    dirs.push(Gfid::ROOT);
    others.extend(dirs);
    send_data_and_meta(src, link, batch, (&files, &others), &labels, opts, &mut stats)?;
    commit(src, link, batch, &sent, (&files, &others), &labels, opts, &mut stats)?;
    Ok(stats)
}

/// Turns a changelog's records into entry operations and the GFIDs whose data and metadata
/// must follow, each labelled with the volume it was first made on; what was first made on
/// the secondary's volume is left out (`labels`).
fn plan(
    records: &[Record],
    opts: &WorkerOptions,
    labels: &mut Labels,
    ops: &mut Vec<Labelled>,
    data: &mut BTreeSet<Gfid>,
    meta: &mut Vec<Gfid>,
) {
    let mut i = 0;
    while i < records.len() {
        let r = &records[i];
        i += 1;
        let Some(from) = labels.admit(r) else {
            if r.flags & RECORD_EXCHANGE != 0 {
                // Its twin goes with it.
                i += 1;
            }
            continue;
        };
        match r.kind() {
            Kind::Data => {
                data.insert(r.gfid);
                meta.push(r.gfid);
            }
            Kind::Meta => meta.push(r.gfid),
            Kind::Entry => {
                let Some(e) = &r.entry else { continue };
                let (pgfid, name) = (e.entry.pgfid, e.entry.name.clone());
                meta.push(pgfid);
                match r.op {
                    Op::Create | Op::Mkdir | Op::Mknod | Op::Symlink => {
                        ops.push((
                            from,
                            EntryOp::Create {
                                gfid: r.gfid,
                                pgfid,
                                name,
                                mode: e.mode,
                                uid: e.uid,
                                gid: e.gid,
                                rdev: e.rdev,
                                target: e.target.clone(),
                                inline: None,
                            },
                        ));
                        meta.push(r.gfid);
                    }
                    Op::Link => ops.push((from, EntryOp::Link { gfid: r.gfid, pgfid, name })),
                    Op::Rename => {
                        let Some(to) = &e.new_entry else { continue };
                        let exchange = r.flags & RECORD_EXCHANGE != 0;
                        if exchange {
                            // Its twin follows: one exchange covers both.
                            i += 1;
                        }
                        meta.push(to.pgfid);
                        ops.push((
                            from,
                            EntryOp::Rename {
                                gfid: r.gfid,
                                from_pgfid: pgfid,
                                from_name: name,
                                to_pgfid: to.pgfid,
                                to_name: to.name.clone(),
                                exchange,
                            },
                        ));
                    }
                    Op::Unlink | Op::Rmdir if !opts.ignore_deletes => {
                        ops.push((from, EntryOp::Remove { gfid: r.gfid, pgfid, name, dir: r.op == Op::Rmdir }))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One pass of the Changelog crawl: every changelog published and not yet processed, in
/// batches; returns how many changelogs were processed.
pub fn changelog_pass(
    src: &mut Source,
    link: &mut Link,
    consumer: &mut Consumer,
    opts: &WorkerOptions,
    stats: &mut Stats,
    progress: &mut dyn Progress,
) -> anyhow::Result<usize> {
    let pending = consumer.scan()?.to_vec();
    let mut done = 0;
    let mut labels = Labels::new(src.volume, link.welcome.volume);
    for group in pending.chunks(opts.changelogs_per_batch.max(1)) {
        progress.may_ship()?;
        let batch = link.batch_id();
        let (mut ops, mut data, mut meta) = (Vec::new(), BTreeSet::new(), Vec::new());
        labels.clear();
        for c in group {
            let f = c.open()?;
            let (records, _) = f.records();
            plan(&records, opts, &mut labels, &mut ops, &mut data, &mut meta);
        }
        stats.entries += ops.len() as u64;
        let mut seen = std::collections::HashSet::new();
        meta.retain(|g| seen.insert(*g));
        src.prefetch(meta.iter().chain(data.iter()).copied())?;
        // New small files travel whole with their create: no data or meta of their own.
        let mut whole = std::collections::HashSet::new();
        for (_, op) in ops.iter_mut() {
            if let EntryOp::Create { gfid, mode, inline, .. } = op
                && *mode & libc::S_IFMT == libc::S_IFREG
                && !whole.contains(gfid)
                && let Some(i) = src.inline(gfid, opts)?
            {
                stats.files += 1;
                stats.bytes += i.content.len() as u64;
                stats.meta += 1;
                whole.insert(*gfid);
                *inline = Some(i);
            }
        }
        data.retain(|g| !whole.contains(g));
        meta.retain(|g| !whole.contains(g));
        progress.pending(ops.len() as u64, data.len() as u64, meta.len() as u64);
        let sent: Vec<Labelled> = ops.iter().map(|(from, op)| (*from, retained(op))).collect();
        send_entries(link, batch, ops)?;
        send_data_and_meta(src, link, batch, (&data, &meta), &labels, opts, stats)?;
        commit(src, link, batch, &sent, (&data, &meta), &labels, opts, stats)?;
        progress.advancing(group.iter().map(|c| c.entry.end_ms).max().unwrap_or(0))?;
        for c in group {
            consumer.done(c)?;
            done += 1;
        }
        link.tell(&Msg::Synced { stime_ms: consumer.processed_ms() })?;
        progress.synced(consumer.processed_ms(), stats);
    }
    Ok(done)
}

/// A Hybrid crawl, after which the changelogs published before it began are processed.
fn crawl(
    src: &mut Source,
    link: &mut Link,
    consumer: &mut Consumer,
    opts: &WorkerOptions,
    stats: &mut Stats,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    progress.crawl("Hybrid Crawl");
    progress.may_ship()?;
    let started = EpochMs::now().0;
    let s = hybrid_crawl(src, link, opts, progress)?;
    stats.add(&s);
    progress.advancing(started)?;
    // Changelogs published before the crawl began hold nothing it did not see.
    for c in consumer.scan()?.to_vec() {
        if c.entry.end_ms <= started {
            consumer.done(&c)?;
        }
    }
    link.tell(&Msg::Synced { stime_ms: consumer.processed_ms().max(started) })?;
    progress.synced(consumer.processed_ms().max(started), stats);
    Ok(())
}

/// Replicates a brick to a receiver: a Hybrid crawl if this consumer has never synced, if
/// `full`, or whenever the changelogs cannot be trusted to hold every change (history removed
/// by retention, or a gap after the primary's daemon stopped uncleanly); then the History
/// crawl (changelogs recorded while no worker ran) and the Changelog crawl (live); once, or
/// forever. With `xsync`, a Hybrid crawl every `change_interval` instead.
pub fn replicate(
    src: &mut Source,
    link: &mut Link,
    consumer_name: &str,
    full: bool,
    once: bool,
    opts: &WorkerOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<Stats> {
    let mut consumer = Consumer::register(&src.layout, consumer_name)?;
    let mut stats = Stats::default();
    if opts.xsync {
        loop {
            crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
            progress.idle(consumer.processed_ms());
            if once {
                return Ok(stats);
            }
            std::thread::sleep(opts.change_interval);
        }
    }
    // (History lost to retention is found below, and said.)
    if full || consumer.processed_ms() == 0 {
        crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
    }
    progress.crawl("History Crawl");
    loop {
        if consumer.scan()?.iter().any(|c| c.entry.is_unclean()) {
            log::warn!("changelogs after an unclean stop of the primary may miss changes: crawling");
            crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
        }
        if !consumer.history(consumer.processed_ms())?.complete {
            let note = format!(
                "fell behind the primary's changelog retention (changelogs after {} were removed unprocessed): catching up by a Hybrid crawl",
                crate::session::status::format_time((consumer.processed_ms() / 1000) as i64, false)
            );
            log::warn!("{note}");
            progress.note(&note);
            crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
            progress.note("");
        }
        let n = changelog_pass(src, link, &mut consumer, opts, &mut stats, progress)?;
        if n == 0 {
            progress.crawl("Changelog Crawl");
            progress.idle(consumer.processed_ms());
        }
        if once {
            return Ok(stats);
        }
        if n == 0 {
            // Woken by the next rollover; the timeout only bounds a missed wake-up.
            consumer.wait(Duration::from_secs(2));
        }
    }
}
