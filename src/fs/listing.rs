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
/// decimal, then `.sum` to have small files' content hashed too (`Want::sums`).
pub const XATTR_LIST: &str = "glusterfs.georep.list.";

/// What a listing includes.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    /// About this many bytes of encoded entries at most.
    pub budget: usize,
    /// The directory is the brick's root (its private directory is left out).
    pub root: bool,
    /// Hash the content of regular files up to this size (0: none) ...
    pub hash_max: u64,
    /// ... and of this many bytes of them in all; the listing stops there.
    pub hash_budget: u64,
}

impl Want {
    /// What the aux-gfid mount's request answers: 60 KiB of entries; with `sums`, the
    /// content hashes of files up to 1 MiB, 16 MiB of them at most (a request must not hold
    /// its thread long; bigger files are hashed by the caller through the mount).
    pub fn request(root: bool, sums: bool) -> Want {
        Want { budget: ANSWER_MAX, root, hash_max: if sums { 1 << 20 } else { 0 }, hash_budget: 16 << 20 }
    }
}

/// What one listing request answers at most (a getxattr value is at most 64 KiB).
pub const ANSWER_MAX: usize = 60 << 10;

/// The entries of the directory `dir` from `cookie` on (0: the start), sorted by name, until
/// about `budget` bytes of encoded entries; and the cookie to go on from (0: the end). The
/// brick's private directory is left out when `root`.
pub fn list(dir: BorrowedFd<'_>, cookie: u64, want: Want) -> std::io::Result<(Vec<ListEntry>, u64)> {
    let mut stream = sys::DirStream::open(dir)?;
    if cookie != 0 {
        stream.seek(cookie);
    }
    let base = PathBuf::from(format!("/proc/self/fd/{}", stream.fd().as_raw_fd()));
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut hashed = 0u64;
    let mut next = 0u64;
    loop {
        let (name, after) = match stream.next_entry()? {
            None => {
                next = 0;
                break;
            }
            Some(e) => (e.name.to_os_string(), e.next_off),
        };
        if name.as_bytes() == b"."
            || name.as_bytes() == b".."
            || (want.root && name.as_bytes() == PRIVATE_DIR.as_bytes())
        {
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
        let mut e = entry(&base.join(&name), &name, &st)?;
        let len = crate::proto::entry_len(&e);
        let file = st.st_mode & libc::S_IFMT == libc::S_IFREG && (st.st_size as u64) <= want.hash_max;
        if (used + len > want.budget || (file && hashed > want.hash_budget)) && !out.is_empty() {
            // `next` is where this entry began.
            break;
        }
        if file {
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOATIME;
            e.hash = sys::openat(stream.fd(), &name, flags, 0).and_then(|f| hash_open(&std::fs::File::from(f))).ok();
            hashed += st.st_size as u64;
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

/// XXH3-128 of the content of a file open for reading.
pub fn hash_open(f: &std::fs::File) -> std::io::Result<u128> {
    use std::io::Read;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 << 10]);
    }
    BUF.with_borrow_mut(|buf| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut f = f;
        loop {
            let n = f.read(buf)?;
            if n == 0 {
                return Ok(h.digest128());
            }
            h.update(&buf[..n]);
        }
    })
}
