//! The mountbroker service (SPEC section 7, the reference's 5.3): `georepd` mounts volumes for
//! local users who are not root, as `<mountbroker.conf>` allows, with a fixed option set that
//! makes the user root inside that mount only (`user-map-root`).
//!
//! Layout under the mount root (root's, not group/world-writable, nor any ancestor):
//! `user<UID>/` (0700, the user's, group root: checked exactly) holds the mount points
//! `mtpt-<LABEL>-XXXXXX`; `mb_hive/` (0711) holds the cookies `mntXXXXXX`, symlinks to
//! `../user<UID>/mtpt-...`, which are all a user handles. A receiver's mount is detached at
//! once and handed over as a descriptor; `georep system mount` leaves one in place until
//! `georep system umount <COOKIE>`, which a user may ask only for its own cookies.
//!
//! The caller is known by the control socket's peer credentials, never by what it says.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use super::Daemon;
use super::volumes;
use crate::mountbroker::{self, Config, HIVE};

/// A local user, as the kernel vouches for it.
pub struct Caller {
    pub uid: u32,
    pub name: String,
}

impl Caller {
    pub fn from_uid(uid: u32) -> anyhow::Result<Caller> {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .with_context(|| format!("uid {uid} has no user name"))?;
        Ok(Caller { uid, name: user.name })
    }
}

/// The checked mount root and hive.
fn root(conf: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let root = conf.root.clone().context("the mountbroker is not set up on this node (gluster-mountbroker setup)")?;
    mountbroker::check_root(&root).map_err(|e| anyhow::anyhow!("mount refused: {e}"))?;
    let hive = root.join(HIVE);
    let md = std::fs::symlink_metadata(&hive).with_context(|| format!("mount refused: {}", hive.display()))?;
    if !md.is_dir() || md.uid() != 0 || md.mode() & 0o7777 != 0o711 {
        bail!("mount refused: {} must be a directory of root's with mode 0711", hive.display());
    }
    Ok((root, hive))
}

/// `<root>/user<uid>`, made if missing, and checked to be exactly a directory of mode 0700
/// owned by the user, group root.
fn user_dir(root: &Path, uid: u32) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("user{uid}"));
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(0))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
    }
    let md = std::fs::symlink_metadata(&dir)?;
    if !md.is_dir() || md.mode() & 0o7777 != 0o700 || md.uid() != uid || md.gid() != 0 {
        bail!("mount refused: {} is not a directory of mode 0700 owned by uid {uid}, group root", dir.display());
    }
    Ok(dir)
}

/// Checks a request from `caller` for a mount labelled `label`, and mounts `volume` for it on
/// a fresh mount point in its directory; returns the mount point and the hive.
fn mount_for(d: &Daemon, caller: &Caller, label: &str, args: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    if caller.uid != 0 && caller.name != label {
        bail!("mount refused: user {} may not mount for {label}", caller.name);
    }
    let conf = Config::load(&Config::path(&d.dirs.config))?;
    let volume = mountbroker::check_mount_args(&conf, label, args).map_err(anyhow::Error::msg)?;
    let (root, hive) = root(&conf)?;
    let uid = if caller.uid == 0 {
        nix::unistd::User::from_name(label).ok().flatten().with_context(|| format!("no user {label}"))?.uid.as_raw()
    } else {
        caller.uid
    };
    let dir = user_dir(&root, uid)?;
    let mtpt = nix::unistd::mkdtemp(&dir.join(format!("mtpt-{label}-XXXXXX")))?;
    if let Err(e) = volumes::mount_at(d, &volume, &mtpt, &format!("aux-gfid-mount,user-map-root={label},nosuid,nodev"))
    {
        let _ = std::fs::remove_dir(&mtpt);
        return Err(e);
    }
    log::info!("mountbroker: {} mounted {volume} for {label} on {}", caller.name, mtpt.display());
    Ok((mtpt, hive))
}

