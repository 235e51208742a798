//! The worker process of one session on one brick (`georep worker <SPEC>`), as `georepd`'s
//! supervisor runs it: reads its spec (written by the daemon), reaches the receiver, runs the
//! crawls, and keeps its brick status file current (crawl, pending counts, stime, failures,
//! checkpoint). The spec is re-read when it changes, so the checkpoint needs no restart.
//! Failures and the checkpoint's completion survive restarts (they are read back from the
//! status file).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::link::{Ends, Link, Transport};
use super::{Progress, Source, Stats, WorkerOptions};
use crate::session::config::SessionConfig;
use crate::session::grammar::SecondaryUrl;
use crate::session::status::BrickStatus;
use crate::types::EpochMs;

/// What a worker is to do, as the daemon writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub session: String,
    /// The primary volume, as `volume@node` (what the secondary calls it in messages).
    #[serde(default)]
    pub primary: String,
    pub brick: PathBuf,
    /// Its progress mark (consumer) in the brick.
    pub consumer: String,
    pub secondary: SecondaryUrl,
    /// The secondary volume's UUID when the session was created: a volume re-created under
    /// the same name is not the one this session synced to.
    pub secondary_volume_id: String,
    pub transport: Transport,
    /// The other nodes of the secondary's cluster (name, how to reach it): where the worker
    /// goes when the URL's node cannot serve.
    #[serde(default)]
    pub alternates: Vec<(String, Transport)>,
    pub config: SessionConfig,
    pub status_file: PathBuf,
    /// A failback's reverse session: its first pass's plan (`sync::recover`), done once.
    #[serde(default)]
    pub failback: Option<PathBuf>,
    /// On a shared store: the node's term as the volume's Active, which every batch and
    /// every stime needs (`daemon::election`); none on the embedded store.
    #[serde(default)]
    pub fence: Option<WorkerFence>,
}

/// The term a worker ships under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerFence {
    pub volume: String,
    /// The fencing token: sent to the receiver, and with every stime to the store.
    pub token: u64,
    /// The node's fence file of the volume (`crate::fence`): until when the term holds.
    pub file: PathBuf,
}

impl WorkerSpec {
    pub fn load(path: &Path) -> anyhow::Result<WorkerSpec> {
        let b = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&b).with_context(|| format!("{}: not a worker spec", path.display()))
    }

    pub fn options(&self) -> WorkerOptions {
        let c = &self.config;
        let secs = |k: &str| c.get(k).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(1.0);
        // GlusterFS counts changelog-batch-size in bytes of changelog; ours are binary and
        // smaller, so a changelog counts for a nominal 8 KiB.
        let per_batch = (c.get_int("changelog-batch-size") / 8192).clamp(1, 4096) as usize;
        WorkerOptions {
            sync_xattrs: c.get_bool("sync-xattrs"),
            sync_acls: c.get_bool("sync-acls"),
            ignore_deletes: c.get_bool("ignore-deletes"),
            delta: c.get("sync-method").map(|v| v == "rsync").unwrap_or(true),
            delta_min: super::DELTA_MIN,
            changelogs_per_batch: per_batch,
            xsync: c.get("change-detector").map(|v| v == "xsync").unwrap_or(false),
            retries: c.get_int("max-rsync-retries").clamp(0, 1000) as u32,
            change_interval: Duration::from_secs_f64(secs("change-interval")),
        }
    }
}

/// Keeps the brick status file current.
struct Reporter {
    spec_path: PathBuf,
    spec_mtime: Option<SystemTime>,
    status: BrickStatus,
    path: PathBuf,
    /// Counters of earlier runs, to which this run's are added.
    base: BrickStatus,
    fence: Option<WorkerFence>,
    session: String,
}

impl Reporter {
    fn new(spec_path: &Path, spec: &WorkerSpec) -> Reporter {
        let base = BrickStatus::load(&spec.status_file).unwrap_or_default();
        let mut status = base.clone();
        status.worker_status = "Initializing...".into();
        status.crawl_status = "N/A".into();
        status.last_error.clear();
        status.entry = 0;
        status.data = 0;
        status.meta = 0;
        let mut r = Reporter {
            spec_path: spec_path.to_path_buf(),
            spec_mtime: None,
            status,
            path: spec.status_file.clone(),
            base,
            fence: spec.fence.clone(),
            session: spec.session.clone(),
        };
        r.checkpoint_from(spec);
        r
    }

    /// Counts a finished pass's work (a failback's first) as done before this run's.
    fn fold(&mut self, stats: &Stats) {
        for st in [&mut self.base, &mut self.status] {
            st.failures += stats.failures;
            st.files_synced += stats.files;
            st.bytes_synced += stats.bytes;
            st.entries_synced += stats.entries;
            st.wire_bytes += stats.wire_bytes;
        }
        self.save();
    }

