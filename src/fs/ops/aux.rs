//! The `.gfid/` namespace of an `aux-gfid-mount`, as GlusterFS's gfid-access translator
//! serves it: `.gfid/<gfid>` is the inode with that GFID, `.gfid/<pargfid>/<name>` a name in
//! the directory with that GFID, and a `glusterfs.gfid.newfile` setxattr on `.gfid/<pargfid>`
//! creates an entry with a chosen GFID, owner and exact mode (`fs::newentry`). `.gfid` itself
//! is root's only, cannot be listed, and nothing can be created in it.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, Request};

use super::{R, Touched, errno};
use crate::changelog::Op;
use crate::fs::OverlayFs;
use crate::fs::brick::read_gfid;
use crate::fs::inode::{GFID_DIR_INO, Inode, ROOT_ALIAS_INO, ROOT_INO};
use crate::fs::newentry::{NewEntry, replicated_xattr};
use crate::fs::sys;
use crate::types::{Gfid, XATTR_GFID};
use std::os::unix::ffi::OsStrExt;

impl OverlayFs {
    pub(super) fn gfid_dir_attr(&self) -> FileAttr {
        super::synthetic_attr(GFID_DIR_INO, FileType::Directory, 0o500, 2)
    }

    /// The entry of `.gfid/<root gfid>`, an alias node of the root directory.
    pub(super) fn root_alias_attr(&self) -> R<FileAttr> {
        let root = self.inodes.get(ROOT_INO).ok_or(Errno::ESTALE)?;
        let st = sys::fstat(root.fd().map_err(errno)?.as_fd()).map_err(errno)?;
        Ok(super::to_attr(ROOT_ALIAS_INO, &st))
    }

    /// `.gfid/<gfid>`: the inode with that GFID, through the GFID index.
    pub(super) fn lookup_gfid(&self, name: &OsStr) -> R<(Arc<Inode>, libc::stat)> {
        let gfid: Gfid = name.to_str().and_then(|s| s.parse().ok()).ok_or(Errno::ENOENT)?;
        if gfid == Gfid::ROOT {
            return Err(Errno::EISDIR);
        }
        let h = self.brick.gfids.handle(&gfid).ok_or(Errno::ENOENT)?;
        if let Some(i) = self.inodes.find(&h) {
            let st = sys::fstat(i.fd().map_err(errno)?.as_fd()).map_err(errno)?;
            if st.st_nlink == 0 {
                // Removed, though the kernel still holds it open.
                return Err(Errno::ENOENT);
            }
            self.inodes.add_lookup(&i, i.parent.load(std::sync::atomic::Ordering::Relaxed), self.id.bit());
            return Ok((i, st));
        }
        let fd = self.open_indexed(&h, &gfid)?;
        let st = sys::fstat(fd.as_fd()).map_err(errno)?;
        if st.st_nlink == 0 {
            // Removed; something (an open file) still keeps it.
            return Err(Errno::ENOENT);
        }
        // Its directory is unknown here; xtime marks of changes made through this path stop at it.
        let inode =
            self.inodes.lookup_or_insert(&st, h, ROOT_INO, self.id.bit(), move || Ok((fd, gfid))).map_err(errno)?;
        Ok((inode, st))
    }

