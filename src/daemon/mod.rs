//! `georepd`, the node daemon: the node's identity, the store of volumes and sessions, the
//! control socket the CLI talks to, and the supervisor of the sync workers. Every command's
//! rules (volume and session lifecycles, GlusterFS's errors in substance) live here, in
//! `volumes` and `sessions`; the supervisor (`supervisor`) runs what the store says runs.

pub mod bricks;
pub mod broker;
pub mod control;
pub mod destinations;
pub mod dirs;
pub mod election;
pub mod events;
pub mod failback;
pub mod failures;
pub mod keys;
pub mod nodes;
pub mod reconcile;
pub mod refusal;
pub mod roles;
pub mod samples;
pub mod sessions;
pub mod signals;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod verify;
pub mod volumes;
pub mod webhooks;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;

use control::{Request, Response};
use dirs::Dirs;
use store::Store;

/// Runs `f` every `period` (after the first wait) on a thread of its own named `name`, for the
/// daemon's life; a failed round is logged (debug) and the next one comes.
pub(crate) fn every(
    name: &str,
    period: std::time::Duration,
    mut f: impl FnMut() -> anyhow::Result<()> + Send + 'static,
) -> std::io::Result<()> {
    let what = name.to_string();
    std::thread::Builder::new().name(what.clone()).spawn(move || {
        loop {
            std::thread::sleep(period);
            if let Err(e) = f() {
                log::debug!("{what}: {e:#}");
            }
        }
    })?;
    Ok(())
}

/// This node: a stable UUID (made once, kept in the state dir) and a name.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub name: String,
}

impl Node {
    pub fn load_or_create(dirs: &Dirs, name: Option<String>) -> anyhow::Result<Node> {
        let p = dirs.node_id();
        let id = match std::fs::read_to_string(&p) {
            Ok(s) => s
                .lines()
                .find_map(|l| l.strip_prefix("UUID="))
                .map(|s| s.trim().to_string())
                .with_context(|| format!("{}: no UUID= line", p.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().hyphenated().to_string();
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, format!("UUID={id}\n"))?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &p)?;
                id
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", p.display())),
        };
        let name = match name {
            Some(n) => n,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_string(),
        };
        Ok(Node { id, name })
    }

    /// Whether `host` (in a brick or a command) means this node.
    pub fn is_me(&self, host: &str) -> bool {
        host == self.name || host == "localhost" || host == "127.0.0.1"
    }
}

/// How `georepd` was started.
#[derive(Clone, Debug)]
pub struct Options {
    pub node_name: Option<String>,
    /// Secondary hosts reached without SSH: host name -> that node's run directory (its
    /// `georepd` control socket). For nodes on this machine (tests, the demo).
    pub local_peers: HashMap<String, PathBuf>,
    /// The key of the operator's own SSH access to secondaries, which `push-pem` uses to
    /// install the session keys (default: the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa).
    pub operator_key: Option<PathBuf>,
    /// The receiver command the installed keys are restricted to.
    pub remote_receiver: String,
    /// The cluster store (`--store`).
    pub store: store::Spec,
    /// How long an Active node of a replica volume keeps the role before handing it back to
    /// the volume's preferred node (`election`).
    pub replica_hold: std::time::Duration,
}

impl Options {
    pub fn operator_key(&self) -> Option<PathBuf> {
        if let Some(k) = &self.operator_key {
            return Some(k.clone());
        }
        let home = PathBuf::from(std::env::var_os("HOME")?);
        ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|n| home.join(".ssh").join(n)).find(|p| p.exists())
    }
}

