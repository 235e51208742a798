//! `georepd`: the node daemon (see `georep::daemon`).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Parser;
use georep::daemon::{Daemon, Options, dirs::Dirs};

fn run() -> anyhow::Result<()> {
    let a = georep::cli::georepd::Args::parse();
    if a.store != "local" {
        anyhow::bail!("--store {}: only the embedded store (local) is available", a.store);
    }
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
    };
    let api = georep::api::ApiConfig::parse(&a.listen, a.insecure_http, a.tls_cert, a.tls_key)?;
    let d = Daemon::open(dirs, opts)?;
    georep::api::spawn(d.clone(), &api)?;
    let stopper = d.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Ok(sig) = stopping_signals().wait() {
            stopper.shutdown(sig.as_str());
            std::process::exit(0);
        }
    })?;
    d.serve()
}

/// SIGTERM and SIGINT: taken by one thread (`run`), blocked in every other from the start
/// (children start with a clean mask: `std::process::Command` resets it).
fn stopping_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

fn main() {
    if let Err(e) = stopping_signals().thread_block() {
        eprintln!("georepd: block SIGTERM: {e}");
        std::process::exit(1);
    }
    georep::logging::init("info", false);
    if let Err(e) = run() {
        eprintln!("georepd: {e:#}");
        std::process::exit(1);
    }
}
