//! Shared harness of the integration tests: real FUSE mounts of real bricks, cleaned up even
//! when a test fails. These tests need root (CI runs as root).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use georep::changelog::{self, Record};
use georep::types::{BrickLayout, Gfid};

pub mod cluster;
pub mod datasets;
pub mod etcd;
pub mod netns;
pub mod sites;
pub mod users;

/// A test's directory: whatever still runs or is mounted under it (a brick server georepd
/// started, a mount) is ended when it is dropped, even when the test fails.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new() -> Scratch {
        Scratch(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        cluster::clean_up_under(self.0.path());
    }
}

pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "these tests mount FUSE filesystems and must run as root");
}

pub fn mount_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mount_georep")
}

pub fn georep_bin() -> &'static str {
    env!("CARGO_BIN_EXE_georep")
}

/// A copy of the `georep` binary that any user may run (`<dir>/bin/georep`): the build's own
/// may lie where an unprivileged receiver cannot reach it (a checkout under /root, 0700).
pub fn shared_georep_bin(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.join("georep");
    std::fs::copy(georep_bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// A brick and its overlay mount in a temporary directory.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub brick: PathBuf,
    pub mnt: PathBuf,
    pub opts: String,
}

pub fn is_mounted(p: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = p.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&want))
}

/// The pid of the daemon serving `mnt`.
pub fn daemon_pid(mnt: &Path) -> Option<i32> {
    let out = Command::new("pgrep").arg("-f").arg(format!("mount_georep .* {}", mnt.display())).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

impl Mount {
    /// A fresh brick mounted with `opts` (a long rollover unless overridden, so that each
    /// test's records sit in one file).
    pub fn new(opts: &str) -> Mount {
        require_root();
        let dir = tempfile::Builder::new().prefix("georep-test-").tempdir().unwrap();
        let brick = dir.path().join("brick");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&brick).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        let m = Mount { dir, brick, mnt, opts: opts.to_string() };
        m.mount();
        m
    }

    /// Mounts an existing directory as a brick.
    pub fn on(dir: tempfile::TempDir, brick: PathBuf, opts: &str) -> Mount {
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let m = Mount { dir, brick, mnt, opts: opts.to_string() };
        m.mount();
        m
    }

    pub fn mount(&self) {
        let opts = if self.opts.is_empty() { "rollover-time=600".to_string() } else { self.opts.clone() };
        let out = Command::new(mount_bin())
            .arg(&self.brick)
            .arg(&self.mnt)
            .arg("-o")
            .arg(&opts)
            .env("GEOREP_LOG_DIR", self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mount failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(is_mounted(&self.mnt));
    }

    pub fn umount(&self) {
        let pid = daemon_pid(&self.mnt);
        let st = Command::new("umount").arg(&self.mnt).status().unwrap();
        assert!(st.success(), "umount failed");
        // A clean unmount ends the daemon after it has published its changelog.
        if let Some(pid) = pid {
            wait_until(Duration::from_secs(20), || !Path::new(&format!("/proc/{pid}")).exists());
        }
    }

    /// Kills the daemon with SIGKILL and detaches the dead mount.
    pub fn kill9(&self) {
        let pid = daemon_pid(&self.mnt).expect("daemon running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        wait_until(Duration::from_secs(10), || !Path::new(&format!("/proc/{pid}")).exists());
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn b(&self, rel: &str) -> PathBuf {
        self.brick.join(rel)
    }

    pub fn layout(&self) -> BrickLayout {
        BrickLayout::new(&self.brick)
    }

    pub fn records(&self) -> Vec<Record> {
        changelog::brick_records(&self.layout()).unwrap()
    }

    /// Records in GlusterFS's parsed form, one string each.
    pub fn dump(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| String::from_utf8_lossy(&changelog::dump::format_record(r)).into_owned())
            .collect()
    }

    /// The GFID of a path on the mount, read through the mount's virtual xattr.
    pub fn gfid(&self, rel: &str) -> Gfid {
        gfid_of(&self.p(rel))
    }
}

pub fn gfid_of(p: &Path) -> Gfid {
    let v = xattr::get(p, "glusterfs.gfid.string").unwrap().expect("gfid string");
    std::str::from_utf8(&v).unwrap().parse().unwrap()
}

/// The GFID of a path on the brick (`trusted.gfid`).
pub fn brick_gfid(p: &Path) -> Option<Gfid> {
    xattr::get(p, "trusted.gfid").unwrap().and_then(|v| Gfid::from_slice(&v))
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let pid = daemon_pid(&self.mnt);
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Runs a shell command as `uid:gid` (no supplementary groups) and asserts it succeeded.
pub fn run_as(uid: u32, gid: u32, cmd: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "sh".into(),
            "-c".into(),
            cmd.into(),
        ])
        .output()
        .unwrap()
}

pub fn name(s: &OsStr) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// One line per entry of a tree: path, type, mode, owner, size, content hash, symlink target,
/// hard-link group, user/trusted/security xattrs and ACLs. Two trees replicate each other exactly
/// when their descriptions are equal.
pub fn describe_tree(root: &Path) -> Vec<String> {
    try_describe_tree(root).unwrap()
}

/// `describe_tree`, or the error met while the tree changed under it.
pub fn try_describe_tree(root: &Path) -> std::io::Result<Vec<String>> {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.as_os_str() == ".georep" || rel.as_os_str() == ".gfid" {
                continue;
            }
            let md = std::fs::symlink_metadata(&p)?;
            let is_dir = md.is_dir();
            out.push((rel, md));
            if is_dir {
                walk(root, &p, out)?;
            }
        }
        Ok(())
    }
    let mut all = Vec::new();
    walk(root, root, &mut all)?;
    // Hard-link groups named by their first path.
    let mut first: HashMap<u64, String> = HashMap::new();
    let mut lines = Vec::new();
    for (rel, md) in &all {
        let p = root.join(rel);
        let t = md.file_type();
        let kind = if t.is_dir() {
            "d"
        } else if t.is_symlink() {
            "l"
        } else if t.is_file() {
            "f"
        } else {
            "s"
        };
        let content = if t.is_file() {
            let data = std::fs::read(&p)?;
            format!("{:016x}", xxh(&data))
        } else {
            String::new()
        };
        let target = if t.is_symlink() { std::fs::read_link(&p)?.display().to_string() } else { String::new() };
        let group = if !t.is_dir() && md.nlink() > 1 {
            first.entry(md.ino()).or_insert_with(|| rel.display().to_string()).clone()
        } else {
            String::new()
        };
        let mut xattrs: Vec<String> = if t.is_symlink() {
            Vec::new()
        } else {
            xattr::list(&p)?
                .filter(|n| {
                    let n = n.to_string_lossy();
                    (n.starts_with("user.")
                        || n.starts_with("security.")
                        || n.starts_with("trusted.")
                        || n.starts_with("system.posix_acl_"))
                        && !n.starts_with("trusted.georep.")
                        && n != "trusted.gfid"
                })
                .map(|n| format!("{}={:?}", n.to_string_lossy(), xattr::get(&p, &n).ok().flatten().unwrap_or_default()))
                .collect()
        };
        xattrs.sort();
        lines.push(format!(
            "{} {kind} {:o} {}:{} {} {content} {target} [{group}] {}",
            rel.display(),
            md.mode() & 0o7777,
            md.uid(),
            md.gid(),
            if t.is_dir() { 0 } else { md.size() },
            xattrs.join(",")
        ));
    }
    Ok(lines)
}

fn xxh(b: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in tests.
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Asserts two trees are replicas, printing the first differences.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (da, db) = (describe_tree(a), describe_tree(b));
    if da != db {
        let only_a: Vec<_> = da.iter().filter(|l| !db.contains(l)).take(10).collect();
        let only_b: Vec<_> = db.iter().filter(|l| !da.contains(l)).take(10).collect();
        panic!(
            "trees differ\nprimary only:\n  {}\nsecondary only:\n  {}",
            only_a.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
            only_b.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
        );
    }
}
