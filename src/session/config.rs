//! Session config: the keys of SPEC section 6 with GlusterFS's defaults where GlusterFS has the
//! key, their validation, and GlusterFS's get/set/reset behaviour (names with `-` or `_`,
//! `get-all` sorted with underscores, a set equal to the current value is no change, every
//! change but `checkpoint` restarts a running session).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Bool,
    /// An integer in an inclusive range.
    Int(i64, i64),
    Choice(&'static [&'static str]),
    /// A log level, case-insensitive, stored upper-case.
    Level,
    /// Seconds, fractions allowed, in an inclusive range.
    Secs(f64, f64),
    /// A unix time (not in 1970), `now`, or 0 (none).
    UnixTime,
    /// ssh(1) options, as far as georep's SSH client honours them (`SshOptions`).
    SshOptions,
    Str,
}

struct Key {
    name: &'static str,
    default: &'static str,
    kind: Kind,
    /// A change restarts a running session's workers.
    restart: bool,
    /// One line for the operator.
    description: &'static str,
}

const LEVELS: &[&str] = &["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"];

const KEYS: &[Key] = &[
    Key {
        name: "bandwidth-limit",
        default: "0",
        kind: Kind::Int(0, i64::MAX),
        restart: true,
        description: "bytes a second the session sends at most, all its streams together (0: no limit)",
    },
    Key {
        name: "change-detector",
        default: "changelog",
        kind: Kind::Choice(&["changelog", "xsync"]),
        restart: true,
        description: "changelog: follow the changelogs; xsync: a Hybrid crawl every change-interval",
    },
    Key {
        name: "change-interval",
        default: "1",
        kind: Kind::Secs(0.05, 3600.0),
        restart: true,
        description: "seconds between crawls with change-detector xsync",
    },
    Key {
        name: "changelog-batch-size",
        default: "727040",
        kind: Kind::Int(4096, 1 << 40),
        restart: true,
        description: "bytes of changelog (8 KiB each) one batch takes at most",
    },
    Key {
        name: "checkpoint",
        default: "0",
        kind: Kind::UnixTime,
        restart: false,
        description: "a unix time (or now): complete once everything recorded before it is on the secondary",
    },
    Key {
        name: "compression",
        default: "3",
        kind: Kind::Int(0, 19),
        restart: true,
        description: "zstd level of what travels (0: none)",
    },
    Key {
        name: "connection-timeout",
        default: "60",
        kind: Kind::Int(1, 86400),
        restart: true,
        description: "seconds to reach the secondary's sshd",
    },
    Key {
        name: "gfid-conflict-resolution",
        default: "true",
        kind: Kind::Bool,
        restart: true,
        description: "settle a name that holds another GFID on the secondary, the primary being the truth",
    },
    Key {
        name: "ignore-deletes",
        default: "false",
        kind: Kind::Bool,
        restart: true,
        description: "the secondary keeps what the primary removes",
    },
    Key {
        name: "lag-threshold",
        default: "300",
        kind: Kind::Int(0, 86400 * 30),
        restart: false,
        description: "seconds of lag above which the LAG_HIGH event is sent, LAG_OK when back under (0: never)",
    },
    Key {
        name: "log-file",
        default: "",
        kind: Kind::Str,
        restart: true,
        description: "the worker's log file (empty: the session's log directory)",
    },
    Key { name: "log-level", default: "INFO", kind: Kind::Level, restart: true, description: "the worker's log level" },
    Key {
        name: "max-rsync-retries",
        default: "10",
        kind: Kind::Int(1, 1000),
        restart: true,
        description: "tries of a change the secondary could not apply before it counts as a failure",
    },
    Key {
        name: "rollover-time",
        default: "0.5",
        kind: Kind::Secs(0.05, 3600.0),
        restart: true,
        description: "seconds between changelog publications the session expects",
    },
    Key {
        name: "rsync-options",
        default: "",
        kind: Kind::Str,
        restart: true,
        description: "kept for GlusterFS's scripts (georep's delta transfer is its own)",
    },
    Key {
        name: "secondary-timeout",
        default: "120",
        kind: Kind::Int(0, 86400),
        restart: true,
        description: "seconds an answer of the secondary may take (0: no limit)",
    },
    Key {
        name: "ssh-options",
        default: "",
        kind: Kind::SshOptions,
        restart: true,
        description: "ssh(1) options georep's SSH client honours (-i, -o Port, ServerAliveInterval, ...)",
    },
    Key {
        name: "ssh-port",
        default: "22",
        kind: Kind::Int(1, 65535),
        restart: true,
        description: "the secondary's sshd port",
    },
    Key { name: "sync-acls", default: "true", kind: Kind::Bool, restart: true, description: "replicate POSIX ACLs" },
    Key {
        name: "sync-jobs",
        default: "3",
        kind: Kind::Int(1, 100),
        restart: true,
        description: "parallel data streams per session",
    },
    Key {
        name: "sync-method",
        default: "rsync",
        kind: Kind::Choice(&["rsync", "tarssh"]),
        restart: true,
        description: "rsync: delta transfer of files the secondary has; tarssh: whole files",
    },
    Key {
        name: "sync-xattrs",
        default: "true",
        kind: Kind::Bool,
        restart: true,
        description: "replicate extended attributes (user, trusted, security)",
    },
];

