//! On a shared store (etcd), each node makes what runs on it match the store, whichever node a
//! command was given to: the brick servers of the started volumes it hosts, and the workers of
//! the running sessions of those volumes (started, paused, resumed, restarted with a new
//! config, stopped, gone). Once a second, under the command lock; a node that was down does the
//! same when it starts, so it picks up what changed meanwhile.
//!
//! On a brick that several nodes share (`replica N`), only the node elected serves it
//! (`election`): the pass begins with the election, and the brick server and workers follow.
//!
//! Commands still act at once on the node they are given to; what they did is then already
//! what the store says, so a pass finds nothing to do. The one record of what a worker runs
//! with is its `worker.json`: a pass restarts a worker only when the spec the store gives
//! differs from it.

use std::sync::Arc;
use std::time::Duration;

use super::Daemon;
use super::sessions::{self, Session};
use super::store::{Spec, StoreExt};
use super::volumes::Volume;

const EVERY: Duration = Duration::from_secs(1);

/// Starts the passes on a shared store (the embedded store has one node: its commands act).
pub fn start(d: &Arc<Daemon>) -> std::io::Result<()> {
    if matches!(d.opts.store, Spec::Local) {
        return Ok(());
    }
    let d = d.clone();
    super::every("reconcile", EVERY, move || pass(&d))
}

/// One pass.
pub fn pass(d: &Daemon) -> anyhow::Result<()> {
    let vols: Vec<Volume> = d.store.list_json("volumes/")?;
    let sessions: Vec<Session> = d.store.list_json("sessions/")?;
    let _g = d.big_lock.lock();
    if let Err(e) = super::keys::pass(d) {
        log::warn!("session key: not published: {e:#}");
    }
    if let Err(e) = super::destinations::sync_pins(d) {
        log::warn!("destinations: host keys not pinned here: {e:#}");
    }
    if let Err(e) = super::volumes::create_requested(d) {
        log::warn!("volume create asked by another node: {e:#}");
    }
    // Who serves what first: the bricks and workers follow.
    super::election::pass(d, &vols, &sessions);
    for v in &vols {
        let Some(spec) = v.brick_spec(d) else { continue };
        match (v.runs_brick_here(d), d.bricks.watching(&v.name)) {
            (true, false) => {
                log::info!("volume {}: started, served here: starting its brick server", v.name);
                if let Err(e) = d.bricks.start(spec) {
                    log::error!("volume {}: {e:#}", v.name);
                }
            }
            (false, true) => {
                log::info!("volume {}: stopped, or served by another node: stopping its brick server", v.name);
                if let Err(e) = d.bricks.stop(&spec) {
                    log::error!("volume {}: {e:#}", v.name);
                }
            }
            _ => {}
        }
    }
    let mut here = std::collections::HashSet::new();
    for s in &sessions {
        let Some(v) = vols.iter().find(|v| v.name == s.primary) else { continue };
        let key = s.key();
        let Some((path, spec)) = sessions::spec_of(d, s, v)? else { continue };
        here.insert(key.clone());
        let paused = d.supervisor.paused(&key);
        if !s.running() {
            if paused.is_some() {
                log::info!("session {key}: {} (the store says so): stopping its worker", s.state);
                d.supervisor.stop(&key);
            }
            continue;
        }
        let applied = std::fs::read(&path).ok();
        match paused {
            None => {
                log::info!("session {key}: {} (the store says so): starting its worker", s.state);
                sessions::start_workers(d, s)?;
            }
            Some(_) if applied.as_deref() != Some(&spec[..]) => {
                log::info!("session {key}: its config changed: restarting its worker");
                sessions::start_workers(d, s)?;
            }
            Some(p) if p != (s.state == "Paused") => {
                if s.state == "Paused" {
                    d.supervisor.pause(&key);
                } else {
                    d.supervisor.resume(&key);
                }
            }
            Some(_) => {}
        }
    }
    // Sessions deleted (or whose volume went): their workers go.
    for key in d.supervisor.keys() {
        if !here.contains(&key) {
            log::info!(
                "session {key}: not to run here (deleted, or its volume served by another node): stopping its worker"
            );
            d.supervisor.stop(&key);
        }
    }
    Ok(())
}