    fn save(&mut self) {
        self.status.updated_ms = EpochMs::now().0;
        if let Err(e) = self.status.save(&self.path) {
            log::warn!("cannot write {}: {e}", self.path.display());
        }
    }

    fn checkpoint_from(&mut self, spec: &WorkerSpec) {
        let cp = spec.config.get_int("checkpoint").max(0) as u64;
        if cp != self.status.checkpoint {
            self.status.checkpoint = cp;
            self.status.checkpoint_completed = false;
            self.status.checkpoint_completion_ms = 0;
        }
    }

    /// Picks up a new checkpoint if the spec changed.
    fn reread_spec(&mut self) {
        let m = std::fs::metadata(&self.spec_path).and_then(|m| m.modified()).ok();
        if m == self.spec_mtime {
            return;
        }
        self.spec_mtime = m;
        if let Ok(spec) = WorkerSpec::load(&self.spec_path) {
            self.checkpoint_from(&spec);
        }
    }

    fn advance(&mut self, stime_ms: u64) {
        self.status.last_synced_ms = self.status.last_synced_ms.max(stime_ms);
        let cp = self.status.checkpoint;
        if cp > 0 && !self.status.checkpoint_completed && self.status.last_synced_ms >= cp * 1000 {
            self.status.checkpoint_completed = true;
            self.status.checkpoint_completion_ms = EpochMs::now().0;
            log::info!("checkpoint {cp} completed");
        }
    }
}

impl Progress for Reporter {
    fn crawl(&mut self, status: &str) {
        if self.status.crawl_status != status {
            log::info!("crawl: {status}");
            self.status.crawl_status = status.to_string();
            self.save();
        }
    }

    fn pending(&mut self, entry: u64, data: u64, meta: u64) {
        (self.status.entry, self.status.data, self.status.meta) = (entry, data, meta);
        self.save();
    }

    fn synced(&mut self, stime_ms: u64, stats: &Stats) {
        self.reread_spec();
        self.advance(stime_ms);
        let b = &self.base;
        self.status.failures = b.failures + stats.failures;
        self.status.files_synced = b.files_synced + stats.files;
        self.status.bytes_synced = b.bytes_synced + stats.bytes;
        self.status.entries_synced = b.entries_synced + stats.entries;
        self.status.wire_bytes = b.wire_bytes + stats.wire_bytes;
        (self.status.entry, self.status.data, self.status.meta) = (0, 0, 0);
        self.status.lag_seconds = (EpochMs::now().0.saturating_sub(stime_ms)) as f64 / 1000.0;
        self.save();
    }

    fn note(&mut self, note: &str) {
        self.status.note = note.to_string();
        self.save();
    }

    fn crawl_progress(&mut self, done: u64, total: u64) {
        (self.status.crawl_entries, self.status.crawl_total) = (done, total);
        self.save();
    }

