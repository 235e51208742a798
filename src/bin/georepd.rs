//! `georepd`: the node daemon (see `georep::daemon`).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Parser;
use georep::daemon::{Daemon, Options, dirs::Dirs};

fn run() -> anyhow::Result<()> {
    let a = georep::cli::georepd::Args::parse();
    let store = a.store_spec()?;
    let mut dirs = Dirs::from_env();
    for (slot, flag) in [
        (&mut dirs.state, a.state_dir),
        (&mut dirs.config, a.config_dir),
        (&mut dirs.log, a.log_dir),
        (&mut dirs.run, a.run_dir),
    ] {
        if let Some(p) = flag {
            *slot = p;
        }
    }
    let mut local_peers = HashMap::new();
    for p in a.local_peers {
        let (h, d) = p.split_once('=').ok_or_else(|| anyhow::anyhow!("--local-peer {p:?}: expected HOST=RUN_DIR"))?;
        local_peers.insert(h.to_string(), PathBuf::from(d));
    }
    // Children (workers, receivers, mounts) see the same directories.
    for (k, v) in dirs.envs() {
        // SAFETY: single-threaded still; nothing reads the environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
    let opts = Options {
        node_name: a.node_name,
        local_peers,
        operator_key: a.operator_key,
        remote_receiver: a.remote_receiver,
        store,
    };
    let api = georep::api::ApiConfig::parse(&a.listen, a.insecure_http, a.tls_cert, a.tls_key)?;
    let d = Daemon::open(dirs, opts)?;
    georep::api::spawn(d.clone(), &api)?;
    let stopper = d.clone();
    let signals = stopping_signals()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut b = [0u8; 1];
        if nix::unistd::read(&signals, &mut b).is_ok_and(|n| n == 1) {
            stopper.shutdown(if b[0] == libc::SIGINT as u8 { "SIGINT" } else { "SIGTERM" });
            std::process::exit(0);
        }
    })?;
    d.serve()
}

/// The write end of the pipe SIGTERM and SIGINT are turned into.
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    let b = [sig as u8];
    // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
    unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
}

/// SIGTERM and SIGINT, written by their handler into a pipe whose read end is returned (read
/// by one thread, `run`). A handler, not a blocked mask: children (workers, brick servers)
/// inherit a mask, but exec resets handlers, so they still end on SIGTERM.
fn stopping_signals() -> anyhow::Result<std::os::fd::OwnedFd> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    use std::os::fd::IntoRawFd;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    SIGNAL_PIPE.store(w.into_raw_fd(), std::sync::atomic::Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(r)
}

fn main() {
    georep::logging::init("info", false);
    if let Err(e) = run() {
        eprintln!("georepd: {e:#}");
        std::process::exit(1);
    }
}
