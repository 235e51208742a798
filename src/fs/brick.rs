//! A brick on disk: its private directory, identity, lock, GFID index, and the crawl that turns
//! a plain directory into a brick by giving every inode a GFID.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::gfid_index::GfidIndex;
use super::sys;
use crate::types::{BrickLayout, Gfid, PRIVATE_DIR, VolumeId, XATTR_GFID};

#[derive(Debug, thiserror::Error)]
pub enum BrickError {
    #[error("brick {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("brick {0}: not a directory")]
    NotDir(PathBuf),
    #[error("brick {0} is already in use by another georep mount")]
    Busy(PathBuf),
    #[error("brick {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BrickError + '_ {
    move |source| BrickError::Io { path: path.to_path_buf(), source }
}

pub struct Brick {
    pub layout: BrickLayout,
    pub volume: VolumeId,
    pub root_fd: OwnedFd,
    pub gfids: GfidIndex,
    /// Holds the brick's flock for as long as the brick is open.
    _lock: nix::fcntl::Flock<File>,
}

/// The format version of the brick's id file (`<brick>/.georep/brick.id`, its `version=` line).
pub const ID_VERSION: u16 = 1;

/// Reads the GFID of the inode behind `fd`; `None` if it has none.
pub fn read_gfid(fd: BorrowedFd<'_>) -> io::Result<Option<Gfid>> {
    Ok(sys::getxattr_vec(fd, OsStr::new(XATTR_GFID))?.and_then(|v| Gfid::from_slice(&v)))
}

/// Gives the inode behind `fd` a GFID if it has none, and returns its GFID.
pub fn ensure_gfid(fd: BorrowedFd<'_>, gfids: &GfidIndex) -> io::Result<Gfid> {
    ensure_gfid_new(fd, gfids).map(|(g, _)| g)
}

/// `ensure_gfid`, and whether the GFID was given just now.
pub fn ensure_gfid_new(fd: BorrowedFd<'_>, gfids: &GfidIndex) -> io::Result<(Gfid, bool)> {
    if let Some(g) = read_gfid(fd)? {
        return Ok((g, false));
    }
    let g = Gfid::generate();
    match sys::setxattr_fd(fd, OsStr::new(XATTR_GFID), &g.0, libc::XATTR_CREATE) {
        Ok(()) => {
            gfids.add(g, fd)?;
            Ok((g, true))
        }
        // Someone else gave it one meanwhile.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok((read_gfid(fd)?.ok_or(e)?, false)),
        Err(e) => Err(e),
    }
}

fn read_id(path: &Path) -> Result<Option<VolumeId>, BrickError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut version = None;
    let mut volume = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("version", v)) => version = Some(v.trim().to_string()),
            Some(("volume-id", v)) => volume = v.trim().parse::<VolumeId>().ok(),
            _ => {}
        }
    }
    if version.as_deref() != Some(ID_VERSION.to_string().as_str()) {
        return Err(BrickError::Invalid {
            path: path.to_path_buf(),
            what: format!("unsupported brick format version {version:?}"),
        });
    }
    volume.map(Some).ok_or_else(|| BrickError::Invalid { path: path.to_path_buf(), what: "no volume-id".into() })
}

/// The volume id of the brick at `root`; `None` for a directory that is not a brick yet.
pub fn volume_of(root: &Path) -> Result<Option<VolumeId>, BrickError> {
    read_id(&BrickLayout::new(root).id_file())
}

