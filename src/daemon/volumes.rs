//! Volumes (SPEC section 3): create, start, stop, delete, info, list; resolving a volume name
//! for `mount -t georep VOL`; and the aux-gfid mounts a receiver asks for.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::bricks::BrickSpec;
use super::control::{Response, VolumeInfo};
use super::store::StoreExt;
use crate::fs::brick::Brick;
use crate::session::grammar::VolumeCmd;
use crate::types::{Gfid, VolumeId};

/// A volume as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub id: String,
    /// `Created`, `Started` or `Stopped`.
    pub status: String,
    pub replica: u32,
    /// (node, brick path): the same brick, hosted by each node.
    pub bricks: Vec<(String, String)>,
}

pub fn key(name: &str) -> String {
    format!("volumes/{name}")
}

pub fn get(d: &Daemon, name: &str) -> anyhow::Result<Volume> {
    match d.store.get_json(&key(name))? {
        Some(v) => Ok(v),
        None => crate::refuse!(NotFound, "Volume {name} does not exist"),
    }
}

impl Volume {
    /// This node's brick of the volume, if it hosts one.
    pub fn local_brick(&self, d: &Daemon) -> Option<PathBuf> {
        self.bricks.iter().find(|(n, _)| d.node.is_me(n)).map(|(_, p)| PathBuf::from(p))
    }

    pub fn started(&self) -> bool {
        self.status == "Started"
    }

    /// How this node runs the volume's brick server, if it hosts the brick.
    pub fn brick_spec(&self, d: &Daemon) -> Option<BrickSpec> {
        // A brick shared by several nodes is served by one at a time: its server stops by
        // itself when its node's term may be over.
        let fenced = super::election::shared(self) && !matches!(d.opts.store, super::store::Spec::Local);
        Some(BrickSpec {
            fence: fenced.then(|| crate::fence::path(&d.dirs.run, &self.name)),
            volume: self.name.clone(),
            id: self.id.parse().ok()?,
            brick: self.local_brick(d)?,
            helper: d.mount_helper.clone(),
            run: d.dirs.run.clone(),
            log: d.dirs.log.join("bricks").join(format!("{}.log", self.name)),
        })
    }

    /// Whether this node is to run the volume's brick server now: it hosts the brick and
    /// serves the volume (`election`), or the brick is its alone (nobody else could serve it,
    /// so its users' mounts keep working whatever the store says).
    pub fn runs_brick_here(&self, d: &Daemon) -> bool {
        self.started()
            && self.local_brick(d).is_some()
            && (!super::election::shared(self) || super::election::serving(d, self).is_some())
    }
}

