//! The GlusterFS-grammar commands (`georep volume ...`, `georep volume geo-replication ...`,
//! `georep system execute gsec_create`): parsed by `session::grammar`, carried out by the
//! local `georepd` over its control socket, rendered here.

use anyhow::bail;

use crate::daemon::control::{self, Request, Response, VolumeInfo};
use crate::daemon::dirs::Dirs;
use crate::session::grammar::{self, Command, VolumeCmd};
use crate::session::status;

/// The first words that select this grammar (prefixes allowed, as GlusterFS does).
pub fn claims(first: &str) -> bool {
    !first.is_empty()
        && ["volume", "system", "sshkey", "pool", "peer"].iter().any(|w| w.starts_with(first) && first.len() >= 3)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Xml,
}

/// Runs the command; returns the exit status.
pub fn run(args: &[String]) -> anyhow::Result<i32> {
    let mut format = Format::Text;
    let mut watch = false;
    let mut words = Vec::new();
    for a in args {
        match a.as_str() {
            "--json" => format = Format::Json,
            "--xml" => format = Format::Xml,
            "--watch" => watch = true,
            "--mode=script" => {}
            _ => words.push(a.clone()),
        }
    }
    let cmd = grammar::parse(&words)?;
    let dirs = Dirs::from_env();
    let peer_status = matches!(cmd, Command::PeerStatus);
    let (req, detail) = match cmd {
        Command::Volume(v) => (Request::Volume(v), false),
        Command::Session { primary, secondary, cmd } => (Request::Session { primary, secondary, cmd }, false),
        Command::Status { primary, secondary, detail } => (Request::Status { primary, secondary }, detail),
        Command::GsecCreate => (Request::GsecCreate, false),
        Command::Mount { label, args } => (Request::Mount { label, args }, false),
        Command::Umount { path, lazy } => (Request::Umount { path, lazy }, false),
        Command::PoolList | Command::PeerStatus => (Request::Nodes, false),
    };
    let is_info = matches!(&req, Request::Volume(VolumeCmd::Info { .. }));
    if watch {
        if !matches!(req, Request::Status { .. }) || format != Format::Text {
            bail!("--watch goes with status (as a table)");
        }
        return watch_status(&dirs, &req, detail, &words.join(" "));
    }
    match control::call(&dirs, &req)? {
        Response::Ok(msg) => {
            if !msg.is_empty() {
                println!("{msg}");
            }
            Ok(0)
        }
        Response::Err(msg) => {
            eprintln!("{msg}");
            Ok(1)
        }
        Response::Status(rows) => {
            print!(
                "{}",
                match format {
                    Format::Text => status::render_table(&rows, detail),
                    Format::Json => status::render_json(&rows),
                    Format::Xml => status::render_xml(&rows),
                }
            );
            Ok(0)
        }
        Response::Value(v) => {
            println!("{v}");
            Ok(0)
        }
        Response::Options(opts) => {
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&opts)?);
            } else {
                let w = opts.iter().map(|o| o.name.len()).max().unwrap_or(0);
                for o in opts {
                    println!("{:w$}  {}  (default {}; {})  {}", o.name, o.value, o.default, o.allowed, o.description);
                }
            }
            Ok(0)
        }
        Response::Failures(list) => {
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("No failed changes");
            } else {
                print!("{}", render_failures(&list));
            }
            Ok(0)
        }
        Response::Report { text, differences } => {
            println!("{text}");
            Ok(if differences == 0 { 0 } else { 1 })
        }
        Response::Config(kv) => {
            for (k, v) in kv {
                println!("{k}:{v}");
            }
            Ok(0)
        }
        Response::Volumes(vols) => {
            match (format, is_info) {
                (Format::Json, _) => println!("{}", serde_json::to_string_pretty(&vols)?),
                (_, true) => print!("{}", render_info(&vols)),
                (_, false) if vols.is_empty() => println!("No volumes present in cluster"),
                (_, false) => vols.iter().for_each(|v| println!("{}", v.name)),
            }
            Ok(0)
        }
        Response::Nodes(nodes) => {
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
                _ if peer_status => print!("{}", crate::daemon::nodes::render_peers(&nodes)),
                _ => print!("{}", crate::daemon::nodes::render_pool(&nodes)),
            }
            Ok(0)
        }
        other => bail!("georepd: unexpected answer {other:?}"),
    }
}

/// The failures list as a table, one change per line.
fn render_failures(list: &[crate::sync::failures::FailedChange]) -> String {
    let time = |ms: u64| status::format_time((ms / 1000) as i64, false);
    let mut rows =
        vec![["GFID", "PATH", "OP", "ERROR", "ATTEMPTS", "FIRST SEEN", "LAST SEEN"].map(String::from).to_vec()];
    for c in list {
        rows.push(vec![
            c.gfid.clone(),
            if c.path.is_empty() { "(gone)".into() } else { c.path.clone() },
            c.op.clone(),
            c.error.clone(),
            c.attempts.to_string(),
            time(c.first_seen_ms),
            time(c.last_seen_ms),
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `status --watch`: the table redrawn every second, with a progress bar under it for each
/// running Hybrid crawl; until interrupted.
fn watch_status(dirs: &Dirs, req: &Request, detail: bool, cmd: &str) -> anyhow::Result<i32> {
    use std::io::Write;
    loop {
        let body = match control::call(dirs, req)? {
            Response::Status(rows) => {
                let mut b = status::render_table(&rows, detail);
                for line in rows.iter().filter_map(status::render_progress) {
                    b.push('\n');
                    b.push_str(&line);
                }
                b
            }
            Response::Err(msg) => format!("\n{msg}\n"),
            other => bail!("georepd: unexpected answer {other:?}"),
        };
        let now = status::format_time(crate::types::EpochMs::now().0 as i64 / 1000, false);
        let mut out = std::io::stdout().lock();
        write!(out, "\x1b[H\x1b[2JEvery 1.0s: georep {cmd} --watch    {now}\n{body}\n")?;
        out.flush()?;
        drop(out);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `volume info`, in GlusterFS's layout.
fn render_info(vols: &[VolumeInfo]) -> String {
    if vols.is_empty() {
        return "No volumes present\n".into();
    }
    let mut out = String::new();
    for v in vols {
        out.push_str(&format!(
            "\nVolume Name: {}\nType: {}\nVolume ID: {}\nStatus: {}\nNumber of Bricks: {}\nTransport-type: ssh\nBricks:\n",
            v.name,
            if v.replica > 1 { "Replicate" } else { "Distribute" },
            v.id,
            v.status,
            if v.replica > 1 { format!("1 x {} = {}", v.replica, v.replica) } else { "1".into() },
        ));
        for (i, b) in v.bricks.iter().enumerate() {
            out.push_str(&format!("Brick{}: {b}\n", i + 1));
        }
        if !v.sessions.is_empty() {
            out.push_str(&format!("Geo-replication sessions: {}\n", v.sessions.join(", ")));
        }
    }
    out
}
