//! A batch's frame: its entry operations in bounded messages, then (after data and metadata,
//! `data`) its commit, the retries of what the secondary could not apply, and the failures
//! ledger settled.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;

use crate::proto::{EntryOp, Failure, Msg};
use crate::types::Gfid;

use super::data::send_data_and_meta;
use super::link::Link;
use super::origin::Labels;
use super::{Labelled, Source, Stats, WorkerOptions};

/// Entry operations per message.
pub(super) const ENTRY_BATCH: usize = 1024;
/// Bytes of inline content per message (a frame holds 8 MiB).
pub(super) const ENTRY_BYTES: usize = 4 << 20;

pub(super) fn entry_bytes(op: &EntryOp) -> usize {
    match op {
        EntryOp::Create { inline: Some(i), .. } => 128 + i.content.len(),
        _ => 128,
    }
}

/// Sends entry operations in messages bounded in count and bytes, each message's operations
/// of one origin.
pub(super) fn send_entries(link: &mut Link, batch: u64, ops: Vec<Labelled>) -> anyhow::Result<()> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut from = None;
    for (label, op) in ops {
        if from != Some(label) || chunk.len() >= ENTRY_BATCH || bytes >= ENTRY_BYTES {
            if !chunk.is_empty() {
                link.send_entries(&Msg::Entries { batch, ops: std::mem::take(&mut chunk) }, bytes)?;
            }
            bytes = 0;
            link.set_origin(label)?;
            from = Some(label);
        }
        bytes += entry_bytes(&op);
        chunk.push(op);
    }
    if !chunk.is_empty() {
        link.send_entries(&Msg::Entries { batch, ops: chunk }, bytes)?;
    }
    Ok(())
}

/// Counts and logs what the secondary could not apply, with the path the GFID has on the
/// primary now (if it still exists) and the secondary's reason.
/// The failures that leave the secondary unlike the primary. An entry the secondary does not
/// have (`ENOENT`) for an inode the primary no longer has either is not one: a replayed
/// rename or link of a file since removed (after a restart, say) finds nothing to act on,
/// which is what the primary says.
pub(super) fn unsettled(src: &mut Source, failures: Vec<Failure>) -> Vec<Failure> {
    failures
        .into_iter()
        .filter(|f| {
            let gone = f.errno == libc::ENOENT && !f.gfid.is_null() && src.path_of(&f.gfid).is_none();
            if gone {
                log::info!("{} is gone on both sides: {}", f.gfid, f.message);
            }
            !gone
        })
        .collect()
}

pub(super) fn report(src: &mut Source, failures: Vec<Failure>, stats: &mut Stats) {
    for f in failures {
        stats.failures += 1;
        let path = src.path_of(&f.gfid).map(|p| p.display().to_string()).unwrap_or_else(|| "(gone)".into());
        log::error!(
            "secondary could not apply a change to {path} (gfid {}): {} (errno {})",
            f.gfid,
            f.message,
            f.errno
        );
    }
}

/// The name of an entry op, as the failures list shows it.
pub(super) fn op_name(op: &EntryOp) -> &'static str {
    match op {
        EntryOp::Create { mode, .. } => match *mode & libc::S_IFMT {
            libc::S_IFDIR => "MKDIR",
            libc::S_IFLNK => "SYMLINK",
            libc::S_IFREG => "CREATE",
            _ => "MKNOD",
        },
        EntryOp::Link { .. } => "LINK",
        EntryOp::Rename { .. } => "RENAME",
        EntryOp::Remove { dir: true, .. } => "RMDIR",
        EntryOp::Remove { .. } => "UNLINK",
    }
}

pub(super) fn op_gfid(op: &EntryOp) -> Gfid {
    match op {
        EntryOp::Create { gfid, .. }
        | EntryOp::Link { gfid, .. }
        | EntryOp::Rename { gfid, .. }
        | EntryOp::Remove { gfid, .. } => *gfid,
    }
}

/// An entry op to keep for a retry: without its inline content (a retry sends data anew).
pub(super) fn retained(op: &EntryOp) -> EntryOp {
    let mut op = op.clone();
    if let EntryOp::Create { inline, .. } = &mut op {
        *inline = None;
    }
    op
}

