//! Sessions (SPEC section 4): create with its checks, start, stop, pause, resume, delete,
//! config, status, each lifecycle rule enforced with GlusterFS's errors in substance. The
//! session's state is in the store; the supervisor runs the workers of the started ones.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::control::Response;
use super::refusal::{Kind, Refusal};
use super::store::StoreExt;
use super::volumes::{self, Volume};
use crate::session::config::{Change, SessionConfig};
use crate::session::grammar::{ConfigAction, SecondaryUrl, SessionCmd};
use crate::session::status::{BrickStatus, StatusRow};
use crate::sync::link::{Link, Transport};
use crate::sync::worker::WorkerSpec;

/// A session as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub primary: String,
    pub secondary: SecondaryUrl,
    pub secondary_volume_id: String,
    /// `Created`, `Started`, `Paused` or `Stopped`.
    pub state: String,
    pub config: SessionConfig,
    /// A failback's reverse session (`daemon::failback`).
    #[serde(default)]
    pub failback: Option<super::failback::Failback>,
    /// The other nodes of the secondary's cluster that can serve its volume, as its receiver
    /// named them at `create` (empty: the URL's host alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_nodes: Vec<String>,
}

impl Session {
    /// GlusterFS's session name: `<pvol>_<shost>_<svol>`.
    pub fn key(&self) -> String {
        session_key(&self.primary, &self.secondary)
    }

    /// `ssh://[user@]host::volume`, as `status` shows it.
    pub fn url(&self) -> String {
        format!("ssh://{}", self.secondary)
    }

    pub fn user(&self) -> &str {
        self.secondary.user.as_deref().unwrap_or("root")
    }

    pub fn running(&self) -> bool {
        self.state == "Started" || self.state == "Paused"
    }

    /// The name of its progress mark (consumer) in the primary brick.
    pub fn consumer(&self) -> String {
        format!("georep-{}", self.key())
    }

    fn between(&self) -> String {
        format!("{} and {}", self.primary, self.secondary)
    }
}

fn session_key(primary: &str, s: &SecondaryUrl) -> String {
    format!("{}_{}_{}", primary, s.host, s.volume)
}

fn store_key(primary: &str, s: &SecondaryUrl) -> String {
    format!("sessions/{primary}/{}::{}", s.host, s.volume)
}

/// `root@` means no user, as GlusterFS strips it.
fn normalize(s: &SecondaryUrl) -> SecondaryUrl {
    let mut s = s.clone();
    if s.user.as_deref() == Some("root") {
        s.user = None;
    }
    s
}

/// Every session of this node's store.
pub fn all(d: &Daemon) -> anyhow::Result<Vec<Session>> {
    d.store.list_json("sessions/")
}

pub fn all_of(d: &Daemon, primary: &str) -> anyhow::Result<Vec<Session>> {
    d.store.list_json(&format!("sessions/{primary}/"))
}

pub fn running_of(d: &Daemon, primary: &str) -> anyhow::Result<usize> {
    Ok(all_of(d, primary)?.iter().filter(|s| s.running()).count())
}

/// Greets the receiver of `s`'s secondary as `s`'s worker would.
pub(crate) fn connect_receiver(d: &Daemon, s: &Session) -> anyhow::Result<Link> {
    let v = volumes::get(d, &s.primary)?;
    let ends = crate::sync::link::Ends {
        secondary_volume: s.secondary.volume.clone(),
        primary: v.id.parse().unwrap_or_default(),
        primary_name: format!("{}@{}", s.primary, d.node.name),
        probe: false,
        token: super::election::serving(d, &v).unwrap_or(0),
    };
    Link::connect(&transport(d, &s.secondary, &s.config)?, &ends, 0)
        .with_context(|| format!("connect to {}", s.secondary))
}

/// The session between `primary` and `secondary`, if there is one.
pub(crate) fn get(d: &Daemon, primary: &str, secondary: &SecondaryUrl) -> anyhow::Result<Option<Session>> {
    d.store.get_json(&store_key(primary, &normalize(secondary)))
}

