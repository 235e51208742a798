//! Status: what a worker reports about its brick (`BrickStatus`, kept in a file the worker
//! rewrites), the rows `status` shows (`StatusRow`), and their three renderings: GlusterFS's
//! table, `--json` with GlusterFS's brick-status keys, and `--xml` in GlusterFS's `cliOutput`
//! shape. Pure: no I/O but the status file's atomic write and read.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a worker reports, written atomically to its status file after every batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BrickStatus {
    /// The file's format version, as read (`save` writes `STATUS_VERSION`).
    #[serde(default = "status_version", skip_serializing)]
    pub version: u16,
    /// `Initializing...`, `Active`, `Passive` or `Faulty`.
    pub worker_status: String,
    /// `Hybrid Crawl`, `History Crawl`, `Changelog Crawl` or `N/A`.
    pub crawl_status: String,
    /// The stime: every change recorded before it is on the secondary (unix ms; 0 = none yet).
    pub last_synced_ms: u64,
    /// Pending in the current batch.
    pub entry: u64,
    pub data: u64,
    pub meta: u64,
    /// Changes that could not be applied, since the session was created.
    pub failures: u64,
    pub files_synced: u64,
    pub bytes_synced: u64,
    pub entries_synced: u64,
    pub wire_bytes: u64,
    /// Seconds the secondary is behind (0 when nothing is pending).
    pub lag_seconds: f64,
    pub checkpoint: u64,
    pub checkpoint_completed: bool,
    pub checkpoint_completion_ms: u64,
    /// Why the worker stopped, when it did.
    pub last_error: String,
    /// What the operator should know while it runs (it fell behind the changelog retention
    /// and crawls, say); empty if nothing.
    #[serde(default)]
    pub note: String,
    /// Hybrid crawl progress: entries sent so far, of about `crawl_total`.
    pub crawl_entries: u64,
    pub crawl_total: u64,
    pub updated_ms: u64,
    /// The node of the secondary's cluster the worker reaches (or last reached).
    #[serde(default)]
    pub secondary_node: String,
    /// When the worker last reached its receiver (unix ms; 0: never): a worker that dies
    /// after that lost a connection it had, and is restarted without backoff.
    #[serde(default)]
    pub connected_ms: u64,
}

/// The status file's format version (its `version` field; files without one are of 1).
pub const STATUS_VERSION: u16 = 1;

impl BrickStatus {
    /// The worker's last report; `None` if there is none, or one of a newer layout.
    pub fn load(path: &Path) -> Option<BrickStatus> {
        let b: BrickStatus = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (b.version <= STATUS_VERSION).then_some(b)
    }

    /// Replaces the file atomically: a reader never sees half of it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        /// The file: this version's number, then the fields.
        #[derive(Serialize)]
        struct File<'a> {
            version: u16,
            #[serde(flatten)]
            status: &'a BrickStatus,
        }
        let file = File { version: STATUS_VERSION, status: self };
        crate::durable::swap(path, &serde_json::to_vec(&file).map_err(std::io::Error::other)?)
    }
}

fn status_version() -> u16 {
    1
}

/// One row of `status`: one brick of one session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusRow {
    pub primary_node: String,
    pub primary_node_uuid: String,
    pub primary_volume: String,
    pub primary_brick: String,
    pub secondary_user: String,
    /// The session's URL, `ssh://[user@]host::volume`.
    pub secondary: String,
    pub secondary_node: String,
    pub worker_status: String,
    pub crawl_status: String,
    pub last_synced: String,
    pub last_synced_utc: String,
    pub entry: String,
    pub data: String,
    pub meta: String,
    pub failures: String,
    pub checkpoint_time: String,
    pub checkpoint_time_utc: String,
    pub checkpoint_completed: String,
    pub checkpoint_completion_time: String,
    pub checkpoint_completion_time_utc: String,
    pub last_error: String,
    /// What the operator should know while the worker runs (`BrickStatus::note`).
    #[serde(default)]
    pub note: String,
    pub lag_seconds: f64,
    /// Changes the secondary could not apply, since the session began (`failures` is how
    /// many of them are still listed: `failures` command).
    #[serde(default)]
    pub failures_total: u64,
    /// Bytes sent on the wire (after compression), against `bytes_synced` (file content).
    #[serde(default)]
    pub wire_bytes: u64,
    /// How many times the worker died and was started again since the session was started.
    #[serde(default)]
    pub worker_restarts: u64,
    pub files_synced: u64,
    pub bytes_synced: u64,
    pub files_skipped: u64,
    pub bytes_pending: u64,
    pub deletes_pending: u64,
    /// A running Hybrid crawl's progress (entries sent, of about this many).
    pub crawl_entries: u64,
    pub crawl_total: u64,
}