pub struct Daemon {
    pub dirs: Dirs,
    pub node: Node,
    pub store: Box<dyn Store>,
    pub opts: Options,
    pub supervisor: supervisor::Supervisor,
    /// The brick servers of this node's started volumes.
    pub bricks: bricks::Bricks,
    /// The receivers running on this node (what a failover ends).
    pub receivers: roles::Receivers,
    /// The event stream and the webhooks (`events`).
    pub events: events::Events,
    /// Every session's last hour of lag and progress, for the web UI's graphs (`samples`).
    pub samples: samples::Samples,
    /// Every session's brick rows, and when they were made (`rows`).
    rows: Mutex<Option<(std::time::Instant, Arc<Vec<crate::session::status::StatusRow>>)>>,
    /// Serialises the commands that change things.
    pub(crate) big_lock: Mutex<()>,
    /// This node's registration in the store (`nodes`), from `serve` until `shutdown`.
    pub registration: Mutex<Option<nodes::Registration>>,
    /// The volumes this node serves, by election on etcd (`election`).
    pub elections: election::Elections,
    /// The `georep` binary (workers, receivers) and the mount helper.
    pub exe: PathBuf,
    pub mount_helper: PathBuf,
}

/// A program installed next to the running one (`target/release/mount_georep` when built,
/// `/usr/sbin/mount.georep` when installed), else `names[last]` on PATH.
pub fn sibling_exe(names: &[&str]) -> PathBuf {
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        for n in names {
            if dir.join(n).exists() {
                return dir.join(n);
            }
        }
        // Installed: georepd in sbin, georep in bin.
        if let Some(prefix) = dir.parent() {
            for sub in ["bin", "sbin"] {
                for n in names {
                    if prefix.join(sub).join(n).exists() {
                        return prefix.join(sub).join(n);
                    }
                }
            }
        }
    }
    PathBuf::from(names[names.len() - 1])
}

