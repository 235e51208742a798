//! One directory of a brick as `verify` compares it: each entry's name, GFID, type, mode,
//! owner, link count, size, times, symlink target and replicated xattrs, read straight from
//! the brick. The primary's verify reads its brick with it; a secondary's receiver asks its
//! aux-gfid mount for the same in one request per 60 KiB (`glusterfs.georep.list.<cookie>`
//! on a directory, `docs/aux-gfid-mount.md`), instead of several per entry.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::sys;
use crate::proto::ListEntry;
use crate::types::{Gfid, PRIVATE_DIR, XATTR_GFID};

/// The getxattr name prefix of the aux-gfid mount's listing request; the cookie follows in
/// decimal.
pub const XATTR_LIST: &str = "glusterfs.georep.list.";

/// What one listing request answers at most (a getxattr value is at most 64 KiB).
pub const ANSWER_MAX: usize = 60 << 10;

/// The entries of the directory `dir` from `cookie` on (0: the start), sorted by name, until
/// about `budget` bytes of encoded entries; and the cookie to go on from (0: the end). The
/// brick's private directory is left out when `root`.
pub fn list(dir: BorrowedFd<'_>, cookie: u64, budget: usize, root: bool) -> std::io::Result<(Vec<ListEntry>, u64)> {
    let mut stream = sys::DirStream::open(dir)?;
    if cookie != 0 {
        stream.seek(cookie);
    }
    let base = PathBuf::from(format!("/proc/self/fd/{}", stream.fd().as_raw_fd()));
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut next = 0u64;
    loop {
        let (name, after) = match stream.next_entry()? {
            None => {
                next = 0;
                break;
            }
            Some(e) => (e.name.to_os_string(), e.next_off),
        };
        if name.as_bytes() == b"." || name.as_bytes() == b".." || (root && name.as_bytes() == PRIVATE_DIR.as_bytes()) {
            next = after;
            continue;
        }
        let st = match sys::fstatat(stream.fd(), &name, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                next = after;
                continue;
            }
            Err(e) => return Err(e),
        };
        let e = entry(&base.join(&name), &name, &st)?;
        let len = crate::proto::entry_len(&e);
        if used + len > budget && !out.is_empty() {
            // `next` is where this entry began.
            break;
        }
        used += len;
        out.push(e);
        next = after;
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, next))
}

fn entry(path: &std::path::Path, name: &OsStr, st: &libc::stat) -> std::io::Result<ListEntry> {
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    // Path calls (lgetxattr, llistxattr): they do not follow a symlink.
    let gfid = xattr::get(path, XATTR_GFID)?.and_then(|v| Gfid::from_slice(&v)).unwrap_or(Gfid::NULL);
    let mut xattrs = Vec::new();
    if !is_link {
        for k in xattr::list(path)? {
            if crate::fs::newentry::replicated_xattr(k.as_bytes())
                && let Some(v) = xattr::get(path, &k)?
            {
                xattrs.push((k, v));
            }
        }
        xattrs.sort();
    }
    let target = if is_link { Some(std::fs::read_link(path)?.into_os_string()) } else { None };
    Ok(ListEntry {
        name: name.to_os_string(),
        gfid,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        nlink: st.st_nlink as u32,
        size: st.st_size as u64,
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        target,
        xattrs,
        hash: None,
    })
}

/// XXH3-128 of a regular file's content, read from `fd` (any open mode but O_PATH is reopened).
pub fn hash_file(fd: BorrowedFd<'_>) -> std::io::Result<u128> {
    use std::io::Read;
    // O_NOATIME is for the file's owner (or root) only.
    let f = sys::reopen(fd, libc::O_RDONLY | libc::O_NOATIME).or_else(|_| sys::reopen(fd, libc::O_RDONLY))?;
    let mut f = std::fs::File::from(f);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.digest128());
        }
        h.update(&buf[..n]);
    }
}
