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
    /// Entries read at most (from the cookie on, in the directory's order).
    pub count: usize,
    /// The directory is the brick's root (its private directory is left out).
    pub root: bool,
    /// Hash the content of regular files up to this size (0: none) ...
    pub hash_max: u64,
    /// ... and of this many bytes of them in all; the files after that have no hash.
    pub hash_budget: u64,
}

impl Want {
    /// What the aux-gfid mount's request answers: a few hundred entries (within
    /// `ANSWER_MAX`); with `sums`, the content hashes of files up to 1 MiB, 16 MiB of them at
    /// most (a request must not hold its thread long; the caller hashes the rest through the
    /// mount).
    pub fn request(root: bool, sums: bool) -> Want {
        Want { count: 400, root, hash_max: if sums { 1 << 20 } else { 0 }, hash_budget: 16 << 20 }
    }
}

/// What one listing request answers at most (a getxattr value is at most 64 KiB).
pub const ANSWER_MAX: usize = 60 << 10;

/// Up to `want.count` entries of the directory `dir` from `cookie` on (0: the start), sorted
/// by name; and the cookie to go on from (0: the end). The entries are read in inode order,
/// not the directory's (on ext4, its hash order): the inodes and blocks of files made one
/// after another lie one after another, and a cold listing reads them so.
pub fn list(dir: BorrowedFd<'_>, cookie: u64, want: Want) -> std::io::Result<(Vec<ListEntry>, u64)> {
    let mut stream = sys::DirStream::open(dir)?;
    if cookie != 0 {
        stream.seek(cookie);
    }
    let mut names: Vec<(u64, std::ffi::OsString)> = Vec::new();
    let mut next = 0u64;
    while names.len() < want.count {
        let Some(e) = stream.next_entry()? else {
            next = 0;
            break;
        };
        next = e.next_off;
        let n = e.name.as_bytes();
        if n == b"." || n == b".." || (want.root && n == PRIVATE_DIR.as_bytes()) {
            continue;
        }
        names.push((e.ino, e.name.to_os_string()));
    }
    if names.len() == want.count && stream.next_entry()?.is_none() {
        next = 0;
    }
    names.sort_unstable_by_key(|(ino, _)| *ino);
    let base = PathBuf::from(format!("/proc/self/fd/{}", stream.fd().as_raw_fd()));
    let mut out = Vec::with_capacity(names.len());
    let mut hashed = 0u64;
    for (_, name) in names {
        let st = match sys::fstatat(stream.fd(), &name, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let mut e = entry(&base.join(&name), &name, &st)?;
        let size = st.st_size as u64;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && size <= want.hash_max && hashed + size <= want.hash_budget {
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOATIME;
            e.hash = sys::openat(stream.fd(), &name, flags, 0).and_then(|f| hash_open(&std::fs::File::from(f))).ok();
            hashed += size;
        }
        out.push(e);
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
