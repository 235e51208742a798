//! The inode table: FUSE node ids to brick inodes, with lookup counts.
//!
//! Inodes are identified by their kernel file handle (which, unlike an inode number, names one
//! incarnation of an inode: ext4 reuses numbers, never number and generation together). A node
//! id is the brick's inode number when that is free in the table (so `stat` and `readdir` agree
//! with the brick), else a fresh id above 2^63; the root is always 1.
//!
//! Every inode keeps its kernel file handle; an O_PATH descriptor is kept open only for
//! recently used inodes (a clock over a bounded budget), because the kernel may cache far more
//! inodes than the process may hold descriptors. An evicted descriptor is reopened from the
//! handle on next use.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use fuser::BackingId;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxBuildHasher;

use super::sys::{self, FileHandle};
use crate::types::Gfid;

pub const ROOT_INO: u64 = 1;

/// Shared by the table and its inodes: the maps, where handles are opened, and how many
/// descriptors are held.
pub struct FdCache {
    mount_fd: OwnedFd,
    open: AtomicUsize,
    budget: usize,
    map: RwLock<Tables>,
}

impl FdCache {
    /// Runs `open`, which makes a descriptor; if the process has none left, closes some cached
    /// ones and tries once more.
    fn with_room<T>(&self, mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match open() {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                self.evict();
                open()
            }
            r => r,
        }
    }

    /// Counts one more open descriptor, and closes some if over budget.
    fn opened(&self) {
        if self.open.fetch_add(1, Ordering::Relaxed) + 1 > self.budget {
            self.evict();
        }
    }

    /// Closes the descriptors of about a quarter of the budget of inodes not used since the
    /// last sweep (second-chance clock).
    fn evict(&self) {
        let target = self.budget / 4;
        let mut dropped = 0;
        let t = self.map.read();
        for pass in 0..2 {
            for i in t.by_id.values() {
                if dropped >= target {
                    return;
                }
                if pass == 0 && i.referenced.swap(false, Ordering::Relaxed) {
                    continue;
                }
                if i.evict() {
                    dropped += 1;
                }
            }
        }
    }
}

pub struct Inode {
    pub ino: u64,
    /// S_IFMT bits of the inode.
    pub ifmt: u32,
    pub gfid: Gfid,
    handle: Option<FileHandle>,
    fd: RwLock<Option<Arc<OwnedFd>>>,
    referenced: AtomicBool,
    cache: Weak<FdCache>,
    nlookup: AtomicU64,
    /// Node id of the directory it was last seen in (for xtime marks up to the root).
    pub parent: AtomicU64,
    /// The kernel passthrough backing id shared by all open handles of this inode, per FUSE
    /// session (a backing id belongs to the `/dev/fuse` connection that opened it).
    pub backing: Mutex<Vec<(u8, Weak<BackingId>)>>,
    /// The FUSE sessions (bit per session id) that were handed this inode: only their
    /// kernels may cache it, so only they hear of changes made through another session.
    known: AtomicU64,
    /// The xtime interval in which the inode was last marked changed (`XtimeMarker::mark`).
    pub marked: AtomicU64,
}

impl Inode {
    /// An O_PATH descriptor of the inode (never following a symlink).
    pub fn fd(&self) -> io::Result<Arc<OwnedFd>> {
        if let Some(f) = self.fd.read().as_ref() {
            self.referenced.store(true, Ordering::Relaxed);
            return Ok(f.clone());
        }
        let stale = || io::Error::from_raw_os_error(libc::ESTALE);
        let h = self.handle.as_ref().ok_or_else(stale)?;
        let cache = self.cache.upgrade().ok_or_else(stale)?;
        let fd = Arc::new(
            cache.with_room(|| sys::open_by_handle(cache.mount_fd.as_fd(), h, libc::O_PATH | libc::O_NOFOLLOW))?,
        );
        {
            let mut slot = self.fd.write();
            if let Some(f) = slot.as_ref() {
                return Ok(f.clone());
            }
            *slot = Some(fd.clone());
        }
        self.referenced.store(true, Ordering::Relaxed);
        cache.opened();
        Ok(fd)
    }