/// Forgets a session: its workers stopped, its progress mark, its store record and files.
pub(crate) fn delete_session(d: &Daemon, s: &Session) -> anyhow::Result<()> {
    d.supervisor.stop(&s.key());
    if let Ok(v) = volumes::get(d, &s.primary)
        && let Some(brick) = v.local_brick(d)
    {
        crate::changelog::Consumer::remove(&crate::types::BrickLayout::new(&brick), &s.consumer())?;
    }
    d.store.delete(&store_key(&s.primary, &s.secondary))?;
    let _ = std::fs::remove_dir_all(d.dirs.session(&s.key()));
    Ok(())
}

pub(crate) fn save(d: &Daemon, s: &Session) -> anyhow::Result<()> {
    d.store.put_json(&store_key(&s.primary, &s.secondary), s)
}

/// How this node reaches a secondary host: a local peer directly, any other host over SSH
/// with the session key (`georep system execute gsec_create`) and the host key recorded at
/// `create` in `<state>/geo-replication/known_hosts`.
pub fn transport(d: &Daemon, s: &SecondaryUrl, config: &SessionConfig) -> anyhow::Result<Transport> {
    if let Some(run_dir) = d.opts.local_peers.get(&s.host) {
        return Ok(Transport::Local { exe: d.exe.clone(), run_dir: run_dir.clone() });
    }
    let key = d.dirs.session_key();
    if !key.exists() {
        bail!("no session key: run 'georep system execute gsec_create' (or 'georep sshkey generate') first");
    }
    use std::time::Duration;
    let port = config.get_int("ssh-port") as u16;
    let timeout = Duration::from_secs(config.get_int("connection-timeout").max(1) as u64);
    let answer = config.get_int("secondary-timeout");
    let ssh_options = crate::session::config::SshOptions::parse(&config.get("ssh-options")?)
        .map_err(|e| Refusal::new(Kind::BadInput, format!("ssh-options: {e}")))?;
    Ok(Transport::Ssh {
        target: crate::sync::ssh::SshTarget {
            host: s.host.clone(),
            port,
            user: s.user.clone().unwrap_or_else(|| "root".into()),
            key,
            known_hosts: d.dirs.known_hosts(),
            timeout,
            keepalive: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            host_keys: Default::default(),
            answer_timeout: (answer > 0).then(|| Duration::from_secs(answer as u64)),
        }
        .with_options(&ssh_options),
        command: "georep receiver".into(),
    })
}

