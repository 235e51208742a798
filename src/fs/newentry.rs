//! The request to create an entry with a chosen GFID on an `aux-gfid-mount`: the value of the
//! `glusterfs.gfid.newfile` setxattr on `.gfid/<pargfid>` (GlusterFS's key; georep's own
//! layout, little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, `1` |
//! | 1 | 1 | reserved, `0` |
//! | 2 | 2 | name length `n` (1-255) |
//! | 4 | 16 | GFID of the new entry |
//! | 20 | 4 | `st_mode`: the file type and all permission bits, applied exactly (no umask) |
//! | 24 | 4 | uid |
//! | 28 | 4 | gid |
//! | 32 | 8 | rdev (devices) |
//! | 40 | n | name (no `/`, no NUL, not `.` or `..`) |
//! | 40+n | 2 | target length `t` (1-4095), symlinks only |
//! | 42+n | t | symlink target (no NUL) |
//!
//! Version `2` is for a regular file created whole, and adds after the name:
//!
//! | size | field |
//! |---|---|
//! | 8 | atime, ns since the epoch (i64) |
//! | 8 | mtime, ns |
//! | 4 | content length `c` |
//! | c | content |
//! | 2 | xattr count `k`, then `k` times: name length (1), name, value length (2), value |
//!
//! The whole request fits one setxattr value (64 KiB), so only small files go this way.
//!
//! A *batch* (first byte `3`) carries several requests for the same parent directory:
//! `3`, `0`, then per request its length (4 bytes) and the request. They are carried out in
//! order; the first that fails ends the batch with its error (the ones before it stay made).
//!
//! Two more requests serve a receiver that is not root (`user-map-root`), for what the kernel
//! would refuse it whatever the filesystem says, and carry it out as root:
//!
//! - `glusterfs.georep.xattrs` on any inode: `1`, `0`, then an xattr list as above; the inode's
//!   replicated xattrs (user, trusted, security, POSIX ACLs) become exactly that list;
//! - `glusterfs.georep.link` on `.gfid/<pargfid>`: the GFID of an inode (16 bytes), then a new
//!   name for it in that directory (a hard link, which `fs.protected_hardlinks` refuses to a
//!   user for a file it does not own).
//!
//! And one says where what the mount changes next comes from (records carry it, and no
//! session sends a change back to the volume it was first made on):
//!
//! - `glusterfs.georep.origin` on any inode of the mount: a volume id (16 bytes).
//!
//! And one says how far the volume has applied a primary's changes (a failover's promotion
//! point):
//!
//! - `glusterfs.georep.applied` on any inode of the mount: the primary's volume id (16 bytes),
//!   then its stime (u64 little-endian, ms).
//!
//! And one makes what the mount changed durable on the brick (FUSE hands no `syncfs` to its
//! server, so a `syncfs` of the mount would make nothing durable):
//!
//! - `glusterfs.georep.sync` on any inode of the mount: nothing (the brick's whole filesystem,
//!   `syncfs`), or up to `SYNC_MAX` GFIDs (16 bytes each): those inodes (`fsync`).
//!
//! Pure: no I/O. Decoding validates everything and never panics.

/// The newest request layout (a whole file); the oldest still read is `MIN_VERSION` (an
/// entry alone).
pub const VERSION: u16 = 2;
pub const MIN_VERSION: u16 = 1;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::types::Gfid;

