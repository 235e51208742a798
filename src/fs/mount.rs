//! Mounting: option parsing for `mount.georep`, and running the session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, bail};
use fuser::{Config, SessionACL};
use nix::mount::MsFlags;

use super::{FsOptions, OverlayFs};

/// What `mount -t georep SOURCE DIR -o OPTS` asks for.
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub brick: PathBuf,
    pub mountpoint: PathBuf,
    pub fs: FsOptions,
    pub read_only: bool,
    pub allow_other: bool,
    pub threads: usize,
    pub fsname: String,
    /// Mount flags asked for with the usual options (nosuid, nodev, noexec, noatime, ...).
    pub flags: MsFlags,
    /// The brick-wide options given (recording and changelog timing): they are the brick
    /// server's, so a mount that joins a running server may only repeat them.
    pub brick_given: Vec<&'static str>,
}

fn parse_secs(key: &str, v: &str) -> anyhow::Result<Duration> {
    let f: f64 = v.parse().with_context(|| format!("option {key}: invalid number {v:?}"))?;
    if !(f.is_finite() && f > 0.0 && f <= 86400.0 * 365.0) {
        bail!("option {key}: {v:?} is out of range");
    }
    Ok(Duration::from_secs_f64(f))
}

impl MountConfig {
    /// Parses `-o` options. Unknown options are refused by name.
    pub fn parse<'a>(brick: &Path, mountpoint: &Path, opts: &'a str) -> anyhow::Result<MountConfig> {
        let mut c = MountConfig {
            brick: brick.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            fs: FsOptions::default(),
            read_only: false,
            allow_other: true,
            threads: 4,
            fsname: brick.display().to_string(),
            flags: MsFlags::empty(),
            brick_given: Vec::new(),
        };
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            let (k, v) = match o.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (o, None),
            };
            let need = |v: Option<&'a str>| -> anyhow::Result<&'a str> {
                v.with_context(|| format!("option {k} needs a value"))
            };
            match k {
                // Handled by mount(8) or always in force.
                "rw"
                | "user_id"
                | "group_id"
                | "allow_root"
                | "defaults"
                | "auto"
                | "noauto"
                | "user"
                | "nouser"
                | "_netdev"
                | "nofail"
                | "default_permissions"
                | "dev"
                | "nodev"
                | "suid"
                | "nosuid"
                | "exec"
                | "noexec"
                | "atime"
                | "noatime"
                | "relatime" => {}
                "ro" => c.read_only = true,
                "allow_other" => c.allow_other = true,
                "no_allow_other" => c.allow_other = false,
                "rollover-time" | "rollover_time" => {
                    c.fs.changelog.rollover = parse_secs(k, need(v)?)?;
                    c.brick_given.push("rollover-time");
                }
                "fsync-interval" | "fsync_interval" => {
                    c.fs.changelog.fsync_interval = parse_secs(k, need(v)?)?;
                    c.brick_given.push("fsync-interval");
                }
                "changelog-retention" | "changelog_retention" => {
                    c.fs.changelog.retention = parse_secs(k, need(v)?)?;
                    c.brick_given.push("changelog-retention");
                }
                "attr-timeout" | "attr_timeout" | "entry_timeout" => c.fs.ttl = parse_secs(k, need(v)?)?,
                "no-passthrough" | "nopassthrough" => c.fs.passthrough = false,
                "no-changelog" | "nochangelog" => {
                    c.fs.record = false;
                    c.brick_given.push("no-changelog");
                }
                "no-uring" | "nouring" => c.fs.uring = false,
                "aux-gfid-mount" | "aux_gfid_mount" => c.fs.aux_gfid = true,
                "user-map-root" | "user_map_root" => {
                    let name = need(v)?;
                    let user = nix::unistd::User::from_name(name)
                        .ok()
                        .flatten()
                        .with_context(|| format!("option user-map-root: no user {name:?}"))?;
                    if user.uid.is_root() {
                        bail!("option user-map-root: {name:?} is root already");
                    }
                    c.fs.map_root = Some(user.uid.as_raw());
                    c.allow_other = true;
                }
                "threads" => {
                    let n: usize = need(v)?.parse().with_context(|| format!("option threads: invalid number {v:?}"))?;
                    if !(1..=64).contains(&n) {
                        bail!("option threads: {n} is out of range 1-64");
                    }
                    c.threads = n;
                }
                // fstab's comments and systemd's (x-systemd.requires=georepd.service), should
                // a caller pass them on.
                k if k.starts_with("x-") => {}
                _ => bail!("unknown mount option {o:?}"),
            }
        }
        Ok(c)
    }

    /// Refuses brick-wide options that differ from those the brick is served with.
    pub fn check_brick_options(&self, served: &FsOptions) -> anyhow::Result<()> {
        for k in &self.brick_given {
            let (same, now) = match *k {
                "rollover-time" => (
                    self.fs.changelog.rollover == served.changelog.rollover,
                    format!("{:?}", served.changelog.rollover),
                ),
                "fsync-interval" => (
                    self.fs.changelog.fsync_interval == served.changelog.fsync_interval,
                    format!("{:?}", served.changelog.fsync_interval),
                ),
                "changelog-retention" => (
                    self.fs.changelog.retention == served.changelog.retention,
                    format!("{:?}", served.changelog.retention),
                ),
                _ => (self.fs.record == served.record, if served.record { "on" } else { "off" }.to_string()),
            };
            if !same {
                bail!(
                    "option {k}: the brick {} is already served with {k} {now}; it applies to the brick, not to one mount",
                    self.brick.display()
                );
            }
        }
        Ok(())
    }

    fn fuser_config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.acl = self.acl();
        cfg.n_threads = Some(self.threads);
        cfg.clone_fd = true;
        // Used only if the kernel offers FUSE over io_uring (`init` asks for it).
        cfg.uring_queue_depth = if self.fs.uring { URING_QUEUE_DEPTH } else { 0 };
        cfg
    }

    /// Who may use the mount: anyone (`allow_other`; the kernel checks permissions), root
    /// and the mounting user, or under `user-map-root` root and that user only (fuser refuses
    /// the others; see `new_session`).
    fn acl(&self) -> SessionACL {
        if self.allow_other && self.fs.map_root.is_none() { SessionACL::All } else { SessionACL::RootAndOwner }
    }
}

