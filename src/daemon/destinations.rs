//! Destinations (the oVirt design's "Geo-Replication Destination"): the secondary hosts
//! attached to this cluster, each with the SSH host key pinned when it was added, the user
//! sessions reach it as, and what its last test found. `georep destination
//! add|list|test|re-establish|remove`.
//!
//! The pin is the line of `<state>/geo-replication/known_hosts` that every session to the host
//! checks (`sync::ssh`): a destination and its sessions trust one key, and a changed key fails
//! both, until `re-establish --accept <new fingerprint>` replaces it. A session created
//! against a host that has no destination record makes one.

use std::net::ToSocketAddrs;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Daemon;
use super::control::Response;
use super::sessions;
use super::store::StoreExt;
use crate::proto::RemoteVolume;
use crate::session::config::SessionConfig;
use crate::session::grammar::SecondaryUrl;
use crate::sync::link::{Link, Transport};
use crate::sync::ssh::{self, SshError};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Destination {
    pub host: String,
    pub port: u16,
    /// The user sessions reach it as.
    pub user: String,
    /// The pinned host key's SHA-256 fingerprint (`SHA256:...`, as `ssh-keygen -l` shows).
    pub fingerprint: String,
    /// The pinned host key itself (OpenSSH's `ssh-ed25519 AAAA...`), which every node of the
    /// cluster pins in its `known_hosts` (`sync_pins`); empty in records of georep 0.1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_key: String,
    pub added_ms: u64,
    /// This cluster's session keys were installed there (`--push-keys`).
    #[serde(default)]
    pub keys_pushed: bool,
    #[serde(default)]
    pub last_test: Option<TestReport>,
}

/// One stage of a test: reachable, host key, authentication, georep, volumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stage {
    pub stage: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestReport {
    pub at_ms: u64,
    /// Every stage passed.
    pub ok: bool,
    /// The stages run, in order, up to the first that failed.
    pub stages: Vec<Stage>,
    /// The volumes the destination's user may receive for (when the test got that far).
    #[serde(default)]
    pub volumes: Vec<RemoteVolume>,
}

/// A destination as listed: its record, its connection status in words, and the sessions
/// that use it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestinationView {
    #[serde(flatten)]
    pub destination: Destination,
    /// `Connected` (the last test passed), `Failed: <stage>: <why>`, or `Not tested`.
    pub status: String,
    /// The sessions to this host (`<primary> -> <secondary>`).
    pub sessions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DestinationCmd {
    Add {
        host: String,
        port: Option<u16>,
        user: Option<String>,
        push_keys: bool,
    },
    List,
    Test {
        host: String,
    },
    /// Accept a changed host key (only the one whose fingerprint is given), and/or push the
    /// session keys again.
    ReEstablish {
        host: String,
        accept: Option<String>,
        push_keys: bool,
    },
    Remove {
        host: String,
        force: bool,
    },
}

fn key(host: &str) -> String {
    format!("destinations/{host}")
}

fn get(d: &Daemon, host: &str) -> anyhow::Result<Destination> {
    match d.store.get_json(&key(host))? {
        Some(x) => Ok(x),
        None => crate::refuse!(NotFound, "Destination {host} does not exist"),
    }
}

fn check_host(host: &str) -> anyhow::Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
        && !host.starts_with(['-', '.']);
    if !ok {
        crate::refuse!(BadInput, "host: {host:?} is not a host name or address");
    }
    Ok(())
}

fn check_user(user: &str) -> anyhow::Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !user.starts_with('-');
    if !ok {
        crate::refuse!(BadInput, "user: {user:?} is not a user name");
    }
    Ok(())
}

/// How the sessions reach the destination: its user and port, the session key.
fn transport(d: &Daemon, dest: &Destination) -> anyhow::Result<Transport> {
    let mut config = SessionConfig::default();
    config.set("ssh-port", &dest.port.to_string(), 0)?;
    config.set("connection-timeout", &TIMEOUT.as_secs().to_string(), 0)?;
    let user = (dest.user != "root").then(|| dest.user.clone());
    sessions::transport(d, &SecondaryUrl { user, host: dest.host.clone(), volume: String::new() }, &config)
}