/// The setxattr key that creates an entry with a chosen GFID.
pub const XATTR_NEWFILE: &str = "glusterfs.gfid.newfile";
/// The setxattr key, on any inode, that makes its replicated xattrs exactly the given list.
pub const XATTR_SET_XATTRS: &str = "glusterfs.georep.xattrs";
/// The setxattr key, on `.gfid/<pargfid>`, that links an inode (by GFID) under a new name.
pub const XATTR_LINK: &str = "glusterfs.georep.link";
/// The volume where the changes an aux-gfid mount makes next were first made (16 bytes).
pub const XATTR_ORIGIN: &str = "glusterfs.georep.origin";
/// A primary's changes are applied up to a time: its volume id (16 bytes), then the stime
/// (u64 little-endian, ms by the primary's clock).
pub const XATTR_APPLIED: &str = "glusterfs.georep.applied";
/// Makes changes durable on the brick: the inodes with the GFIDs given, or all of them.
pub const XATTR_SYNC: &str = "glusterfs.georep.sync";
/// Most GFIDs one `XATTR_SYNC` request names.
pub const SYNC_MAX: usize = 64;
/// A receiver's fencing token: set with the primary volume id (16 bytes) and the token (u64
/// little-endian), recorded if it is the highest yet; read as `glusterfs.georep.fence.<primary
/// volume id>`: the highest (u64 little-endian).
pub const XATTR_FENCE: &str = "glusterfs.georep.fence";
/// A receiver's claim on the volume for a primary (`fs::claims`): the primary volume id (16
/// bytes), then `CLAIM_REGISTER`, `CLAIM_TAKE`, or `CLAIM_JOIN` and the leading receiver's pid
/// (u32 little-endian). The calling process is the claimant.
pub const XATTR_CLAIM: &str = "glusterfs.georep.claim";
pub const CLAIM_REGISTER: u8 = 0;
pub const CLAIM_TAKE: u8 = 1;
pub const CLAIM_JOIN: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub gfid: Gfid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub name: OsString,
    pub target: Option<OsString>,
    /// A regular file's content, times and xattrs, set before the entry is visible to anyone
    /// but root.
    pub content: Option<Content>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub data: Vec<u8>,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Packs requests (encoded) into one batch request.
pub fn encode_batch<'a>(requests: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut b = vec![3, 0];
    for r in requests {
        b.extend_from_slice(&(r.len() as u32).to_le_bytes());
        b.extend_from_slice(r);
    }
    b
}

/// The requests of a batch, or `None` if `b` is not one; a malformed batch yields an error
/// where it breaks.
pub fn split_batch(b: &[u8]) -> Option<impl Iterator<Item = Result<&[u8], NewEntryError>>> {
    if b.len() < 2 || b[0] != 3 || b[1] != 0 {
        return None;
    }
    let mut rest = &b[2..];
    Some(std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 4 {
            rest = &[];
            return Some(Err(NewEntryError::Length));
        }
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        match rest.get(4..4 + n) {
            Some(r) => {
                rest = &rest[4 + n..];
                Some(Ok(r))
            }
            None => {
                rest = &[];
                Some(Err(NewEntryError::Length))
            }
        }
    }))
}

/// The largest setxattr value the kernel passes.
pub const MAX_REQUEST: usize = 65536;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NewEntryError {
    #[error("newfile request: unsupported version {0}")]
    Version(u8),
    #[error("newfile request: length does not match its fields")]
    Length,
    #[error("newfile request: invalid name")]
    Name,
    #[error("newfile request: invalid gfid")]
    Gfid,
    #[error("newfile request: invalid file type in mode {0:o}")]
    Type(u32),
    #[error("newfile request: a symlink needs a target, and only a symlink has one")]
    Target,
    #[error("newfile request: invalid content (regular files only; xattr names 1-255 bytes)")]
    Content,
}

fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.len() <= 255 && n != b"." && n != b".." && !n.contains(&b'/') && !n.contains(&0)
}

