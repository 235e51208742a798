//! The sync worker of one primary brick: a Hybrid crawl (the whole tree) for the initial sync,
//! then the Changelog crawl (published changelogs, in order). Per batch: entry operations by
//! GFID, then the data of every file changed in the batch (each file once however many
//! changelogs name it), then metadata; then a commit, and only after the receiver confirmed
//! the batch durable are its changelogs marked processed. A change the receiver could not
//! apply is counted and logged with its reason, never dropped silently.
//!
//! The worker reads the primary brick directly (as root), resolving GFIDs through the brick's
//! GFID index; it never writes to the brick.
//!
//! The folder reads as the path: `source` (the brick, by GFID) → `crawl` (Hybrid, History and
//! Changelog crawls, into batches) → `batch` (entries, commit, retries) and `data` (content,
//! whole or by delta, and metadata) → `link` (the receiver, over `ssh` or locally); `worker`
//! runs it all for a session, `recover` and `verify` are its DR and check passes.

mod batch;
mod crawl;
mod data;
pub mod failures;
pub mod link;
pub mod origin;
pub mod recover;
mod source;
pub mod ssh;
pub mod verify;
pub mod worker;

use std::time::Duration;

use crate::changelog::Consumer;
use crate::proto::EntryOp;
use crate::types::VolumeId;
use link::Link;

use crawl::crawl;
pub use crawl::{changelog_pass, hybrid_crawl};
pub use data::{CHUNK, DELTA_MIN, INLINE_MAX};
pub use source::Source;

/// An entry operation with the volume it was first made on.
type Labelled = (VolumeId, EntryOp);

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Replicate xattrs (but ACLs) and ACLs (`system.posix_acl_*`).
    pub sync_xattrs: bool,
    pub sync_acls: bool,
    /// Drop deletions: the secondary keeps what the primary removed.
    pub ignore_deletes: bool,
    /// Delta transfer (`sync-method rsync`): a file the secondary already has is compared
    /// block by block and only the blocks that differ are sent. Else whole files (`tarssh`).
    pub delta: bool,
    /// Files from this size on go by delta (smaller ones whole).
    pub delta_min: u64,
    /// Changelogs per batch at most.
    pub changelogs_per_batch: usize,
    /// `change-detector xsync`: no changelogs, a Hybrid crawl every `change_interval`.
    pub xsync: bool,
    /// Tries of a change the secondary could not apply, before it is counted as a failure
    /// (`max-rsync-retries`).
    pub retries: u32,
    pub change_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            sync_xattrs: true,
            sync_acls: true,
            ignore_deletes: false,
            delta: true,
            delta_min: DELTA_MIN,
            changelogs_per_batch: 64,
            xsync: false,
            retries: 10,
            change_interval: Duration::from_secs(1),
        }
    }
}

impl WorkerOptions {
    fn wants_xattr(&self, name: &[u8]) -> bool {
        if name.starts_with(b"system.posix_acl_") { self.sync_acls } else { self.sync_xattrs }
    }
}

/// What a worker tells about its progress (the status file, the metrics).
pub trait Progress {
    /// The crawl now running: `Hybrid Crawl`, `History Crawl` or `Changelog Crawl`.
    fn crawl(&mut self, _status: &str) {}
    /// A batch is under way with this many entry, data and meta operations.
    fn pending(&mut self, _entry: u64, _data: u64, _meta: u64) {}
    /// A batch is durable on the secondary; every change before `stime_ms` is there.
    fn synced(&mut self, _stime_ms: u64, _stats: &Stats) {}
    /// Nothing is pending.
    fn idle(&mut self, _stime_ms: u64) {}
    /// Whether the worker may ship now (its node still holds the volume's term), asked before
    /// each batch; an error ends the worker.
    fn may_ship(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The secondary has every change before `stime_ms`, durably: asked before the stime
    /// moves on (the store records it while the term holds); an error ends the worker and the
    /// stime stays.
    fn advancing(&mut self, _stime_ms: u64) -> anyhow::Result<()> {
        Ok(())
    }
    /// A Hybrid crawl has sent `done` entries of about `total`.
    fn crawl_progress(&mut self, _done: u64, _total: u64) {}
    /// Something the operator should know about the session (empty: nothing).
    fn note(&mut self, _note: &str) {}
}

/// Tells nobody.
pub struct Quiet;
impl Progress for Quiet {}

/// What a crawl did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub files: u64,
    /// Content bytes sent (before compression).
    pub bytes: u64,
    /// Content bytes the secondary already had (delta transfer).
    pub delta_skipped: u64,
    pub meta: u64,
    pub failures: u64,
    /// Bytes on the wire (frames, after compression).
    pub wire_bytes: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.entries += o.entries;
        self.files += o.files;
        self.bytes += o.bytes;
        self.delta_skipped += o.delta_skipped;
        self.meta += o.meta;
        self.failures += o.failures;
        self.wire_bytes += o.wire_bytes;
    }
}

/// Replicates a brick to a receiver: a Hybrid crawl if this consumer has never synced, if
/// `full`, or whenever the changelogs cannot be trusted to hold every change (history removed
/// by retention, or a gap after the primary's daemon stopped uncleanly); then the History
/// crawl (changelogs recorded while no worker ran) and the Changelog crawl (live); once, or
/// forever. With `xsync`, a Hybrid crawl every `change_interval` instead.
pub fn replicate(
    src: &mut Source,
    link: &mut Link,
    consumer_name: &str,
    full: bool,
    once: bool,
    opts: &WorkerOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<Stats> {
    let mut consumer = Consumer::register(&src.layout, consumer_name)?;
    let mut stats = Stats::default();
    if opts.xsync {
        loop {
            crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
            progress.idle(consumer.processed_ms());
            if once {
                return Ok(stats);
            }
            std::thread::sleep(opts.change_interval);
        }
    }
    // (History lost to retention is found below, and said.)
    if full || consumer.processed_ms() == 0 {
        crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
    }
    progress.crawl("History Crawl");
    loop {
        if consumer.take_unclean()? {
            log::warn!("changelogs after an unclean stop of the primary may miss changes: crawling");
            crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
        }
        if !consumer.complete()? {
            let note = format!(
                "fell behind the primary's changelog retention (changelogs after {} were removed unprocessed): catching up by a Hybrid crawl",
                crate::session::status::format_time((consumer.processed_ms() / 1000) as i64, false)
            );
            log::warn!("{note}");
            progress.note(&note);
            crawl(src, link, &mut consumer, opts, &mut stats, progress)?;
            progress.note("");
        }
        let n = changelog_pass(src, link, &mut consumer, opts, &mut stats, progress)?;
        if n == 0 {
            progress.crawl("Changelog Crawl");
            progress.idle(consumer.processed_ms());
        }
        if once {
            return Ok(stats);
        }
        if n == 0 {
            // Woken by the next record or rollover; the timeout only bounds a missed wake-up.
            consumer.wait(Duration::from_secs(2));
        }
    }
}
