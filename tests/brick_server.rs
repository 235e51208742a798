//! One brick, many mounts: every mount of a brick is a session of its brick server. Changes
//! through one mount are seen at once through the others (their kernels' long-lived caches
//! invalidated), recorded once, and a removed file's space comes back.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use georep::changelog::{Op, Origin};

/// A further mount of a brick, unmounted when dropped.
struct Extra(PathBuf);

impl Extra {
    fn new(source: &Path, at: PathBuf, opts: &str, log_dir: &Path) -> Extra {
        fs::create_dir_all(&at).unwrap();
        let mut cmd = Command::new(mount_bin());
        cmd.arg(source).arg(&at).env("GEOREP_LOG_DIR", log_dir);
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "mount {}: {}", at.display(), String::from_utf8_lossy(&out.stderr));
        Extra(at)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn second(m: &Mount, opts: &str) -> Extra {
    Extra::new(&m.brick, m.dir.path().join("mnt2"), opts, m.dir.path())
}

fn count(m: &Mount, op: Op, gfid: georep::types::Gfid) -> usize {
    m.records().iter().filter(|r| r.op == op && r.gfid == gfid).count()
}

#[test]
fn two_mounts_see_each_others_changes_at_once() {
    let m = Mount::new("rollover-time=600");
    let b = second(&m, "");
    // Served by one process: the second mount started none.
    assert!(daemon_pid(&b.0).is_none());
    fs::create_dir(m.p("d")).unwrap();
    assert!(Command::new("touch").arg("-d").arg("@1000").arg(m.p("d")).status().unwrap().success());
    // The second mount's kernel caches what it sees: a name that does not exist yet, the
    // directory's listing and attributes.
    assert!(fs::metadata(b.p("d/f")).is_err());
    assert_eq!(fs::read_dir(b.p("d")).unwrap().count(), 0);
    assert_eq!(fs::metadata(b.p("d")).unwrap().mtime(), 1000);

    fs::write(m.p("d/f"), "one").unwrap();
    assert_eq!(fs::read(b.p("d/f")).unwrap(), b"one");
    assert_eq!(fs::metadata(b.p("d/f")).unwrap().len(), 3);
    assert_eq!(fs::read_dir(b.p("d")).unwrap().count(), 1);
    let mtime = |p: PathBuf| {
        let md = fs::metadata(p).unwrap();
        (md.mtime(), md.mtime_nsec())
    };
    assert_eq!(mtime(b.p("d")), mtime(m.p("d")), "the directory's attributes are fresh in the other mount");
    assert_ne!(mtime(b.p("d")).0, 1000);
    let gfid = m.gfid("d/f");
    assert_eq!(gfid_of(&b.p("d/f")), gfid, "one inode, one GFID, whichever mount");

    // Mode, content, size and xattrs, each way.
    fs::set_permissions(m.p("d/f"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(b.p("d/f")).unwrap().mode() & 0o7777, 0o640);
    fs::OpenOptions::new().append(true).open(b.p("d/f")).unwrap().write_all(b"two").unwrap();
    assert_eq!(fs::metadata(m.p("d/f")).unwrap().len(), 6);
    assert_eq!(fs::read(m.p("d/f")).unwrap(), b"onetwo");
    xattr::set(m.p("d/f"), "user.k", b"v").unwrap();
    assert_eq!(xattr::get(b.p("d/f"), "user.k").unwrap(), Some(b"v".to_vec()));
    xattr::remove(b.p("d/f"), "user.k").unwrap();
    assert_eq!(xattr::get(m.p("d/f"), "user.k").unwrap(), None);
    fs::OpenOptions::new().write(true).truncate(true).open(b.p("d/f")).unwrap();
    assert_eq!(fs::metadata(m.p("d/f")).unwrap().len(), 0);

    // Names: rename, hard link, unlink, directories.
    fs::rename(m.p("d/f"), m.p("d/g")).unwrap();
    assert!(fs::metadata(b.p("d/f")).is_err(), "the old name is gone in the other mount");
    assert_eq!(gfid_of(&b.p("d/g")), gfid);
    fs::hard_link(b.p("d/g"), b.p("d/h")).unwrap();
    assert_eq!(fs::metadata(m.p("d/g")).unwrap().nlink(), 2);
    fs::remove_file(m.p("d/g")).unwrap();
    assert!(fs::metadata(b.p("d/g")).is_err());
    assert_eq!(fs::metadata(b.p("d/h")).unwrap().nlink(), 1);
    fs::create_dir(b.p("d/sub")).unwrap();
    assert!(fs::metadata(m.p("d/sub")).unwrap().is_dir());
    fs::remove_dir(m.p("d/sub")).unwrap();
    assert!(fs::metadata(b.p("d/sub")).is_err());
    std::os::unix::fs::symlink("h", b.p("d/s")).unwrap();
    assert_eq!(fs::read_link(m.p("d/s")).unwrap(), Path::new("h"));

    // Each change recorded once, whichever mount made it, as a user's change.
    assert_eq!(count(&m, Op::Create, gfid), 1);
    assert_eq!(count(&m, Op::Rename, gfid), 1);
    assert_eq!(count(&m, Op::Link, gfid), 1);
    assert_eq!(count(&m, Op::Unlink, gfid), 1);
    assert!(m.records().iter().all(|r| r.origin() == Origin::User));
}

#[test]
fn a_read_only_mount_sees_changes_and_refuses_writes() {
    let m = Mount::new("rollover-time=600");
    let ro = second(&m, "ro");
    fs::write(m.p("f"), "x").unwrap();
    assert_eq!(fs::read(ro.p("f")).unwrap(), b"x");
    let e = fs::write(ro.p("g"), "y").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert!(fs::remove_file(ro.p("f")).is_err());
    fs::write(m.p("f"), "xy").unwrap();
    assert_eq!(fs::read(ro.p("f")).unwrap(), b"xy");
    // The first mount goes; the brick server stays for the second.
    assert!(Command::new("umount").arg(&m.mnt).status().unwrap().success());
    assert_eq!(fs::read(ro.p("f")).unwrap(), b"xy");
}

#[test]
fn brick_wide_options_belong_to_the_first_mount() {
    let m = Mount::new("rollover-time=600");
    let mnt2 = m.dir.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    let out = Command::new(mount_bin()).arg(&m.brick).arg(&mnt2).args(["-o", "rollover-time=1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("option rollover-time: the brick") && err.contains("600s"), "{err}");
    assert!(!is_mounted(&mnt2), "a refused mount leaves nothing mounted");
    // The same value, or none, is fine.
    let _b = Extra::new(&m.brick, mnt2, "rollover-time=600", m.dir.path());
}

/// Unmounts its filesystem when dropped.
struct Umount(PathBuf);

impl Drop for Umount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A temporary directory with a tmpfs of `mib` MiB mounted at its `fs`.
fn small_fs(prefix: &str, mib: u32) -> (tempfile::TempDir, PathBuf, Umount) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let fsdir = dir.path().join("fs");
    fs::create_dir(&fsdir).unwrap();
    let size = format!("size={mib}m");
    assert!(Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(&fsdir).status().unwrap().success());
    let umount = Umount(fsdir.clone());
    (dir, fsdir, umount)
}

#[test]
fn a_removed_file_frees_its_space_whichever_mount_knew_it() {
    // A small filesystem of its own (tmpfs: xattrs and file handles, like ext4).
    let (dir, fsdir, _fs) = small_fs("georep-space-", 64);
    let brick = fsdir.join("brick");
    fs::create_dir(&brick).unwrap();
    let free = || nix::sys::statvfs::statvfs(&fsdir).map(|s| s.blocks_available() * s.fragment_size()).unwrap();
    // A receiver's kind of mount first (through .gfid/), then a user's.
    let aux = Extra::new(&brick, dir.path().join("aux"), "aux-gfid-mount,rollover-time=600", dir.path());
    let user = Extra::new(&brick, dir.path().join("user"), "", dir.path());
    let before = free();
    let big = vec![7u8; 40 << 20];
    fs::write(aux.p("big"), &big).unwrap();
    let g = gfid_of(&aux.p("big"));
    // Both mounts' kernels get to know the inode, the aux one by its GFID as a receiver does.
    assert_eq!(fs::metadata(aux.p(&format!(".gfid/{g}"))).unwrap().len(), big.len() as u64);
    fs::OpenOptions::new().append(true).open(aux.p(&format!(".gfid/{g}"))).unwrap().write_all(b"!").unwrap();
    assert_eq!(fs::metadata(user.p("big")).unwrap().len(), big.len() as u64 + 1);
    assert!(free() < before - (30 << 20));
    fs::remove_file(aux.p(&format!(".gfid/{}/big", georep::types::Gfid::ROOT))).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || free() > before - (4 << 20)),
        "the space of a removed file came back (free {} of {} before)",
        free(),
        before
    );
    // The same through the user's mount, the aux mount knowing the file.
    fs::write(user.p("big2"), &big).unwrap();
    let g2 = gfid_of(&user.p("big2"));
    assert!(fs::metadata(aux.p(&format!(".gfid/{g2}"))).is_ok());
    fs::remove_file(user.p("big2")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || free() > before - (4 << 20)),
        "the space of a file removed through the other mount came back"
    );
    // Replaced by a rename, as a receiver applies one.
    let root = format!(".gfid/{}", georep::types::Gfid::ROOT);
    fs::write(aux.p(&format!("{root}/big3")), &big).unwrap();
    let g3 = gfid_of(&aux.p(&format!("{root}/big3")));
    assert!(fs::metadata(aux.p(&format!(".gfid/{g3}"))).is_ok());
    assert!(fs::metadata(user.p("big3")).is_ok());
    fs::write(aux.p(&format!("{root}/small")), "s").unwrap();
    fs::rename(aux.p(&format!("{root}/small")), aux.p(&format!("{root}/big3"))).unwrap();
    assert_eq!(fs::read(user.p("big3")).unwrap(), b"s");
    assert!(
        wait_until(Duration::from_secs(5), || free() > before - (4 << 20)),
        "the space of a file replaced by a rename came back"
    );
}

