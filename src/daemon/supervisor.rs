//! The supervisor: one monitor thread per started session on this node, each running the
//! worker process of the node's brick (`georep worker <spec>`), restarting it with backoff
//! when it dies (the row shows `Faulty` with the reason meanwhile). Pause stops the worker's
//! process group (SIGSTOP), resume continues it, stop ends it (SIGTERM, then SIGKILL).
//!
//! A worker dies with the daemon (PR_SET_PDEATHSIG, set from the long-lived monitor thread
//! that forks it), so a restarted daemon never finds an orphan syncing the same brick.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use parking_lot::{Condvar, Mutex};

use crate::session::status::BrickStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Run,
    Pause,
    Restart,
    Stop,
}

#[derive(Debug)]
struct State {
    want: Want,
    /// The worker's process group, while it runs.
    pgid: Option<i32>,
    spawned_at: Option<std::time::SystemTime>,
    /// Set while the worker is down after dying, with why.
    faulty: Option<String>,
    restarts: u64,
}

struct Monitor {
    state: Mutex<State>,
    cv: Condvar,
    status_file: PathBuf,
}

#[derive(Default)]
pub struct Supervisor {
    monitors: Mutex<HashMap<String, Arc<Monitor>>>,
}

impl Supervisor {
    /// Starts (or restarts, if already there) the monitor of session `key`.
    pub fn start(&self, key: &str, exe: &Path, spec: PathBuf, log: PathBuf, paused: bool) {
        self.stop(key);
        let status_file = spec.with_file_name("brick-status.json");
        let m = Arc::new(Monitor {
            state: Mutex::new(State {
                want: if paused { Want::Pause } else { Want::Run },
                pgid: None,
                spawned_at: None,
                faulty: None,
                restarts: 0,
            }),
            cv: Condvar::new(),
            status_file,
        });
        self.monitors.lock().insert(key.to_string(), Arc::clone(&m));
        let exe = exe.to_path_buf();
        let name = key.to_string();
        std::thread::Builder::new()
            .name(format!("monitor {key}"))
            .spawn(move || monitor(&name, &m, &exe, &spec, &log))
            .expect("spawn a monitor thread");
    }

    fn set(&self, key: &str, want: Want) -> bool {
        let Some(m) = self.monitors.lock().get(key).cloned() else { return false };
        m.state.lock().want = want;
        m.cv.notify_all();
        true
    }

    /// Ends the session's worker and monitor; returns once the worker is gone.
    pub fn stop(&self, key: &str) {
        let Some(m) = self.monitors.lock().remove(key) else { return };
        let mut st = m.state.lock();
        st.want = Want::Stop;
        m.cv.notify_all();
        while st.pgid.is_some() {
            m.cv.wait_for(&mut st, Duration::from_millis(100));
        }
    }

    /// Ends every worker and monitor (the daemon's shutdown), all at once; returns once the
    /// workers are gone.
    pub fn stop_all(&self) {
        let all: Vec<Arc<Monitor>> = self.monitors.lock().drain().map(|(_, m)| m).collect();
        for m in &all {
            m.state.lock().want = Want::Stop;
            m.cv.notify_all();
        }
        for m in &all {
            let mut st = m.state.lock();
            while st.pgid.is_some() {
                m.cv.wait_for(&mut st, Duration::from_millis(100));
            }
        }
    }

    /// The sessions that have a monitor here.
    pub fn keys(&self) -> Vec<String> {
        self.monitors.lock().keys().cloned().collect()
    }

    /// Whether the session's worker is to be paused (`None`: no monitor).
    pub fn paused(&self, key: &str) -> Option<bool> {
        let m = self.monitors.lock().get(key).cloned()?;
        let want = m.state.lock().want;
        Some(want == Want::Pause)
    }

    pub fn pause(&self, key: &str) {
        self.set(key, Want::Pause);
    }

    pub fn resume(&self, key: &str) {
        self.set(key, Want::Run);
    }

    /// Restarts the worker at once (a config change).
    pub fn restart(&self, key: &str) {
        self.set(key, Want::Restart);
    }

