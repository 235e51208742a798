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
        let path = inode.fd().map_err(errno)?;
        let stream = self.inodes.with_room(|| DirStream::open(path.as_fd())).map_err(errno)?;
        Ok(self.handles.insert(Handle::Dir { stream: Mutex::new(stream), inode: inode.clone() }))
    }

    fn dir(&self, fh: u64) -> R<Arc<Handle>> {
        match self.handles.get(fh) {
            Some(h) if matches!(*h, Handle::Dir { .. }) => Ok(h),
            _ => Err(Errno::EBADF),
        }
    }

    /// Walks the directory of handle `fh` from `offset`, calling `emit` for each entry users
    /// may see; `emit` returns true when the reply is full, and that entry is read again next
    /// time.
    fn list(&self, fh: u64, offset: u64, mut emit: impl FnMut(&Arc<Inode>, &OsStr, u64, u8, u64) -> R<bool>) -> R<()> {
        let h = self.dir(fh)?;
        let Handle::Dir { stream, inode } = &*h else { unreachable!() };
        let mut s = stream.lock();
        s.seek(offset);
        loop {
            let pos = s.tell();
            let (name, next, d_type, ino) = match s.next_entry().map_err(errno)? {
                Some(e) => (e.name.to_os_string(), e.next_off, e.d_type, e.ino),
                None => return Ok(()),
            };
            if Self::hidden(inode.ino, &name) {
                continue;
            }
            if emit(inode, &name, next, d_type, ino)? {
                s.seek(pos);
                return Ok(());
            }
        }
    }

    pub(super) fn do_readdir(&self, fh: u64, offset: u64, mut reply: ReplyDirectory) {
        let r = self.list(fh, offset, |dir, name, next, d_type, ino| {
            let kind = match dtype(d_type) {
                Some(k) => k,
                None => match dir.fd().and_then(|f| sys::fstatat(f.as_fd(), name, libc::AT_SYMLINK_NOFOLLOW)) {
                    Ok(st) => file_type(st.st_mode),
                    Err(_) => FileType::RegularFile,
                },
            };
            Ok(reply.add(INodeNo(self.inodes.display_ino(ino)), next, kind, name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub(super) fn do_readdirplus(&self, fh: u64, offset: u64, mut reply: ReplyDirectoryPlus) {
        let r = self.list(fh, offset, |dir, name, next, _, _| {
            if is_dot(name) {
                // The kernel makes no dentry for dots, so they count no lookup.
                let st = dir.fd().and_then(|f| sys::fstat(f.as_fd())).map_err(errno)?;
                return Ok(reply.add(INodeNo(dir.ino), next, name, &self.opts.ttl, &to_attr(dir.ino, &st), GEN));
            }
            match self.do_lookup(dir, name) {
                Ok((child, st)) => {
                    let full = reply.add(INodeNo(child.ino), next, name, &self.opts.ttl, &to_attr(child.ino, &st), GEN);
                    if full {
                        self.inodes.forget(child.ino, 1);
                    }
                    Ok(full)
                }
                // Gone meanwhile (or not ours): leave it out.
                Err(e) => {
                    log::debug!("readdirplus: lookup of {name:?} failed: {e:?}");
                    Ok(false)
                }
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
