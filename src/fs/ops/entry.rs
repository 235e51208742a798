//! Namespace operations: lookup, mknod, mkdir, symlink, link, unlink, rmdir, rename.
//!
//! New entries are made as root, then given the caller's uid and gid (the parent's gid under a
//! set-group-ID directory), a fresh GFID and a GFID-index record, and only then recorded: the
//! ENTRY record carries the final mode and owner.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fuser::{Errno, Request};

use super::{R, errno};
use crate::changelog::Op;
use crate::fs::OverlayFs;
use crate::fs::brick::{ensure_gfid_new, read_gfid};
use crate::fs::dentry::Named;
use crate::fs::inode::{Inode, ROOT_INO};
use crate::fs::sys;
use crate::types::{Gfid, XATTR_GFID};

/// Names that can never be created or looked up through the kernel.
fn bad_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.is_empty() || b == b"." || b == b".." || b.contains(&b'/')
}

impl OverlayFs {
    pub(super) fn do_lookup(&self, parent: &Arc<Inode>, name: &OsStr) -> R<(Arc<Inode>, libc::stat)> {
        let (inode, st) = self.lookup_brick(parent, name)?;
        self.seen(parent, name, &inode);
        Ok((inode, st))
    }

    /// Remembers that `name` in `parent` names `inode` (see `crate::fs::dentry`).
    fn seen(&self, parent: &Arc<Inode>, name: &OsStr, inode: &Arc<Inode>) {
        if !matches!(name.as_bytes(), b"." | b"..") {
            self.dentries.insert(parent.ino, name, Named { ino: inode.ino, gfid: inode.gfid });
        }
    }

    /// The brick's `stat` of `name` in the directory `dir`, and the inode it names if the table
    /// holds it open (the descriptor keeps its number from naming another inode).
    fn stat_at(&self, dir: std::os::fd::BorrowedFd<'_>, name: &OsStr) -> R<(libc::stat, Option<Arc<Inode>>)> {
        let st = sys::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        let known = if st.st_dev == self.inodes.dev { self.inodes.find_pinned(st.st_ino) } else { None };
        Ok((st, known))
    }

    fn lookup_brick(&self, parent: &Arc<Inode>, name: &OsStr) -> R<(Arc<Inode>, libc::stat)> {
        if name.as_bytes() == b".." && parent.ino == ROOT_INO {
            // Never above the brick.
            let st = sys::fstat(parent.fd().map_err(errno)?.as_fd()).map_err(errno)?;
            return Ok((parent.clone(), st));
        }
        if Self::hidden(parent.ino, name) {
            return Err(Errno::ENOENT);
        }
        let pfd = parent.fd().map_err(errno)?;
        // One stat answers for an inode the table holds (the common case: the kernel asks
        // again after its cache expired, readdirplus, a name it dropped).
        let (st, known) = self.stat_at(pfd.as_fd(), name)?;
        if let Some(i) = known {
            self.inodes.add_lookup(&i, parent.ino, self.id.bit());
            return Ok((i, st));
        }
        let fd = self.inodes.with_room(|| sys::open_path(pfd.as_fd(), name)).map_err(errno)?;
        let st = sys::fstat(fd.as_fd()).map_err(errno)?;
        if st.st_dev != self.inodes.dev {
            // Another filesystem mounted inside the brick is not part of it.
            return Err(Errno::EXDEV);
        }
        // The name may have changed meanwhile: the descriptor is the truth.
        let h = sys::name_to_handle(fd.as_fd()).map_err(errno)?;
        let (me, pgfid) = (self, parent.gfid);
        let inode = self
            .inodes
            .lookup_or_insert(&st, h, parent.ino, self.id.bit(), move || {
                if let Some(g) = read_gfid(fd.as_fd())? {
                    // An inode whose making failed between its GFID and the index (the disk
                    // full) is indexed when it is found, so that its GFID resolves again.
                    if me.brick.gfids.handle(&g).is_none() {
                        me.brick.gfids.add(g, fd.as_fd())?;
                    }
                    return Ok((fd, g));
                }
                // Without a GFID: being made through another mount (wait until it has one),
                // or made while nothing recorded (give it one, recorded as new).
                let _creating = me.creating(&pgfid, name);
                let (g, new) = ensure_gfid_new(fd.as_fd(), &me.brick.gfids)?;
                if new {
                    me.record_found(pgfid, name, fd.as_fd(), &st, g, me.origin())?;
                }
                Ok((fd, g))
            })
            .map_err(errno)?;
        Ok((inode, st))
    }