    fn may_ship(&mut self) -> anyhow::Result<()> {
        match &self.fence {
            Some(f) => match crate::fence::Fence::refusal(&f.file, f.token) {
                Some(why) => anyhow::bail!("{why}"),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// The stime goes to the store while the term holds. The store out of reach is waited
    /// for (the term's deadline bounds the wait); a refusal (the term is over) ends the worker.
    fn advancing(&mut self, stime_ms: u64) -> anyhow::Result<()> {
        use crate::daemon::control::{self, Request, Response};
        let dirs = crate::daemon::dirs::Dirs::from_env();
        loop {
            self.may_ship()?;
            let Some(f) = &self.fence else { return Ok(()) };
            let req =
                Request::Stime { volume: f.volume.clone(), session: self.session.clone(), token: f.token, stime_ms };
            let why = match control::call(&dirs, &req) {
                Ok(Response::Ok(_)) => return Ok(()),
                Ok(Response::Err(e)) if e.message.starts_with("fenced") => {
                    log::error!("{e}");
                    anyhow::bail!("{e}")
                }
                Ok(Response::Err(e)) => e.message,
                Ok(other) => anyhow::bail!("georepd: unexpected answer {other:?}"),
                Err(e) => format!("{e:#}"),
            };
            log::warn!("the stime cannot be recorded in the store yet ({why}): trying again");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn idle(&mut self, stime_ms: u64) {
        self.reread_spec();
        self.advance(stime_ms);
        self.status.lag_seconds = 0.0;
        self.save();
    }
}

/// `georep worker <SPEC>`: runs until killed; an error is reported in the status file (the
/// row's Faulty reason) and ends the process with status 1.
pub fn run(spec_path: &Path) -> anyhow::Result<()> {
    let spec = WorkerSpec::load(spec_path)?;
    crate::logging::set_level(match spec.config.get("log-level").unwrap_or_default().as_str() {
        "CRITICAL" | "ERROR" => log::LevelFilter::Error,
        "WARNING" => log::LevelFilter::Warn,
        "DEBUG" => log::LevelFilter::Debug,
        _ => log::LevelFilter::Info,
    });
    let mut rep = Reporter::new(spec_path, &spec);
    rep.save();
    let result = work(&spec, &mut rep);
    if let Err(e) = &result {
        rep.status.worker_status = "Faulty".into();
        rep.status.last_error = format!("{e:#}");
        rep.save();
    }
    result
}

/// Reaches the secondary's receiver: on the node the last run reached, unless that run ended
/// Faulty, then on the next node of the secondary's cluster (GlusterFS #3956: a worker must
/// not stay stuck on a dead node), and on each of the others in turn while one cannot serve.
/// Returns the link, the node's name and how it was reached.
fn connect<'a>(
    spec: &'a WorkerSpec,
    ends: &Ends,
    level: i32,
    last: &BrickStatus,
) -> anyhow::Result<(Link, &'a str, &'a Transport)> {
    let mut nodes: Vec<(&str, &Transport)> = std::iter::once((spec.secondary.host.as_str(), &spec.transport))
        .chain(spec.alternates.iter().map(|(n, t)| (n.as_str(), t)))
        .collect();
    if nodes.len() == 1 {
        let link =
            Link::connect(&spec.transport, ends, level).with_context(|| format!("connect to {}", spec.secondary))?;
        return Ok((link, nodes[0].0, nodes[0].1));
    }
    if let Some(i) = nodes.iter().position(|(n, _)| *n == last.secondary_node) {
        let failed = last.worker_status == "Faulty";
        let n = nodes.len();
        nodes.rotate_left((i + failed as usize) % n);
    }
    // A node of the secondary's cluster that dies leaves its volume to another node within
    // that cluster's lease TTL (10 s) and a pass: the nodes are tried in turn for that long
    // before the worker gives up (and is restarted, with backoff).
    let deadline = std::time::Instant::now() + CLUSTER_TAKEOVER;
    loop {
        let mut why = Vec::new();
        for &(node, t) in &nodes {
            match Link::connect(t, ends, level) {
                Ok(link) => return Ok((link, node, t)),
                Err(e) => {
                    log::warn!("secondary node {node} cannot serve {}: {e:#}", spec.secondary);
                    why.push(format!("{node}: {e:#}"));
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("connect to {}: no node of its cluster serves it ({})", spec.secondary, why.join("; "));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// How long a worker tries a secondary cluster's nodes before it gives up: the secondary's
/// lease TTL and a pass, with a margin.
const CLUSTER_TAKEOVER: Duration = Duration::from_secs(15);

/// The session's failures ledger, beside its status file (`sync::failures`).
pub const FAILURES_FILE: &str = "failures.json";

fn work(spec: &WorkerSpec, rep: &mut Reporter) -> anyhow::Result<()> {
    let opts = spec.options();
    let level = spec.config.get_int("compression") as i32;
    let mut src = Source::open(&spec.brick)?;
    src.ledger = Some(super::failures::Ledger::new(&spec.status_file.with_file_name(FAILURES_FILE)));
    let ends = Ends {
        secondary_volume: spec.secondary.volume.clone(),
        primary: src.volume,
        primary_name: spec.primary.clone(),
        probe: false,
        token: spec.fence.as_ref().map_or(0, |f| f.token),
    };
    let (mut link, node, t) = connect(spec, &ends, level, &rep.base)?;
    rep.status.secondary_node = node.to_string();
    let jobs = spec.config.get_int("sync-jobs").clamp(1, 100) as usize - 1;
    link.open_jobs(jobs, |j| Link::connect_join(t, &ends, level, j));
    let limit = spec.config.get_int("bandwidth-limit");
    if limit > 0 {
        link.limit_bandwidth(limit as u64);
    }
    if link.welcome.volume.to_string() != spec.secondary_volume_id {
        anyhow::bail!(
            "the secondary volume {} is not the one the session was created with (UUID {}, now {})",
            spec.secondary,
            spec.secondary_volume_id,
            link.welcome.volume
        );
    }
    log::info!("connected to {} on {node} (volume {})", spec.secondary, link.welcome.volume);
    if let Some(f) = &spec.fence {
        log::info!("shipping as the Active of volume {} (term {})", f.volume, f.token);
    }
    rep.status.worker_status = "Active".into();
    rep.status.connected_ms = EpochMs::now().0;
    rep.save();
    if let Some(plan) = &spec.failback {
        // Once: until it is done the session has never synced.
        let mut consumer = crate::changelog::Consumer::register(&src.layout, &spec.consumer)?;
        if consumer.processed_ms() == 0 {
            let plan = super::recover::Plan::load(plan)?;
            let stats = super::recover::recover(&mut src, &mut link, &plan, &opts, rep)?;
            rep.fold(&stats);
            // What this volume changed since its promotion is in the changelogs after it.
            consumer.resume_from(plan.promoted_ms)?;
        }
    }
    let stats = super::replicate(&mut src, &mut link, &spec.consumer, false, false, &opts, rep)?;
    log::info!("worker ended: {stats:?}");
    Ok(())
}
