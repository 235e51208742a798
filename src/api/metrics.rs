//! Prometheus `/metrics` (SPEC 9): the `metrics` facade with its Prometheus exporter, filled at
//! each scrape from the brick rows of every session of this node (what `status detail`
//! shows), so that what Prometheus sees and what the CLI says are one thing. Series of a
//! session that is gone disappear a few scrapes later (the exporter's idle timeout).

use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::session::status::StatusRow;

/// The worker states a session's brick can be in (one gauge each, 1 for the current one).
const STATES: [&str; 6] = ["Initializing...", "Active", "Passive", "Faulty", "Stopped", "Paused"];
const CRAWLS: [&str; 4] = ["Hybrid Crawl", "History Crawl", "Changelog Crawl", "Failback Crawl"];

static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The process-wide recorder (one per georepd), installed on first use.
pub fn handle() -> anyhow::Result<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    // The API's request times as a histogram (buckets, which Prometheus can aggregate and
    // which cost nothing to render), not a summary (quantiles computed at every scrape).
    let h = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(120)))
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("georep_api_request_duration_seconds".into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
        )
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    Ok(HANDLE.get_or_init(|| h))
}

/// Sets every series from the rows (`None`: the store could not be read), then renders the
/// exposition text.
pub fn render(handle: &PrometheusHandle, node: &str, rows: Option<&[StatusRow]>) -> String {
    gauge!("georep_node_up", "node" => node.to_string()).set(1.0);
    gauge!("georep_node_store_up", "node" => node.to_string()).set(if rows.is_some() { 1.0 } else { 0.0 });
    let rows = rows.unwrap_or_default();
    let mut bricks = std::collections::BTreeSet::new();
    for r in rows {
        let labels = [
            ("volume", r.primary_volume.clone()),
            ("secondary", r.secondary.trim_start_matches("ssh://").to_string()),
            ("node", r.primary_node.clone()),
            ("brick", r.primary_brick.clone()),
        ];
        let num = |s: &str| s.parse::<f64>().unwrap_or(0.0);
        gauge!("georep_session_lag_seconds", &labels).set(r.lag_seconds);
        counter!("georep_session_files_synced_total", &labels).absolute(r.files_synced);
        counter!("georep_session_bytes_synced_total", &labels).absolute(r.bytes_synced);
        counter!("georep_session_wire_bytes_total", &labels).absolute(r.wire_bytes);
        counter!("georep_session_worker_restarts_total", &labels).absolute(r.worker_restarts);
        let connected = matches!(r.worker_status.as_str(), "Active" | "Passive");
        gauge!("georep_session_secondary_connected", &labels).set(if connected { 1.0 } else { 0.0 });
        if r.primary_node == node {
            bricks.insert((r.primary_volume.clone(), r.primary_brick.clone()));
        }
        counter!("georep_session_failures_total", &labels).absolute(r.failures_total);
        gauge!("georep_session_failed_changes", &labels).set(num(&r.failures));
        for (kind, v) in [("entry", &r.entry), ("data", &r.data), ("meta", &r.meta)] {
            let mut l = labels.to_vec();
            l.push(("kind", kind.to_string()));
            gauge!("georep_session_pending_ops", &l).set(num(v));
        }
        gauge!("georep_session_pending_bytes", &labels).set(r.bytes_pending as f64);
        for s in STATES {
            let mut l = labels.to_vec();
            l.push(("state", s.trim_end_matches("...").to_lowercase()));
            gauge!("georep_session_worker_status", &l).set(if r.worker_status == s { 1.0 } else { 0.0 });
        }
        for c in CRAWLS {
            let mut l = labels.to_vec();
            l.push(("crawl", c.trim_end_matches(" Crawl").to_lowercase()));
            gauge!("georep_session_crawl", &l).set(if r.crawl_status == c { 1.0 } else { 0.0 });
        }
        gauge!("georep_session_checkpoint_completed", &labels).set(if r.checkpoint_completed == "Yes" {
            1.0
        } else {
            0.0
        });
        // A Hybrid crawl's progress: entries sent, of about so many.
        gauge!("georep_session_crawl_sent_entries", &labels).set(r.crawl_entries as f64);
        gauge!("georep_session_crawl_expected_entries", &labels).set(r.crawl_total as f64);
    }
    // The changelogs each brick of this node published: one entry each in its history index.
    for (volume, brick) in bricks {
        let index = crate::types::BrickLayout::new(&brick).changelog_dir().join("history.idx");
        let n = std::fs::metadata(&index).map_or(0, |m| {
            m.len().saturating_sub(crate::changelog::history::HEADER_LEN as u64)
                / crate::changelog::history::ENTRY_LEN as u64
        });
        counter!("georep_brick_changelog_rollovers_total", "volume" => volume, "brick" => brick).absolute(n);
    }
    handle.run_upkeep();
    handle.render()
}

/// Counts an API request and its time (`georep_api_requests_total`,
/// `georep_api_request_duration_seconds`): the API's own health.
pub fn request(method: &str, status: u16, seconds: f64) {
    let class = format!("{}xx", status / 100);
    counter!("georep_api_requests_total", "method" => method.to_string(), "code" => class).increment(1);
    metrics::histogram!("georep_api_request_duration_seconds", "method" => method.to_string()).record(seconds);
}
