//! The `.gfid/` namespace of an aux-gfid mount: resolution by GFID, creation with a chosen
//! GFID, and its refusals.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use georep::changelog::Op;
use georep::fs::newentry::{Content, NewEntry, XATTR_NEWFILE, encode_batch};
use georep::types::Gfid;

fn newfile(m: &Mount, pgfid: Gfid, e: &NewEntry) -> std::io::Result<()> {
    xattr::set(m.p(&format!(".gfid/{pgfid}")), XATTR_NEWFILE, &e.encode())
}

fn entry(name: &str, mode: u32) -> NewEntry {
    NewEntry {
        gfid: Gfid::generate(),
        mode,
        uid: 1234,
        gid: 5678,
        rdev: 0,
        name: name.into(),
        target: None,
        content: None,
    }
}

#[test]
fn gfid_paths_resolve_to_the_same_inodes() {
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"content").unwrap();
    let (d, f) = (m.gfid("d"), m.gfid("d/f"));
    let by_gfid = m.p(&format!(".gfid/{f}"));
    assert_eq!(fs::read(&by_gfid).unwrap(), b"content");
    assert_eq!(fs::metadata(&by_gfid).unwrap().ino(), fs::metadata(m.p("d/f")).unwrap().ino());
    assert_eq!(fs::read(m.p(&format!(".gfid/{d}/f"))).unwrap(), b"content");
    assert!(m.p(&format!(".gfid/{}", Gfid::ROOT)).join("d").is_dir());
    // Renamed: still the same GFID path.
    fs::rename(m.p("d/f"), m.p("g")).unwrap();
    assert_eq!(fs::read(&by_gfid).unwrap(), b"content");
    // Hard link and rename by GFID paths.
    fs::hard_link(&by_gfid, m.p(&format!(".gfid/{d}/hl"))).unwrap();
    assert_eq!(m.gfid("d/hl"), f);
    fs::rename(m.p(&format!(".gfid/{d}/hl")), m.p(&format!(".gfid/{}/top", Gfid::ROOT))).unwrap();
    assert_eq!(brick_gfid(&m.b("top")), Some(f));
    // Unknown or malformed GFIDs are simply absent; deleted ones too.
    assert!(!m.p(&format!(".gfid/{}", Gfid::generate())).exists());
    assert!(!m.p(".gfid/not-a-gfid").exists());
    fs::remove_file(m.p("g")).unwrap();
    fs::remove_file(m.p("top")).unwrap();
    assert!(!by_gfid.exists());
}

#[test]
fn newfile_creates_entries_with_chosen_gfid_owner_and_exact_mode() {
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::create_dir(m.p("p")).unwrap();
    let p = m.gfid("p");
    let before = m.records().len();
    let f = entry("file", libc::S_IFREG | 0o4750);
    let d = entry("dir", libc::S_IFDIR | 0o2711);
    let s = NewEntry { target: Some("../somewhere".into()), ..entry("link", libc::S_IFLNK | 0o777) };
    let q = entry("fifo", libc::S_IFIFO | 0o600);
    for e in [&f, &d, &s, &q] {
        newfile(&m, p, e).unwrap_or_else(|err| panic!("{:?}: {err}", e.name));
        let path = m.b(&format!("p/{}", e.name.to_string_lossy()));
        let md = fs::symlink_metadata(&path).unwrap();
        assert_eq!(brick_gfid(&path), Some(e.gfid));
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{:?}", e.name);
        if !e.is_symlink() {
            assert_eq!(md.mode(), e.mode, "{:?}: {:o}", e.name, md.mode());
        }
        // Visible through the mount, by name and by GFID, at once.
        assert_eq!(m.gfid(&format!("p/{}", e.name.to_string_lossy())), e.gfid);
        assert!(fs::symlink_metadata(m.p(&format!(".gfid/{}", e.gfid))).is_ok());
    }
    assert_eq!(fs::read_link(m.b("p/link")).unwrap().to_str(), Some("../somewhere"));
    // Recorded with the chosen GFIDs (the secondary's changelog feeds cascading).
    let recs = m.records();
    let ops: Vec<(Op, Gfid)> = recs[before..].iter().map(|r| (r.op, r.gfid)).collect();
    assert_eq!(ops, vec![(Op::Create, f.gfid), (Op::Mkdir, d.gfid), (Op::Symlink, s.gfid), (Op::Mknod, q.gfid)]);
    // The same name, or the same GFID elsewhere: EEXIST, and nothing changes.
    let again = NewEntry { gfid: Gfid::generate(), ..f.clone() };
    assert_eq!(newfile(&m, p, &again).unwrap_err().raw_os_error(), Some(libc::EEXIST));
    let dup = NewEntry { name: "other".into(), ..f.clone() };
    assert_eq!(newfile(&m, p, &dup).unwrap_err().raw_os_error(), Some(libc::EEXIST));
    assert!(!m.b("p/other").exists());
    assert_eq!(m.records().len(), recs.len());
}