/// The worker's instructions, rewritten on every change so a running worker sees the live
/// options (the checkpoint) without a restart.
fn write_spec(d: &Daemon, s: &Session, v: &Volume) -> anyhow::Result<Option<PathBuf>> {
    let Some((path, bytes)) = spec_of(d, s, v)? else { return Ok(None) };
    std::fs::create_dir_all(d.dirs.session_log(&s.key()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(Some(path))
}

/// The worker spec of this node's brick of `s` (where it goes, and its bytes); `None` if this
/// node hosts no brick of the volume. The same session gives the same bytes: what a worker was
/// started with is its `worker.json` (`reconcile` compares them).
pub(crate) fn spec_of(d: &Daemon, s: &Session, v: &Volume) -> anyhow::Result<Option<(PathBuf, Vec<u8>)>> {
    let Some(brick) = v.local_brick(d) else { return Ok(None) };
    // Only the node that serves the volume runs its workers, with its term's token.
    let Some(token) = super::election::serving(d, v) else { return Ok(None) };
    let dir = d.dirs.session(&s.key());
    std::fs::create_dir_all(&dir)?;
    let spec = WorkerSpec {
        session: s.key(),
        primary: format!("{}@{}", s.primary, d.node.name),
        brick,
        consumer: s.consumer(),
        secondary: s.secondary.clone(),
        secondary_volume_id: s.secondary_volume_id.clone(),
        transport: transport(d, &s.secondary, &s.config)?,
        alternates: others(&s.secondary, &s.secondary_nodes)
            .map(|n| {
                Ok((n.clone(), transport(d, &SecondaryUrl { host: n.clone(), ..s.secondary.clone() }, &s.config)?))
            })
            .collect::<anyhow::Result<_>>()?,
        config: s.config.clone(),
        status_file: dir.join("brick-status.json"),
        failback: s.failback.as_ref().map(|_| dir.join("failback.json")),
        fence: (token > 0).then(|| crate::sync::worker::WorkerFence {
            volume: v.name.clone(),
            token,
            file: crate::fence::path(&d.dirs.run, &v.name),
        }),
    };
    Ok(Some((dir.join("worker.json"), serde_json::to_vec_pretty(&spec)?)))
}

pub(crate) fn start_workers(d: &Daemon, s: &Session) -> anyhow::Result<()> {
    let v = volumes::get(d, &s.primary)?;
    if let Some(spec) = write_spec(d, s, &v)? {
        let log = d.dirs.session_log(&s.key()).join("gsyncd.log");
        d.supervisor.start(&s.key(), &d.exe, spec, log, s.state == "Paused");
    }
    Ok(())
}

/// At daemon start: the sessions the store says run are started again (paused ones paused).
pub fn resume_all(d: &Daemon) -> anyhow::Result<()> {
    for s in d.store.list_json::<Session>("sessions/")? {
        if s.running()
            && let Err(e) = start_workers(d, &s)
        {
            log::error!("session {}: cannot start its workers: {e:#}", s.key());
        }
    }
    Ok(())
}

pub fn handle(d: &Daemon, primary: &str, secondary: &SecondaryUrl, cmd: SessionCmd) -> anyhow::Result<Response> {
    let secondary = normalize(secondary);
    let skey = store_key(primary, &secondary);
    if let SessionCmd::Create { push_pem, no_verify, force, ssh_port } = cmd {
        return create(d, primary, &secondary, push_pem, no_verify, force, ssh_port);
    }
    match cmd {
        // On the secondary's node, where the session itself is not kept.
        SessionCmd::Failover => return super::roles::failover(d, primary, &secondary.volume),
        SessionCmd::Failback { keep_conflicts } => {
            return super::failback::failback(d, primary, &secondary, keep_conflicts);
        }
        SessionCmd::Restore => return super::failback::restore(d, primary, &secondary),
        _ => {}
    }
    let _g = d.big_lock.lock();
    let Some(mut s) = d.store.get_json::<Session>(&skey)? else {
        crate::refuse!(
            NotFound,
            "Geo-replication session between {primary} and {secondary} does not exist. Please create session and retry."
        );
    };
    let who = format!("geo-replication session between {primary} & {secondary}");
    match cmd {
        SessionCmd::Create { .. } | SessionCmd::Failover | SessionCmd::Failback { .. } | SessionCmd::Restore => {
            unreachable!("handled above")
        }
        SessionCmd::Start { force } => {
            let v = volumes::get(d, primary)?;
            if !v.started() {
                bail!("Volume {primary} needs to be started before geo-replication start");
            }
            if s.running() && !force {
                bail!("Geo-replication session between {} already started.", s.between());
            }
            s.state = "Started".into();
            save(d, &s)?;
            start_workers(d, &s)?;
            Ok(Response::Ok(format!("Starting {who} has been successful")))
        }
        SessionCmd::Stop { force } => {
            if !s.running() && !force {
                bail!("Geo-replication session between {} is not running.", s.between());
            }
            d.supervisor.stop(&s.key());
            s.state = "Stopped".into();
            save(d, &s)?;
            Ok(Response::Ok(format!("Stopping {who} has been successful")))
        }
        SessionCmd::Pause { force } => {
            if !s.running() {
                bail!("Pause check failed: geo-replication session between {} is not running.", s.between());
            }
            if s.state == "Paused" && !force {
                bail!("Geo-replication session between {} already Paused.", s.between());
            }
            d.supervisor.pause(&s.key());
            s.state = "Paused".into();
            save(d, &s)?;
            Ok(Response::Ok(format!("Pausing {who} has been successful")))
        }
        SessionCmd::Resume { force } => {
            if !s.running() {
                bail!("Resume check failed: geo-replication session between {} is not running.", s.between());
            }
            if s.state != "Paused" && !force {
                bail!("Geo-replication session between {} is not Paused.", s.between());
            }
            d.supervisor.resume(&s.key());
            s.state = "Started".into();
            save(d, &s)?;
            Ok(Response::Ok(format!("Resuming {who} has been successful")))
        }
        SessionCmd::Delete { reset_sync_time } => {
            if s.running() {
                bail!(
                    "Geo-replication session between {} is still active. Please stop the session and retry.",
                    s.between()
                );
            }
            d.supervisor.stop(&s.key());
            if reset_sync_time
                && let Ok(v) = volumes::get(d, primary)
                && let Some(brick) = v.local_brick(d)
            {
                crate::changelog::Consumer::remove(&crate::types::BrickLayout::new(&brick), &s.consumer())?;
            }
            d.store.delete(&skey)?;
            let _ = std::fs::remove_dir_all(d.dirs.session(&s.key()));
            Ok(Response::Ok(format!("Deleting {who} has been successful")))
        }
        SessionCmd::Config(action) => config(d, s, action),
        SessionCmd::Verify { checksum, full } => {
            drop(_g);
            super::verify::verify(d, &s, checksum, full)
        }
        SessionCmd::Failures { retry: false, .. } => super::failures::list(d, &s),
        SessionCmd::Failures { retry: true, gfid } => {
            drop(_g);
            super::failures::retry(d, &s, gfid.as_deref())
        }
    }
}

fn now_unix() -> u64 {
    crate::types::EpochMs::now().0 / 1000
}

fn config(d: &Daemon, mut s: Session, action: ConfigAction) -> anyhow::Result<Response> {
    let change = match action {
        ConfigAction::GetAll => return Ok(Response::Config(s.config.get_all())),
        ConfigAction::Describe => return Ok(Response::Options(s.config.describe())),
        ConfigAction::Get(k) => return Ok(Response::Value(s.config.get(&k)?)),
        ConfigAction::Set(k, v) => s.config.set(&k, &v, now_unix())?,
        ConfigAction::Reset(k) => s.config.reset(&k)?,
        ConfigAction::CheckpointNow => s.config.set("checkpoint", "now", now_unix())?,
    };
    if change != Change::Unchanged {
        save(d, &s)?;
        let v = volumes::get(d, &s.primary)?;
        if s.running() {
            write_spec(d, &s, &v)?;
            if change == Change::Restart {
                d.supervisor.restart(&s.key());
            }
        }
    }
    Ok(Response::Ok("geo-replication config updated successfully".into()))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn create(
    d: &Daemon,
    primary: &str,
    secondary: &SecondaryUrl,
    push_pem: bool,
    no_verify: bool,
    force: bool,
    ssh_port: Option<u16>,
) -> anyhow::Result<Response> {
    let guard = d.big_lock.lock();
    let v = volumes::get(d, primary)?;
    if !v.started() {
        bail!("Volume {primary} needs to be started before geo-replication create");
    }
    let skey = store_key(primary, secondary);
    let existing: Option<Session> = d.store.get_json(&skey)?;
    if let Some(old) = &existing {
        if !force {
            if old.secondary.user != secondary.user {
                bail!(
                    "Session between {primary} and {}::{} is already created! Cannot create with new secondary:{} again!",
                    secondary.host,
                    secondary.volume,
                    secondary
                );
            }
            bail!("Session between {primary} and {secondary} is already created.");
        }
        if old.running() && old.secondary.user != secondary.user {
            bail!(
                "Session between {primary} and {} is still active. Please stop the session and retry.",
                old.secondary
            );
        }
    }
    let mut config = existing.as_ref().map(|s| s.config.clone()).unwrap_or_default();
    if let Some(p) = ssh_port {
        config.set("ssh-port", &p.to_string(), now_unix())?;
    }
    let t = transport(d, secondary, &config)?;
    if push_pem && matches!(t, Transport::Ssh { .. }) && super::keys::cluster_keys(d)?.is_empty() {
        bail!(
            "{} required for push-pem is not present. Please run 'georep system execute gsec_create'",
            d.dirs.common_secret_pub().display()
        );
    }
    // The network part (key installation, the secondary's checks) runs without the command
    // lock: a slow or unreachable secondary keeps no other command waiting.
    drop(guard);
    if push_pem && let Transport::Ssh { target, .. } = &t {
        super::keys::push_pem(d, target)?;
    }
    // The secondary: reachable, its volume there and started, empty and big enough. Its SSH
    // host key is recorded now, and checked from then on.
    let ends = crate::sync::link::Ends {
        secondary_volume: secondary.volume.clone(),
        primary: v.id.parse().unwrap_or_default(),
        primary_name: format!("{primary}@{}", d.node.name),
        probe: false,
        token: 0,
    };
    let link = Link::connect_learning(&t, &ends, 0, true, None)
        .with_context(|| format!("Unable to fetch the volume details of {secondary}"))?;
    let remote = link.welcome.clone();
    link.close()?;
    // The secondary's other nodes: the keys on each (push-pem), their host keys recorded.
    for node in others(secondary, &remote.nodes) {
        let url = SecondaryUrl { host: node.clone(), ..secondary.clone() };
        let t = transport(d, &url, &config)?;
        match &t {
            Transport::Ssh { target, .. } if push_pem => super::keys::push_pem(d, target),
            Transport::Ssh { .. } => crate::sync::link::Link::learn_host(&t),
            Transport::Local { .. } => Ok(()),
        }
        .with_context(|| format!("{node}, a node of the secondary volume {}'s cluster", secondary.volume))?;
        if let Transport::Ssh { target, .. } = &t
            && let Err(e) = super::destinations::ensure(d, &url, target.port)
        {
            log::warn!("destination {node}: not recorded: {e:#}");
        }
    }
    // The host's destination record, if it has none yet (its key is pinned now).
    if let Transport::Ssh { target, .. } = &t
        && let Err(e) = super::destinations::ensure(d, secondary, target.port)
    {
        log::warn!("destination {}: not recorded: {e:#}", secondary.host);
    }
    if !no_verify && !force {
        if !remote.empty {
            bail!(
                "{0}::{1} is not empty. Please delete existing files in {0}::{1} and retry, or use force to continue without deleting the existing files.",
                secondary.host,
                secondary.volume
            );
        }
        if let Some(c) = super::volumes::Capacity::of(d, &v.name)?
            && let Some(why) = c.refusal(remote.total_bytes, remote.avail_bytes)
        {
            bail!("{why}");
        }
    }
    let _g = d.big_lock.lock();
    if d.store.get_json::<Session>(&skey)? != existing {
        bail!("Session between {primary} and {secondary} changed while it was being created; retry.");
    }
    let s = Session {
        primary: primary.to_string(),
        secondary: secondary.clone(),
        secondary_volume_id: remote.volume.to_string(),
        state: "Created".into(),
        config,
        failback: None,
        secondary_nodes: remote.nodes.clone(),
    };
    save(d, &s)?;
    std::fs::create_dir_all(d.dirs.session(&s.key()))?;
    Ok(Response::Ok(format!("Creating geo-replication session between {primary} & {secondary} has been successful")))
}

/// The nodes of `nodes` (a secondary cluster's other nodes) that are not `secondary`'s own
/// host, in order.
pub(crate) fn others<'a>(secondary: &'a SecondaryUrl, nodes: &'a [String]) -> impl Iterator<Item = &'a String> {
    nodes.iter().filter(move |n| **n != secondary.host)
}

/// Every brick row of the matching sessions.
pub fn status(d: &Daemon, primary: Option<&str>, secondary: Option<&SecondaryUrl>) -> anyhow::Result<Response> {
    let prefix = match primary {
        Some(p) => format!("sessions/{p}/"),
        None => "sessions/".to_string(),
    };
    let secondary = secondary.map(normalize);
    let mut rows = Vec::new();
    // A few listings, whatever the number of sessions: the volumes, and (for other nodes'
    // bricks) the nodes and every published row.
    let vols: std::collections::HashMap<String, Volume> =
        d.store.list_json::<Volume>("volumes/")?.into_iter().map(|v| (v.name.clone(), v)).collect();
    let mut published = None;
    for s in d.store.list_json::<Session>(&prefix)? {
        if let Some(want) = &secondary
            && (want.host != s.secondary.host || want.volume != s.secondary.volume)
        {
            continue;
        }
        let Some(v) = vols.get(&s.primary) else { continue };
        for (node, path) in &v.bricks {
            if d.node.is_me(node) {
                rows.push(local_row(d, &s, v, node, path));
                continue;
            }
            // Another node's brick: the row it published, or why there is none.
            let p = match &mut published {
                Some(p) => p,
                None => published.insert(super::nodes::Published::load(d)?),
            };
            rows.push(p.remote_row(&s, node, path));
        }
    }
    if rows.is_empty() {
        let message = match (primary, &secondary) {
            (Some(p), Some(s)) => format!("No active geo-replication sessions between {p} and {s}"),
            (Some(p), None) => format!("No active geo-replication sessions for {p}"),
            _ => "No active geo-replication sessions".to_string(),
        };
        return Ok(Response::Err(Refusal::new(Kind::NotFound, message)));
    }
    Ok(Response::Status(rows))
}

/// The row of this node's brick `path` of session `s`: its worker's status and files.
pub(crate) fn local_row(d: &Daemon, s: &Session, v: &volumes::Volume, node: &str, path: &str) -> StatusRow {
    let mut row = StatusRow {
        primary_node: node.to_string(),
        primary_node_uuid: d.node.id.clone(),
        primary_volume: s.primary.clone(),
        primary_brick: path.to_string(),
        secondary_user: s.user().to_string(),
        secondary: s.url(),
        secondary_node: s.secondary.host.clone(),
        ..Default::default()
    };
    let file = BrickStatus::load(&d.dirs.session(&s.key()).join("brick-status.json"));
    let shown = match s.state.as_str() {
        // Another node serves the volume (`election`): this one stands by.
        "Started" | "Paused" if super::election::serving(d, v).is_none() => match d.elections.holder(&v.name) {
            Some(h) if h != d.node.name => "Passive".to_string(),
            _ => "Initializing...".to_string(),
        },
        "Started" => d.supervisor.worker_status(&s.key()).unwrap_or_else(|| "Stopped".to_string()),
        other => other.to_string(),
    };
    if let Some(f) = file.as_ref().filter(|f| !f.secondary_node.is_empty()) {
        row.secondary_node = f.secondary_node.clone();
    }
    if !matches!(shown.as_str(), "Active" | "Passive") {
        row.secondary_node = crate::session::status::NA.into();
    }
    row.fill(&shown, file.as_ref());
    row.failures_total = file.as_ref().map_or(0, |f| f.failures);
    row.wire_bytes = file.as_ref().map_or(0, |f| f.wire_bytes);
    row.worker_restarts = d.supervisor.restarts(&s.key());
    if shown == "Active" {
        row.failures = super::failures::count(d, s).to_string();
    }
    // A worker that should run but does not (Faulty, starting) reports no lag; what the
    // brick recorded after the stime is how far behind the secondary is.
    if matches!(shown.as_str(), "Faulty" | "Initializing...")
        && let Some(brick) = v.local_brick(d)
    {
        let stime = file.as_ref().map_or(0, |f| f.last_synced_ms);
        let index = crate::types::BrickLayout::new(&brick).changelog_dir().join("history.idx");
        if let Some(since) = crate::changelog::history::first_change_after(&index, stime) {
            row.lag_seconds = crate::types::EpochMs::now().0.saturating_sub(since) as f64 / 1000.0;
        }
    }
    if shown == "Faulty"
        && let Some(reason) = d.supervisor.last_error(&s.key())
    {
        row.last_error = reason;
    }
    row
}
