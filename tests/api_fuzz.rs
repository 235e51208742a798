//! A schema-driven fuzzer (Schemathesis, from PyPI: `scripts/deps` installs it) against a
//! running georepd with a volume and a running session: every response matches the OpenAPI
//! document (status, content type, body), no 5xx, input that breaks the document gets a 4xx,
//! and nothing the requests were refused for changed anything.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::cluster::*;

fn schemathesis() -> PathBuf {
    let p = std::env::var_os("GEOREP_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/georep-test/schemathesis/bin/schemathesis"));
    assert!(p.exists(), "{} is missing: run scripts/deps", p.display());
    p
}

/// What a refused request must not change: the volumes, the session, its options and state,
/// the webhooks, the destinations, the token.
fn state(c: &Cluster) -> Vec<String> {
    let worker = c.rows(false).iter().map(|r| r.get(6).cloned().unwrap_or_default()).collect::<Vec<_>>().join(",");
    vec![
        c.pri.cli("volume info").stdout,
        c.sec.cli("volume info").stdout,
        c.geo("config").stdout,
        worker,
        c.pri.cli("webhook list").stdout,
        c.pri.cli("destination list").stdout,
        std::fs::read_to_string(c.pri.root.join("state/api-token")).unwrap(),
    ]
}

/// Runs Schemathesis against the primary's API with `args`; panics with its report if it
/// found anything.
fn fuzz(c: &Cluster, dir: &std::path::Path, args: &[&str]) {
    let token = c.pri.cli("api-token").ok().trim().to_string();
    let o = Command::new(schemathesis())
        .current_dir(dir)
        .arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", c.pri.api_addr()))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--exclude-path", "/api/v1/events", "--seed", "7", "--no-color"])
        .args(["--generation-with-security-parameters", "false", "--request-timeout", "20"])
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "schemathesis {args:?} found failures:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("passed"), "{out}");
}

#[test]
fn the_api_holds_to_its_document_under_a_fuzzer() {
    let c = Cluster::new(true);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    std::fs::write(c.p("f"), "x").unwrap();
    c.assert_converged(Duration::from_secs(30));
    c.pri.cli("webhook add http://127.0.0.1:9/nowhere").ok();
    let work = tempfile::tempdir().unwrap();
    let before = state(&c);
    // Input that breaks the document, on every operation: refused with a 4xx that the
    // document lists, never a 5xx, and nothing changed.
    fuzz(&c, work.path(), &["--mode", "negative", "--max-examples", "8"]);
    assert_eq!(state(&c), before, "a refused request changed something");
    // Input the document allows, on every read: answered as documented.
    fuzz(&c, work.path(), &["--mode", "positive", "--include-method", "GET", "--max-examples", "15"]);
    assert_eq!(state(&c), before);
    // The session ran on, undisturbed.
    std::fs::write(c.p("g"), "y").unwrap();
    c.assert_converged(Duration::from_secs(30));
}
