//! The `fuser::Filesystem` implementation. Each method unpacks its request, calls the
//! operation in the family module (`entry`, `attr`, `io`, `dir`, `xattr`), and maps the
//! result to a reply: errors become errno here and nowhere else.

mod attr;
mod aux;
mod dir;
mod entry;
mod io;
mod xattr;

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};

use super::GFID_DIR;
use super::OverlayFs;
use super::inode::{GFID_DIR_INO, Inode, ROOT_ALIAS_INO, ROOT_INO};
use super::sessions::Inval;
use crate::changelog::{EntryDetail, EntryName, Op};
use crate::types::Gfid;
use std::os::unix::ffi::OsStrExt;

pub(crate) type R<T> = Result<T, Errno>;

pub(crate) fn errno(e: std::io::Error) -> Errno {
    Errno::from(e)
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

pub(crate) fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

pub(crate) fn to_attr(ino: u64, st: &libc::stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

const GEN: Generation = Generation(0);

/// Attributes of something that is not a brick inode (the `.gfid` directory, a negative
/// entry).
pub(crate) fn synthetic_attr(ino: u64, kind: FileType, perm: u16, nlink: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Node id 0 in a lookup reply: "no such entry", cached for the entry timeout.
fn negative_attr() -> FileAttr {
    synthetic_attr(0, FileType::RegularFile, 0, 0)
}

impl OverlayFs {
    fn inode(&self, ino: INodeNo) -> R<Arc<Inode>> {
        if ino.0 == GFID_DIR_INO && self.opts.aux_gfid {
            // Nothing but lookup and getattr works on the virtual `.gfid` directory.
            return Err(Errno::EPERM);
        }
        self.inodes.get(ino.0).ok_or(Errno::ESTALE)
    }

    /// Refuses changes up front once recording has failed: a change must not happen unrecorded.
    fn writable(&self) -> R<()> {
        self.writable_with(crate::changelog::writer::ROOM_CHANGE, false)
    }

    /// As `writable`, for a change that makes an inode: more room kept ahead, and room in the
    /// GFID index. A removal (what frees a full disk) needs less than a creation, so it still
    /// goes when creations are refused.
    fn writable_new(&self) -> R<()> {
        self.writable_with(crate::changelog::writer::ROOM_NEW, true)
    }

    fn writable_with(&self, room: u64, index: bool) -> R<()> {
        if !self.opts.aux_gfid && self.users_ro.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Errno::EROFS);
        }
        // Room for the change's records (and its inode's index entry), or it is refused now
        // (ENOSPC), before anything is made.
        let no_room = |e: std::io::Error| match e.raw_os_error() {
            Some(n @ (libc::ENOSPC | libc::EDQUOT)) => Errno::from_i32(n),
            _ => Errno::EIO,
        };
        if let Some(rec) = &self.recorder {
            rec.ensure_room(room).map_err(no_room)?;
        }
        if index {
            self.brick.gfids.ensure_room().map_err(no_room)?;
        }
        Ok(())
    }

    fn rec_entry(
        &self,
        op: Op,
        gfid: Gfid,
        st: Option<&libc::stat>,
        entry: (Gfid, &OsStr),
        new_entry: Option<(Gfid, &OsStr)>,
        target: Option<&Path>,
    ) -> R<()> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let detail = Self::entry_detail(st, entry, new_entry, target);
        rec.entry(op, gfid, detail, self.origin()).map_err(|e| {
            log::error!("changelog: {e}");
            Errno::EIO
        })
    }

    /// What an ENTRY record says of an entry (of `st`, if the inode is still there).
    pub(super) fn entry_detail(
        st: Option<&libc::stat>,
        entry: (Gfid, &OsStr),
        new_entry: Option<(Gfid, &OsStr)>,
        target: Option<&Path>,
    ) -> EntryDetail {
        EntryDetail {
            mode: st.map(|s| s.st_mode).unwrap_or(0),
            uid: st.map(|s| s.st_uid).unwrap_or(0),
            gid: st.map(|s| s.st_gid).unwrap_or(0),
            rdev: st.map(|s| s.st_rdev).unwrap_or(0),
            entry: EntryName { pgfid: entry.0, name: entry.1.to_os_string() },
            new_entry: new_entry.map(|(p, n)| EntryName { pgfid: p, name: n.to_os_string() }),
            target: target.map(|t| t.as_os_str().to_os_string()),
        }
    }

    fn rec_data(&self, op: Op, inode: &Arc<Inode>) -> R<()> {
        record_data(&self.recorder, &self.xtime, op, inode, self.origin())
    }

    fn rec_meta(&self, op: Op, inode: &Arc<Inode>) -> R<()> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        self.mark(inode);
        rec.meta(op, inode.gfid, self.origin()).map_err(|_| Errno::EIO)
    }

    fn mark(&self, inode: &Arc<Inode>) {
        if let Some(x) = &self.xtime {
            x.mark(inode);
        }
    }
}

