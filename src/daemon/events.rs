//! Events, as GlusterFS's events API has them (`{nodeid, ts, event, message}`), on the API's
//! event stream (`/api/v1/events`) and POSTed to webhooks (`webhooks`).
//!
//! Two sources: the commands (`GEOREP_CREATE`, `START`, `STOP`, `PAUSE`, `RESUME`, `DELETE`,
//! `CONFIG_SET`, `CONFIG_RESET`), sent by `Daemon::handle` once a command has succeeded; and
//! the workers (`GEOREP_FAULTY`, `ACTIVE`, `PASSIVE`, `CHECKPOINT_COMPLETED`, and ours:
//! `GEOREP_LAG_HIGH`/`LAG_OK` against the session's `lag-threshold`, `GEOREP_FAILURES_RAISED`),
//! found by a watcher that compares each second's brick rows with the last (the rows
//! `status detail` shows: what the events say and what the status says are one thing).
//! Sending never waits: the stream is a broadcast channel, each webhook has its own queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Daemon;
use crate::session::grammar::{ConfigAction, SecondaryUrl, SessionCmd};
use crate::session::status::StatusRow;

/// How many recent events a new stream client can ask for (`Last-Event-ID`).
const RECENT: usize = 512;

/// One event: GlusterFS's four fields, and an id for the event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Increasing (milliseconds since the epoch at the latest, so that ids keep growing
    /// across restarts).
    pub id: u64,
    /// The node's UUID.
    pub nodeid: String,
    /// Unix seconds.
    pub ts: u64,
    /// `GEOREP_START`, ...
    pub event: String,
    /// The event's fields (GlusterFS's names: `master`, `slave`, `master_volume`, ...).
    pub message: BTreeMap<String, String>,
}

pub struct Events {
    node: String,
    recent: Mutex<VecDeque<Event>>,
    tx: tokio::sync::broadcast::Sender<Event>,
    pub webhooks: super::webhooks::Webhooks,
}

impl Events {
    pub fn new(node: &str) -> Events {
        Events {
            node: node.to_string(),
            recent: Mutex::new(VecDeque::new()),
            tx: tokio::sync::broadcast::channel(RECENT).0,
            webhooks: Default::default(),
        }
    }

    /// Sends `event` with its fields to the stream and the webhooks; never waits.
    pub fn emit(&self, event: &str, fields: &[(&str, String)]) {
        let now = crate::types::EpochMs::now().0;
        let mut recent = self.recent.lock();
        let id = recent.back().map_or(now, |e| now.max(e.id + 1));
        let e = Event {
            id,
            nodeid: self.node.clone(),
            ts: now / 1000,
            event: event.to_string(),
            message: fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        };
        log::info!("event {} {:?}", e.event, e.message);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(e.clone());
        drop(recent);
        self.webhooks.deliver(&e);
        let _ = self.tx.send(e);
    }

