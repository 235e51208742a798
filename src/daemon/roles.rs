//! The secondary side of sessions (SPEC 11): which primary volumes each volume of this node
//! receives from, and its promotion by a failover.
//!
//! A volume becomes a *secondary* when a session's receiver is first accepted for it (the
//! worker's Hello names its primary; the receiver passes it on with its mount request). From
//! then on its users' mounts are read-only (the brick's role file, `fs::role`): only receivers
//! change it, so it stays what its primary has. `failover` promotes it: users may write, and
//! that primary's receivers are refused from then on (a stale primary that comes back is not
//! merged), until a failback gives the roles back.
//!
//! Kept in the store under `roles/<volume>`.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::control::Response;
use super::store::StoreExt;
use super::volumes;
use crate::types::{EpochMs, VolumeId};

/// A primary volume a volume of this node receives from, or did until a failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The primary volume's UUID.
    pub id: String,
    /// `volume@node`, as its worker says.
    pub name: String,
    /// When its first receiver was accepted (ms since the epoch).
    pub since_ms: u64,
    /// When a failover promoted this volume in its place: its receivers are refused.
    #[serde(default)]
    pub promoted_ms: Option<u64>,
    /// A failback is giving the roles back: users may not write meanwhile.
    #[serde(default)]
    pub restoring: bool,
    /// At the failover: how far this volume had applied the primary's changes (its stime,
    /// the primary's clock): the promotion point.
    #[serde(default)]
    pub applied_ms: Option<u64>,
}

impl Upstream {
    /// The primary's volume name (`avol` of `avol@node`).
    pub fn volume(&self) -> &str {
        self.name.split_once('@').map_or(&self.name, |(v, _)| v)
    }
}

/// The upstreams of one volume.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Roles {
    pub upstreams: Vec<Upstream>,
}

impl Roles {
    /// Why users may not change the volume, if they may not: it receives from a primary and
    /// was not promoted in its place.
    pub fn users_read_only(&self) -> Option<String> {
        let live: Vec<&str> =
            self.upstreams.iter().filter(|u| u.promoted_ms.is_none()).map(|u| u.name.as_str()).collect();
        if let Some(u) = self.upstreams.iter().find(|u| u.restoring) {
            return Some(format!("giving the primary role back to {}", u.name));
        }
        (!live.is_empty()).then(|| format!("secondary of {} (until a failover promotes it)", live.join(", ")))
    }
}

/// A time for messages, as `status` shows times.
fn when(ms: u64) -> String {
    crate::session::status::format_time((ms / 1000) as i64, false)
}

fn key(volume: &str) -> String {
    format!("roles/{volume}")
}

pub fn get(d: &Daemon, volume: &str) -> anyhow::Result<Roles> {
    Ok(d.store.get_json(&key(volume))?.unwrap_or_default())
}

/// Stores `roles` and makes the brick agree: its role file, read again by its server.
fn save(d: &Daemon, volume: &str, roles: &Roles) -> anyhow::Result<()> {
    d.store.put_json(&key(volume), roles)?;
    let v = volumes::get(d, volume)?;
    let Some(brick) = v.local_brick(d) else { return Ok(()) };
    let role = crate::fs::role::Role { read_only: roles.users_read_only() };
    let layout = crate::types::BrickLayout::new(&brick);
    role.save(&layout.role_file()).with_context(|| format!("write {}", layout.role_file().display()))?;
    if let Some(spec) = v.brick_spec(d) {
        crate::fs::server::reload_role(&spec.socket())?;
    }
    Ok(())
}

