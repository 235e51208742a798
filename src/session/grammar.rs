//! The session command grammar of SPEC section 4, as GlusterFS's CLI parses it: words may be
//! shortened to unambiguous prefixes (`vol geo-rep ... st` is ambiguous between start, stop and
//! status; `sta` is start or status, still ambiguous; `star` is start). Pure: argv in, a
//! command or one clear error out.

use std::fmt;

/// `[<user>@]<host>::<volume>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SecondaryUrl {
    pub user: Option<String>,
    pub host: String,
    pub volume: String,
}

impl fmt::Display for SecondaryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}::{}", self.host, self.volume)
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl SecondaryUrl {
    pub fn parse(s: &str) -> Result<SecondaryUrl, GrammarError> {
        let bad = || GrammarError::Url(s.to_string());
        if s.contains(":::") {
            return Err(bad());
        }
        let (left, volume) = s.split_once("::").ok_or_else(bad)?;
        let (user, host) = match left.split_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, left),
        };
        if volume.contains(':') || host.contains(':') || !valid_word(volume) || !valid_word(host) {
            return Err(bad());
        }
        if let Some(u) = &user
            && !valid_word(u)
        {
            return Err(bad());
        }
        Ok(SecondaryUrl { user, host: host.to_string(), volume: volume.to_string() })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigAction {
    GetAll,
    /// `config --describe`: every option with its value, default, allowed values and
    /// description.
    Describe,
    Get(String),
    Set(String, String),
    Reset(String),
    CheckpointNow,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionCmd {
    Create {
        ssh_port: Option<u16>,
        push_pem: bool,
        no_verify: bool,
        force: bool,
    },
    Start {
        force: bool,
    },
    Stop {
        force: bool,
    },
    Pause {
        force: bool,
    },
    Resume {
        force: bool,
    },
    Delete {
        reset_sync_time: bool,
    },
    Config(ConfigAction),
    /// On the secondary's node: promote the secondary volume (SPEC 11).
    Failover,
    /// On the promoted volume's node, toward its old primary: the reverse session; with
    /// `keep_conflicts`, the old primary's unshipped changes are copied aside first.
    Failback {
        keep_conflicts: bool,
    },
    /// The end of a failback: the roles back as they were.
    Restore,
    /// The changes the secondary could not apply (`failures`), or have them sent again
    /// (`failures retry [<GFID>]`: all, or one).
    Failures {
        retry: bool,
        /// Only this one (a GFID), with `retry`.
        gfid: Option<String>,
    },
    /// Compare both sides (SPEC 11).
    Verify {
        checksum: bool,
        full: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Volume(VolumeCmd),
    Session {
        primary: String,
        secondary: SecondaryUrl,
        cmd: SessionCmd,
    },
    Status {
        primary: Option<String>,
        secondary: Option<SecondaryUrl>,
        detail: bool,
    },
    GsecCreate,
    /// `georep system mount <LABEL> <ARG>...`: a mountbroker mount (GlusterFS's
    /// `gluster system:: mount`); prints the cookie path.
    Mount {
        label: String,
        args: Vec<String>,
    },
    /// `georep system umount <COOKIE> [lazy]`.
    Umount {
        path: String,
        lazy: bool,
    },
    /// `georep pool list`: every node of the cluster, this one as localhost.
    PoolList,
    /// `georep peer status`: the other nodes.
    PeerStatus,
}

/// `georep volume ...` (SPEC section 3).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VolumeCmd {
    Create { name: String, replica: u32, bricks: Vec<(String, String)>, force: bool },
    Start { name: String, force: bool },
    Stop { name: String, force: bool },
    Delete { name: String },
    Info { name: Option<String> },
    List,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrammarError {
    #[error("{0}")]
    Usage(String),
    #[error("{0:?} is ambiguous: it could be {1}")]
    Ambiguous(String, String),
    #[error("invalid secondary url {0:?}: expected [<user>@]<host>::<volume>")]
    Url(String),
    #[error("invalid ssh-port {0:?}: expected 1-65535")]
    Port(String),
}

/// The word of `choices` that `w` abbreviates (an exact match wins).
fn word<'a>(w: &str, choices: &[&'a str]) -> Result<Option<&'a str>, GrammarError> {
    if let Some(c) = choices.iter().find(|c| **c == w) {
        return Ok(Some(c));
    }
    let m: Vec<&&str> = choices.iter().filter(|c| !w.is_empty() && c.starts_with(w)).collect();
    match m.len() {
        0 => Ok(None),
        1 => Ok(Some(m[0])),
        _ => Err(GrammarError::Ambiguous(w.to_string(), m.iter().map(|s| **s).collect::<Vec<_>>().join(", "))),
    }
}

