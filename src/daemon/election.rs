//! Which node serves a volume: runs its brick server and its sessions' workers (SPEC 3, 10).
//! On the embedded store, the node that hosts the brick (there is no other). On etcd, the
//! node that holds the volume's term: an election per replica set (a volume has one brick,
//! so one set), held under the node's lease (`elections/<volume>`). The node that holds it is
//! every session's Active; the others show Passive. A term's fencing token is the election
//! key's create revision, larger for every later term: it goes with the worker's every stime
//! update to the store (`put_if_held`) and to the receiver (`Hello`), which refuse a term
//! that is over.
//!
//! A pass runs every second (`reconcile`), and on each:
//! - a node that holds a term checks it still does; one whose lease may lapse (the store does
//!   not answer) gives up its terms before the lease can expire (`MARGIN`), and its fence
//!   files (`crate::fence`) stop its worker and brick server even if georepd itself stops;
//! - a free term goes to the first connected node in the volume's brick order: later nodes
//!   leave it to an earlier one for `GRACE`;
//! - no flapping: a node that is not the volume's first hands the role back to the first only
//!   after holding it `--replica-hold-time`, and only to a first node that has run that long;
//!   a node whose workers keep failing (Faulty, restarted `FAULTY_RESTARTS` times in its term)
//!   resigns if another node could serve, and stands again only after a backoff that doubles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::nodes::{self, NodeView, Registration};
use super::sessions::Session;
use super::store::{Spec, StoreExt};
use super::volumes::Volume;
use crate::fence::Fence;

/// A worker stops this long before the node's lease could expire.
pub const MARGIN: Duration = Duration::from_secs(2);
/// How long a later node leaves a free term to a connected earlier one.
const GRACE: Duration = Duration::from_secs(3);
/// A term whose workers were restarted this many times while Faulty is given up.
const FAULTY_RESTARTS: u64 = 3;
const BACKOFF_MIN: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

pub fn key(volume: &str) -> String {
    format!("elections/{volume}")
}

/// The value of an election key: who holds the term.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub uuid: String,
    pub name: String,
    /// When the term began (Unix ms).
    pub since_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Term {
    token: u64,
    since: Instant,
    /// The workers' restarts when the term began.
    restarts: u64,
}

#[derive(Clone, Default)]
struct VolumeState {
    term: Option<Term>,
    /// Since when the term has been seen free.
    free_since: Option<Instant>,
    /// After resigning Faulty: no campaign before this.
    quiet_until: Option<Instant>,
    backoff: Duration,
    /// The node that holds the term, as last seen.
    holder: Option<String>,
}

/// This node's part in the volumes' elections.
#[derive(Default)]
pub struct Elections {
    volumes: Mutex<HashMap<String, VolumeState>>,
    /// georepd is stopping: no more campaigns.
    stopping: std::sync::atomic::AtomicBool,
}

impl Elections {
    /// The token of this node's term of `volume`, if it holds one.
    pub fn token(&self, volume: &str) -> Option<u64> {
        self.volumes.lock().get(volume).and_then(|s| s.term).map(|t| t.token)
    }

    /// The node that serves `volume`, as this node last saw it.
    pub fn holder(&self, volume: &str) -> Option<String> {
        self.volumes.lock().get(volume).and_then(|s| s.holder.clone())
    }
}

/// Whether this node serves `v` now, and with which fencing token (0 on the embedded store,
/// where no other node could).
pub fn serving(d: &Daemon, v: &Volume) -> Option<u64> {
    v.local_brick(d)?;
    match d.opts.store {
        Spec::Local => Some(0),
        Spec::Etcd(_) => d.elections.token(&v.name),
    }
}

/// Whether the volume's brick is shared by several nodes: its brick server must then stop
/// by itself when its node's term may be over (`fence`).
pub fn shared(v: &Volume) -> bool {
    v.bricks.len() > 1
}

