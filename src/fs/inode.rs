//! The inode table: FUSE node ids to O_PATH handles on brick inodes, with lookup counts.
//!
//! Node ids are the brick's inode numbers (the root is always 1), which is sound because the
//! overlay refuses to cross into other filesystems, and an inode we hold an O_PATH handle on
//! cannot be freed, so its number cannot be reused while the kernel may still name it.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use fuser::BackingId;
use parking_lot::{Mutex, RwLock};

use crate::types::Gfid;

pub const ROOT_INO: u64 = 1;

pub struct Inode {
    pub ino: u64,
    pub fd: OwnedFd,
    /// S_IFMT bits of the inode.
    pub ifmt: u32,
    pub gfid: Gfid,
    nlookup: AtomicU64,
    /// Node id of the directory it was last seen in (for xtime marks up to the root).
    pub parent: AtomicU64,
    /// The kernel passthrough backing id shared by all open handles of this inode.
    pub backing: Mutex<Weak<BackingId>>,
}

impl Inode {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    pub fn is_dir(&self) -> bool {
        self.ifmt == libc::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.ifmt == libc::S_IFREG
    }
}

pub struct InodeTable {
    map: RwLock<HashMap<u64, Arc<Inode>>>,
    /// The brick root's own inode number, which is presented as node id 1.
    pub root_st_ino: u64,
    pub dev: u64,
}

impl InodeTable {
    pub fn new(root_fd: OwnedFd, root_st: &libc::stat) -> InodeTable {
        let root = Arc::new(Inode {
            ino: ROOT_INO,
            fd: root_fd,
            ifmt: libc::S_IFDIR,
            gfid: Gfid::ROOT,
            nlookup: AtomicU64::new(2),
            parent: AtomicU64::new(ROOT_INO),
            backing: Mutex::new(Weak::new()),
        });
        let mut map = HashMap::new();
        map.insert(ROOT_INO, root);
        InodeTable { map: RwLock::new(map), root_st_ino: root_st.st_ino, dev: root_st.st_dev }
    }

    /// The node id presented for a brick inode number.
    pub fn node_id(&self, st_ino: u64) -> u64 {
        if st_ino == self.root_st_ino { ROOT_INO } else { st_ino }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.map.read().get(&ino).cloned()
    }

    pub fn root(&self) -> Arc<Inode> {
        self.get(ROOT_INO).expect("root inode is never forgotten")
    }

    /// Finds the inode for `st`, counting one more lookup, or inserts the one `make` builds.
    pub fn lookup_or_insert(
        &self,
        st: &libc::stat,
        parent: u64,
        make: impl FnOnce() -> std::io::Result<(OwnedFd, Gfid)>,
    ) -> std::io::Result<Arc<Inode>> {
        let ino = self.node_id(st.st_ino);
        if let Some(i) = self.map.read().get(&ino) {
            i.nlookup.fetch_add(1, Ordering::Relaxed);
            i.parent.store(parent, Ordering::Relaxed);
            return Ok(i.clone());
        }
        let (fd, gfid) = make()?;
        let mut map = self.map.write();
        let i = map.entry(ino).or_insert_with(|| {
            Arc::new(Inode {
                ino,
                fd,
                ifmt: st.st_mode & libc::S_IFMT,
                gfid,
                nlookup: AtomicU64::new(0),
                parent: AtomicU64::new(parent),
                backing: Mutex::new(Weak::new()),
            })
        });
        i.nlookup.fetch_add(1, Ordering::Relaxed);
        Ok(i.clone())
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
}
