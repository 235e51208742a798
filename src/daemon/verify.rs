//! `georep volume geo-replication <PVOL> <SECONDARY> verify [--checksum] [--full]` on the
//! primary's node: the comparison (`sync::verify`) over a connection of the session's own,
//! the report, and the mark that makes the next one incremental.

use anyhow::{Context, bail};

use super::Daemon;
use super::control::Response;
use super::sessions::{self, Session};
use super::volumes;
use crate::sync::verify::{VerifyOptions, verify as compare};

/// The stime of the last verify that found nothing (`<session>/verify.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Verified {
    stime_ms: u64,
}

pub fn verify(d: &Daemon, s: &Session, checksum: bool, full: bool) -> anyhow::Result<Response> {
    let v = volumes::get(d, &s.primary)?;
    let brick = v.local_brick(d).with_context(|| format!("Volume {} has no brick on this node", s.primary))?;
    let mut src = crate::sync::Source::open(&brick)?;
    let stime = crate::changelog::Consumer::register(&src.layout, &s.consumer())?.processed_ms();
    if stime == 0 {
        bail!("the session between {} and {} has not synced yet: nothing to verify", s.primary, s.secondary);
    }
    let mark = d.dirs.session(&s.key()).join("verify.json");
    let last = if full {
        None
    } else {
        std::fs::read(&mark).ok().and_then(|b| serde_json::from_slice::<Verified>(&b).ok()).map(|v| v.stime_ms)
    };
    let o = VerifyOptions {
        checksum,
        stime_ms: stime,
        unchanged_since_ms: last,
        xattrs: s.config.get_bool("sync-xattrs"),
        acls: s.config.get_bool("sync-acls"),
    };
    let mut link = sessions::connect_receiver(d, s)?;
    let started = std::time::Instant::now();
    let r = compare(&mut src, &mut link, &o)?;
    link.close()?;
    if r.differences == 0 {
        std::fs::write(&mark, serde_json::to_vec(&Verified { stime_ms: stime })?)?;
    }
    let mut text = format!(
        "verify {} -> {}: {} entries compared{}{}, {} set aside as changed after the stime ({}); {} difference{} ({:.1} s)",
        s.primary,
        s.secondary,
        r.compared,
        if checksum { " with their content" } else { "" },
        if r.skipped_dirs > 0 {
            format!(", {} directories unchanged since the last verify", r.skipped_dirs)
        } else {
            String::new()
        },
        r.set_aside,
        crate::session::status::format_time((stime / 1000) as i64, false),
        r.differences,
        if r.differences == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    for l in &r.lines {
        text.push_str(&format!("\n  {l}"));
    }
    if r.differences as usize > r.lines.len() {
        text.push_str(&format!("\n  ... and {} more", r.differences as usize - r.lines.len()));
    }
    Ok(Response::Report { text, differences: r.differences })
}
