//! Open file and directory handles.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fuser::BackingId;
use parking_lot::{Mutex, RwLock};

use super::inode::Inode;
use super::sys::DirStream;

pub enum Handle {
    File {
        file: File,
        inode: Arc<Inode>,
        /// Opened for writing: recorded as a DATA change at open, rollovers and release.
        writer: bool,
        /// Where the writes come from (as at open; recorded so at release too).
        origin: super::Origin,
        /// Keeps the kernel passthrough id alive while the file is open.
        _backing: Option<Arc<BackingId>>,
    },
    Dir {
        stream: Mutex<DirStream>,
        inode: Arc<Inode>,
    },
}

impl Handle {
    /// A file opened for writing.
    pub fn is_writer(&self) -> bool {
        matches!(self, Handle::File { writer: true, .. })
    }
}

/// The open files and directories of one FUSE session (handle numbers are the session's).
#[derive(Default)]
pub struct HandleTable {
    next: AtomicU64,
    map: RwLock<HashMap<u64, Arc<Handle>>>,
}

impl HandleTable {
    pub fn insert(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.write().insert(fh, Arc::new(h));
        fh
    }
    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.read().get(&fh).cloned()
    }
    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.write().remove(&fh)
    }
    /// The handles still open (a session that ends without releasing them).
    pub fn open_handles(&self) -> Vec<u64> {
        self.map.read().keys().copied().collect()
    }
}