/// A receiver asks to apply `primary`'s changes to `volume`: refused if a failover promoted
/// the volume in that primary's place; else the primary is recorded as an upstream (the
/// volume's users' mounts turn read-only with the first).
pub fn accept(d: &Daemon, volume: &str, primary: VolumeId, name: &str) -> anyhow::Result<()> {
    if primary == VolumeId::NIL {
        bail!("the worker does not say which primary volume it replicates (a georep older than this receiver)");
    }
    let _g = d.big_lock.lock();
    let mut roles = get(d, volume)?;
    let id = primary.to_string();
    match roles.upstreams.iter().find(|u| u.id == id) {
        Some(u) if u.promoted_ms.is_some() => bail!(
            "{volume} was promoted by a failover from {} at {}: it no longer takes {name}'s changes (fail back from {volume} first)",
            u.name,
            when(u.promoted_ms.unwrap_or_default())
        ),
        Some(_) => Ok(()),
        None => {
            roles.upstreams.push(Upstream {
                id,
                name: name.to_string(),
                since_ms: EpochMs::now().0,
                promoted_ms: None,
                restoring: false,
                applied_ms: None,
            });
            log::info!("volume {volume}: secondary of {name} from now on; users' mounts are read-only");
            save(d, volume, &roles)
        }
    }
}

/// `georep volume geo-replication <PVOL> <SECONDARY> failover`, on the secondary's node: the
/// local volume of `SECONDARY` stops taking `PVOL`'s changes (its running receivers are
/// ended) and becomes writable for its users.
pub fn failover(d: &Daemon, primary: &str, volume: &str) -> anyhow::Result<Response> {
    let _g = d.big_lock.lock();
    let v = volumes::get(d, volume)?;
    if v.local_brick(d).is_none() {
        bail!("Volume {volume} has no brick on this node: run failover on the secondary's node");
    }
    let mut roles = get(d, volume)?;
    let Some(u) = roles.upstreams.iter_mut().find(|u| u.volume() == primary) else {
        bail!("{volume} has never received changes from a volume {primary}: nothing to fail over from");
    };
    if let Some(at) = u.promoted_ms {
        bail!("{volume} was already promoted by a failover from {} at {}", u.name, when(at));
    }
    let at = EpochMs::now();
    u.promoted_ms = Some(at.0);
    let (name, id) = (u.name.clone(), u.id.clone());
    // Its receivers end first, so that the promotion point is where they stopped.
    let ended = d.receivers.end(volume, &id);
    let layout = crate::types::BrickLayout::new(v.local_brick(d).unwrap_or_default());
    let applied = id.parse().ok().and_then(|p| crate::fs::role::load_applied(&layout.applied_file()).get(&p).copied());
    let u = roles.upstreams.iter_mut().find(|u| u.id == id).context("the upstream vanished")?;
    u.applied_ms = applied;
    save(d, volume, &roles)?;
    log::warn!("volume {volume}: promoted by failover from {name}; {ended} receivers ended");
    let point = match applied {
        Some(ms) => format!("{name}'s changes are applied here up to {}", when(ms)),
        None => format!("how far {name}'s changes are applied here is not known"),
    };
    Ok(Response::Ok(format!(
        "Failover successful: {volume} is writable; changes from {name} are refused from now on (promoted at {}; {point})",
        when(at.0)
    )))
}

/// A failback's `restore` begins (`true`: `volume`'s users may not write) or gave up.
pub fn set_restoring(d: &Daemon, volume: &str, primary: &str, on: bool) -> anyhow::Result<()> {
    let _g = d.big_lock.lock();
    let mut roles = get(d, volume)?;
    let u = roles.upstreams.iter_mut().find(|u| u.id == primary).context("no such upstream")?;
    u.restoring = on;
    save(d, volume, &roles)
}

/// The end of a failback's `restore`: `volume` is the secondary of `primary` again (it takes
/// its changes; its users read-only).
pub fn demote(d: &Daemon, volume: &str, primary: &str) -> anyhow::Result<()> {
    let _g = d.big_lock.lock();
    let mut roles = get(d, volume)?;
    let u = roles.upstreams.iter_mut().find(|u| u.id == primary).context("no such upstream")?;
    (u.promoted_ms, u.restoring) = (None, false);
    save(d, volume, &roles)
}

/// The receivers of this node, by volume and primary: what a failover ends.
#[derive(Default)]
pub struct Receivers {
    live: parking_lot::Mutex<Vec<(String, String, i32)>>,
}

