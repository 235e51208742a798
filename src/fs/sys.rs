//! Thin, safe wrappers over the system calls the overlay needs that `std` and `nix` lack or
//! make awkward (O_PATH handles, `/proc/self/fd` re-opens, xattrs on any inode, file handles,
//! directory streams, per-thread umask). All `unsafe` of the crate lives here.

#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// A name as a C string: on the stack up to NAME_MAX bytes (any name a directory holds), so
/// that a syscall on a name allocates nothing; on the heap beyond (paths). Large on purpose:
/// it lives on the stack for the length of one call.
#[allow(clippy::large_enum_variant)]
enum CName {
    Stack([u8; 256]),
    Heap(CString),
}

impl CName {
    fn as_ptr(&self) -> *const libc::c_char {
        match self {
            CName::Stack(b) => b.as_ptr().cast(),
            CName::Heap(c) => c.as_ptr(),
        }
    }
}

fn cstr(name: &OsStr) -> io::Result<CName> {
    let b = name.as_bytes();
    let einval = || io::Error::from_raw_os_error(libc::EINVAL);
    if b.len() < 256 {
        let mut buf = [0u8; 256];
        buf[..b.len()].copy_from_slice(b);
        // Refuses an interior NUL, as CString::new does.
        CStr::from_bytes_with_nul(&buf[..=b.len()]).map_err(|_| einval())?;
        return Ok(CName::Stack(buf));
    }
    CString::new(b).map(CName::Heap).map_err(|_| einval())
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn check_size(r: isize) -> io::Result<usize> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
}

/// `/proc/self/fd/<fd>`: reaches the inode behind an O_PATH descriptor with path-based calls.
pub fn proc_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).unwrap()
}

pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid C string; the returned descriptor is owned by the caller.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An O_PATH handle on `name` in `dir`, not following a final symlink.
pub fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
}

/// Opens the inode behind `fd` (often O_PATH) anew with `flags`.
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
    let p = proc_path(fd.as_raw_fd());
    // SAFETY: valid C string; the returned descriptor is owned by the caller.
    let fd = check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn fstatat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid out-pointer of the right type.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded and filled st.
    Ok(unsafe { st.assume_init() })
}

/// stat of the inode behind `fd` itself (works on O_PATH and symlink handles).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: st is a valid out-pointer of the right type; the name is a static C string.
    check(unsafe { libc::fstatat(fd.as_raw_fd(), c"".as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded and filled st.
    Ok(unsafe { st.assume_init() })
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, rdev) }).map(drop)
}

pub fn symlinkat(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }).map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

pub fn renameat2(od: BorrowedFd<'_>, on: &OsStr, nd: BorrowedFd<'_>, nn: &OsStr, flags: u32) -> io::Result<()> {
    let a = cstr(on)?;
    let b = cstr(nn)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::renameat2(od.as_raw_fd(), a.as_ptr(), nd.as_raw_fd(), b.as_ptr(), flags) }).map(drop)
}

/// A new name `name` in `dir` for the inode behind `fd`.
pub fn linkat_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let p = proc_path(fd.as_raw_fd());
    let c = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::linkat(libc::AT_FDCWD, p.as_ptr(), dir.as_raw_fd(), c.as_ptr(), libc::AT_SYMLINK_FOLLOW) })
        .map(drop)
}

pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is valid for buf.len() bytes; "" with an O_PATH symlink fd reads that link.
    let n = check_size(unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf)
}

pub fn fchown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let u = uid.unwrap_or(u32::MAX);
    let g = gid.unwrap_or(u32::MAX);
    // SAFETY: "" with AT_EMPTY_PATH acts on fd itself.
    check(unsafe {
        libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), u, g, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
    })
    .map(drop)
}

pub fn fchmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let p = proc_path(fd.as_raw_fd());
    // SAFETY: valid C string.
    check(unsafe { libc::fchmodat(libc::AT_FDCWD, p.as_ptr(), mode, 0) }).map(drop)
}

/// Sets atime/mtime of the inode behind `fd` (symlinks included); `None` leaves one alone.
pub fn utimens_fd(fd: BorrowedFd<'_>, atime: Option<libc::timespec>, mtime: Option<libc::timespec>) -> io::Result<()> {
    let omit = libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT };
    let ts = [atime.unwrap_or(omit), mtime.unwrap_or(omit)];
    // SAFETY: ts is a valid array of two timespecs; "" with AT_EMPTY_PATH acts on fd itself.
    let r = unsafe {
        libc::utimensat(fd.as_raw_fd(), c"".as_ptr(), ts.as_ptr(), libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
    };
    if r == 0 {
        return Ok(());
    }
    let p = proc_path(fd.as_raw_fd());
    // SAFETY: as above, through the /proc path.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) }).map(drop)
}