fn expect<'a>(w: Option<&String>, choices: &[&'a str], usage: &str) -> Result<&'a str, GrammarError> {
    let w = w.ok_or_else(|| GrammarError::Usage(usage.to_string()))?;
    word(w, choices)?.ok_or_else(|| GrammarError::Usage(format!("unexpected {w:?}; {usage}")))
}

/// Every command of this grammar: its synopsis (after `georep `) and what it does, for
/// `georep --help` and the manual (`cli::manual`). A test checks that each verb is here.
pub const SYNOPSES: &[(&str, &str)] = &[
    (
        "volume create <VOL> [replica <N>] <NODE>:<BRICK>... [force]",
        "Make a volume of a brick (a plain directory) on a node.",
    ),
    ("volume start|stop|delete <VOL>", "Start the volume's brick server (and its mounts), stop it, forget the volume."),
    ("volume info [<VOL>|all]", "The volume's id, status and bricks."),
    ("volume list", "The volumes' names."),
    (
        "volume geo-replication <PVOL> [<SUSER>@]<SHOST>::<SVOL> create [ssh-port <N>] [push-pem|no-verify] [force]",
        "Create a session from PVOL to the secondary volume SVOL on SHOST (push-pem installs the session keys there).",
    ),
    (
        "volume geo-replication <PVOL> <SECONDARY> start|stop|pause|resume [force]",
        "Start, stop, pause or resume the session's workers.",
    ),
    ("volume geo-replication <PVOL> <SECONDARY> delete [reset-sync-time]", "Forget the session (and its sync time)."),
    (
        "volume geo-replication [<PVOL> [<SECONDARY>]] status [detail]",
        "One row per brick of each session: status, crawl, last synced, pending changes (--json, --xml).",
    ),
    (
        "volume geo-replication <PVOL> <SECONDARY> config [[!]<OPTION> [<VALUE>]]",
        "Show the options, one option, set one, or reset it to its default (!); see SESSION OPTIONS.",
    ),
    ("volume geo-replication <PVOL> <SECONDARY> config checkpoint now", "Set a checkpoint at the current time."),
    (
        "volume geo-replication <PVOL> <SECONDARY> verify [--checksum] [--full]",
        "Compare both volumes (contents too with --checksum); exit 1 with the differences.",
    ),
    ("volume geo-replication <PVOL> <SECONDARY> failures [retry [<GFID>]]", "The changes that failed; retry them."),
    (
        "volume geo-replication <PVOL> <SECONDARY> failover",
        "On the secondary: make its volume writable (the primary is lost).",
    ),
    (
        "volume geo-replication <PVOL> <SECONDARY> failback [keep-conflicts]",
        "Bring the old primary up to date from the secondary, before roles go back.",
    ),
    ("volume geo-replication <PVOL> <SECONDARY> restore", "Give the primary its role back after a failback."),
    ("pool list", "Every node of the cluster (this one as localhost), Connected or Disconnected."),
    ("peer status", "The other nodes of the cluster and whether each is connected."),
    ("system execute gsec_create", "Make this node's session key (also: sshkey generate)."),
    ("system mount <LABEL> <ARG>... | system umount <COOKIE> [lazy]", "The mountbroker's mounts (receivers use them)."),
];

/// `SYNOPSES` as a help text, one command a paragraph.
pub fn synopses_text() -> String {
    SYNOPSES.iter().map(|(s, d)| format!("  georep {s}\n      {d}\n")).collect()
}

