//! POSIX behaviour pjdfstest does not cover, through a real overlay mount: mmap, O_DIRECT,
//! POSIX and flock locks, SEEK_DATA/SEEK_HOLE, ACL enforcement, statfs, xattr namespaces,
//! read-only mounts.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::process::Command;

use common::*;
use georep::changelog::Kind;

#[test]
fn mmap_writes_reach_the_brick_and_are_recorded() {
    let m = Mount::new("");
    fs::write(m.p("map"), vec![0u8; 8192]).unwrap();
    let g = m.gfid("map");
    m.umount();
    m.mount();
    let before = m.records().len();
    {
        let f = fs::OpenOptions::new().read(true).write(true).open(m.p("map")).unwrap();
        // SAFETY: the file is 8192 bytes long and stays open while mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap();
        map[100..105].copy_from_slice(b"hello");
        map.flush().unwrap();
    }
    assert_eq!(&fs::read(m.b("map")).unwrap()[100..105], b"hello");
    let recs = m.records();
    assert!(recs[before..].iter().any(|r| r.kind() == Kind::Data && r.gfid == g), "mmap store not recorded");
}

#[test]
fn o_direct_reads_and_writes() {
    let m = Mount::new("");
    let mut f =
        fs::OpenOptions::new().create(true).read(true).write(true).custom_flags(libc::O_DIRECT).open(m.p("d")).unwrap();
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: layout is non-zero sized; the buffer is freed below.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: p points to 4096 writable bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(p, 4096) };
    buf[..4].copy_from_slice(b"dio!");
    f.write_all(buf).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    buf.fill(0);
    f.read_exact(buf).unwrap();
    assert_eq!(&buf[..4], b"dio!");
    // SAFETY: allocated above with the same layout.
    unsafe { std::alloc::dealloc(p, layout) };
    assert_eq!(&fs::read(m.b("d")).unwrap()[..4], b"dio!");
}

#[test]
fn posix_and_flock_locks_exclude_other_processes() {
    let m = Mount::new("");
    fs::write(m.p("lock"), b"x").unwrap();
    let f = fs::OpenOptions::new().read(true).write(true).open(m.p("lock")).unwrap();
    nix::fcntl::Flock::lock(f.try_clone().unwrap(), nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map(std::mem::forget)
        .unwrap();
    let out = Command::new("flock").args(["-n", "-x"]).arg(m.p("lock")).arg("true").status().unwrap();
    assert!(!out.success(), "flock must conflict");
    let lk =
        libc::flock { l_type: libc::F_WRLCK as i16, l_whence: libc::SEEK_SET as i16, l_start: 0, l_len: 1, l_pid: 0 };
    // SAFETY: valid descriptor and flock struct.
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &lk) }, 0);
    // Another process sees the POSIX lock (python's fcntl.lockf is F_SETLK).
    let out = Command::new("python3")
        .args(["-c", "import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB, 1, 0)"])
        .arg(m.p("lock"))
        .status()
        .unwrap();
    assert!(!out.success(), "POSIX lock must conflict");
}

#[test]
fn seek_data_and_hole() {
    let m = Mount::new("");
    let mut f = fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.p("sparse")).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    // SAFETY: valid descriptor.
    let data = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
    // SAFETY: valid descriptor.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    assert_eq!(hole, 0);
    assert!(((1 << 20) - 4096..=1 << 20).contains(&data), "{data}");
}

