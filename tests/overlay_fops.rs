//! Every operation through a real overlay mount: the brick holds the result and the
//! changelog holds exactly the expected records.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Command;

use common::*;
use georep::changelog::{Kind, Op, record::RECORD_EXCHANGE};
use georep::types::Gfid;

const ROOT: &str = "00000000-0000-0000-0000-000000000001";

#[test]
fn create_write_records_entry_then_data() {
    let m = Mount::new("");
    fs::write(m.p("a.txt"), b"hello").unwrap();
    let g = m.gfid("a.txt");
    assert_eq!(fs::read(m.b("a.txt")).unwrap(), b"hello");
    assert_eq!(brick_gfid(&m.b("a.txt")), Some(g));
    let mode = fs::metadata(m.b("a.txt")).unwrap().mode();
    assert_eq!(m.dump(), vec![format!("E {g} CREATE {mode} 0 0 {ROOT}/a.txt"), format!("D {g}")]);
}

#[test]
fn mkdir_mknod_symlink_link() {
    let m = Mount::new("");
    fs::create_dir(m.p("d")).unwrap();
    let d = m.gfid("d");
    nix::unistd::mkfifo(&m.p("d/fifo"), nix::sys::stat::Mode::from_bits(0o640).unwrap()).unwrap();
    nix::sys::stat::mknod(
        &m.p("d/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits(0o600).unwrap(),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    symlink("../target with space", m.p("d/ln")).unwrap();
    fs::write(m.p("d/f"), b"x").unwrap();
    fs::hard_link(m.p("d/f"), m.p("hard")).unwrap();
    let (fifo, null, ln, f) = (m.gfid("d/fifo"), m.gfid("d/null"), gfid_of(&m.p("d/ln")), m.gfid("d/f"));
    assert_eq!(m.gfid("hard"), f);
    let md = |p: &str| fs::symlink_metadata(m.b(p)).unwrap();
    assert!(md("d").is_dir());
    assert_eq!(md("d/null").rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(fs::read_link(m.b("d/ln")).unwrap().to_str(), Some("../target with space"));
    assert_eq!(md("hard").ino(), md("d/f").ino());
    assert_eq!(md("hard").nlink(), 2);
    let dump = m.dump();
    assert_eq!(
        dump,
        vec![
            format!("E {d} MKDIR {} 0 0 {ROOT}/d", md("d").mode()),
            format!("E {fifo} MKNOD {} 0 0 {d}/fifo", md("d/fifo").mode()),
            format!("E {null} MKNOD {} 0 0 {d}/null", md("d/null").mode()),
            format!("E {ln} SYMLINK {d}/ln"),
            format!("E {f} CREATE {} 0 0 {d}/f", md("d/f").mode()),
            format!("D {f}"),
            format!("E {f} LINK {ROOT}/hard"),
        ]
    );
    // The symlink's target is in the record itself.
    let recs = m.records();
    let sl = recs.iter().find(|r| r.op == Op::Symlink).unwrap();
    assert_eq!(sl.entry.as_ref().unwrap().target.as_deref(), Some(std::ffi::OsStr::new("../target with space")));
    assert_eq!(md("d/fifo").mode() & 0o7777, 0o640);
}

#[test]
fn unlink_rmdir_rename() {
    let m = Mount::new("");
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/a"), b"1").unwrap();
    fs::write(m.p("b"), b"2").unwrap();
    let (d, a, b) = (m.gfid("d"), m.gfid("d/a"), m.gfid("b"));
    let before = m.records().len();
    fs::rename(m.p("d/a"), m.p("a2")).unwrap();
    fs::rename(m.p("a2"), m.p("b")).unwrap(); // over an existing name
    fs::remove_file(m.p("b")).unwrap();
    fs::remove_dir(m.p("d")).unwrap();
    assert!(!m.b("d").exists() && !m.b("b").exists() && !m.b("a2").exists());
    let _ = b;
    assert_eq!(
        m.dump()[before..],
        [
            format!("E {a} RENAME {d}/a {ROOT}/a2"),
            format!("E {a} RENAME {ROOT}/a2 {ROOT}/b"),
            format!("E {a} UNLINK {ROOT}/b"),
            format!("E {d} RMDIR {ROOT}/d"),
        ]
    );
}

fn renameat2(m: &Mount, a: &str, b: &str, flags: u32) -> std::io::Result<()> {
    let ca = std::ffi::CString::new(m.p(a).to_str().unwrap()).unwrap();
    let cb = std::ffi::CString::new(m.p(b).to_str().unwrap()).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), flags) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[test]
fn rename_noreplace_and_exchange() {
    let m = Mount::new("");
    fs::write(m.p("x"), b"x").unwrap();
    fs::create_dir(m.p("y")).unwrap();
    let (x, y) = (m.gfid("x"), m.gfid("y"));
    let before = m.records().len();
    let e = renameat2(&m, "x", "y", libc::RENAME_NOREPLACE).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    assert_eq!(m.records().len(), before, "a failed rename records nothing");
    renameat2(&m, "x", "y", libc::RENAME_EXCHANGE).unwrap();
    assert!(m.b("x").is_dir() && m.b("y").is_file());
    assert_eq!(brick_gfid(&m.b("y")), Some(x));
    let recs = m.records();
    let tail = &recs[before..];
    assert_eq!(tail.len(), 2);
    assert!(tail.iter().all(|r| r.op == Op::Rename && r.flags & RECORD_EXCHANGE != 0));
    assert_eq!(
        m.dump()[before..],
        [format!("E {x} RENAME {ROOT}/x {ROOT}/y"), format!("E {y} RENAME {ROOT}/y {ROOT}/x")]
    );
    renameat2(&m, "y", "z", libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(m.dump().last().unwrap(), &format!("E {x} RENAME {ROOT}/y {ROOT}/z"));
}

/// The GFID an unlink or rename records follows every earlier move of the name (the overlay
/// answers it from the names it has seen), also after the kernel dropped its own caches.
#[test]
fn unlink_and_rename_record_the_inode_the_name_has_now() {
    let m = Mount::new("");
    for n in ["a", "c", "e"] {
        fs::write(m.p(n), n).unwrap();
    }
    fs::create_dir(m.p("d")).unwrap();
    let (a, c, e, d) = (m.gfid("a"), m.gfid("c"), m.gfid("e"), m.gfid("d"));
    let before = m.records().len();
    fs::hard_link(m.p("a"), m.p("b")).unwrap(); // b: a's inode
    fs::rename(m.p("c"), m.p("b")).unwrap(); // b: c's inode now, a keeps its own
    renameat2(&m, "b", "e", libc::RENAME_EXCHANGE).unwrap(); // b: e's inode, e: c's inode
    fs::rename(m.p("e"), m.p("d/e")).unwrap(); // d/e: c's inode
    fs::rename(m.p("d"), m.p("d2")).unwrap();
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    fs::remove_file(m.p("d2/e")).unwrap();
    fs::remove_file(m.p("b")).unwrap();
    fs::remove_file(m.p("a")).unwrap();
    fs::remove_dir(m.p("d2")).unwrap();
    assert_eq!(
        m.dump()[before..],
        [
            format!("E {a} LINK {ROOT}/b"),
            format!("E {c} RENAME {ROOT}/c {ROOT}/b"),
            format!("E {c} RENAME {ROOT}/b {ROOT}/e"),
            format!("E {e} RENAME {ROOT}/e {ROOT}/b"),
            format!("E {c} RENAME {ROOT}/e {d}/e"),
            format!("E {d} RENAME {ROOT}/d {ROOT}/d2"),
            format!("E {c} UNLINK {d}/e"),
            format!("E {e} UNLINK {ROOT}/b"),
            format!("E {a} UNLINK {ROOT}/a"),
            format!("E {d} RMDIR {ROOT}/d2"),
        ]
    );
}

#[test]
fn setattr_truncate_and_xattrs_are_meta_and_data_once_per_file() {
    let m = Mount::new("");
    fs::write(m.p("f"), b"0123456789").unwrap();
    let g = m.gfid("f");
    // A new changelog file, so that nothing is deduplicated against the create.
    m.umount();
    m.mount();
    let before = m.records().len();
    fs::OpenOptions::new().write(true).open(m.p("f")).unwrap().set_len(3).unwrap();
    fs::set_permissions(m.p("f"), fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::chown(&m.p("f"), Some(1234.into()), Some(4321.into())).unwrap();
    let t = nix::sys::time::TimeSpec::new(1_000_000, 5);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &m.p("f"), &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .unwrap();
    xattr::set(m.p("f"), "user.k", b"v").unwrap();
    xattr::remove(m.p("f"), "user.k").unwrap();
    xattr::set(m.p("f"), "user.k2", b"v2").unwrap();
    let md = fs::metadata(m.b("f")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid(), md.len(), md.mtime()), (0o600, 1234, 4321, 3, 1_000_000));
    assert_eq!(xattr::get(m.b("f"), "user.k2").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(xattr::get(m.b("f"), "user.k").unwrap(), None);
    assert_eq!(m.dump()[before..], [format!("D {g}"), format!("M {g} SETATTR")]);
    let recs = m.records();
    assert_eq!((recs[before].kind(), recs[before + 1].kind()), (Kind::Data, Kind::Meta));
}

#[test]
fn fallocate_and_copy_file_range_are_data() {
    let m = Mount::new("");
    fs::write(m.p("src"), vec![7u8; 65536]).unwrap();
    fs::write(m.p("dst"), b"").unwrap();
    let (dst, fa) = (m.gfid("dst"), {
        fs::write(m.p("fa"), b"").unwrap();
        m.gfid("fa")
    });
    m.umount();
    m.mount();
    let before = m.records().len();
    {
        let f = fs::OpenOptions::new().read(true).write(true).open(m.p("fa")).unwrap();
        nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 1 << 20).unwrap();
    }
    {
        let s = fs::File::open(m.p("src")).unwrap();
        let d = fs::OpenOptions::new().write(true).open(m.p("dst")).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: valid descriptors, null offsets (use the file positions).
        let n = unsafe {
            libc::copy_file_range(s.as_raw_fd(), std::ptr::null_mut(), d.as_raw_fd(), std::ptr::null_mut(), 65536, 0)
        };
        assert_eq!(n, 65536);
    }
    assert_eq!(fs::metadata(m.b("fa")).unwrap().len(), 1 << 20);
    assert_eq!(fs::read(m.b("dst")).unwrap(), vec![7u8; 65536]);
    let dump = m.dump();
    assert!(dump[before..].contains(&format!("D {fa}")));
    assert!(dump[before..].contains(&format!("D {dst}")));
    assert_eq!(dump[before..].len(), 2, "{dump:?}");
}

#[test]
fn callers_credentials_own_new_entries() {
    let m = Mount::new("");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o1777)).unwrap();
    let out = run_as(
        1000,
        1000,
        &format!("cd {} && umask 027 && mkdir ud && touch ud/uf && ln -s uf ud/us && mkfifo ud/up", m.mnt.display()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (p, mode) in [("ud", 0o750), ("ud/uf", 0o640), ("ud/up", 0o640)] {
        let md = fs::symlink_metadata(m.b(p)).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1000, mode), "{p}");
    }
    assert_eq!(fs::symlink_metadata(m.b("ud/us")).unwrap().uid(), 1000);
    // Permission checks are the caller's: another user cannot write into ud.
    let out = run_as(1001, 1001, &format!("touch {}/ud/x", m.mnt.display()));
    assert!(!out.status.success());
    assert!(!m.b("ud/x").exists());
    // Set-group-ID directories give their group.
    fs::create_dir(m.p("sg")).unwrap();
    nix::unistd::chown(&m.p("sg"), None, Some(2000.into())).unwrap();
    fs::set_permissions(m.p("sg"), fs::Permissions::from_mode(0o2777)).unwrap();
    assert!(run_as(1000, 1000, &format!("touch {}/sg/f", m.mnt.display())).status.success());
    assert_eq!(fs::metadata(m.b("sg/f")).unwrap().gid(), 2000);
    let recs = m.records();
    let create = recs.iter().find(|r| r.op == Op::Create && r.entry.as_ref().unwrap().entry.name == "uf").unwrap();
    let e = create.entry.as_ref().unwrap();
    assert_eq!((e.uid, e.gid, e.mode), (1000, 1000, 0o100640));
}

#[test]
fn private_dir_and_xattrs_are_invisible_and_untouchable() {
    let m = Mount::new("");
    fs::write(m.p("f"), b"").unwrap();
    let names: Vec<_> = fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec!["f"]);
    assert_eq!(fs::metadata(m.p(".georep")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    assert!(fs::create_dir(m.p(".georep")).is_err());
    assert!(fs::rename(m.p("f"), m.p(".georep")).is_err());
    assert!(m.b("f").exists());
    let vol_xtime = xattr::list(m.b("f"))
        .unwrap()
        .find(|n| n.to_string_lossy().starts_with("trusted.georep."))
        .map(|n| n.to_owned());
    assert!(
        xattr::list(m.p("f"))
            .unwrap()
            .all(|n| !n.to_string_lossy().starts_with("trusted.georep.") && n != "trusted.gfid")
    );
    assert!(xattr::set(m.p("f"), "trusted.gfid", &[0u8; 16]).is_err());
    assert!(xattr::set(m.p("f"), "trusted.georep.x", b"1").is_err());
    if let Some(n) = vol_xtime {
        assert_eq!(xattr::get(m.p("f"), &n).unwrap(), None);
    }
    assert_eq!(brick_gfid(&m.b("f")), Some(m.gfid("f")));
    // trusted.* is the kernel's to refuse to unprivileged callers, ours to hide from listings.
    xattr::set(m.p("f"), "trusted.user", b"1").unwrap();
    let out = run_as(1000, 1000, &format!("getfattr -d -m - {}/f", m.mnt.display()));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("trusted."));
}

#[test]
fn names_of_any_bytes_are_escaped_in_dump() {
    use std::os::unix::ffi::OsStrExt;
    let m = Mount::new("");
    let name = std::ffi::OsStr::from_bytes(b"a b\n%c\xff");
    fs::write(m.mnt.join(name), b"").unwrap();
    assert!(m.brick.join(name).exists());
    let g = gfid_of(&m.mnt.join(name));
    let mode = fs::metadata(m.brick.join(name)).unwrap().mode();
    let line = m.records().iter().map(georep::changelog::dump::format_record).next().unwrap();
    let mut want = format!("E {g} CREATE {mode} 0 0 {ROOT}/a%20b%0A%25c").into_bytes();
    want.push(0xff);
    assert_eq!(line, want);
}

#[test]
fn existing_directory_becomes_a_brick_and_gfids_resolve() {
    require_root();
    let dir = tempfile::Builder::new().prefix("georep-test-").tempdir().unwrap();
    let brick = dir.path().join("brick");
    fs::create_dir_all(brick.join("a/b")).unwrap();
    fs::write(brick.join("a/b/f"), b"data").unwrap();
    fs::hard_link(brick.join("a/b/f"), brick.join("a/h")).unwrap();
    symlink("nowhere", brick.join("a/dangling")).unwrap();
    let m = Mount::on(dir, brick, "");
    for p in ["a", "a/b", "a/b/f", "a/h", "a/dangling"] {
        assert!(brick_gfid(&m.b(p)).is_some(), "{p} has no gfid");
    }
    assert_eq!(brick_gfid(&m.b("")), Some(Gfid::ROOT));
    assert_eq!(brick_gfid(&m.b("a/h")), brick_gfid(&m.b("a/b/f")));
    assert_eq!(m.gfid("a/b/f"), brick_gfid(&m.b("a/b/f")).unwrap());
    // Resolve by GFID, after a rename through the mount.
    fs::rename(m.p("a/b/f"), m.p("a/moved")).unwrap();
    let g = m.gfid("a/moved");
    let out = Command::new(georep_bin()).args(["brick", "resolve"]).arg(&m.brick).arg(g.to_string()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = String::from_utf8(out.stdout).unwrap();
    assert!(p.trim_end().ends_with("/brick/a/moved") || p.trim_end().ends_with("/brick/a/h"), "{p}");
    let out = Command::new(georep_bin())
        .args(["brick", "resolve"])
        .arg(&m.brick)
        .arg(Gfid::generate().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn large_directory_lists_every_entry_once() {
    let m = Mount::new("");
    fs::create_dir(m.p("big")).unwrap();
    let n = 100_000;
    for i in 0..n {
        fs::File::create(m.p(&format!("big/file-{i:06}"))).unwrap();
    }
    let mut names: Vec<_> = fs::read_dir(m.p("big")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), n);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    // More inodes than the daemon keeps descriptors for: stat reopens evicted ones by handle.
    for (i, name) in names.iter().enumerate().step_by(7) {
        let md = fs::symlink_metadata(m.p("big").join(name)).unwrap();
        assert!(md.is_file(), "{i}");
    }
    let out = Command::new("ls").arg("-l").arg(m.p("big")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n + 1);
    let creates = m.records().iter().filter(|r| r.op == Op::Create).count();
    assert_eq!(creates, n);
}

#[test]
fn unmount_publishes_and_remount_continues_the_sequence() {
    let m = Mount::new("");
    fs::write(m.p("one"), b"1").unwrap();
    m.umount();
    assert!(!is_mounted(&m.mnt));
    let snap = georep::changelog::history::read_index(&m.layout().changelog_dir().join("history.idx")).unwrap();
    assert_eq!(snap.entries.len(), 1);
    assert!(!snap.entries[0].is_unclean());
    let actives = fs::read_dir(m.layout().changelog_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("current."))
        .count();
    assert_eq!(actives, 0, "a clean unmount leaves no active file");
    m.mount();
    fs::write(m.p("two"), b"2").unwrap();
    let recs = m.records();
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..recs.len() as u64).collect::<Vec<_>>());
    let mut f = fs::OpenOptions::new().append(true).open(m.p("one")).unwrap();
    f.write_all(b"more").unwrap();
    drop(f);
    assert_eq!(fs::read(m.b("one")).unwrap(), b"1more");
}

#[test]
fn unprivileged_write_clears_set_id_bits_as_ext4_does() {
    let m = Mount::new("");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    // (mode before, owner group, mode after a write by uid 1001 gid 1001)
    for (i, (before, group, after)) in
        [(0o6777, 1000, 0o777), (0o6767, 1000, 0o767), (0o2767, 1001, 0o2767), (0o4755, 1000, 0o4755)]
            .iter()
            .enumerate()
    {
        let f = format!("s{i}");
        fs::write(m.p(&f), b"").unwrap();
        nix::unistd::chown(&m.p(&f), Some(1000.into()), Some((*group).into())).unwrap();
        fs::set_permissions(m.p(&f), fs::Permissions::from_mode(*before)).unwrap();
        let _ = run_as(1001, 1001, &format!("echo x >> {}", m.p(&f).display()));
        assert_eq!(fs::metadata(m.b(&f)).unwrap().mode() & 0o7777, *after, "mode {before:o}");
    }
}