const VOLUME_USAGE: &str = "usage: georep volume {create|start|stop|delete|info|list|geo-replication} ...";

fn volume_name(w: Option<&String>, usage: &str) -> Result<String, GrammarError> {
    let w = w.ok_or_else(|| GrammarError::Usage(usage.to_string()))?;
    if !valid_word(w) {
        return Err(GrammarError::Usage(format!("invalid volume name {w:?}")));
    }
    Ok(w.to_string())
}

fn parse_volume(sub: &str, args: &[String]) -> Result<VolumeCmd, GrammarError> {
    let mut it = args.iter();
    let force_only = |it: &mut std::slice::Iter<'_, String>, usage: &str| -> Result<bool, GrammarError> {
        let f = match it.next() {
            None => false,
            Some(w) if word(w, &["force"])? == Some("force") => true,
            Some(w) => return Err(GrammarError::Usage(format!("unexpected {w:?}; {usage}"))),
        };
        end(it)?;
        Ok(f)
    };
    Ok(match sub {
        "create" => {
            const U: &str = "usage: georep volume create <VOL> [replica <N>] <NODE>:<BRICK_PATH>... [force]";
            let name = volume_name(it.next(), U)?;
            let (mut replica, mut bricks, mut force) = (None, Vec::new(), false);
            while let Some(w) = it.next() {
                if let Some((node, path)) = w.split_once(':') {
                    if !valid_word(node) || !path.starts_with('/') || path.contains('\0') {
                        return Err(GrammarError::Usage(format!(
                            "invalid brick {w:?}: expected <NODE>:<ABSOLUTE_PATH>"
                        )));
                    }
                    bricks.push((node.to_string(), path.to_string()));
                    continue;
                }
                match word(w, &["replica", "force"])? {
                    Some("replica") if replica.is_none() && bricks.is_empty() => {
                        let n = it.next().ok_or_else(|| GrammarError::Usage(U.into()))?;
                        let n: u32 = n.parse().ok().filter(|n| (1..=16).contains(n)).ok_or_else(|| {
                            GrammarError::Usage(format!("invalid replica count {n:?}: expected 1-16"))
                        })?;
                        replica = Some(n);
                    }
                    Some("force") => force = true,
                    _ => return Err(GrammarError::Usage(format!("unexpected {w:?}; {U}"))),
                }
            }
            if bricks.is_empty() {
                return Err(GrammarError::Usage(U.into()));
            }
            let replica = replica.unwrap_or(bricks.len() as u32);
            if replica as usize != bricks.len() {
                return Err(GrammarError::Usage(format!(
                    "replica {replica} needs {replica} bricks (the same brick on each node), got {}",
                    bricks.len()
                )));
            }
            VolumeCmd::Create { name, replica, bricks, force }
        }
        "start" => {
            let name = volume_name(it.next(), "usage: georep volume start <VOL> [force]")?;
            VolumeCmd::Start { name, force: force_only(&mut it, "usage: georep volume start <VOL> [force]")? }
        }
        "stop" => {
            let name = volume_name(it.next(), "usage: georep volume stop <VOL> [force]")?;
            VolumeCmd::Stop { name, force: force_only(&mut it, "usage: georep volume stop <VOL> [force]")? }
        }
        "delete" => {
            let name = volume_name(it.next(), "usage: georep volume delete <VOL>")?;
            end(&mut it)?;
            VolumeCmd::Delete { name }
        }
        "info" => {
            let name = match it.next() {
                None => None,
                Some(w) if w == "all" => None,
                w => Some(volume_name(w, "usage: georep volume info [<VOL>]")?),
            };
            end(&mut it)?;
            VolumeCmd::Info { name }
        }
        _ => {
            end(&mut it)?;
            VolumeCmd::List
        }
    })
}

const USAGE: &str = "usage: georep volume geo-replication [<PVOL> [<SECONDARY>]] {create|start|stop|pause|resume|delete|status|config|failover|failback|restore|verify|failures} ...";