/// Commits `batch`; what the secondary could not apply is tried again, its entry ops (of
/// `entries`, the batch's), then its data and metadata as the primary has them now, up to
/// `opts.retries` times with a growing pause; what still fails is counted and logged.
#[allow(clippy::too_many_arguments)]
pub(super) fn commit(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    entries: &[Labelled],
    carried: (&BTreeSet<Gfid>, &[Gfid]),
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut failures = unsettled(src, link.commit(batch)?);
    not_the_changes_fault(&failures)?;
    let mut attempt = 0u32;
    while !failures.is_empty() && attempt < opts.retries {
        attempt += 1;
        log::info!("{} changes failed; retry {attempt} of {}", failures.len(), opts.retries);
        std::thread::sleep(Duration::from_millis(50 * attempt as u64));
        let failed: std::collections::HashSet<Gfid> = failures.iter().map(|f| f.gfid).collect();
        let b = link.batch_id();
        let ops: Vec<Labelled> = entries.iter().filter(|(_, op)| failed.contains(&op_gfid(op))).cloned().collect();
        send_entries(link, b, ops)?;
        let mut data = BTreeSet::new();
        for g in &failed {
            if src.file_size(g)?.is_some() {
                data.insert(*g);
            }
        }
        let meta: Vec<Gfid> = failed.iter().copied().collect();
        let mut scratch = Stats::default();
        send_data_and_meta(src, link, b, (&data, &meta), labels, opts, &mut scratch)?;
        failures = unsettled(src, link.commit(b)?);
    }
    // Out of space is not the change's fault: nothing is skipped, the batch comes again
    // (its changelogs stay unprocessed) once there is room.
    let full = failures.iter().filter(|f| f.errno == libc::ENOSPC || f.errno == libc::EDQUOT).count();
    if full > 0 {
        anyhow::bail!(
            "the secondary is out of space ({full} changes could not be applied): the batch is retried until there is room"
        );
    }
    settle(src, &failures, entries, carried)?;
    report(src, failures, stats);
    stats.wire_bytes += link.take_wire_bytes();
    Ok(())
}

/// The ledger after a batch: what still failed listed (or counted again), what the batch
/// applied of what it listed taken off.
pub(super) fn settle(
    src: &mut Source,
    failures: &[Failure],
    entries: &[Labelled],
    (data, meta): (&BTreeSet<Gfid>, &[Gfid]),
) -> anyhow::Result<()> {
    if src.ledger.is_none() {
        return Ok(());
    }
    let root = src.layout.root.clone();
    // One line per change: a file whose data and metadata both failed is one failed change.
    let mut failed: Vec<(Gfid, String, String, i32, String)> = Vec::new();
    for f in failures {
        // The receiver says which stage failed first in its message.
        let stage = f.message.split(':').next().unwrap_or("");
        let op = match stage {
            "data" | "patch" => "DATA".to_string(),
            "meta" => "META".to_string(),
            _ => match entries.iter().find(|(_, op)| op_gfid(op) == f.gfid) {
                Some((_, op)) => op_name(op).to_string(),
                None => stage.to_uppercase(),
            },
        };
        if let Some(known) = failed.iter_mut().find(|k| k.0 == f.gfid) {
            if !known.2.split(',').any(|o| o == op) {
                known.2 = format!("{},{op}", known.2);
            }
            continue;
        }
        let path = src.path_of(&f.gfid).and_then(|p| p.strip_prefix(&root).ok().map(|p| p.display().to_string()));
        failed.push((f.gfid, path.unwrap_or_default(), op, f.errno, f.message.clone()));
    }
    let gfids: std::collections::HashSet<Gfid> = entries.iter().map(|(_, op)| op_gfid(op)).collect();
    let applied = |g: &Gfid| gfids.contains(g) || data.contains(g) || meta.contains(g);
    if let Some(ledger) = &src.ledger {
        ledger.settle(&failed, &applied).context("the failures list")?;
    }
    Ok(())
}

/// Out of space is not the changes' fault: nothing is skipped, and nothing is tried again at
/// once (it would send the same data again for nothing, taking what the other sessions
/// need): the worker stops with this error, and the batch comes again (its changelogs stay
/// unprocessed) with the worker's backoff, until there is room.
pub(super) fn not_the_changes_fault(failures: &[Failure]) -> anyhow::Result<()> {
    let full = failures.iter().filter(|f| f.errno == libc::ENOSPC || f.errno == libc::EDQUOT).count();
    if full > 0 {
        anyhow::bail!(
            "the secondary is out of space ({full} changes could not be applied): the batch is retried until there is room"
        );
    }
    // So is a secondary volume whose brick server went away under the receiver.
    let gone = failures.iter().filter(|f| f.errno == libc::ENOTCONN).count();
    if gone > 0 {
        anyhow::bail!(
            "the secondary volume went away under the receiver ({gone} changes could not be applied: ENOTCONN): the batch is retried"
        );
    }
    // And a batch the secondary could not make durable: its changes are not acknowledged.
    if let Some(f) = failures.iter().find(|f| f.gfid.is_null() && f.message.starts_with("sync:")) {
        anyhow::bail!("the secondary could not make the batch durable ({}): the batch is retried", f.message);
    }
    Ok(())
}