    /// The live events from now on, and the recent ones after `after` (an id).
    pub fn subscribe(&self, after: Option<u64>) -> (Vec<Event>, tokio::sync::broadcast::Receiver<Event>) {
        let recent = self.recent.lock();
        let rx = self.tx.subscribe();
        let past = match after {
            Some(a) => recent.iter().filter(|e| e.id > a).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }

    /// The event of a command that succeeded, if it has one.
    pub fn command(&self, primary: &str, secondary: &SecondaryUrl, cmd: &SessionCmd) {
        let who = [("master", primary.to_string()), ("slave", format!("{secondary}"))];
        let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
            who.iter().cloned().chain(extra.iter().cloned()).collect()
        };
        let (event, fields) = match cmd {
            SessionCmd::Create { force, push_pem, .. } => {
                ("GEOREP_CREATE", with(&[("force", force.to_string()), ("push_pem", push_pem.to_string())]))
            }
            SessionCmd::Start { force } => ("GEOREP_START", with(&[("force", force.to_string())])),
            SessionCmd::Stop { force } => ("GEOREP_STOP", with(&[("force", force.to_string())])),
            SessionCmd::Pause { force } => ("GEOREP_PAUSE", with(&[("force", force.to_string())])),
            SessionCmd::Resume { force } => ("GEOREP_RESUME", with(&[("force", force.to_string())])),
            SessionCmd::Delete { reset_sync_time } => {
                ("GEOREP_DELETE", with(&[("reset_sync_time", reset_sync_time.to_string())]))
            }
            SessionCmd::Config(ConfigAction::Set(k, v)) => {
                ("GEOREP_CONFIG_SET", with(&[("option", k.clone()), ("value", v.clone())]))
            }
            SessionCmd::Config(ConfigAction::CheckpointNow) => {
                ("GEOREP_CONFIG_SET", with(&[("option", "checkpoint".into()), ("value", "now".into())]))
            }
            SessionCmd::Config(ConfigAction::Reset(k)) => ("GEOREP_CONFIG_RESET", with(&[("option", k.clone())])),
            _ => return,
        };
        self.emit(event, &fields);
    }
}

/// What the watcher remembers of a brick row.
#[derive(Clone, Default)]
struct Seen {
    status: String,
    checkpoint_completed: bool,
    lag_high: bool,
    failures: u64,
}

/// The events between two observations of one brick row (`threshold`: the session's
/// `lag-threshold`, 0 for none).
fn changes(before: &Seen, row: &StatusRow, threshold: u64) -> (Seen, Vec<&'static str>) {
    let now = Seen {
        status: row.worker_status.clone(),
        checkpoint_completed: row.checkpoint_completed == "Yes",
        lag_high: threshold > 0 && row.lag_seconds > threshold as f64,
        failures: row.failures.parse().unwrap_or(0),
    };
    let mut out = Vec::new();
    if now.status != before.status {
        match now.status.as_str() {
            "Faulty" => out.push("GEOREP_FAULTY"),
            "Active" => out.push("GEOREP_ACTIVE"),
            "Passive" => out.push("GEOREP_PASSIVE"),
            _ => {}
        }
    }
    if now.checkpoint_completed && !before.checkpoint_completed {
        out.push("GEOREP_CHECKPOINT_COMPLETED");
    }
    if now.lag_high != before.lag_high {
        out.push(if now.lag_high { "GEOREP_LAG_HIGH" } else { "GEOREP_LAG_OK" });
    }
    if now.failures > before.failures {
        out.push("GEOREP_FAILURES_RAISED");
    }
    (now, out)
}

/// An event's fields for a brick row (GlusterFS's names for the worker events).
fn fields(row: &StatusRow, event: &str, before: &Seen, threshold: u64) -> Vec<(&'static str, String)> {
    let secondary = row.secondary.trim_start_matches("ssh://");
    let (host, volume) = secondary.rsplit_once('@').map_or(secondary, |(_, h)| h).split_once("::").unwrap_or(("", ""));
    let mut f = vec![
        ("master_volume", row.primary_volume.clone()),
        ("master_node", row.primary_node.clone()),
        ("master_node_id", row.primary_node_uuid.clone()),
        ("brick_path", row.primary_brick.clone()),
        ("slave_host", host.to_string()),
        ("slave_volume", volume.to_string()),
        ("current_slave_host", row.secondary_node.clone()),
    ];
    match event {
        "GEOREP_FAULTY" => f.push(("last_error", row.last_error.clone())),
        "GEOREP_CHECKPOINT_COMPLETED" => {
            f.push(("checkpoint_time", row.checkpoint_time.clone()));
            f.push(("checkpoint_completion_time", row.checkpoint_completion_time.clone()));
        }
        "GEOREP_LAG_HIGH" | "GEOREP_LAG_OK" => {
            f.push(("lag_seconds", format!("{:.1}", row.lag_seconds)));
            f.push(("threshold_seconds", threshold.to_string()));
        }
        "GEOREP_FAILURES_RAISED" => {
            f.push(("failures", row.failures.clone()));
            f.push(("previous_failures", before.failures.to_string()));
        }
        _ => {}
    }
    f
}