/// Parses the words after `georep`.
pub fn parse(args: &[String]) -> Result<Command, GrammarError> {
    let mut it = args.iter();
    match expect(it.next(), &["volume", "system", "sshkey", "pool", "peer"], USAGE)? {
        "pool" => {
            expect(it.next(), &["list"], "usage: georep pool list")?;
            end(&mut it)?;
            return Ok(Command::PoolList);
        }
        "peer" => {
            expect(it.next(), &["status"], "usage: georep peer status")?;
            end(&mut it)?;
            return Ok(Command::PeerStatus);
        }
        "system" => {
            const SYSTEM_USAGE: &str =
                "usage: georep system {execute gsec_create | mount <LABEL> <ARG>... | umount <COOKIE> [lazy]}";
            match expect(it.next(), &["execute", "mount", "umount"], SYSTEM_USAGE)? {
                "mount" => {
                    let label = it.next().ok_or_else(|| GrammarError::Usage(SYSTEM_USAGE.into()))?.clone();
                    let args: Vec<String> = it.cloned().collect();
                    if args.is_empty() {
                        return Err(GrammarError::Usage(SYSTEM_USAGE.into()));
                    }
                    return Ok(Command::Mount { label, args });
                }
                "umount" => {
                    let path = it.next().ok_or_else(|| GrammarError::Usage(SYSTEM_USAGE.into()))?.clone();
                    let lazy = match it.next() {
                        None => false,
                        Some(w) if w == "lazy" => true,
                        Some(w) => return Err(GrammarError::Usage(format!("unexpected {w:?}; {SYSTEM_USAGE}"))),
                    };
                    end(&mut it)?;
                    return Ok(Command::Umount { path, lazy });
                }
                _ => {}
            }
            expect(it.next(), &["gsec_create"], "usage: georep system execute gsec_create")?;
            end(&mut it)?;
            return Ok(Command::GsecCreate);
        }
        "sshkey" => {
            expect(it.next(), &["generate"], "usage: georep sshkey generate")?;
            end(&mut it)?;
            return Ok(Command::GsecCreate);
        }
        _ => {}
    }
    let sub =
        expect(it.next(), &["geo-replication", "create", "start", "stop", "delete", "info", "list"], VOLUME_USAGE)?;
    if sub != "geo-replication" {
        return parse_volume(sub, it.as_slice()).map(Command::Volume);
    }
    let rest: Vec<&String> = it.collect();
    // `status` may come first, second (after PVOL) or third (after PVOL SECONDARY).
    let verbs = [
        "create", "start", "stop", "pause", "resume", "delete", "config", "status", "failover", "failback", "restore",
        "verify", "failures",
    ];
    let is_status = |w: &str| matches!(word(w, &verbs), Ok(Some("status")));
    let at = (0..rest.len().min(3)).find(|&i| is_status(rest[i]));
    if let Some(i) = at {
        let primary = if i >= 1 { Some(rest[0].to_string()) } else { None };
        let secondary = if i == 2 { Some(SecondaryUrl::parse(rest[1])?) } else { None };
        let detail = match &rest[i + 1..] {
            [] => false,
            [d] if word(d, &["detail"])? == Some("detail") => true,
            _ => return Err(GrammarError::Usage("usage: ... status [detail]".into())),
        };
        return Ok(Command::Status { primary, secondary, detail });
    }
    let [primary, secondary, cmd, opts @ ..] = rest.as_slice() else {
        return Err(GrammarError::Usage(USAGE.into()));
    };
    if !valid_word(primary) {
        return Err(GrammarError::Usage(format!("invalid volume name {primary:?}")));
    }
    let secondary = SecondaryUrl::parse(secondary)?;
    let verb = word(cmd, &verbs)?.ok_or_else(|| GrammarError::Usage(format!("unknown command {cmd:?}; {USAGE}")))?;
    let force_only = |opts: &[&String]| -> Result<bool, GrammarError> {
        match opts {
            [] => Ok(false),
            [f] if word(f, &["force"])? == Some("force") => Ok(true),
            _ => Err(GrammarError::Usage(format!("usage: ... {verb} [force]"))),
        }
    };
    let cmd = match verb {
        "create" => {
            let (mut ssh_port, mut push_pem, mut no_verify, mut force) = (None, false, false, false);
            let mut o = opts.iter();
            while let Some(w) = o.next() {
                match word(w, &["ssh-port", "push-pem", "no-verify", "force"])? {
                    Some("ssh-port") => {
                        let v = o.next().ok_or_else(|| GrammarError::Port(String::new()))?;
                        let p: u16 =
                            v.parse().ok().filter(|p| *p > 0).ok_or_else(|| GrammarError::Port(v.to_string()))?;
                        ssh_port = Some(p);
                    }
                    Some("push-pem") => push_pem = true,
                    Some("no-verify") => no_verify = true,
                    Some("force") => force = true,
                    _ => {
                        return Err(GrammarError::Usage(format!(
                            "unexpected {w:?}; usage: ... create [ssh-port <N>] [push-pem|no-verify] [force]"
                        )));
                    }
                }
            }
            if push_pem && no_verify {
                return Err(GrammarError::Usage("push-pem and no-verify cannot be used together".into()));
            }
            SessionCmd::Create { ssh_port, push_pem, no_verify, force }
        }
        "start" => SessionCmd::Start { force: force_only(opts)? },
        "stop" => SessionCmd::Stop { force: force_only(opts)? },
        "pause" => SessionCmd::Pause { force: force_only(opts)? },
        "resume" => SessionCmd::Resume { force: force_only(opts)? },
        "failback" => match opts {
            [] => SessionCmd::Failback { keep_conflicts: false },
            [w] if word(w, &["keep-conflicts"])? == Some("keep-conflicts") => {
                SessionCmd::Failback { keep_conflicts: true }
            }
            _ => return Err(GrammarError::Usage("usage: ... failback [keep-conflicts]".into())),
        },
        "failover" | "restore" if !opts.is_empty() => {
            return Err(GrammarError::Usage(format!("usage: ... {verb}")));
        }
        "verify" => {
            let (mut checksum, mut full) = (false, false);
            for w in opts {
                match w.trim_start_matches("--") {
                    "checksum" => checksum = true,
                    "full" => full = true,
                    _ => {
                        return Err(GrammarError::Usage(format!(
                            "unexpected {w:?}; usage: ... verify [--checksum] [--full]"
                        )));
                    }
                }
            }
            SessionCmd::Verify { checksum, full }
        }
        "failover" => SessionCmd::Failover,
        "restore" => SessionCmd::Restore,
        "failures" => match opts {
            [] => SessionCmd::Failures { retry: false, gfid: None },
            [r] if word(r, &["retry"])? == Some("retry") => SessionCmd::Failures { retry: true, gfid: None },
            [r, g] if word(r, &["retry"])? == Some("retry") => match g.parse::<crate::types::Gfid>() {
                Ok(gfid) => SessionCmd::Failures { retry: true, gfid: Some(gfid.to_string()) },
                Err(_) => return Err(GrammarError::Usage(format!("invalid GFID {g:?}"))),
            },
            _ => return Err(GrammarError::Usage("usage: ... failures [retry [<GFID>]]".into())),
        },
        "delete" => SessionCmd::Delete {
            reset_sync_time: match opts {
                [] => false,
                [w] if word(w, &["reset-sync-time"])? == Some("reset-sync-time") => true,
                _ => return Err(GrammarError::Usage("usage: ... delete [reset-sync-time]".into())),
            },
        },
        "config" => SessionCmd::Config(match opts {
            [] => ConfigAction::GetAll,
            [d] if *d == "--describe" => ConfigAction::Describe,
            [k, n] if *k == "checkpoint" && *n == "now" => ConfigAction::CheckpointNow,
            [k] if k.starts_with('!') => ConfigAction::Reset(k[1..].to_string()),
            [k] => ConfigAction::Get(k.to_string()),
            // Several words make one value, joined with spaces, as GlusterFS does.
            [k, v @ ..] => ConfigAction::Set(k.to_string(), v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        }),
        _ => return Err(GrammarError::Usage(USAGE.into())),
    };
    Ok(Command::Session { primary: primary.to_string(), secondary, cmd })
}

fn end(it: &mut std::slice::Iter<'_, String>) -> Result<(), GrammarError> {
    match it.next() {
        None => Ok(()),
        Some(w) => Err(GrammarError::Usage(format!("unexpected {w:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_has_its_synopsis() {
        for verb in [
            "create", "start", "stop", "pause", "resume", "delete", "config", "status", "failover", "failback",
            "restore", "verify", "failures",
        ] {
            assert!(
                SYNOPSES.iter().any(|(s, _)| s.starts_with("volume geo-replication")
                    && s.split(' ').any(|w| w.split('|').any(|w| w == verb))),
                "{verb}"
            );
        }
        for verb in ["create", "start", "stop", "delete", "info", "list"] {
            assert!(
                SYNOPSES.iter().any(
                    |(s, _)| s.starts_with("volume ") && s.split(' ').nth(1).unwrap().split('|').any(|w| w == verb)
                ),
                "{verb}"
            );
        }
    }

    fn p(s: &str) -> Result<Command, GrammarError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn sessions_and_abbreviations() {
        let url = SecondaryUrl { user: Some("geoaccount".into()), host: "snode".into(), volume: "svol".into() };
        assert_eq!(
            p("volume geo-replication pvol geoaccount@snode::svol create push-pem").unwrap(),
            Command::Session {
                primary: "pvol".into(),
                secondary: url.clone(),
                cmd: SessionCmd::Create { ssh_port: None, push_pem: true, no_verify: false, force: false }
            }
        );
        assert_eq!(
            p("vol geo-rep pvol geoaccount@snode::svol star f").unwrap(),
            Command::Session { primary: "pvol".into(), secondary: url.clone(), cmd: SessionCmd::Start { force: true } }
        );
        assert!(matches!(p("vol geo pvol snode::svol st"), Err(GrammarError::Ambiguous(..))));
        assert_eq!(
            p("volume geo-replication pvol snode::svol create ssh-port 2222 no-verify force").unwrap(),
            Command::Session {
                primary: "pvol".into(),
                secondary: SecondaryUrl { user: None, host: "snode".into(), volume: "svol".into() },
                cmd: SessionCmd::Create { ssh_port: Some(2222), push_pem: false, no_verify: true, force: true }
            }
        );
        assert_eq!(
            p("volume geo-replication pvol snode::svol delete reset-sync-time").unwrap(),
            Command::Session {
                primary: "pvol".into(),
                secondary: SecondaryUrl { user: None, host: "snode".into(), volume: "svol".into() },
                cmd: SessionCmd::Delete { reset_sync_time: true }
            }
        );
        let failures = |w: &str| match p(&format!("volume geo-replication pvol snode::svol {w}")) {
            Ok(Command::Session { cmd: SessionCmd::Failures { retry, gfid }, .. }) => Ok((retry, gfid)),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(failures("failures"), Ok((false, None)));
        assert_eq!(failures("failu retry"), Ok((true, None)));
        let g = "f6fc2573-c394-407a-a647-84284fd6cb97";
        assert_eq!(failures(&format!("failures retry {g}")), Ok((true, Some(g.to_string()))));
        assert!(failures("failures retry nope").is_err());
        assert!(failures("failures again").is_err());
        assert_eq!(p("system execute gsec_create").unwrap(), Command::GsecCreate);
        assert_eq!(p("sshkey generate").unwrap(), Command::GsecCreate);
        assert_eq!(
            p("system mount geoaccount user-map-root=geoaccount aux-gfid-mount volfile-id=svol").unwrap(),
            Command::Mount {
                label: "geoaccount".into(),
                args: vec!["user-map-root=geoaccount".into(), "aux-gfid-mount".into(), "volfile-id=svol".into()]
            }
        );
        assert_eq!(
            p("system umount /m/mb_hive/mntAB lazy").unwrap(),
            Command::Umount { path: "/m/mb_hive/mntAB".into(), lazy: true }
        );
        assert!(p("system mount geoaccount").is_err());
        assert!(p("system umount /x soon").is_err());
    }

    #[test]
    fn volume_commands() {
        assert_eq!(
            p("volume create pvol node1:/bricks/p").unwrap(),
            Command::Volume(VolumeCmd::Create {
                name: "pvol".into(),
                replica: 1,
                bricks: vec![("node1".into(), "/bricks/p".into())],
                force: false
            })
        );
        assert_eq!(
            p("vol cr pvol replica 2 n1:/b n2:/b force").unwrap(),
            Command::Volume(VolumeCmd::Create {
                name: "pvol".into(),
                replica: 2,
                bricks: vec![("n1".into(), "/b".into()), ("n2".into(), "/b".into())],
                force: true
            })
        );
        assert!(p("volume create pvol replica 2 n1:/b").is_err());
        assert!(p("volume create pvol n1:relative").is_err());
        assert!(p("volume create pvol").is_err());
        assert!(p("volume create p/vol n1:/b").is_err());
        assert_eq!(
            p("volume star pvol").unwrap(),
            Command::Volume(VolumeCmd::Start { name: "pvol".into(), force: false })
        );
        assert_eq!(
            p("volume stop pvol force").unwrap(),
            Command::Volume(VolumeCmd::Stop { name: "pvol".into(), force: true })
        );
        assert!(matches!(p("volume st pvol"), Err(GrammarError::Ambiguous(..))));
        assert_eq!(p("volume info").unwrap(), Command::Volume(VolumeCmd::Info { name: None }));
        assert_eq!(p("volume list").unwrap(), Command::Volume(VolumeCmd::List));
        assert!(p("volume delete pvol now").is_err());
    }

    #[test]
    fn status_forms() {
        assert_eq!(
            p("volume geo-replication status").unwrap(),
            Command::Status { primary: None, secondary: None, detail: false }
        );
        assert_eq!(
            p("volume geo-replication pvol status detail").unwrap(),
            Command::Status { primary: Some("pvol".into()), secondary: None, detail: true }
        );
        assert_eq!(
            p("volume geo-replication pvol snode::svol status").unwrap(),
            Command::Status {
                primary: Some("pvol".into()),
                secondary: Some(SecondaryUrl { user: None, host: "snode".into(), volume: "svol".into() }),
                detail: false
            }
        );
    }

    #[test]
    fn config_forms() {
        let cfg = |s: &str| match p(&format!("volume geo-replication pvol snode::svol config {s}")).unwrap() {
            Command::Session { cmd: SessionCmd::Config(a), .. } => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(cfg(""), ConfigAction::GetAll);
        assert_eq!(cfg("sync-jobs"), ConfigAction::Get("sync-jobs".into()));
        assert_eq!(cfg("sync_jobs 5"), ConfigAction::Set("sync_jobs".into(), "5".into()));
        assert_eq!(cfg("!sync-jobs"), ConfigAction::Reset("sync-jobs".into()));
        assert_eq!(cfg("checkpoint now"), ConfigAction::CheckpointNow);
        assert_eq!(cfg("rsync-options -W --inplace"), ConfigAction::Set("rsync-options".into(), "-W --inplace".into()));
    }

    #[test]
    fn bad_input_one_clear_error() {
        for url in ["snode:svol", "snode:::svol", "snode::", "::svol", "a@@b::v", "snode::sv/ol", "s node::svol"] {
            assert!(
                matches!(p(&format!("volume geo-replication pvol {url} start")), Err(GrammarError::Url(_))),
                "{url}"
            );
        }
        for port in ["-22", "abc", "6875943", "4.5", "22a", "0"] {
            assert!(
                matches!(
                    p(&format!("volume geo-replication pvol snode::svol create ssh-port {port}")),
                    Err(GrammarError::Port(_))
                ),
                "{port}"
            );
        }
        assert!(p("volume geo-replication pvol snode::svol create push-pem no-verify").is_err());
        assert!(p("volume geo-replication pvol snode::svol frobnicate").is_err());
        assert!(p("volume geo-replication pvol snode::svol start now").is_err());
        assert!(p("").is_err());
    }
}
