//! `georep receiver` (the secondary end, on stdin/stdout) and `georep replicate` (a worker for
//! one brick, with a local receiver): the sync pipeline without the daemon, for tests, demos
//! and one-off copies. Sessions under `georepd` drive the same code.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::sync::{
    self, Source, WorkerOptions,
    link::{Ends, Link},
};

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
    /// Parallel data streams (each its own receiver, in the same secondary mount)
    #[arg(long, default_value_t = 1)]
    pub sync_jobs: usize,
    /// Bytes per second the worker may send, all streams together (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub bandwidth_limit: u64,
}

/// Under the session key's forced command sshd puts what the client asked to run in
/// `SSH_ORIGINAL_COMMAND`: the receiver is all it may ask for.
fn check_ssh_original_command(asked: Option<&str>) -> anyhow::Result<()> {
    let Some(asked) = asked else { return Ok(()) };
    let words: Vec<&str> = asked.split_whitespace().collect();
    let ok = match words.as_slice() {
        [prog, "receiver", rest @ ..] => {
            (*prog == "georep" || prog.ends_with("/georep"))
                && match rest {
                    [] => true,
                    ["--compression", n] => n.parse::<i32>().is_ok(),
                    _ => false,
                }
        }
        _ => false,
    };
    if !ok {
        anyhow::bail!("refused to run {asked:?}: this key runs the georep receiver only");
    }
    Ok(())
}

pub fn receiver(a: ReceiverArgs) -> anyhow::Result<()> {
    check_ssh_original_command(std::env::var("SSH_ORIGINAL_COMMAND").ok().as_deref())?;
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
    let ends = Ends { primary: src.volume, primary_name: a.brick.display().to_string(), ..Ends::default() };
    let mut link = Link::spawn_local(&exe, &a.secondary_mount, &ends, a.compression, None)?;
    link.open_jobs(a.sync_jobs.saturating_sub(1), |j| {
        Link::spawn_local(&exe, &a.secondary_mount, &ends, a.compression, Some(j))
    });
    if a.bandwidth_limit > 0 {
        link.limit_bandwidth(a.bandwidth_limit);
    }
    let stats =
        sync::replicate(&mut src, &mut link, &a.name, a.full, a.once, &WorkerOptions::default(), &mut sync::Quiet)?;
    let streams: Vec<u64> = std::iter::once(link.wire_bytes).chain(link.jobs.iter().map(|j| j.wire_bytes)).collect();
    link.close()?;
    let per_stream: Vec<String> = streams.iter().map(u64::to_string).collect();
    println!(
        "entries {} files {} bytes {} meta {} failures {} wire-bytes {} streams {}",
        stats.entries,
        stats.files,
        stats.bytes,
        stats.meta,
        stats.failures,
        streams.iter().sum::<u64>(),
        per_stream.join(",")
    );
    if stats.failures > 0 {
        anyhow::bail!("{} changes could not be applied (see the log)", stats.failures);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_ssh_original_command as check;

    #[test]
    fn the_session_key_asks_for_the_receiver_only() {
        for ok in [None, Some("georep receiver"), Some("/usr/bin/georep receiver --compression 3")] {
            assert!(check(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "sh", "id; echo pwned", "georep receiver; id", "georep worker x", "georep receiver --mount /"] {
            assert!(check(Some(bad)).unwrap_err().to_string().contains("receiver only"), "{bad:?}");
        }
    }
}