#[test]
fn acls_are_enforced_and_inherited() {
    let m = Mount::new("");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(m.p("acl")).unwrap();
    fs::set_permissions(m.p("acl"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(m.p("acl/f"), b"secret").unwrap();
    fs::set_permissions(m.p("acl/f"), fs::Permissions::from_mode(0o600)).unwrap();
    let cat = format!("cat {}", m.p("acl/f").display());
    assert!(!run_as(1000, 1000, &cat).status.success());
    for (p, spec) in [("acl", "u:1000:rx"), ("acl/f", "u:1000:r")] {
        assert!(Command::new("setfacl").args(["-m", spec]).arg(m.p(p)).status().unwrap().success());
    }
    let out = run_as(1000, 1000, &cat);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"secret");
    assert!(!run_as(1001, 1001, &cat).status.success());
    // The ACL is on the brick; a default ACL is inherited by new entries.
    let acl = Command::new("getfacl").arg("-cn").arg(m.b("acl/f")).output().unwrap();
    assert!(String::from_utf8_lossy(&acl.stdout).contains("user:1000:r--"));
    assert!(Command::new("setfacl").args(["-d", "-m", "u:1002:rw"]).arg(m.p("acl")).status().unwrap().success());
    fs::write(m.p("acl/new"), b"").unwrap();
    let acl = Command::new("getfacl").arg("-cn").arg(m.p("acl/new")).output().unwrap();
    assert!(String::from_utf8_lossy(&acl.stdout).contains("user:1002:rw-"), "{}", String::from_utf8_lossy(&acl.stdout));
}

#[test]
fn statfs_is_the_bricks() {
    let m = Mount::new("");
    let a = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    let b = nix::sys::statvfs::statvfs(&m.brick).unwrap();
    assert_eq!(a.blocks(), b.blocks());
    assert_eq!(a.files(), b.files());
    assert_eq!(a.name_max(), b.name_max());
}

#[test]
fn xattr_namespaces() {
    let m = Mount::new("");
    fs::write(m.p("x"), b"").unwrap();
    for (k, v) in [("user.a", &b"1"[..]), ("trusted.b", b"2"), ("security.c", b"3")] {
        xattr::set(m.p("x"), k, v).unwrap();
        assert_eq!(xattr::get(m.b("x"), k).unwrap().as_deref(), Some(v), "{k}");
        assert_eq!(xattr::get(m.p("x"), k).unwrap().as_deref(), Some(v), "{k}");
    }
    // Unprivileged callers cannot set trusted.* (the kernel's rule, kept).
    let out = run_as(1000, 1000, &format!("setfattr -n trusted.z -v 1 {}", m.p("x").display()));
    assert!(!out.status.success());
    // XATTR_CREATE / XATTR_REPLACE are honoured.
    let c = std::ffi::CString::new(m.p("x").to_str().unwrap()).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(c.as_ptr(), c"user.a".as_ptr(), b"9".as_ptr().cast(), 1, libc::XATTR_CREATE) };
    assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EEXIST)));
    // SAFETY: as above.
    let r = unsafe { libc::setxattr(c.as_ptr(), c"user.none".as_ptr(), b"9".as_ptr().cast(), 1, libc::XATTR_REPLACE) };
    assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ENODATA)));
}

#[test]
fn read_only_mount_refuses_changes_and_records_nothing() {
    let m = Mount::new("");
    fs::write(m.p("f"), b"1").unwrap();
    m.umount();
    let ro = Mount {
        dir: tempfile::tempdir().unwrap(),
        brick: m.brick.clone(),
        mnt: m.mnt.clone(),
        opts: "ro,rollover-time=600".into(),
    };
    ro.mount();
    let before = ro.records().len();
    assert_eq!(fs::read(ro.p("f")).unwrap(), b"1");
    assert_eq!(fs::write(ro.p("g"), b"").unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert_eq!(fs::remove_file(ro.p("f")).unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert_eq!(ro.records().len(), before);
    ro.umount();
    std::mem::forget(ro);
}

#[test]
fn bad_mount_requests_fail_with_one_line_and_change_nothing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    for (src, opts, want) in [
        (dir.path().join("missing"), "", "No such file"),
        (file.clone(), "", "not a directory"),
        (dir.path().to_path_buf(), "bogus=1", "unknown mount option"),
        (dir.path().to_path_buf(), "rollover-time=-1", "out of range"),
        (dir.path().to_path_buf(), "threads=0", "out of range"),
    ] {
        let out = Command::new(mount_bin())
            .arg(&src)
            .arg(&mnt)
            .arg("-o")
            .arg(opts)
            .env("GEOREP_LOG_DIR", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{src:?} {opts}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!is_mounted(&mnt));
    }
    assert!(!dir.path().join("missing").exists());
    // A brick is served by one daemon at a time: a second mount joins it, and a mount point
    // inside the brick is refused by it.
    let brick = dir.path().join("b");
    fs::create_dir(&brick).unwrap();
    let m = Mount::on(tempfile::tempdir().unwrap(), brick.clone(), "");
    let mnt2 = brick.join("inside");
    fs::create_dir(&mnt2).unwrap();
    let out = Command::new(mount_bin()).arg(&brick).arg(&mnt2).env("GEOREP_LOG_DIR", dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is inside the brick"), "{err}");
    assert!(!is_mounted(&mnt2));
    drop(m);
}
