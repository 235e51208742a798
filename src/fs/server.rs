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

/// How a server that is going away refuses a mount (which then starts or waits for the next).
const STOPPING: &str = "the brick server is stopping";

/// The directory of the brick servers' sockets, under the run directory.
pub const SOCKET_DIR: &str = "bricks";

/// The socket of the server of volume (brick) `id`.
pub fn socket_path(run: &Path, id: &VolumeId) -> PathBuf {
    run.join(SOCKET_DIR).join(format!("{id}.sock"))
}

/// Where a server lists the FUSE connections of its mounts, for whoever finds it dead.
fn conns_path(run: &Path, id: &VolumeId) -> PathBuf {
    run.join(SOCKET_DIR).join(format!("{id}.conns"))
}

/// Aborts the FUSE connections of the dead server of volume (brick) `id`, if it left any;
/// true if it did.
///
/// A killed server's threads can be stuck for good in a kernel lock of one of its own mounts
/// (a cache invalidation waiting for a directory that a request holds, while the request
/// waits for an answer nobody will give): the process never ends, its mounts never fail, and
/// its brick stays locked. Aborting its connections (what the kernel does itself when the
/// last `/dev/fuse` descriptor goes) ends all of that: its mounts report `ENOTCONN`.
pub fn abort_dead(run: &Path, id: &VolumeId) -> bool {
    let list = conns_path(run, id);
    let Ok(text) = std::fs::read_to_string(&list) else { return false };
    if listed_pid(&text).is_some_and(alive) {
        return false;
    }
    let ctl = Path::new(FUSECTL);
    if std::fs::read_dir(ctl).map(|mut d| d.next().is_none()).unwrap_or(true) {
        let _ = nix::mount::mount(Some("fusectl"), ctl, Some("fusectl"), nix::mount::MsFlags::empty(), None::<&str>);
    }
    let mut any = false;
    for conn in text.lines().skip(1).filter_map(|l| l.trim().parse::<u32>().ok()) {
        if std::fs::write(ctl.join(conn.to_string()).join("abort"), b"1").is_ok() {
            log::warn!("aborted FUSE connection {conn} of the dead brick server of {id}");
            any = true;
        }
    }
    let _ = std::fs::remove_file(&list);
    any
}

/// The server's pid, on the first line of its connections list.
fn listed_pid(text: &str) -> Option<u32> {
    text.lines().next()?.strip_prefix("pid ")?.trim().parse().ok()
}

/// Whether process `pid` runs (a zombie does not, even one whose stuck threads keep it from
/// being reaped).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')))
        .unwrap_or(false)
}

/// True if the server of volume (brick) `id` is known dead (its list names a process that
/// is gone): its socket may still accept connections nobody will answer.
fn known_dead(run: &Path, id: &VolumeId) -> bool {
    std::fs::read_to_string(conns_path(run, id)).ok().and_then(|t| listed_pid(&t)).is_some_and(|p| !alive(p))
}

/// The FUSE control filesystem (`fusectl`).
const FUSECTL: &str = "/sys/fs/fuse/connections";

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
    /// `conn`: the FUSE connection's number (the mount's anonymous device minor).
    Attach {
        mountpoint: PathBuf,
        options: String,
        conn: Option<u32>,
    },
    Status,
    /// Give the entries on this path (relative to the brick) that have none a GFID, recorded
    /// as new (`BrickFs::adopt`).
    Adopt {
        path: PathBuf,
    },
    /// Record the inode with this GFID again as created now (`BrickFs::resend`).
    Resend {
        gfid: String,
    },
    /// Read the brick's role file again (`fs::role`): georepd changed it.
    ReloadRole,
    /// Publish the active changelog now (if it holds records): what was recorded so far is
    /// then in the history a worker reads.
    Rollover,
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Attached,
    Status(ServerStatus),
    /// The GFID, as text.
    Adopted(String),
    /// The path (relative to the brick) of the inode recorded again.
    Resent(String),
    Err(String),
}

