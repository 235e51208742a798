//! Extended attributes, passed through to the brick, except georep's own: `trusted.gfid` can
//! be read (and `glusterfs.gfid.string` gives it as text, as on a GlusterFS aux mount) but
//! never changed, and `trusted.georep.*` is neither listed, read nor changed.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{Errno, Request};

use super::{R, errno};
use crate::changelog::Op;
use crate::fs::OverlayFs;
use crate::fs::inode::Inode;
use crate::fs::sys;
use crate::types::{XATTR_GFID, XATTR_PRIVATE_PREFIX};

/// The virtual xattr giving an inode's GFID as its canonical string.
pub const XATTR_GFID_STRING: &str = "glusterfs.gfid.string";
/// The virtual xattr, on the root only, giving the volume's UUID.
pub const XATTR_VOLUME_ID: &str = "georep.volume-id";
/// The virtual xattr, on a directory, giving where it is: `<pgfid>/<name>`.
pub const XATTR_ENTRY: &str = "georep.entry";

pub(crate) enum Sized {
    Size(u32),
    Data(Vec<u8>),
}

pub(super) fn sized(v: Vec<u8>, size: u32) -> R<Sized> {
    if size == 0 {
        Ok(Sized::Size(v.len() as u32))
    } else if v.len() > size as usize {
        Err(Errno::ERANGE)
    } else {
        Ok(Sized::Data(v))
    }
}

fn private(name: &[u8]) -> bool {
    name.starts_with(XATTR_PRIVATE_PREFIX.as_bytes())
}

pub(super) fn protected(name: &[u8]) -> bool {
    private(name)
        || name == XATTR_GFID.as_bytes()
        || name == XATTR_GFID_STRING.as_bytes()
        || name == XATTR_VOLUME_ID.as_bytes()
}

impl OverlayFs {
    /// `<pgfid>/<name>` of a directory (a directory has one parent and one name).
    fn dir_entry(&self, inode: &Arc<Inode>) -> R<Vec<u8>> {
        use std::os::fd::AsFd;
        if !inode.is_dir() || inode.gfid == crate::types::Gfid::ROOT {
            return Err(Errno::NO_XATTR);
        }
        let fd = inode.fd().map_err(errno)?;
        let me = sys::fstat(fd.as_fd()).map_err(errno)?;
        let parent = sys::openat(fd.as_fd(), OsStr::new(".."), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(errno)?;
        let pgfid = crate::fs::brick::read_gfid(parent.as_fd()).map_err(errno)?.ok_or(Errno::NO_XATTR)?;
        let mut ds = sys::DirStream::open(parent.as_fd()).map_err(errno)?;
        while let Some(e) = ds.next_entry().map_err(errno)? {
            if e.ino == me.st_ino && e.name.as_bytes() != b"." && e.name.as_bytes() != b".." {
                let mut v = format!("{pgfid}/").into_bytes();
                v.extend_from_slice(e.name.as_bytes());
                return Ok(v);
            }
        }
        Err(Errno::NO_XATTR)
    }

    pub(super) fn do_getxattr(&self, inode: &Arc<Inode>, name: &OsStr, size: u32) -> R<Sized> {
        let n = name.as_bytes();
        if n == XATTR_GFID_STRING.as_bytes() {
            return sized(inode.gfid.to_string().into_bytes(), size);
        }
        if n == XATTR_VOLUME_ID.as_bytes() && inode.ino == crate::fs::inode::ROOT_INO {
            return sized(self.brick.volume.to_string().into_bytes(), size);
        }
        if n == XATTR_ENTRY.as_bytes() {
            return sized(self.dir_entry(inode)?, size);
        }
        if private(n) {
            // The xtime mark, answered from the brick's mark file.
            if let Some(x) = &self.xtime
                && n == crate::types::xtime_xattr(&self.brick.volume).as_bytes()
            {
                return match x.get(&inode.gfid) {
                    Some(us) => sized(crate::fs::xtime::encode_xtime(us).to_vec(), size),
                    None => Err(Errno::NO_XATTR),
                };
            }
            return Err(Errno::NO_XATTR);
        }
        match sys::getxattr_vec(inode.fd().map_err(errno)?.as_fd(), name).map_err(errno)? {
            Some(v) => sized(v, size),
            None => Err(Errno::NO_XATTR),
        }
    }

    pub(super) fn do_listxattr(&self, req: &Request, inode: &Arc<Inode>, size: u32) -> R<Sized> {
        let names = sys::list_xattrs(inode.fd().map_err(errno)?.as_fd()).map_err(errno)?;
        let mut out = Vec::new();
        for name in names.iter().map(|n| n.as_bytes()) {
            if private(name) || name == XATTR_GFID.as_bytes() {
                continue;
            }
            // As local filesystems do, trusted.* is listed to privileged callers only.
            if self.uid(req) != 0 && name.starts_with(b"trusted.") {
                continue;
            }
            out.extend_from_slice(name);
            out.push(0);
        }
        sized(out, size)
    }

    pub(super) fn do_setxattr(
        &self,
        _req: &Request,
        inode: &Arc<Inode>,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> R<()> {
        self.writable()?;
        if protected(name.as_bytes()) {
            return Err(Errno::EPERM);
        }
        sys::setxattr_fd(inode.fd().map_err(errno)?.as_fd(), name, value, flags).map_err(errno)?;
        self.rec_meta(Op::Setxattr, inode)
    }

    pub(super) fn do_removexattr(&self, inode: &Arc<Inode>, name: &OsStr) -> R<()> {
        self.writable()?;
        if protected(name.as_bytes()) {
            return Err(Errno::EPERM);
        }
        sys::removexattr_fd(inode.fd().map_err(errno)?.as_fd(), name).map_err(errno)?;
        self.rec_meta(Op::Removexattr, inode)
    }
}
