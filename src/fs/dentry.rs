//! Names the overlay has seen: (directory node id, name) → the node id and GFID of the inode
//! it names.
//!
//! An unlink or rename records the GFID of the inode it removes or moves, and FUSE names that
//! inode only by its directory and name. This map answers from memory what would otherwise
//! cost a path lookup in the brick per unlink or rename (a third of what recording adds to an
//! unlink), and without a visit to the inode table.
//!
//! It is kept exact by the overlay's own operations, since every change to the brick goes
//! through the overlay: a name enters on lookup and creation, leaves on unlink and rmdir, and
//! moves on rename. A GFID never changes while its inode has a name, so a hit gives the right
//! GFID; the node id is a hint, used only if the table still holds an inode with that id and
//! GFID. A miss costs what it did before. The map is bounded: past `CAP` names it starts
//! again empty. It is kept only while the overlay records (nothing else needs it); otherwise
//! every call does nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

use crate::types::Gfid;

const CAP: usize = 1 << 20;

/// The inode a name names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named {
    pub ino: u64,
    pub gfid: Gfid,
}

/// Keys: 128-bit hashes of names (XXH3-128 of the name, seeded with the directory's node id),
/// not the names: entries are small and inline, with no key to allocate or compare. Two names
/// would have to collide in 128 bits to be mistaken for each other, as unlikely as two random
/// GFIDs colliding, which GFIDs (GlusterFS's as georep's) rely on never happening.
type Map = HashMap<u128, Named, FxBuildHasher>;

fn key(parent: u64, name: &OsStr) -> u128 {
    xxhash_rust::xxh3::xxh3_128_with_seed(name.as_bytes(), parent)
}

pub struct Dentries {
    map: Mutex<Map>,
    enabled: bool,
}

/// Sets what `name` names, or forgets it if unknown.
fn set(m: &mut Map, name: (u64, &OsStr), named: Option<Named>) {
    match named {
        Some(n) => m.insert(key(name.0, name.1), n),
        None => m.remove(&key(name.0, name.1)),
    };
}

impl Dentries {
    /// A map that keeps names if `enabled`, else does nothing.
    pub fn new(enabled: bool) -> Dentries {
        Dentries { map: Mutex::new(Map::default()), enabled }
    }

    /// `name` in directory `parent` names `named`.
    pub fn insert(&self, parent: u64, name: &OsStr, named: Named) {
        if !self.enabled {
            return;
        }
        let k = key(parent, name);
        let mut m = self.map.lock();
        if m.len() >= CAP && !m.contains_key(&k) {
            m.clear();
        }
        m.insert(k, named);
    }

    /// What `name` in `parent` names, if known.
    pub fn get(&self, parent: u64, name: &OsStr) -> Option<Named> {
        if !self.enabled {
            return None;
        }
        let k = key(parent, name);
        self.map.lock().get(&k).copied()
    }

    /// `name` in `parent` is gone; what it named, if known.
    pub fn remove(&self, parent: u64, name: &OsStr) -> Option<Named> {
        if !self.enabled {
            return None;
        }
        let k = key(parent, name);
        self.map.lock().remove(&k)
    }

    /// `from` was renamed to `to` (replacing whatever `to` named): `to` names `moved` now, if
    /// known.
    pub fn rename(&self, from: (u64, &OsStr), to: (u64, &OsStr), moved: Option<Named>) {
        if !self.enabled {
            return;
        }
        let mut m = self.map.lock();
        set(&mut m, from, None);
        set(&mut m, to, moved);
    }

    /// `a` and `b` were exchanged (`RENAME_EXCHANGE`): each names the other's inode now, where
    /// known.
    pub fn exchange(&self, a: (u64, &OsStr), a_was: Option<Named>, b: (u64, &OsStr), b_was: Option<Named>) {
        if !self.enabled {
            return;
        }
        let mut m = self.map.lock();
        set(&mut m, a, b_was);
        set(&mut m, b, a_was);
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
        let at = |ino: u64| Named { ino, gfid: Gfid([ino as u8; 16]) };
        d.insert(1, &n("a"), at(10));
        d.insert(1, &n("b"), at(11));
        d.insert(2, &n("a"), at(12));
        assert_eq!(d.get(1, &n("a")), Some(at(10)));
        assert_eq!(d.get(2, &n("a")), Some(at(12)));
        d.rename((1, &n("a")), (1, &n("b")), Some(at(10)));
        assert_eq!((d.get(1, &n("a")), d.get(1, &n("b"))), (None, Some(at(10))));
        d.rename((1, &n("b")), (2, &n("c")), None);
        assert_eq!((d.get(1, &n("b")), d.get(2, &n("c"))), (None, None));
        assert_eq!(d.remove(2, &n("a")), Some(at(12)));
        assert_eq!(d.remove(2, &n("a")), None);
        assert!(d.is_empty());
        d.insert(1, &n("x"), at(20));
        d.insert(1, &n("x"), at(21));
        assert_eq!(d.get(1, &n("x")), Some(at(21)), "a name seen again names what it names now");
        d.exchange((1, &n("x")), Some(at(21)), (2, &n("y")), None);
        assert_eq!((d.get(1, &n("x")), d.get(2, &n("y"))), (None, Some(at(21))));
        let off = Dentries::new(false);
        off.insert(1, &n("a"), at(10));
        assert_eq!((off.get(1, &n("a")), off.remove(1, &n("a"))), (None, None));
    }
}