/// Writes all of `buf` at the descriptor's position.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads from offset 0 until the end of the file or `limit` bytes (then one more, so that the
/// caller sees it went over). `expect` is the size the caller expects (the buffer's start).
pub fn read_up_to(fd: BorrowedFd<'_>, expect: usize, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; expect.min(limit) + 1];
    let mut n = 0;
    loop {
        if n == buf.len() {
            if n > limit {
                break;
            }
            buf.resize((n * 2).min(limit + 1), 0);
        }
        match nix::sys::uio::pread(fd, &mut buf[n..], n as i64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

// The xattr calls try the descriptor itself first, and go through its /proc path when it is an
// O_PATH descriptor (EBADF): one failed call costs less than a path walk saves.

fn is_ebadf<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EBADF))
}

pub fn getxattr_fd(fd: BorrowedFd<'_>, name: &OsStr, buf: &mut [u8]) -> io::Result<usize> {
    let n = cstr(name)?;
    // SAFETY: buf is valid for buf.len() bytes (a zero length asks for the size).
    let r = check_size(unsafe { libc::fgetxattr(fd.as_raw_fd(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) });
    if !is_ebadf(&r) {
        return r;
    }
    let p = proc_path(fd.as_raw_fd());
    // SAFETY: as above, through the /proc path.
    check_size(unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// The whole value of xattr `name`, or `None` if absent.
pub fn getxattr_vec(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match getxattr_fd(fd, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                let n = getxattr_fd(fd, name, &mut [])?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn setxattr_fd(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: value is valid for value.len() bytes.
    let r = check(unsafe { libc::fsetxattr(fd.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) });
    if !is_ebadf(&r) {
        return r.map(drop);
    }
    let p = proc_path(fd.as_raw_fd());
    // SAFETY: as above, through the /proc path.
    check(unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) }).map(drop)
}

pub fn listxattr_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let r = check_size(unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) });
    if !is_ebadf(&r) {
        return r;
    }
    let p = proc_path(fd.as_raw_fd());
    // SAFETY: as above, through the /proc path.
    check_size(unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// The names of an inode's xattrs.
pub fn list_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 4096];
    let n = loop {
        match listxattr_fd(fd, &mut buf) {
            Ok(n) => break n,
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                let need = listxattr_fd(fd, &mut [])?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| OsStr::from_bytes(s).to_os_string()).collect())
}

pub fn removexattr_fd(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let p = proc_path(fd.as_raw_fd());
    let n = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) }).map(drop)
}

/// An opaque, persistent handle of an inode (`name_to_handle_at`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileHandle {
    pub handle_type: i32,
    pub bytes: Vec<u8>,
}

pub const MAX_HANDLE_SZ: usize = 128;

#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

pub fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    name_to_handle_at(fd, OsStr::new(""))
}