    /// Notes that the session with bit `bit` was handed this inode.
    pub fn known_by(&self, bit: u64) {
        if self.known.load(Ordering::Relaxed) & bit == 0 {
            self.known.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// The sessions that may have this inode cached (bit per session id).
    pub fn known(&self) -> u64 {
        self.known.load(Ordering::Relaxed)
    }

    pub fn is_dir(&self) -> bool {
        self.ifmt == libc::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.ifmt == libc::S_IFREG
    }

    /// Drops the cached descriptor if the inode has a handle to reopen it; true if dropped.
    fn evict(&self) -> bool {
        if self.handle.is_none() {
            return false;
        }
        if self.fd.write().take().is_some() {
            if let Some(c) = self.cache.upgrade() {
                c.open.fetch_sub(1, Ordering::Relaxed);
            }
            return true;
        }
        false
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        if self.fd.get_mut().is_some()
            && let Some(c) = self.cache.upgrade()
        {
            c.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub struct InodeTable {
    cache: Arc<FdCache>,
    /// The brick root's own inode number, which is presented as node id 1.
    pub root_st_ino: u64,
    pub dev: u64,
    next_alt: AtomicU64,
}

#[derive(Default)]
struct Tables {
    by_id: HashMap<u64, Arc<Inode>, FxBuildHasher>,
    by_handle: HashMap<FileHandle, u64, FxBuildHasher>,
}

const ALT_IDS: u64 = 1 << 63;

/// Node id of the virtual `.gfid` directory of an aux-gfid mount; never given to an inode.
pub const GFID_DIR_INO: u64 = ALT_IDS - 1;
/// Node id of `.gfid/<root gfid>`: the root directory again (the kernel cannot give the root's
/// own dentry a second parent).
pub const ROOT_ALIAS_INO: u64 = ALT_IDS - 2;

impl InodeTable {
    /// `budget`: how many O_PATH descriptors to keep open at most (roughly).
    pub fn new(root_fd: OwnedFd, root_st: &libc::stat, budget: usize) -> io::Result<InodeTable> {
        // open_by_handle_at refuses an O_PATH descriptor here (EBADF).
        let mount_fd = sys::reopen(root_fd.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
        let root_handle = sys::name_to_handle(root_fd.as_fd())?;
        let cache = Arc::new(FdCache {
            mount_fd,
            open: AtomicUsize::new(1),
            budget: budget.max(64),
            map: RwLock::new(Tables::default()),
        });
        let root = Arc::new(Inode {
            ino: ROOT_INO,
            ifmt: libc::S_IFDIR,
            gfid: Gfid::ROOT,
            handle: None,
            fd: RwLock::new(Some(Arc::new(root_fd))),
            referenced: AtomicBool::new(true),
            cache: Arc::downgrade(&cache),
            nlookup: AtomicU64::new(2),
            parent: AtomicU64::new(ROOT_INO),
            backing: Mutex::new(Vec::new()),
            known: AtomicU64::new(0),
            marked: AtomicU64::new(u64::MAX),
        });
        {
            let mut t = cache.map.write();
            t.by_id.insert(ROOT_INO, root);
            t.by_handle.insert(root_handle, ROOT_INO);
        }
        Ok(InodeTable { cache, root_st_ino: root_st.st_ino, dev: root_st.st_dev, next_alt: AtomicU64::new(ALT_IDS) })
    }

    /// Runs `open`, which makes a descriptor (an open file, a directory stream, an inode's
    /// O_PATH descriptor); if the process has none left, closes some that inodes hold and
    /// tries once more. The table's budget leaves room for open files, but not without bound.
    pub fn with_room<T>(&self, open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.cache.with_room(open)
    }

    /// Opens (O_PATH) the inode with handle `h`; a deleted one gives ESTALE.
    pub fn open_handle(&self, h: &FileHandle) -> io::Result<OwnedFd> {
        sys::open_by_handle(self.cache.mount_fd.as_fd(), h, libc::O_PATH | libc::O_NOFOLLOW)
    }

    /// The inode number shown for a brick inode in directory listings.
    pub fn display_ino(&self, st_ino: u64) -> u64 {
        if st_ino == self.root_st_ino { ROOT_INO } else { st_ino }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        let ino = if ino == ROOT_ALIAS_INO { ROOT_INO } else { ino };
        self.cache.map.read().by_id.get(&ino).cloned()
    }

    /// The inode with handle `h`, if the kernel knows it (no lookup counted).
    pub fn find(&self, h: &FileHandle) -> Option<Arc<Inode>> {
        let t = self.cache.map.read();
        t.by_handle.get(h).and_then(|id| t.by_id.get(id)).cloned()
    }

    /// The inode whose brick inode number is `st_ino`, if the table holds a descriptor of it:
    /// the descriptor keeps the inode alive, so no other inode can have that number meanwhile,
    /// and a `stat` of a name is enough to know which inode it names. (Without a descriptor
    /// the number may be a reused one; callers then identify the inode by its file handle.)
    pub fn find_pinned(&self, st_ino: u64) -> Option<Arc<Inode>> {
        let t = self.cache.map.read();
        let i = t.by_id.get(&self.display_ino(st_ino))?;
        if i.fd.read().is_none() {
            return None;
        }
        i.referenced.store(true, Ordering::Relaxed);
        Some(i.clone())
    }

    /// Counts one more lookup of a known inode (a reply that hands the kernel of the session
    /// with bit `session` a reference). Lookups of all sessions add up: the inode stays until
    /// every session's kernel has forgotten it.
    pub fn add_lookup(&self, i: &Arc<Inode>, parent: u64, session: u64) {
        i.nlookup.fetch_add(1, Ordering::Relaxed);
        i.parent.store(parent, Ordering::Relaxed);
        i.known_by(session);
    }

    /// Finds the inode with handle `h`, counting one more lookup, or inserts the one `make`
    /// builds (its O_PATH descriptor and GFID).
    pub fn lookup_or_insert(
        &self,
        st: &libc::stat,
        h: FileHandle,
        parent: u64,
        session: u64,
        make: impl FnOnce() -> io::Result<(OwnedFd, Gfid)>,
    ) -> io::Result<Arc<Inode>> {
        if let Some(i) = self.find(&h) {
            self.add_lookup(&i, parent, session);
            return Ok(i);
        }
        let (fd, gfid) = make()?;
        let (inode, fresh) = {
            let mut t = self.cache.map.write();
            if let Some(i) = t.by_handle.get(&h).and_then(|id| t.by_id.get(id)).cloned() {
                (i, false)
            } else {
                let id = if st.st_ino == ROOT_INO || st.st_ino >= ROOT_ALIAS_INO || t.by_id.contains_key(&st.st_ino) {
                    // The number is taken by an earlier incarnation the kernel still holds.
                    self.next_alt.fetch_add(1, Ordering::Relaxed)
                } else {
                    st.st_ino
                };
                let i = Arc::new(Inode {
                    ino: id,
                    ifmt: st.st_mode & libc::S_IFMT,
                    gfid,
                    handle: Some(h.clone()),
                    fd: RwLock::new(Some(Arc::new(fd))),
                    referenced: AtomicBool::new(true),
                    cache: Arc::downgrade(&self.cache),
                    nlookup: AtomicU64::new(0),
                    parent: AtomicU64::new(parent),
                    backing: Mutex::new(Vec::new()),
                    known: AtomicU64::new(0),
                    marked: AtomicU64::new(u64::MAX),
                });
                t.by_id.insert(id, i.clone());
                t.by_handle.insert(h, id);
                (i, true)
            }
        };
        self.add_lookup(&inode, parent, session);
        if fresh {
            self.cache.opened();
        }
        Ok(inode)
    }

    /// Drops `n` lookups of `ino`; the inode leaves the table at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        self.forget_many([(ino, n)]);
    }

    /// `forget` for many inodes at once (a BATCH_FORGET), under one taking of the lock.
    pub fn forget_many(&self, nodes: impl IntoIterator<Item = (u64, u64)>) {
        let mut removed = Vec::new();
        let mut t = self.cache.map.write();
        for (ino, n) in nodes {
            if ino == ROOT_INO {
                continue;
            }
            let gone = match t.by_id.get(&ino) {
                Some(i) => {
                    let prev = i.nlookup.fetch_sub(n.min(i.nlookup.load(Ordering::Relaxed)), Ordering::Relaxed);
                    prev <= n
                }
                None => false,
            };
            if let Some(i) = if gone { t.by_id.remove(&ino) } else { None } {
                if let Some(h) = &i.handle
                    && t.by_handle.get(h) == Some(&ino)
                {
                    t.by_handle.remove(h);
                }
                removed.push(i);
            }
        }
        drop(t);
        // Closing an inode's descriptor may be the brick's last reference to an unlinked
        // inode: the filesystem frees it then, which takes a while. Not under the table's lock,
        // which every request needs.
        drop(removed);
    }

    pub fn len(&self) -> usize {
        self.cache.map.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Descriptors currently held for inodes.
    pub fn open_fds(&self) -> usize {
        self.cache.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::fd::AsFd;

    /// A table over a fresh directory with `n` files, each looked up once.
    fn table(budget: usize, n: usize) -> (tempfile::TempDir, InodeTable, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let root = sys::open_path(std::fs::File::open(dir.path()).unwrap().as_fd(), OsStr::new(".")).unwrap();
        let st = sys::fstat(root.as_fd()).unwrap();
        let t = InodeTable::new(root, &st, budget).unwrap();
        let mut ids = Vec::new();
        for k in 0..n {
            let p = dir.path().join(format!("f{k}"));
            std::fs::write(&p, b"").unwrap();
            let fd =
                sys::open_path(std::fs::File::open(dir.path()).unwrap().as_fd(), OsStr::new(&format!("f{k}"))).unwrap();
            let st = sys::fstat(fd.as_fd()).unwrap();
            let h = sys::name_to_handle(fd.as_fd()).unwrap();
            let i = t.lookup_or_insert(&st, h, ROOT_INO, 1, move || Ok((fd, Gfid::NULL))).unwrap();
            ids.push(i.ino);
        }
        (dir, t, ids)
    }

    #[test]
    fn descriptors_stay_within_budget_and_come_back_on_use() {
        let (_d, t, ids) = table(64, 200);
        assert!(t.open_fds() <= 64, "{} descriptors held over a budget of 64", t.open_fds());
        for id in &ids {
            t.get(*id).unwrap().fd().unwrap();
        }
        assert!(t.open_fds() <= 64);
    }

    #[test]
    fn out_of_descriptors_closes_cached_ones_and_tries_again() {
        let (_d, t, _ids) = table(1000, 100);
        let before = t.open_fds();
        let mut calls = 0;
        let r = t.with_room(|| {
            calls += 1;
            if calls == 1 { Err(io::Error::from_raw_os_error(libc::EMFILE)) } else { Ok(7) }
        });
        assert_eq!((r.unwrap(), calls), (7, 2));
        assert!(t.open_fds() < before, "nothing closed: {} of {before}", t.open_fds());
        // Any other error is the caller's, with no retry.
        let mut calls = 0;
        let r: io::Result<()> = t.with_room(|| {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        });
        assert_eq!((r.unwrap_err().raw_os_error(), calls), (Some(libc::ENOENT), 1));
    }

    #[test]
    fn batch_forget_drops_inodes_at_zero_lookups_only() {
        let (_d, t, ids) = table(1000, 10);
        let again = t.get(ids[0]).unwrap();
        t.add_lookup(&again, ROOT_INO, 1);
        drop(again);
        t.forget_many(ids.iter().map(|&id| (id, 1)).chain([(ROOT_INO, 1)]));
        // The root stays; the inode looked up twice is left with one lookup.
        assert_eq!(t.len(), 2);
        assert!(t.get(ids[0]).is_some() && t.get(ROOT_INO).is_some());
        t.forget_many([(ids[0], 1)]);
        assert_eq!(t.len(), 1);
    }
}