impl NewEntry {
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    pub fn encode(&self) -> Vec<u8> {
        let name = self.name.as_bytes();
        let mut b = Vec::with_capacity(44 + name.len());
        b.push(if self.content.is_some() { 2 } else { 1 });
        b.push(0);
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.gfid.0);
        b.extend_from_slice(&self.mode.to_le_bytes());
        b.extend_from_slice(&self.uid.to_le_bytes());
        b.extend_from_slice(&self.gid.to_le_bytes());
        b.extend_from_slice(&self.rdev.to_le_bytes());
        b.extend_from_slice(name);
        if let Some(t) = &self.target {
            b.extend_from_slice(&(t.len() as u16).to_le_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        if let Some(c) = &self.content {
            b.extend_from_slice(&c.atime_ns.to_le_bytes());
            b.extend_from_slice(&c.mtime_ns.to_le_bytes());
            b.extend_from_slice(&(c.data.len() as u32).to_le_bytes());
            b.extend_from_slice(&c.data);
            encode_xattrs(&mut b, &c.xattrs);
        }
        b
    }

    /// The encoded size, without encoding.
    pub fn encoded_len(&self) -> usize {
        let mut n = 40 + self.name.len() + self.target.as_ref().map_or(0, |t| 2 + t.len());
        if let Some(c) = &self.content {
            n += 22 + c.data.len() + c.xattrs.iter().map(|(k, v)| 3 + k.len() + v.len()).sum::<usize>();
        }
        n
    }

    pub fn decode(b: &[u8]) -> Result<NewEntry, NewEntryError> {
        if b.len() < 40 {
            return Err(NewEntryError::Length);
        }
        if !(MIN_VERSION as u8..=VERSION as u8).contains(&b[0]) || b[1] != 0 {
            return Err(NewEntryError::Version(b[0]));
        }
        let whole = b[0] == 2;
        let n = u16::from_le_bytes([b[2], b[3]]) as usize;
        let gfid = Gfid::from_slice(&b[4..20]).unwrap();
        if gfid.is_null() || gfid == Gfid::ROOT {
            return Err(NewEntryError::Gfid);
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let mode = u32_at(20);
        let (uid, gid) = (u32_at(24), u32_at(28));
        let rdev = u64::from_le_bytes(b[32..40].try_into().unwrap());
        let name = b.get(40..40 + n).ok_or(NewEntryError::Length)?;
        if !valid_name(name) {
            return Err(NewEntryError::Name);
        }
        let ifmt = mode & libc::S_IFMT;
        if !matches!(
            ifmt,
            libc::S_IFREG
                | libc::S_IFDIR
                | libc::S_IFLNK
                | libc::S_IFCHR
                | libc::S_IFBLK
                | libc::S_IFIFO
                | libc::S_IFSOCK
        ) || mode & !(libc::S_IFMT | 0o7777) != 0
        {
            return Err(NewEntryError::Type(mode));
        }
        let rest = &b[40 + n..];
        let target = if ifmt == libc::S_IFLNK {
            if rest.len() < 2 {
                return Err(NewEntryError::Target);
            }
            let t = u16::from_le_bytes([rest[0], rest[1]]) as usize;
            let target = rest.get(2..2 + t).ok_or(NewEntryError::Length)?;
            if target.is_empty() || target.len() >= 4096 || target.contains(&0) {
                return Err(NewEntryError::Target);
            }
            if rest.len() != 2 + t {
                return Err(NewEntryError::Length);
            }
            Some(OsStr::from_bytes(target).to_os_string())
        } else {
            if !rest.is_empty() && !whole {
                return Err(NewEntryError::Target);
            }
            None
        };
        let content = if whole {
            if ifmt != libc::S_IFREG {
                return Err(NewEntryError::Content);
            }
            Some(decode_content(rest)?)
        } else {
            None
        };
        Ok(NewEntry { gfid, mode, uid, gid, rdev, name: OsString::from_vec(name.to_vec()), target, content })
    }
}

fn decode_content(b: &[u8]) -> Result<Content, NewEntryError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], NewEntryError> {
        let s = b.get(at..at.checked_add(n).ok_or(NewEntryError::Length)?).ok_or(NewEntryError::Length)?;
        at += n;
        Ok(s)
    };
    let atime_ns = i64::from_le_bytes(take(8)?.try_into().unwrap());
    let mtime_ns = i64::from_le_bytes(take(8)?.try_into().unwrap());
    let c = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
    let data = take(c)?.to_vec();
    let xattrs = decode_xattrs(&b[at..])?;
    Ok(Content { atime_ns, mtime_ns, data, xattrs })
}

fn encode_xattrs(b: &mut Vec<u8>, xattrs: &[(OsString, Vec<u8>)]) {
    b.extend_from_slice(&(xattrs.len() as u16).to_le_bytes());
    for (k, v) in xattrs {
        b.push(k.len() as u8);
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(&(v.len() as u16).to_le_bytes());
        b.extend_from_slice(v);
    }
}

