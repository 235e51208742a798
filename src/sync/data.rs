//! A batch's data and metadata: each changed file's content, whole or by delta (coarse then
//! fine blocks, or a rolling delta when data moved), over one stream or several (`sync-jobs`),
//! then the inodes' metadata.

use std::collections::{BTreeSet, HashMap};

use crate::proto::{Failure, Msg, ROLLING_MAX, SumsAsk};
use crate::types::Gfid;

use super::batch::ENTRY_BATCH;
use super::link::Link;
use super::origin::Labels;
use super::{Source, Stats, WorkerOptions};

/// Data is sent in chunks of this size.
pub const CHUNK: usize = 1 << 20;
/// Regular files up to this size travel whole inside their create (`EntryOp::Create::inline`):
/// one request on the secondary instead of a create, a data stream and a metadata pass. The
/// create request must fit one setxattr value (64 KiB) with the name and xattrs.
pub const INLINE_MAX: u64 = 48 << 10;
/// Files from this size on are sent by delta when the secondary has them.
pub const DELTA_MIN: u64 = 1 << 20;
/// A rolling delta travels in one message, so at most this big.
pub(super) const ROLLING_DELTA_MAX: usize = 4 << 20;
/// The fine blocks of a delta's second round: 4 KiB, a page.
pub(super) const FINE_LOG2: u8 = 12;
/// Sums asked for at once, at most (blocks), so that the answer fits a frame.
pub(super) const SUMS_BUDGET: u64 = 256 << 10;

/// The delta block size of a file: 128 KiB, larger for files over 2 GiB (at most 16384
/// blocks a file), as a power of two.
pub(super) fn block_log2(size: u64) -> u8 {
    let want = (size / 16384).max(128 << 10).next_power_of_two();
    want.trailing_zeros().clamp(17, 40) as u8
}

/// The second round of a delta: the secondary's checksums of these ranges (coarse blocks that
/// differ) in fine blocks, then the fine blocks that differ.
pub(super) fn send_fine_blocks(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    refine: Vec<SumsAsk>,
    labels: &Labels,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let per_range = 1u64 << (block_log2(0) - FINE_LOG2);
    for chunk in refine.chunks((SUMS_BUDGET / 2 / per_range).max(1) as usize) {
        let answers = link.sums(batch, chunk.to_vec())?;
        let mut compress = true;
        for (ask, theirs) in chunk.iter().zip(answers) {
            let gfid = ask.gfid;
            link.set_origin(labels.of(&gfid))?;
            let mut sent = 0u64;
            let range = (ask.offset, ask.offset + ask.len);
            let found = src.diff_blocks(&theirs, FINE_LOG2, range, |size, off, bytes| {
                sent += bytes.len() as u64;
                let m = Msg::Data { batch, gfid, size, offset: off, bytes: bytes.to_vec() };
                link.send_data(&m, bytes.len(), &mut compress)
            })?;
            stats.bytes += sent;
            stats.delta_skipped += found.map_or(0, |(_, skipped)| skipped);
        }
    }
    Ok(())
}

/// Sends the content of these regular files (with their sizes): whole, or by delta.
pub(super) fn send_files(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    files: &[(Gfid, u64)],
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    // Big files go by delta, in two rounds: the secondary's checksums of whole files in
    // coarse blocks, for many files at once; then of the coarse blocks that differ, in fine
    // blocks; only the fine blocks that differ travel.
    let mut delta: Vec<(Gfid, u8, u64)> = Vec::new();
    for (g, size) in files {
        if opts.delta && *size >= opts.delta_min {
            delta.push((*g, block_log2(*size), *size));
        } else {
            link.set_origin(labels.of(g))?;
            src.send_data(link, batch, g, stats)?;
        }
    }
    let mut group: Vec<SumsAsk> = Vec::new();
    let mut blocks = 0u64;
    for (i, (g, b, size)) in delta.iter().enumerate() {
        group.push(SumsAsk { gfid: *g, block_log2: *b, offset: 0, len: u64::MAX });
        blocks += size.div_ceil(1 << *b) + 1;
        if blocks >= SUMS_BUDGET / 2 || i + 1 == delta.len() {
            let asked = std::mem::take(&mut group);
            let logs: HashMap<Gfid, u8> = asked.iter().map(|a| (a.gfid, a.block_log2)).collect();
            let mut refine = Vec::new();
            for theirs in link.sums(batch, asked)? {
                link.set_origin(labels.of(&theirs.gfid))?;
                if theirs.size == u64::MAX {
                    src.send_data(link, batch, &theirs.gfid, stats)?;
                    continue;
                }
                let (gfid, log2) = (theirs.gfid, logs[&theirs.gfid]);
                let mut differing: Vec<(u64, u64)> = Vec::new();
                let Some((size, skipped)) = src.diff_blocks(&theirs, log2, (0, u64::MAX), |_, off, bytes| {
                    differing.push((off, bytes.len() as u64));
                    Ok(())
                })?
                else {
                    continue;
                };
                stats.files += 1;
                // Most blocks differ and the size changed: data moved (an insertion or a
                // deletion shifted what follows); a rolling delta finds it where it went.
                let moved = size != theirs.size && differing.len() as u64 * 2 > size.div_ceil(1 << log2);
                if moved && size.max(theirs.size) <= ROLLING_MAX && src.send_rolling(link, batch, gfid, stats)? {
                    continue;
                }
                stats.delta_skipped += skipped;
                if theirs.size != size {
                    // The size first, by an empty chunk: a file cut short may differ from the
                    // secondary's copy in nothing else (the fine round compares the same
                    // bytes on both sides, up to the primary's end).
                    link.send(&Msg::Data { batch, gfid, size, offset: size, bytes: Vec::new() })?;
                }
                for (off, len) in differing {
                    if off >= theirs.size {
                        // Beyond the secondary's end: nothing there to compare with.
                        src.send_range(link, batch, gfid, size, (off, len), stats)?;
                    } else {
                        refine.push(SumsAsk { gfid, block_log2: FINE_LOG2, offset: off, len });
                    }
                }
            }
            send_fine_blocks(src, link, batch, refine, labels, stats)?;
            blocks = 0;
        }
    }
    Ok(())
}

