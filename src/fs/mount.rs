//! Mounting: option parsing for `mount.georep`, and running the session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fuser::{Config, MountOption, SessionACL};

use super::brick::Brick;
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
                "rollover-time" | "rollover_time" => c.fs.changelog.rollover = parse_secs(k, need(v)?)?,
                "fsync-interval" | "fsync_interval" => c.fs.changelog.fsync_interval = parse_secs(k, need(v)?)?,
                "changelog-retention" | "changelog_retention" => c.fs.changelog.retention = parse_secs(k, need(v)?)?,
                "attr-timeout" | "attr_timeout" | "entry_timeout" => c.fs.ttl = parse_secs(k, need(v)?)?,
                "no-passthrough" | "nopassthrough" => c.fs.passthrough = false,
                "no-changelog" | "nochangelog" => c.fs.record = false,
                "threads" => {
                    let n: usize = need(v)?.parse().with_context(|| format!("option threads: invalid number {v:?}"))?;
                    if !(1..=64).contains(&n) {
                        bail!("option threads: {n} is out of range 1-64");
                    }
                    c.threads = n;
                }
                _ => bail!("unknown mount option {o:?}"),
            }
        }
        Ok(c)
    }

    fn fuser_config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName(self.fsname.clone()),
            MountOption::Subtype("georep".into()),
            MountOption::DefaultPermissions,
            MountOption::Dev,
            MountOption::Suid,
            if self.read_only { MountOption::RO } else { MountOption::RW },
        ];
        cfg.acl = if self.allow_other { SessionACL::All } else { SessionACL::RootAndOwner };
        cfg.n_threads = Some(self.threads);
        cfg.clone_fd = true;
        cfg
    }
}

/// Opens the brick, mounts, calls `ready` once the kernel handshake is done, and serves until
/// unmounted.
pub fn mount_blocking(cfg: &MountConfig, ready: impl FnOnce()) -> anyhow::Result<()> {
    match super::sys::raise_nofile_limit() {
        Ok(n) => log::info!("open file limit {n}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
    let brick = Brick::open(&cfg.brick, None)?;
    if cfg.mountpoint.starts_with(&brick.layout.root) {
        bail!("mount point {} is inside the brick {}", cfg.mountpoint.display(), brick.layout.root.display());
    }
    let fs = OverlayFs::new(brick, cfg.fs.clone())?;
    let session = fuser::Session::new(fs, &cfg.mountpoint, &cfg.fuser_config())
        .with_context(|| format!("mount {} on {}", cfg.brick.display(), cfg.mountpoint.display()))?;
    ready();
    session.run().context("fuse session")?;
    Ok(())
}