/// A full disk refuses a new entry up front (ENOSPC, nothing made) rather than making it and
/// failing to record it, which would stop recording for good (EIO from then on): removals
/// still go, and once there is room again everything does. A receiver's whole-file create that
/// fails half-way leaves no name behind.
#[test]
fn a_full_disk_refuses_changes_up_front_and_recording_goes_on_once_space_returns() {
    let (dir, fsdir, _fs) = small_fs("georep-full-", 16);
    let brick = fsdir.join("brick");
    fs::create_dir(&brick).unwrap();
    let user = Extra::new(&brick, dir.path().join("user"), "rollover-time=600", dir.path());
    let aux = Extra::new(&brick, dir.path().join("aux"), "aux-gfid-mount,rollover-time=600", dir.path());
    fs::create_dir(user.p("d")).unwrap();
    // Every byte taken, beside the brick.
    let filler = fsdir.join("filler");
    {
        let free = nix::sys::statvfs::statvfs(&fsdir).map(|s| s.blocks_available() * s.fragment_size()).unwrap();
        let f = fs::File::create(&filler).unwrap();
        let _ = nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, free.saturating_sub(1 << 20) as i64);
        let mut f = fs::OpenOptions::new().append(true).open(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    // Empty files (no data blocks) until the changelog needs room it cannot have.
    let mut made = 0;
    let err = loop {
        match fs::File::create(user.p(&format!("d/f{made}"))) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 50_000, "the changelog never needed room");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "refused up front as out of space: {err}");
    assert!(!user.p(&format!("d/f{made}")).exists(), "nothing made");
    // A receiver's whole file: refused whole.
    let root = format!(".gfid/{}", georep::types::Gfid::ROOT);
    assert!(fs::write(aux.p(&format!("{root}/whole")), vec![1u8; 64 << 10]).is_err());
    assert!(!user.p("whole").exists() || fs::metadata(user.p("whole")).unwrap().len() == 0);
    // Removals free a full disk: they go.
    for i in 0..made.min(100) {
        fs::remove_file(user.p(&format!("d/f{i}"))).unwrap();
    }
    fs::remove_file(&filler).unwrap();
    // Recording did not stop: changes go again.
    fs::write(user.p("after"), b"room again").unwrap();
    fs::create_dir(user.p("d2")).unwrap();
    assert_eq!(fs::read(user.p("after")).unwrap(), b"room again");
}

