//! The crawls that turn the brick into batches: the Hybrid crawl (the whole tree, as it is
//! now) and the Changelog crawl (published changelogs, in order, planned into entry, data and
//! metadata operations).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::changelog::{Consumer, Kind, Op, Position, Record, record::RECORD_EXCHANGE};
use crate::fs::gfid_index::GfidIndex;
use crate::fs::sys;
use crate::proto::{EntryOp, Inline, Msg};
use crate::types::{EpochMs, Gfid, PRIVATE_DIR, XATTR_GFID};

use super::batch::{ENTRY_BATCH, ENTRY_BYTES, commit, entry_bytes, retained, send_entries};
use super::data::{INLINE_MAX, send_data_and_meta};
use super::link::Link;
use super::origin::Labels;
use super::{Labelled, Progress, Source, Stats, WorkerOptions};

/// Asks the brick's server to give the entry at `path` (and any parent without one) a GFID,
/// recorded as new.
pub(super) fn adopt(root: &Path, path: &Path) -> anyhow::Result<Gfid> {
    let rel = path.strip_prefix(root)?;
    crate::fs::server::adopt(&crate::daemon::dirs::Dirs::from_env().run, root, rel)
}

/// The entry operation that makes an entry as the brick has it (`md`).
pub(super) fn create_op(
    gfid: Gfid,
    pgfid: Gfid,
    name: std::ffi::OsString,
    md: &std::fs::Metadata,
    target: Option<std::ffi::OsString>,
    inline: Option<Box<Inline>>,
) -> EntryOp {
    EntryOp::Create {
        gfid,
        pgfid,
        name,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev(),
        target,
        inline,
    }
}

/// The Hybrid crawl: the whole brick, parents before children, hard links as links.
pub fn hybrid_crawl(
    src: &mut Source,
    link: &mut Link,
    opts: &WorkerOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    let total = GfidIndex::estimate_len(&src.layout.gfid_index()).unwrap_or(0);
    progress.crawl_progress(0, total);
    let batch = link.batch_id();
    // Everything goes as this volume's (the crawl sees states, not where changes came from).
    let labels = Labels::new(src.volume, link.welcome.volume);
    link.set_origin(src.volume)?;
    let mut ops = Vec::new();
    // What was sent, without inline content, for retries.
    let mut sent: Vec<Labelled> = Vec::new();
    let mut ops_bytes = 0usize;
    let mut files = BTreeSet::new();
    let mut seen: HashMap<(u64, u64), Gfid> = HashMap::new();
    let mut dirs: Vec<Gfid> = Vec::new();
    let mut others: Vec<Gfid> = Vec::new();
    let mut queue: Vec<(PathBuf, Gfid)> = vec![(src.layout.root.clone(), Gfid::ROOT)];
    // Each directory's names, pruned on the secondary once its own entries are sent.
    let mut pending_prunes: Vec<(Gfid, Vec<std::ffi::OsString>)> = Vec::new();
    while let Some((dir, pgfid)) = queue.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<Vec<_>, _>>()?;
        names.sort_by_key(|e| e.file_name());
        let keep: Vec<_> = names
            .iter()
            .map(|e| e.file_name())
            .filter(|n| !(pgfid == Gfid::ROOT && n.as_bytes() == PRIVATE_DIR.as_bytes()))
            .collect();
        pending_prunes.push((pgfid, keep));
        // Files are opened relative to their directory: no path walk per file.
        let dirfd = File::open(&dir)?;
        for e in names {
            let name = e.file_name();
            if pgfid == Gfid::ROOT && name.as_bytes() == PRIVATE_DIR.as_bytes() {
                continue;
            }
            let p = e.path();
            // A regular file (by d_type) is opened once, for its attributes, GFID and content;
            // without following a symlink that replaced it meanwhile, nor blocking on a fifo.
            let file = if e.file_type()?.is_file() {
                let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOATIME;
                match sys::openat(dirfd.as_fd(), &name, flags, 0) {
                    Ok(f) => Some(File::from(f)),
                    // Gone or replaced meanwhile: the changelogs carry what happened.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP | libc::ENXIO)) => continue,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            let (md, gfid) = match &file {
                Some(f) => (f.metadata()?, sys::getxattr_vec(f.as_fd(), OsStr::new(XATTR_GFID))?),
                None => (std::fs::symlink_metadata(&p)?, xattr::get(&p, XATTR_GFID)?),
            };
            let gfid = match gfid.and_then(|v| Gfid::from_slice(&v)) {
                Some(g) => g,
                // Made while nothing recorded (its brick server killed between making and
                // recording it, or written straight into the brick): the brick server gives it
                // a GFID and records it as new, and it goes now with that GFID.
                None => match adopt(&src.layout.root, &p) {
                    Ok(g) => g,
                    Err(e) => {
                        log::error!("{}: no GFID, and none could be given: {e:#}", p.display());
                        stats.failures += 1;
                        continue;
                    }
                },
            };
            if !md.is_dir() && md.nlink() > 1 {
                if let Some(first) = seen.get(&(md.dev(), md.ino())) {
                    let op = EntryOp::Link { gfid: *first, pgfid, name: name.clone() };
                    sent.push((src.volume, op.clone()));
                    ops.push(op);
                    continue;
                }
                seen.insert((md.dev(), md.ino()), gfid);
            }
            let target =
                if md.file_type().is_symlink() { Some(std::fs::read_link(&p)?.into_os_string()) } else { None };
            let inline = match &file {
                Some(f) if md.is_file() && md.len() <= INLINE_MAX => Source::inline_of(f.as_fd(), gfid, opts, true)?,
                _ => None,
            };
            let whole = inline.is_some();
            if let Some(i) = &inline {
                stats.files += 1;
                stats.bytes += i.content.len() as u64;
                stats.meta += 1;
            }
            let op = create_op(gfid, pgfid, name.clone(), &md, target, inline);
            ops_bytes += entry_bytes(&op);
            sent.push((src.volume, retained(&op)));
            ops.push(op);
            stats.entries += 1;
            if stats.entries % 1000 == 0 {
                progress.crawl_progress(stats.entries, total.max(stats.entries));
                progress.may_ship()?;
            }
            if md.is_dir() {
                queue.push((p, gfid));
                dirs.push(gfid);
            } else if !whole {
                if md.is_file() {
                    files.insert(gfid);
                }
                others.push(gfid);
            }
            if ops.len() >= ENTRY_BATCH || ops_bytes >= ENTRY_BYTES {
                link.send_entries(&Msg::Entries { batch, ops: std::mem::take(&mut ops) }, ops_bytes)?;
                ops_bytes = 0;
            }
        }
    }
    if !ops.is_empty() {
        link.send_entries(&Msg::Entries { batch, ops }, ops_bytes)?;
    }
    if !opts.ignore_deletes {
        for (pgfid, keep) in pending_prunes {
            link.send(&Msg::Prune { batch, pgfid, keep })?;
        }
    }
    // Directories' metadata last, deepest first, so that nothing changes their times after.
    dirs.reverse();
    dirs.push(Gfid::ROOT);
    others.extend(dirs);
    send_data_and_meta(src, link, batch, (&files, &others), &labels, opts, &mut stats)?;
    commit(src, link, batch, &sent, (&files, &others), &labels, opts, &mut stats)?;
    Ok(stats)
}

