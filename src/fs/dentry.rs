//! Names the overlay has seen: (directory node id, name) → node id of the inode it names.
//!
//! An unlink or rename records the GFID of the inode it removes or moves, and FUSE names that
//! inode only by its directory and name. This map answers from memory what would otherwise
//! cost a path lookup in the brick per unlink or rename (a third of what recording adds to an
//! unlink).
//!
//! It is kept exact by the overlay's own operations, since every change to the brick goes
//! through the overlay: a name enters on lookup and creation, leaves on unlink and rmdir, and
//! moves on rename. A hit is trusted only while the table still holds the inode under that
//! node id; node ids are inode numbers (or never-reused ids above 2^63), and an inode's number
//! cannot name another inode before the inode itself is removed, which removes its names here
//! first. A miss costs what it did before. The map is bounded: past `CAP` names it starts
//! again empty.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use parking_lot::Mutex;

const CAP: usize = 1 << 20;

#[derive(Default)]
pub struct Dentries {
    map: Mutex<HashMap<Box<[u8]>, u64>>,
}

fn key(parent: u64, name: &OsStr) -> Box<[u8]> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_ne_bytes());
    k.extend_from_slice(name.as_bytes());
    k.into_boxed_slice()
}

impl Dentries {
    /// `name` in directory `parent` is the inode with node id `ino`.
    pub fn insert(&self, parent: u64, name: &OsStr, ino: u64) {
        let mut m = self.map.lock();
        if m.len() >= CAP {
            m.clear();
        }
        m.insert(key(parent, name), ino);
    }

    /// The node id `name` in `parent` was last seen naming.
    pub fn get(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.map.lock().get(&key(parent, name)).copied()
    }

    /// `name` in `parent` is gone.
    pub fn remove(&self, parent: u64, name: &OsStr) {
        self.map.lock().remove(&key(parent, name));
    }

    /// `from` was renamed to `to` (replacing whatever `to` named): `to` names `ino` now, if
    /// known.
    pub fn rename(&self, from: (u64, &OsStr), to: (u64, &OsStr), ino: Option<u64>) {
        let mut m = self.map.lock();
        m.remove(&key(from.0, from.1));
        match ino {
            Some(ino) => m.insert(key(to.0, to.1), ino),
            None => m.remove(&key(to.0, to.1)),
        };
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_unlink_and_rename() {
        let d = Dentries::default();
        let n = |s: &str| OsStr::new(s).to_owned();
        d.insert(1, &n("a"), 10);
        d.insert(1, &n("b"), 11);
        d.insert(2, &n("a"), 12);
        assert_eq!(d.get(1, &n("a")), Some(10));
        assert_eq!(d.get(2, &n("a")), Some(12));
        d.rename((1, &n("a")), (1, &n("b")), Some(10));
        assert_eq!((d.get(1, &n("a")), d.get(1, &n("b"))), (None, Some(10)));
        d.rename((1, &n("b")), (2, &n("c")), None);
        assert_eq!((d.get(1, &n("b")), d.get(2, &n("c"))), (None, None));
        d.remove(2, &n("a"));
        assert!(d.is_empty());
    }
}
