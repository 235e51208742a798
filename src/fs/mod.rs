//! The georep FUSE filesystem: a passthrough overlay over a brick that gives every inode a
//! GFID, records every successful change in the brick's changelog and keeps xtime marks.
//!
//! Data path: the kernel sends an operation; `ops` performs it on the brick through O_PATH
//! handles (`inode`), as root, with ownership set to the caller; on success it records the
//! change (`changelog::Recorder`) and marks xtime dirty (`xtime`), then replies. Reads and
//! writes of open regular files bypass the daemon entirely through kernel passthrough where
//! the kernel allows it.
//!
//! Must never: let a user see or touch the brick's private directory or georep's own xattrs;
//! follow a symlink inside the brick; reply success for a change it failed to record.

pub mod brick;
pub mod claims;
mod dentry;
pub mod gfid_index;
mod handles;
pub mod inode;
pub mod listing;
pub mod mount;
pub mod newentry;
mod ops;
pub mod role;
pub mod server;
mod sessions;
mod slow;
pub mod sys;
pub mod xtime;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::changelog::{ChangelogConfig, Recorder};
use crate::types::{Gfid, PRIVATE_DIR};
use brick::Brick;
use handles::HandleTable;
use inode::{InodeTable, ROOT_INO};

/// The virtual directory of an `aux-gfid-mount`.
pub const GFID_DIR: &str = ".gfid";
use sessions::SessionId;
use xtime::XtimeMarker;

pub use crate::changelog::Origin;

/// Stripes of `BrickFs::creating`.
const CREATING_STRIPES: usize = 64;

pub use mount::MountConfig;

/// Behaviour switches of one mount.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// How long the kernel may cache entries and attributes. Long is safe: the overlay is the
    /// only writer of its brick.
    pub ttl: Duration,
    /// Ask for kernel passthrough of file data.
    pub passthrough: bool,
    /// Record changes (off only to measure what recording costs).
    pub record: bool,
    /// Serve the `.gfid/` namespace (`aux-gfid-mount`): `.gfid/<gfid>` and
    /// `.gfid/<pargfid>/<name>`, and entry creation with a chosen GFID.
    pub aux_gfid: bool,
    /// `user-map-root=<user>`: that uid acts as root inside this mount, and nobody but it and
    /// root may use the mount at all. The kernel's permission checks are off (the daemon's
    /// own rule replaces them), so that the user can do what root could.
    pub map_root: Option<u32>,
    /// Take requests through FUSE over io_uring when the kernel offers it (Linux 6.14+ with
    /// `fuse.enable_uring=1`); `/dev/fuse` otherwise.
    pub uring: bool,
    pub changelog: ChangelogConfig,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            ttl: Duration::from_secs(3600),
            passthrough: true,
            record: true,
            aux_gfid: false,
            map_root: None,
            uring: true,
            changelog: ChangelogConfig::default(),
        }
    }
}

/// What a brick server shares among the FUSE sessions it serves (every mount of the brick):
/// the brick, its inodes and names, the changelog recorder and xtime marks, and the list of
/// sessions, through which a change made through one mount reaches the kernel caches of the
/// others.
pub struct BrickFs {
    brick: Arc<Brick>,
    inodes: Arc<InodeTable>,
    /// Names seen, for the GFID an unlink or rename records (filled only while recording).
    dentries: dentry::Dentries,
    /// Threads for requests that may take long (fsync, copy_file_range).
    slow: slow::SlowPool,
    recorder: Option<Recorder>,
    recorder_thread: Mutex<Option<JoinHandle<()>>>,
    xtime: Option<Arc<XtimeMarker>>,
    sessions: sessions::Sessions,
    /// Held from making a name until its inode has its GFID (striped by directory and name):
    /// a lookup through another mount that finds the inode without a GFID takes it before it
    /// gives one, so it never gives a GFID to an inode being made.
    creating: Box<[Mutex<()>]>,
    /// Which receiver may change the volume for each primary (`claims`).
    claims: claims::Claims,
    /// The brick-wide options it was opened with (recording, changelog timing).
    pub opts: FsOptions,
    /// Users' mounts may not change the volume (a secondary's), and why (`role`).
    users_read_only: parking_lot::RwLock<Option<String>>,
    users_ro: AtomicBool,
}

/// One FUSE session of a brick server (one mount): its options, its open files, and the
/// shared brick state, which it derefs to.
pub struct OverlayFs {
    core: Arc<BrickFs>,
    id: SessionId,
    handles: HandleTable,
    passthrough: AtomicBool,
    opts: FsOptions,
    /// Where the changes through this mount come from, written into every record it makes:
    /// `User`, or on an aux-gfid mount the volume its receiver said (`glusterfs.georep.origin`).
    origin: Mutex<Origin>,
}