/// The pid of the brick server serving `brick` for georepd.
fn volume_server_pid(brick: &Path) -> Option<i32> {
    let out = Command::new("pgrep").arg("-f").arg("--").arg(format!("--serve {}$", brick.display())).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

#[test]
fn kill9_of_a_brick_server_during_writes_through_two_mounts_loses_nothing() {
    use common::cluster::Cluster;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let c = Cluster::new(true);
    let pmnt2 = c.dir.path().join("pmnt2");
    let mount2 = || {
        fs::create_dir_all(&pmnt2).unwrap();
        let o = Command::new(mount_bin()).arg("pvol").arg(&pmnt2).envs(c.pri.envs()).output().unwrap();
        assert!(o.status.success(), "mount pvol: {}", String::from_utf8_lossy(&o.stderr));
    };
    mount2();
    let st = c.pri.cli("volume stop pvol").refused().to_string();
    assert!(st.contains(&c.pmnt.display().to_string()) && st.contains(&pmnt2.display().to_string()), "{st}");
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..3 {
        let pid = volume_server_pid(&c.pbrick).expect("georepd runs the volume's brick server");
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = [c.pmnt.clone(), pmnt2.clone()]
            .into_iter()
            .enumerate()
            .map(|(t, dir)| {
                let (acked, stop) = (acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("r{round}-m{t}-{i}");
                        let ok = fs::File::create(dir.join(&name)).and_then(|mut f| f.write_all(b"data")).is_ok();
                        if !ok {
                            break;
                        }
                        acked.lock().unwrap().push(name);
                        i += 1;
                    }
                })
            })
            .collect();
        // A different moment each round.
        std::thread::sleep(Duration::from_millis(300 + 277 * round));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        for m in [&c.pmnt, &pmnt2] {
            assert!(
                wait_until(Duration::from_secs(5), || fs::metadata(m)
                    .is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))),
                "{} reports ENOTCONN",
                m.display()
            );
        }
        // georepd starts another server; both mounts come back with umount + mount.
        assert!(
            wait_until(Duration::from_secs(10), || volume_server_pid(&c.pbrick).is_some_and(|p| p != pid)),
            "georepd restarted the brick server"
        );
        for m in [&c.pmnt, &pmnt2] {
            assert!(Command::new("umount").arg(m).status().unwrap().success());
        }
        c.mount_primary();
        mount2();
    }
    fs::write(c.p("after"), "x").unwrap();
    assert_eq!(fs::read(pmnt2.join("after")).unwrap(), b"x");
    // Every acknowledged creation is on the brick and recorded, once.
    let layout = georep::types::BrickLayout::new(&c.pbrick);
    let created: std::collections::HashMap<String, usize> = georep::changelog::brick_records(&layout)
        .unwrap()
        .iter()
        .filter(|r| r.op == Op::Create)
        .filter_map(|r| r.entry.as_ref().map(|e| e.entry.name.to_string_lossy().into_owned()))
        .fold(Default::default(), |mut m, n| {
            *m.entry(n).or_default() += 1;
            m
        });
    let acked = acked.lock().unwrap();
    assert!(acked.len() > 100, "the writers wrote ({})", acked.len());
    for n in acked.iter() {
        assert!(c.pbrick.join(n).exists(), "{n} on the brick");
        assert_eq!(created.get(n), Some(&1), "{n} recorded once");
    }
    // And the secondary ends up equal, the files being made at each kill included.
    c.assert_converged(Duration::from_secs(120));
    c.geo("stop").ok();
    for m in [&c.pmnt, &pmnt2] {
        let _ = Command::new("umount").arg(m).status();
    }
}

