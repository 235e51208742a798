//! `gluster-mountbroker`'s command line (SPEC section 7), here so that its manual and
//! completions are generated with the others'.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gluster-mountbroker",
    version,
    long_version = crate::version::LONG.as_str(),
    about = "Sets up a secondary node for unprivileged georep receivers",
    long_about = "Sets up a secondary node for unprivileged georep receivers: the mount root and its hive, the \
receivers' group, and which volumes each user may have mounted, in <config>/mountbroker.conf (GEOREP_CONFIG_DIR, \
default /etc/georep). georepd reads the file on every mount request."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make MOUNT_ROOT (0711, root's) and its hive, for the receivers of GROUP
    Setup { mount_root: PathBuf, group: String },
    /// Let USER's receivers have VOLUME mounted
    Add { volume: String, user: String },
    /// Take a volume, a user, or the volume from the user away
    Remove {
        #[arg(long)]
        volume: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Show the mount root, the group and the users with their volumes
    Status,
}