impl OverlayFs {
    /// Where the changes through this mount come from now.
    pub(crate) fn origin(&self) -> Origin {
        if self.opts.aux_gfid { *self.origin.lock() } else { Origin::User }
    }

    /// An aux-gfid mount's receiver says where the changes it applies next were first made.
    pub(crate) fn set_origin(&self, volume: crate::types::VolumeId) {
        *self.origin.lock() = Origin::Received(volume);
    }
}

impl std::ops::Deref for OverlayFs {
    type Target = BrickFs;
    fn deref(&self) -> &BrickFs {
        &self.core
    }
}

impl BrickFs {
    pub fn new(brick: Brick, opts: FsOptions) -> anyhow::Result<Arc<BrickFs>> {
        use anyhow::Context;
        let brick = Arc::new(brick);
        let root_fd = sys::reopen(brick.root_fd(), libc::O_PATH | libc::O_DIRECTORY).context("reopen brick root")?;
        let st = sys::fstat(brick.root_fd()).context("stat brick root")?;
        // Most of the descriptor limit for the inodes the kernel knows (an unlinked inode the
        // overlay holds is freed by the forget that closes it, off the unlink's path, as in
        // libfuse's passthrough_hp; one without a descriptor is freed inside the unlink); an
        // eighth for open files, the changelog and the rest. An open that finds no descriptor
        // left closes some cached ones and tries again (`InodeTable::with_room`).
        let limit = sys::nofile_limit().unwrap_or(1024) as usize;
        let budget = limit - (limit / 8).max(64).min(limit / 2);
        let inodes = Arc::new(InodeTable::new(root_fd, &st, budget).context("inode table")?);
        let dir = brick.layout.changelog_dir();
        let (recorder, thread, xtime) = if opts.record {
            let (rec, thread) = Recorder::open(&dir, brick.volume, opts.changelog.clone())?;
            let xpath = brick.layout.xtime_file();
            let marker = Arc::new(XtimeMarker::open(&xpath).with_context(|| format!("{}", xpath.display()))?);
            let (m, t) = (marker.clone(), inodes.clone());
            rec.before_sync(move || {
                if let Err(e) = m.flush(&t) {
                    log::error!("xtime: {e}");
                }
            });
            let b = brick.clone();
            rec.before_sync(move || {
                if let Err(e) = b.gfids.sync() {
                    log::error!("gfid index sync: {e}");
                }
            });
            (Some(rec), Some(thread), Some(marker))
        } else {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(crate::changelog::writer::RECORDING_OFF_MARKER), b"")?;
            (None, None, None)
        };
        Ok(Arc::new(BrickFs {
            brick,
            inodes,
            dentries: dentry::Dentries::new(opts.record),
            slow: slow::SlowPool::new(),
            recorder,
            recorder_thread: Mutex::new(thread),
            xtime,
            sessions: sessions::Sessions::default(),
            creating: (0..CREATING_STRIPES).map(|_| Mutex::new(())).collect(),
            claims: claims::Claims::default(),
            opts,
            users_read_only: Default::default(),
            users_ro: AtomicBool::new(false),
        }))
        .inspect(|fs| fs.reload_role())
    }

    /// A new FUSE session of this brick with the session's own options (`aux_gfid`,
    /// `map_root`, `ttl`, `passthrough`, `uring`; the brick-wide ones are this server's).
    /// `None` when the server serves as many sessions as it can, or is shutting down.
    pub fn session(self: &Arc<Self>, opts: FsOptions) -> Option<OverlayFs> {
        let id = self.sessions.attach()?;
        self.inodes.get(ROOT_INO)?.known_by(id.bit());
        let origin = if opts.aux_gfid { Origin::Received(crate::types::VolumeId::NIL) } else { Origin::User };
        Some(OverlayFs {
            core: self.clone(),
            id,
            handles: HandleTable::default(),
            passthrough: AtomicBool::new(false),
            opts,
            origin: Mutex::new(origin),
        })
    }

    /// The brick this serves.
    pub fn brick(&self) -> &Brick {
        &self.brick
    }

    /// The lock held while `name` is made in the directory `parent`, until its inode has its
    /// GFID; whoever else would give a name it finds without a GFID one (a lookup through
    /// another mount, a crawl's `adopt`) takes it first, and so waits for the creator.
    pub(crate) fn creating(&self, parent: &Gfid, name: &OsStr) -> parking_lot::MutexGuard<'_, ()> {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), xxhash_rust::xxh3::xxh3_64(&parent.0));
        self.creating[h as usize % self.creating.len()].lock()
    }

    /// How many FUSE sessions are attached.
    /// Publishes the active changelog now, if it holds records.
    pub fn rollover(&self) -> anyhow::Result<()> {
        match &self.recorder {
            Some(r) => r.rollover().map_err(|e| anyhow::anyhow!("{e}")),
            None => Ok(()),
        }
    }

    /// Reads the brick's role file again (georepd changed it).
    pub fn reload_role(&self) {
        let role = match role::Role::load(&self.brick.layout.role_file()) {
            Ok(r) => r,
            Err(e) => {
                // Unreadable: the safe side for a secondary is read-only.
                log::error!("{}: {e}; users' mounts are read-only", self.brick.layout.role_file().display());
                role::Role { read_only: Some(format!("the role file is unreadable: {e}")) }
            }
        };
        if *self.users_read_only.read() != role.read_only {
            match &role.read_only {
                Some(why) => log::info!("users' mounts are read-only: {why}"),
                None => log::info!("users' mounts are writable"),
            }
        }
        self.users_ro.store(role.read_only.is_some(), Ordering::Release);
        *self.users_read_only.write() = role.read_only;
    }

    /// Why users' mounts may not change the volume, if they may not.
    pub fn users_read_only(&self) -> Option<String> {
        self.users_read_only.read().clone()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.count()
    }

    /// Refuses new sessions from now on; true if none is attached (the caller may shut down).
    pub fn close_if_idle(&self) -> bool {
        self.sessions.close_if_idle()
    }

    /// Records, as created now, an entry that had no GFID until `gfid` was just given to it:
    /// it was made on the brick while nothing recorded (a server killed between making an
    /// entry and recording it, or a write straight into the brick). Its ENTRY, DATA and META
    /// records carry it to the secondaries like any new entry.
    /// Records the inode behind `fd` (named `name` in `pgfid`) as created now, with its data
    /// and metadata: what a worker then sends whole.
    pub(crate) fn record_found(
        &self,
        pgfid: crate::types::Gfid,
        name: &OsStr,
        fd: std::os::fd::BorrowedFd<'_>,
        st: &libc::stat,
        gfid: crate::types::Gfid,
        origin: Origin,
    ) -> std::io::Result<()> {
        use crate::changelog::Op;
        let Some(rec) = &self.recorder else { return Ok(()) };
        let ifmt = st.st_mode & libc::S_IFMT;
        let op = match ifmt {
            libc::S_IFREG => Op::Create,
            libc::S_IFDIR => Op::Mkdir,
            libc::S_IFLNK => Op::Symlink,
            _ => Op::Mknod,
        };
        let target = if ifmt == libc::S_IFLNK { Some(sys::readlink_fd(fd)?) } else { None };
        let target = target.as_deref().map(|t| std::path::Path::new(OsStr::from_bytes(t)));
        rec.entry(op, gfid, OverlayFs::entry_detail(Some(st), (pgfid, name), None, target), origin)?;
        if ifmt == libc::S_IFREG {
            rec.data(Op::Write, gfid, origin)?;
        }
        rec.meta(Op::Setattr, gfid, origin)
    }

    /// Gives every entry on the path `rel` (relative to the brick) that has no GFID one,
    /// recording each as created now (`record_found`); returns the last one's GFID. For a
    /// worker's crawl that meets such an entry. Follows no symlink, and never leaves the
    /// brick nor enters its private directory.
    pub fn adopt(&self, rel: &std::path::Path) -> std::io::Result<crate::types::Gfid> {
        use std::os::fd::AsFd;
        use std::path::Component;
        let inval = || std::io::Error::from_raw_os_error(libc::EINVAL);
        let mut dir = sys::reopen(self.brick.root_fd(), libc::O_PATH | libc::O_DIRECTORY)?;
        let mut dir_gfid = crate::types::Gfid::ROOT;
        let mut gfid = crate::types::Gfid::ROOT;
        let names: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(inval()),
            })
            .collect::<Result<_, _>>()?;
        for (i, name) in names.iter().enumerate() {
            if i == 0 && name.as_bytes() == PRIVATE_DIR.as_bytes() {
                return Err(inval());
            }
            let fd = sys::open_path(dir.as_fd(), name)?;
            let st = sys::fstat(fd.as_fd())?;
            let creating = self.creating(&dir_gfid, name);
            let (g, new) = brick::ensure_gfid_new(fd.as_fd(), &self.brick.gfids)?;
            if new {
                log::warn!(
                    "{} in {dir_gfid}: had no GFID (made while nothing recorded); recorded as created now, {g}",
                    name.display()
                );
                self.record_found(dir_gfid, name, fd.as_fd(), &st, g, Origin::User)?;
            }
            drop(creating);
            gfid = g;
            if i + 1 < names.len() {
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                dir = fd;
                dir_gfid = g;
            }
        }
        Ok(gfid)
    }

    /// Records the inode with GFID `gfid` again as created now, with its data and metadata, so
    /// that the sessions send it whole as it is (`failures retry`); returns its path
    /// (relative to the brick). `ENOENT` if it has no name left.
    pub fn resend(&self, gfid: crate::types::Gfid) -> std::io::Result<std::path::PathBuf> {
        use std::os::fd::AsFd;
        let enoent = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let root = self.brick.root_fd();
        if gfid == crate::types::Gfid::ROOT {
            if let Some(rec) = &self.recorder {
                rec.meta(crate::changelog::Op::Setattr, gfid, Origin::User)?;
            }
            return Ok(std::path::PathBuf::new());
        }
        let h = self.brick.gfids.handle(&gfid).ok_or_else(enoent)?;
        let fd = match self.inodes.open_handle(&h) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESTALE) => return Err(enoent()),
            Err(e) => return Err(e),
        };
        let st = sys::fstat(fd.as_fd())?;
        if st.st_nlink == 0 || brick::read_gfid(fd.as_fd())? != Some(gfid) {
            return Err(enoent());
        }
        let at = |fd: std::os::fd::BorrowedFd<'_>| {
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))
        };
        let (me, top) = (at(fd.as_fd())?, at(root)?);
        let rel = me
            .strip_prefix(&top)
            .map_err(|_| std::io::Error::other(format!("{} is not under {}", me.display(), top.display())))?
            .to_path_buf();
        let (Some(dir), Some(name)) = (rel.parent(), rel.file_name()) else { return Err(enoent()) };
        let pfd = if dir.as_os_str().is_empty() {
            sys::reopen(root, libc::O_PATH | libc::O_DIRECTORY)?
        } else {
            sys::openat(root, dir.as_os_str(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?
        };
        let pgfid = if dir.as_os_str().is_empty() {
            crate::types::Gfid::ROOT
        } else {
            brick::read_gfid(pfd.as_fd())?.ok_or_else(enoent)?
        };
        self.record_found(pgfid, name, fd.as_fd(), &st, gfid, Origin::User)?;
        Ok(rel)
    }

    /// Publishes what is recorded and stops recording (the server's clean exit).
    pub fn shutdown(&self) {
        self.slow.shutdown();
        if let (Some(rec), Some(t)) = (&self.recorder, self.recorder_thread.lock().take())
            && let Err(e) = rec.shutdown(t)
        {
            log::error!("changelog shutdown: {e}");
        }
    }
}

