//! The `georep` command line. Each subcommand maps to one function; errors are printed by
//! `main` as one line and a non-zero exit.

pub mod changelog;
pub mod georepd;
pub mod gluster;
pub mod manual;
pub mod mount;
pub mod mountbroker;
pub mod replicate;

use clap::{Parser, Subcommand};

/// `georep --help`'s list of the GlusterFS-style commands (`session::grammar::SYNOPSES`).
static GLUSTER_HELP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("GlusterFS-style commands (carried out by georepd):\n{}", crate::session::grammar::synopses_text())
});

#[derive(Parser, Debug)]
#[command(
    name = "georep",
    version,
    long_version = crate::version::LONG.as_str(),
    about = "Geo-replication of directory trees over SSH",
    after_help = GLUSTER_HELP.as_str()
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
    /// Write every program's manual pages and shell completions under DIR (`scripts/package`)
    #[command(hide = true)]
    GenerateManual { dir: std::path::PathBuf },
    /// Destinations: the secondary hosts attached to this cluster, their host keys pinned
    #[command(subcommand)]
    Destination(DestinationArgs),
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
pub enum DestinationArgs {
    /// Attach a secondary host: its SSH host key is pinned now
    Add {
        host: String,
        #[arg(long)]
        port: Option<u16>,
        /// The user sessions reach it as (root if not given)
        #[arg(long)]
        user: Option<String>,
        /// Install this cluster's session keys there (as create push-pem does), with the
        /// operator's own SSH access
        #[arg(long)]
        push_keys: bool,
    },
    /// List the destinations, their pinned fingerprint and connection status
    List {
        #[arg(long)]
        json: bool,
    },
    /// Test a destination stage by stage: reachable, host key, authentication, georep, volumes
    Test {
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Accept a changed host key (only the one given) and/or install the session keys again
    ReEstablish {
        host: String,
        /// The new key's fingerprint (SHA256:...), as the refusal shows it
        #[arg(long)]
        accept: Option<String>,
        #[arg(long)]
        push_keys: bool,
    },
    /// Detach a destination (refused while a session uses it, unless forced)
    Remove {
        host: String,
        #[arg(long)]
        force: bool,
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
fn daemon_call(req: crate::daemon::control::Request, json: bool) -> anyhow::Result<()> {
    use crate::daemon::control::{Response, call};
    match call(&crate::daemon::dirs::Dirs::from_env(), &req)? {
        Response::Destinations(list) if json => println!("{}", serde_json::to_string_pretty(&list)?),
        Response::Destinations(list) if list.is_empty() => println!("No destinations"),
        Response::Destinations(list) => {
            for v in list {
                let d = &v.destination;
                println!("{}@{}:{}  {}  {}", d.user, d.host, d.port, d.fingerprint, v.status);
                for s in &v.sessions {
                    println!("    session {s}");
                }
            }
        }
        Response::DestinationTest(t) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                for s in &t.stages {
                    println!("{:4}  {:14}  {}", if s.ok { "ok" } else { "FAIL" }, s.stage, s.detail);
                }
            }
            if !t.ok {
                std::process::exit(1);
            }
        }
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
        Command::GenerateManual { dir } => {
            let files = manual::generate(&dir)?;
            println!("{} files under {}", files.len(), dir.display());
            Ok(())
        }
        Command::Webhook(w) => {
            use crate::daemon::webhooks::WebhookCmd;
            daemon_call(
                crate::daemon::control::Request::Webhook(match w {
                    WebhookArgs::Add { url, bearer } => WebhookCmd::Add { url, bearer },
                    WebhookArgs::List => WebhookCmd::List,
                    WebhookArgs::Del { url } => WebhookCmd::Del { url },
                    WebhookArgs::Test { url, bearer } => WebhookCmd::Test { url, bearer },
                }),
                false,
            )
        }
        Command::Destination(a) => {
            use crate::daemon::destinations::DestinationCmd as C;
            let (cmd, json) = match a {
                DestinationArgs::Add { host, port, user, push_keys } => (C::Add { host, port, user, push_keys }, false),
                DestinationArgs::List { json } => (C::List, json),
                DestinationArgs::Test { host, json } => (C::Test { host }, json),
                DestinationArgs::ReEstablish { host, accept, push_keys } => {
                    (C::ReEstablish { host, accept, push_keys }, false)
                }
                DestinationArgs::Remove { host, force } => (C::Remove { host, force }, false),
            };
            daemon_call(crate::daemon::control::Request::Destination(cmd), json)
        }
        Command::ApiToken { rotate } => {
            let state = crate::daemon::dirs::Dirs::from_env().state;
            let t = if rotate { crate::api::rotate_token(&state)? } else { crate::api::ensure_token(&state)? };
            println!("{t}");
            Ok(())
        }
    }
}