    /// Gives a just-created inode (made under `sys::CreateAs`, so its group is already right)
    /// the caller as owner and a GFID, and enters it in the table. `fd` is its O_PATH
    /// descriptor; `file`, if the creation opened it, takes the GFID directly (an O_PATH
    /// descriptor takes xattr calls only through its /proc path: a path walk).
    pub(super) fn adopt_new(
        &self,
        req: &Request,
        parent: &Arc<Inode>,
        fd: OwnedFd,
        file: Option<BorrowedFd<'_>>,
        mode: u32,
    ) -> R<(Arc<Inode>, libc::stat)> {
        if self.uid(req) != 0 {
            let setid = mode & (libc::S_ISUID | libc::S_ISGID) != 0
                && !matches!(mode & libc::S_IFMT, libc::S_IFDIR | libc::S_IFLNK);
            let st0 = if setid { Some(sys::fstat(fd.as_fd()).map_err(errno)?) } else { None };
            sys::fchown_fd(fd.as_fd(), Some(self.uid(req)), None).map_err(errno)?;
            if let Some(st0) = st0 {
                // chown cleared the set-id bits the caller asked for.
                sys::fchmod_fd(fd.as_fd(), st0.st_mode & 0o7777).map_err(errno)?;
            }
        }
        let gfid = Gfid::generate();
        sys::setxattr_fd(file.unwrap_or(fd.as_fd()), OsStr::new(XATTR_GFID), &gfid.0, libc::XATTR_CREATE)
            .map_err(errno)?;
        let h = sys::name_to_handle(fd.as_fd()).map_err(errno)?;
        self.brick.gfids.add_handle(gfid, &h).map_err(errno)?;
        let st = sys::fstat(fd.as_fd()).map_err(errno)?;
        let inode =
            self.inodes.lookup_or_insert(&st, h, parent.ino, self.id.bit(), move || Ok((fd, gfid))).map_err(errno)?;
        Ok((inode, st))
    }