impl OverlayFs {
    /// Makes the FUSE session ready for notifications from the brick's other sessions.
    pub fn ready(&self, notifier: fuser::Notifier) {
        self.sessions.ready(self.id, notifier);
    }

    /// The caller's uid as the brick sees it: under `user-map-root`, that user is root.
    fn uid(&self, req: &fuser::Request) -> u32 {
        if self.opts.map_root == Some(req.uid()) { 0 } else { req.uid() }
    }

    /// The caller's gid, mapped likewise.
    fn gid(&self, req: &fuser::Request) -> u32 {
        if self.opts.map_root == Some(req.uid()) { 0 } else { req.gid() }
    }

    /// True for names that must not exist for users: the brick's private directory.
    fn hidden(parent: u64, name: &OsStr) -> bool {
        parent == ROOT_INO && name.as_bytes() == PRIVATE_DIR.as_bytes()
    }

    /// True for names no entry may take: hidden ones, and `.gfid` at the root of an aux mount.
    fn reserved(&self, parent: u64, name: &OsStr) -> bool {
        Self::hidden(parent, name)
            || (self.opts.aux_gfid && parent == ROOT_INO && name.as_bytes() == GFID_DIR.as_bytes())
    }
}

/// The session ended (unmounted, or its connection lost): files it left open are released
/// (a writer's last DATA record), and its number is free again.
impl Drop for OverlayFs {
    fn drop(&mut self) {
        for fh in self.handles.open_handles() {
            if let Err(e) = self.do_release(fh) {
                log::warn!("release of a handle left open: {e:?}");
            }
        }
        self.sessions.detach(self.id);
    }
}