    /// The inode the GFID index gives for `gfid` (handle `h`), opened O_PATH; `ENOENT` if it
    /// is gone. The index may name a deleted inode whose handle was reused: the xattr decides.
    fn open_indexed(&self, h: &sys::FileHandle, gfid: &Gfid) -> R<std::os::fd::OwnedFd> {
        let fd = match self.inodes.open_handle(h) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESTALE) => return Err(Errno::ENOENT),
            Err(e) => return Err(errno(e)),
        };
        if read_gfid(fd.as_fd()).map_err(errno)? != Some(*gfid) {
            return Err(Errno::ENOENT);
        }
        Ok(fd)
    }

    /// True if an inode with `gfid` exists in the brick: indexed, and still linked (an inode
    /// removed while something holds it open can still be opened by its handle).
    fn gfid_exists(&self, gfid: &Gfid) -> bool {
        let Some(h) = self.brick.gfids.handle(gfid) else { return false };
        self.open_indexed(&h, gfid).ok().and_then(|fd| sys::fstat(fd.as_fd()).ok()).is_some_and(|st| st.st_nlink > 0)
    }

    /// The aux requests are root's (or the `user-map-root` user's), on an aux mount only.
    fn privileged(&self, req: &Request) -> R<()> {
        if !self.opts.aux_gfid || self.uid(req) != 0 { Err(Errno::EPERM) } else { Ok(()) }
    }

    /// `setxattr(<any inode>, glusterfs.georep.origin, <volume id>)`: the changes this mount
    /// makes from now on were first made on that volume (16 bytes); recorded so, so that no
    /// session sends them back there.
    pub(super) fn origin_request(&self, req: &Request, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        let v: [u8; 16] = value.try_into().map_err(|_| Errno::EINVAL)?;
        self.set_origin(crate::types::VolumeId(v));
        Ok(())
    }

    /// `setxattr(<any inode>, glusterfs.georep.applied, <volume id><stime>)`: that primary's
    /// changes are applied here up to the stime (`fs::role::note_applied`).
    pub(super) fn applied_request(&self, req: &Request, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        if value.len() != 24 {
            return Err(Errno::EINVAL);
        }
        let v = crate::types::VolumeId(value[..16].try_into().map_err(|_| Errno::EINVAL)?);
        let ms = u64::from_le_bytes(value[16..].try_into().map_err(|_| Errno::EINVAL)?);
        crate::fs::role::note_applied(&self.brick.layout.applied_file(), v, ms).map_err(errno)
    }

    /// `setxattr(<any inode>, glusterfs.georep.sync, [<gfid>...])`: what the mount changed
    /// made durable on the brick: the inodes named (regular files and directories; one gone
    /// meanwhile needs nothing), or with none named the brick's whole filesystem (`syncfs`).
    pub(super) fn sync_request(&self, req: &Request, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        if value.is_empty() {
            let root = sys::reopen(self.brick.root_fd(), libc::O_RDONLY | libc::O_DIRECTORY).map_err(errno)?;
            // SAFETY: plain syncfs(2) on an open descriptor.
            return match unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)) } {
                0 => Ok(()),
                _ => Err(errno(std::io::Error::last_os_error())),
            };
        }
        if !value.len().is_multiple_of(16) || value.len() > 16 * crate::fs::newentry::SYNC_MAX {
            return Err(Errno::EINVAL);
        }
        for g in value.chunks_exact(16) {
            let gfid = Gfid::from_slice(g).ok_or(Errno::EINVAL)?;
            let fd = if gfid == Gfid::ROOT {
                sys::reopen(self.brick.root_fd(), libc::O_RDONLY | libc::O_DIRECTORY).map_err(errno)?
            } else {
                let Some(h) = self.brick.gfids.handle(&gfid) else { continue };
                let Ok(path) = self.open_indexed(&h, &gfid) else { continue };
                let st = sys::fstat(path.as_fd()).map_err(errno)?;
                if !matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR) {
                    continue;
                }
                sys::reopen(path.as_fd(), libc::O_RDONLY | libc::O_NONBLOCK).map_err(errno)?
            };
            // SAFETY: plain fsync(2) on an open descriptor.
            if unsafe { libc::fsync(std::os::fd::AsRawFd::as_raw_fd(&fd)) } != 0 {
                return Err(errno(std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// `setxattr(root, glusterfs.georep.fence, <primary volume id><token>)`: a receiver's
    /// fencing token, kept if it is the highest of that primary's.
    pub(super) fn fence_request(&self, req: &Request, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        if value.len() != 24 {
            return Err(Errno::EINVAL);
        }
        let v = crate::types::VolumeId(value[..16].try_into().map_err(|_| Errno::EINVAL)?);
        let token = u64::from_le_bytes(value[16..].try_into().map_err(|_| Errno::EINVAL)?);
        crate::fs::role::note_fence(&self.brick.layout.fences_file(), v, token).map(drop).map_err(errno)
    }

    /// `setxattr(<any inode>, glusterfs.georep.claim, <primary volume id><op>[<leader pid>])`:
    /// the calling receiver registers, takes the volume, or joins its leader (`fs::claims`).
    /// A stale receiver is refused with ESTALE; displaced ones that do not end, EBUSY.
    pub(super) fn claim_request(&self, req: &Request, value: &[u8]) -> R<()> {
        use crate::fs::claims::Refused;
        use crate::fs::newentry::{CLAIM_JOIN, CLAIM_REGISTER, CLAIM_TAKE};
        self.privileged(req)?;
        if value.len() < 17 {
            return Err(Errno::EINVAL);
        }
        let v = crate::types::VolumeId(value[..16].try_into().map_err(|_| Errno::EINVAL)?);
        let pid = req.pid() as i32;
        let r = match (value[16], &value[17..]) {
            (CLAIM_REGISTER, []) => self.claims.register(v, pid),
            (CLAIM_TAKE, []) => self.claims.take(v, pid),
            (CLAIM_JOIN, leader) => {
                let leader = u32::from_le_bytes(leader.try_into().map_err(|_| Errno::EINVAL)?);
                self.claims.join(v, pid, leader as i32)
            }
            _ => return Err(Errno::EINVAL),
        };
        r.map_err(|e| match e {
            Refused::Superseded => Errno::ESTALE,
            Refused::Unknown => Errno::ENOENT,
            Refused::Stuck => Errno::EBUSY,
            Refused::Gone => Errno::ESRCH,
        })
    }

    /// `getxattr(root, glusterfs.georep.fence.<primary volume id>)`: the highest token seen.
    pub(super) fn fence_of(&self, req: &Request, primary: &[u8], size: u32) -> R<super::xattr::Sized> {
        self.privileged(req)?;
        let v: crate::types::VolumeId =
            std::str::from_utf8(primary).ok().and_then(|p| p.parse().ok()).ok_or(Errno::EINVAL)?;
        let highest = crate::fs::role::load_fences(&self.brick.layout.fences_file()).get(&v).copied().unwrap_or(0);
        super::xattr::sized(highest.to_le_bytes().to_vec(), size)
    }

    /// `getxattr(.gfid/<dir>, glusterfs.georep.list.<cookie>[.sum])`: the directory's entries
    /// from the cookie on as `verify` compares them (`fs::listing`), with the cookie to go on
    /// from; with `.sum`, small files' content hashes.
    pub(super) fn list_request(
        &self,
        req: &Request,
        inode: &Arc<Inode>,
        cookie: &[u8],
        size: u32,
    ) -> R<super::xattr::Sized> {
        self.privileged(req)?;
        if !inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let (cookie, sums) = match cookie.strip_suffix(b".sum") {
            Some(c) => (c, true),
            None => (cookie, false),
        };
        let cookie: u64 = std::str::from_utf8(cookie).ok().and_then(|c| c.parse().ok()).ok_or(Errno::EINVAL)?;
        let fd = inode.fd().map_err(errno)?;
        // Fewer entries when they do not fit one answer (big xattrs).
        let mut want = crate::fs::listing::Want::request(inode.gfid == Gfid::ROOT, sums);
        loop {
            let (entries, next) = crate::fs::listing::list(fd.as_fd(), cookie, want).map_err(errno)?;
            let v = crate::proto::encode_entries(&entries, next);
            if v.len() <= crate::fs::listing::ANSWER_MAX {
                return super::xattr::sized(v, size);
            }
            if want.count == 1 {
                return Err(Errno::E2BIG);
            }
            want.count = (want.count / 4).max(1);
        }
    }

    /// `setxattr(<inode>, glusterfs.georep.xattrs, list)`: the inode's replicated xattrs become
    /// exactly the list (the others removed, the differing ones set), as root.
    pub(super) fn set_xattrs_request(&self, req: &Request, inode: &Arc<Inode>, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        self.writable()?;
        let want = crate::fs::newentry::decode_xattrs_request(value).map_err(|err| {
            log::warn!("{err}");
            Errno::EINVAL
        })?;
        let fd = inode.fd().map_err(errno)?;
        let mut changed = false;
        for old in sys::list_xattrs(fd.as_fd()).map_err(errno)? {
            if replicated_xattr(old.as_bytes()) && !want.iter().any(|(k, _)| *k == old) {
                sys::removexattr_fd(fd.as_fd(), &old).map_err(errno)?;
                changed = true;
            }
        }
        for (k, v) in &want {
            if sys::getxattr_vec(fd.as_fd(), k).map_err(errno)?.as_deref() != Some(v.as_slice()) {
                sys::setxattr_fd(fd.as_fd(), k, v, 0).map_err(errno)?;
                changed = true;
            }
        }
        if changed { self.rec_meta(Op::Setxattr, inode) } else { Ok(()) }
    }

    /// `setxattr(.gfid/<pargfid>, glusterfs.georep.link, <gfid><name>)`: a hard link to the
    /// inode with that GFID, made as root (the kernel's `fs.protected_hardlinks` would refuse
    /// an unprivileged caller a link to a file it does not own).
    pub(super) fn link_request(&self, req: &Request, parent: &Arc<Inode>, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        if !parent.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let (gfid, name) = crate::fs::newentry::decode_link_request(value).map_err(|err| {
            log::warn!("{err}");
            Errno::EINVAL
        })?;
        self.check_new(parent, name)?;
        let h = self.brick.gfids.handle(&gfid).ok_or(Errno::ENOENT)?;
        let fd = self.open_indexed(&h, &gfid)?;
        if sys::fstat(fd.as_fd()).map_err(errno)?.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(Errno::EPERM);
        }
        sys::linkat_fd(fd.as_fd(), parent.fd().map_err(errno)?.as_fd(), name).map_err(errno)?;
        let st = sys::fstat(fd.as_fd()).map_err(errno)?;
        self.mark(parent);
        self.rec_entry(Op::Link, gfid, Some(&st), (parent.gfid, name), None, None)?;
        let linked = self.inodes.find(&h).map_or(Touched::Nothing, |i| Touched::Attr(i.ino));
        self.touched(&[Touched::Entry(parent.ino, name), linked]);
        Ok(())
    }

    /// `setxattr(.gfid/<pargfid>, glusterfs.gfid.newfile, request)`: creates the entry.
    pub(super) fn new_entry(&self, req: &Request, parent: &Arc<Inode>, value: &[u8]) -> R<()> {
        self.privileged(req)?;
        if !parent.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let e = NewEntry::decode(value).map_err(|err| {
            log::warn!("{err}");
            Errno::EINVAL
        })?;
        self.check_new(parent, &e.name)?;
        if self.gfid_exists(&e.gfid) {
            return Err(Errno::EEXIST);
        }
        let pfd = parent.fd().map_err(errno)?;
        let ifmt = e.mode & libc::S_IFMT;
        if let Some(c) = &e.content
            && c.xattrs.iter().any(|(k, _)| super::xattr::protected(k.as_bytes()))
        {
            return Err(Errno::EPERM);
        }
        let creating = self.creating(&parent.gfid, &e.name);
        // The exact mode (no umask); the owner is set just after, group included.
        sys::set_thread_umask(0).map_err(errno)?;
        let fd = {
            if e.content.is_some() {
                // A whole file: created open for writing (only root can see it until it is done).
                let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
                sys::openat(pfd.as_fd(), &e.name, flags, e.mode & 0o7777).map_err(errno)?
            } else {
                let made = match ifmt {
                    libc::S_IFDIR => sys::mkdirat(pfd.as_fd(), &e.name, e.mode & 0o7777),
                    libc::S_IFLNK => sys::symlinkat(e.target.as_deref().unwrap_or_default(), pfd.as_fd(), &e.name),
                    _ => sys::mknodat(pfd.as_fd(), &e.name, e.mode, e.rdev),
                };
                made.map_err(errno)?;
                sys::open_path(pfd.as_fd(), &e.name).map_err(errno)?
            }
        };
        // From here the entry is made whole or not at all: a step that fails (the disk full,
        // say) takes the name away again, so that a retry makes it anew rather than finding a
        // name without its content or its GFID in the index.
        let made = self.finish_new_entry(parent, &e, &fd, creating);
        if made.is_err() {
            let st = sys::fstat(fd.as_fd());
            let now = sys::fstatat(pfd.as_fd(), &e.name, libc::AT_SYMLINK_NOFOLLOW);
            if let (Ok(a), Ok(b)) = (st, now)
                && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            {
                let flags = if ifmt == libc::S_IFDIR { libc::AT_REMOVEDIR } else { 0 };
                if let Err(err) = sys::unlinkat(pfd.as_fd(), &e.name, flags) {
                    log::warn!("a new entry {} that failed half-made could not be removed: {err}", e.gfid);
                }
            }
        }
        made
    }

    /// The rest of `new_entry` once the name is made (`fd`): owner, mode, GFID, content, the
    /// index and the record.
    fn finish_new_entry<G>(&self, parent: &Arc<Inode>, e: &NewEntry, fd: &std::os::fd::OwnedFd, creating: G) -> R<()> {
        let ifmt = e.mode & libc::S_IFMT;
        sys::fchown_fd(fd.as_fd(), Some(e.uid), Some(e.gid)).map_err(errno)?;
        // A regular file has its exact mode from its creation, unless it has set-id bits (which
        // the chown cleared); a directory may have inherited set-group-ID from its parent.
        if ifmt != libc::S_IFLNK && !(ifmt == libc::S_IFREG && e.mode & 0o6000 == 0) {
            sys::fchmod_fd(fd.as_fd(), e.mode & 0o7777).map_err(errno)?;
        }
        sys::setxattr_fd(fd.as_fd(), OsStr::new(XATTR_GFID), &e.gfid.0, libc::XATTR_CREATE).map_err(errno)?;
        drop(creating);
        if let Some(c) = &e.content {
            // `fd` was opened for writing.
            sys::write_all(fd.as_fd(), &c.data).map_err(errno)?;
            for (k, v) in &c.xattrs {
                sys::setxattr_fd(fd.as_fd(), k, v, 0).map_err(errno)?;
            }
            let ts = |ns: i64| libc::timespec {
                tv_sec: ns.div_euclid(1_000_000_000),
                tv_nsec: ns.rem_euclid(1_000_000_000),
            };
            sys::utimens_fd(fd.as_fd(), Some(ts(c.atime_ns)), Some(ts(c.mtime_ns))).map_err(errno)?;
        }
        let h = sys::name_to_handle(fd.as_fd()).map_err(errno)?;
        self.brick.gfids.add_handle(e.gfid, &h).map_err(errno)?;
        let st = sys::fstat(fd.as_fd()).map_err(errno)?;
        let op = match ifmt {
            libc::S_IFREG => Op::Create,
            libc::S_IFDIR => Op::Mkdir,
            libc::S_IFLNK => Op::Symlink,
            _ => Op::Mknod,
        };
        let target = e.target.as_deref().map(std::path::Path::new);
        self.mark(parent);
        match &self.recorder {
            // A whole file: what a cascaded session must send on is its content and metadata
            // too, recorded with its creation in one write.
            Some(rec) if e.content.is_some() => {
                let detail = Self::entry_detail(Some(&st), (parent.gfid, &e.name), None, None);
                rec.whole_file(op, e.gfid, detail, self.origin()).map_err(|err| {
                    log::error!("changelog: {err}");
                    Errno::EIO
                })?
            }
            _ => self.rec_entry(op, e.gfid, Some(&st), (parent.gfid, &e.name), None, target)?,
        }
        self.touched(&[Touched::Entry(parent.ino, &e.name)]);
        Ok(())
    }
}
