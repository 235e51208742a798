//! `mount.georep`: the helper `mount -t georep SOURCE DIR [-o OPTIONS]` runs.
//!
//! It forks a daemon that mounts and serves; the parent waits until the mount is live (or has
//! failed) and exits with the result, as mount helpers do.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use georep::fs::brick::BrickError;
use georep::fs::server::{self, AttachError, Lifetime, Server};
use georep::fs::{MountConfig, mount, sys};

struct Args {
    source: PathBuf,
    target: PathBuf,
    opts: String,
    foreground: bool,
    /// `--serve BRICK`: run a volume's brick server (georepd does).
    serve: bool,
}

fn parse_args() -> Args {
    use clap::Parser;
    let a = georep::cli::mount::Args::parse();
    let opts = a.opts();
    Args { source: a.source, target: a.target.unwrap_or_default(), opts, foreground: a.foreground, serve: a.serve }
}

fn log_path(target: &std::path::Path) -> PathBuf {
    let dir = georep::daemon::dirs::Dirs::from_env().log;
    let name: String = target.to_string_lossy().trim_matches('/').replace('/', "-");
    dir.join(format!("mount-{}.log", if name.is_empty() { "root".into() } else { name }))
}

/// How long a mount waits for its brick server (georepd's being restarted, a plain
/// directory's being started by another mount).
const SERVER_WAIT: Duration = Duration::from_secs(15);

fn run() -> anyhow::Result<()> {
    let args = parse_args();
    if args.serve {
        return serve_volume(&args);
    }
    let target =
        std::fs::canonicalize(&args.target).with_context(|| format!("mount point {}", args.target.display()))?;
    if args.opts.split(',').any(|o| o == "remount") {
        return georep::fs::mount::remount(&target, &args.opts);
    }
    let (brick, fsname) = resolve_source(&args.source)?;
    let mut cfg = MountConfig::parse(&brick, &target, &args.opts)?;
    if let Ok(root) = std::fs::canonicalize(&brick)
        && target.starts_with(&root)
    {
        bail!("mount point {} is inside the brick {}", target.display(), root.display());
    }
    let volume = fsname.is_some();
    if let Some(n) = fsname {
        cfg.fsname = n;
    }
    let run_dir = georep::daemon::dirs::Dirs::from_env().run;
    let deadline = Instant::now() + SERVER_WAIT;
    loop {
        if let Some(sock) = server::socket_of_brick(&run_dir, &brick)? {
            match server::attach(&sock, &cfg, &args.opts) {
                Ok(()) => return Ok(()),
                Err(AttachError::NoServer(_)) => {}
                Err(e) => bail!("{e}"),
            }
        }
        if Instant::now() > deadline {
            bail!("the brick server of {} did not come up within {SERVER_WAIT:?}", brick.display());
        }
        if volume {
            // georepd runs a started volume's server, and restarts it if it dies.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        match start_server(&cfg, &run_dir, args.foreground) {
            Ok(()) => return Ok(()),
            // Another mount's server took the brick meanwhile: attach to it.
            Err(e) if e.downcast_ref::<BrickError>().is_some_and(|b| matches!(b, BrickError::Busy(_))) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(e),
        }
    }
}

/// `mount.georep --serve BRICK [-o OPTIONS]`: a started volume's brick server, run by georepd
/// in the foreground until SIGTERM.
fn serve_volume(args: &Args) -> anyhow::Result<()> {
    init_log();
    server::block_stop_signals()?;
    let cfg = MountConfig::parse(&args.source, Path::new("/"), &args.opts)?;
    let run_dir = georep::daemon::dirs::Dirs::from_env().run;
    let (srv, listener) = Server::open(&args.source, cfg.fs, &run_dir, Lifetime::Volume)?;
    if let Some(file) = std::env::var_os("GEOREP_FENCE").filter(|f| !f.is_empty()) {
        server::stop_when_fenced(PathBuf::from(file));
    }
    srv.serve(listener);
    Ok(())
}

/// A brick server for a plain directory, started by its first mount: it mounts, and serves
/// until the last mount is gone. Forks a daemon unless `foreground`; returns once the mount
/// is live (or has failed).
fn start_server(cfg: &MountConfig, run_dir: &Path, foreground: bool) -> anyhow::Result<()> {
    let first = |ready: &mut dyn FnMut()| -> anyhow::Result<()> {
        server::block_stop_signals()?;
        let (srv, listener) = Server::open(&cfg.brick, cfg.fs.clone(), run_dir, Lifetime::LastMount)?;
        let dev = mount::mount_fuse(cfg)?;
        if let Err(e) = srv.attach(cfg.clone(), dev, mount::connection_id(&cfg.mountpoint)) {
            let _ = nix::mount::umount2(&cfg.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            return Err(e);
        }
        ready();
        srv.serve(listener);
        Ok(())
    };
    if foreground {
        init_log();
        return first(&mut || {});
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
                    bail!("mount daemon exited before mounting (see {})", log_path(&cfg.mountpoint).display())
                }
                None if msg.starts_with("busy") => Err(BrickError::Busy(cfg.brick.clone()).into()),
                None => bail!("{}", msg.trim_end()),
            }
        }
        sys::Forked::Child => {
            drop(rd);
            let _ = nix::unistd::setsid();
            let lp = log_path(&cfg.mountpoint);
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
            let mut pipe = Some(wr);
            let r = first(&mut || {
                // Closing the pipe after "ok" releases the waiting parent.
                if let Some(mut w) = pipe.take() {
                    let _ = w.write_all(b"ok");
                }
            });
            if let Err(e) = &r {
                if let Some(mut w) = pipe.take() {
                    let busy = e.downcast_ref::<BrickError>().is_some_and(|b| matches!(b, BrickError::Busy(_)));
                    let _ = if busy { write!(w, "busy") } else { write!(w, "{e:#}") };
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
    georep::logging::init("info", true);
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mount.georep: {e:#}");
        std::process::exit(1);
    }
}
