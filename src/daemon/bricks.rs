//! The brick servers of this node's started volumes (`fs::server`): started at `volume start`
//! (and when georepd starts, for the volumes the store says are started), restarted when
//! one dies, stopped at `volume stop`.
//!
//! A brick server outlives georepd (no parent-death signal): users' mounts stay up while the
//! daemon restarts, and a georepd that starts finds the running server on its socket and
//! watches it instead of starting another (the brick's lock would refuse a second anyway).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::{Condvar, Mutex};

use crate::fs::server::{self, ServerStatus};
use crate::types::VolumeId;

/// How long a new brick server may take to answer on its socket.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long a stopping server may take to publish its changelog before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(30);

struct Watch {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// What georepd knows of the brick servers it runs.
#[derive(Default)]
pub struct Bricks {
    watches: Mutex<HashMap<String, Arc<Watch>>>,
}

/// How to run one volume's brick server.
#[derive(Clone, Debug)]
pub struct BrickSpec {
    pub volume: String,
    pub id: VolumeId,
    pub brick: PathBuf,
    pub helper: PathBuf,
    pub run: PathBuf,
    pub log: PathBuf,
    /// The node's fence file of the volume (`crate::fence`), for a brick several nodes share:
    /// the server stops by itself once its deadline passes.
    pub fence: Option<PathBuf>,
}

impl BrickSpec {
    pub fn socket(&self) -> PathBuf {
        server::socket_path(&self.run, &self.id)
    }
}

impl Bricks {
    /// Makes sure the volume's brick server runs (starting it, or finding it running), and
    /// watches it from then on; returns once it answers.
    pub fn start(&self, spec: BrickSpec) -> anyhow::Result<()> {
        let w = {
            let mut ws = self.watches.lock();
            if let Some(w) = ws.get(&spec.volume)
                && !*w.stop.lock()
            {
                None
            } else {
                let w = Arc::new(Watch { stop: Mutex::new(false), cv: Condvar::new() });
                ws.insert(spec.volume.clone(), w.clone());
                Some(w)
            }
        };
        if let Some(w) = w {
            let child = ensure_running(&spec)?;
            let s = spec.clone();
            std::thread::Builder::new()
                .name(format!("brick {}", spec.volume))
                .spawn(move || watch(&s, &w, child))
                .context("spawn a brick watch thread")?;
        }
        wait_answer(&spec.socket(), START_WAIT)
            .with_context(|| format!("the brick server of {} did not start (see {})", spec.volume, spec.log.display()))
    }

    /// Whether this daemon keeps the volume's brick server running.
    pub fn watching(&self, volume: &str) -> bool {
        self.watches.lock().get(volume).is_some_and(|w| !*w.stop.lock())
    }

    /// Stops the volume's brick server (SIGTERM: it publishes its changelog and exits; its
    /// mounts, if any, then report ENOTCONN).
    pub fn stop(&self, spec: &BrickSpec) -> anyhow::Result<()> {
        if let Some(w) = self.watches.lock().remove(&spec.volume) {
            *w.stop.lock() = true;
            w.cv.notify_all();
        }
        let Some(st) = server::status(&spec.socket())? else { return Ok(()) };
        let pid = Pid::from_raw(st.pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline && server::alive(st.pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if server::alive(st.pid) {
            log::warn!("brick server of {} did not stop within {STOP_WAIT:?}: killed", spec.volume);
            let _ = kill(pid, Signal::SIGKILL);
        }
        Ok(())
    }
}

/// What the volume's brick server serves, if it runs.
pub fn status(spec: &BrickSpec) -> anyhow::Result<Option<ServerStatus>> {
    server::status(&spec.socket())
}

/// The server running on the volume's socket, else a new one (then its `Child`).
fn ensure_running(spec: &BrickSpec) -> anyhow::Result<Option<Child>> {
    if server::status(&spec.socket())?.is_some() {
        return Ok(None);
    }
    spawn(spec).map(Some)
}

fn spawn(spec: &BrickSpec) -> anyhow::Result<Child> {
    if let Some(d) = spec.log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log)?;
    use std::os::unix::process::CommandExt;
    Command::new(&spec.helper)
        .arg("--serve")
        .arg(&spec.brick)
        .env("GEOREP_RUN_DIR", &spec.run)
        .env("GEOREP_FENCE", spec.fence.as_deref().unwrap_or(Path::new("")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own session: a signal to georepd's group (Ctrl-C in a terminal) is not for it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("run {}", spec.helper.display()))
}

fn wait_answer(socket: &Path, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if server::status(socket)?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nobody answers on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Watches the server (its `Child` if georepd started it, else its pid), and starts a new one
/// when it dies, with backoff, until told to stop.
fn watch(spec: &BrickSpec, w: &Watch, mut child: Option<Child>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let pid = match &child {
            Some(c) => Some(c.id()),
            None => server::status(&spec.socket()).ok().flatten().map(|s| s.pid),
        };
        let started = Instant::now();
        // Until it dies or the watch is stopped.
        loop {
            let alive = match (&mut child, pid) {
                // A killed server whose threads are stuck is a zombie that waitpid does not
                // report yet.
                (Some(c), _) => matches!(c.try_wait(), Ok(None)) && server::alive(c.id()),
                (None, Some(p)) => server::alive(p),
                (None, None) => false,
            };
            let mut stop = w.stop.lock();
            if *stop {
                // The stopping side signals the server; reap it if it is ours.
                drop(stop);
                if let Some(mut c) = child {
                    let _ = c.wait();
                }
                return;
            }
            if !alive {
                break;
            }
            w.cv.wait_for(&mut stop, Duration::from_millis(100));
        }
        // A killed server may be stuck in its own mounts' locks until they are cut off.
        server::abort_dead(&spec.run, &spec.id);
        if let Some(c) = &mut child {
            let _ = c.wait();
        }
        log::warn!("brick server of volume {} died; starting another in {backoff:?}", spec.volume);
        std::thread::sleep(backoff);
        if *w.stop.lock() {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(200);
        } else {
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        child = match ensure_running(spec) {
            Ok(c) => c,
            Err(e) => {
                log::error!("brick server of volume {}: {e:#}", spec.volume);
                None
            }
        };
    }
}
