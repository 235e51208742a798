//! The `georep` command line. Each subcommand maps to one function; errors are printed by
//! `main` as one line and a non-zero exit.

pub mod changelog;

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
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Changelog(c) => changelog::run(c),
        Command::Brick(c) => changelog::run_brick(c),
    }
}