    /// What `status` shows for the worker: `Faulty` while it is down after dying,
    /// `Initializing...` until it reports, then what it reports.
    pub fn worker_status(&self, key: &str) -> Option<String> {
        let m = self.monitors.lock().get(key).cloned()?;
        let st = m.state.lock();
        if st.faulty.is_some() {
            return Some("Faulty".into());
        }
        if st.want == Want::Pause {
            return Some("Paused".into());
        }
        let since = st.spawned_at?;
        let b = BrickStatus::load(&m.status_file);
        let fresh = b.as_ref().is_some_and(|b| {
            let t = std::time::UNIX_EPOCH + Duration::from_millis(b.updated_ms);
            t >= since - Duration::from_millis(1)
        });
        Some(match b {
            Some(b) if fresh && !b.worker_status.is_empty() => b.worker_status,
            _ => "Initializing...".into(),
        })
    }

    /// How many times the session's worker died and was started again (since the session was
    /// started).
    pub fn restarts(&self, key: &str) -> u64 {
        self.monitors.lock().get(key).map_or(0, |m| m.state.lock().restarts)
    }

    pub fn last_error(&self, key: &str) -> Option<String> {
        let m = self.monitors.lock().get(key).cloned()?;
        m.state.lock().faulty.clone()
    }
}

fn spawn(exe: &Path, spec: &Path, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut cmd = Command::new(exe);
    cmd.arg("worker").arg(spec).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

fn signal(pgid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// Why a worker ended, for the Faulty row: what it reported, else how it exited.
fn death_reason(m: &Monitor, status: std::process::ExitStatus) -> String {
    match BrickStatus::load(&m.status_file) {
        Some(b) if !b.last_error.is_empty() => b.last_error,
        _ => format!("worker exited ({status})"),
    }
}

fn monitor(key: &str, m: &Monitor, exe: &Path, spec: &Path, log: &Path) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut child = {
            let mut st = m.state.lock();
            if st.want == Want::Stop {
                break;
            }
            if st.want == Want::Restart {
                st.want = Want::Run;
            }
            match spawn(exe, spec, log) {
                Ok(c) => {
                    st.pgid = Some(c.id() as i32);
                    st.spawned_at = Some(std::time::SystemTime::now());
                    st.faulty = None;
                    if st.want == Want::Pause {
                        signal(c.id() as i32, Signal::SIGSTOP);
                    }
                    c
                }
                Err(e) => {
                    st.faulty = Some(format!("cannot start the worker: {e}"));
                    drop(st);
                    if wait_unless_stopped(m, backoff) {
                        break;
                    }
                    continue;
                }
            }
        };
        let started = Instant::now();
        let pgid = child.id() as i32;
        let mut paused = m.state.lock().want == Want::Pause;
        // Watch the worker and the wishes.
        let exit = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            let mut st = m.state.lock();
            match st.want {
                Want::Stop | Want::Restart => {
                    drop(st);
                    signal(pgid, Signal::SIGCONT);
                    signal(pgid, Signal::SIGTERM);
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    signal(pgid, Signal::SIGKILL);
                    let _ = child.wait();
                    break None;
                }
                Want::Pause if !paused => {
                    signal(pgid, Signal::SIGSTOP);
                    paused = true;
                }
                Want::Run if paused => {
                    signal(pgid, Signal::SIGCONT);
                    paused = false;
                }
                _ => {}
            }
            m.cv.wait_for(&mut st, Duration::from_millis(100));
        };
        // The worker's children (its receiver) go with it.
        signal(pgid, Signal::SIGKILL);
        let mut st = m.state.lock();
        st.pgid = None;
        m.cv.notify_all();
        if let Some(status) = exit {
            let reason = death_reason(m, status);
            // A worker that had reached its receiver lost a connection that worked (a link
            // cut, sshd or the receiver gone): it tries again at once, and backs off only
            // while it cannot connect.
            let spawned_ms = st.spawned_at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let connected = BrickStatus::load(&m.status_file)
                .is_some_and(|b| spawned_ms.is_some_and(|t| b.connected_ms >= t.as_millis() as u64));
            if connected {
                backoff = Duration::from_secs(1);
            }
            log::warn!("session {key}: worker died: {reason}; restarting in {backoff:?}");
            st.faulty = Some(reason);
            st.restarts += 1;
            drop(st);
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            if wait_unless_stopped(m, backoff) {
                break;
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
    let mut st = m.state.lock();
    st.pgid = None;
    m.cv.notify_all();
}

/// Sleeps `d` unless the session is stopped meanwhile (then returns true).
fn wait_unless_stopped(m: &Monitor, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut st = m.state.lock();
    while st.want != Want::Stop && st.want != Want::Restart && Instant::now() < deadline {
        m.cv.wait_until(&mut st, deadline);
    }
    st.want == Want::Stop
}