pub const NA: &str = "N/A";

/// `%Y-%m-%d %H:%M:%S` of a unix time in seconds, local time (or UTC).
pub fn format_time(secs: i64, utc: bool) -> String {
    let t: libc::time_t = secs as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; the *_r variants keep no static state.
    let ok =
        unsafe { if utc { !libc::gmtime_r(&t, &mut tm).is_null() } else { !libc::localtime_r(&t, &mut tm).is_null() } };
    if !ok {
        return NA.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

impl StatusRow {
    /// Fills the worker's columns from its report, as GlusterFS shows them: the counts, times
    /// and crawl only for an Active worker, N/A otherwise.
    pub fn fill(&mut self, status: &str, b: Option<&BrickStatus>) {
        self.worker_status = status.to_string();
        let na = || NA.to_string();
        for f in [
            &mut self.crawl_status,
            &mut self.last_synced,
            &mut self.last_synced_utc,
            &mut self.entry,
            &mut self.data,
            &mut self.meta,
            &mut self.failures,
            &mut self.checkpoint_time,
            &mut self.checkpoint_time_utc,
            &mut self.checkpoint_completed,
            &mut self.checkpoint_completion_time,
            &mut self.checkpoint_completion_time_utc,
        ] {
            *f = na();
        }
        let Some(b) = b else { return };
        self.last_error = b.last_error.clone();
        self.note = b.note.clone();
        self.files_synced = b.files_synced;
        self.bytes_synced = b.bytes_synced;
        if status != "Active" {
            return;
        }
        self.lag_seconds = b.lag_seconds;
        self.deletes_pending = 0;
        self.crawl_status = b.crawl_status.clone();
        if b.crawl_status == "Hybrid Crawl" {
            (self.crawl_entries, self.crawl_total) = (b.crawl_entries, b.crawl_total);
        }
        if b.last_synced_ms > 0 {
            let s = (b.last_synced_ms / 1000) as i64;
            self.last_synced = format_time(s, false);
            self.last_synced_utc = format_time(s, true);
        }
        self.entry = b.entry.to_string();
        self.data = b.data.to_string();
        self.meta = b.meta.to_string();
        self.failures = b.failures.to_string();
        if b.checkpoint > 0 {
            self.checkpoint_time = format_time(b.checkpoint as i64, false);
            self.checkpoint_time_utc = format_time(b.checkpoint as i64, true);
            self.checkpoint_completed = if b.checkpoint_completed { "Yes" } else { "No" }.to_string();
            if b.checkpoint_completed {
                let s = (b.checkpoint_completion_ms / 1000) as i64;
                self.checkpoint_completion_time = format_time(s, false);
                self.checkpoint_completion_time_utc = format_time(s, true);
            }
        }
    }

    fn columns(&self, detail: bool) -> Vec<&str> {
        let mut v = vec![
            self.primary_node.as_str(),
            &self.primary_volume,
            &self.primary_brick,
            &self.secondary_user,
            &self.secondary,
            &self.secondary_node,
            &self.worker_status,
            &self.crawl_status,
            &self.last_synced,
        ];
        if detail {
            v.extend([
                self.entry.as_str(),
                &self.data,
                &self.meta,
                &self.failures,
                &self.checkpoint_time,
                &self.checkpoint_completed,
                &self.checkpoint_completion_time,
            ]);
        }
        v
    }
}

const TITLES: [&str; 16] = [
    "PRIMARY NODE",
    "PRIMARY VOL",
    "PRIMARY BRICK",
    "SECONDARY USER",
    "SECONDARY",
    "SECONDARY NODE",
    "STATUS",
    "CRAWL STATUS",
    "LAST_SYNCED",
    "ENTRY",
    "DATA",
    "META",
    "FAILURES",
    "CHECKPOINT TIME",
    "CHECKPOINT COMPLETED",
    "CHECKPOINT COMPLETION TIME",
];

/// GlusterFS's table: a blank line, the titles each padded to its column's width plus three
/// and joined with single spaces, a line of `-` as wide, then one row per brick.
pub fn render_table(rows: &[StatusRow], detail: bool) -> String {
    let titles = &TITLES[..if detail { 16 } else { 9 }];
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.columns(detail)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<0$}", w + 3)).collect::<Vec<_>>().join(" ")
    };
    let header = line(titles);
    let mut out = String::from("\n");
    out.push_str(header.trim_end());
    out.push('\n');
    out.push_str(&"-".repeat(header.chars().count()));
    out.push('\n');
    for r in rows {
        out.push_str(line(&r.columns(detail)).trim_end());
        out.push('\n');
    }
    out
}

