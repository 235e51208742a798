//! `mount.georep`: the helper `mount -t georep SOURCE DIR [-o OPTIONS]` runs.
//!
//! It forks a daemon that mounts and serves; the parent waits until the mount is live (or has
//! failed) and exits with the result, as mount helpers do.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, bail};
use georep::fs::{MountConfig, mount_blocking, sys};

const USAGE: &str =
    "usage: mount.georep {<BRICK_DIR>|[<NODE>:]<VOL>} <MOUNTPOINT> [-o <options>] [-f|--foreground] [-n] [-s] [-v]";

struct Args {
    source: PathBuf,
    target: PathBuf,
    opts: String,
    foreground: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut pos = Vec::new();
    let mut opts = String::new();
    let mut foreground = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\nMounts a georep brick: a transparent overlay that records every change.\n\nOptions (-o): ro, allow_other, rollover-time=SECS, fsync-interval=SECS,\n  changelog-retention=SECS, attr-timeout=SECS, threads=N, no-passthrough, no-changelog,\n  aux-gfid-mount, user-map-root=USER"
                );
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("mount.georep {}", georep::VERSION);
                std::process::exit(0);
            }
            "-o" => {
                let o = it.next().context("-o needs options")?;
                if !opts.is_empty() {
                    opts.push(',');
                }
                opts.push_str(&o);
            }
            "-f" | "--foreground" => foreground = true,
            "-n" | "-s" | "-v" => {}
            "-t" => {
                it.next();
            }
            s if s.starts_with('-') => bail!("unknown flag {s:?}\n{USAGE}"),
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        bail!("{USAGE}");
    }
    Ok(Args { source: pos[0].clone().into(), target: pos[1].clone().into(), opts, foreground })
}

fn log_path(target: &std::path::Path) -> PathBuf {
    let dir = georep::daemon::dirs::Dirs::from_env().log;
    let name: String = target.to_string_lossy().trim_matches('/').replace('/', "-");
    dir.join(format!("mount-{}.log", if name.is_empty() { "root".into() } else { name }))
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let target =
        std::fs::canonicalize(&args.target).with_context(|| format!("mount point {}", args.target.display()))?;
    if args.opts.split(',').any(|o| o == "remount") {
        return georep::fs::mount::remount(&target, &args.opts);
    }
    let (brick, fsname) = resolve_source(&args.source)?;
    let mut cfg = MountConfig::parse(&brick, &target, &args.opts)?;
    if let Some(n) = fsname {
        cfg.fsname = n;
    }
    if args.foreground {
        init_log();
        return mount_blocking(&cfg, || {});
    }
    let (mut rd, wr) = std::io::pipe()?;
    match sys::fork()? {
        sys::Forked::Parent(_) => {
            drop(wr);
            let mut msg = String::new();
            rd.read_to_string(&mut msg)?;
            match msg.strip_prefix("ok") {
                Some(_) => Ok(()),
                None if msg.is_empty() => {
                    bail!("mount daemon exited before mounting (see {})", log_path(&target).display())
                }
                None => bail!("{}", msg.trim_end()),
            }
        }
        sys::Forked::Child => {
            drop(rd);
            let _ = nix::unistd::setsid();
            let lp = log_path(&target);
            if let Some(d) = lp.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&lp) {
                let _ = sys::dup_onto(f.as_fd(), 2);
            }
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                let _ = sys::dup_onto(null.as_fd(), 0);
                let _ = sys::dup_onto(null.as_fd(), 1);
            }
            init_log();
            let pipe = std::sync::Mutex::new(Some(wr));
            let r = mount_blocking(&cfg, || {
                // Closing the pipe after "ok" releases the waiting parent.
                if let Some(mut w) = pipe.lock().unwrap().take() {
                    let _ = w.write_all(b"ok");
                }
            });
            if let Err(e) = &r {
                if let Some(mut w) = pipe.lock().unwrap().take() {
                    let _ = write!(w, "{e:#}");
                }
                log::error!("{e:#}");
            }
            std::process::exit(if r.is_ok() { 0 } else { 1 });
        }
    }
}

/// A brick path is mounted as it is; `[NODE:]VOL` is a volume of this node's georepd, whose
/// brick is mounted if the volume is started.
fn resolve_source(source: &std::path::Path) -> anyhow::Result<(PathBuf, Option<String>)> {
    use georep::daemon::control::{self, Request, Response};
    let s = source.to_string_lossy();
    if s.starts_with('/') || s.starts_with('.') {
        return Ok((source.to_path_buf(), None));
    }
    let dirs = georep::daemon::dirs::Dirs::from_env();
    match control::call(&dirs, &Request::ResolveVolume { name: s.to_string() })? {
        Response::Brick { started: false, .. } => bail!("volume {s} is not started"),
        Response::Brick { path, .. } => Ok((path, Some(s.to_string()))),
        Response::Err(e) => bail!("{e}"),
        other => bail!("georepd: unexpected answer {other:?}"),
    }
}

fn init_log() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mount.georep: {e:#}");
        std::process::exit(1);
    }
}