#[test]
fn entries_made_while_nothing_recorded_still_reach_the_secondary() {
    use common::cluster::Cluster;
    let c = Cluster::new(true);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    fs::write(c.p("before"), "1").unwrap();
    c.assert_converged(Duration::from_secs(60));
    // The window of a crash: the brick server killed after making an entry on the brick,
    // before giving it a GFID and recording it (what `kill -9` during `echo $i > ko/f$i` left).
    let pid = volume_server_pid(&c.pbrick).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    fs::write(c.pbrick.join("orphan"), "made, never recorded").unwrap();
    fs::create_dir(c.pbrick.join("odir")).unwrap();
    fs::write(c.pbrick.join("odir/inner"), "x").unwrap();
    assert!(wait_until(Duration::from_secs(10), || volume_server_pid(&c.pbrick).is_some_and(|p| p != pid)));
    assert!(Command::new("umount").arg(&c.pmnt).status().unwrap().success());
    c.mount_primary();
    fs::write(c.p("after"), "2").unwrap();
    // The worker crawls after the unclean stop; the brick server gives what it finds without
    // a GFID one and records it as new.
    assert!(
        wait_until(Duration::from_secs(60), || c.s("odir/inner").exists() && c.s("orphan").exists()),
        "{}",
        c.worker_log()
    );
    c.assert_converged(Duration::from_secs(60));
    assert_eq!(fs::read(c.s("orphan")).unwrap(), b"made, never recorded");
    c.geo("stop").ok();
    let _ = Command::new("umount").arg(&c.pmnt).status();
}

