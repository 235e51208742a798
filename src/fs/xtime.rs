//! xtime marks: for each changed inode and all its ancestors up to the root, the time of the
//! latest change in its subtree, as GlusterFS's marker keeps in `trusted.glusterfs.<VOL>.xtime`.
//!
//! Changes only mark an inode dirty (a hash-set insert); the marks are written in one pass
//! before every changelog fsync (a `before_sync` hook), so they are never on the hot path and
//! always at least as new as the last durable changelog.
//!
//! The marks are kept beside the brick in `.georep/xtime.log` (GFID -> time), not as xattrs on
//! the brick's inodes: setting an xattr changes an inode's ctime, and a mark written after the
//! fact would show users ctime changes that no operation of theirs made. Through the mount,
//! root reads a mark as the virtual xattr `trusted.georep.<VOL>.xtime` (8 bytes: seconds and
//! microseconds, big-endian u32, GlusterFS's layout); `georep brick xtime` prints them.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use super::inode::{Inode, InodeTable, ROOT_INO};
use crate::types::Gfid;

const MAGIC: &[u8; 8] = b"GEOREPXT";
const VERSION: u16 = 1;
const HEADER_LEN: u64 = 16;
const REC_LEN: usize = 32;

/// GlusterFS's xtime layout: seconds, then microseconds, big-endian u32 each.
pub fn encode_xtime(us: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&((us / 1_000_000) as u32).to_be_bytes());
    b[4..8].copy_from_slice(&((us % 1_000_000) as u32).to_be_bytes());
    b
}

pub fn decode_xtime(b: &[u8]) -> Option<u64> {
    let b: &[u8; 8] = b.try_into().ok()?;
    let s = u32::from_be_bytes(b[0..4].try_into().unwrap()) as u64;
    let us = u32::from_be_bytes(b[4..8].try_into().unwrap()) as u64;
    Some(s * 1_000_000 + us)
}

