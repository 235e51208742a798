//! `gluster-mountbroker`: sets up a secondary node for unprivileged receivers (SPEC section 7):
//! the mount root and its hive, the receivers' group, and which volumes each user may have
//! mounted, in `<config>/mountbroker.conf` (`GEOREP_CONFIG_DIR`, default `/etc/georep`).
//! georepd reads the file on every mount request. Every action prints GlusterFS's table; a
//! refusal is one line on stderr and a non-zero exit, with nothing changed.

use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
use georep::cli::mountbroker::{Args, Command};
use georep::mountbroker::{Config, make_root, table};

fn config_path() -> PathBuf {
    let dir = std::env::var_os("GEOREP_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| "/etc/georep".into());
    Config::path(&dir)
}

fn action_table(action: &str) {
    print!(
        "{}",
        table(
            &["NODE", "NODE STATUS", &format!("{action} STATUS")],
            &[vec!["localhost".into(), "UP".into(), "OK".into()]]
        )
    );
}

fn run(args: Args) -> anyhow::Result<()> {
    let path = config_path();
    match args.command {
        Command::Setup { mount_root: root, group } => {
            if nix::unistd::Group::from_name(&group)?.is_none() {
                bail!("User Group not exists: {group}");
            }
            let mut c = Config::load(&path)?;
            make_root(&root)?;
            c.root = Some(root);
            c.group = Some(group);
            c.save(&path)?;
            action_table("SETUP");
        }
        Command::Add { volume, user } => {
            if nix::unistd::User::from_name(&user)?.is_none() {
                bail!("User {user} does not exist on this node");
            }
            let mut c = Config::load(&path)?;
            c.add(&volume, &user)?;
            c.save(&path)?;
            action_table("ADD");
        }
        Command::Remove { volume, user } => {
            let mut c = Config::load(&path)?;
            c.remove(volume.as_deref(), user.as_deref())?;
            c.save(&path)?;
            action_table("REMOVE");
        }
        Command::Status => {
            let st = Config::load(&path)?.status();
            let ok = |good: bool| if good { "OK" } else { "NOT OK" };
            let root = match &st.mount_root {
                Some(r) => format!("{r}({})", ok(st.mount_root_ok)),
                None => "None".into(),
            };
            let group = match &st.group {
                Some(g) => format!("{g}({})", ok(st.group_ok)),
                None => "None".into(),
            };
            let users = if st.users.is_empty() {
                "None".into()
            } else {
                st.users.iter().map(|(u, v)| format!("{u}({})", v.join(", "))).collect::<Vec<_>>().join(" ")
            };
            print!(
                "{}",
                table(
                    &["NODE", "NODE STATUS", "MOUNT ROOT", "GROUP", "USERS"],
                    &[vec!["localhost".into(), "UP".into(), root, group, users]]
                )
            );
        }
    }
    Ok(())
}

/// The arguments; a mistake in them is one line and exit status 1, as every refusal here.
fn args() -> Args {
    use clap::error::ErrorKind;
    match Args::try_parse() {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            let what = e.to_string();
            let first = match e.kind() {
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => "a command is needed",
                _ => what.lines().next().unwrap_or_default().trim_start_matches("error: "),
            };
            eprintln!(
                "gluster-mountbroker: {first}; usage: gluster-mountbroker setup <MOUNT_ROOT> <GROUP> | add <VOLUME> <USER> | remove [--volume <VOLUME>] [--user <USER>] | status"
            );
            std::process::exit(1);
        }
    }
}

fn main() {
    if let Err(e) = run(args()) {
        eprintln!("gluster-mountbroker: {e:#}");
        std::process::exit(1);
    }
}