impl Brick {
    /// Opens the brick at `root`, turning it into a brick first if it is a plain directory
    /// (`volume` is used then; a random id otherwise). Takes the brick's exclusive lock.
    pub fn open(root: &Path, volume: Option<VolumeId>) -> Result<Brick, BrickError> {
        let root = fs::canonicalize(root).map_err(io_err(root))?;
        let layout = BrickLayout::new(&root);
        let md = fs::symlink_metadata(&root).map_err(io_err(&root))?;
        if !md.is_dir() {
            return Err(BrickError::NotDir(root));
        }
        let private = layout.private();
        match fs::create_dir(&private) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&private)(e)),
        }
        fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io_err(&private))?;
        let lock_path = layout.lock_file();
        let lock =
            File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| BrickError::Busy(root.clone()))?;
        let root_fd = sys::openat(
            fs::File::open("/").map_err(io_err(&root))?.as_fd(),
            root.as_os_str(),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(io_err(&root))?;
        let gfids = GfidIndex::open(&layout.gfid_index()).map_err(io_err(&layout.gfid_index()))?;
        let id_path = layout.id_file();
        let volume = match read_id(&id_path)? {
            Some(v) => {
                reindex_if_moved(&root, root_fd.as_fd(), &gfids)?;
                gfids.sync().map_err(io_err(&layout.gfid_index()))?;
                v
            }
            None => {
                let v = volume.unwrap_or(VolumeId(Gfid::generate().0));
                // Root first, then every existing inode, then the id file: an interrupted
                // initialisation is simply redone.
                sys::setxattr_fd(root_fd.as_fd(), OsStr::new(XATTR_GFID), &Gfid::ROOT.0, 0).map_err(io_err(&root))?;
                gfids.add(Gfid::ROOT, root_fd.as_fd()).map_err(io_err(&root))?;
                walk(&root, root_fd.as_fd(), |fd| ensure_gfid(fd, &gfids).map(drop))?;
                gfids.sync().map_err(io_err(&layout.gfid_index()))?;
                let tmp = id_path.with_extension("tmp");
                fs::write(&tmp, format!("version={ID_VERSION}\nvolume-id={v}\n")).map_err(io_err(&tmp))?;
                File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
                fs::rename(&tmp, &id_path).map_err(io_err(&id_path))?;
                File::open(&private).and_then(|f| f.sync_all()).map_err(io_err(&private))?;
                v
            }
        };
        Ok(Brick { layout, volume, root_fd, gfids, _lock: lock })
    }

    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root_fd.as_fd()
    }
}

/// The GFID index holds kernel file handles, and a handle names an inode of one filesystem: a
/// brick copied elsewhere (restored from a backup, moved to another disk) brings an index
/// whose handles name nothing here, and every GFID would resolve as a deleted inode (a worker
/// would send entries without their data). The root's record tells: when it is not this
/// root's handle, every inode's handle is recorded again from the GFIDs the brick holds.
fn reindex_if_moved(root: &Path, root_fd: BorrowedFd<'_>, gfids: &GfidIndex) -> Result<(), BrickError> {
    let here = sys::name_to_handle(root_fd).map_err(io_err(root))?;
    if gfids.handle(&Gfid::ROOT).as_ref() == Some(&here) {
        return Ok(());
    }
    log::warn!(
        "{}: the GFID index was made on another copy of this brick (moved or restored): recording every inode's handle again",
        root.display()
    );
    let before = gfids.len();
    gfids.add_handle(Gfid::ROOT, &here).map_err(io_err(root))?;
    walk(root, root_fd, |fd| match read_gfid(fd)? {
        Some(g) => gfids.add(g, fd),
        // Made while nothing recorded: the first lookup adopts and records it.
        None => Ok(()),
    })?;
    log::warn!("{}: GFID index rebuilt ({} inodes known before)", root.display(), before);
    Ok(())
}

/// Depth-first walk calling `visit` with every inode under the brick's root (the private dir
/// excluded). Never follows symlinks, never leaves the brick's filesystem.
fn walk(
    root: &Path,
    root_fd: BorrowedFd<'_>,
    visit: impl Fn(BorrowedFd<'_>) -> io::Result<()>,
) -> Result<(), BrickError> {
    let dev = sys::fstat(root_fd).map_err(io_err(root))?.st_dev;
    let mut stack: Vec<(OwnedFd, PathBuf)> =
        vec![(sys::reopen(root_fd, libc::O_PATH).map_err(io_err(root))?, root.to_path_buf())];
    while let Some((dfd, dpath)) = stack.pop() {
        let mut ds = sys::DirStream::open(dfd.as_fd()).map_err(io_err(&dpath))?;
        let mut names = Vec::new();
        while let Some(e) = ds.next_entry().map_err(io_err(&dpath))? {
            let n = e.name.as_bytes();
            if n == b"." || n == b".." || (dpath == root && n == PRIVATE_DIR.as_bytes()) {
                continue;
            }
            names.push(e.name.to_os_string());
        }
        for name in names {
            let p = dpath.join(&name);
            let fd = sys::open_path(dfd.as_fd(), &name).map_err(io_err(&p))?;
            let st = sys::fstat(fd.as_fd()).map_err(io_err(&p))?;
            if st.st_dev != dev {
                continue;
            }
            visit(fd.as_fd()).map_err(io_err(&p))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                stack.push((fd, p));
            }
        }
        let _ = dfd.as_raw_fd();
    }
    Ok(())
}
