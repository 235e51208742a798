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
    save(d, volume, &roles)?;
    let ended = d.receivers.end(volume, &id);
    log::warn!("volume {volume}: promoted by failover from {name}; {ended} receivers ended");
    Ok(Response::Ok(format!(
        "Failover successful: {volume} is writable; changes from {name} are refused from now on (promoted at {})",
        when(at.0)
    )))
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
