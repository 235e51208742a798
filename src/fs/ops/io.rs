//! Open files: create, open, read/write (when not passed through), release, fsync, fallocate,
//! lseek, copy_file_range.
//!
//! With kernel passthrough, reads, writes and mmap of an open file never reach the daemon, so
//! a file open for writing is recorded as a DATA change at open, at every rollover while it is
//! open (the recorder does that), and at release.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use fuser::{BackingId, Errno, FileHandle, FopenFlags, ReplyCreate, ReplyOpen, Request};

use super::{GEN, R, errno, to_attr};
use crate::changelog::Op;
use crate::fs::OverlayFs;
use crate::fs::handles::Handle;
use crate::fs::inode::Inode;
use crate::fs::sys;

/// No FLUSH on close: locks are the kernel's (the overlay implements none) and data needs no
/// flushing, so close(2) costs the caller no round trip.
/// No FLUSH at close: nothing to do then, and a round trip saved per close.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

fn is_writer(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

/// Open flags for our own descriptor: creation is done, symlinks are never followed anyway.
fn reopen_flags(flags: i32) -> i32 {
    flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW)
}

impl OverlayFs {
    fn file(&self, fh: u64) -> R<Arc<Handle>> {
        match self.handles.get(fh) {
            Some(h) if matches!(*h, Handle::File { .. }) => Ok(h),
            _ => Err(Errno::EBADF),
        }
    }

    fn file_parts(h: &Handle) -> (&File, &Arc<Inode>) {
        match h {
            Handle::File { file, inode, .. } => (file, inode),
            Handle::Dir { .. } => unreachable!("checked by file()"),
        }
    }

    fn note_writer(&self, inode: &Arc<Inode>, flags: i32) -> R<()> {
        if let Some(rec) = &self.recorder {
            let op = if flags & libc::O_TRUNC != 0 { Op::Truncate } else { Op::Open };
            self.mark(inode);
            rec.open_writer(inode.gfid, op, self.origin()).map_err(|_| Errno::EIO)?;
        }
        Ok(())
    }

    pub(super) fn do_open(&self, inode: &Arc<Inode>, flags: i32) -> R<(File, Arc<Inode>, bool)> {
        let writer = is_writer(flags);
        if writer {
            self.writable()?;
        }
        let path = inode.fd().map_err(errno)?;
        let fd = self.inodes.with_room(|| sys::reopen(path.as_fd(), reopen_flags(flags))).map_err(errno)?;
        if writer {
            self.note_writer(inode, flags)?;
        }
        Ok((File::from(fd), inode.clone(), writer))
    }

    /// The passthrough backing id of `inode`, shared by all its open handles.
    fn backing(
        &self,
        inode: &Arc<Inode>,
        file: &File,
        open: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(std::sync::atomic::Ordering::Relaxed) || !inode.is_reg() {
            return None;
        }
        let mut slots = inode.backing.lock();
        let me = self.id.index();
        if let Some(b) = slots.iter().find(|(s, _)| *s == me).and_then(|(_, b)| b.upgrade()) {
            return Some(b);
        }
        match open(file) {
            Ok(id) => {
                let id = Arc::new(id);
                slots.retain(|(s, b)| *s != me && b.strong_count() > 0);
                slots.push((me, Arc::downgrade(&id)));
                Some(id)
            }
            Err(e) => {
                log::warn!("passthrough unavailable for {}: {e}", inode.gfid);
                None
            }
        }
    }

    /// The open flags for a handle of `inode`: a writer whose inode another mount knows gets
    /// its FLUSH at close (writes through kernel passthrough never reach the daemon; the
    /// flush drops what the other mounts cached, close-to-open as NFS), others none.
    fn open_flags(&self, inode: &Inode, writer: bool) -> FopenFlags {
        if writer && inode.known() & !self.id.bit() != 0 { FopenFlags::empty() } else { OPEN_FLAGS }
    }