/// What a brick server serves, for `volume status`, `volume stop` and the tests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerStatus {
    pub pid: u32,
    pub brick: PathBuf,
    pub volume: String,
    pub mounts: Vec<MountInfo>,
    /// Why users' mounts may not change the volume, if they may not (`fs::role`).
    #[serde(default)]
    pub users_read_only: Option<String>,
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
    conns: PathBuf,
    lifetime: Lifetime,
    /// The mounts served: their token, what they are, their FUSE connection.
    mounts: Mutex<Vec<(u64, MountInfo, Option<u32>)>>,
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
        // A dead predecessor may hold the brick until its connections are aborted.
        let aborted = brick::volume_of(root)?.is_some_and(|id| abort_dead(run, &id));
        let deadline = std::time::Instant::now() + Duration::from_secs(if aborted { 10 } else { 0 });
        let brick = loop {
            match Brick::open(root, None) {
                Err(BrickError::Busy(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                r => break r?,
            }
        };
        let socket = socket_path(run, &brick.volume);
        let conns = conns_path(run, &brick.volume);
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
            conns,
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
    pub fn attach(self: &Arc<Self>, cfg: MountConfig, dev: OwnedFd, conn: Option<u32>) -> anyhow::Result<()> {
        cfg.check_brick_options(&self.core.opts)?;
        if cfg.mountpoint.starts_with(&self.core.brick().layout.root) {
            bail!(
                "mount point {} is inside the brick {}",
                cfg.mountpoint.display(),
                self.core.brick().layout.root.display()
            );
        }
        let fs = self.core.session(cfg.fs.clone()).with_context(|| {
            if self.core.sessions.is_closed() {
                STOPPING.to_string()
            } else {
                format!("the brick server serves as many mounts as it can ({})", super::sessions::MAX_SESSIONS)
            }
        })?;
        let id = fs.id;
        let session = mount::new_session(fs, dev, &cfg).context("fuse handshake")?;
        self.core.sessions.ready(id, session.notifier());
        let token = self.next_mount.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let info = MountInfo { mountpoint: cfg.mountpoint.clone(), options: describe(&cfg) };
        self.mounts.lock().push((token, info, conn));
        self.write_conns();
        log::info!("mounted on {} ({} mounts)", cfg.mountpoint.display(), self.core.session_count());
        let me = self.clone();
        std::thread::Builder::new().name("fuse-session".into()).spawn(move || {
            if let Err(e) = session.run() {
                log::error!("fuse session on {}: {e}", cfg.mountpoint.display());
            }
            me.mounts.lock().retain(|(t, ..)| *t != token);
            me.write_conns();
            log::info!("unmounted {} ({} mounts)", cfg.mountpoint.display(), me.core.session_count());
            let _ = me.events.lock().send(Event::SessionEnded);
        })?;
        Ok(())
    }

    /// Lists the mounts' FUSE connections (`abort_dead`).
    fn write_conns(&self) {
        let mut text = format!("pid {}\n", std::process::id());
        text.extend(self.mounts.lock().iter().filter_map(|(_, _, c)| *c).map(|c| format!("{c}\n")));
        let tmp = self.conns.with_extension("conns.tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.conns)) {
            log::warn!("{}: {e}", self.conns.display());
        }
    }

    fn status(&self) -> ServerStatus {
        ServerStatus {
            pid: std::process::id(),
            brick: self.core.brick().layout.root.clone(),
            volume: self.core.brick().volume.to_string(),
            mounts: self.mounts.lock().iter().map(|(_, m, _)| m.clone()).collect(),
            users_read_only: self.core.users_read_only(),
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
        let _ = std::fs::remove_file(&self.conns);
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
            Ok(Some((Request::Rollover, _))) => match self.core.rollover() {
                Ok(()) => Answer::Status(self.status()),
                Err(e) => Answer::Err(format!("rollover: {e}")),
            },
            Ok(Some((Request::ReloadRole, _))) => {
                self.core.reload_role();
                Answer::Status(self.status())
            }
            Ok(Some((Request::Resend { gfid }, _))) => match gfid.parse() {
                Ok(g) => match self.core.resend(g) {
                    Ok(p) => Answer::Resent(p.display().to_string()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Answer::Err("ENOENT".into()),
                    Err(e) => Answer::Err(format!("resend {gfid}: {e}")),
                },
                Err(_) => Answer::Err(format!("resend: {gfid:?} is not a GFID")),
            },
            Ok(Some((Request::Adopt { path }, _))) => match self.core.adopt(&path) {
                Ok(g) => Answer::Adopted(g.to_string()),
                Err(e) => Answer::Err(format!("adopt {}: {e}", path.display())),
            },
            Ok(Some((Request::Attach { mountpoint, options, conn }, Some(dev)))) => {
                match MountConfig::parse(&self.core.brick().layout.root, &mountpoint, &options)
                    .and_then(|cfg| self.attach(cfg, dev, conn))
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

/// A brick that several nodes share: the server stops, as on SIGTERM (its changelog
/// published, its mounts then ENOTCONN), once its node's fence file (`crate::fence`) is gone or
/// past its deadline: its node may no longer hold the volume's term, and another may take the
/// brick over. Checked five times a second.
pub fn stop_when_fenced(file: PathBuf) {
    let _ = std::thread::Builder::new().name("fence".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            // Any term of this node will do (a new one goes on serving).
            let why = match crate::fence::Fence::load(&file) {
                Some(f) if f.until_ms > crate::fence::now_ms() => continue,
                Some(f) => format!("the node's term {} may be over (georepd has not renewed it)", f.token),
                None => "the node serves the volume no longer".to_string(),
            };
            log::error!("stopping: {why} ({}): another node may take the brick over", file.display());
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
            return;
        }
    });
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

/// Connects to the server at `socket` (`<id>.sock`), unless it is known dead.
fn connect(socket: &Path, timeout: Duration) -> Result<UnixStream, AttachError> {
    let no = || AttachError::NoServer(socket.to_path_buf());
    if let (Some(dir), Some(id)) = (socket.parent().and_then(Path::parent), socket_id(socket))
        && known_dead(dir, &id)
    {
        return Err(no());
    }
    let s = UnixStream::connect(socket).map_err(|_| no())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| AttachError::Other(e.into()))?;
    Ok(s)
}

/// The volume id a socket path names.
fn socket_id(socket: &Path) -> Option<VolumeId> {
    socket.file_name()?.to_str()?.strip_suffix(".sock")?.parse().ok()
}

/// Mounts `cfg` and hands it to the server at `socket`; the mount is undone if the server
/// does not take it.
pub fn attach(socket: &Path, cfg: &MountConfig, options: &str) -> Result<(), AttachError> {
    // The handshake may wait for a busy server.
    let conn = connect(socket, Duration::from_secs(60))?;
    let dev = mount::mount_fuse(cfg).map_err(AttachError::Other)?;
    let id = mount::connection_id(&cfg.mountpoint);
    let req = Request::Attach { mountpoint: cfg.mountpoint.clone(), options: options.to_string(), conn: id };
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
            // A plain directory's server ending with its last mount: there will be a next one.
            if e == STOPPING {
                return Err(AttachError::NoServer(socket.to_path_buf()));
            }
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

/// Asks the server of the brick at `root` to give the entries on the path `rel` (relative to
/// the brick) that have no GFID one, recorded as new; returns the last one's GFID.
pub fn adopt(run: &Path, root: &Path, rel: &Path) -> anyhow::Result<crate::types::Gfid> {
    let socket = socket_of_brick(run, root)?.with_context(|| format!("{} is not a brick", root.display()))?;
    let conn = connect(&socket, Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("{e}"))?;
    unixmsg::send(&conn, &Request::Adopt { path: rel.to_path_buf() }, None)?;
    match unixmsg::recv::<Answer>(&conn)? {
        Some((Answer::Adopted(g), _)) => {
            g.parse().map_err(|_| anyhow::anyhow!("the brick server sent a bad GFID {g:?}"))
        }
        Some((Answer::Err(e), _)) => bail!("{e}"),
        other => bail!("the brick server answered {other:?}"),
    }
}

/// Asks the server at `socket` to record the inode `gfid` again as created now; returns its
/// path relative to the brick, `None` if it no longer exists.
pub fn resend(socket: &Path, gfid: &crate::types::Gfid) -> anyhow::Result<Option<PathBuf>> {
    let conn = connect(socket, Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("{e}"))?;
    unixmsg::send(&conn, &Request::Resend { gfid: gfid.to_string() }, None)?;
    match unixmsg::recv::<Answer>(&conn)? {
        Some((Answer::Resent(p), _)) => Ok(Some(PathBuf::from(p))),
        Some((Answer::Err(e), _)) if e == "ENOENT" => Ok(None),
        Some((Answer::Err(e), _)) => bail!("{e}"),
        other => bail!("the brick server answered {other:?}"),
    }
}

/// Tells the server at `socket` that the brick's role file changed; `Ok(false)` if nobody
/// answers there (a server that starts reads it anyway).
pub fn reload_role(socket: &Path) -> anyhow::Result<bool> {
    let Ok(conn) = connect(socket, Duration::from_secs(10)) else { return Ok(false) };
    unixmsg::send(&conn, &Request::ReloadRole, None)?;
    match unixmsg::recv::<Answer>(&conn)? {
        Some((Answer::Status(_), _)) => Ok(true),
        None => Ok(false),
        Some((other, _)) => bail!("the brick server answered {other:?}"),
    }
}

/// Asks the server at `socket` to publish its active changelog now.
pub fn rollover(socket: &Path) -> anyhow::Result<()> {
    let conn = connect(socket, Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("{e}"))?;
    unixmsg::send(&conn, &Request::Rollover, None)?;
    match unixmsg::recv::<Answer>(&conn)? {
        Some((Answer::Status(_), _)) => Ok(()),
        Some((Answer::Err(e), _)) => bail!("{e}"),
        other => bail!("the brick server answered {other:?}"),
    }
}

/// What the server at `socket` serves; `None` if nobody answers there.
pub fn status(socket: &Path) -> anyhow::Result<Option<ServerStatus>> {
    let Ok(conn) = connect(socket, Duration::from_secs(5)) else { return Ok(None) };
    unixmsg::send(&conn, &Request::Status, None)?;
    match unixmsg::recv::<Answer>(&conn)? {
        Some((Answer::Status(s), _)) => Ok(Some(s)),
        None => Ok(None),
        Some((other, _)) => bail!("the brick server answered {other:?}"),
    }
}
