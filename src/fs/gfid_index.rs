//! The GFID index: GFID -> kernel file handle, so that a GFID resolves to its inode with one
//! `open_by_handle_at`, without a tree walk and without extra links in the brick.
//!
//! On disk (`<brick>/.georep/gfid.idx`): a 16-byte header (`GEOREPGI`, version) and fixed
//! 64-byte records appended as inodes get GFIDs, through a shared mapping over space allocated
//! ahead (`crate::mapped`: a record is a memory copy; the zeros after the records end them
//! for readers, and are cut when the index is opened). Records of deleted inodes stay until the
//! file is compacted; resolving one gives `ESTALE`, and every resolution is verified against
//! the inode's `trusted.gfid`. The index is synced before every changelog fsync, so every
//! GFID in a durable changelog is in the durable index.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use super::sys::{self, FileHandle};
use crate::mapped::MappedAppend;
use crate::types::{Gfid, XATTR_GFID};

const MAGIC: &[u8; 8] = b"GEOREPGI";
/// The index file's format version (in its header).
pub const VERSION: u16 = 1;
const HEADER_LEN: u64 = 16;
const REC_LEN: usize = 64;
const MAX_INLINE_HANDLE: usize = 36;

fn encode(g: Gfid, h: &FileHandle) -> Option<[u8; REC_LEN]> {
    if h.bytes.len() > MAX_INLINE_HANDLE {
        return None;
    }
    let mut b = [0u8; REC_LEN];
    b[0..16].copy_from_slice(&g.0);
    b[16..20].copy_from_slice(&h.handle_type.to_le_bytes());
    b[20] = h.bytes.len() as u8;
    b[24..24 + h.bytes.len()].copy_from_slice(&h.bytes);
    let crc = crc32fast::hash(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    Some(b)
}

fn decode(b: &[u8]) -> Option<(Gfid, FileHandle)> {
    if b.len() != REC_LEN || crc32fast::hash(&b[0..60]).to_le_bytes() != b[60..64] {
        return None;
    }
    let n = b[20] as usize;
    if n > MAX_INLINE_HANDLE {
        return None;
    }
    let g = Gfid::from_slice(&b[0..16])?;
    Some((
        g,
        FileHandle { handle_type: i32::from_le_bytes(b[16..20].try_into().unwrap()), bytes: b[24..24 + n].to_vec() },
    ))
}

fn load(path: &Path) -> io::Result<(HashMap<Gfid, FileHandle>, u64)> {
    let b = std::fs::read(path)?;
    if b.len() < HEADER_LEN as usize || &b[0..8] != MAGIC || u16::from_le_bytes([b[8], b[9]]) != VERSION {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a georep gfid index", path.display())));
    }
    let mut map = HashMap::new();
    let mut good = HEADER_LEN;
    for rec in b[HEADER_LEN as usize..].chunks(REC_LEN) {
        match decode(rec) {
            Some((g, h)) => {
                map.insert(g, h);
                good += REC_LEN as u64;
            }
            None => break,
        }
    }
    Ok((map, good))
}

/// Space the index is given at a time (a thousand records), doubling as it grows.
const CHUNK: u64 = 64 << 10;

pub struct GfidIndex {
    path: PathBuf,
    /// Records are memory copies into the file (`MappedAppend`); the allocated tail reads as
    /// zeros, which end the records for every reader and are cut at the next open.
    file: Mutex<MappedAppend>,
    map: RwLock<HashMap<Gfid, FileHandle>>,
    dirty: AtomicBool,
}

impl GfidIndex {
    /// Opens the index of a brick for writing, creating it if needed; a torn tail is cut.
    pub fn open(path: &Path) -> io::Result<GfidIndex> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() == 0 {
            let mut h = [0u8; HEADER_LEN as usize];
            h[0..8].copy_from_slice(MAGIC);
            h[8..10].copy_from_slice(&VERSION.to_le_bytes());
            file.write_all_at(&h, 0)?;
            file.sync_all()?;
        }
        let (map, good) = load(path)?;
        if good != file.metadata()?.len() {
            file.set_len(good)?;
        }
        let file = MappedAppend::new(Arc::new(file), good, CHUNK)?;
        Ok(GfidIndex {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            map: RwLock::new(map),
            dirty: AtomicBool::new(false),
        })
    }

    /// Loads an index read-only (for tools and workers).
    pub fn load(path: &Path) -> io::Result<HashMap<Gfid, FileHandle>> {
        load(path).map(|(m, _)| m)
    }

    /// How many inodes the index knows, about (it keeps entries of removed inodes until it is
    /// compacted): the total of a crawl's progress. The records end at the first all-zero
    /// one (the allocated tail): found by bisection, a few reads.
    pub fn estimate_len(path: &Path) -> io::Result<u64> {
        let file = File::open(path)?;
        let (mut lo, mut hi) = (0, file.metadata()?.len().saturating_sub(HEADER_LEN) / REC_LEN as u64);
        let mut rec = [0u8; REC_LEN];
        // Invariant: records below `lo` are written, records from `hi` on are zeros.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            file.read_exact_at(&mut rec, HEADER_LEN + mid * REC_LEN as u64)?;
            if rec.iter().all(|&b| b == 0) { hi = mid } else { lo = mid + 1 }
        }
        Ok(lo)
    }

    /// Loads only the entries of `wanted`: a scan, without building the whole map.
    pub fn load_some(path: &Path, wanted: &std::collections::HashSet<Gfid>) -> io::Result<HashMap<Gfid, FileHandle>> {
        let b = std::fs::read(path)?;
        let mut map = HashMap::new();
        if b.len() < HEADER_LEN as usize || &b[0..8] != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a georep gfid index", path.display()),
            ));
        }
        for rec in b[HEADER_LEN as usize..].chunks(REC_LEN) {
            if rec.len() == REC_LEN && wanted.contains(&Gfid::from_slice(&rec[0..16]).unwrap()) {
                match decode(rec) {
                    Some((g, h)) => {
                        map.insert(g, h);
                    }
                    None => break,
                }
            }
        }
        Ok(map)
    }

    /// Remembers that `gfid` names the inode behind `fd`.
    pub fn add(&self, gfid: Gfid, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.add_handle(gfid, &sys::name_to_handle(fd)?)
    }

    /// Remembers that `gfid` names the inode with handle `h`.
    pub fn add_handle(&self, gfid: Gfid, h: &FileHandle) -> io::Result<()> {
        if self.map.read().get(&gfid) == Some(h) {
            return Ok(());
        }
        let rec = encode(gfid, h).ok_or_else(|| {
            io::Error::other(format!("{}: file handle of {} bytes is too large", self.path.display(), h.bytes.len()))
        })?;
        self.file.lock().append(&rec)?;
        self.map.write().insert(gfid, h.clone());
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes sure records of the inodes being made at once can be added without allocating
    /// (`MappedAppend::reserve`): a full disk refuses a new inode before it is made.
    pub fn ensure_room(&self) -> io::Result<()> {
        self.file.lock().reserve(64 * REC_LEN as u64)
    }

    pub fn handle(&self, gfid: &Gfid) -> Option<FileHandle> {
        self.map.read().get(gfid).cloned()
    }

    /// Makes every added record durable.
    pub fn sync(&self) -> io::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let file = self.file.lock().file().clone();
            file.sync_data()?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens (O_PATH) the inode named by `gfid` through `handles`, checking its `trusted.gfid`;
/// `ENOENT` if it has no name left.
pub fn resolve(handles: &HashMap<Gfid, FileHandle>, mount_fd: BorrowedFd<'_>, gfid: &Gfid) -> io::Result<OwnedFd> {
    let h = handles.get(gfid).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    let fd = sys::open_by_handle(mount_fd, h, libc::O_PATH)?;
    // A removed inode that something still holds open is gone all the same.
    if sys::fstat(std::os::fd::AsFd::as_fd(&fd))?.st_nlink == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    match sys::getxattr_vec(std::os::fd::AsFd::as_fd(&fd), OsStr::new(XATTR_GFID))? {
        Some(v) if v == gfid.0 => Ok(fd),
        _ => Err(io::Error::from_raw_os_error(libc::ESTALE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(i: u32) -> FileHandle {
        FileHandle { handle_type: 1, bytes: [i.to_le_bytes(), (!i).to_le_bytes()].concat() }
    }

    #[test]
    fn records_survive_reopen_and_the_allocated_tail_is_not_records() {
        assert!(decode(&[0u8; REC_LEN]).is_none(), "a zero record must end the records");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gfid.idx");
        let gfids: Vec<Gfid> = (0..3000).map(|_| Gfid::generate()).collect();
        {
            let idx = GfidIndex::open(&path).unwrap();
            for (i, g) in gfids.iter().enumerate() {
                idx.add_handle(*g, &handle(i as u32)).unwrap();
            }
            idx.sync().unwrap();
            // Read by another process's way while the index is open: the file is longer than
            // its records, and only the records count.
            assert!(std::fs::metadata(&path).unwrap().len() > HEADER_LEN + 3000 * REC_LEN as u64);
            assert_eq!(GfidIndex::estimate_len(&path).unwrap(), 3000);
            let m = GfidIndex::load(&path).unwrap();
            assert_eq!(m.len(), 3000);
            assert_eq!(m[&gfids[2999]], handle(2999));
        }
        // Dropped without a sync or cut (a killed daemon): reopened, the zeros are not records.
        let idx = GfidIndex::open(&path).unwrap();
        assert_eq!(GfidIndex::estimate_len(&path).unwrap(), 3000);
        assert_eq!((idx.len(), idx.handle(&gfids[7])), (3000, Some(handle(7))));
        let g = Gfid::generate();
        idx.add_handle(g, &handle(9999)).unwrap();
        assert_eq!(GfidIndex::load(&path).unwrap()[&g], handle(9999));
        assert_eq!(GfidIndex::estimate_len(&path).unwrap(), 3001);
    }
}
