//! The manual pages and shell completions of every program, generated from their command-line
//! definitions (clap's, and for `georep`'s GlusterFS-style commands the grammar's `SYNOPSES`
//! and the session options' own descriptions). `scripts/package` writes them with the hidden
//! `georep generate-manual <DIR>`: `<DIR>/man8/*.8` (a page per program and per subcommand)
//! and `<DIR>/completions/{bash,zsh,fish}/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

/// Every program with its command line.
pub fn programs() -> Vec<clap::Command> {
    vec![
        super::Cli::command(),
        super::georepd::Args::command(),
        super::mount::Args::command(),
        super::mountbroker::Args::command(),
    ]
}

/// Writes every page and completion under `dir`; returns the files written.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man8");
    std::fs::create_dir_all(&man).with_context(|| format!("create {}", man.display()))?;
    for cmd in programs() {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        pages(&cmd, true, &man, &mut written)?;
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let to = dir.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&to)?;
            let name = cmd.get_name().to_string();
            written.push(clap_complete::generate_to(shell, &mut cmd.clone(), name, &to)?);
        }
    }
    Ok(written)
}

/// The page of `cmd` and of each of its visible subcommands, recursively.
fn pages(cmd: &clap::Command, top: bool, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, false, dir, written)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("georep Manual")
        .source(format!("georep {}", crate::version::VERSION));
    let path = dir.join(man.get_filename());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    match cmd.get_name() {
        "georep" => georep_sections(&mut out)?,
        "mount.georep" => section(&mut out, "MOUNT OPTIONS", &[], super::mount::OPTIONS_HELP)?,
        _ => {}
    }
    if top {
        common_sections(&mut out)?;
    }
    if top {
        man.render_version_section(&mut out)?;
    }
    std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    written.push(path);
    Ok(())
}

/// What `georep`'s page has beyond its clap commands: the GlusterFS-style commands and the
/// session options.
fn georep_sections(out: &mut Vec<u8>) -> std::io::Result<()> {
    let commands: Vec<(String, String)> =
        crate::session::grammar::SYNOPSES.iter().map(|(s, d)| (format!("georep {s}"), d.to_string())).collect();
    section(
        out,
        "GLUSTERFS-STYLE COMMANDS",
        &commands,
        "Carried out by this node's georepd over its control socket, as GlusterFS's gluster(8) \
         geo-replication commands are; words may be shortened to unambiguous prefixes. A refusal is one \
         line on standard error and exit status 1, with nothing changed.",
    )?;
    let options: Vec<(String, String)> = crate::session::config::SessionConfig::default()
        .describe()
        .into_iter()
        .map(|o| (format!("{} ({}; default {})", o.name, o.allowed, o.default), o.description))
        .collect();
    section(out, "SESSION OPTIONS", &options, "Set with `config <OPTION> <VALUE>`, reset with `config !<OPTION>`.")
}

/// FILES and ENVIRONMENT, shared by the programs' own pages.
fn common_sections(out: &mut Vec<u8>) -> std::io::Result<()> {
    let files = [
        ("/etc/default/georepd", "georepd's flags for its systemd unit (GEOREPD_ARGS)."),
        ("/etc/georep", "Configuration: mountbroker.conf (GEOREP_CONFIG_DIR)."),
        ("/var/lib/georep", "State: the store, session keys, known_hosts, the API token (GEOREP_STATE_DIR)."),
        (
            "/var/log/georep",
            "Logs: georepd's workers (geo-replication/<session>/gsyncd.log) and mounts (GEOREP_LOG_DIR).",
        ),
        ("/run/georep", "Sockets: georepd.sock, bricks/<volume-id>.sock, api.addr (GEOREP_RUN_DIR)."),
    ];
    let files: Vec<(String, String)> = files.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    section(out, "FILES", &files, "")?;
    section(
        out,
        "SEE ALSO",
        &[],
        "georep(8), georepd(8), mount.georep(8), gluster-mountbroker(8), and the documentation in \
         /usr/share/doc/georep.",
    )
}

/// One section: an introduction, then a tagged paragraph per item.
fn section(out: &mut Vec<u8>, title: &str, items: &[(String, String)], intro: &str) -> std::io::Result<()> {
    writeln!(out, ".SH \"{title}\"")?;
    for line in intro.lines() {
        if line.is_empty() {
            continue;
        }
        // Indented help lines (the mount options) keep their layout.
        if line.starts_with(' ') {
            writeln!(out, ".nf\n{}\n.fi", escape(line))?;
        } else {
            writeln!(out, "{}", escape(line))?;
        }
    }
    for (tag, text) in items {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", escape(tag), escape(text))?;
    }
    Ok(())
}

/// Text made safe for roff: backslashes and hyphens escaped, no line starting a request.
fn escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}