fn make_dir(p: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

impl Daemon {
    pub fn open(dirs: Dirs, opts: Options) -> anyhow::Result<Arc<Daemon>> {
        make_dir(&dirs.state, 0o700)?;
        make_dir(&dirs.config, 0o755)?;
        make_dir(&dirs.log, 0o755)?;
        make_dir(&dirs.run, 0o755)?;
        let node = Node::load_or_create(&dirs, opts.node_name.clone())?;
        let store = opts.store.open(&dirs.store())?;
        let d = Arc::new(Daemon {
            supervisor: supervisor::Supervisor::default(),
            bricks: bricks::Bricks::default(),
            receivers: Default::default(),
            events: events::Events::new(&node.id),
            samples: samples::Samples::default(),
            rows: Mutex::new(None),
            dirs,
            node,
            store,
            opts,
            big_lock: Mutex::new(()),
            registration: Mutex::new(None),
            elections: Default::default(),
            exe: sibling_exe(&["georep"]),
            mount_helper: sibling_exe(&["mount_georep", "mount.georep"]),
        });
        Ok(d)
    }

    /// Serves the control socket forever, after restarting the sessions the store says run.
    pub fn serve(self: &Arc<Self>) -> anyhow::Result<()> {
        let sock = self.dirs.socket();
        // A socket file left by a killed daemon is stale unless somebody answers on it.
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            anyhow::bail!("another georepd is serving {}", sock.display());
        }
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).with_context(|| format!("bind {}", sock.display()))?;
        // Every local user may connect: the mountbroker serves them (`handle_conn`).
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666))?;
        self.clean_aux_mounts();
        volumes::start_bricks(self);
        sessions::resume_all(self)?;
        self.events.webhooks.load(webhooks::all(self)?);
        events::start(self)?;
        let api = std::fs::read_to_string(self.dirs.run.join("api.addr")).ok().map(|a| a.trim().to_string());
        *self.registration.lock() = Some(nodes::register(self, api)?);
        nodes::start_publishing(self)?;
        reconcile::start(self)?;
        log::info!("georepd {} (node {} {}) serving {}", crate::VERSION, self.node.name, self.node.id, sock.display());
        // The API was bound before this (api::spawn): everything a client needs is up.
        systemd::notify(&format!("READY=1\nSTATUS=serving {}", sock.display()));
        let dirs = self.dirs.clone();
        systemd::keep_watchdog(move || matches!(control::call(&dirs, &Request::Ping), Ok(Response::Ok(_))));
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let d = Arc::clone(self);
            std::thread::spawn(move || d.handle_conn(conn));
        }
        Ok(())
    }

    /// The way out on SIGTERM (`systemctl stop`): the workers are stopped as `stop` stops them
    /// (their sessions stay started, to resume at the next start); the brick servers go on
    /// serving their mounts, so users' mounts keep working while georepd is down or being
    /// upgraded (the unit's `KillMode=process` leaves them be). On etcd, the node's terms end
    /// now and the servers of bricks other nodes share stop, so that another takes over at
    /// once (`election::give_up`).
    pub fn shutdown(&self, why: &str) {
        log::info!("georepd stopping ({why}): stopping the workers; brick servers keep serving their mounts");
        systemd::notify("STOPPING=1\nSTATUS=stopping the workers");
        self.supervisor.stop_all();
        election::give_up(self);
        // Unregistered at once (its lease revoked), not a TTL later.
        drop(self.registration.lock().take());
        log::info!("georepd stopped");
    }

    /// One client: its request, answered as its peer credentials allow.
    fn handle_conn(&self, conn: std::os::unix::net::UnixStream) {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        use std::os::fd::AsFd;
        let (uid, pid) = match getsockopt(&conn, PeerCredentials) {
            Ok(c) => (c.uid(), c.pid()),
            Err(e) => {
                log::warn!("control socket: no peer credentials: {e}");
                return;
            }
        };
        let req = match control::read_request(&conn) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = control::write_response(&conn, &Response::Err(refusal::Refusal::from_error(&e)), None);
                return;
            }
        };
        let (resp, fd) = match self.handle_as(uid, pid, req) {
            Ok((resp, fd)) => (resp, fd),
            Err(e) => (Response::Err(refusal::Refusal::from_error(&e)), None),
        };
        let _ = control::write_response(&conn, &resp, fd.as_ref().map(|f| f.as_fd()));
    }

    /// A request from `uid`: root may ask anything; other users the mountbroker's requests
    /// and `Ping`.
    fn handle_as(&self, uid: u32, pid: i32, req: Request) -> anyhow::Result<(Response, Option<std::os::fd::OwnedFd>)> {
        match req {
            Request::AuxMount { volume, primary, primary_name } => {
                // Only a volume that takes this primary's changes is mounted for them.
                let primary: crate::types::VolumeId = primary.parse().unwrap_or_default();
                roles::accept(self, &volume, primary, &primary_name)?;
                let fd = if uid == 0 {
                    volumes::aux_mount(self, &volume)?
                } else {
                    broker::aux_mount(self, &broker::Caller::from_uid(uid)?, &volume)?
                };
                self.receivers.add(&volume, &primary.to_string(), pid);
                let bricks = volumes::get(self, &volume)?.bricks;
                let nodes = bricks.into_iter().map(|(n, _)| n).filter(|n| !self.node.is_me(n)).collect();
                Ok((Response::Mounted { nodes }, Some(fd)))
            }
            // A receiver's questions about the volume it serves: root's, or a user's the
            // mountbroker lets receive for that volume.
            Request::Tail { volume, toward, after_ms, keep } => {
                broker::may_receive(self, uid, &volume)?;
                Ok((Response::Tail(roles::tail(self, &volume, &toward, after_ms, keep)?), None))
            }
            Request::Restore { volume, from } => {
                broker::may_receive(self, uid, &volume)?;
                Ok((Response::Ok(roles::restore(self, &volume, &from)?), None))
            }
            Request::Mount { label, args } => {
                let caller = broker::Caller::from_uid(uid)?;
                Ok((Response::Value(broker::mount(self, &caller, &label, &args)?), None))
            }
            Request::Umount { path, lazy } => {
                let caller = broker::Caller::from_uid(uid)?;
                broker::umount(self, &caller, &path, lazy)?;
                Ok((Response::Ok(String::new()), None))
            }
            Request::Ping => Ok((self.handle(Request::Ping), None)),
            Request::Inventory => Ok((Response::Inventory(volumes::inventory(self, uid)?), None)),
            _ if uid != 0 => crate::refuse!(Forbidden, "permission denied: only root may ask georepd that (uid {uid})"),
            req => Ok((self.handle(req), None)),
        }
    }

    pub fn handle(&self, req: Request) -> Response {
        // A command may change what the rows show: the next read makes them again.
        let changes = matches!(req, Request::Volume(_) | Request::Session { .. });
        let r = self.answer(req);
        if changes {
            *self.rows.lock() = None;
        }
        r
    }

    fn answer(&self, req: Request) -> Response {
        let r = match req {
            Request::GsecCreate => keys::gsec_create(self),
            Request::Ping => Ok(Response::Ok(format!("{} {}", self.node.name, self.node.id))),
            Request::Volume(cmd) => volumes::handle(self, cmd),
            Request::Session { primary, secondary, cmd } => {
                let r = sessions::handle(self, &primary, &secondary, cmd.clone());
                if let Ok(Response::Ok(_)) = &r {
                    self.events.command(&primary, &secondary, &cmd);
                }
                r
            }
            Request::Webhook(cmd) => webhooks::handle(self, cmd),
            Request::Destination(cmd) => destinations::handle(self, cmd),
            Request::MountbrokerStatus => {
                crate::mountbroker::Config::load(&crate::mountbroker::Config::path(&self.dirs.config))
                    .map(|c| Response::Mountbroker(c.status()))
            }
            Request::Status { primary, secondary } => sessions::status(self, primary.as_deref(), secondary.as_ref()),
            Request::Nodes => nodes::list(self).map(Response::Nodes),
            Request::Stime { volume, session, token, stime_ms } => {
                match election::commit_stime(self, &volume, &session, token, stime_ms) {
                    Ok(true) => Ok(Response::Ok(String::new())),
                    Ok(false) => Err(anyhow::anyhow!(
                        "fenced: the term {token} of volume {volume} is over: the store refuses the stime of {session}"
                    )),
                    Err(e) => Err(e),
                }
            }
            Request::ResolveVolume { name } => volumes::resolve(self, &name),
            Request::AuxMount { .. }
            | Request::Mount { .. }
            | Request::Umount { .. }
            | Request::Tail { .. }
            | Request::Restore { .. }
            | Request::Inventory => Err(anyhow::anyhow!("asked for through handle_as, with the caller's uid")),
        };
        r.unwrap_or_else(|e| Response::Err(refusal::Refusal::from_error(&e)))
    }

    /// Every session's brick rows (what `status detail` shows of all), made again if those
    /// at hand are older than `max_age`: the API's reads and the event watcher share them, so
    /// that a busy API costs the sessions one status a quarter second, whatever its rate.
    pub fn rows(&self, max_age: std::time::Duration) -> anyhow::Result<Arc<Vec<crate::session::status::StatusRow>>> {
        if let Some(rows) = self.fresh_rows(max_age) {
            return Ok(rows);
        }
        let rows = match sessions::status(self, None, None)? {
            Response::Status(rows) => Arc::new(rows),
            _ => Arc::new(Vec::new()),
        };
        *self.rows.lock() = Some((std::time::Instant::now(), Arc::clone(&rows)));
        Ok(rows)
    }

    /// The rows at hand if they are at most `max_age` old: no work, no waiting (the API
    /// answers from them on its own thread).
    pub fn fresh_rows(&self, max_age: std::time::Duration) -> Option<Arc<Vec<crate::session::status::StatusRow>>> {
        match &*self.rows.lock() {
            Some((at, rows)) if at.elapsed() <= max_age => Some(Arc::clone(rows)),
            _ => None,
        }
    }

    /// Aux mounts left by a daemon killed between mount and detach.
    fn clean_aux_mounts(&self) {
        let Ok(rd) = std::fs::read_dir(self.dirs.aux_mounts()) else { return };
        for e in rd.flatten() {
            let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(e.path());
        }
    }
}
