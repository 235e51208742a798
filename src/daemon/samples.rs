//! Every session's recent past, for the web UI's graphs: every few seconds, from the rows the
//! event watcher reads anyway, the session's lag (its most lagging brick) and what it has
//! synced (files, bytes: the sum of its bricks'), one hour of it, in memory (a restarted
//! georepd starts a new graph).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use crate::session::status::StatusRow;

/// How often a session is sampled, and for how long samples are kept.
pub const EVERY: Duration = Duration::from_secs(2);
pub const KEPT: Duration = Duration::from_secs(3600);

/// One point of a session's graphs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// Seconds since the epoch.
    pub t: u64,
    /// The session's lag (its most lagging brick), seconds.
    pub lag_seconds: f64,
    pub files_synced: u64,
    pub bytes_synced: u64,
    /// Bricks whose worker is Faulty.
    pub faulty: u32,
}

/// The samples of every session, keyed by (primary volume, secondary URL).
#[derive(Default)]
pub struct Samples {
    series: Mutex<HashMap<(String, String), VecDeque<Sample>>>,
}

impl Samples {
    /// Takes a sample of each session in `rows` if the last one is `EVERY` old; a session
    /// no longer in `rows` is forgotten.
    pub fn record(&self, rows: &[StatusRow]) {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut now: HashMap<(String, String), Sample> = HashMap::new();
        for r in rows {
            let s = now.entry((r.primary_volume.clone(), r.secondary.clone())).or_insert(Sample {
                t,
                lag_seconds: 0.0,
                files_synced: 0,
                bytes_synced: 0,
                faulty: 0,
            });
            s.lag_seconds = s.lag_seconds.max(r.lag_seconds);
            s.files_synced += r.files_synced;
            s.bytes_synced += r.bytes_synced;
            s.faulty += u32::from(r.worker_status == "Faulty");
        }
        let mut series = self.series.lock();
        series.retain(|k, _| now.contains_key(k));
        let keep = (KEPT.as_secs() / EVERY.as_secs()) as usize;
        for (k, s) in now {
            let q = series.entry(k).or_default();
            if q.back().is_some_and(|last| t < last.t + EVERY.as_secs()) {
                continue;
            }
            if q.len() == keep {
                q.pop_front();
            }
            q.push_back(s);
        }
    }

    /// The session's samples taken after `after` (seconds since the epoch), oldest first.
    pub fn since(&self, volume: &str, secondary: &str, after: u64) -> Vec<Sample> {
        let series = self.series.lock();
        let Some(q) = series.get(&(volume.to_string(), secondary.to_string())) else { return Vec::new() };
        let first = q.partition_point(|s| s.t <= after);
        q.range(first..).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(brick: &str, lag: f64, files: u64, status: &str) -> StatusRow {
        StatusRow {
            primary_volume: "pvol".into(),
            secondary: "ssh://sec::svol".into(),
            primary_brick: brick.into(),
            lag_seconds: lag,
            files_synced: files,
            worker_status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_session_is_its_worst_lag_and_its_bricks_sum() {
        let s = Samples::default();
        s.record(&[row("/b1", 3.0, 10, "Active"), row("/b2", 7.5, 5, "Faulty")]);
        let got = s.since("pvol", "ssh://sec::svol", 0);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].lag_seconds, got[0].files_synced, got[0].faulty), (7.5, 15, 1));
        // Within EVERY of the last one: no new sample; after it, nothing is newer.
        s.record(&[row("/b1", 1.0, 11, "Active")]);
        assert_eq!(s.since("pvol", "ssh://sec::svol", 0).len(), 1);
        assert!(s.since("pvol", "ssh://sec::svol", got[0].t).is_empty());
        // A session gone is forgotten.
        s.record(&[]);
        assert!(s.since("pvol", "ssh://sec::svol", 0).is_empty());
    }
}
