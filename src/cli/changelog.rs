//! `georep changelog ...` and `georep brick ...`: tools over a brick's changelog and GFIDs.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::changelog::{self, ChangelogFile, codec::Tail, dump, history};
use crate::fs::gfid_index::{self, GfidIndex};
use crate::types::{BrickLayout, Gfid};

#[derive(Subcommand, Debug)]
pub enum ChangelogCmd {
    /// Print records in GlusterFS's parsed form (a changelog file, or all of a brick's)
    Dump {
        /// A changelog file or a brick directory
        path: PathBuf,
        /// Prefix each record with its sequence number
        #[arg(long)]
        seq: bool,
        /// Prefix each record with where the change comes from: `user` (made here),
        /// `from:<volume id>` (replicated here, first made there) or `received` (replicated
        /// here, from a volume not recorded)
        #[arg(long)]
        origin: bool,
    },
    /// List a brick's published changelogs from the history index
    History {
        brick: PathBuf,
        /// Only those holding changes after this time (ms since the epoch)
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum BrickCmd {
    /// Print the brick path of the inode with this GFID
    Resolve { brick: PathBuf, gfid: String },
}

fn print(records: &[changelog::Record], seq: bool, origin: bool) -> anyhow::Result<()> {
    let out = std::io::stdout();
    let mut w = std::io::BufWriter::new(out.lock());
    for r in records {
        if seq {
            write!(w, "{} ", r.seq)?;
        }
        if origin {
            match r.origin() {
                changelog::Origin::User => write!(w, "user ")?,
                changelog::Origin::Received(v) if v == crate::types::VolumeId::NIL => write!(w, "received ")?,
                changelog::Origin::Received(v) => write!(w, "from:{v} ")?,
            }
        }
        w.write_all(&dump::format_record(r))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

pub fn run(c: ChangelogCmd) -> anyhow::Result<()> {
    match c {
        ChangelogCmd::Dump { path, seq, origin } => {
            let md = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
            if md.is_dir() {
                let layout = BrickLayout::new(&path);
                if !layout.changelog_dir().is_dir() {
                    bail!("{} is not a georep brick (no {})", path.display(), layout.changelog_dir().display());
                }
                let recs = changelog::brick_records(&layout).map_err(|e| anyhow::anyhow!("{e}"))?;
                print(&recs, seq, origin)
            } else {
                let f = ChangelogFile::open(&path)?;
                let (recs, tail) = f.records();
                print(&recs, seq, origin)?;
                match tail {
                    Tail::Clean => Ok(()),
                    Tail::Truncated { offset } => {
                        bail!("{}: truncated record at byte {}", path.display(), offset + changelog::codec::HEADER_LEN)
                    }
                    Tail::Corrupt { offset } => {
                        bail!("{}: corrupt record at byte {}", path.display(), offset + changelog::codec::HEADER_LEN)
                    }
                }
            }
        }
        ChangelogCmd::History { brick, since } => {
            let layout = BrickLayout::new(&brick);
            let idx = layout.changelog_dir().join("history.idx");
            let snap = history::read_index(&idx)?;
            for e in &snap.entries[snap.first_after(since)..] {
                println!(
                    "{} start={} end={} seq={} records={}{}",
                    history::changelog_path(&layout.changelog_dir(), e.end_ms).display(),
                    e.start_ms,
                    e.end_ms,
                    e.first_seq,
                    e.count,
                    if e.is_unclean() { " unclean" } else { "" }
                );
            }
            Ok(())
        }
    }
}

pub fn run_brick(c: BrickCmd) -> anyhow::Result<()> {
    match c {
        BrickCmd::Resolve { brick, gfid } => {
            let g: Gfid = gfid.parse()?;
            let layout = BrickLayout::new(&brick);
            let handles = GfidIndex::load(&layout.gfid_index())
                .with_context(|| format!("{} is not a georep brick", brick.display()))?;
            let root = std::fs::File::open(&layout.root).with_context(|| format!("{}", brick.display()))?;
            let fd = gfid_index::resolve(&handles, root.as_fd(), &g).with_context(|| format!("gfid {g}"))?;
            let p = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))?;
            println!("{}", p.display());
            Ok(())
        }
    }
}