/// An option as the API shows it: its value, default, allowed values and what it does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OptionInfo {
    pub name: String,
    pub value: String,
    pub default: String,
    /// The values it takes, in words (`true|false`, `1..100`, `rsync|tarssh`, ...).
    pub allowed: String,
    pub description: String,
}

impl Kind {
    fn allowed(self) -> String {
        match self {
            Kind::Bool => "true|false".into(),
            Kind::Int(lo, hi) if hi == i64::MAX => format!("{lo}.."),
            Kind::Int(lo, hi) => format!("{lo}..{hi}"),
            Kind::Choice(c) => c.join("|"),
            Kind::Level => LEVELS.join("|"),
            Kind::Secs(lo, hi) => format!("{lo}..{hi} seconds"),
            Kind::UnixTime => "a unix time, now, or 0".into(),
            Kind::SshOptions => "ssh options".into(),
            Kind::Str => "text".into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid config name {0:?}")]
    UnknownKey(String),
    #[error("invalid config value {name}={value:?}: {why}")]
    InvalidValue { name: String, value: String, why: String },
}

fn key(name: &str) -> Result<&'static Key, ConfigError> {
    let n = name.replace('_', "-");
    KEYS.iter().find(|k| k.name == n).ok_or_else(|| ConfigError::UnknownKey(name.to_string()))
}

/// Validates `value` for key `name`; returns its canonical form.
pub fn validate(name: &str, value: &str, now_unix: u64) -> Result<String, ConfigError> {
    let k = key(name)?;
    let bad = |why: String| ConfigError::InvalidValue { name: k.name.to_string(), value: value.to_string(), why };
    match k.kind {
        Kind::Bool => match value {
            "true" | "false" => Ok(value.to_string()),
            _ => Err(bad("expected true or false".into())),
        },
        Kind::Int(lo, hi) => {
            let v: i64 = value.parse().map_err(|_| bad("expected a whole number".into()))?;
            if v < lo || v > hi {
                return Err(bad(format!("expected {lo} to {hi}")));
            }
            Ok(v.to_string())
        }
        Kind::Choice(choices) => {
            if choices.contains(&value) {
                Ok(value.to_string())
            } else {
                Err(bad(format!("expected one of {}", choices.join(", "))))
            }
        }
        Kind::Level => {
            let up = value.to_ascii_uppercase();
            if LEVELS.contains(&up.as_str()) {
                Ok(up)
            } else {
                Err(bad(format!("expected one of {}", LEVELS.join(", "))))
            }
        }
        Kind::Secs(lo, hi) => {
            let v: f64 = value.parse().map_err(|_| bad("expected a number of seconds".into()))?;
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(bad(format!("expected {lo} to {hi} seconds")));
            }
            Ok(value.to_string())
        }
        Kind::UnixTime => {
            if value == "now" {
                return Ok(now_unix.to_string());
            }
            let v: u64 = value.parse().map_err(|_| bad("expected a unix time or now".into()))?;
            // GlusterFS refuses times in 1970 (a unit mistake); 0 clears the checkpoint.
            if v != 0 && v < 31_536_000 {
                return Err(bad("a time in 1970 is not a checkpoint".into()));
            }
            Ok(v.to_string())
        }
        Kind::SshOptions => SshOptions::parse(value).map(|_| value.trim().to_string()).map_err(bad),
        Kind::Str => Ok(value.to_string()),
    }
}

/// A session's config: GlusterFS defaults plus what was set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionConfig {
    /// Set values by canonical (`-`) name.
    pub set: BTreeMap<String, String>,
}

/// What a `set` or `reset` changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// Changed; the session's workers must restart if it runs.
    Restart,
    /// Changed; no restart needed (checkpoint).
    Live,
}