/// `status --watch`'s line for a running Hybrid crawl: a bar of its progress.
pub fn render_progress(r: &StatusRow) -> Option<String> {
    if r.crawl_status != "Hybrid Crawl" || r.crawl_total == 0 {
        return None;
    }
    // The total is an estimate: the bar stops short of full until the crawl is done.
    let frac = (r.crawl_entries as f64 / r.crawl_total as f64).min(0.99);
    let filled = (frac * 40.0).round() as usize;
    Some(format!(
        "{} {} -> {}  Hybrid Crawl [{}{}] {:>3}%  {} of ~{} entries",
        r.primary_node,
        r.primary_brick,
        r.secondary,
        "#".repeat(filled),
        ".".repeat(40 - filled),
        (frac * 100.0) as u32,
        r.crawl_entries,
        r.crawl_total
    ))
}

pub fn render_json(rows: &[StatusRow]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_default() + "\n"
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// GlusterFS's `--xml`: `cliOutput/geoRep/volume/sessions/session/pair`.
pub fn render_xml(rows: &[StatusRow]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<cliOutput>\n");
    out.push_str("  <opRet>0</opRet>\n  <opErrno>0</opErrno>\n  <opErrstr/>\n  <geoRep>\n");
    let mut volumes: Vec<&str> = rows.iter().map(|r| r.primary_volume.as_str()).collect();
    volumes.dedup();
    for v in volumes {
        let _ = writeln!(out, "    <volume>\n      <name>{}</name>\n      <sessions>", xml_escape(v));
        let mut sessions: Vec<&str> =
            rows.iter().filter(|r| r.primary_volume == v).map(|r| r.secondary.as_str()).collect();
        sessions.dedup();
        for s in sessions {
            let _ =
                writeln!(out, "        <session>\n          <session_secondary>{}</session_secondary>", xml_escape(s));
            for r in rows.iter().filter(|r| r.primary_volume == v && r.secondary == s) {
                out.push_str("          <pair>\n");
                for (k, val) in [
                    ("primary_node", &r.primary_node),
                    ("primary_brick", &r.primary_brick),
                    ("secondary_user", &r.secondary_user),
                    ("secondary", &r.secondary),
                    ("secondary_node", &r.secondary_node),
                    ("status", &r.worker_status),
                    ("crawl_status", &r.crawl_status),
                    ("entry", &r.entry),
                    ("data", &r.data),
                    ("meta", &r.meta),
                    ("failures", &r.failures),
                    ("checkpoint_completed", &r.checkpoint_completed),
                    ("primary_node_uuid", &r.primary_node_uuid),
                    ("last_synced", &r.last_synced),
                    ("checkpoint_time", &r.checkpoint_time),
                    ("checkpoint_completion_time", &r.checkpoint_completion_time),
                ] {
                    let _ = writeln!(out, "            <{k}>{}</{k}>", xml_escape(val));
                }
                out.push_str("          </pair>\n");
            }
            out.push_str("        </session>\n");
        }
        out.push_str("      </sessions>\n    </volume>\n");
    }
    out.push_str("  </geoRep>\n</cliOutput>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_carries_its_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("brick-status.json");
        let b = BrickStatus { files_synced: 7, version: 0, ..Default::default() };
        b.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.matches("\"version\"").count(), 1, "{text}");
        let back = BrickStatus::load(&p).unwrap();
        assert_eq!((back.version, back.files_synced), (STATUS_VERSION, 7));
        std::fs::write(&p, text.replace(&format!("\"version\":{STATUS_VERSION}"), "\"version\":99")).unwrap();
        assert!(BrickStatus::load(&p).is_none(), "a newer layout is not read");
    }

    fn row(status: &str, b: Option<&BrickStatus>) -> StatusRow {
        let mut r = StatusRow {
            primary_node: "node1".into(),
            primary_volume: "pvol".into(),
            primary_brick: "/bricks/p".into(),
            secondary_user: "root".into(),
            secondary: "ssh://snode::svol".into(),
            secondary_node: "snode".into(),
            ..Default::default()
        };
        r.fill(status, b);
        r
    }

    #[test]
    fn table_layout_is_glusterfs() {
        let t = render_table(&[row("Created", None)], false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "PRIMARY NODE    PRIMARY VOL    PRIMARY BRICK    SECONDARY USER    SECONDARY            SECONDARY NODE    STATUS     CRAWL STATUS    LAST_SYNCED"
        );
        assert!(lines[2].chars().all(|c| c == '-') && lines[2].len() >= lines[1].len());
        assert_eq!(
            lines[3],
            "node1           pvol           /bricks/p        root              ssh://snode::svol    snode             Created    N/A             N/A"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn active_rows_show_counts_and_checkpoint() {
        let b = BrickStatus {
            crawl_status: "Changelog Crawl".into(),
            last_synced_ms: 1_795_000_000_000,
            entry: 1,
            data: 2,
            meta: 3,
            failures: 4,
            checkpoint: 1_795_000_000,
            checkpoint_completed: true,
            checkpoint_completion_ms: 1_795_000_001_000,
            ..Default::default()
        };
        let r = row("Active", Some(&b));
        assert_eq!(r.last_synced, format_time(1_795_000_000, false));
        assert_eq!((r.entry.as_str(), r.data.as_str(), r.meta.as_str(), r.failures.as_str()), ("1", "2", "3", "4"));
        assert_eq!(r.checkpoint_completed, "Yes");
        let t = render_table(&[r], true);
        assert!(t.lines().nth(1).unwrap().ends_with("CHECKPOINT COMPLETED    CHECKPOINT COMPLETION TIME"));
        // A Passive or stopped worker shows N/A, whatever its file says.
        let r = row("Passive", Some(&b));
        assert_eq!((r.crawl_status.as_str(), r.failures.as_str()), (NA, NA));
    }

    #[test]
    fn progress_bar() {
        let b = BrickStatus {
            crawl_status: "Hybrid Crawl".into(),
            crawl_entries: 250,
            crawl_total: 1000,
            ..Default::default()
        };
        let r = row("Active", Some(&b));
        let line = render_progress(&r).unwrap();
        assert!(line.contains(&format!("[{}{}]  25%  250 of ~1000 entries", "#".repeat(10), ".".repeat(30))), "{line}");
        let done = BrickStatus { crawl_entries: 5000, ..b.clone() };
        assert!(render_progress(&row("Active", Some(&done))).unwrap().contains(" 99%"));
        let live = BrickStatus { crawl_status: "Changelog Crawl".into(), ..b };
        assert_eq!(render_progress(&row("Active", Some(&live))), None);
    }

    #[test]
    fn time_format() {
        assert_eq!(format_time(0, true), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000, true), "2026-11-18 11:06:40");
    }

    #[test]
    fn xml_and_json_carry_the_rows() {
        let rows = [row("Created", None)];
        let x = render_xml(&rows);
        assert!(x.contains("<session_secondary>ssh://snode::svol</session_secondary>"));
        assert!(x.contains("<status>Created</status>"));
        let j: serde_json::Value = serde_json::from_str(&render_json(&rows)).unwrap();
        assert_eq!(j[0]["worker_status"], "Created");
        assert_eq!(j[0]["crawl_status"], "N/A");
    }
}
