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
    let h = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(120)))
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    Ok(HANDLE.get_or_init(|| h))
}

/// Sets every series from the rows, then renders the exposition text.
pub fn render(handle: &PrometheusHandle, node: &str, rows: &[StatusRow]) -> String {
    gauge!("georep_node_up", "node" => node.to_string()).set(1.0);
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
    handle.run_upkeep();
    handle.render()
}