#[test]
fn newfile_creates_whole_small_files() {
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    let before = m.records().len();
    let f = NewEntry {
        content: Some(Content {
            atime_ns: 1_600_000_000_123_456_789,
            mtime_ns: 1_500_000_000_000_000_001,
            data: b"small file".to_vec(),
            xattrs: vec![("user.a".into(), b"1".to_vec()), ("trusted.t".into(), b"2".to_vec())],
        }),
        ..entry("whole", libc::S_IFREG | 0o4750)
    };
    newfile(&m, Gfid::ROOT, &f).unwrap();
    let md = fs::metadata(m.b("whole")).unwrap();
    assert_eq!(fs::read(m.b("whole")).unwrap(), b"small file");
    assert_eq!((md.uid(), md.gid(), md.mode()), (1234, 5678, libc::S_IFREG | 0o4750));
    assert_eq!(
        (md.atime(), md.atime_nsec(), md.mtime(), md.mtime_nsec()),
        (1_600_000_000, 123_456_789, 1_500_000_000, 1)
    );
    assert_eq!(xattr::get(m.b("whole"), "user.a").unwrap().unwrap(), b"1");
    assert_eq!(xattr::get(m.b("whole"), "trusted.t").unwrap().unwrap(), b"2");
    assert_eq!(brick_gfid(&m.b("whole")), Some(f.gfid));
    // Recorded whole: a cascaded session sends it on.
    let ops: Vec<(Op, Gfid)> = m.records()[before..].iter().map(|r| (r.op, r.gfid)).collect();
    assert_eq!(ops, vec![(Op::Create, f.gfid), (Op::Write, f.gfid), (Op::Setattr, f.gfid)]);
    // georep's own xattrs cannot be smuggled in.
    for bad in ["trusted.gfid", "trusted.georep.x"] {
        let e = NewEntry {
            content: Some(Content {
                atime_ns: 0,
                mtime_ns: 0,
                data: vec![],
                xattrs: vec![(bad.into(), b"x".to_vec())],
            }),
            ..entry("bad", libc::S_IFREG | 0o644)
        };
        assert_eq!(newfile(&m, Gfid::ROOT, &e).unwrap_err().raw_os_error(), Some(libc::EPERM), "{bad}");
        assert!(!m.b("bad").exists());
    }
}

#[test]
fn newfile_batches_stop_at_the_first_failure() {
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::write(m.p("taken"), b"x").unwrap();
    let whole = |name: &str| NewEntry {
        content: Some(Content { atime_ns: 0, mtime_ns: 0, data: name.as_bytes().to_vec(), xattrs: vec![] }),
        ..entry(name, libc::S_IFREG | 0o644)
    };
    let (a, b, c, d) = (whole("a"), whole("b"), whole("taken"), whole("d"));
    let reqs: Vec<Vec<u8>> = [&a, &b, &c, &d].iter().map(|e| e.encode()).collect();
    let batch = encode_batch(reqs.iter().map(|r| r.as_slice()));
    let err = xattr::set(m.p(&format!(".gfid/{}", Gfid::ROOT)), XATTR_NEWFILE, &batch).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    assert_eq!(fs::read(m.b("a")).unwrap(), b"a");
    assert_eq!(fs::read(m.b("b")).unwrap(), b"b");
    assert_eq!(fs::read(m.b("taken")).unwrap(), b"x", "untouched");
    assert!(!m.b("d").exists(), "nothing after the failure");
    let mut bad = batch.clone();
    bad.truncate(bad.len() - 3);
    assert!(xattr::set(m.p(&format!(".gfid/{}", Gfid::ROOT)), XATTR_NEWFILE, &bad).is_err());
}