/// One pass over the volumes this node hosts (etcd only), under the command lock.
pub fn pass(d: &Daemon, vols: &[Volume], sessions: &[Session]) {
    if matches!(d.opts.store, Spec::Local) {
        return;
    }
    if d.elections.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let reg = d.registration.lock();
    let Some(reg) = reg.as_ref() else { return };
    // What the lease is sure of, less the margin: what a term may still be acted on.
    let left = reg.valid_for().and_then(|v| v.checked_sub(MARGIN)).filter(|l| !l.is_zero());
    let mut nodes = None;
    let hosted = |name: &str| vols.iter().any(|v| v.name == name && v.started() && v.local_brick(d).is_some());
    d.elections.volumes.lock().retain(|name, s| {
        if hosted(name) {
            return true;
        }
        if let Some(t) = s.term {
            log::info!("volume {name}: no longer served here (stopped, gone or moved): gives up the term {}", t.token);
            let _ = reg.resign(&key(name), t.token);
        }
        let _ = std::fs::remove_file(crate::fence::path(&d.dirs.run, name));
        false
    });
    for v in vols.iter().filter(|v| hosted(&v.name)) {
        // Worked on a copy: readers (`serving`, the status) do not wait for the store.
        let mut s = d.elections.volumes.lock().get(&v.name).cloned().unwrap_or_default();
        match left {
            None => {
                if let Some(t) = s.term.take() {
                    log::warn!(
                        "volume {}: this node's lease in the store may lapse (not renewed in time): it stops serving the volume (term {})",
                        v.name,
                        t.token
                    );
                }
            }
            Some(_) => {
                if let Err(e) = stand(d, reg, v, &mut s, sessions, &mut nodes) {
                    log::warn!("volume {}: election: {e:#}", v.name);
                }
            }
        }
        let file = crate::fence::path(&d.dirs.run, &v.name);
        // The deadline from what the lease is sure of now (the store may have been slow).
        let left = reg.valid_for().and_then(|v| v.checked_sub(MARGIN)).filter(|l| !l.is_zero());
        let saved = match (s.term, left) {
            (Some(t), Some(left)) => Fence::new(t.token, left).save(&file),
            _ => std::fs::remove_file(&file)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        };
        if let Err(e) = saved {
            log::error!("volume {}: {}: {e}", v.name, file.display());
        }
        d.elections.volumes.lock().insert(v.name.clone(), s);
    }
}