impl Receivers {
    /// A receiver (process `pid`) took a mount of `volume` for `primary`'s changes.
    pub fn add(&self, volume: &str, primary: &str, pid: i32) {
        let mut l = self.live.lock();
        l.retain(|(_, _, p)| alive(*p));
        l.push((volume.to_string(), primary.to_string(), pid));
    }

    /// Kills the receivers of `volume` for `primary`; returns how many.
    fn end(&self, volume: &str, primary: &str) -> usize {
        let mut n = 0;
        self.live.lock().retain(|(v, p, pid)| {
            if v == volume && p == primary {
                if alive(*pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
                    n += 1;
                }
                return false;
            }
            true
        });
        n
    }
}

/// Whether `pid` is still a georep receiver (not a process that reused its number).
fn alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|&b| b == 0).any(|w| w == b"receiver"))
}

/// What a volume recorded and never shipped toward another: its changes after its session's
/// stime (`since_ms`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    pub since_ms: u64,
    /// Inodes changed (made, written, changed, renamed, removed).
    pub inodes: Vec<String>,
    /// Directories whose names changed.
    pub dirs: Vec<String>,
    /// One line per path changed, `OP[,OP...] path` (at most `MAX_TAIL_LINES`), for the
    /// operator.
    pub lines: Vec<String>,
    /// How many changes in all.
    pub changes: u64,
}

/// The session of this node from `volume` to the volume with UUID `toward`.
fn session_toward(d: &Daemon, volume: &str, toward: &str) -> anyhow::Result<super::sessions::Session> {
    d.store
        .list_json::<super::sessions::Session>(&format!("sessions/{volume}/"))?
        .into_iter()
        .find(|s| s.secondary_volume_id == toward)
        .with_context(|| {
            format!("{volume} has no session to the volume {toward}: what it never shipped there is unknown")
        })
}

/// At a failback to `volume` from the volume `toward` promoted in its place: what `volume`
/// changed after its session to `toward` last synced (its unshipped tail), which the failback
/// discards.
pub fn tail(d: &Daemon, volume: &str, toward: &str, after_ms: u64, keep: bool) -> anyhow::Result<Tail> {
    use crate::changelog::{Consumer, Kind};
    let s = session_toward(d, volume, toward)?;
    let v = volumes::get(d, volume)?;
    let brick = v.local_brick(d).with_context(|| format!("Volume {volume} has no brick on this node"))?;
    let layout = crate::types::BrickLayout::new(&brick);
    let here: VolumeId = v.id.parse().unwrap_or_default();
    let toward_id: VolumeId = toward.parse().unwrap_or_default();
    // The later of this side's stime and what the other side said it applied (a batch it
    // made durable whose changelogs this side had not marked yet).
    let shipped = Consumer::register(&layout, &s.consumer())?.position();
    let since = shipped.ms.max(after_ms);
    let mut records =
        crate::changelog::brick_records_since(&layout, since).map_err(|e| anyhow::anyhow!("{volume}: {e}"))?;
    // What the session shipped of the file it was tailing is not part of the tail.
    records.retain(|r| r.seq >= shipped.seq);
    let index = crate::fs::gfid_index::GfidIndex::load(&layout.gfid_index()).ok();
    let root = std::fs::File::open(&brick)?;
    let path_of = |g: &crate::types::Gfid| -> String {
        if *g == crate::types::Gfid::ROOT {
            return String::new();
        }
        index
            .as_ref()
            .and_then(|i| crate::fs::gfid_index::resolve(i, std::os::fd::AsFd::as_fd(&root), g).ok())
            .and_then(|fd| std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).ok())
            .and_then(|p| p.strip_prefix(&brick).ok().map(|p| p.display().to_string()))
            .unwrap_or_else(|| format!("<gfid:{g}>"))
    };
    let mut t = Tail { since_ms: since, ..Tail::default() };
    let (mut inodes, mut dirs) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    // One line per path: what happened to it, in order.
    let mut by_path: Vec<(String, Vec<&'static str>)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut note = |path: String, what: &'static str| {
        let i = *at.entry(path.clone()).or_insert_with(|| {
            by_path.push((path, Vec::new()));
            by_path.len() - 1
        });
        if by_path[i].1.last() != Some(&what) {
            by_path[i].1.push(what);
        }
    };
    for r in records.iter().filter(|r| r.origin().first_made_on(here) != Some(toward_id)) {
        t.changes += 1;
        inodes.insert(r.gfid);
        match &r.entry {
            Some(e) => {
                dirs.insert(e.entry.pgfid);
                let from = join(&path_of(&e.entry.pgfid), &e.entry.name);
                match &e.new_entry {
                    Some(n) => {
                        dirs.insert(n.pgfid);
                        note(format!("{from} -> {}", join(&path_of(&n.pgfid), &n.name)), r.op.name());
                    }
                    None => note(from, r.op.name()),
                }
            }
            None => note(path_of(&r.gfid), if r.kind() == Kind::Data { "DATA" } else { "META" }),
        }
    }
    t.lines = by_path
        .into_iter()
        .take(crate::proto::MAX_TAIL_LINES)
        .map(|(p, ops)| format!("{} {p}", ops.join(",")))
        .collect();
    if keep {
        let dir = d.dirs.state.join("conflicts").join(volume).join(
            crate::session::status::format_time((EpochMs::now().0 / 1000) as i64, false)
                .replace(' ', "T")
                .replace(':', ""),
        );
        let mut kept = 0;
        for g in &inodes {
            let rel = path_of(g);
            if rel.is_empty() || rel.starts_with("<gfid:") {
                continue;
            }
            match keep_copy(&brick.join(&rel), &dir.join(&rel)) {
                Ok(true) => kept += 1,
                Ok(false) => {}
                Err(e) => log::warn!("failback: cannot keep a copy of {rel}: {e}"),
            }
        }
        t.lines.insert(0, format!("kept {kept} files as they were in {}", dir.display()));
    }
    t.inodes = inodes.iter().map(|g| g.to_string()).collect();
    t.dirs = dirs.iter().map(|g| g.to_string()).collect();
    Ok(t)
}

