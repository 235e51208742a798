//! The REST API (SPEC 9) against real daemons: the bearer token, and the API beside the CLI
//! for the same cases (same refusals, same messages, same effects), spoken with curl.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::*;

/// `curl` against a node's API: (HTTP status, body as JSON).
fn http(node: &Node, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    let (code, body) = http_as(node, method, path, token, body, "application/json");
    (code, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

/// `curl` with a body and an `Accept` of type `mime`: (HTTP status, body text).
fn http_as(
    node: &Node,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    mime: &str,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H"]).arg(format!("Accept: {mime}"));
    if let Some(t) = token {
        c.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    if body.is_some() {
        c.arg("-H").arg(format!("Content-Type: {mime}")).args(["--data-binary", "@-"]);
    }
    c.arg(format!("http://{}{path}", node.api_addr()));
    let mut child = c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(body.unwrap_or("").as_bytes());
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn token(node: &Node) -> String {
    node.cli("api-token").ok().trim().to_string()
}

#[test]
fn token_guards_everything_but_health() {
    let c = Cluster::new(false);
    let t = token(&c.pri);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(c.pri.root.join("state/api-token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(http(&c.pri, "GET", "/api/v1/health", None, None).0, 200);
    for path in ["/api/v1/volumes", "/api/v1/openapi.json", "/api/v1/volumes/pvol/geo-replication-sessions"] {
        let (code, body) = http(&c.pri, "GET", path, None, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(http(&c.pri, "GET", path, Some("wrong"), None).0, 401);
    }
    // Another node's token is not this one's.
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes", Some(&token(&c.sec)), None).0, 401);
    let (code, vols) = http(&c.pri, "GET", "/api/v1/volumes", Some(&t), None);
    assert_eq!(code, 200);
    assert_eq!(vols[0]["name"], "pvol");
    // Rotated: the old one stops working at once.
    let n = c.pri.cli("api-token --rotate").ok().trim().to_string();
    assert_ne!(n, t);
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes", Some(&t), None).0, 401);
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes", Some(&n), None).0, 200);
    // The document describes the paths; every one of them but health wants the token.
    let (code, doc) = http(&c.pri, "GET", "/api/v1/openapi.json", Some(&n), None);
    assert_eq!(code, 200);
    assert!(
        doc["paths"]["/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/{action}"]["post"].is_object(),
        "{doc}"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if path == "/api/v1/health" || path == "/api/v1/events" {
                continue;
            }
            let concrete = path.replace("{cluster}", "x").replace(['{', '}'], "");
            let (code, body) = http(&c.pri, &method.to_uppercase(), &concrete, None, Some("{}"));
            assert_eq!(code, 401, "{method} {concrete}: {body}");
        }
    }
    // Names that try to leave their place are names that do not exist; nothing is read.
    for path in ["/api/v1/volumes/..%2F..%2Fetc%2Fpasswd", "/api/v1/volumes/%2E%2E/geo-replication-sessions"] {
        let (code, body) = http(&c.pri, "GET", path, Some(&n), None);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(!body.to_string().contains("root:"), "{body}");
    }
    let (code, _) = http(&c.pri, "GET", "/api/v1/../../etc/passwd", Some(&n), None);
    assert_eq!(code, 404);
}

#[test]
fn api_and_cli_are_one_core() {
    let c = Cluster::new(true);
    let t = token(&c.pri);
    let base = "/api/v1/volumes/pvol/geo-replication-sessions";
    let s = format!("{base}/sec::svol");
    // A volume without sessions has none; an unknown volume is not found; so is a session.
    assert_eq!(http(&c.pri, "GET", base, Some(&t), None), (200, serde_json::json!([])));
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes/nosuch/geo-replication-sessions", Some(&t), None).0, 404);
    assert_eq!(http(&c.pri, "GET", &s, Some(&t), None).0, 404);
    // The same refusal, the same words.
    let cli = c.geo("start").refused().to_string();
    let (code, body) = http(&c.pri, "POST", &format!("{s}/start"), Some(&t), None);
    assert_eq!((code, body["message"].as_str().unwrap()), (404, cli.as_str()), "{body}");
    // Bad input names the field.
    let (code, body) = http(&c.pri, "POST", base, Some(&t), Some(r#"{"secondary": 7}"#));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("secondary"), "{body}");
    let (code, body) = http(&c.pri, "POST", base, Some(&t), Some(r#"{"secondary": "no-colons"}"#));
    assert_eq!((code, body["error"].as_str()), (400, Some("bad_input")), "{body}");
    // Create and start through the API; the CLI sees the session run.
    let (code, body) = http(&c.pri, "POST", base, Some(&t), Some(r#"{"secondary": "sec::svol", "push_pem": true}"#));
    assert_eq!(code, 200, "{body}");
    assert!(body["message"].as_str().unwrap().contains("has been successful"));
    assert_eq!(http(&c.pri, "POST", &format!("{s}/start"), Some(&t), None).0, 200);
    assert!(c.geo("status").ok().contains("svol"));
    std::fs::write(c.p("through-api"), "x").unwrap();
    c.assert_converged(Duration::from_secs(60));
    // The file may have gone with the first (Hybrid) crawl; wait for the Changelog crawl.
    assert!(common::wait_until(Duration::from_secs(20), || c
        .rows(false)
        .first()
        .is_some_and(|r| r[7] == "Changelog Crawl")));
    std::thread::sleep(Duration::from_millis(300)); // the API's rows are at most 250 ms old
    let (code, view) = http(&c.pri, "GET", &s, Some(&t), None);
    assert_eq!(code, 200);
    assert_eq!((view["id"].as_str(), view["status"].as_str()), (Some("sec::svol"), Some("ACTIVE")), "{view}");
    assert_eq!(view["bricks"][0]["secondary"], "ssh://sec::svol", "{view}");
    assert_eq!(http(&c.pri, "GET", base, Some(&t), None).1[0]["id"], "sec::svol");
    ovirt_paths(&c, &t);
    // A lifecycle rule: started twice is refused as the CLI refuses it.
    let cli = c.geo("start").refused().to_string();
    let (code, body) = http(&c.pri, "POST", &format!("{s}/start"), Some(&t), None);
    assert_eq!((code, body["message"].as_str().unwrap()), (409, cli.as_str()));
    // Options: the config rules, both ways.
    let (code, body) = http(&c.pri, "PUT", &format!("{s}/options/sync-jobs"), Some(&t), Some(r#"{"value": "x"}"#));
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["message"].as_str().unwrap(), c.geo("config sync-jobs x").refused());
    assert_eq!(http(&c.pri, "PUT", &format!("{s}/options/sync-jobs"), Some(&t), Some(r#"{"value": "2"}"#)).0, 200);
    assert_eq!(c.geo("config sync-jobs").ok().trim(), "2");
    // Each option with its value, default, allowed values and description; the CLI says the same.
    let (code, opts) = http(&c.pri, "GET", &format!("{s}/options"), Some(&t), None);
    assert_eq!(code, 200);
    let jobs = opts.as_array().unwrap().iter().find(|o| o["name"] == "sync-jobs").unwrap().clone();
    assert_eq!(
        (jobs["value"].as_str(), jobs["default"].as_str(), jobs["allowed"].as_str()),
        (Some("2"), Some("3"), Some("1..100"))
    );
    assert!(!jobs["description"].as_str().unwrap().is_empty());
    let described = c.geo("config --describe").ok().to_string();
    assert!(described.lines().any(|l| l.starts_with("sync-jobs") && l.contains("(default 3; 1..100)")), "{described}");
    // verify through the API.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = http(&c.pri, "POST", &format!("{s}/verify?checksum=true"), Some(&t), None);
    assert_eq!((code, body["differences"].as_u64()), (200, Some(0)), "{body}");
    // Unknown action, unknown volume.
    assert_eq!(http(&c.pri, "POST", &format!("{s}/explode"), Some(&t), None).0, 404);
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes/nosuch", Some(&t), None).0, 404);
    // A huge body is refused before anything.
    let big = format!(r#"{{"secondary": "{}"}}"#, "x".repeat(200 << 10));
    assert_eq!(http(&c.pri, "POST", base, Some(&t), Some(&big)).0, 413);
    // Prometheus's view: this session's series, with the status' values.
    let o = Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {t}")])
        .arg(format!("http://{}/metrics", c.pri.api_addr()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let series = |name: &str, extra: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("secondary=\"sec::svol\"") && l.contains(extra))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(series("georep_session_worker_status", "state=\"active\""), Some(1.0), "{text}");
    assert_eq!(series("georep_session_worker_status", "state=\"faulty\""), Some(0.0), "{text}");
    assert!(series("georep_session_files_synced_total", "").is_some_and(|v| v >= 1.0), "{text}");
    assert!(series("georep_session_lag_seconds", "").is_some(), "{text}");
    assert!(series("georep_session_wire_bytes_total", "").is_some_and(|v| v >= 1.0), "{text}");
    assert_eq!(series("georep_session_worker_restarts_total", ""), Some(0.0), "{}", c.worker_log());
    assert_eq!(series("georep_session_secondary_connected", ""), Some(1.0), "{text}");
    let plain = |name: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    };
    assert!(plain("georep_brick_changelog_rollovers_total{").is_some_and(|v| v >= 1.0), "{text}");
    assert_eq!(plain("georep_node_store_up{"), Some(1.0), "{text}");
    assert!(plain("georep_api_requests_total{").is_some_and(|v| v >= 1.0), "{text}");
    assert_eq!(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}/metrics", c.pri.api_addr()))
            .output()
            .unwrap()
            .stdout,
        b"401"
    );
    // Stop and delete through the API.
    assert_eq!(http(&c.pri, "POST", &format!("{s}/stop"), Some(&t), None).0, 200);
    assert_eq!(http(&c.pri, "DELETE", &s, Some(&t), None).0, 200);
    assert!(c.geo("status").stdout.lines().count() < 4);
}

/// The oVirt design's paths over the running session `pvol` -> `sec::svol`: its field names
/// and status values, JSON and XML, the same rules as the CLI.
fn ovirt_paths(c: &Cluster, t: &str) {
    let id = std::fs::read_to_string(c.pri.root.join("state/node.id")).unwrap();
    let cluster = id.trim().strip_prefix("UUID=").unwrap().to_string();
    let base = format!("/api/clusters/{cluster}/glustervolumes/pvol/georeplication-sessions");
    let s = format!("{base}/sec::svol");
    let (code, list) = http(&c.pri, "GET", &base, Some(t), None);
    assert_eq!(code, 200, "{list}");
    let one = &list["georeplication_session"][0];
    assert_eq!(
        (one["slave_host_name"].as_str(), one["slave_volume_name"].as_str(), one["status"].as_str()),
        (Some("sec"), Some("svol"), Some("ACTIVE")),
        "{list}"
    );
    assert_eq!(one["session_key"].as_str().unwrap(), format!("{cluster}:ssh://sec::svol"));
    let brick = &one["details"]["georeplication_session_detail"][0];
    for field in ["checkpoint_status", "crawl_status", "last_synced_at"] {
        assert!(brick[field].is_string(), "{field}: {brick}");
    }
    for field in ["files_synced", "files_pending", "bytes_pending", "deletes_pending", "files_skipped"] {
        assert!(brick[field].is_u64(), "{field}: {brick}");
    }
    assert_eq!((brick["status"].as_str(), brick["crawl_status"].as_str()), (Some("ACTIVE"), Some("Changelog Crawl")));
    assert!(brick["files_synced"].as_u64().unwrap() >= 1, "{brick}");
    // The node's name names the cluster too; another cluster is not here.
    assert_eq!(http(&c.pri, "GET", &base.replace(&cluster, "pri"), Some(t), None).0, 200);
    let (code, fault) = http(&c.pri, "GET", &base.replace(&cluster, "elsewhere"), Some(t), None);
    assert_eq!((code, fault["reason"].as_str()), (404, Some("not_found")), "{fault}");
    // XML, as oVirt clients speak it.
    let (code, xml) = http_as(&c.pri, "GET", &s, Some(t), None, "application/xml");
    assert_eq!(code, 200, "{xml}");
    assert!(xml.starts_with("<georeplication_session id=\"sec::svol\">"), "{xml}");
    for tag in
        ["<status>ACTIVE</status>", "<slave_volume_name>svol</slave_volume_name>", "<georeplication_session_detail>"]
    {
        assert!(xml.contains(tag), "{tag}: {xml}");
    }
    let create = "<georeplication_session><slave_host_name>sec</slave_host_name><slave_volume_name>svol</slave_volume_name></georeplication_session>";
    let (code, xml) = http_as(&c.pri, "POST", &base, Some(t), Some(create), "application/xml");
    assert_eq!(code, 409, "{xml}");
    assert!(xml.contains("<reason>refused</reason>") && xml.contains("is already created"), "{xml}");
    let (code, xml) = http_as(&c.pri, "POST", &base, Some(t), Some("<georeplication_session/>"), "application/xml");
    assert_eq!(code, 400, "{xml}");
    assert!(xml.contains("slave_host_name"), "{xml}");
    // Options: the design's names; set and reset with the config rules.
    let (code, opts) = http(&c.pri, "GET", &format!("{s}/options"), Some(t), None);
    assert_eq!(code, 200);
    let jobs =
        opts["georeplication_option"].as_array().unwrap().iter().find(|o| o["config_key"] == "sync-jobs").unwrap();
    assert_eq!((jobs["default_value"].as_str(), jobs["allowed_values"].as_str()), (Some("3"), Some("1..100")));
    let set = |v: &str| {
        http(
            &c.pri,
            "PUT",
            &format!("{s}/options"),
            Some(t),
            Some(&format!(r#"{{"config_key": "connection-timeout", "config_value": "{v}"}}"#)),
        )
    };
    let (code, fault) = set("soon");
    assert_eq!((code, fault["detail"].as_str().unwrap()), (400, c.geo("config connection-timeout soon").refused()));
    assert_eq!(set("77").0, 200);
    assert_eq!(c.geo("config connection-timeout").ok().trim(), "77");
    assert_eq!(http(&c.pri, "DELETE", &format!("{s}/options/connection-timeout"), Some(t), None).0, 200);
    assert_eq!(c.geo("config connection-timeout").ok().trim(), "60");
    // Pause and resume: the status follows; a rule refuses as the CLI does.
    assert_eq!(http(&c.pri, "POST", &format!("{s}/pause"), Some(t), None).0, 200);
    assert_eq!(http(&c.pri, "GET", &s, Some(t), None).1["status"], "PAUSED");
    let cli = c.geo("pause").refused().to_string();
    assert_eq!(http(&c.pri, "POST", &format!("{s}/pause"), Some(t), None).1["detail"].as_str().unwrap(), cli);
    assert_eq!(http(&c.pri, "POST", &format!("{s}/resume"), Some(t), None).0, 200);
    assert_eq!(http(&c.pri, "POST", &format!("{s}/jump"), Some(t), None).0, 404);
}

#[test]
fn volumes_through_the_api() {
    let c = Cluster::new(false);
    let t = token(&c.pri);
    let brick = c.dir.path().join("apibrick");
    let body = format!(r#"{{"name": "apivol", "bricks": ["pri:{}"]}}"#, brick.display());
    let (code, b) = http(&c.pri, "POST", "/api/v1/volumes", Some(&t), Some(&body));
    assert_eq!(code, 200, "{b}");
    // The same rule as the CLI's, the same words.
    let cli = c.pri.cli(&format!("volume create apivol pri:{}", brick.display())).refused().to_string();
    let (code, b) = http(&c.pri, "POST", "/api/v1/volumes", Some(&t), Some(&body));
    assert_eq!((code, b["message"].as_str().unwrap()), (409, cli.as_str()), "{b}");
    let (code, b) = http(&c.pri, "POST", "/api/v1/volumes", Some(&t), Some(r#"{"name": "x", "bricks": ["nocolon"]}"#));
    assert_eq!(code, 400, "{b}");
    assert!(b["message"].as_str().unwrap().starts_with("bricks:"), "{b}");
    assert_eq!(http(&c.pri, "POST", "/api/v1/volumes/apivol/start", Some(&t), None).0, 200);
    assert!(c.pri.cli("volume info apivol").ok().contains("Started"));
    // Its size: what its files take (1 MiB written), what a secondary needs (that and 100 MiB).
    std::fs::write(brick.join("big"), vec![7u8; 1 << 20]).unwrap();
    let (code, cap) = http(&c.pri, "GET", "/api/v1/volumes/apivol/capacity", Some(&t), None);
    assert_eq!(code, 200, "{cap}");
    let used = cap["used_bytes"].as_u64().unwrap();
    assert!((1 << 20..1 << 24).contains(&used), "{cap}");
    assert_eq!(cap["secondary_avail_bytes"].as_u64().unwrap(), used + (100 << 20), "{cap}");
    assert!(cap["secondary_total_bytes"].as_u64().unwrap() >= cap["total_bytes"].as_u64().unwrap(), "{cap}");
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes/nosuch/capacity", Some(&t), None).0, 404);
    assert_eq!(http(&c.pri, "POST", "/api/v1/volumes/apivol/stop", Some(&t), None).0, 200);
    assert_eq!(http(&c.pri, "DELETE", "/api/v1/volumes/apivol", Some(&t), None).0, 200);
    assert_eq!(http(&c.pri, "GET", "/api/v1/volumes/apivol", Some(&t), None).0, 404);
    assert_eq!(http(&c.pri, "POST", "/api/v1/volumes/apivol/start", Some(&t), None).0, 404);
}

/// `--tls-cert`/`--tls-key`: HTTPS on any address, the same API; plain HTTP off loopback only
/// with `--insecure-http`; a bad certificate stops georepd at start with one line.
#[test]
fn https_with_a_certificate() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
    let mut n = Node::new(dir.path(), "tls");
    n.extra = vec!["--tls-cert".into(), cert.display().to_string(), "--tls-key".into(), key.display().to_string()];
    n.start();
    let get = |url: String| -> String {
        let o = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert"])
            .arg(&cert)
            .arg(url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(get(format!("https://{}/api/v1/health", n.api_addr())), "200");
    assert_eq!(get(format!("https://{}/api/v1/volumes", n.api_addr())), "401");
    assert_eq!(get(format!("http://{}/api/v1/health", n.api_addr())), "000", "no plain HTTP beside TLS");
    // Refused at start, one line each, nothing served.
    let start = |args: &[&str]| {
        let o = Command::new(georepd_bin()).args(args).envs(Node::new(dir.path(), "bad").envs()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert!(!o.status.success() && err.lines().count() == 1, "{args:?}: {err}");
        err
    };
    assert!(start(&["--listen", "0.0.0.0:0"]).contains("plain HTTP is served on loopback only"));
    let no_key = start(&["--tls-cert", cert.to_str().unwrap()]);
    assert!(no_key.contains("--tls-key"), "{no_key}");
    let bad =
        start(&["--listen", "127.0.0.1:0", "--tls-cert", key.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(bad.contains("--tls-cert"), "{bad}");
}