/// Whether the user `uid` may run a receiver for `volume`: root, or a user the mountbroker
/// lets mount it.
pub fn may_receive(d: &Daemon, uid: u32, volume: &str) -> anyhow::Result<()> {
    if uid == 0 {
        return Ok(());
    }
    let caller = Caller::from_uid(uid)?;
    let conf = Config::load(&Config::path(&d.dirs.config))?;
    let args = ["aux-gfid-mount".to_string(), format!("user-map-root={}", caller.name), format!("volfile-id={volume}")];
    mountbroker::check_mount_args(&conf, &caller.name, &args).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// A receiver's mount: `volume` for the calling user, detached at once; its root descriptor.
pub fn aux_mount(d: &Daemon, caller: &Caller, volume: &str) -> anyhow::Result<OwnedFd> {
    let args = ["aux-gfid-mount".to_string(), format!("user-map-root={}", caller.name), format!("volfile-id={volume}")];
    let (mtpt, _) = mount_for(d, caller, &caller.name, &args)?;
    volumes::detach(&mtpt)
}

/// `georep system mount <LABEL> <ARG>...`: a mount left in place; its cookie.
pub fn mount(d: &Daemon, caller: &Caller, label: &str, args: &[String]) -> anyhow::Result<String> {
    let (mtpt, hive) = mount_for(d, caller, label, args)?;
    let cookie = (|| -> anyhow::Result<PathBuf> {
        let (fd, cookie) = nix::unistd::mkstemp(&hive.join("mntXXXXXX"))?;
        let _ = nix::unistd::close(fd);
        // Replaced atomically by the symlink, made beside it first.
        let tmp = hive.join(format!(".{}", cookie.file_name().and_then(OsStr::to_str).unwrap_or("mnt")));
        let target = Path::new("..").join(mtpt.strip_prefix(hive.parent().unwrap_or(&hive))?);
        std::os::unix::fs::symlink(&target, &tmp)?;
        std::fs::rename(&tmp, &cookie)?;
        Ok(cookie)
    })();
    match cookie {
        Ok(c) => Ok(c.display().to_string()),
        Err(e) => {
            let _ = nix::mount::umount2(&mtpt, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&mtpt);
            Err(e.context("make the mount cookie"))
        }
    }
}

/// `georep system umount <COOKIE> [lazy]`: only a cookie in the hive, and (unless root) only
/// one of the caller's own mounts.
pub fn umount(d: &Daemon, caller: &Caller, path: &str, lazy: bool) -> anyhow::Result<()> {
    let conf = Config::load(&Config::path(&d.dirs.config))?;
    let (root, hive) = root(&conf)?;
    let p = Path::new(path);
    let refuse = || anyhow::anyhow!("umount refused: {path} is not a mount cookie in {}", hive.display());
    if !p.is_absolute() || p.components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_))) {
        return Err(refuse());
    }
    if p.parent() != Some(hive.as_path()) {
        return Err(refuse());
    }
    let target = std::fs::read_link(p).map_err(|_| refuse())?;
    let parts: Vec<Component> = target.components().collect();
    let (dir, mtpt) = match parts.as_slice() {
        [Component::ParentDir, Component::Normal(u), Component::Normal(m)] => (u.to_str(), m.to_str()),
        _ => return Err(refuse()),
    };
    let (Some(dir), Some(mtpt)) = (dir, mtpt) else { return Err(refuse()) };
    let owner: u32 = dir.strip_prefix("user").and_then(|u| u.parse().ok()).ok_or_else(refuse)?;
    if !mtpt.starts_with("mtpt-") {
        return Err(refuse());
    }
    if caller.uid != 0 && caller.uid != owner {
        bail!("umount refused: {path} is not a mount of {}", caller.name);
    }
    let at = root.join(dir).join(mtpt);
    let flags = if lazy { nix::mount::MntFlags::MNT_DETACH } else { nix::mount::MntFlags::empty() };
    nix::mount::umount2(&at, flags).with_context(|| format!("umount {path}"))?;
    let _ = std::fs::remove_dir(&at);
    std::fs::remove_file(p).with_context(|| format!("remove {path}"))?;
    log::info!("mountbroker: {} unmounted {}", caller.name, at.display());
    Ok(())
}