/// Copies a file or symlink of the brick to `to` (its owner, mode and times kept); false if it
/// is neither.
fn keep_copy(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(from)?;
    std::fs::create_dir_all(to.parent().unwrap_or(to))?;
    if md.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else if md.is_file() {
        std::fs::copy(from, to)?;
        std::fs::File::options().write(true).open(to)?.set_modified(md.modified()?)?;
    } else {
        return Ok(false);
    }
    std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid()))?;
    Ok(true)
}

fn join(dir: &str, name: &std::ffi::OsStr) -> String {
    let name = name.to_string_lossy();
    if dir.is_empty() { name.into_owned() } else { format!("{dir}/{name}") }
}

/// The end of a failback from the volume `from` to `volume`: `volume` is a primary again (no
/// longer `from`'s secondary: writable), and its session to `from` resumes from now (what it
/// recorded before is either its discarded tail or what it received from `from`).
pub fn restore(d: &Daemon, volume: &str, from: &str) -> anyhow::Result<String> {
    use crate::changelog::Consumer;
    let s = session_toward(d, volume, from)?;
    let v = volumes::get(d, volume)?;
    let brick = v.local_brick(d).with_context(|| format!("Volume {volume} has no brick on this node"))?;
    let layout = crate::types::BrickLayout::new(&brick);
    d.supervisor.stop(&s.key());
    Consumer::register(&layout, &s.consumer())?.resume_from(EpochMs::now().0)?;
    {
        let _g = d.big_lock.lock();
        let mut roles = get(d, volume)?;
        roles.upstreams.retain(|u| u.id != from);
        save(d, volume, &roles)?;
    }
    if s.running() {
        super::sessions::start_workers(d, &s)?;
    }
    log::warn!("volume {volume}: primary again after a failback; the session to {} resumes from now", s.secondary);
    Ok(format!("{volume} is the primary again; its session to {} resumes from now", s.secondary))
}