/// What a change made stale in the kernel caches of the brick's other sessions (`touched`).
pub(crate) enum Touched<'a> {
    Entry(u64, &'a OsStr),
    Attr(u64),
    Data(u64),
    /// A name of the inode with this GFID (and node id, if known) was removed: an aux
    /// mount's `.gfid/<gfid>` entry must not keep a deleted inode (and its blocks) alive.
    Gone(Gfid, Option<u64>),
    /// Nothing (a place in a list that may stay empty).
    Nothing,
}

impl OverlayFs {
    /// Invalidates what `what` made stale in the other sessions' kernels that may hold it;
    /// nothing (one atomic load) while this is the brick's only session.
    pub(crate) fn touched(&self, what: &[Touched<'_>]) {
        if self.opts.aux_gfid {
            // This kernel knows the root by two nodes: what changed under one is stale under
            // the other (a removed file's inode stays pinned by the stale entry). And a
            // `.gfid/<gfid>` entry, looked up with a zero entry timeout, is still kept when it
            // is let go within the same jiffy.
            let mut own = Vec::new();
            for t in what {
                match *t {
                    Touched::Entry(p, name) if p == ROOT_INO || p == ROOT_ALIAS_INO => {
                        let other = if p == ROOT_INO { ROOT_ALIAS_INO } else { ROOT_INO };
                        own.push(Inval::Entry { parent: other, name: name.to_os_string() });
                    }
                    Touched::Gone(g, _) if !g.is_null() => own.push(gfid_entry(g)),
                    _ => {}
                }
            }
            if !own.is_empty() {
                self.sessions.invalidate_own(self.id, own);
            }
        }
        if !self.sessions.shared() {
            return;
        }
        let known = |ino: u64| self.inodes.get(ino).map(|i| i.known()).unwrap_or(0);
        let node = |ino: u64| if ino == ROOT_ALIAS_INO { ROOT_INO } else { ino };
        let mut changes = Vec::with_capacity(what.len() + 1);
        for t in what {
            match *t {
                Touched::Entry(p, name) => {
                    let p = node(p);
                    changes.push((known(p), Inval::Entry { parent: p, name: name.to_os_string() }));
                    // An aux mount knows the root also as `.gfid/<root GFID>`.
                    if p == ROOT_INO {
                        changes.push((known(p), Inval::Entry { parent: ROOT_ALIAS_INO, name: name.to_os_string() }));
                    }
                }
                // Its other names' link count, and its `.gfid/` entry in aux mounts.
                Touched::Gone(g, Some(i)) => {
                    changes.push((known(i), Inval::Attr(i)));
                    if !g.is_null() {
                        changes.push((known(i), gfid_entry(g)));
                    }
                }
                Touched::Gone(_, None) | Touched::Nothing => {}
                Touched::Attr(i) => changes.push((known(node(i)), Inval::Attr(node(i)))),
                Touched::Data(i) => changes.push((known(node(i)), Inval::Data(node(i)))),
            }
        }
        self.sessions.invalidate(self.id, &changes);
    }
}

impl OverlayFs {
    /// A handle is being closed: if it wrote (through kernel passthrough, unseen by the
    /// daemon), what the other mounts cached of its file is dropped.
    fn writer_closing(&self, ino: INodeNo, fh: FileHandle) {
        if self.sessions.shared() && self.handles.get(fh.0).is_some_and(|h| h.is_writer()) {
            self.touched(&[Touched::Data(ino.0)]);
        }
    }
}

/// The `.gfid/<gfid>` entry of an aux mount.
fn gfid_entry(g: Gfid) -> Inval {
    Inval::Entry { parent: GFID_DIR_INO, name: g.to_string().into() }
}

/// Records a DATA change of `inode` (once per changelog) and marks it changed; for replies made
/// away from the filesystem's methods, which do not hold `self`.
fn record_data(
    recorder: &Option<crate::changelog::Recorder>,
    xtime: &Option<Arc<crate::fs::xtime::XtimeMarker>>,
    op: Op,
    inode: &Arc<Inode>,
    origin: crate::changelog::Origin,
) -> R<()> {
    let Some(rec) = recorder else {
        return Ok(());
    };
    if let Some(x) = xtime {
        x.mark(inode);
    }
    rec.data(op, inode.gfid, origin).map_err(|_| Errno::EIO)
}

impl Filesystem for OverlayFs {
    fn init(&mut self, _req: &Request, c: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_EXPORT_SUPPORT
            | InitFlags::FUSE_ASYNC_DIO
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        // ACLs enforced by the kernel (with default_permissions), except on an aux mount: its
        // only user acts as root, and the receiver sets ACLs as plain xattrs, which the kernel
        // would otherwise cache without seeing them change.
        let wanted = if self.opts.aux_gfid { wanted } else { wanted | InitFlags::FUSE_POSIX_ACL };
        for f in wanted.iter() {
            if c.add_capabilities(f).is_err() {
                log::info!("kernel lacks {f:?}");
            }
        }
        let _ = c.set_max_write(1 << 20);
        let _ = c.set_max_background(64);
        let _ = c.set_congestion_threshold(48);
        if self.opts.passthrough
            && c.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && c.set_max_stack_depth(1).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
            log::info!("kernel passthrough enabled");
        }
        if self.opts.uring && c.add_capabilities(InitFlags::FUSE_OVER_IO_URING).is_ok() {
            log::info!("FUSE over io_uring asked for");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = if self.opts.aux_gfid && parent.0 == GFID_DIR_INO {
            if name.to_str().and_then(|n| n.parse::<crate::types::Gfid>().ok()) == Some(crate::types::Gfid::ROOT) {
                return match self.root_alias_attr() {
                    Ok(a) => reply.entry(&self.opts.ttl, &a, GEN),
                    Err(e) => reply.error(e),
                };
            }
            // Never cached: whether a GFID exists is asked anew each time.
            return match self.lookup_gfid(name) {
                Ok((i, st)) => reply.entry_with_ttls(&self.opts.ttl, &Duration::ZERO, &to_attr(i.ino, &st), GEN),
                Err(e) => reply.error(e),
            };
        } else if self.opts.aux_gfid && parent.0 == ROOT_INO && name.as_bytes() == GFID_DIR.as_bytes() {
            return reply.entry(&self.opts.ttl, &self.gfid_dir_attr(), GEN);
        } else {
            self.inode(parent).and_then(|p| self.do_lookup(&p, name))
        };
        match r {
            Ok((i, st)) => reply.entry(&self.opts.ttl, &to_attr(i.ino, &st), GEN),
            // A negative entry the kernel may cache, as names appear only through this mount;
            // not on an aux mount, where `glusterfs.gfid.newfile` makes names behind its back.
            Err(e) if e == Errno::ENOENT && !self.opts.aux_gfid => reply.entry(&self.opts.ttl, &negative_attr(), GEN),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn batch_forget(&self, _req: &Request, nodes: &[fuser::ForgetOne]) {
        self.inodes.forget_many(nodes.iter().map(|n| (n.nodeid().0, n.nlookup())));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if self.opts.aux_gfid && ino.0 == GFID_DIR_INO {
            return reply.attr(&self.opts.ttl, &self.gfid_dir_attr());
        }
        if self.opts.aux_gfid && ino.0 == ROOT_ALIAS_INO {
            return match self.root_alias_attr() {
                Ok(a) => reply.attr(&self.opts.ttl, &a),
                Err(e) => reply.error(e),
            };
        }
        match self
            .inode(ino)
            .and_then(|i| super::sys::fstat(i.fd().map_err(errno)?.as_fd()).map(|st| (i, st)).map_err(errno))
        {
            Ok((i, st)) => reply.attr(&self.opts.ttl, &to_attr(i.ino, &st)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.inode(ino).and_then(|i| {
            self.do_setattr(self.gid(_req), &i, mode, uid, gid, size, atime, mtime, fh).map(|st| (i, st))
        });
        if r.is_ok() {
            self.touched(&[if size.is_some() { Touched::Data(ino.0) } else { Touched::Attr(ino.0) }]);
        }
        match r {
            Ok((i, st)) => reply.attr(&self.opts.ttl, &to_attr(i.ino, &st)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino).and_then(|i| super::sys::readlink_fd(i.fd().map_err(errno)?.as_fd()).map_err(errno)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        match self.inode(parent).and_then(|p| self.do_mknod(req, &p, name, mode, umask, rdev as u64)) {
            Ok((i, st)) => {
                self.touched(&[Touched::Entry(parent.0, name), Touched::Attr(parent.0)]);
                reply.entry(&self.opts.ttl, &to_attr(i.ino, &st), GEN)
            }
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.inode(parent).and_then(|p| self.do_mkdir(req, &p, name, mode, umask)) {
            Ok((i, st)) => {
                self.touched(&[Touched::Entry(parent.0, name), Touched::Attr(parent.0)]);
                reply.entry(&self.opts.ttl, &to_attr(i.ino, &st), GEN)
            }
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inode(parent).and_then(|p| self.do_remove(&p, name, false)) {
            Ok((gfid, victim)) => {
                self.touched(&[Touched::Entry(parent.0, name), Touched::Attr(parent.0), Touched::Gone(gfid, victim)]);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inode(parent).and_then(|p| self.do_remove(&p, name, true)) {
            Ok((gfid, victim)) => {
                self.touched(&[Touched::Entry(parent.0, name), Touched::Attr(parent.0), Touched::Gone(gfid, victim)]);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        match self.inode(parent).and_then(|p| self.do_symlink(req, &p, link_name, target)) {
            Ok((i, st)) => {
                self.touched(&[Touched::Entry(parent.0, link_name), Touched::Attr(parent.0)]);
                reply.entry(&self.opts.ttl, &to_attr(i.ino, &st), GEN)
            }
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self
            .inode(parent)
            .and_then(|p| self.inode(newparent).and_then(|np| self.do_rename(&p, name, &np, newname, flags.bits())));
        match r {
            Ok(replaced) => {
                self.touched(&[
                    Touched::Entry(parent.0, name),
                    Touched::Entry(newparent.0, newname),
                    Touched::Attr(parent.0),
                    Touched::Attr(newparent.0),
                    replaced.map_or(Touched::Nothing, |v| Touched::Gone(v.gfid, Some(v.ino))),
                ]);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.inode(ino).and_then(|i| self.inode(newparent).and_then(|np| self.do_link(&i, &np, newname))) {
            Ok((i, st)) => {
                self.touched(&[Touched::Entry(newparent.0, newname), Touched::Attr(newparent.0), Touched::Attr(ino.0)]);
                reply.entry(&self.opts.ttl, &to_attr(i.ino, &st), GEN)
            }
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self.inode(ino).and_then(|i| self.do_open(&i, flags.0));
        if r.is_ok() && flags.0 & libc::O_TRUNC != 0 {
            self.touched(&[Touched::Data(ino.0)]);
        }
        match r {
            Ok(opened) => self.reply_open(opened, reply),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(fh.0, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh.0, offset, data) {
            Ok(n) => {
                self.touched(&[Touched::Data(_ino.0)]);
                reply.written(n as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _lo: LockOwner, reply: ReplyEmpty) {
        // Only writers another mount knows get here (`open_flags`): at close (close-to-open, as
        // NFS), what the other mounts cached of the file is dropped.
        self.writer_closing(ino, fh);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // A writer another mount learned of while it was open had no FLUSH: at its release.
        self.writer_closing(_ino, fh);
        match self.do_release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.do_fsync(fh.0, datasync, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.inode(ino).and_then(|i| self.do_opendir(&i)) {
            Ok(fh) => reply.opened(FileHandle(fh), fuser::FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        self.do_readdir(fh.0, offset, reply);
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectoryPlus) {
        self.do_readdirplus(fh.0, offset, reply);
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.handles.remove(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.do_fsync(fh.0, datasync, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match super::sys::fstatvfs(self.brick.root_fd()) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        use crate::fs::newentry::{
            XATTR_APPLIED, XATTR_CLAIM, XATTR_FENCE, XATTR_LINK, XATTR_NEWFILE, XATTR_ORIGIN, XATTR_SET_XATTRS,
            XATTR_SYNC,
        };
        let special = [XATTR_ORIGIN, XATTR_APPLIED, XATTR_FENCE, XATTR_SYNC, XATTR_CLAIM];
        if special.iter().any(|s| name.as_bytes() == s.as_bytes()) {
            let r = if name.as_bytes() == XATTR_ORIGIN.as_bytes() {
                self.origin_request(req, value)
            } else if name.as_bytes() == XATTR_APPLIED.as_bytes() {
                self.applied_request(req, value)
            } else if name.as_bytes() == XATTR_SYNC.as_bytes() {
                self.sync_request(req, value)
            } else if name.as_bytes() == XATTR_CLAIM.as_bytes() {
                self.claim_request(req, value)
            } else {
                self.fence_request(req, value)
            };
            return match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            };
        }
        let r = if name.as_bytes() == XATTR_SET_XATTRS.as_bytes() {
            self.inode(ino).and_then(|i| self.set_xattrs_request(req, &i, value))
        } else if name.as_bytes() == XATTR_LINK.as_bytes() {
            self.inode(ino).and_then(|i| self.link_request(req, &i, value))
        } else if name.as_bytes() == XATTR_NEWFILE.as_bytes() {
            self.inode(ino).and_then(|i| match crate::fs::newentry::split_batch(value) {
                Some(parts) => parts.into_iter().try_for_each(|p| match p {
                    Ok(one) => self.new_entry(req, &i, one),
                    Err(e) => {
                        log::warn!("{e}");
                        Err(Errno::EINVAL)
                    }
                }),
                None => self.new_entry(req, &i, value),
            })
        } else {
            self.inode(ino).and_then(|i| self.do_setxattr(req, &i, name, value, flags))
        };
        if r.is_ok() {
            self.touched(&[Touched::Attr(ino.0)]);
        }
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let fence = format!("{}.", crate::fs::newentry::XATTR_FENCE);
        let r = match name.as_bytes().strip_prefix(crate::fs::listing::XATTR_LIST.as_bytes()) {
            Some(cookie) => self.inode(ino).and_then(|i| self.list_request(req, &i, cookie, size)),
            None => match name.as_bytes().strip_prefix(fence.as_bytes()) {
                Some(primary) => self.fence_of(req, primary, size),
                None => self.inode(ino).and_then(|i| self.do_getxattr(&i, name, size)),
            },
        };
        match r {
            Ok(xattr::Sized::Size(n)) => reply.size(n),
            Ok(xattr::Sized::Data(d)) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.inode(ino).and_then(|i| self.do_listxattr(req, &i, size)) {
            Ok(xattr::Sized::Size(n)) => reply.size(n),
            Ok(xattr::Sized::Data(d)) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inode(ino).and_then(|i| self.do_removexattr(&i, name)) {
            Ok(()) => {
                self.touched(&[Touched::Attr(ino.0)]);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // Not a terminal, nor anything else an ioctl asks of (every isatty() check comes here):
        // answered quietly, as a regular file on most filesystems answers.
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks access itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.inode(parent).and_then(|p| self.do_create(req, &p, name, mode, umask, flags)) {
            Ok(created) => {
                self.touched(&[Touched::Entry(parent.0, name), Touched::Attr(parent.0)]);
                self.reply_create(created, reply)
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.do_fallocate(fh.0, offset, length, mode) {
            Ok(()) => {
                self.touched(&[Touched::Data(_ino.0)]);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        match self.do_lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.do_copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len, flags.bits() as u32, reply);
    }
}