#[test]
fn refusals() {
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::create_dir(m.p("p")).unwrap();
    let p = m.gfid("p");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    // A bad request: one clear error, nothing created.
    let mut bad = entry("x", libc::S_IFREG | 0o644).encode();
    bad[0] = 9;
    assert_eq!(
        xattr::set(m.p(&format!(".gfid/{p}")), XATTR_NEWFILE, &bad).unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    for name in ["..", "a/b", ".georep"] {
        let e = entry(name, libc::S_IFREG | 0o644);
        let root = if name == ".georep" { Gfid::ROOT } else { p };
        assert!(newfile(&m, root, &e).is_err(), "{name}");
    }
    assert!(!m.b("x").exists() && !m.b("p/x").exists());
    // .gfid cannot be listed or written into, and is root's only.
    assert!(fs::read_dir(m.p(".gfid")).is_err());
    assert_eq!(fs::write(m.p(".gfid/x"), b"").unwrap_err().raw_os_error(), Some(libc::EPERM));
    assert!(fs::create_dir(m.p(".gfid2")).is_ok());
    assert!(fs::create_dir(m.p(".gfid")).is_err());
    let out = run_as(
        1000,
        1000,
        &format!("cat {}/.gfid/{}/x 2>&1; ls {}/.gfid/{p}", m.mnt.display(), Gfid::ROOT, m.mnt.display()),
    );
    assert!(!out.status.success());
    // Only root may create by GFID.
    fs::set_permissions(m.p("p"), fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_as(1000, 1000, &format!("setfattr -n {XATTR_NEWFILE} -v 0x00 {}/p", m.mnt.display()));
    assert!(!out.status.success());
    // The root listing does not show .gfid.
    let names: Vec<_> = fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!names.iter().any(|n| n == ".gfid"));
}

#[test]
fn without_aux_gfid_mount_there_is_no_gfid_namespace() {
    let m = Mount::new("");
    fs::write(m.p("f"), b"").unwrap();
    assert!(!m.p(&format!(".gfid/{}", m.gfid("f"))).exists());
    let e = entry("n", libc::S_IFREG | 0o644);
    assert!(xattr::set(&m.mnt, XATTR_NEWFILE, &e.encode()).is_err());
    assert!(!m.b("n").exists());
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// `user-map-root=<user>` (what the mountbroker gives an unprivileged receiver): that user is
/// root inside the mount (writes into root's directories, chown to anyone, trusted and
/// security xattrs and hard links through the aux requests), and nobody else gets in at all.
#[test]
fn user_map_root_makes_one_user_root_inside_the_mount_and_nobody_else_gets_in() {
    use georep::fs::newentry::{XATTR_LINK, XATTR_SET_XATTRS, encode_link_request, encode_xattrs_request};
    let m = Mount::new("aux-gfid-mount,user-map-root=nobody,rollover-time=600");
    fs::set_permissions(m.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"secret").unwrap();
    fs::set_permissions(m.p("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.p("d/f"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::symlink("f", m.p("d/s")).unwrap();
    let (d, s) = (m.gfid("d"), m.gfid("d/s"));
    let mnt = m.mnt.display();
    let nobody = |cmd: &str| run_as(65534, 65534, &format!("cd {mnt} && {cmd}"));

    // Root's 0755 directory and a 0600 file of another user: the mapped user reads, writes,
    // creates (as root) and changes owners and modes.
    let o = nobody("cat d/f && echo new > d/new && chown 1234:5678 d/f && chmod 4711 d/f && touch -d @1000 d/f");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "secret");
    let md = fs::metadata(m.b("d/f")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777, md.mtime()), (1234, 5678, 0o4711, 1000));
    assert_eq!(fs::metadata(m.b("d/new")).unwrap().uid(), 0);
    // The kernel keeps trusted.* from an unprivileged caller and a hard link to another's
    // symlink; the aux requests do both as root.
    assert!(!nobody("setfattr -n trusted.t -v 1 d/new").status.success());
    assert!(!nobody("ln d/s d/s2").status.success());
    let xs = encode_xattrs_request(&[("trusted.t".into(), b"1".to_vec()), ("user.u".into(), b"2".to_vec())]);
    let o = nobody(&format!("setfattr -n {XATTR_SET_XATTRS} -v {} d/new", hex(&xs)));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(xattr::get(m.b("d/new"), "trusted.t").unwrap(), Some(b"1".to_vec()));
    assert_eq!(xattr::get(m.b("d/new"), "user.u").unwrap(), Some(b"2".to_vec()));
    // Exactly the list: what is not in it goes.
    let o = nobody(&format!("setfattr -n {XATTR_SET_XATTRS} -v {} d/new", hex(&encode_xattrs_request(&[]))));
    assert!(o.status.success());
    assert_eq!(xattr::get(m.b("d/new"), "trusted.t").unwrap(), None);
    let link = encode_link_request(&s, std::ffi::OsStr::new("s2"));
    let o = nobody(&format!("setfattr -n {XATTR_LINK} -v {} .gfid/{d}", hex(&link)));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::symlink_metadata(m.b("d/s2")).unwrap().ino(), fs::symlink_metadata(m.b("d/s")).unwrap().ino());
    assert!(m.dump().iter().any(|r| r.contains(" LINK ") && r.contains(&format!("{d}/s2"))), "{:?}", m.dump());
    // georep's own xattrs are not to be set that way.
    let own = encode_xattrs_request(&[("trusted.gfid".into(), vec![0; 16])]);
    assert!(!nobody(&format!("setfattr -n {XATTR_SET_XATTRS} -v {} d/new", hex(&own))).status.success());

    // Anybody else: refused at the door, whatever the modes say.
    fs::set_permissions(m.p("d"), fs::Permissions::from_mode(0o777)).unwrap();
    let o = run_as(1000, 1000, &format!("ls {mnt}/d || cat {mnt}/d/new"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"), "{}", String::from_utf8_lossy(&o.stderr));
    // Root still is.
    assert_eq!(fs::read(m.p("d/new")).unwrap(), b"new\n");
}

#[test]
fn aux_requests_are_refused_to_ordinary_users_and_on_plain_mounts() {
    use georep::fs::newentry::{XATTR_SET_XATTRS, encode_xattrs_request};
    let xs = hex(&encode_xattrs_request(&[("user.u".into(), b"2".to_vec())]));
    let m = Mount::new("rollover-time=600");
    fs::write(m.p("f"), b"").unwrap();
    assert!(xattr::set(m.p("f"), XATTR_SET_XATTRS, &encode_xattrs_request(&[])).is_err());
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::set_permissions(m.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.p("f"), b"").unwrap();
    std::os::unix::fs::chown(m.p("f"), Some(1000), Some(1000)).unwrap();
    let o = run_as(1000, 1000, &format!("setfattr -n {XATTR_SET_XATTRS} -v {xs} {}/f", m.mnt.display()));
    assert!(!o.status.success());
    assert_eq!(xattr::get(m.b("f"), "user.u").unwrap(), None);
}

/// `glusterfs.georep.sync`: FUSE hands no `syncfs` to its server, so a receiver asks the
/// mount to make what it wrote durable on the brick: the inodes it names, or everything.
#[test]
fn sync_requests_make_what_the_mount_wrote_durable_on_the_brick() {
    use georep::fs::newentry::XATTR_SYNC;
    let plain = Mount::new("rollover-time=600");
    assert!(xattr::set(&plain.mnt, XATTR_SYNC, &[]).is_err(), "an aux request on a plain mount");
    let m = Mount::new("aux-gfid-mount,rollover-time=600");
    assert!(xattr::set(&m.mnt, XATTR_SYNC, &[1, 2, 3]).is_err(), "not GFIDs");
    assert!(xattr::set(&m.mnt, XATTR_SYNC, &[7u8; 16 * 65]).is_err(), "too many GFIDs");
    // A GFID that names nothing needs nothing.
    xattr::set(&m.mnt, XATTR_SYNC, &Gfid::generate().0).unwrap();
    let dirty_kib = || -> u64 {
        let info = fs::read_to_string("/proc/meminfo").unwrap();
        let line = info.lines().find(|l| l.starts_with("Dirty:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut content = vec![0u8; 64 << 20];
    content.iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + i / 4096) as u8);
    fs::write(m.p("big"), &content).unwrap();
    let before = dirty_kib();
    let mut gfids = m.gfid("big").0.to_vec();
    gfids.extend_from_slice(&Gfid::ROOT.0);
    xattr::set(&m.mnt, XATTR_SYNC, &gfids).unwrap();
    let after = dirty_kib();
    eprintln!("dirty: {before} KiB before the request, {after} KiB after");
    if before >= 60 << 10 {
        assert!(after + (48 << 10) < before, "the file's pages are still dirty: {before} -> {after} KiB");
    } else {
        eprintln!("written back before the request: nothing to judge");
    }
    // The whole filesystem.
    xattr::set(&m.mnt, XATTR_SYNC, &[]).unwrap();
    assert_eq!(fs::read(m.b("big")).unwrap().len(), 64 << 20);
}