    pub(super) fn reply_open(&self, opened: (File, Arc<Inode>, bool), reply: ReplyOpen) {
        let (file, inode, writer) = opened;
        let flags = self.open_flags(&inode, writer);
        let backing = self.backing(&inode, &file, |f| reply.open_backing(f.as_fd()));
        let fh =
            self.handles.insert(Handle::File { file, inode, writer, origin: self.origin(), _backing: backing.clone() });
        match backing {
            Some(b) => reply.opened_passthrough(FileHandle(fh), flags, &b),
            None => reply.opened(FileHandle(fh), flags),
        }
    }

    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: &Arc<Inode>,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> R<(File, Arc<Inode>, bool, libc::stat)> {
        self.check_new(parent, name)?;
        let oflags = reopen_flags(flags) | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let pfd = parent.fd().map_err(errno)?;
        let creating = self.creating(&parent.gfid, name);
        let as_caller = sys::CreateAs::new(self.gid(req), umask).map_err(errno)?;
        // Out of descriptors, openat fails before it creates anything: a retry is safe.
        let created = self.inodes.with_room(|| sys::openat(pfd.as_fd(), name, oflags, mode & 0o7777));
        drop(as_caller);
        match created {
            Ok(fd) => {
                let file = File::from(fd);
                // The kernel holds the directory locked for this CREATE: the name is ours.
                let opath = self.inodes.with_room(|| sys::open_path(pfd.as_fd(), name)).map_err(errno)?;
                let (inode, st) = self.adopt_new(req, parent, opath, Some(file.as_fd()), mode)?;
                drop(creating);
                self.record_new(Op::Create, parent, name, &inode, &st, None)?;
                let writer = is_writer(flags);
                if writer {
                    self.note_writer(&inode, flags & !libc::O_TRUNC)?;
                }
                Ok((file, inode, writer, st))
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && flags & libc::O_EXCL == 0 => {
                let (inode, _) = self.do_lookup(parent, name)?;
                let opened = self.do_open(&inode, flags)?;
                let st = sys::fstat(inode.fd().map_err(errno)?.as_fd()).map_err(errno)?;
                Ok((opened.0, opened.1, opened.2, st))
            }
            Err(e) => Err(errno(e)),
        }
    }

    pub(super) fn reply_create(&self, created: (File, Arc<Inode>, bool, libc::stat), reply: ReplyCreate) {
        let (file, inode, writer, st) = created;
        let attr = to_attr(inode.ino, &st);
        let flags = self.open_flags(&inode, writer);
        let backing = self.backing(&inode, &file, |f| reply.open_backing(f.as_fd()));
        let fh =
            self.handles.insert(Handle::File { file, inode, writer, origin: self.origin(), _backing: backing.clone() });
        match backing {
            Some(b) => reply.created_passthrough(&self.opts.ttl, &attr, GEN, FileHandle(fh), flags, &b),
            None => reply.created(&self.opts.ttl, &attr, GEN, FileHandle(fh), flags),
        }
    }

    pub(super) fn do_read(&self, fh: u64, offset: u64, size: u32) -> R<Vec<u8>> {
        let h = self.file(fh)?;
        let (file, _) = Self::file_parts(&h);
        let mut buf = vec![0u8; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    pub(super) fn do_write(&self, fh: u64, offset: u64, data: &[u8]) -> R<usize> {
        let h = self.file(fh)?;
        let (file, inode) = Self::file_parts(&h);
        file.write_all_at(data, offset).map_err(errno)?;
        self.rec_data(Op::Write, inode)?;
        Ok(data.len())
    }

    pub(crate) fn do_release(&self, fh: u64) -> R<()> {
        if let Some(h) = self.handles.remove(fh)
            && let Handle::File { inode, writer: true, origin, .. } = &*h
            && let Some(rec) = &self.recorder
        {
            self.mark(inode);
            rec.close_writer(inode.gfid, *origin).map_err(|_| Errno::EIO)?;
        }
        Ok(())
    }

    /// Syncs the file or directory of handle `fh` on a thread of the slow pool, which replies.
    pub(super) fn do_fsync(&self, fh: u64, datasync: bool, reply: fuser::ReplyEmpty) {
        let Some(h) = self.handles.get(fh) else {
            return reply.error(Errno::EBADF);
        };
        self.slow.run(move || match Self::sync_handle(&h, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn sync_handle(h: &Handle, datasync: bool) -> R<()> {
        let r = match h {
            Handle::File { file, .. } => {
                if datasync {
                    file.sync_data()
                } else {
                    file.sync_all()
                }
            }
            Handle::Dir { stream, .. } => {
                let s = stream.lock();
                nix::unistd::fsync(s.fd()).map_err(std::io::Error::from)
            }
        };
        r.map_err(errno)
    }

    pub(super) fn do_fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> R<()> {
        self.writable()?;
        let h = self.file(fh)?;
        let (file, inode) = Self::file_parts(&h);
        sys::fallocate(file.as_fd(), mode, offset, length).map_err(errno)?;
        self.rec_data(Op::Fallocate, inode)
    }

    pub(super) fn do_lseek(&self, fh: u64, offset: i64, whence: i32) -> R<i64> {
        let h = self.file(fh)?;
        let (file, _) = Self::file_parts(&h);
        sys::lseek(file.as_fd(), offset, whence).map_err(errno)
    }

    /// Copies on a thread of the slow pool (a copy of a big range takes long), which records
    /// and replies.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u32,
        reply: fuser::ReplyWrite,
    ) {
        let handles = self.writable().and_then(|()| Ok((self.file(fh_in)?, self.file(fh_out)?)));
        let (hi, ho) = match handles {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let (recorder, xtime, origin) = (self.recorder.clone(), self.xtime.clone(), self.origin());
        self.slow.run(move || {
            let (fi, _) = Self::file_parts(&hi);
            let (fo, inode) = Self::file_parts(&ho);
            let r = sys::copy_file_range(fi.as_fd(), off_in, fo.as_fd(), off_out, len, flags)
                .map_err(errno)
                .and_then(|n| super::record_data(&recorder, &xtime, Op::CopyFileRange, inode, origin).map(|()| n));
            match r {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(e),
            }
        });
    }
}
