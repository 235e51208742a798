//! Failback (SPEC 11), on the node of the volume a failover promoted (B, in place of A):
//!
//! - `georep volume geo-replication <B> <A-url> failback` makes (or reuses) the reverse
//!   session B → A, asks A what it changed and never shipped before it failed (its *tail*,
//!   `roles::tail` on A's node), reports it, and starts the session: its first pass puts A's
//!   tail right with B's state (`sync::recover`), then the History crawl ships what B changed
//!   since the promotion. A is B's secondary meanwhile (its users read-only).
//! - `georep volume geo-replication <B> <A-url> restore` gives the roles back: B read-only,
//!   everything B recorded shipped to A, then A is the primary again (its session to B resumes
//!   from now, `roles::restore` on A's node), B its secondary, and the reverse session is
//!   deleted.
//!
//! No step copies a file that did not change.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::control::Response;
use super::roles;
use super::sessions;
use super::volumes;
use crate::proto::Msg;
use crate::session::grammar::SecondaryUrl;

/// How long `restore` waits for the reverse session to ship what its volume recorded.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A session that is a failback: its volume was promoted in place of its secondary's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failback {
    /// When the promotion happened (this node's clock).
    pub promoted_ms: u64,
    /// The secondary's volume UUID (the old primary).
    pub to: String,
}

/// The promotion of `volume` in place of the volume named `old`.
fn promotion(d: &Daemon, volume: &str, old: &str) -> anyhow::Result<roles::Upstream> {
    roles::get(d, volume)?
        .upstreams
        .into_iter()
        .find(|u| u.volume() == old && u.promoted_ms.is_some())
        .with_context(|| format!("{volume} was not promoted by a failover from a volume {old}: nothing to fail back"))
}

pub fn failback(d: &Daemon, primary: &str, secondary: &SecondaryUrl, keep: bool) -> anyhow::Result<Response> {
    let up = promotion(d, primary, &secondary.volume)?;
    let promoted_ms = up.promoted_ms.unwrap_or_default();
    if sessions::get(d, primary, secondary)?.is_none() {
        // The old primary is not empty: that is the point.
        sessions::create(d, primary, secondary, true, false, true, None)?;
    }
    let mut s = sessions::get(d, primary, secondary)?.context("the reverse session vanished")?;
    if s.secondary_volume_id != up.id {
        bail!(
            "{secondary} is not the volume {primary} was promoted from ({} has UUID {}, {secondary} has {})",
            up.name,
            up.id,
            s.secondary_volume_id
        );
    }
    // Its receiver makes the old primary this volume's secondary (its users read-only), and
    // tells what it changed and never shipped.
    let mut link = sessions::connect_receiver(d, &s)?;
    let tail = match link.ask(&Msg::TailRequest { applied_ms: up.applied_ms.unwrap_or(0), keep })? {
        Msg::Tail { since_ms, inodes, dirs, lines } => (since_ms, inodes, dirs, lines),
        other => bail!("the receiver answered {other:?}"),
    };
    link.close()?;
    let (since_ms, inodes, dirs, lines) = tail;
    let plan = crate::sync::recover::Plan {
        promoted_ms,
        inodes: inodes.iter().map(|g| g.to_string()).collect(),
        dirs: dirs.iter().map(|g| g.to_string()).collect(),
    };
    let dir = d.dirs.session(&s.key());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("failback.json");
    std::fs::write(&path, serde_json::to_vec(&plan)?)?;
    {
        let _g = d.big_lock.lock();
        s.failback = Some(Failback { promoted_ms, to: up.id.clone() });
        s.state = "Started".into();
        sessions::save(d, &s)?;
        sessions::start_workers(d, &s)?;
    }
    let mut out = format!(
        "Failback of {primary} to {secondary} started: {secondary} takes {primary}'s state.\n{} changed {} paths after its last sync to {primary} ({}); {}:",
        up.name,
        lines.iter().filter(|l| !l.starts_with("kept ")).count(),
        crate::session::status::format_time((since_ms / 1000) as i64, false),
        if keep { "discarded from the volume, kept as conflict copies" } else { "discarded" }
    );
    for l in &lines {
        out.push_str(&format!("\n  {l}"));
    }
    if lines.len() == crate::proto::MAX_TAIL_LINES {
        out.push_str("\n  ... (the first paths only)");
    }
    for l in &lines {
        log::warn!("failback {}: discarded from {}: {l}", s.key(), up.name);
    }
    Ok(Response::Ok(out))
}

pub fn restore(d: &Daemon, primary: &str, secondary: &SecondaryUrl) -> anyhow::Result<Response> {
    let s = sessions::get(d, primary, secondary)?
        .with_context(|| format!("no failback session between {primary} and {secondary}"))?;
    let Some(fb) = s.failback.clone() else {
        bail!("the session between {primary} and {secondary} is not a failback");
    };
    let v = volumes::get(d, primary)?;
    let brick = v.local_brick(d).with_context(|| format!("Volume {primary} has no brick on this node"))?;
    let layout = crate::types::BrickLayout::new(&brick);
    // This volume stops changing, and everything it recorded is published.
    roles::set_restoring(d, primary, &fb.to, true)?;
    let caught_up = (|| -> anyhow::Result<()> {
        let spec = v.brick_spec(d).context("no brick server")?;
        crate::fs::server::rollover(&spec.socket())?;
        let index = crate::changelog::history::read_index(&layout.changelog_dir().join("history.idx"))?;
        let last = index.entries.last().copied();
        let deadline = Instant::now() + CATCH_UP;
        loop {
            // Every record published processed (a worker that tails may have shipped the
            // last file's records before it was published, so the records decide, not the
            // file's end time).
            let at = crate::changelog::Consumer::register(&layout, &s.consumer())?.position();
            if at.ms > 0 && last.is_none_or(|e| at.seq >= e.first_seq + e.count as u64) {
                return Ok(());
            }
            let (done, last) = (at.ms, last.map_or(0, |e| e.end_ms));
            if Instant::now() > deadline {
                bail!(
                    "the session to {secondary} has not shipped everything {primary} recorded (up to {} of {}): is it running? Try again",
                    crate::session::status::format_time((done / 1000) as i64, false),
                    crate::session::status::format_time((last / 1000) as i64, false)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })();
    if let Err(e) = caught_up {
        roles::set_restoring(d, primary, &fb.to, false)?;
        return Err(e);
    }
    d.supervisor.stop(&s.key());
    // The old primary takes its role back.
    let mut link = sessions::connect_receiver(d, &s)?;
    let said = match link.ask(&Msg::Restore)? {
        Msg::Restored { message } => message,
        other => bail!("the receiver answered {other:?}"),
    };
    link.close()?;
    // This volume is its secondary again, and the reverse session is over.
    roles::demote(d, primary, &fb.to)?;
    sessions::delete_session(d, &s)?;
    Ok(Response::Ok(format!(
        "Roles restored: {secondary} is the primary again ({said}); {primary} is its secondary (read-only), and the failback session is deleted"
    )))
}
