//! Directory listing: opendir, readdir and readdirplus, hiding the brick's private directory.
//!
//! Offsets are the brick's own `telldir` cookies, so a listing resumes exactly where it
//! stopped even while the directory changes.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{Errno, FileType, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use parking_lot::Mutex;

use super::{GEN, R, errno, file_type, to_attr};
use crate::fs::OverlayFs;
use crate::fs::handles::Handle;
use crate::fs::inode::Inode;
use crate::fs::sys::{self, DirStream};

fn dtype(t: u8) -> Option<FileType> {
    Some(match t {
        libc::DT_DIR => FileType::Directory,
        libc::DT_REG => FileType::RegularFile,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        _ => return None,
    })
}

fn is_dot(name: &OsStr) -> bool {
    matches!(name.as_bytes(), b"." | b"..")
}

impl OverlayFs {
    pub(super) fn do_opendir(&self, inode: &Arc<Inode>) -> R<u64> {
        let stream = DirStream::open(inode.fd().map_err(errno)?.as_fd()).map_err(errno)?;
        Ok(self.handles.insert(Handle::Dir { stream: Mutex::new(stream), inode: inode.clone() }))
    }

    fn dir(&self, fh: u64) -> R<Arc<Handle>> {
        match self.handles.get(fh) {
            Some(h) if matches!(*h, Handle::Dir { .. }) => Ok(h),
            _ => Err(Errno::EBADF),
        }
    }

    pub(super) fn do_readdir(&self, fh: u64, offset: u64, mut reply: ReplyDirectory) {
        let h = match self.dir(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Handle::Dir { stream, inode } = &*h else { unreachable!() };
        let mut s = stream.lock();
        s.seek(offset);
        loop {
            let pos = s.tell();
            let e = match s.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return reply.error(errno(e)),
            };
            if Self::hidden(inode.ino, e.name) {
                continue;
            }
            let kind = match dtype(e.d_type) {
                Some(k) => k,
                None => match inode.fd().and_then(|f| sys::fstatat(f.as_fd(), e.name, libc::AT_SYMLINK_NOFOLLOW)) {
                    Ok(st) => file_type(st.st_mode),
                    Err(_) => FileType::RegularFile,
                },
            };
            let ino = self.inodes.display_ino(e.ino);
            let (next, name) = (e.next_off, e.name.to_os_string());
            if reply.add(INodeNo(ino), next, kind, &name) {
                s.seek(pos);
                break;
            }
        }
        reply.ok();
    }

    pub(super) fn do_readdirplus(&self, fh: u64, offset: u64, mut reply: ReplyDirectoryPlus) {
        let h = match self.dir(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Handle::Dir { stream, inode } = &*h else { unreachable!() };
        let mut s = stream.lock();
        s.seek(offset);
        loop {
            let pos = s.tell();
            let (name, next) = match s.next_entry() {
                Ok(Some(e)) => (e.name.to_os_string(), e.next_off),
                Ok(None) => break,
                Err(e) => return reply.error(errno(e)),
            };
            if Self::hidden(inode.ino, &name) {
                continue;
            }
            let full = if is_dot(&name) {
                // The kernel makes no dentry for dots, so they count no lookup.
                match inode.fd().and_then(|f| sys::fstat(f.as_fd())) {
                    Ok(st) => reply.add(INodeNo(inode.ino), next, &name, &self.opts.ttl, &to_attr(inode.ino, &st), GEN),
                    Err(e) => return reply.error(errno(e)),
                }
            } else {
                match self.do_lookup(inode, &name) {
                    Ok((child, st)) => {
                        let full =
                            reply.add(INodeNo(child.ino), next, &name, &self.opts.ttl, &to_attr(child.ino, &st), GEN);
                        if full {
                            self.inodes.forget(child.ino, 1);
                        }
                        full
                    }
                    // Gone meanwhile (or not ours): leave it out.
                    Err(e) => {
                        log::debug!("readdirplus: lookup of {name:?} failed: {e:?}");
                        false
                    }
                }
            };
            if full {
                s.seek(pos);
                break;
            }
        }
        reply.ok();
    }
}