fn encode_rec(g: &Gfid, us: u64) -> [u8; REC_LEN] {
    let mut b = [0u8; REC_LEN];
    b[0..16].copy_from_slice(&g.0);
    b[16..24].copy_from_slice(&us.to_le_bytes());
    let crc = crc32fast::hash(&b[0..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_rec(b: &[u8]) -> Option<(Gfid, u64)> {
    if b.len() != REC_LEN || crc32fast::hash(&b[0..28]).to_le_bytes() != b[28..32] {
        return None;
    }
    Some((Gfid::from_slice(&b[0..16])?, u64::from_le_bytes(b[16..24].try_into().unwrap())))
}

/// Reads a mark file: the latest time of every GFID (microseconds since the epoch), and the
/// length of its valid prefix.
pub fn load(path: &Path) -> io::Result<(HashMap<Gfid, u64>, u64, usize)> {
    let b = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((HashMap::new(), 0, 0)),
        Err(e) => return Err(e),
    };
    if b.is_empty() {
        return Ok((HashMap::new(), 0, 0));
    }
    if b.len() < HEADER_LEN as usize || &b[0..8] != MAGIC || u16::from_le_bytes([b[8], b[9]]) != VERSION {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a georep xtime file", path.display())));
    }
    let mut map = HashMap::new();
    let mut good = HEADER_LEN;
    let mut n = 0;
    for rec in b[HEADER_LEN as usize..].chunks(REC_LEN) {
        let Some((g, us)) = decode_rec(rec) else { break };
        let e = map.entry(g).or_insert(0);
        *e = (*e).max(us);
        good += REC_LEN as u64;
        n += 1;
    }
    Ok((map, good, n))
}

fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h
}

pub struct XtimeMarker {
    path: PathBuf,
    file: Mutex<(File, u64)>,
    marks: RwLock<HashMap<Gfid, u64>>,
    /// Inodes changed since the last flush, by GFID (two incarnations of one inode number are
    /// two entries).
    dirty: Mutex<HashMap<Gfid, Arc<Inode>, rustc_hash::FxBuildHasher>>,
    /// Counts flushes; moves only under `dirty`'s lock, with the set taken. An inode whose
    /// `marked` is the current interval is in the current set.
    interval: AtomicU64,
}

impl XtimeMarker {
    /// Opens (creating, compacting and cutting a torn tail as needed) the brick's mark file.
    pub fn open(path: &Path) -> io::Result<XtimeMarker> {
        let (marks, good, n) = load(path)?;
        if good == 0 || n > 2 * marks.len() + 4096 {
            // Rewrite with one record per GFID.
            let tmp = path.with_extension("tmp");
            let mut buf = header().to_vec();
            for (g, us) in &marks {
                buf.extend_from_slice(&encode_rec(g, *us));
            }
            std::fs::write(&tmp, &buf)?;
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let valid = HEADER_LEN + ((len - HEADER_LEN) / REC_LEN as u64) * REC_LEN as u64;
        let (_, good, _) = load(path)?;
        let len = good.min(valid);
        file.set_len(len)?;
        Ok(XtimeMarker {
            path: path.to_path_buf(),
            file: Mutex::new((file, len)),
            marks: RwLock::new(marks),
            dirty: Mutex::new(HashMap::default()),
            interval: AtomicU64::new(0),
        })
    }

    /// Notes that `inode` changed. Called before the change is recorded: a flush between the
    /// two then writes a mark for it no older than the changelog the record lands in (that
    /// file was started before the flush). Marked after, a flush in between would leave a
    /// durable record with the inode's mark only in the next interval.
    pub fn mark(&self, inode: &Arc<Inode>) {
        // Once per inode per interval: later changes in the interval find it marked already.
        // `marked` is set only once the inode is in the set, under the lock: a change that
        // finds it set is covered by the set of that interval (or, if that set was taken
        // meanwhile, it is recorded after that flush, in a changelog started before it).
        if inode.marked.load(Ordering::Acquire) == self.interval.load(Ordering::Acquire) {
            return;
        }
        let mut d = self.dirty.lock();
        d.entry(inode.gfid).or_insert_with(|| inode.clone());
        inode.marked.store(self.interval.load(Ordering::Relaxed), Ordering::Release);
    }

    /// The mark of `gfid` (microseconds since the epoch), if it has one.
    pub fn get(&self, gfid: &Gfid) -> Option<u64> {
        self.marks.read().get(gfid).copied()
    }

    /// Writes and syncs the marks of every dirty inode and its ancestors.
    pub fn flush(&self, table: &InodeTable) -> io::Result<()> {
        let dirty = {
            let mut d = self.dirty.lock();
            // A new interval with the new set: marks from now on go into it.
            self.interval.fetch_add(1, Ordering::AcqRel);
            // The next interval starts with room for as many: no regrowing on the hot path.
            let room = HashMap::with_capacity_and_hasher(d.len(), Default::default());
            std::mem::replace(&mut *d, room)
        };
        if dirty.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
        let mut done: HashSet<u64> = HashSet::with_capacity(dirty.len() * 2);
        let mut buf = Vec::with_capacity(dirty.len() * 2 * REC_LEN);
        {
            let mut marks = self.marks.write();
            for (_, inode) in dirty {
                let mut node = Some(inode);
                while let Some(n) = node {
                    if !done.insert(n.ino) {
                        break;
                    }
                    let e = marks.entry(n.gfid).or_insert(0);
                    // Never backwards, even if the clock is.
                    *e = (*e).max(now);
                    buf.extend_from_slice(&encode_rec(&n.gfid, *e));
                    if n.ino == ROOT_INO {
                        break;
                    }
                    node = table.get(n.parent.load(Ordering::Relaxed));
                }
            }
        }
        let mut f = self.file.lock();
        let off = f.1;
        f.0.write_all_at(&buf, off).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        f.1 += buf.len() as u64;
        f.0.sync_data()
    }
}