#[test]
fn ioctls_are_answered_enotty_without_a_word_in_the_log() {
    use std::os::fd::AsRawFd;
    let m = Mount::new("rollover-time=600");
    fs::write(m.p("f"), "x").unwrap();
    let f = fs::File::open(m.p("f")).unwrap();
    for _ in 0..3000 {
        // SAFETY: isatty only reads the terminal attributes of a descriptor we own.
        assert_eq!(unsafe { libc::isatty(f.as_raw_fd()) }, 0);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOTTY));
    }
    let log: String = fs::read_dir(m.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(!log.is_empty(), "the mount's log was found");
    assert!(!log.to_lowercase().contains("ioctl"), "{log}");
    assert!(log.len() < 8192, "{} bytes of log for 3,000 isatty() calls", log.len());
}

/// A worker's crawl that meets a name just made through a mount, before the mount gave it its
/// GFID, asks the brick server to adopt it: the creator keeps its GFID and the user's create
/// succeeds (before, the adopter could win, and the create failed with EEXIST).
#[test]
fn adopting_a_name_being_created_waits_for_its_creator() {
    use std::sync::atomic::Ordering;
    let m = Mount::new("rollover-time=600");
    fs::create_dir(m.p("d")).unwrap();
    let run = georep::daemon::dirs::Dirs::from_env().run;
    // The adopter asks for the name the creator makes next, again and again until it exists.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let rel = format!("d/f{}", next.load(Ordering::Relaxed));
                let _ = georep::fs::server::adopt(&run, &m.brick, Path::new(&rel));
            }
        });
        let made = (0..3000).try_for_each(|i| {
            next.store(i, Ordering::Relaxed);
            fs::write(m.p(&format!("d/f{i}")), "x").map_err(|e| format!("create d/f{i}: {e}"))
        });
        done.store(true, Ordering::Relaxed);
        made.unwrap();
    });
    // Every file was recorded once, as a create, with the GFID it has.
    m.umount();
    let mut creates = std::collections::HashMap::new();
    for r in m.records().into_iter().filter(|r| r.op == Op::Create) {
        *creates.entry(r.gfid).or_insert(0) += 1;
    }
    for i in 0..3000 {
        let gfid = xattr::get(m.b(&format!("d/f{i}")), "trusted.gfid").unwrap().unwrap();
        let gfid = georep::types::Gfid::from_slice(&gfid).unwrap();
        assert_eq!(creates.get(&gfid), Some(&1), "d/f{i}");
    }
}

/// A brick copied elsewhere (restored from a backup, moved to another disk) has new inodes,
/// and the file handles its GFID index holds name nothing there: its brick server records
/// every inode's handle again, so that each GFID resolves (before, all resolved as deleted
/// and a worker sent entries without their data).
#[test]
fn a_brick_restored_elsewhere_has_its_gfid_index_rebuilt() {
    use std::os::fd::AsFd;
    let m = Mount::new("rollover-time=600");
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), "restored").unwrap();
    let gfid = m.gfid("d/f");
    m.umount();
    let copy = m.dir.path().join("restored");
    let o = Command::new("cp").args(["-a", "--preserve=all"]).arg(&m.brick).arg(&copy).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let layout = georep::types::BrickLayout::new(&copy);
    let root = fs::File::open(&copy).unwrap();
    // Where the GFID resolves through the copy's index: nowhere, or the original's inode
    // (the same filesystem), before the copy is served.
    let resolve = || {
        let handles = georep::fs::gfid_index::GfidIndex::load(&layout.gfid_index()).unwrap();
        georep::fs::gfid_index::resolve(&handles, root.as_fd(), &gfid)
            .ok()
            .and_then(|fd| fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).ok())
    };
    assert_ne!(resolve(), Some(copy.join("d/f")), "the copied index names the original's inodes");
    let restored = Mount::on(tempfile::tempdir().unwrap(), copy.clone(), "rollover-time=600");
    assert_eq!(fs::read(restored.p("d/f")).unwrap(), b"restored");
    assert_eq!(resolve(), Some(copy.join("d/f")), "the GFID resolves on the restored brick");
    restored.umount();
}
