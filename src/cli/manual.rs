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
    for base in programs() {
        let mut cmd = base.clone().disable_help_subcommand(true);
        cmd.build();
        pages(&cmd, true, &man, &mut written)?;
        // Completions offer what the manual shows: no hidden command.
        let mut comp = clap::Command::new(base.get_name().to_string())
            .args(base.get_arguments().cloned())
            .subcommands(base.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        if cmd.get_name() == "georep" {
            grammar_pages(&man, &mut written)?;
            // The GlusterFS-style words complete too (their first two levels).
            comp = comp.subcommands(grammar_words());
        }
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let to = dir.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&to)?;
            let name = cmd.get_name().to_string();
            written.push(clap_complete::generate_to(shell, &mut comp.clone(), name, &to)?);
        }
    }
    Ok(written)
}

/// The GlusterFS-style commands' groups, each with a page of its own: the words its
/// synopses begin with, the page's name, and what the group is.
const GROUPS: &[(&str, &str, &str)] = &[
    (
        "volume geo-replication",
        "georep-volume-geo-replication",
        "geo-replication sessions: create, control, status, options, disaster recovery",
    ),
    ("volume", "georep-volume", "volumes: create, start, stop, delete, info, list"),
    ("system", "georep-system", "session keys and the mountbroker's mounts"),
    ("pool", "georep-pool", "the cluster's nodes"),
    ("peer", "georep-peer", "the other nodes of the cluster"),
];

/// The group of a synopsis: the first of `GROUPS` whose words it begins with.
fn group_of(synopsis: &str) -> &'static str {
    GROUPS.iter().find(|(w, ..)| synopsis.starts_with(&format!("{w} "))).map_or("system", |(w, ..)| w)
}

/// A page per group of the GlusterFS-style commands, from `SYNOPSES`.
fn grammar_pages(dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for (words, page, what) in GROUPS {
        let commands: Vec<(String, String)> = crate::session::grammar::SYNOPSES
            .iter()
            .filter(|(s, _)| group_of(s) == *words)
            .map(|(s, d)| (format!("georep {s}"), d.to_string()))
            .collect();
        let mut out = Vec::new();
        writeln!(out, ".TH {} 8 \"\" \"georep {}\" \"georep Manual\"", escape(page), crate::version::VERSION)?;
        writeln!(out, ".SH NAME\n{} \\- {}", escape(page), escape(what))?;
        section(
            &mut out,
            "DESCRIPTION",
            &[],
            "GlusterFS-style commands of georep(8), carried out by this node's georepd; words may be \
             shortened to unambiguous prefixes. A refusal is one line on standard error and exit status \
             1, with nothing changed.",
        )?;
        section(&mut out, "COMMANDS", &commands, "")?;
        if *words == "volume geo-replication" {
            session_options(&mut out)?;
        }
        section(&mut out, "SEE ALSO", &[], "georep(8), georepd(8), and /usr/share/doc/georep/sessions.md.")?;
        let path = dir.join(format!("{page}.8"));
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
    }
    Ok(())
}

/// The GlusterFS-style words as clap commands, for completion only (never parsed by clap:
/// `georep`'s main hands them to the grammar first).
fn grammar_words() -> Vec<clap::Command> {
    use std::collections::BTreeMap;
    let mut tree: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    for (s, _) in crate::session::grammar::SYNOPSES {
        let mut w = s.split(' ');
        let first = w.next().unwrap_or_default();
        let second = w.next().unwrap_or_default();
        let seconds = tree.entry(first).or_default();
        for alt in second.split('|').filter(|a| !a.starts_with('<') && !a.starts_with('[')) {
            if !seconds.contains(&alt) {
                seconds.push(alt);
            }
        }
    }
    tree.insert("sshkey", vec!["generate"]);
    tree.into_iter()
        .map(|(first, seconds)| {
            clap::Command::new(first)
                .about("GlusterFS-style command (see georep(8))")
                .subcommands(seconds.into_iter().map(clap::Command::new))
        })
        .collect()
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
         line on standard error and exit status 1, with nothing changed. Their pages: georep-volume(8), \
         georep-volume-geo-replication(8), georep-system(8).",
    )?;
    session_options(out)
}

/// Every session option with its allowed values, default and description.
fn session_options(out: &mut Vec<u8>) -> std::io::Result<()> {
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