/// Requests in flight per CPU through FUSE over io_uring: more than one CPU's callers can have
/// outstanding at once (each waits for its answer), with room for background requests.
const URING_QUEUE_DEPTH: usize = 16;

/// The filesystem type in /proc/mounts: `mount -o remount` and `umount` find it by that name.
pub const FS_TYPE: &str = "fuse.georep";

/// Mounts a FUSE filesystem of type `fuse.georep` on the mount point and returns the
/// `/dev/fuse` descriptor that serves it. Kernel permission checks are on (the daemon acts as
/// root for every caller), except under `user-map-root`, where the one user allowed in acts as
/// root.
pub fn mount_fuse(cfg: &MountConfig) -> anyhow::Result<OwnedFd> {
    let dev: OwnedFd =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").context("open /dev/fuse")?.into();
    let md = std::fs::metadata(&cfg.mountpoint).with_context(|| format!("mount point {}", cfg.mountpoint.display()))?;
    let rootmode = std::os::unix::fs::MetadataExt::mode(&md) & libc::S_IFMT;
    let mut data = format!("fd={},rootmode={rootmode:o},user_id=0,group_id=0", dev.as_raw_fd());
    if cfg.fs.map_root.is_none() {
        data.push_str(",default_permissions");
    }
    if cfg.allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = cfg.flags;
    if cfg.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(Some(cfg.fsname.as_str()), &cfg.mountpoint, Some(FS_TYPE), flags, Some(data.as_str()))
        .with_context(|| format!("mount {} on {}", cfg.brick.display(), cfg.mountpoint.display()))?;
    Ok(dev)
}

/// The FUSE session. fuser lets through root and the session's owner, which it takes to be
/// the effective uid of the thread that makes the session: under `user-map-root` that thread
/// takes the mapped uid for the call (a thread's credentials are its own on Linux; the saved
/// uid stays root, and the handshake opens nothing).
pub(crate) fn new_session(
    fs: OverlayFs,
    dev: OwnedFd,
    cfg: &MountConfig,
) -> std::io::Result<fuser::Session<OverlayFs>> {
    let Some(uid) = cfg.fs.map_root else {
        return fuser::Session::from_fd(fs, dev, cfg.acl(), cfg.fuser_config());
    };
    let set_euid = |uid: u32| {
        // SAFETY: changes this thread's effective uid only (raw syscall, not glibc's
        // process-wide wrapper); -1 keeps the real and saved uids.
        if unsafe { libc::syscall(libc::SYS_setresuid, -1i64, uid as i64, -1i64) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set_euid(uid)?;
    let session = fuser::Session::from_fd(fs, dev, cfg.acl(), cfg.fuser_config());
    set_euid(0)?;
    session
}

/// The FUSE connection of the filesystem mounted on `mountpoint` (its anonymous device minor,
/// the name of its directory in `/sys/fs/fuse/connections`), from `/proc/self/mountinfo`:
/// nothing is asked of the filesystem itself.
pub fn connection_id(mountpoint: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_str()?;
    // The last mount on that point is the one in sight.
    let line = info.lines().rev().find(|l| l.split(' ').nth(4) == Some(want))?;
    let (major, minor) = line.split(' ').nth(2)?.split_once(':')?;
    if major != "0" {
        return None;
    }
    minor.parse().ok()
}

/// `mount -o remount,...`: changes the flags (ro/rw, nosuid, ...) of a live georep mount.
pub fn remount(mountpoint: &Path, opts: &str) -> anyhow::Result<()> {
    let rest: Vec<&str> = opts.split(',').filter(|o| *o != "remount").collect();
    let cfg = MountConfig::parse(Path::new(""), mountpoint, &rest.join(","))?;
    let mut flags = MsFlags::MS_REMOUNT | cfg.flags;
    if cfg.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(None::<&str>, mountpoint, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("remount {}", mountpoint.display()))
}
