//! A failback's first pass (SPEC 11). A failover promoted this volume (B) in place of its
//! primary (A); the reverse session B → A must make A what B is without copying what did not
//! change. What B changed since the promotion is in B's changelogs (the History crawl from the
//! promotion point does it). What A changed and never shipped before it failed (its *tail*,
//! which A's receiver reports) is put right here: the directories whose names A changed get
//! B's entries (A's extra names removed), and the inodes A changed get B's content (by delta)
//! and metadata. A takes B's state: A's tail is discarded.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::batch::{commit, send_entries};
use super::crawl::create_op;
use super::data::send_data_and_meta;
use super::link::Link;
use super::origin::Labels;
use super::{Labelled, Progress, Source, Stats, WorkerOptions};
use crate::proto::Msg;
use crate::types::{Gfid, PRIVATE_DIR, XATTR_GFID};

/// What the reverse session's first pass works from: written by georepd at `failback`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Plan {
    /// When this volume was promoted (ms since the epoch, this node's clock): its changes
    /// after it are in its changelogs.
    pub promoted_ms: u64,
    /// A's tail: the inodes it changed, and the directories whose names it changed.
    pub inodes: Vec<String>,
    pub dirs: Vec<String>,
}

impl Plan {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Plan> {
        let b = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(serde_json::from_slice(&b)?)
    }
}

/// Puts right on the secondary what it changed in its tail (`plan`), as this volume has it.
pub fn recover(
    src: &mut Source,
    link: &mut Link,
    plan: &Plan,
    opts: &WorkerOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<Stats> {
    progress.crawl("Failback Crawl");
    // The secondary has most of what it changed as it was: compare before sending, however
    // small the file (a page at least).
    let opts = &WorkerOptions { delta_min: opts.delta_min.min(4096), ..opts.clone() };
    let mut stats = Stats::default();
    let parse = |v: &[String]| -> BTreeSet<Gfid> { v.iter().filter_map(|g| g.parse().ok()).collect() };
    let (inodes, dirs) = (parse(&plan.inodes), parse(&plan.dirs));
    src.prefetch(inodes.iter().chain(dirs.iter()).copied())?;
    let labels = Labels::new(src.volume, link.welcome.volume);
    link.set_origin(src.volume)?;
    let batch = link.batch_id();
    // The directories as they are here, parents first (one A removed is made again here
    // before its entries are); one this volume does not have is its parent's business.
    let mut here: Vec<(usize, PathBuf, Gfid)> = Vec::new();
    for g in &dirs {
        if let Some(p) = src.path_of(g).filter(|p| p.is_dir()) {
            here.push((p.components().count(), p, *g));
        }
    }
    here.sort();
    let mut sent: Vec<Labelled> = Vec::new();
    let mut meta: Vec<Gfid> = Vec::new();
    for (_, dir, pgfid) in &here {
        let mut ops = Vec::new();
        let mut keep = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            if *pgfid == Gfid::ROOT && name.as_bytes() == PRIVATE_DIR.as_bytes() {
                continue;
            }
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
            let Some(gfid) = xattr::get(&p, XATTR_GFID).ok().flatten().and_then(|v| Gfid::from_slice(&v)) else {
                // Not recorded yet: its creation is in the changelogs that follow.
                keep.push(name);
                continue;
            };
            let target =
                if md.file_type().is_symlink() { Some(std::fs::read_link(&p)?.into_os_string()) } else { None };
            ops.push((src.volume, create_op(gfid, *pgfid, name.clone(), &md, target, None)));
            keep.push(name);
        }
        stats.entries += ops.len() as u64;
        sent.extend(ops.iter().cloned());
        send_entries(link, batch, ops)?;
        if !opts.ignore_deletes {
            link.send(&Msg::Prune { batch, pgfid: *pgfid, keep })?;
        }
        meta.push(*pgfid);
    }
    // A's changed inodes take this volume's content and metadata.
    let mut data = BTreeSet::new();
    for g in &inodes {
        if src.file_size(g)?.is_some() {
            data.insert(*g);
        }
        if !meta.contains(g) {
            meta.push(*g);
        }
    }
    // Directories' times last, deepest first.
    meta.sort_by_key(|g| std::cmp::Reverse(here.iter().find(|(_, _, d)| d == g).map_or(usize::MAX, |h| h.0)));
    send_data_and_meta(src, link, batch, (&data, &meta), &labels, opts, &mut stats)?;
    commit(src, link, batch, &sent, (&data, &meta), &labels, opts, &mut stats)?;
    log::info!(
        "failback: the secondary's tail put right ({} directories, {} inodes; {} entries, {} files, {} bytes sent)",
        here.len(),
        inodes.len(),
        stats.entries,
        stats.files,
        stats.bytes
    );
    Ok(stats)
}