impl SessionConfig {
    pub fn get(&self, name: &str) -> Result<String, ConfigError> {
        let k = key(name)?;
        Ok(self.set.get(k.name).cloned().unwrap_or_else(|| k.default.to_string()))
    }

    /// Every option as `(name_with_underscores, value)`, sorted.
    pub fn get_all(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = KEYS.iter().map(|k| (k.name.replace('-', "_"), self.get(k.name).unwrap())).collect();
        v.sort();
        v
    }

    /// Every option with its value, default, allowed values and description, sorted.
    pub fn describe(&self) -> Vec<OptionInfo> {
        let mut v: Vec<OptionInfo> = KEYS
            .iter()
            .map(|k| OptionInfo {
                name: k.name.to_string(),
                value: self.get(k.name).unwrap(),
                default: k.default.to_string(),
                allowed: k.kind.allowed(),
                description: k.description.to_string(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn set(&mut self, name: &str, value: &str, now_unix: u64) -> Result<Change, ConfigError> {
        let k = key(name)?;
        let v = validate(name, value, now_unix)?;
        if self.get(k.name)? == v {
            return Ok(Change::Unchanged);
        }
        self.set.insert(k.name.to_string(), v);
        Ok(if k.restart { Change::Restart } else { Change::Live })
    }

    pub fn reset(&mut self, name: &str) -> Result<Change, ConfigError> {
        let k = key(name)?;
        let before = self.get(k.name)?;
        self.set.remove(k.name);
        if before == k.default {
            return Ok(Change::Unchanged);
        }
        Ok(if k.restart { Change::Restart } else { Change::Live })
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).map(|v| v == "true").unwrap_or(false)
    }

    pub fn get_int(&self, name: &str) -> i64 {
        self.get(name).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// `StrictHostKeyChecking`: what to do with a host key not in known_hosts or changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (the key is recorded at `create`).
    #[default]
    Yes,
    /// Record an unknown key, refuse a changed one.
    AcceptNew,
    /// Accept any key (and record it): no protection against a man in the middle.
    No,
}

/// The ssh(1) options (`ssh-options`) georep's SSH client honours; any other is refused by
/// name when set, rather than silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshOptions {
    /// `-i FILE`, `-o IdentityFile=FILE`: the key instead of the session key.
    pub identity: Option<String>,
    /// `-p PORT`, `-o Port=PORT` (`ssh-port` otherwise).
    pub port: Option<u16>,
    /// `-o ConnectTimeout=SECS` (`connection-timeout` otherwise).
    pub connect_timeout: Option<u64>,
    /// `-o ServerAliveInterval=SECS` (15 otherwise; 0 turns keepalives off).
    pub alive_interval: Option<u64>,
    /// `-o ServerAliveCountMax=N` (3 otherwise).
    pub alive_count: Option<usize>,
    /// `-o StrictHostKeyChecking=yes|accept-new|no`.
    pub host_keys: HostKeyPolicy,
    /// `-o UserKnownHostsFile=FILE` (the state dir's known_hosts otherwise).
    pub known_hosts: Option<String>,
}

impl SshOptions {
    pub fn parse(s: &str) -> Result<SshOptions, String> {
        let mut o = SshOptions::default();
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            let (flag, inline) = match w.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => (&rest[..1], &rest[1..]),
                _ => return Err(format!("{w:?} is not an ssh option")),
            };
            let mut arg = || -> Result<String, String> {
                if !inline.is_empty() {
                    return Ok(inline.to_string());
                }
                words.next().map(str::to_string).ok_or_else(|| format!("-{flag} needs a value"))
            };
            match flag {
                "i" => o.identity = Some(arg()?),
                "p" => o.port = Some(num(&arg()?, "-p")?),
                "o" => {
                    let kv = arg()?;
                    let (k, v) = kv.split_once('=').ok_or_else(|| format!("-o {kv:?}: expected KEY=VALUE"))?;
                    match k.to_ascii_lowercase().as_str() {
                        "identityfile" => o.identity = Some(v.to_string()),
                        "port" => o.port = Some(num(v, k)?),
                        "connecttimeout" => o.connect_timeout = Some(num(v, k)?),
                        "serveraliveinterval" => o.alive_interval = Some(num(v, k)?),
                        "serveralivecountmax" => o.alive_count = Some(num(v, k)?),
                        "userknownhostsfile" => o.known_hosts = Some(v.to_string()),
                        "stricthostkeychecking" => {
                            o.host_keys = match v.to_ascii_lowercase().as_str() {
                                "yes" => HostKeyPolicy::Yes,
                                "accept-new" => HostKeyPolicy::AcceptNew,
                                "no" | "off" => HostKeyPolicy::No,
                                _ => return Err(format!("StrictHostKeyChecking={v}: expected yes, accept-new or no")),
                            }
                        }
                        // Meaningless for georep's client (it never asks a password, its
                        // transport does its own compression): accepted, as GlusterFS's
                        // default ssh-options carry them.
                        "passwordauthentication"
                        | "batchmode"
                        | "compression"
                        | "controlmaster"
                        | "controlpath"
                        | "controlpersist"
                        | "loglevel" => {}
                        _ => return Err(format!("-o {k}: not an option georep's SSH client honours")),
                    }
                }
                _ => return Err(format!("-{flag}: not an option georep's SSH client honours")),
            }
        }
        Ok(o)
    }
}

fn num<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{what} {v:?}: expected a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_names_and_get_all() {
        let c = SessionConfig::default();
        assert_eq!(c.get("sync-jobs").unwrap(), "3");
        assert_eq!(c.get("sync_jobs").unwrap(), "3");
        assert_eq!(c.get("ignore-deletes").unwrap(), "false");
        assert_eq!(c.get("ssh-port").unwrap(), "22");
        assert_eq!(c.get("secondary-timeout").unwrap(), "120");
        assert_eq!(c.get("max-rsync-retries").unwrap(), "10");
        assert_eq!(c.get("sync-method").unwrap(), "rsync");
        let all = c.get_all();
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(all.iter().all(|(n, _)| !n.contains('-')));
        assert!(all.contains(&("sync_jobs".into(), "3".into())));
        assert_eq!(c.get("no-such-key"), Err(ConfigError::UnknownKey("no-such-key".into())));
    }

