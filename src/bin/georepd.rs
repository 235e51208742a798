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
        replica_hold: std::time::Duration::from_secs(a.replica_hold_time),
    };
    let api = georep::api::ApiConfig::parse(&a.listen, a.insecure_http, a.tls_cert, a.tls_key)?;
    let d = Daemon::open(dirs, opts)?;
    georep::api::spawn(d.clone(), &api)?;
    let stopper = d.clone();
    let signals = georep::daemon::signals::install()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(why) = signals.wait() {
            stopper.shutdown(why);
            std::process::exit(0);
        }
    })?;
    d.serve()
}

fn main() {
    georep::logging::init("info", false);
    if let Err(e) = run() {
        eprintln!("georepd: {e:#}");
        std::process::exit(1);
    }
}