/// Installs the session keys for the destination's user (as `create push-pem` does).
fn push_keys(d: &Daemon, dest: &Destination) -> anyhow::Result<()> {
    if !d.dirs.common_secret_pub().exists() {
        crate::refuse!(
            Refused,
            "{} required to push the keys is not present. Please run 'georep system execute gsec_create'",
            d.dirs.common_secret_pub().display()
        );
    }
    match transport(d, dest)? {
        Transport::Ssh { target, .. } => super::keys::push_pem(d, &target),
        Transport::Local { .. } => Ok(()),
    }
}

/// The host key shown now, and whether it is the pinned one: `Ok(true)` pinned, `Ok(false)`
/// not pinned at all, `Err(line)` another key is pinned.
fn pin_state(d: &Daemon, host: &str, port: u16, k: &russh::keys::PublicKey) -> anyhow::Result<Result<bool, usize>> {
    match russh::keys::check_known_hosts_path(host, port, k, d.dirs.known_hosts()) {
        Ok(known) => Ok(Ok(known)),
        Err(russh::keys::Error::KeyChanged { line }) => Ok(Err(line)),
        Err(e) => Err(e.into()),
    }
}

/// A host key as OpenSSH writes it (`ssh-ed25519 AAAA...`, no comment).
fn openssh(k: &russh::keys::PublicKey) -> String {
    k.to_openssh().unwrap_or_default()
}

/// At each pass on a shared store: the host key each destination has pinned in the store is
/// pinned in this node's `known_hosts` too, so that a worker that moves to this node (a
/// failover) trusts the key its session was created with, and a key re-established on
/// another node replaces the old one here.
pub fn sync_pins(d: &Daemon) -> anyhow::Result<()> {
    for dest in d.store.list_json::<Destination>("destinations/")? {
        let Ok(k) = russh::keys::PublicKey::from_openssh(&dest.host_key) else { continue };
        if ssh::fingerprint(&k) != dest.fingerprint {
            continue;
        }
        match pin_state(d, &dest.host, dest.port, &k)? {
            Ok(true) => {}
            Ok(false) => pin(d, &dest.host, dest.port, &k)?,
            Err(_) => {
                log::info!(
                    "destination {}: the host key {} pinned in the store replaces this node's",
                    dest.host,
                    dest.fingerprint
                );
                unpin(d, &dest.host, dest.port)?;
                pin(d, &dest.host, dest.port, &k)?;
            }
        }
    }
    Ok(())
}

/// Forgets the keys pinned for `host:port`.
fn unpin(d: &Daemon, host: &str, port: u16) -> anyhow::Result<()> {
    let path = d.dirs.known_hosts();
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let name = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
    let kept: String = text
        .lines()
        .filter(|l| !l.split(' ').next().is_some_and(|hosts| hosts.split(',').any(|h| h == name)))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::durable::replace(&path, kept.as_bytes())?;
    Ok(())
}

fn pin(d: &Daemon, host: &str, port: u16, k: &russh::keys::PublicKey) -> anyhow::Result<()> {
    std::fs::create_dir_all(d.dirs.known_hosts().parent().unwrap())?;
    russh::keys::known_hosts::learn_known_hosts_path(host, port, k, d.dirs.known_hosts())?;
    Ok(())
}

/// The host key `host:port` shows, or a refusal saying why there is none.
fn shown_key(host: &str, port: u16) -> anyhow::Result<russh::keys::PublicKey> {
    ssh::host_key(host, port, TIMEOUT).map_err(|e| {
        crate::daemon::refusal::Refusal::new(
            crate::daemon::refusal::Kind::Refused,
            format!("cannot reach {host}:{port}: {e}"),
        )
        .into()
    })
}

/// The sessions of this node to `host`.
fn sessions_to(d: &Daemon, host: &str) -> anyhow::Result<Vec<String>> {
    Ok(sessions::all(d)?
        .iter()
        .filter(|s| s.secondary.host == host)
        .map(|s| format!("{} -> {}", s.primary, s.secondary))
        .collect())
}

