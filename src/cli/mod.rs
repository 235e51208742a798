//! The `georep` command line. Each subcommand maps to one function; errors are printed by
//! `main` as one line and a non-zero exit.

pub mod changelog;
pub mod gluster;
pub mod replicate;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "georep",
    version,
    about = "georep: geo-replication of directory trees over SSH",
    after_help = "GlusterFS-style commands (carried out by georepd):\n  georep volume create <VOL> [replica <N>] <NODE>:<BRICK>... [force]\n  georep volume start|stop|delete <VOL>; georep volume info [<VOL>] | list [--json]\n  georep volume geo-replication <PVOL> [<SUSER>@]<SHOST>::<SVOL> create [ssh-port <N>] [push-pem|no-verify] [force]\n  georep volume geo-replication <PVOL> <SECONDARY> start|stop|pause|resume [force] | delete [reset-sync-time]\n  georep volume geo-replication [<PVOL> [<SECONDARY>]] status [detail] [--json|--xml]\n  georep volume geo-replication <PVOL> <SECONDARY> config [[!]<key> [<value>]] | config checkpoint now\n  georep volume geo-replication <PVOL> <SECONDARY> verify [--checksum] [--full] | failover | failback [keep-conflicts] | restore"
)]
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
    /// A session's worker, as georepd runs it
    #[command(hide = true)]
    Worker { spec: std::path::PathBuf },
    /// Webhooks: URLs every event is POSTed to (GlusterFS's events API format)
    #[command(subcommand)]
    Webhook(WebhookArgs),
    /// Print this node's REST API bearer token (made at georepd's first start)
    ApiToken {
        /// Replace it with a new one (the old one stops working at once)
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhookArgs {
    /// Add a webhook
    Add {
        url: String,
        /// Sent as `Authorization: Bearer <TOKEN>`
        #[arg(long)]
        bearer: Option<String>,
    },
    /// List the webhooks
    List,
    /// Remove a webhook
    Del { url: String },
    /// POST an empty body to the URL and say what came back
    Test {
        url: String,
        #[arg(long)]
        bearer: Option<String>,
    },
}

/// A command carried out by georepd: its message printed, a refusal on stderr and exit 1.
fn daemon_call(req: crate::daemon::control::Request) -> anyhow::Result<()> {
    use crate::daemon::control::{Response, call};
    match call(&crate::daemon::dirs::Dirs::from_env(), &req)? {
        Response::Ok(m) => println!("{m}"),
        Response::Webhooks(hooks) if hooks.is_empty() => println!("No webhooks registered"),
        Response::Webhooks(hooks) => {
            for h in hooks {
                println!("{}{}", h.url, if h.bearer.is_some() { "  (bearer token set)" } else { "" });
            }
        }
        Response::Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
        other => anyhow::bail!("georepd: unexpected answer {other:?}"),
    }
    Ok(())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Changelog(c) => changelog::run(c),
        Command::Brick(c) => changelog::run_brick(c),
        Command::Receiver(a) => replicate::receiver(a),
        Command::Replicate(a) => replicate::replicate(a),
        Command::Worker { spec } => crate::sync::worker::run(&spec),
        Command::Webhook(w) => {
            use crate::daemon::webhooks::WebhookCmd;
            daemon_call(crate::daemon::control::Request::Webhook(match w {
                WebhookArgs::Add { url, bearer } => WebhookCmd::Add { url, bearer },
                WebhookArgs::List => WebhookCmd::List,
                WebhookArgs::Del { url } => WebhookCmd::Del { url },
                WebhookArgs::Test { url, bearer } => WebhookCmd::Test { url, bearer },
            }))
        }
        Command::ApiToken { rotate } => {
            let state = crate::daemon::dirs::Dirs::from_env().state;
            let t = if rotate { crate::api::rotate_token(&state)? } else { crate::api::ensure_token(&state)? };
            println!("{t}");
            Ok(())
        }
    }
}
