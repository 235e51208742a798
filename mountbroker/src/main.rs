//! `gluster-mountbroker`: sets up a secondary node for unprivileged receivers (SPEC section 7):
//! the mount root and its hive, the receivers' group, and which volumes each user may have
//! mounted, in `<config>/mountbroker.conf` (`GEOREP_CONFIG_DIR`, default `/etc/georep`).
//! georepd reads the file on every mount request. Every action prints GlusterFS's table; a
//! refusal is one line on stderr and a non-zero exit, with nothing changed.

use std::path::PathBuf;

use anyhow::{Context, bail};
use georep::mountbroker::{Config, make_root, table};

const USAGE: &str = "usage: gluster-mountbroker setup <MOUNT_ROOT> <GROUP> | add <VOLUME> <USER> | remove [--volume <VOLUME>] [--user <USER>] | status";

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

fn run(args: &[String]) -> anyhow::Result<()> {
    let path = config_path();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["setup", root, group] => {
            if nix::unistd::Group::from_name(group)?.is_none() {
                bail!("User Group not exists: {group}");
            }
            let mut c = Config::load(&path)?;
            let root = PathBuf::from(root);
            make_root(&root)?;
            c.root = Some(root);
            c.group = Some(group.to_string());
            c.save(&path)?;
            action_table("SETUP");
        }
        ["add", volume, user] => {
            if nix::unistd::User::from_name(user)?.is_none() {
                bail!("User {user} does not exist on this node");
            }
            let mut c = Config::load(&path)?;
            c.add(volume, user)?;
            c.save(&path)?;
            action_table("ADD");
        }
        ["remove", rest @ ..] => {
            let (mut volume, mut user) = (None, None);
            let mut it = rest.iter();
            while let Some(w) = it.next() {
                match *w {
                    "--volume" => volume = Some(*it.next().context("--volume needs a value")?),
                    "--user" => user = Some(*it.next().context("--user needs a value")?),
                    other => bail!("unexpected {other:?}; {USAGE}"),
                }
            }
            let mut c = Config::load(&path)?;
            c.remove(volume, user)?;
            c.save(&path)?;
            action_table("REMOVE");
        }
        ["status"] => {
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
        ["-V"] => println!("gluster-mountbroker {}", georep::VERSION),
        ["--version"] => println!("gluster-mountbroker {}", *georep::version::LONG),
        ["--help"] | ["-h"] | [] => println!("{USAGE}"),
        _ => bail!("{USAGE}"),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("gluster-mountbroker: {e:#}");
        std::process::exit(1);
    }
}