/// This node's move in `v`'s election.
fn stand(
    d: &Daemon,
    reg: &Registration,
    v: &Volume,
    s: &mut VolumeState,
    sessions: &[Session],
    nodes: &mut Option<Vec<NodeView>>,
) -> anyhow::Result<()> {
    let k = key(&v.name);
    let now = Instant::now();
    let me = &d.node.name;
    let value = serde_json::to_vec(&Holder {
        uuid: d.node.id.clone(),
        name: me.clone(),
        since_ms: crate::types::EpochMs::now().0,
    })?;
    let pos = v.bricks.iter().position(|(n, _)| n == me).unwrap_or(0);
    let earlier: Vec<&str> = v.bricks[..pos].iter().map(|(n, _)| n.as_str()).collect();
    let others: Vec<&str> = v.bricks.iter().map(|(n, _)| n.as_str()).filter(|n| n != me).collect();
    let nodes = match nodes {
        Some(n) => n,
        None => nodes.insert(nodes::list(d)?),
    };
    let now_ms = crate::types::EpochMs::now().0;
    let up = |names: &[&str], run_for: Duration| {
        nodes.iter().any(|n| {
            n.connected
                && names.contains(&n.record.name.as_str())
                && now_ms.saturating_sub(n.record.started_ms) >= run_for.as_millis() as u64
        })
    };
    let mine: Vec<String> = sessions.iter().filter(|x| x.primary == v.name && x.running()).map(|x| x.key()).collect();
    let restarts: u64 = mine.iter().map(|x| d.supervisor.restarts(x)).sum();
    if let Some(t) = s.term {
        if reg.campaign(&k, &value)? != Some(t.token) {
            log::warn!("volume {}: the term {} is over (this node's lease lapsed): Passive", v.name, t.token);
            s.term = None;
        } else {
            let faulty = mine.iter().any(|x| d.supervisor.worker_status(x).as_deref() == Some("Faulty"));
            if faulty && restarts >= t.restarts + FAULTY_RESTARTS && up(&others, Duration::ZERO) {
                s.backoff = (s.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                log::warn!(
                    "volume {}: its workers keep failing here (Faulty, {} restarts in the term {}): resigns, and stands again in {:?}",
                    v.name,
                    restarts - t.restarts,
                    t.token,
                    s.backoff
                );
                reg.resign(&k, t.token)?;
                s.term = None;
                s.quiet_until = Some(now + s.backoff);
                return Ok(());
            }
            let hold = d.opts.replica_hold;
            if !earlier.is_empty() && t.since.elapsed() >= hold && up(&earlier, hold) {
                log::info!(
                    "volume {}: hands the Active role back to {} (its first node, back and running for {hold:?})",
                    v.name,
                    earlier[0]
                );
                reg.resign(&k, t.token)?;
                s.term = None;
                return Ok(());
            }
            if t.since.elapsed() > BACKOFF_MAX {
                s.backoff = Duration::ZERO;
            }
            return Ok(());
        }
    }
    if s.quiet_until.is_some_and(|q| now < q) {
        s.holder = d.store.get_json::<Holder>(&k)?.map(|h| h.name);
        return Ok(());
    }
    if let Some(h) = d.store.get_json::<Holder>(&k)? {
        s.free_since = None;
        s.holder = Some(h.name);
        return Ok(());
    }
    let free = *s.free_since.get_or_insert(now);
    if up(&earlier, Duration::ZERO) && free.elapsed() < GRACE {
        return Ok(());
    }
    if let Some(token) = reg.campaign(&k, &value)? {
        log::info!("volume {}: Active: this node serves it (term {token})", v.name);
        s.term = Some(Term { token, since: now, restarts });
        s.free_since = None;
        s.holder = Some(me.clone());
    }
    Ok(())
}

/// georepd stops (its workers already stopped): its terms end now rather than a lease's TTL
/// later, and the servers of the shared bricks it ran stop with them, so that another node
/// takes over at once. A brick of this node alone keeps its server (its mounts keep working).
pub fn give_up(d: &Daemon) {
    d.elections.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let terms: Vec<(String, u64)> =
        d.elections.volumes.lock().drain().filter_map(|(n, s)| s.term.map(|t| (n, t.token))).collect();
    for (name, token) in terms {
        let _ = std::fs::remove_file(crate::fence::path(&d.dirs.run, &name));
        if let Ok(v) = super::volumes::get(d, &name)
            && shared(&v)
            && let Some(spec) = v.brick_spec(d)
            && let Err(e) = d.bricks.stop(&spec)
        {
            log::warn!("volume {name}: {e:#}");
        }
        if let Some(reg) = d.registration.lock().as_ref() {
            let _ = reg.resign(&key(&name), token);
        }
        log::info!("volume {name}: gave up its term {token}");
    }
}

/// Records, in one transaction that holds only while the term does, that `session`'s changes
/// up to `stime_ms` are on the secondary (`stimes/<session>`). `false`: the term is over.
pub fn commit_stime(d: &Daemon, volume: &str, session: &str, token: u64, stime_ms: u64) -> anyhow::Result<bool> {
    #[derive(Serialize)]
    struct Stime<'a> {
        stime_ms: u64,
        token: u64,
        node: &'a str,
    }
    let reg = d.registration.lock();
    let Some(reg) = reg.as_ref() else { anyhow::bail!("this node is not registered in the store") };
    let value = serde_json::to_vec(&Stime { stime_ms, token, node: &d.node.name })?;
    reg.put_if_held(&key(volume), token, &format!("stimes/{session}"), &value)
}
