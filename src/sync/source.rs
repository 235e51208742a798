//! Read access to the primary brick by GFID: the worker's only view of it (it never writes
//! to the brick): entries, content (whole, ranges, delta blocks), metadata.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::fs::gfid_index::{self, GfidIndex};
use crate::fs::newentry::replicated_xattr;
use crate::fs::sys::{self, FileHandle};
use crate::proto::{Inline, MetaOp, Msg, ROLLING_MAX};
use crate::types::{BrickLayout, Gfid, VolumeId};

use super::data::{CHUNK, INLINE_MAX, ROLLING_DELTA_MAX};
use super::link::Link;
use super::{Stats, WorkerOptions, failures};

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
    pub(super) fn open_gfid(&mut self, gfid: &Gfid) -> io::Result<Option<OwnedFd>> {
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

    pub(super) fn xattrs(
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

    pub(super) fn meta_of(fd: std::os::fd::BorrowedFd<'_>, gfid: Gfid, opts: &WorkerOptions) -> io::Result<MetaOp> {
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
    pub(super) fn inline_of(
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
    pub(super) fn file_size(&mut self, gfid: &Gfid) -> io::Result<Option<u64>> {
        let Some(fd) = self.open_gfid(gfid)? else { return Ok(None) };
        let st = sys::fstat(fd.as_fd())?;
        Ok((st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64))
    }

    /// Compares a file with the secondary's copy over `range`: `theirs` has the secondary's
    /// checksums of the blocks (`1 << block_log2` bytes) from the range's start on. Calls
    /// `differs` with the file's size, the offset and the bytes of each block that differs;
    /// returns the file's size and the bytes found equal, or `None` if it is no longer a
    /// regular file here.
    pub(super) fn diff_blocks(
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
    pub(super) fn send_range(
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
    pub(super) fn send_rolling(
        &mut self,
        link: &mut Link,
        batch: u64,
        gfid: Gfid,
        stats: &mut Stats,
    ) -> anyhow::Result<bool> {
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
pub(super) fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
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