/// Waits (a few seconds at most) until a node was elected to serve the shared volume `v`
/// just started, and its brick server runs if that node is this one: a mount given right
/// after `volume start` then finds it served. Past that, the passes go on without the caller
/// (a node may be slow to reach the store), as GlusterFS's start does not wait for clients.
fn served_soon(d: &Daemon, v: &Volume) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let holder = d.store.get_json::<super::election::Holder>(&super::election::key(&v.name));
        match holder {
            Ok(Some(h)) if h.uuid != d.node.id || d.bricks.watching(&v.name) => return,
            Err(e) => {
                log::warn!("volume {}: started; who serves it is not known yet: {e:#}", v.name);
                return;
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    log::warn!("volume {}: started; no node serves it yet", v.name);
}

/// Starts the brick servers of the started volumes this node hosts (georepd's start).
pub fn start_bricks(d: &Daemon) {
    let Ok(vols) = d.store.list_json::<Volume>("volumes/") else { return };
    for v in vols.iter().filter(|v| v.runs_brick_here(d)) {
        if let Some(spec) = v.brick_spec(d)
            && let Err(e) = d.bricks.start(spec)
        {
            log::error!("volume {}: {e:#}", v.name);
        }
    }
}

pub fn handle(d: &Daemon, cmd: VolumeCmd) -> anyhow::Result<Response> {
    // Reads need no lock (each store read is a consistent snapshot); changes are serialised.
    let _g = match cmd {
        VolumeCmd::Info { .. } | VolumeCmd::List => None,
        _ => Some(d.big_lock.lock()),
    };
    match cmd {
        VolumeCmd::Create { name, replica, bricks, force } => create(d, name, replica, bricks, force),
        VolumeCmd::Start { name, force } => {
            let mut v = get(d, &name).with_context(|| format!("volume start: {name}: failed"))?;
            if v.started() && !force {
                bail!("volume start: {name}: failed: Volume {name} already started");
            }
            v.status = "Started".into();
            // A shared brick: the node elected serves it (`reconcile`, within a second).
            if v.runs_brick_here(d)
                && let Some(spec) = v.brick_spec(d)
            {
                d.bricks.start(spec).map_err(|e| anyhow::anyhow!("volume start: {name}: failed: {e:#}"))?;
            }
            d.store.put_json(&key(&name), &v)?;
            if super::election::shared(&v) && !matches!(d.opts.store, super::store::Spec::Local) {
                // Its nodes' next passes elect the one that serves it (the lock is theirs).
                drop(_g);
                served_soon(d, &v);
            }
            Ok(Response::Ok(format!("volume start: {name}: success")))
        }
        VolumeCmd::Stop { name, force } => {
            let mut v = get(d, &name).with_context(|| format!("volume stop: {name}: failed"))?;
            if !v.started() && !force {
                bail!("volume stop: {name}: failed: Volume {name} is not in the started state");
            }
            if super::sessions::running_of(d, &name)? > 0 {
                bail!(
                    "volume stop: {name}: failed: geo-replication sessions are active for the volume {name}. Stop geo-replication sessions involved in this volume. Use 'volume geo-replication status' command for more info."
                );
            }
            let spec = v.brick_spec(d);
            if let Some(spec) = &spec
                && !force
                && let Some(st) = super::bricks::status(spec)?
                && !st.mounts.is_empty()
            {
                let at: Vec<String> = st.mounts.iter().map(|m| m.mountpoint.display().to_string()).collect();
                bail!(
                    "volume stop: {name}: failed: Volume {name} is mounted on this node ({}). Unmount it first, or use 'force': the mounts will then fail with ENOTCONN",
                    at.join(", ")
                );
            }
            v.status = "Stopped".into();
            d.store.put_json(&key(&name), &v)?;
            if let Some(spec) = &spec {
                d.bricks.stop(spec)?;
            }
            Ok(Response::Ok(format!("volume stop: {name}: success")))
        }
        VolumeCmd::Delete { name } => {
            let v = get(d, &name).with_context(|| format!("volume delete: {name}: failed"))?;
            if v.started() {
                bail!(
                    "volume delete: {name}: failed: Volume {name} has been started.Volume needs to be stopped before deletion."
                );
            }
            let n = super::sessions::all_of(d, &name)?.len();
            if n > 0 {
                bail!(
                    "volume delete: {name}: failed: Cannot delete Volume {name}, as it has {n} geo-replication session(s). Delete them first."
                );
            }
            d.store.delete(&key(&name))?;
            Ok(Response::Ok(format!("volume delete: {name}: success")))
        }
        VolumeCmd::Info { name } => infos(d, name.as_deref()),
        VolumeCmd::List => infos(d, None),
    }
}

/// What `volume info` and `volume list` show, of one volume or all.
fn infos(d: &Daemon, name: Option<&str>) -> anyhow::Result<Response> {
    let vols: Vec<Volume> = match name {
        Some(n) => vec![get(d, n)?],
        None => d.store.list_json("volumes/")?,
    };
    let mut out = Vec::new();
    for v in vols {
        let sessions = super::sessions::all_of(d, &v.name)?.iter().map(|s| s.url()).collect();
        out.push(VolumeInfo {
            bricks: v.bricks.iter().map(|(n, p)| format!("{n}:{p}")).collect(),
            name: v.name,
            id: v.id,
            status: v.status,
            replica: v.replica,
            sessions,
        });
    }
    Ok(Response::Volumes(out))
}

fn create(
    d: &Daemon,
    name: String,
    replica: u32,
    bricks: Vec<(String, String)>,
    force: bool,
) -> anyhow::Result<Response> {
    let fail = |m: String| anyhow::anyhow!("volume create: {name}: failed: {m}");
    if d.store.get(&key(&name))?.is_some() {
        return Err(fail(format!("Volume {name} already exists")));
    }
    let paths: std::collections::BTreeSet<&str> = bricks.iter().map(|(_, p)| p.as_str()).collect();
    if paths.len() != 1 {
        return Err(fail("a volume has one brick: replicas are the same path (shared storage) on each node".into()));
    }
    // Each brick's node: this one, or a peer connected to the store (SPEC 3: a replica is the
    // same directory on storage that each of its nodes reaches).
    let peers = if bricks.iter().all(|(n, _)| d.node.is_me(n)) { Vec::new() } else { super::nodes::list(d)? };
    let mut nodes = std::collections::BTreeSet::new();
    let mut hosts = Vec::new();
    for (node, path) in &bricks {
        let name = if d.node.is_me(node) {
            d.node.name.clone()
        } else {
            match peers.iter().find(|p| p.record.name == *node) {
                Some(p) if p.connected => node.clone(),
                _ => return Err(fail(format!("Host {node} is not in 'Peer in Cluster' state"))),
            }
        };
        if !nodes.insert(name.clone()) {
            return Err(fail(format!("Brick {node}:{path} is given twice: a replica is on another node")));
        }
        hosts.push((name, path.clone()));
    }
    if !bricks.iter().any(|(n, _)| d.node.is_me(n)) {
        // The brick is opened (made a brick of the volume) by a node that reaches it: the
        // first of its nodes, asked through the store.
        return create_through(d, &name, replica, hosts, force).map_err(|e| fail(format!("{e:#}")));
    }
    let path = PathBuf::from(&bricks[0].1);
    let id = VolumeId(Gfid::generate().0);
    // A brick of another volume is refused unless forced; one of no volume is adopted.
    let layout = crate::types::BrickLayout::new(&path);
    if layout.id_file().exists() && !force {
        return Err(fail(format!(
            "The brick {}:{} is already part of a volume. Use 'force' to reuse it (its volume id is kept)",
            bricks[0].0,
            path.display()
        )));
    }
    for (_, used) in d.store.list_json::<Volume>("volumes/")?.iter().flat_map(|v| v.bricks.clone()) {
        if Path::new(&used) == path {
            return Err(fail(format!("The brick {} is used by another volume", path.display())));
        }
    }
    std::fs::create_dir_all(&path).map_err(|e| fail(format!("cannot create the brick {}: {e}", path.display())))?;
    let brick = Brick::open(&path, Some(id)).map_err(|e| fail(e.to_string()))?;
    let v =
        Volume { name: name.clone(), id: brick.volume.to_string(), status: "Created".into(), replica, bricks: hosts };
    drop(brick);
    if !d.store.create_json(&key(&name), &v)? {
        return Err(fail(format!("Volume {name} already exists")));
    }
    Ok(Response::Ok(format!("volume create: {name}: success: please start the volume to access data")))
}

/// A `volume create` given on a node that hosts none of the bricks, for the first brick's
/// node to carry out (`requests/volume-create/<name>`), and its answer.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
struct CreateRequest {
    /// The node asked (the first of the bricks' nodes).
    to: String,
    replica: u32,
    bricks: Vec<(String, String)>,
    force: bool,
    /// The answer: the command's message, and whether it succeeded.
    #[serde(default)]
    answer: Option<(bool, String)>,
}

fn request_key(name: &str) -> String {
    format!("requests/volume-create/{name}")
}

/// How long a `volume create` waits for the node that opens the brick (a pass is 1 s).
const CREATE_THROUGH: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks the first brick's node to create the volume, and waits for its answer.
fn create_through(
    d: &Daemon,
    name: &str,
    replica: u32,
    bricks: Vec<(String, String)>,
    force: bool,
) -> anyhow::Result<Response> {
    let to = bricks[0].0.clone();
    let req = CreateRequest { to: to.clone(), replica, bricks, force, answer: None };
    if !d.store.create_json(&request_key(name), &req)? {
        bail!("Volume {name} is being created");
    }
    let deadline = std::time::Instant::now() + CREATE_THROUGH;
    let answer = loop {
        if let Some(CreateRequest { answer: Some(a), .. }) = d.store.get_json(&request_key(name))? {
            break Some(a);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    d.store.delete(&request_key(name))?;
    match answer {
        Some((true, message)) => Ok(Response::Ok(message)),
        Some((false, message)) => bail!("{}", message.rsplit(": failed: ").next().unwrap_or(&message)),
        None if d.store.get(&key(name))?.is_some() => {
            Ok(Response::Ok(format!("volume create: {name}: success: please start the volume to access data")))
        }
        None => bail!("{to}, which opens the brick, did not answer within {CREATE_THROUGH:?}"),
    }
}

/// At each pass on a shared store: the volumes other nodes asked this one to create (it hosts
/// their first brick), created here and answered.
pub fn create_requested(d: &Daemon) -> anyhow::Result<()> {
    for (k, v) in d.store.list("requests/volume-create/")? {
        let Ok(mut req) = serde_json::from_slice::<CreateRequest>(&v) else { continue };
        if req.answer.is_some() || !d.node.is_me(&req.to) {
            continue;
        }
        let name = k.rsplit('/').next().unwrap_or_default().to_string();
        log::info!("volume {name}: created here, as another node asked");
        let r = create(d, name, req.replica, req.bricks.clone(), req.force);
        req.answer = Some(match r {
            Ok(Response::Ok(m)) => (true, m),
            Ok(other) => (false, format!("{other:?}")),
            Err(e) => (false, format!("{e:#}")),
        });
        // Answered only if still asked (the asker may have given up).
        if d.store.get(&k)?.is_some() {
            d.store.put_json(&k, &req)?;
        }
    }
    Ok(())
}

/// The volumes of this node that `uid` may receive changes for (root: all; another user:
/// those the mountbroker lets it mount), with their space (a `Probe`'s answer).
pub fn inventory(d: &Daemon, uid: u32) -> anyhow::Result<Vec<crate::proto::RemoteVolume>> {
    let mut out = Vec::new();
    for v in d.store.list_json::<Volume>("volumes/")? {
        if super::broker::may_receive(d, uid, &v.name).is_err() {
            continue;
        }
        let (mut total_bytes, mut avail_bytes, mut empty) = (0, 0, false);
        if let Some(b) = v.local_brick(d)
            && let Ok(st) = nix::sys::statvfs::statvfs(&b)
        {
            total_bytes = st.blocks() * st.fragment_size();
            avail_bytes = st.blocks_available() * st.fragment_size();
            empty = std::fs::read_dir(&b)
                .map(|mut rd| rd.all(|e| e.is_ok_and(|e| e.file_name() == crate::types::PRIVATE_DIR)))
                .unwrap_or(false);
        }
        out.push(crate::proto::RemoteVolume { started: v.started(), empty, name: v.name, total_bytes, avail_bytes });
    }
    Ok(out)
}

/// A primary volume's size, and what a secondary volume needs to receive it (`create`'s
/// checks, and the web UI's "big enough" filter: one rule for both).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Capacity {
    /// The brick's filesystem: its size.
    pub total_bytes: u64,
    /// What the volume holds: its brick's files (not the rest of a filesystem it may share:
    /// GlusterFS's bricks are whole filesystems, ours are directories).
    pub used_bytes: u64,
    /// A secondary volume is big enough when its filesystem is at least this big...
    pub secondary_total_bytes: u64,
    /// ... and has at least this much free (what the volume holds, and 100 MiB).
    pub secondary_avail_bytes: u64,
}

impl Capacity {
    /// The size of `name`'s brick on this node; `None` when this node hosts none.
    pub fn of(d: &Daemon, name: &str) -> anyhow::Result<Option<Capacity>> {
        let Some(brick) = get(d, name)?.local_brick(d) else { return Ok(None) };
        let st = nix::sys::statvfs::statvfs(&brick).with_context(|| format!("{}", brick.display()))?;
        let total_bytes = st.blocks() * st.fragment_size();
        let used_bytes = brick_usage(&brick);
        Ok(Some(Capacity {
            total_bytes,
            used_bytes,
            secondary_total_bytes: total_bytes,
            secondary_avail_bytes: used_bytes + (100 << 20),
        }))
    }

    /// Why a secondary volume of `total` bytes with `avail` free cannot receive this one.
    pub fn refusal(&self, total: u64, avail: u64) -> Option<&'static str> {
        if total < self.secondary_total_bytes {
            Some("Total disk size of primary is greater than disk size of secondary. Use force to continue.")
        } else if avail < self.secondary_avail_bytes {
            Some("Total available size of primary is greater than available size of secondary. Use force to continue.")
        } else {
            None
        }
    }
}

/// The space the files under `brick` take (its private directory left out), by a walk that
/// does not follow symlinks nor leave the filesystem.
fn brick_usage(brick: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(brick) else { return 0 };
    let mut sum = 0;
    let mut dirs = vec![brick.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if dir == brick && e.file_name() == crate::types::PRIVATE_DIR {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != top.dev() {
                continue;
            }
            sum += md.blocks() * 512;
            if md.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    sum
}

/// `[NODE:]VOL` for a mount: this node's brick of the started volume.
pub fn resolve(d: &Daemon, name: &str) -> anyhow::Result<Response> {
    let (node, vol) = match name.split_once(':') {
        Some((n, v)) => (Some(n), v),
        None => (None, name),
    };
    let v = get(d, vol)?;
    if let Some(n) = node
        && !d.node.is_me(n)
        && !v.bricks.iter().any(|(b, _)| b == n)
    {
        crate::refuse!(NotFound, "Volume {vol} has no brick on {n}");
    }
    let path = v.local_brick(d).with_context(|| format!("Volume {vol} has no brick on this node"))?;
    if super::election::shared(&v)
        && super::election::serving(d, &v).is_none()
        && let Some(active) = d.elections.holder(vol).filter(|h| *h != d.node.name)
    {
        crate::refuse!(
            Refused,
            "Volume {vol} is served by {active} (its Active node); this node is Passive for it: mount {active}:{vol} there"
        );
    }
    Ok(Response::Brick { path, volume_id: v.id.clone(), started: v.started() })
}

/// Mounts the started volume `name` with `aux-gfid-mount` for a root receiver, and returns a
/// descriptor of its root after detaching it: the mount lives exactly as long as the receiver
/// holds the descriptor (or a directory inside), nobody else can reach it, and a receiver
/// that dies at any moment leaves nothing mounted.
pub fn aux_mount(d: &Daemon, name: &str) -> anyhow::Result<std::os::fd::OwnedFd> {
    let base = d.dirs.aux_mounts();
    super::make_dir(&base, 0o700)?;
    let dir = base.join(format!("{name}.{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir)?;
    if let Err(e) = mount_at(d, name, &dir, "aux-gfid-mount") {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    detach(&dir)
}

/// Mounts the started volume `name` on `dir` with `opts` (the mount helper's `-o`): a session
/// of the volume's brick server.
pub fn mount_at(d: &Daemon, name: &str, dir: &Path, opts: &str) -> anyhow::Result<()> {
    let v = get(d, name)?;
    if !v.started() {
        bail!("Volume {name} is not started");
    }
    let out = std::process::Command::new(&d.mount_helper)
        .arg(name)
        .arg(dir)
        .arg("-o")
        .arg(opts)
        .env("GEOREP_LOG_DIR", &d.dirs.log)
        .env("GEOREP_RUN_DIR", &d.dirs.run)
        .env("GEOREP_STATE_DIR", &d.dirs.state)
        .env("GEOREP_CONFIG_DIR", &d.dirs.config)
        .output()
        .with_context(|| format!("run {}", d.mount_helper.display()))?;
    if !out.status.success() {
        bail!("cannot mount volume {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Opens the root of the mount on `dir`, detaches the mount and removes `dir`: the descriptor
/// is then the only way into it.
pub fn detach(dir: &Path) -> anyhow::Result<std::os::fd::OwnedFd> {
    let root = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()));
    let detached = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(dir);
    detached.with_context(|| format!("detach {}", dir.display()))?;
    Ok(root?.into())
}
