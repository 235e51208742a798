//! A real Prometheus (Debian's) scrapes georepd's `/metrics` during a replication, with the
//! node's bearer token; its queries see the files synced, the lag, and a Faulty worker. The
//! alert rules shipped in `packaging/prometheus` pass `promtool check rules` and their unit
//! tests (`promtool test rules`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cluster::*;
use common::*;

fn promtool(args: &[&str]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/prometheus");
    let o = Command::new("promtool").args(args).current_dir(dir).output().unwrap();
    assert!(
        o.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "georep-alerts.yml"]);
    promtool(&["test", "rules", "georep-alerts.test.yml"]);
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus's instant query: the first sample's value.
fn query(port: u16, q: &str) -> Option<f64> {
    let o = Command::new("curl")
        .args(["-s", "--get", "--data-urlencode"])
        .arg(format!("query={q}"))
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_sees_progress_and_a_faulty_worker() {
    let mut c = Cluster::new(true);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    std::fs::write(c.p("f"), "scraped").unwrap();
    c.assert_converged(Duration::from_secs(60));
    c.pri.cli("api-token").ok();
    let dir = c.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: georep\n    authorization: {{credentials_file: {}}}\n    \
             static_configs: [{{targets: ['{}']}}]\n",
            c.pri.root.join("state/api-token").display(),
            c.pri.api_addr()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _p = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let synced = || query(port, r#"georep_session_files_synced_total{volume="pvol",secondary="sec::svol"}"#);
    assert!(wait_until(Duration::from_secs(60), || synced().is_some_and(|v| v >= 1.0)), "{}", log());
    assert!(query(port, "up{job=\"georep\"}") == Some(1.0));
    assert!(query(port, r#"georep_session_lag_seconds{volume="pvol"}"#).is_some());
    assert_eq!(query(port, r#"georep_session_worker_status{state="active"}"#), Some(1.0));
    // The secondary goes (its daemon, its brick server, the receiver): the worker cannot get
    // another receiver, and turns Faulty.
    c.sec.kill9();
    let _ = Command::new("pkill").args(["-9", "-f", "--"]).arg(format!("--serve {}", c.sbrick.display())).status();
    if let Some(r) = c.receiver_pid() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r), nix::sys::signal::Signal::SIGKILL);
    }
    std::fs::write(c.p("g"), "pending").unwrap();
    let faulty = || query(port, r#"georep_session_worker_status{state="faulty"}"#) == Some(1.0);
    assert!(wait_until(Duration::from_secs(60), faulty), "{:?}\n{}", c.rows(true), log());
}
