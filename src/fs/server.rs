//! The brick server: one process per brick that owns it (its lock, inode table, names map,
//! GFID index, changelog recorder and xtime marks) and serves every mount of it, each a FUSE
//! session of its own (GlusterFS's brick process, `glusterfsd`, in substance).
//!
//! A mount attaches through the server's socket, `<run>/bricks/<volume-id>.sock`: the mount
//! helper opens `/dev/fuse`, mounts it, and hands the descriptor over with the mount's options;
//! the server does the FUSE handshake and serves the session until it is unmounted. A
//! volume's server is started by georepd at `volume start` and runs until `volume stop`
//! (`Lifetime::Volume`); a plain directory mounted without a volume gets a server from its
//! first mount, which ends with its last (`Lifetime::LastMount`).
//!
//! Must never: let two servers own one brick (the brick's lock), or serve a mount whose
//! brick-wide options differ from its own.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::brick::{self, Brick, BrickError};
use super::mount::{self, MountConfig};
use super::{BrickFs, FsOptions};
use crate::types::VolumeId;
use crate::unixmsg;

/// The directory of the brick servers' sockets, under the run directory.
pub const SOCKET_DIR: &str = "bricks";

/// The socket of the server of volume (brick) `id`.
pub fn socket_path(run: &Path, id: &VolumeId) -> PathBuf {
    run.join(SOCKET_DIR).join(format!("{id}.sock"))
}

/// The socket of the brick at `root`, if it is a brick already.
pub fn socket_of_brick(run: &Path, root: &Path) -> Result<Option<PathBuf>, BrickError> {
    Ok(brick::volume_of(root)?.map(|id| socket_path(run, &id)))
}

/// How long the server lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Until told to stop (SIGTERM): a started volume's server, run by georepd.
    Volume,
    /// Until its last mount goes: a plain directory's, started by its first mount.
    LastMount,
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Serve the FUSE session whose `/dev/fuse` descriptor comes with the request.
    Attach {
        mountpoint: PathBuf,
        options: String,
    },
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Attached,
    Status(ServerStatus),
    Err(String),
}

/// What a brick server serves, for `volume status`, `volume stop` and the tests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerStatus {
    pub pid: u32,
    pub brick: PathBuf,
    pub volume: String,
    pub mounts: Vec<MountInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub mountpoint: PathBuf,
    pub options: String,
}

enum Event {
    SessionEnded,
    Stop,
}

pub struct Server {
    core: Arc<BrickFs>,
    socket: PathBuf,
    lifetime: Lifetime,
    mounts: Mutex<Vec<(u64, MountInfo)>>,
    next_mount: std::sync::atomic::AtomicU64,
    events: Mutex<Sender<Event>>,
    events_rx: Mutex<Option<std::sync::mpsc::Receiver<Event>>>,
}

impl Server {
    /// Opens the brick at `root` (taking its lock) and binds its socket under `run`.
    pub fn open(
        root: &Path,
        opts: FsOptions,
        run: &Path,
        lifetime: Lifetime,
    ) -> anyhow::Result<(Arc<Server>, UnixListener)> {
        match super::sys::raise_nofile_limit() {
            Ok(n) => log::info!("open file limit {n}"),
            Err(e) => log::warn!("cannot raise the open file limit: {e}"),
        }
        let brick = Brick::open(root, None)?;
        let socket = socket_path(run, &brick.volume);
        let dir = run.join(SOCKET_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        // Holding the brick's lock, this is the brick's only server: a socket left there is a
        // dead one's.
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).with_context(|| format!("bind {}", socket.display()))?;
        let core = BrickFs::new(brick, opts)?;
        let (tx, rx) = channel();
        let server = Arc::new(Server {
            core,
            socket,
            lifetime,
            mounts: Mutex::new(Vec::new()),
            next_mount: Default::default(),
            events: Mutex::new(tx),
            events_rx: Mutex::new(Some(rx)),
        });
        log::info!("brick server {} for {} ({:?})", std::process::id(), root.display(), lifetime);
        Ok((server, listener))
    }

    /// Serves the FUSE session of `dev` (mounted on `cfg.mountpoint`) on a thread of its own,
    /// once the kernel handshake is done.
    pub fn attach(self: &Arc<Self>, cfg: MountConfig, dev: OwnedFd) -> anyhow::Result<()> {
        cfg.check_brick_options(&self.core.opts)?;
        if cfg.mountpoint.starts_with(&self.core.brick().layout.root) {
            bail!(
                "mount point {} is inside the brick {}",
                cfg.mountpoint.display(),
                self.core.brick().layout.root.display()
            );
        }
        let fs = self
            .core
            .session(cfg.fs.clone())
            .context("the brick server is stopping, or serves as many mounts as it can")?;
        let id = fs.id;
        let session = mount::new_session(fs, dev, &cfg).context("fuse handshake")?;
        self.core.sessions.ready(id, session.notifier());
        let token = self.next_mount.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let info = MountInfo { mountpoint: cfg.mountpoint.clone(), options: describe(&cfg) };
        self.mounts.lock().push((token, info));
        log::info!("mounted on {} ({} mounts)", cfg.mountpoint.display(), self.core.session_count());
        let me = self.clone();
        std::thread::Builder::new().name("fuse-session".into()).spawn(move || {
            if let Err(e) = session.run() {
                log::error!("fuse session on {}: {e}", cfg.mountpoint.display());
            }
            me.mounts.lock().retain(|(t, _)| *t != token);
            log::info!("unmounted {} ({} mounts)", cfg.mountpoint.display(), me.core.session_count());
            let _ = me.events.lock().send(Event::SessionEnded);
        })?;
        Ok(())
    }