/// Data a batch sends in parallel streams (`sync-jobs`) from this much on; below, one stream.
pub(super) const PARALLEL_MIN: u64 = 4 << 20;

/// `sync-jobs`: the files are shared out among the link and its data streams, biggest first,
/// each stream fed by a thread of its own with its own view of the brick. The data streams'
/// receivers work in the first receiver's mount: that one has applied the batch's entries
/// before any data goes (an empty sums request is the barrier), and each data stream is
/// committed (its writes applied and durable) before the metadata goes, its failures kept for
/// the batch's commit.
pub(super) fn send_data_parallel(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    mut files: Vec<(Gfid, u64)>,
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    link.sums(batch, Vec::new())?;
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let queue = parking_lot::Mutex::new(files.into_iter());
    let next = || queue.lock().next();
    let brick = src.layout.root.clone();
    let mut jobs = std::mem::take(&mut link.jobs);
    let (mine, theirs) = std::thread::scope(|s| {
        let threads: Vec<_> = jobs
            .iter_mut()
            .map(|l| {
                let (brick, next) = (&brick, &next);
                s.spawn(move || -> anyhow::Result<(Stats, Vec<Failure>)> {
                    let mut src = Source::open(brick)?;
                    let mut st = Stats::default();
                    let b = l.batch_id();
                    while let Some(f) = next() {
                        send_files(&mut src, l, b, &[f], labels, opts, &mut st)?;
                    }
                    Ok((st, l.commit(b)?))
                })
            })
            .collect();
        let mut mine = Ok(());
        while let Some(f) = next() {
            if let Err(e) = send_files(src, link, batch, &[f], labels, opts, stats) {
                mine = Err(e);
                break;
            }
        }
        (mine, threads.into_iter().map(|t| t.join()).collect::<Vec<_>>())
    });
    link.jobs = jobs;
    mine?;
    for t in theirs {
        let (st, failures) = t.map_err(|_| anyhow::anyhow!("a data stream's thread panicked"))??;
        stats.add(&st);
        link.failures_elsewhere.extend(failures);
    }
    Ok(())
}

/// Sends data then metadata: `(data, meta)` are the files whose content goes, and the inodes
/// whose metadata goes, in that order.
pub(super) fn send_data_and_meta(
    src: &mut Source,
    link: &mut Link,
    batch: u64,
    (data, meta): (&BTreeSet<Gfid>, &[Gfid]),
    labels: &Labels,
    opts: &WorkerOptions,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut files = Vec::with_capacity(data.len());
    for g in data {
        if let Some(size) = src.file_size(g)? {
            files.push((*g, size));
        }
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    if !link.jobs.is_empty() && files.len() > 1 && total >= PARALLEL_MIN {
        send_data_parallel(src, link, batch, files, labels, opts, stats)?;
    } else {
        send_files(src, link, batch, &files, labels, opts, stats)?;
    }
    let mut ops = Vec::new();
    for g in meta {
        if labels.of(g) != link.origin() || ops.len() >= ENTRY_BATCH {
            if !ops.is_empty() {
                link.send(&Msg::Meta { batch, ops: std::mem::take(&mut ops) })?;
            }
            link.set_origin(labels.of(g))?;
        }
        if let Some(m) = src.meta(g, opts)? {
            ops.push(m);
            stats.meta += 1;
        }
    }
    if !ops.is_empty() {
        link.send(&Msg::Meta { batch, ops })?;
    }
    Ok(())
}
