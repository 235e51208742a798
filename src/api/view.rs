//! A session as the API shows it: the brick rows of `status detail` grouped by session, with
//! one status for the whole session in the oVirt design's values (a session whose bricks
//! disagree is `PARTIAL_FAULTY`), and its id in the paths.

use serde::Serialize;
use utoipa::ToSchema;

use crate::session::status::StatusRow;

/// The oVirt design's geo-replication status values (`GeoRepSessionStatus`), of a brick or of
/// a whole session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Initializing,
    Notstarted,
    Active,
    Passive,
    Stopped,
    /// Paused by the operator (the oVirt engine's enumeration has it too).
    Paused,
    PartialFaulty,
    Faulty,
    Unknown,
}

impl Status {
    /// A brick's worker status as `status` prints it.
    pub fn of_brick(worker_status: &str) -> Status {
        match worker_status {
            "Initializing..." => Status::Initializing,
            "Created" => Status::Notstarted,
            "Active" => Status::Active,
            "Passive" => Status::Passive,
            "Stopped" => Status::Stopped,
            "Paused" => Status::Paused,
            "Faulty" => Status::Faulty,
            _ => Status::Unknown,
        }
    }

    /// A session's, from its bricks': all Faulty is `FAULTY`, some is `PARTIAL_FAULTY`; a
    /// replica set's Active and Passive workers make an `ACTIVE` session; otherwise the
    /// bricks' common status, or `UNKNOWN` when they disagree.
    pub fn of_session(bricks: &[Status]) -> Status {
        let Some(&first) = bricks.first() else { return Status::Unknown };
        let faulty = bricks.iter().filter(|&&s| s == Status::Faulty).count();
        if faulty == bricks.len() {
            return Status::Faulty;
        }
        if faulty > 0 {
            return Status::PartialFaulty;
        }
        if bricks.iter().all(|&s| s == first) {
            return first;
        }
        if bricks.iter().all(|&s| matches!(s, Status::Active | Status::Passive)) {
            return Status::Active;
        }
        if bricks.iter().all(|&s| matches!(s, Status::Active | Status::Passive | Status::Initializing)) {
            return Status::Initializing;
        }
        Status::Unknown
    }
}

/// One session: who, its status, and one row per brick (`status detail`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session in paths: the secondary as `[user@]host::volume` (`user@` only for a
    /// user other than root).
    pub id: String,
    pub primary_volume: String,
    /// `ssh://[user@]host::volume`
    pub secondary: String,
    pub secondary_user: String,
    pub secondary_host: String,
    pub secondary_volume: String,
    pub status: Status,
    /// The largest of its bricks' lags.
    pub lag_seconds: f64,
    pub bricks: Vec<StatusRow>,
}

/// The rows of `status detail`, one view per session, in the rows' order.
pub fn sessions(rows: Vec<StatusRow>) -> Vec<SessionView> {
    let mut out: Vec<SessionView> = Vec::new();
    for r in rows {
        let id = r.secondary.trim_start_matches("ssh://").to_string();
        match out.iter_mut().find(|s| s.id == id && s.primary_volume == r.primary_volume) {
            Some(s) => s.bricks.push(r),
            None => {
                let (host, volume) = id.rsplit_once('@').map_or(id.as_str(), |(_, h)| h).split_once("::").unzip();
                out.push(SessionView {
                    primary_volume: r.primary_volume.clone(),
                    secondary: r.secondary.clone(),
                    secondary_user: r.secondary_user.clone(),
                    secondary_host: host.unwrap_or_default().to_string(),
                    secondary_volume: volume.unwrap_or_default().to_string(),
                    status: Status::Unknown,
                    lag_seconds: 0.0,
                    id,
                    bricks: vec![r],
                })
            }
        }
    }
    for s in &mut out {
        let states: Vec<Status> = s.bricks.iter().map(|b| Status::of_brick(&b.worker_status)).collect();
        s.status = Status::of_session(&states);
        s.lag_seconds = s.bricks.iter().map(|b| b.lag_seconds).fold(0.0, f64::max);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    #[test]
    fn a_session_status_from_its_bricks() {
        assert_eq!(Status::of_session(&[Active]), Active);
        assert_eq!(Status::of_session(&[Active, Passive]), Active);
        assert_eq!(Status::of_session(&[Active, Faulty]), PartialFaulty);
        assert_eq!(Status::of_session(&[Faulty, Faulty]), Faulty);
        assert_eq!(Status::of_session(&[Stopped, Stopped]), Stopped);
        assert_eq!(Status::of_session(&[Initializing, Active]), Initializing);
        assert_eq!(Status::of_session(&[Stopped, Active]), Unknown);
        assert_eq!(Status::of_session(&[]), Unknown);
        assert_eq!(Status::of_brick("Created"), Notstarted);
        assert_eq!(serde_json::to_string(&PartialFaulty).unwrap(), "\"PARTIAL_FAULTY\"");
    }

    #[test]
    fn rows_group_by_session() {
        let row = |sec: &str, brick: &str, st: &str| StatusRow {
            primary_volume: "pvol".into(),
            secondary: format!("ssh://{sec}"),
            primary_brick: brick.into(),
            worker_status: st.into(),
            ..Default::default()
        };
        let v = sessions(vec![
            row("geo@h::s", "/b1", "Active"),
            row("h2::t", "/b1", "Stopped"),
            row("geo@h::s", "/b2", "Faulty"),
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].id.as_str(), v[0].secondary_host.as_str(), v[0].secondary_volume.as_str()),
            ("geo@h::s", "h", "s")
        );
        assert_eq!((v[0].bricks.len(), v[0].status), (2, PartialFaulty));
        assert_eq!((v[1].id.as_str(), v[1].status), ("h2::t", Stopped));
    }
}