type Seens = HashMap<(String, String, String), Seen>;

/// Starts watching the brick rows (georepd's start, before it serves a command): what is
/// found now is what is; from then on, each second, what changed is sent. A row first seen
/// later is a new session's, changed from nothing.
pub fn start(d: &Arc<Daemon>) -> std::io::Result<()> {
    let mut seen = look(d, &Seens::new(), false);
    let d = Arc::clone(d);
    std::thread::Builder::new().name("events".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            seen = look(&d, &seen, true);
        }
    })?;
    Ok(())
}

/// The rows now, against `seen`; their events sent if `send`.
fn look(d: &Daemon, seen: &Seens, send: bool) -> Seens {
    let rows = d.rows(Duration::ZERO).unwrap_or_default();
    d.samples.record(&rows);
    let thresholds: HashMap<String, u64> = super::sessions::all(d)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let t = s.config.get("lag-threshold").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            (format!("{}\0{}", s.primary, s.url()), t)
        })
        .collect();
    let mut next = Seens::new();
    let fresh = Seen::default();
    for row in rows.iter() {
        let key = (row.primary_volume.clone(), row.secondary.clone(), row.primary_brick.clone());
        let threshold = thresholds.get(&format!("{}\0{}", row.primary_volume, row.secondary)).copied().unwrap_or(0);
        let before = seen.get(&key).unwrap_or(&fresh);
        let (now, events) = changes(before, row, threshold);
        if send {
            for e in events {
                d.events.emit(e, &fields(row, e, before, threshold));
            }
        }
        next.insert(key, now);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, checkpoint: &str, lag: f64, failures: &str) -> StatusRow {
        StatusRow {
            worker_status: status.into(),
            checkpoint_completed: checkpoint.into(),
            lag_seconds: lag,
            failures: failures.into(),
            secondary: "ssh://geo@sec::svol".into(),
            ..Default::default()
        }
    }

    #[test]
    fn transitions_make_events() {
        let (s, e) = changes(&Seen::default(), &row("Active", "No", 0.0, "0"), 10);
        assert_eq!(e, ["GEOREP_ACTIVE"]);
        let (s2, e) = changes(&s, &row("Active", "No", 0.0, "0"), 10);
        assert!(e.is_empty());
        let (s3, e) = changes(&s2, &row("Faulty", "No", 11.0, "2"), 10);
        assert_eq!(e, ["GEOREP_FAULTY", "GEOREP_LAG_HIGH", "GEOREP_FAILURES_RAISED"]);
        let (s4, e) = changes(&s3, &row("Active", "Yes", 3.0, "2"), 10);
        assert_eq!(e, ["GEOREP_ACTIVE", "GEOREP_CHECKPOINT_COMPLETED", "GEOREP_LAG_OK"]);
        // No threshold: no lag events.
        let (_, e) = changes(&s4, &row("Active", "Yes", 1e6, "2"), 0);
        assert!(e.is_empty());
        let f = fields(&row("Faulty", "No", 0.0, "0"), "GEOREP_FAULTY", &s4, 0);
        assert!(f.contains(&("slave_host", "sec".into())) && f.contains(&("slave_volume", "svol".into())), "{f:?}");
    }

    #[test]
    fn ids_grow_and_recent_ones_replay() {
        let ev = Events::new("n");
        ev.emit("GEOREP_START", &[("master", "p".into())]);
        ev.emit("GEOREP_STOP", &[("master", "p".into())]);
        let (past, _) = ev.subscribe(Some(0));
        assert_eq!(past.len(), 2);
        assert!(past[1].id > past[0].id);
        let (past, _) = ev.subscribe(Some(past[0].id));
        assert_eq!(past.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["GEOREP_STOP"]);
    }
}