    pub(super) fn check_new(&self, parent: &Arc<Inode>, name: &OsStr) -> R<()> {
        self.writable_new()?;
        if bad_name(name) {
            return Err(Errno::EINVAL);
        }
        if self.reserved(parent.ino, name) {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    /// Records a new entry and marks its directory changed.
    pub(super) fn record_new(
        &self,
        op: Op,
        parent: &Arc<Inode>,
        name: &OsStr,
        inode: &Arc<Inode>,
        st: &libc::stat,
        target: Option<&Path>,
    ) -> R<()> {
        self.seen(parent, name, inode);
        self.mark(parent);
        self.mark(inode);
        self.rec_entry(op, inode.gfid, Some(st), (parent.gfid, name), None, target)?;
        Ok(())
    }

    /// Makes a new entry with `make` (as the caller's group, under its umask), then adopts and
    /// records it.
    #[allow(clippy::too_many_arguments)]
    fn make_node(
        &self,
        req: &Request,
        parent: &Arc<Inode>,
        name: &OsStr,
        mode: u32,
        umask: u32,
        op: Op,
        target: Option<&Path>,
        make: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> std::io::Result<()>,
    ) -> R<(Arc<Inode>, libc::stat)> {
        self.check_new(parent, name)?;
        let pfd = parent.fd().map_err(errno)?;
        let creating = self.creating(&parent.gfid, name);
        {
            let _as_caller = sys::CreateAs::new(self.gid(req), umask).map_err(errno)?;
            make(pfd.as_fd()).map_err(errno)?;
        }
        let fd = self.inodes.with_room(|| sys::open_path(pfd.as_fd(), name)).map_err(errno)?;
        let (inode, st) = self.adopt_new(req, parent, fd, None, mode)?;
        drop(creating);
        self.record_new(op, parent, name, &inode, &st, target)?;
        Ok((inode, st))
    }

    pub(super) fn do_mknod(
        &self,
        req: &Request,
        parent: &Arc<Inode>,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u64,
    ) -> R<(Arc<Inode>, libc::stat)> {
        let op = if mode & libc::S_IFMT == libc::S_IFREG { Op::Create } else { Op::Mknod };
        self.make_node(req, parent, name, mode, umask, op, None, |d| sys::mknodat(d, name, mode, rdev))
    }

    pub(super) fn do_mkdir(
        &self,
        req: &Request,
        parent: &Arc<Inode>,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> R<(Arc<Inode>, libc::stat)> {
        self.make_node(req, parent, name, mode, umask, Op::Mkdir, None, |d| sys::mkdirat(d, name, mode))
    }

    pub(super) fn do_symlink(
        &self,
        req: &Request,
        parent: &Arc<Inode>,
        name: &OsStr,
        target: &Path,
    ) -> R<(Arc<Inode>, libc::stat)> {
        self.make_node(req, parent, name, 0, 0, Op::Symlink, Some(target), |d| {
            sys::symlinkat(target.as_os_str(), d, name)
        })
    }

    pub(super) fn do_link(
        &self,
        inode: &Arc<Inode>,
        newparent: &Arc<Inode>,
        newname: &OsStr,
    ) -> R<(Arc<Inode>, libc::stat)> {
        self.check_new(newparent, newname)?;
        sys::linkat_fd(inode.fd().map_err(errno)?.as_fd(), newparent.fd().map_err(errno)?.as_fd(), newname)
            .map_err(errno)?;
        let st = sys::fstat(inode.fd().map_err(errno)?.as_fd()).map_err(errno)?;
        // The reply counts as a lookup of the (already known) inode.
        self.inodes.add_lookup(inode, newparent.ino, self.id.bit());
        let inode = inode.clone();
        self.seen(newparent, newname, &inode);
        self.mark(newparent);
        self.mark(&inode);
        self.rec_entry(Op::Link, inode.gfid, Some(&st), (newparent.gfid, newname), None, None)?;
        Ok((inode, st))
    }

    /// The GFID of `name` in `parent`, and its inode when the table holds it: from memory for a
    /// name seen before, else one stat.
    fn gfid_at(&self, parent: &Arc<Inode>, name: &OsStr) -> R<(Gfid, Option<Arc<Inode>>)> {
        if let Some(n) = self.dentries.get(parent.ino, name) {
            return Ok((n.gfid, self.inodes.get(n.ino).filter(|i| i.gfid == n.gfid)));
        }
        let pfd = parent.fd().map_err(errno)?;
        if let (_, Some(i)) = self.stat_at(pfd.as_fd(), name)? {
            return Ok((i.gfid, Some(i)));
        }
        let fd = self.inodes.with_room(|| sys::open_path(pfd.as_fd(), name)).map_err(errno)?;
        Ok((read_gfid(fd.as_fd()).map_err(errno)?.unwrap_or(Gfid::NULL), None))
    }

    /// Removes `name`; returns the GFID it named and, if the names map knew it, its node id.
    pub(super) fn do_remove(&self, parent: &Arc<Inode>, name: &OsStr, dir: bool) -> R<(Gfid, Option<u64>)> {
        self.writable()?;
        if Self::hidden(parent.ino, name) {
            return Err(Errno::ENOENT);
        }
        if bad_name(name) {
            return Err(Errno::EINVAL);
        }
        // The GFID is needed only for the record. The name leaves the names map first (one
        // visit, which tells the GFID), and comes back if the brick refuses the removal.
        let known = self.dentries.remove(parent.ino, name);
        let gfid = match known {
            Some(n) => n.gfid,
            None if self.recorder.is_some() => self.gfid_at(parent, name)?.0,
            None => Gfid::NULL,
        };
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        if let Err(e) = parent.fd().and_then(|pfd| sys::unlinkat(pfd.as_fd(), name, flags)) {
            if let Some(n) = known {
                self.dentries.insert(parent.ino, name, n);
            }
            return Err(errno(e));
        }
        self.mark(parent);
        self.rec_entry(if dir { Op::Rmdir } else { Op::Unlink }, gfid, None, (parent.gfid, name), None, None)?;
        Ok((gfid, known.map(|n| n.ino)))
    }

    pub(super) fn do_rename(
        &self,
        p: &Arc<Inode>,
        name: &OsStr,
        np: &Arc<Inode>,
        newname: &OsStr,
        flags: u32,
    ) -> R<Option<Named>> {
        self.writable()?;
        if Self::hidden(p.ino, name) {
            return Err(Errno::ENOENT);
        }
        if self.reserved(np.ino, newname) {
            return Err(Errno::EPERM);
        }
        if bad_name(name) || bad_name(newname) {
            return Err(Errno::EINVAL);
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let (src, moved) = self.gfid_at(p, name)?;
        let dst = if exchange { Some(self.gfid_at(np, newname)?) } else { None };
        // What a plain rename replaces, when other kernels may cache it (from memory only).
        let replaced = if !exchange && (self.opts.aux_gfid || self.sessions.shared()) {
            self.dentries.get(np.ino, newname)
        } else {
            None
        };
        sys::renameat2(p.fd().map_err(errno)?.as_fd(), name, np.fd().map_err(errno)?.as_fd(), newname, flags)
            .map_err(errno)?;
        let named = |i: &Option<Arc<Inode>>| i.as_ref().map(|i| Named { ino: i.ino, gfid: i.gfid });
        match &dst {
            Some((_, d)) => self.dentries.exchange((p.ino, name), named(&moved), (np.ino, newname), named(d)),
            None => self.dentries.rename((p.ino, name), (np.ino, newname), named(&moved)),
        }
        // Marked before recorded (as everywhere): an xtime flush that comes between the two
        // then still covers the record (see `XtimeMarker::mark`).
        if let Some(m) = &moved {
            m.parent.store(np.ino, Ordering::Relaxed);
            self.mark(m);
        }
        if let Some((_, Some(m))) = &dst {
            m.parent.store(p.ino, Ordering::Relaxed);
            self.mark(m);
        }
        self.mark(p);
        self.mark(np);
        if let Some(rec) = &self.recorder {
            let r = match &dst {
                None => rec.rename(src, (p.gfid, name), (np.gfid, newname), self.origin()),
                Some((dst, _)) => rec.exchange(src, (p.gfid, name), *dst, (np.gfid, newname), self.origin()),
            };
            r.map_err(|_| Errno::EIO)?;
        }
        Ok(replaced)
    }
}
