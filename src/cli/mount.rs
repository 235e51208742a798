//! `mount.georep`'s command line, as mount(8) calls a helper (`mount.georep SOURCE DIR -o
//! OPTIONS [-s] [-n] [-v]`); here so that its manual is generated with the others'.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// The options `-o` takes, for the help and the manual.
pub const OPTIONS_HELP: &str = "\
Mount options (-o, comma-separated):
  ro                      read-only
  allow_other             other users may use the mount (as FUSE's)
  rollover-time=SECS      how often the active changelog is published
  fsync-interval=SECS     how often changelogs are made durable
  changelog-retention=SECS  how long published changelogs are kept
  attr-timeout=SECS       how long the kernel caches attributes
  threads=N               threads serving the mount
  no-passthrough          no FUSE passthrough of file data
  no-changelog            record nothing (a plain overlay)
  aux-gfid-mount          the .gfid/ namespace for receivers
  user-map-root=USER      the receiver's user is root inside the mount
  _netdev, x-systemd.*    for fstab and systemd; ignored here";

#[derive(Parser, Debug)]
#[command(
    name = "mount.georep",
    version,
    long_version = crate::version::LONG.as_str(),
    about = "Mounts a georep brick: a transparent overlay that records every change",
    long_about = "Mounts a georep brick: a transparent overlay that records every change. Every mount of a brick is \
served by its brick server (georepd's for a started volume; for a plain directory, one started by its first mount); \
--serve runs one. mount(8) runs this for `mount -t georep SOURCE DIR`.",
    after_help = OPTIONS_HELP
)]
pub struct Args {
    /// A brick directory, or a volume of this node's georepd (`[<NODE>:]<VOL>`)
    pub source: PathBuf,
    /// The mount point
    #[arg(required_unless_present = "serve", conflicts_with = "serve")]
    pub target: Option<PathBuf>,
    /// Mount options, comma-separated (repeatable)
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    pub options: Vec<String>,
    /// Stay in the foreground (serve the mount from this process)
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Run the brick server of SOURCE (a brick directory), as georepd does for a started volume
    #[arg(long)]
    pub serve: bool,
    /// mount(8)'s: no mtab (ignored)
    #[arg(short = 'n', hide = true)]
    pub no_mtab: bool,
    /// mount(8)'s: sloppy options (ignored)
    #[arg(short = 's', hide = true)]
    pub sloppy: bool,
    /// mount(8)'s: verbose (ignored)
    #[arg(short = 'v', hide = true)]
    pub verbose: bool,
    /// mount(8)'s: the type (ignored)
    #[arg(short = 't', hide = true)]
    pub fstype: Option<String>,
}

impl Args {
    /// The `-o` options, joined.
    pub fn opts(&self) -> String {
        self.options.join(",")
    }
}
