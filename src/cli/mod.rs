//! The `georep` command line. Each subcommand maps to one function; errors are printed by
//! `main` as one line and a non-zero exit.

pub mod changelog;
pub mod replicate;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "georep", version, about = "georep: geo-replication of directory trees over SSH")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Inspect changelogs
    #[command(subcommand)]
    Changelog(changelog::ChangelogCmd),
    /// Inspect bricks
    #[command(subcommand)]
    Brick(changelog::BrickCmd),
    /// Apply a worker's changes to a secondary aux-gfid mount (speaks on stdin/stdout)
    Receiver(replicate::ReceiverArgs),
    /// Replicate one primary brick to a secondary aux-gfid mount (no daemon)
    Replicate(replicate::ReplicateArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Changelog(c) => changelog::run(c),
        Command::Brick(c) => changelog::run_brick(c),
        Command::Receiver(a) => replicate::receiver(a),
        Command::Replicate(a) => replicate::replicate(a),
    }
}
