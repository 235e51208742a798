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
//! again empty. It is kept only while the overlay records (nothing else needs it); otherwise
//! every call does nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

const CAP: usize = 1 << 20;

/// Keys: the directory's node id (native bytes) followed by the name.
type Map = HashMap<Box<[u8]>, u64, FxBuildHasher>;

pub struct Dentries {
    map: Mutex<Map>,
    enabled: bool,
}

fn key(parent: u64, name: &OsStr) -> Box<[u8]> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_ne_bytes());
    k.extend_from_slice(name.as_bytes());
    k.into_boxed_slice()
}

/// Calls `f` with the key of `name` in `parent`, built on the stack when it fits (any name
/// a Linux filesystem accepts does: NAME_MAX is 255), so that a lookup allocates nothing.
fn with_key<T>(parent: u64, name: &OsStr, f: impl FnOnce(&[u8]) -> T) -> T {
    let n = name.as_bytes();
    let mut buf = [0u8; 8 + 256];
    if n.len() > 256 {
        return f(&key(parent, name));
    }
    buf[..8].copy_from_slice(&parent.to_ne_bytes());
    buf[8..8 + n.len()].copy_from_slice(n);
    f(&buf[..8 + n.len()])
}

/// Sets what `name` names, or forgets it if unknown.
fn set(m: &mut Map, name: (u64, &OsStr), ino: Option<u64>) {
    match ino {
        Some(ino) => {
            m.insert(key(name.0, name.1), ino);
        }
        None => {
            with_key(name.0, name.1, |k| m.remove(k));
        }
    }
}

impl Dentries {
    /// A map that keeps names if `enabled`, else does nothing.
    pub fn new(enabled: bool) -> Dentries {
        Dentries { map: Mutex::new(Map::default()), enabled }
    }

    /// `name` in directory `parent` is the inode with node id `ino`.
    pub fn insert(&self, parent: u64, name: &OsStr, ino: u64) {
        if !self.enabled {
            return;
        }
        let mut m = self.map.lock();
        // A name seen again (lookups, listings) is updated in place, with no new key.
        if let Some(v) = with_key(parent, name, |k| m.get_mut(k)) {
            *v = ino;
            return;
        }
        if m.len() >= CAP {
            m.clear();
        }
        m.insert(key(parent, name), ino);
    }

    /// The node id `name` in `parent` was last seen naming.
    pub fn get(&self, parent: u64, name: &OsStr) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        with_key(parent, name, |k| self.map.lock().get(k).copied())
    }

    /// `name` in `parent` is gone.
    pub fn remove(&self, parent: u64, name: &OsStr) {
        if !self.enabled {
            return;
        }
        with_key(parent, name, |k| self.map.lock().remove(k));
    }

    /// `from` was renamed to `to` (replacing whatever `to` named): `to` names `ino` now, if
    /// known.
    pub fn rename(&self, from: (u64, &OsStr), to: (u64, &OsStr), ino: Option<u64>) {
        if !self.enabled {
            return;
        }
        let mut m = self.map.lock();
        set(&mut m, from, None);
        set(&mut m, to, ino);
    }

    /// `a` and `b` were exchanged (`RENAME_EXCHANGE`): each names the other's inode now, where
    /// known.
    pub fn exchange(&self, a: (u64, &OsStr), a_ino: Option<u64>, b: (u64, &OsStr), b_ino: Option<u64>) {
        if !self.enabled {
            return;
        }
        let mut m = self.map.lock();
        set(&mut m, a, b_ino);
        set(&mut m, b, a_ino);
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
        let d = Dentries::new(true);
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
        d.insert(1, &n("x"), 20);
        d.exchange((1, &n("x")), Some(20), (2, &n("y")), None);
        assert_eq!((d.get(1, &n("x")), d.get(2, &n("y"))), (None, Some(20)));
        let off = Dentries::new(false);
        off.insert(1, &n("a"), 10);
        assert_eq!(off.get(1, &n("a")), None);
    }
}