/// Turns a changelog's records into entry operations and the GFIDs whose data and metadata
/// must follow, each labelled with the volume it was first made on; what was first made on
/// the secondary's volume is left out (`labels`).
pub(super) fn plan(
    records: &[Record],
    opts: &WorkerOptions,
    labels: &mut Labels,
    ops: &mut Vec<Labelled>,
    data: &mut BTreeSet<Gfid>,
    meta: &mut Vec<Gfid>,
) {
    let mut i = 0;
    while i < records.len() {
        let r = &records[i];
        i += 1;
        let Some(from) = labels.admit(r) else {
            if r.flags & RECORD_EXCHANGE != 0 {
                // Its twin goes with it.
                i += 1;
            }
            continue;
        };
        match r.kind() {
            Kind::Data => {
                data.insert(r.gfid);
                meta.push(r.gfid);
            }
            Kind::Meta => meta.push(r.gfid),
            Kind::Entry => {
                let Some(e) = &r.entry else { continue };
                let (pgfid, name) = (e.entry.pgfid, e.entry.name.clone());
                meta.push(pgfid);
                match r.op {
                    Op::Create | Op::Mkdir | Op::Mknod | Op::Symlink => {
                        ops.push((
                            from,
                            EntryOp::Create {
                                gfid: r.gfid,
                                pgfid,
                                name,
                                mode: e.mode,
                                uid: e.uid,
                                gid: e.gid,
                                rdev: e.rdev,
                                target: e.target.clone(),
                                inline: None,
                            },
                        ));
                        meta.push(r.gfid);
                    }
                    Op::Link => ops.push((from, EntryOp::Link { gfid: r.gfid, pgfid, name })),
                    Op::Rename => {
                        let Some(to) = &e.new_entry else { continue };
                        let exchange = r.flags & RECORD_EXCHANGE != 0;
                        if exchange {
                            // Its twin follows: one exchange covers both.
                            i += 1;
                        }
                        meta.push(to.pgfid);
                        ops.push((
                            from,
                            EntryOp::Rename {
                                gfid: r.gfid,
                                from_pgfid: pgfid,
                                from_name: name,
                                to_pgfid: to.pgfid,
                                to_name: to.name.clone(),
                                exchange,
                            },
                        ));
                    }
                    Op::Unlink | Op::Rmdir if !opts.ignore_deletes => {
                        ops.push((from, EntryOp::Remove { gfid: r.gfid, pgfid, name, dir: r.op == Op::Rmdir }))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One pass of the Changelog crawl: batches of what the changelogs hold after the consumer's
/// position until there is nothing left; returns how many batches went.
///
/// The batching is natural: each batch takes everything recorded by the time it begins (whole
/// published changelogs while there is a backlog, else the active file as it is now, up to a
/// cap), so an idle worker ships the first change at once, and while a batch is in flight the
/// next one gathers. Only once the receiver made a batch durable does the position move on.
pub fn changelog_pass(
    src: &mut Source,
    link: &mut Link,
    consumer: &mut Consumer,
    opts: &WorkerOptions,
    stats: &mut Stats,
    progress: &mut dyn Progress,
) -> anyhow::Result<usize> {
    let mut batches = 0;
    let mut labels = Labels::new(src.volume, link.welcome.volume);
    loop {
        progress.may_ship()?;
        let chunk = consumer.read(opts.changelogs_per_batch)?;
        if chunk.records.is_empty() {
            if chunk.end.seq > consumer.position().seq {
                // Only records this session does not ship (or none): move past them.
                progress.advancing(chunk.end.ms)?;
                consumer.done(chunk.end)?;
            }
            return Ok(batches);
        }
        let batch = link.batch_id();
        let (mut ops, mut data, mut meta) = (Vec::new(), BTreeSet::new(), Vec::new());
        labels.clear();
        plan(&chunk.records, opts, &mut labels, &mut ops, &mut data, &mut meta);
        stats.entries += ops.len() as u64;
        let mut seen = std::collections::HashSet::new();
        meta.retain(|g| seen.insert(*g));
        src.prefetch(meta.iter().chain(data.iter()).copied())?;
        // New small files travel whole with their create: no data or meta of their own.
        let mut whole = std::collections::HashSet::new();
        for (_, op) in ops.iter_mut() {
            if let EntryOp::Create { gfid, mode, inline, .. } = op
                && *mode & libc::S_IFMT == libc::S_IFREG
                && !whole.contains(gfid)
                && let Some(i) = src.inline(gfid, opts)?
            {
                stats.files += 1;
                stats.bytes += i.content.len() as u64;
                stats.meta += 1;
                whole.insert(*gfid);
                *inline = Some(i);
            }
        }
        data.retain(|g| !whole.contains(g));
        meta.retain(|g| !whole.contains(g));
        progress.pending(ops.len() as u64, data.len() as u64, meta.len() as u64);
        let sent: Vec<Labelled> = ops.iter().map(|(from, op)| (*from, retained(op))).collect();
        send_entries(link, batch, ops)?;
        send_data_and_meta(src, link, batch, (&data, &meta), &labels, opts, stats)?;
        commit(src, link, batch, &sent, (&data, &meta), &labels, opts, stats)?;
        progress.advancing(chunk.end.ms)?;
        consumer.done(chunk.end)?;
        batches += 1;
        link.tell(&Msg::Synced { stime_ms: chunk.end.ms })?;
        progress.synced(chunk.end.ms, stats);
    }
}

/// A Hybrid crawl, after which the records published before it began count as processed.
pub(super) fn crawl(
    src: &mut Source,
    link: &mut Link,
    consumer: &mut Consumer,
    opts: &WorkerOptions,
    stats: &mut Stats,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    progress.crawl("Hybrid Crawl");
    progress.may_ship()?;
    let started = EpochMs::now().0;
    // Changelogs published before the crawl began hold nothing it will not see; the active
    // file's records are read again after it, which changes nothing it did not see.
    let seq = consumer.published_end()?;
    // It sees whatever an unclean stop before now left unrecorded.
    consumer.take_unclean()?;
    let s = hybrid_crawl(src, link, opts, progress)?;
    stats.add(&s);
    let end = Position { seq, ms: started.max(consumer.processed_ms()) };
    progress.advancing(end.ms)?;
    consumer.done(end)?;
    link.tell(&Msg::Synced { stime_ms: end.ms })?;
    progress.synced(end.ms, stats);
    Ok(())
}
