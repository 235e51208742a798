//! setattr: mode, owner, size, times.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use fuser::{FileHandle, TimeOrNow};

use super::{R, errno};
use crate::changelog::Op;
use crate::fs::OverlayFs;
use crate::fs::handles::Handle;
use crate::fs::inode::Inode;
use crate::fs::sys;

fn timespec(t: TimeOrNow) -> libc::timespec {
    match t {
        TimeOrNow::Now => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 },
            Err(e) => {
                let d = e.duration();
                let (mut s, mut n) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i64));
                if n < 0 {
                    s -= 1;
                    n += 1_000_000_000;
                }
                libc::timespec { tv_sec: s, tv_nsec: n }
            }
        },
    }
}

impl OverlayFs {
    /// Clears set-user-ID, set-group-ID and file capabilities, as a
    /// local filesystem does when someone without CAP_FSETID writes to or truncates a file.
    fn kill_privs(&self, inode: &Arc<Inode>, caller_gid: u32) -> R<libc::stat> {
        let fd = inode.fd().map_err(errno)?;
        let st = sys::fstat(fd.as_fd()).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(st);
        }
        let mut mode = st.st_mode & 0o7777;
        mode &= !libc::S_ISUID;
        // As the kernel does: set-group-ID goes if group-executable, or if the writer is not in
        // the file's group (known here by its primary group only).
        if mode & libc::S_IXGRP != 0 || caller_gid != st.st_gid {
            mode &= !libc::S_ISGID;
        }
        let mut changed = false;
        if mode != st.st_mode & 0o7777 {
            sys::fchmod_fd(fd.as_fd(), mode).map_err(errno)?;
            changed = true;
        }
        match sys::removexattr_fd(fd.as_fd(), std::ffi::OsStr::new("security.capability")) {
            Ok(()) => changed = true,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(errno(e)),
        }
        if changed {
            self.rec_meta(Op::Setattr, inode)?;
        }
        sys::fstat(fd.as_fd()).map_err(errno)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_setattr(
        &self,
        caller_gid: u32,
        inode: &Arc<Inode>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> R<libc::stat> {
        self.writable()?;
        if (mode, uid, gid, size, &atime, &mtime) == (None, None, None, None, &None, &None) {
            // Under FUSE_HANDLE_KILLPRIV_V2 the kernel asks, with an otherwise empty SETATTR, to
            // drop privileges before an unprivileged write or truncate (kernel passthrough writes
            // never reach us, so this is the only moment we learn of them).
            return self.kill_privs(inode, caller_gid);
        }
        if uid.is_some() || gid.is_some() {
            sys::fchown_fd(inode.fd().map_err(errno)?.as_fd(), uid, gid).map_err(errno)?;
        }
        if let Some(m) = mode {
            sys::fchmod_fd(inode.fd().map_err(errno)?.as_fd(), m & 0o7777).map_err(errno)?;
        }
        if let Some(sz) = size {
            let h = fh.and_then(|f| self.handles.get(f.0));
            let r = match h.as_deref() {
                Some(Handle::File { file, writer: true, .. }) => file.set_len(sz),
                _ => {
                    let path = inode.fd().map_err(errno)?;
                    self.inodes
                        .with_room(|| sys::reopen(path.as_fd(), libc::O_WRONLY))
                        .map(File::from)
                        .and_then(|f| f.set_len(sz))
                }
            };
            r.map_err(errno)?;
            self.rec_data(Op::Truncate, inode)?;
        }
        if atime.is_some() || mtime.is_some() {
            sys::utimens_fd(inode.fd().map_err(errno)?.as_fd(), atime.map(timespec), mtime.map(timespec))
                .map_err(errno)?;
        }
        if mode.is_some() || uid.is_some() || gid.is_some() || atime.is_some() || mtime.is_some() {
            self.rec_meta(Op::Setattr, inode)?;
        }
        sys::fstat(inode.fd().map_err(errno)?.as_fd().as_fd()).map_err(errno)
    }
}