    fn status(&self) -> ServerStatus {
        ServerStatus {
            pid: std::process::id(),
            brick: self.core.brick().layout.root.clone(),
            volume: self.core.brick().volume.to_string(),
            mounts: self.mounts.lock().iter().map(|(_, m)| m.clone()).collect(),
        }
    }

    /// Serves attach and status requests until the server's life ends (SIGTERM or SIGINT;
    /// or, for a plain directory's, its last unmount), then publishes the changelog and
    /// returns. Signals must be blocked in every thread (`block_stop_signals`) before any
    /// is started.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        let me = self.clone();
        let _ = std::thread::Builder::new().name("brick-accept".into()).spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = me.clone();
                let _ = std::thread::Builder::new().name("brick-attach".into()).spawn(move || s.handle(conn));
            }
        });
        let tx = self.events.lock().clone();
        let _ = std::thread::Builder::new().name("brick-signals".into()).spawn(move || {
            if stop_signals().wait().is_ok() {
                let _ = tx.send(Event::Stop);
            }
        });
        let rx = self.events_rx.lock().take().expect("served once");
        for ev in rx {
            match ev {
                Event::Stop => {
                    self.core.sessions.close();
                    break;
                }
                Event::SessionEnded if self.lifetime == Lifetime::LastMount && self.core.close_if_idle() => break,
                Event::SessionEnded => {}
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        let n = self.core.session_count();
        if n > 0 {
            log::warn!("stopping with {n} mounts attached: they will report ENOTCONN");
        }
        self.core.shutdown();
        log::info!("brick server stopped");
    }

    /// One client of the socket: root only (the socket's directory is root's 0700).
    fn handle(self: &Arc<Self>, conn: UnixStream) {
        let answer = match unixmsg::recv::<Request>(&conn) {
            Ok(Some((Request::Status, _))) => Answer::Status(self.status()),
            Ok(Some((Request::Attach { mountpoint, options }, Some(dev)))) => {
                match MountConfig::parse(&self.core.brick().layout.root, &mountpoint, &options)
                    .and_then(|cfg| self.attach(cfg, dev))
                {
                    Ok(()) => Answer::Attached,
                    Err(e) => Answer::Err(format!("{e:#}")),
                }
            }
            Ok(Some((Request::Attach { .. }, None))) => {
                Answer::Err("attach: no /dev/fuse descriptor came with it".into())
            }
            Ok(None) => return,
            Err(e) => Answer::Err(format!("{e:#}")),
        };
        let _ = unixmsg::send(&conn, &answer, None);
    }
}

/// The options a mount was made with, as `-o` would give them.
fn describe(cfg: &MountConfig) -> String {
    let mut o = vec![if cfg.read_only { "ro" } else { "rw" }.to_string()];
    if cfg.fs.aux_gfid {
        o.push("aux-gfid-mount".into());
    }
    if let Some(uid) = cfg.fs.map_root {
        o.push(format!("user-map-root={uid}"));
    }
    if !cfg.fs.passthrough {
        o.push("no-passthrough".into());
    }
    if !cfg.fs.uring {
        o.push("no-uring".into());
    }
    o.join(",")
}

fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut s = SigSet::empty();
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGINT);
    s
}

/// Blocks SIGTERM and SIGINT in this thread and the threads it starts: the server waits for
/// them on a thread of its own and stops cleanly.
pub fn block_stop_signals() -> nix::Result<()> {
    stop_signals().thread_block()
}

/// Why a mount could not attach to a brick server.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Nobody serves that socket (no server, or a dead one's socket).
    #[error("no brick server at {0}")]
    NoServer(PathBuf),
    /// The server refused (bad options, mount point inside the brick, ...).
    #[error("{0}")]
    Refused(String),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

fn connect(socket: &Path) -> Result<UnixStream, AttachError> {
    let s = UnixStream::connect(socket).map_err(|_| AttachError::NoServer(socket.to_path_buf()))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| AttachError::Other(e.into()))?;
    Ok(s)
}

/// Mounts `cfg` and hands it to the server at `socket`; the mount is undone if the server
/// does not take it.
pub fn attach(socket: &Path, cfg: &MountConfig, options: &str) -> Result<(), AttachError> {
    let conn = connect(socket)?;
    let dev = mount::mount_fuse(cfg).map_err(AttachError::Other)?;
    let req = Request::Attach { mountpoint: cfg.mountpoint.clone(), options: options.to_string() };
    let answer = unixmsg::send(&conn, &req, Some(dev.as_fd())).and_then(|()| {
        drop(dev);
        unixmsg::recv::<Answer>(&conn)
    });
    let undo = || {
        let _ = nix::mount::umount2(&cfg.mountpoint, nix::mount::MntFlags::MNT_DETACH);
    };
    match answer {
        Ok(Some((Answer::Attached, _))) => Ok(()),
        Ok(Some((Answer::Err(e), _))) => {
            undo();
            Err(AttachError::Refused(e))
        }
        Ok(other) => {
            undo();
            Err(AttachError::Other(anyhow::anyhow!("the brick server answered {other:?}")))
        }
        Err(e) => {
            undo();
            Err(AttachError::Other(e.context("the brick server did not answer")))
        }
    }
}

/// What the server at `socket` serves; `None` if nobody answers there.
pub fn status(socket: &Path) -> anyhow::Result<Option<ServerStatus>> {
    let Ok(conn) = connect(socket) else { return Ok(None) };
    unixmsg::send(&conn, &Request::Status, None)?;
    match unixmsg::recv::<Answer>(&conn)? {
        Some((Answer::Status(s), _)) => Ok(Some(s)),
        None => Ok(None),
        Some((other, _)) => bail!("the brick server answered {other:?}"),
    }
}