/// A session created against `host` (its key just learned): its destination, if it has none.
pub fn ensure(d: &Daemon, secondary: &SecondaryUrl, port: u16) -> anyhow::Result<()> {
    if d.opts.local_peers.contains_key(&secondary.host)
        || d.store.get_json::<Destination>(&key(&secondary.host))?.is_some()
    {
        return Ok(());
    }
    // The key the session's connection just pinned here, or, if none, the one it shows.
    let k = match russh::keys::known_hosts::known_host_keys_path(&secondary.host, port, d.dirs.known_hosts()) {
        Ok(mut keys) if !keys.is_empty() => keys.remove(0).1,
        _ => ssh::host_key(&secondary.host, port, TIMEOUT)?,
    };
    let dest = Destination {
        host: secondary.host.clone(),
        port,
        user: secondary.user.clone().unwrap_or_else(|| "root".into()),
        fingerprint: ssh::fingerprint(&k),
        host_key: openssh(&k),
        added_ms: crate::types::EpochMs::now().0,
        keys_pushed: false,
        last_test: None,
    };
    d.store.create_json(&key(&dest.host), &dest)?;
    Ok(())
}

pub fn handle(d: &Daemon, cmd: DestinationCmd) -> anyhow::Result<Response> {
    match cmd {
        DestinationCmd::Add { host, port, user, push_keys: push } => {
            check_host(&host)?;
            let user = user.unwrap_or_else(|| "root".into());
            check_user(&user)?;
            let port = port.unwrap_or(22);
            if port == 0 {
                crate::refuse!(BadInput, "port: 0 is not a port (1-65535)");
            }
            if d.store.get_json::<Destination>(&key(&host))?.is_some() {
                crate::refuse!(Refused, "Destination {host} already exists");
            }
            let k = shown_key(&host, port)?;
            let fingerprint = ssh::fingerprint(&k);
            if let Err(line) = pin_state(d, &host, port, &k)? {
                crate::refuse!(
                    Refused,
                    "the host key of {host} ({fingerprint}) is not the one pinned (known_hosts line {line}): see 'georep destination re-establish'"
                );
            }
            let mut dest = Destination {
                host: host.clone(),
                port,
                user,
                fingerprint: fingerprint.clone(),
                host_key: openssh(&k),
                added_ms: crate::types::EpochMs::now().0,
                keys_pushed: false,
                last_test: None,
            };
            if pin_state(d, &host, port, &k)? == Ok(false) {
                pin(d, &host, port, &k)?;
            }
            if push {
                push_keys(d, &dest)?;
                dest.keys_pushed = true;
            }
            if !d.store.create_json(&key(&host), &dest)? {
                crate::refuse!(Refused, "Destination {host} already exists");
            }
            let pushed = if push { "; this cluster's session keys installed" } else { "" };
            Ok(Response::Ok(format!("Destination {host} added: host key {fingerprint} pinned{pushed}")))
        }
        DestinationCmd::List => {
            let mut out = Vec::new();
            for dest in d.store.list_json::<Destination>("destinations/")? {
                let status = match &dest.last_test {
                    None => "Not tested".to_string(),
                    Some(t) if t.ok => "Connected".to_string(),
                    Some(t) => match t.stages.iter().find(|s| !s.ok) {
                        Some(s) => format!("Failed: {}: {}", s.stage, s.detail),
                        None => "Failed".to_string(),
                    },
                };
                let sessions = sessions_to(d, &dest.host)?;
                out.push(DestinationView { destination: dest, status, sessions });
            }
            Ok(Response::Destinations(out))
        }
        DestinationCmd::Test { host } => {
            let mut dest = get(d, &host)?;
            let report = test(d, &dest);
            dest.last_test = Some(report.clone());
            d.store.put_json(&key(&host), &dest)?;
            Ok(Response::DestinationTest(report))
        }
        DestinationCmd::ReEstablish { host, accept, push_keys: push } => {
            let mut dest = get(d, &host)?;
            let k = shown_key(&host, dest.port)?;
            let now = ssh::fingerprint(&k);
            let mut said = Vec::new();
            match pin_state(d, &host, dest.port, &k)? {
                Ok(true) => said.push(format!("the host key of {host} is unchanged ({now})")),
                state => {
                    if accept.as_deref() != Some(now.as_str()) {
                        crate::refuse!(
                            Refused,
                            "the host key of {host} changed: pinned {}, now {now}. If that is expected, accept it: georep destination re-establish {host} --accept {now}",
                            dest.fingerprint
                        );
                    }
                    if state.is_err() {
                        unpin(d, &host, dest.port)?;
                    }
                    pin(d, &host, dest.port, &k)?;
                    said.push(format!("{host}: host key {now} pinned (was {})", dest.fingerprint));
                    dest.fingerprint = now;
                    dest.host_key = openssh(&k);
                }
            }
            if push {
                push_keys(d, &dest)?;
                dest.keys_pushed = true;
                said.push("this cluster's session keys installed".into());
            }
            d.store.put_json(&key(&host), &dest)?;
            Ok(Response::Ok(said.join("; ")))
        }
        DestinationCmd::Remove { host, force } => {
            let dest = get(d, &host)?;
            let used = sessions_to(d, &host)?;
            if !used.is_empty() && !force {
                crate::refuse!(
                    Refused,
                    "Destination {host} is used by {}: delete the session(s) first, or use force",
                    used.join(", ")
                );
            }
            if used.is_empty() {
                unpin(d, &host, dest.port)?;
            }
            d.store.delete(&key(&host))?;
            Ok(Response::Ok(format!("Destination {host} removed")))
        }
    }
}

