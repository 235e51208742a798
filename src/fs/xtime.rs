//! xtime marks: `trusted.georep.<VOL>.xtime` on each changed inode and all its ancestors.
//!
//! Changes only mark an inode dirty (a hash-set insert); the marks are written in one pass
//! before every changelog fsync (a `before_sync` hook), so they are never on the hot path and
//! always at least as new as the last durable changelog. The value is GlusterFS's: 8 bytes,
//! seconds then microseconds, both big-endian u32.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::inode::{Inode, InodeTable, ROOT_INO};
use super::sys;

pub struct XtimeMarker {
    name: OsString,
    dirty: Mutex<HashMap<u64, Arc<Inode>>>,
}

pub fn encode_xtime(t: SystemTime) -> [u8; 8] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&(d.as_secs() as u32).to_be_bytes());
    b[4..8].copy_from_slice(&d.subsec_micros().to_be_bytes());
    b
}

pub fn decode_xtime(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() != 8 {
        return None;
    }
    Some((u32::from_be_bytes(b[0..4].try_into().unwrap()), u32::from_be_bytes(b[4..8].try_into().unwrap())))
}

impl XtimeMarker {
    pub fn new(name: String) -> XtimeMarker {
        XtimeMarker { name: name.into(), dirty: Mutex::new(HashMap::new()) }
    }

    pub fn name(&self) -> &OsString {
        &self.name
    }

    /// Notes that `inode` changed.
    pub fn mark(&self, inode: &Arc<Inode>) {
        let mut d = self.dirty.lock();
        if !d.contains_key(&inode.ino) {
            d.insert(inode.ino, inode.clone());
        }
    }

    /// Writes the marks of every dirty inode and its ancestors.
    pub fn flush(&self, table: &InodeTable) {
        let dirty = std::mem::take(&mut *self.dirty.lock());
        if dirty.is_empty() {
            return;
        }
        let value = encode_xtime(SystemTime::now());
        let mut done: HashSet<u64> = HashSet::with_capacity(dirty.len() * 2);
        for (_, inode) in dirty {
            let mut node = Some(inode);
            while let Some(n) = node {
                if !done.insert(n.ino) {
                    break;
                }
                if let Err(e) = n.fd().and_then(|f| sys::setxattr_fd(f.as_fd(), &self.name, &value, 0)) {
                    // Symlinks and special files may refuse; directories and files must not.
                    if n.is_dir() || n.is_reg() {
                        log::warn!("xtime of {}: {e}", n.gfid);
                    }
                }
                if n.ino == ROOT_INO {
                    break;
                }
                node = table.get(n.parent.load(Ordering::Relaxed));
            }
        }
    }
}