/// The handle of `name` in `dir` (of `dir` itself if `name` is empty); never follows a final
/// symlink.
pub fn name_to_handle_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileHandle> {
    let c = cstr(name)?;
    let flags = if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
    let mut h = RawHandle { handle_bytes: MAX_HANDLE_SZ as u32, handle_type: 0, f_handle: [0; MAX_HANDLE_SZ] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: h is a properly sized file_handle buffer; c is a valid C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut h as *mut RawHandle,
            &mut mount_id as *mut libc::c_int,
            flags,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (h.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok(FileHandle { handle_type: h.handle_type, bytes: h.f_handle[..n].to_vec() })
}

/// Opens an inode by handle; `mount_fd` is any descriptor on the same filesystem.
/// Needs CAP_DAC_READ_SEARCH. A deleted inode gives ESTALE.
pub fn open_by_handle(mount_fd: BorrowedFd<'_>, h: &FileHandle, flags: i32) -> io::Result<OwnedFd> {
    if h.bytes.len() > MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut raw =
        RawHandle { handle_bytes: h.bytes.len() as u32, handle_type: h.handle_type, f_handle: [0; MAX_HANDLE_SZ] };
    raw.f_handle[..h.bytes.len()].copy_from_slice(&h.bytes);
    // SAFETY: raw is a valid file_handle; the result is a new descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut raw as *mut RawHandle,
            flags | libc::O_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// A directory stream with stable `telldir` cookies as readdir offsets.
pub struct DirStream {
    dir: *mut libc::DIR,
}

// SAFETY: the DIR* is only used through &mut self (callers hold a lock).
unsafe impl Send for DirStream {}

pub struct DirEntry<'a> {
    pub ino: u64,
    /// Cookie of the position after this entry.
    pub next_off: u64,
    pub d_type: u8,
    pub name: &'a OsStr,
}

impl DirStream {
    /// Opens a stream over the directory behind `fd`.
    pub fn open(fd: BorrowedFd<'_>) -> io::Result<DirStream> {
        let own = openat(fd, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let raw = std::os::fd::IntoRawFd::into_raw_fd(own);
        // SAFETY: raw is a valid directory descriptor; fdopendir takes ownership on success.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so raw is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        Ok(DirStream { dir })
    }

    pub fn seek(&mut self, off: u64) {
        // SAFETY: self.dir is a live DIR*.
        unsafe { libc::seekdir(self.dir, off as libc::c_long) }
    }

    pub fn tell(&mut self) -> u64 {
        // SAFETY: self.dir is a live DIR*.
        unsafe { libc::telldir(self.dir) as u64 }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the DIR*'s descriptor lives as long as self.
        unsafe { BorrowedFd::borrow_raw(libc::dirfd(self.dir)) }
    }

    pub fn next_entry(&mut self) -> io::Result<Option<DirEntry<'_>>> {
        // SAFETY: errno is thread-local; reset to tell end-of-stream from error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: self.dir is a live DIR*.
        let ent = unsafe { libc::readdir64(self.dir) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(0) { Ok(None) } else { Err(e) };
        }
        // SAFETY: ent points to a valid dirent64 until the next readdir on this stream, which
        // needs &mut self, so the borrow rules keep the name alive long enough.
        let ent = unsafe { &*ent };
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr(ent.d_name.as_ptr()) };
        Ok(Some(DirEntry {
            ino: ent.d_ino,
            next_off: ent.d_off as u64,
            d_type: ent.d_type,
            name: OsStr::from_bytes(name.to_bytes()),
        }))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: self.dir is live and closed exactly once.
        unsafe { libc::closedir(self.dir) };
    }
}

thread_local! {
    static OWN_FS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static UMASK: std::cell::Cell<u32> = const { std::cell::Cell::new(u32::MAX) };
}

/// Sets the calling thread's umask, first giving the thread its own fs context so that other
/// threads are not affected (`unshare(CLONE_FS)`).
pub fn set_thread_umask(mask: u32) -> io::Result<()> {
    if !OWN_FS.get() {
        // SAFETY: unshare with CLONE_FS only affects this thread's fs context.
        check(unsafe { libc::unshare(libc::CLONE_FS) })?;
        OWN_FS.set(true);
    }
    if UMASK.get() != mask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
        UMASK.set(mask);
    }
    Ok(())
}

/// While alive, new inodes made by this thread get group `gid` (or their directory's group
/// under set-group-ID), as the kernel gives them; the thread stays root for everything else
/// (`setfsgid` changes no capability). Dropping it restores group 0. For group 0 it changes
/// nothing (each `setfsgid` makes and drops a set of credentials, even a no-op one).
pub struct CreateAs {
    switched: bool,
}

impl CreateAs {
    pub fn new(gid: u32, umask: u32) -> io::Result<CreateAs> {
        set_thread_umask(umask)?;
        let switched = gid != 0;
        if switched {
            // SAFETY: setfsgid only changes this thread's filesystem group id.
            unsafe { libc::setfsgid(gid) };
        }
        Ok(CreateAs { switched })
    }
}

impl Drop for CreateAs {
    fn drop(&mut self) {
        if self.switched {
            // SAFETY: as above.
            unsafe { libc::setfsgid(0) };
        }
    }
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) }).map(drop)
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain syscall on a valid descriptor.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

pub fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
    flags: u32,
) -> io::Result<usize> {
    let mut oi = off_in as libc::loff_t;
    let mut oo = off_out as libc::loff_t;
    // SAFETY: offsets are valid out-pointers; descriptors are valid.
    check_size(unsafe {
        libc::copy_file_range(fd_in.as_raw_fd(), &mut oi, fd_out.as_raw_fd(), &mut oo, len as usize, flags)
    })
}

pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: st is a valid out-pointer.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded.
    Ok(unsafe { st.assume_init() })
}

/// Result of `fork` for the caller.
pub enum Forked {
    Parent(i32),
    Child,
}

/// Forks the process. Call only while single-threaded (before any thread is spawned).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the callers (mount.georep before mounting) are single-threaded, so the child
    // cannot inherit locks held by other threads.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Makes `fd` the descriptor `target` (dup2).
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall; target is a standard descriptor number we mean to replace.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Raises the open-file limit as far as the system allows (`fs.nr_open`): the overlay holds
/// one descriptor per inode the kernel has cached. Returns the new limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let max: u64 =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: lim is a valid out-pointer.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    let want = libc::rlimit { rlim_cur: max.max(lim.rlim_cur), rlim_max: max.max(lim.rlim_max) };
    // SAFETY: want is a valid rlimit. Raising the hard limit needs CAP_SYS_RESOURCE; without
    // it, fall back to the current hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return Ok(want.rlim_cur);
    }
    let soft = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    // SAFETY: as above.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) })?;
    Ok(soft.rlim_cur)
}

/// The current soft limit of open files.
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: lim is a valid out-pointer.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim.rlim_cur)
}
