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
//! Pure: no I/O. Decoding validates everything and never panics.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::types::Gfid;

/// The setxattr key that creates an entry with a chosen GFID.
pub const XATTR_NEWFILE: &str = "glusterfs.gfid.newfile";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub gfid: Gfid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub name: OsString,
    pub target: Option<OsString>,
}

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
        b.push(1);
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
        b
    }

    pub fn decode(b: &[u8]) -> Result<NewEntry, NewEntryError> {
        if b.len() < 40 {
            return Err(NewEntryError::Length);
        }
        if b[0] != 1 || b[1] != 0 {
            return Err(NewEntryError::Version(b[0]));
        }
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
            if !rest.is_empty() {
                return Err(NewEntryError::Target);
            }
            None
        };
        Ok(NewEntry { gfid, mode, uid, gid, rdev, name: OsString::from_vec(name.to_vec()), target })
    }
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
}