/// A count (2 bytes), then per xattr: name length (1), name, value length (2), value; nothing
/// after.
fn decode_xattrs(b: &[u8]) -> Result<Vec<(OsString, Vec<u8>)>, NewEntryError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], NewEntryError> {
        let s = b.get(at..at.checked_add(n).ok_or(NewEntryError::Length)?).ok_or(NewEntryError::Length)?;
        at += n;
        Ok(s)
    };
    let k = u16::from_le_bytes(take(2)?.try_into().unwrap()) as usize;
    let mut xattrs = Vec::with_capacity(k.min(256));
    for _ in 0..k {
        let n = take(1)?[0] as usize;
        let name = take(n)?;
        if name.is_empty() || name.contains(&0) {
            return Err(NewEntryError::Content);
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let v = u16::from_le_bytes(take(2)?.try_into().unwrap()) as usize;
        xattrs.push((name, take(v)?.to_vec()));
    }
    if at != b.len() {
        return Err(NewEntryError::Length);
    }
    Ok(xattrs)
}

/// xattr namespaces replicated (and so managed) on the secondary: everything but georep's own
/// marks and the GFID.
pub fn replicated_xattr(name: &[u8]) -> bool {
    (name.starts_with(b"user.")
        || name.starts_with(b"security.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
        || name.starts_with(b"trusted."))
        && !name.starts_with(crate::types::XATTR_PRIVATE_PREFIX.as_bytes())
        && name != crate::types::XATTR_GFID.as_bytes()
}

/// The xattrs request: `1`, `0`, then the xattr list as in a whole file. Every name must be a
/// replicated one.
pub fn encode_xattrs_request(xattrs: &[(OsString, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![1, 0];
    encode_xattrs(&mut b, xattrs);
    b
}

pub fn decode_xattrs_request(b: &[u8]) -> Result<Vec<(OsString, Vec<u8>)>, NewEntryError> {
    match b {
        [1, 0, rest @ ..] => {
            let xs = decode_xattrs(rest)?;
            if xs.iter().any(|(k, _)| !replicated_xattr(k.as_bytes())) {
                return Err(NewEntryError::Content);
            }
            Ok(xs)
        }
        [v, ..] => Err(NewEntryError::Version(*v)),
        [] => Err(NewEntryError::Length),
    }
}

/// The link request: the GFID of the inode to link (16 bytes), then the new name.
pub fn encode_link_request(gfid: &Gfid, name: &OsStr) -> Vec<u8> {
    let mut b = gfid.0.to_vec();
    b.extend_from_slice(name.as_bytes());
    b
}

pub fn decode_link_request(b: &[u8]) -> Result<(Gfid, &OsStr), NewEntryError> {
    if b.len() < 17 {
        return Err(NewEntryError::Length);
    }
    let gfid = Gfid::from_slice(&b[..16]).unwrap();
    if gfid.is_null() || gfid == Gfid::ROOT {
        return Err(NewEntryError::Gfid);
    }
    if !valid_name(&b[16..]) {
        return Err(NewEntryError::Name);
    }
    Ok((gfid, OsStr::from_bytes(&b[16..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewEntry {
        NewEntry {
            gfid: Gfid::generate(),
            mode: libc::S_IFLNK | 0o777,
            uid: 1000,
            gid: 1000,
            rdev: 0,
            name: "link".into(),
            target: Some("../t".into()),
            content: None,
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let e = sample();
        assert_eq!(NewEntry::decode(&e.encode()).unwrap(), e);
        let f = NewEntry { mode: libc::S_IFREG | 0o4644, target: None, name: "f".into(), ..e.clone() };
        assert_eq!(NewEntry::decode(&f.encode()).unwrap(), f);
        for bad_name in ["", ".", "..", "a/b"] {
            let x = NewEntry { name: bad_name.into(), ..f.clone() };
            assert_eq!(NewEntry::decode(&x.encode()), Err(NewEntryError::Name), "{bad_name:?}");
        }
        let x = NewEntry { gfid: Gfid::ROOT, ..f.clone() };
        assert_eq!(NewEntry::decode(&x.encode()), Err(NewEntryError::Gfid));
        let x = NewEntry { target: None, ..e.clone() };
        assert_eq!(NewEntry::decode(&x.encode()), Err(NewEntryError::Target));
        let x = NewEntry { target: Some("t".into()), ..f.clone() };
        assert_eq!(NewEntry::decode(&x.encode()), Err(NewEntryError::Target));
        let x = NewEntry { mode: 0o644, ..f.clone() };
        assert!(matches!(NewEntry::decode(&x.encode()), Err(NewEntryError::Type(_))));
        let mut b = f.encode();
        b.push(0);
        assert_eq!(NewEntry::decode(&b), Err(NewEntryError::Target));
        for cut in 0..f.encode().len() {
            assert!(NewEntry::decode(&f.encode()[..cut]).is_err());
        }
    }

    #[test]
    fn xattrs_and_link_requests() {
        let xs = vec![("user.a".into(), b"1".to_vec()), ("trusted.t".into(), vec![0; 300])];
        let b = encode_xattrs_request(&xs);
        assert_eq!(decode_xattrs_request(&b).unwrap(), xs);
        assert_eq!(decode_xattrs_request(&encode_xattrs_request(&[])).unwrap(), vec![]);
        for cut in 0..b.len() {
            assert!(decode_xattrs_request(&b[..cut]).is_err(), "{cut}");
        }
        // georep's own marks and the GFID are never set this way.
        for own in ["trusted.gfid", "trusted.georep.x", "glusterfs.gfid.string", "other.x"] {
            let b = encode_xattrs_request(&[(own.into(), vec![1])]);
            assert_eq!(decode_xattrs_request(&b), Err(NewEntryError::Content), "{own}");
        }
        let g = Gfid::generate();
        let b = encode_link_request(&g, OsStr::new("n"));
        assert_eq!(decode_link_request(&b).unwrap(), (g, OsStr::new("n")));
        for bad in ["", ".", "..", "a/b"] {
            let b = encode_link_request(&g, OsStr::new(bad));
            assert!(decode_link_request(&b).is_err(), "{bad:?}");
        }
        assert_eq!(decode_link_request(&encode_link_request(&Gfid::ROOT, OsStr::new("n"))), Err(NewEntryError::Gfid));
    }

    #[test]
    fn batches() {
        let (a, b) = (sample().encode(), sample().encode());
        let batch = encode_batch([a.as_slice(), b.as_slice()]);
        let parts: Vec<_> = split_batch(&batch).unwrap().collect();
        assert_eq!(parts, vec![Ok(a.as_slice()), Ok(b.as_slice())]);
        assert!(split_batch(&a).is_none());
        let cut = &batch[..batch.len() - 1];
        let parts: Vec<_> = split_batch(cut).unwrap().collect();
        assert_eq!(parts, vec![Ok(a.as_slice()), Err(NewEntryError::Length)]);
    }

    #[test]
    fn whole_files() {
        let f = NewEntry {
            mode: libc::S_IFREG | 0o640,
            target: None,
            name: "f".into(),
            content: Some(Content {
                atime_ns: 1,
                mtime_ns: -2,
                data: b"hello".to_vec(),
                xattrs: vec![("user.a".into(), b"1".to_vec()), ("security.x".into(), vec![])],
            }),
            ..sample()
        };
        let b = f.encode();
        assert_eq!(b.len(), f.encoded_len());
        assert_eq!(NewEntry::decode(&b).unwrap(), f);
        for cut in 0..b.len() {
            assert!(NewEntry::decode(&b[..cut]).is_err(), "{cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(NewEntry::decode(&long), Err(NewEntryError::Length));
        let d = NewEntry { mode: libc::S_IFDIR | 0o755, ..f.clone() };
        assert_eq!(NewEntry::decode(&d.encode()), Err(NewEntryError::Content));
    }
}
