//! `georep receiver` (the secondary end, on stdin/stdout) and `georep replicate` (a worker for
//! one brick, with a local receiver): the sync pipeline without the daemon, for tests, demos
//! and one-off copies. Sessions under `georepd` drive the same code.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::sync::{self, Source, WorkerOptions, link::Link};

#[derive(Args, Debug)]
pub struct ReceiverArgs {
    /// An aux-gfid mount to apply to; without it, the volume the worker names is mounted by
    /// this node's georepd (GEOREP_RUN_DIR) for this connection
    #[arg(long)]
    pub mount: Option<PathBuf>,
    /// zstd level for replies (0: off)
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
}

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// The primary brick
    #[arg(long)]
    pub brick: PathBuf,
    /// The secondary volume's aux-gfid mount
    #[arg(long)]
    pub secondary_mount: PathBuf,
    /// Consumer name (the progress mark kept in the brick)
    #[arg(long, default_value = "replicate")]
    pub name: String,
    /// Crawl the whole tree first, even if changelogs would do
    #[arg(long)]
    pub full: bool,
    /// Process what is there and exit, instead of following changes
    #[arg(long)]
    pub once: bool,
    /// zstd level on the wire (0: off)
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
}

pub fn receiver(a: ReceiverArgs) -> anyhow::Result<()> {
    let dirs = crate::daemon::dirs::Dirs::from_env();
    let target = match &a.mount {
        Some(m) => crate::receiver::Target::Mount(m),
        None => crate::receiver::Target::Daemon(&dirs),
    };
    crate::receiver::serve(target, std::io::stdin().lock(), std::io::stdout().lock(), a.compression)
}

pub fn replicate(a: ReplicateArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locate the georep binary")?;
    let mut src = Source::open(&a.brick)?;
    let mut link = Link::spawn_local(&exe, &a.secondary_mount, a.compression)?;
    let stats =
        sync::replicate(&mut src, &mut link, &a.name, a.full, a.once, &WorkerOptions::default(), &mut sync::Quiet)?;
    let wire = link.wire_bytes;
    link.close()?;
    println!(
        "entries {} files {} bytes {} meta {} failures {} wire-bytes {}",
        stats.entries, stats.files, stats.bytes, stats.meta, stats.failures, wire
    );
    if stats.failures > 0 {
        anyhow::bail!("{} changes could not be applied (see the log)", stats.failures);
    }
    Ok(())
}