    #[test]
    fn validation_as_glusterfs_tests_it() {
        let mut c = SessionConfig::default();
        for bad in ["-22", "abc", "6875943", "4.5", "22a", ""] {
            assert!(matches!(c.set("ssh-port", bad, 0), Err(ConfigError::InvalidValue { .. })), "{bad}");
        }
        assert_eq!(c.get("ssh-port").unwrap(), "22", "nothing changes on a refusal");
        assert_eq!(c.set("ssh-port", "2222", 0), Ok(Change::Restart));
        assert_eq!(c.set("ssh_port", "2222", 0), Ok(Change::Unchanged));
        assert!(c.set("sync-jobs", "0", 0).is_err() && c.set("sync-jobs", "101", 0).is_err());
        assert_eq!(c.set("sync-jobs", "100", 0), Ok(Change::Restart));
        assert!(c.set("ignore-deletes", "yes", 0).is_err());
        assert_eq!(c.set("ignore-deletes", "true", 0), Ok(Change::Restart));
        assert!(c.set("change-detector", "inotify", 0).is_err());
        assert_eq!(c.set("log-level", "debug", 0), Ok(Change::Restart));
        assert_eq!(c.get("log-level").unwrap(), "DEBUG");
        assert_eq!(c.set("checkpoint", "now", 1_795_000_000), Ok(Change::Live));
        assert_eq!(c.get("checkpoint").unwrap(), "1795000000");
        assert!(c.set("checkpoint", "12345", 0).is_err());
        assert_eq!(c.reset("sync_jobs"), Ok(Change::Restart));
        assert_eq!(c.reset("sync_jobs"), Ok(Change::Unchanged));
        assert_eq!(c.get_int("sync-jobs"), 3);
    }

    #[test]
    fn ssh_options() {
        let o = SshOptions::parse(
            "-oPasswordAuthentication=no -o StrictHostKeyChecking=no -i /k -p2222 -o ServerAliveInterval=5 -oConnectTimeout=7",
        )
        .unwrap();
        assert_eq!(o.identity.as_deref(), Some("/k"));
        assert_eq!((o.port, o.connect_timeout, o.alive_interval), (Some(2222), Some(7), Some(5)));
        assert_eq!(o.host_keys, HostKeyPolicy::No);
        assert_eq!(SshOptions::parse("").unwrap(), SshOptions::default());
        for bad in ["-L 1:2:3", "-o ProxyCommand=nc", "-p x", "-i", "foo", "-o Port", "-o StrictHostKeyChecking=ask"] {
            assert!(SshOptions::parse(bad).is_err(), "{bad}");
        }
        let mut c = SessionConfig::default();
        assert!(c.set("ssh-options", "-R 80:localhost:80", 0).is_err());
        assert_eq!(c.get("ssh-options").unwrap(), "");
        assert_eq!(c.set("ssh-options", "-o ServerAliveInterval=5", 0), Ok(Change::Restart));
    }
}