/// The stages, each reported, up to the first that fails: the SSH port reachable, the host
/// key the pinned one, the session key accepted, the receiver answering (its version), the
/// volumes it may receive for (with their space).
fn test(d: &Daemon, dest: &Destination) -> TestReport {
    let mut stages = Vec::new();
    let mut volumes = Vec::new();
    let mut stage = |name: &str, r: Result<String, String>| {
        let ok = r.is_ok();
        stages.push(Stage { stage: name.into(), ok, detail: r.unwrap_or_else(|e| e) });
        ok
    };
    let (host, port) = (dest.host.as_str(), dest.port);
    let reachable = (|| {
        let addr = (host, port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
        std::net::TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
        Ok(format!("{addr} accepts connections"))
    })();
    let all = stage("reachable", reachable)
        && stage(
            "host key",
            match ssh::host_key(host, port, TIMEOUT) {
                Err(e) => Err(e.to_string()),
                Ok(k) => {
                    let now = ssh::fingerprint(&k);
                    match pin_state(d, host, port, &k) {
                        Ok(Ok(true)) => Ok(format!("{now}, the pinned key")),
                        Ok(Ok(false)) => Err(format!("{now} is not pinned")),
                        Ok(Err(_)) => Err(format!("changed: pinned {}, now {now}", dest.fingerprint)),
                        Err(e) => Err(format!("{e:#}")),
                    }
                }
            },
        )
        && {
            let probe = transport(d, dest).and_then(|t| Link::probe(&t));
            let auth_failed = probe
                .as_ref()
                .err()
                .and_then(|e| e.downcast_ref::<SshError>())
                .is_some_and(|e| matches!(e, SshError::AuthFailed { .. }));
            match probe {
                Ok(inv) => {
                    stage("authentication", Ok(format!("{}@{host} with this cluster's session key", dest.user)));
                    stage("georep", Ok(format!("{} (protocol {})", inv.software, inv.version)));
                    volumes = inv.volumes;
                    let started: Vec<String> = volumes
                        .iter()
                        .filter(|v| v.started)
                        .map(|v| format!("{} ({} GiB free of {})", v.name, gib(v.avail_bytes), gib(v.total_bytes)))
                        .collect();
                    stage(
                        "volumes",
                        if started.is_empty() {
                            Err(format!("no started volume {} may receive for", dest.user))
                        } else {
                            Ok(started.join(", "))
                        },
                    )
                }
                Err(e) if auth_failed => stage("authentication", Err(format!("{e:#}"))),
                Err(e) => {
                    stage("authentication", Ok(format!("{}@{host}", dest.user)));
                    stage("georep", Err(format!("{e:#}")))
                }
            }
        };
    TestReport { at_ms: crate::types::EpochMs::now().0, ok: all, stages, volumes }
}

fn gib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["snode", "10.231.85.2", "a-b.example.org", "fe80::1"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in ["", "-oProxyCommand=x", "a b", "a/b", "x;y", ".hidden"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_user("geoaccount").is_ok());
        assert!(check_user("-x").is_err() && check_user("a b").is_err() && check_user("").is_err());
    }
}
