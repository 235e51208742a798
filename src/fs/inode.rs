//! The inode table: FUSE node ids to brick inodes, with lookup counts.
//!
//! Node ids are the brick's inode numbers (the root is always 1), which is sound because the
//! overlay refuses to cross into other filesystems, and an inode the kernel may still name is
//! never freed while its O_PATH descriptor or handle is held.
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

use super::sys::{self, FileHandle};
use crate::types::Gfid;

pub const ROOT_INO: u64 = 1;

/// Shared by all inodes: where handles are opened, and how many descriptors are held.
pub struct FdCache {
    mount_fd: OwnedFd,
    open: AtomicUsize,
    budget: usize,
}

pub struct Inode {
    pub ino: u64,
    /// S_IFMT bits of the inode.
    pub ifmt: u32,
    pub gfid: Gfid,
    handle: Option<FileHandle>,
    fd: RwLock<Option<Arc<OwnedFd>>>,
    referenced: AtomicBool,
    cache: Arc<FdCache>,
    nlookup: AtomicU64,
    /// Node id of the directory it was last seen in (for xtime marks up to the root).
    pub parent: AtomicU64,
    /// The kernel passthrough backing id shared by all open handles of this inode.
    pub backing: Mutex<Weak<BackingId>>,
}

impl Inode {
    /// An O_PATH descriptor of the inode (never following a symlink).
    pub fn fd(&self) -> io::Result<Arc<OwnedFd>> {
        if let Some(f) = self.fd.read().as_ref() {
            self.referenced.store(true, Ordering::Relaxed);
            return Ok(f.clone());
        }
        let h = self.handle.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::ESTALE))?;
        let fd = Arc::new(sys::open_by_handle(self.cache.mount_fd.as_fd(), h, libc::O_PATH | libc::O_NOFOLLOW)?);
        let mut slot = self.fd.write();
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        *slot = Some(fd.clone());
        self.referenced.store(true, Ordering::Relaxed);
        self.cache.open.fetch_add(1, Ordering::Relaxed);
        Ok(fd)
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
            self.cache.open.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        if self.fd.get_mut().is_some() {
            self.cache.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub struct InodeTable {
    map: RwLock<HashMap<u64, Arc<Inode>>>,
    cache: Arc<FdCache>,
    /// The brick root's own inode number, which is presented as node id 1.
    pub root_st_ino: u64,
    pub dev: u64,
}

impl InodeTable {
    /// `budget`: how many O_PATH descriptors to keep open at most (roughly).
    pub fn new(root_fd: OwnedFd, root_st: &libc::stat, budget: usize) -> io::Result<InodeTable> {
        let mount_fd = sys::reopen(root_fd.as_fd(), libc::O_PATH | libc::O_DIRECTORY)?;
        let cache = Arc::new(FdCache { mount_fd, open: AtomicUsize::new(1), budget: budget.max(64) });
        let root = Arc::new(Inode {
            ino: ROOT_INO,
            ifmt: libc::S_IFDIR,
            gfid: Gfid::ROOT,
            handle: None,
            fd: RwLock::new(Some(Arc::new(root_fd))),
            referenced: AtomicBool::new(true),
            cache: cache.clone(),
            nlookup: AtomicU64::new(2),
            parent: AtomicU64::new(ROOT_INO),
            backing: Mutex::new(Weak::new()),
        });
        let mut map = HashMap::new();
        map.insert(ROOT_INO, root);
        Ok(InodeTable { map: RwLock::new(map), cache, root_st_ino: root_st.st_ino, dev: root_st.st_dev })
    }

    /// The node id presented for a brick inode number.
    pub fn node_id(&self, st_ino: u64) -> u64 {
        if st_ino == self.root_st_ino { ROOT_INO } else { st_ino }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.map.read().get(&ino).cloned()
    }

    /// Finds the inode for `st`, counting one more lookup, or inserts the one `make` builds
    /// (its O_PATH descriptor and GFID).
    pub fn lookup_or_insert(
        &self,
        st: &libc::stat,
        parent: u64,
        make: impl FnOnce() -> io::Result<(OwnedFd, Gfid)>,
    ) -> io::Result<Arc<Inode>> {
        let ino = self.node_id(st.st_ino);
        if let Some(i) = self.map.read().get(&ino) {
            i.nlookup.fetch_add(1, Ordering::Relaxed);
            i.parent.store(parent, Ordering::Relaxed);
            return Ok(i.clone());
        }
        let (fd, gfid) = make()?;
        let handle = sys::name_to_handle(fd.as_fd())?;
        let inserted = {
            let mut map = self.map.write();
            let mut fresh = false;
            let i = map
                .entry(ino)
                .or_insert_with(|| {
                    fresh = true;
                    self.cache.open.fetch_add(1, Ordering::Relaxed);
                    Arc::new(Inode {
                        ino,
                        ifmt: st.st_mode & libc::S_IFMT,
                        gfid,
                        handle: Some(handle),
                        fd: RwLock::new(Some(Arc::new(fd))),
                        referenced: AtomicBool::new(true),
                        cache: self.cache.clone(),
                        nlookup: AtomicU64::new(0),
                        parent: AtomicU64::new(parent),
                        backing: Mutex::new(Weak::new()),
                    })
                })
                .clone();
            i.nlookup.fetch_add(1, Ordering::Relaxed);
            (i, fresh)
        };
        if inserted.1 && self.cache.open.load(Ordering::Relaxed) > self.cache.budget {
            self.evict();
        }
        Ok(inserted.0)
    }

    /// Closes the descriptors of about a quarter of the budget of inodes not used since the
    /// last sweep (second-chance clock).
    fn evict(&self) {
        let target = self.cache.budget / 4;
        let mut dropped = 0;
        let map = self.map.read();
        for pass in 0..2 {
            for i in map.values() {
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

    /// Drops `n` lookups of `ino`; the inode leaves the table at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut map = self.map.write();
        if let Some(i) = map.get(&ino) {
            let prev = i.nlookup.fetch_sub(n.min(i.nlookup.load(Ordering::Relaxed)), Ordering::Relaxed);
            if prev <= n {
                map.remove(&ino);
            }
        }
    }

    /// The GFID of a brick inode number, if the inode is in the table.
    pub fn gfid_of(&self, st_ino: u64) -> Option<Gfid> {
        self.map.read().get(&self.node_id(st_ino)).map(|i| i.gfid)
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Descriptors currently held for inodes.
    pub fn open_fds(&self) -> usize {
        self.cache.open.load(Ordering::Relaxed)
    }
}
