//! The management plane against real daemons and a real SSH secondary (a network namespace
//! with its own sshd): events on the API's stream and to webhooks, a dead webhook slowing
//! nothing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sites::Sites;
use common::wait_until;

/// One POST a webhook received: its Authorization header, its body, when.
#[derive(Clone, Debug)]
struct Got {
    auth: String,
    body: serde_json::Value,
    at: Instant,
}

/// A webhook receiver on loopback: every POST recorded, answered 200.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/listen", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut len, mut auth) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            g.lock().unwrap().push(Got { auth, body, at: Instant::now() });
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (url, got)
}

/// A webhook that takes the connection and never answers.
fn dead_webhook() -> (String, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    (format!("http://{}/hang", l.local_addr().unwrap()), l)
}

fn names(got: &[Got]) -> Vec<String> {
    got.iter().map(|g| g.body["event"].as_str().unwrap_or("").to_string()).collect()
}

/// The first event called `name` the receiver got (after `skip` of them).
fn find(got: &Arc<Mutex<Vec<Got>>>, name: &str, within: Duration) -> Got {
    let mut found = None;
    wait_until(within, || {
        found = got.lock().unwrap().iter().find(|g| g.body["event"] == name).cloned();
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no {name} within {within:?}; got {:?}", names(&got.lock().unwrap())))
}

#[test]
fn events_reach_the_stream_and_webhooks_and_a_dead_one_slows_nothing() {
    let mut s = Sites::new("ev", 85, &["a", "b"]);
    let (live, got) = webhook_receiver();
    let (dead, _hold) = dead_webhook();
    // The webhook commands: add (a bearer token), list, bad input, duplicates, test.
    s[0].cli(&format!("webhook add {live} --bearer s3cret")).ok();
    s[0].cli(&format!("webhook add {dead}")).ok();
    let list = s[0].cli("webhook list").ok().to_string();
    assert!(list.contains(&live) && list.contains("(bearer token set)") && !list.contains("s3cret"), "{list}");
    let o = s[0].cli(&format!("webhook add {live}"));
    assert_eq!((o.code, o.stderr.trim()), (1, format!("Webhook {live} already exists").as_str()));
    let o = s[0].cli("webhook add ftp://x/y");
    assert_eq!(o.code, 1);
    assert!(o.stderr.trim().starts_with("url: ") && o.stderr.lines().count() == 1, "{}", o.stderr);
    assert!(s[0].cli(&format!("webhook test {live}")).ok().contains("OK (HTTP 200)"));
    assert!(got.lock().unwrap().iter().any(|g| g.body.is_null()), "the test POST is empty");
    let o = s[0].cli("webhook test http://127.0.0.1:1/x");
    assert!(o.code == 1 && o.stderr.contains("NOT OK"), "{o:?}");
    let o = s[0].cli("webhook del http://127.0.0.1:1/x");
    assert_eq!(o.code, 1);

    // The API's event stream, read by curl as a browser would.
    let token = s[0].cli("api-token").ok().trim().to_string();
    let mut curl = Command::new("curl")
        .args(["-s", "-N", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{}/api/v1/events", s[0].node.api_addr()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stream = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let out = curl.stdout.take().unwrap();
        let st = stream.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                st.lock().unwrap().push(line);
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));

    // Create and start: the commands' events, then the worker's ACTIVE, promptly though the
    // dead webhook holds each of its POSTs for its whole timeout.
    let t0 = Instant::now();
    s.session(0, 1);
    assert!(t0.elapsed() < Duration::from_secs(30));
    let create = find(&got, "GEOREP_CREATE", Duration::from_secs(10));
    assert_eq!(create.auth, "Bearer s3cret");
    assert_eq!(create.body["message"]["master"], "avol");
    assert_eq!(create.body["message"]["slave"], s.url(1));
    assert_eq!(create.body["message"]["push_pem"], "true");
    let start = find(&got, "GEOREP_START", Duration::from_secs(10));
    let active = find(&got, "GEOREP_ACTIVE", Duration::from_secs(30));
    assert_eq!(active.body["message"]["master_volume"], "avol");
    assert_eq!(active.body["message"]["slave_host"], s[1].host.addr.as_str());
    assert_eq!(active.body["message"]["slave_volume"], "bvol");
    assert!(start.at.duration_since(t0) < Duration::from_secs(5), "START took {:?}", start.at - t0);
    std::fs::write(s[0].p("f1"), "one").unwrap();
    s.assert_converged(0, 1, Duration::from_secs(30));

    // A checkpoint: CONFIG_SET at once, CHECKPOINT_COMPLETED once the secondary has it.
    s.geo(0, 1, "config checkpoint now").ok();
    std::fs::write(s[0].p("f2"), "two").unwrap();
    let set = find(&got, "GEOREP_CONFIG_SET", Duration::from_secs(5));
    assert_eq!(
        (set.body["message"]["option"].as_str(), set.body["message"]["value"].as_str()),
        (Some("checkpoint"), Some("now"))
    );
    let done = find(&got, "GEOREP_CHECKPOINT_COMPLETED", Duration::from_secs(30));
    assert!(!done.body["message"]["checkpoint_completion_time"].as_str().unwrap_or("").is_empty(), "{:?}", done.body);

    // The secondary's sshd stops: the worker goes Faulty, says why; the lag passes the
    // session's threshold. The sshd back: Active, lag OK.
    s.geo(0, 1, "config lag-threshold 2").ok();
    s[1].host.sshd(false);
    std::fs::write(s[0].p("f3"), "three").unwrap();
    let faulty = find(&got, "GEOREP_FAULTY", Duration::from_secs(60));
    assert_eq!(faulty.body["message"]["slave_host"], s[1].host.addr.as_str());
    assert!(!faulty.body["message"]["last_error"].as_str().unwrap_or("").is_empty(), "{:?}", faulty.body);
    let high = find(&got, "GEOREP_LAG_HIGH", Duration::from_secs(30));
    assert_eq!(high.body["message"]["threshold_seconds"], "2");
    s[1].host.sshd(true);
    s.assert_converged(0, 1, Duration::from_secs(90));
    find(&got, "GEOREP_LAG_OK", Duration::from_secs(30));
    let events = names(&got.lock().unwrap());
    let actives = events.iter().filter(|e| *e == "GEOREP_ACTIVE").count();
    assert!(actives >= 2, "ACTIVE again after the Faulty: {events:?}");

    // Stop and delete: their events; every POST of the live webhook came while the dead one
    // still held its first.
    s.geo(0, 1, "stop").ok();
    s.geo(0, 1, "delete").ok();
    find(&got, "GEOREP_DELETE", Duration::from_secs(5));
    assert!(s[0].cli(&format!("webhook del {dead}")).ok().contains("deleted"));

    // The stream saw what the webhook saw, as `event:`/`id:`/`data:` lines.
    let lines = stream.lock().unwrap().clone();
    let _ = curl.kill();
    let _ = curl.wait();
    let seen: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("event: ")).collect();
    for e in [
        "GEOREP_CREATE",
        "GEOREP_START",
        "GEOREP_ACTIVE",
        "GEOREP_CHECKPOINT_COMPLETED",
        "GEOREP_FAULTY",
        "GEOREP_DELETE",
    ] {
        assert!(seen.contains(&e), "{e} not on the stream: {seen:?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("id: ")), "{lines:?}");
    let data: serde_json::Value =
        serde_json::from_str(lines.iter().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert!(data["nodeid"].is_string() && data["ts"].is_u64() && data["message"].is_object(), "{data}");
    // A client coming back with Last-Event-ID gets what came after.
    let o = Command::new("curl")
        .args(["-s", "-N", "--max-time", "2", "-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", &format!("Last-Event-ID: {}", data["id"])])
        .arg(format!("http://{}/api/v1/events", s[0].node.api_addr()))
        .output()
        .unwrap();
    let replay = String::from_utf8_lossy(&o.stdout);
    assert!(replay.contains("event: GEOREP_DELETE") && !replay.contains(&format!("id: {}\n", data["id"])), "{replay}");
}

/// The FAILURES column's changes listed (CLI and API) and retried once the cause is fixed: the
/// secondary's copy of a file made immutable refuses its next change.
#[test]
fn failed_changes_are_listed_and_retried_once_the_cause_is_fixed() {
    use common::cluster::Cluster;
    let c = Cluster::new(true);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    std::fs::write(c.p("f"), "one").unwrap();
    std::fs::write(c.p("g"), "fine").unwrap();
    c.assert_converged(Duration::from_secs(30));
    assert_eq!(c.geo("failures").ok().trim(), "No failed changes");
    let chattr = |flag: &str| {
        let o = Command::new("chattr").arg(flag).arg(c.s("f")).output().unwrap();
        assert!(o.status.success(), "chattr {flag}: {}", String::from_utf8_lossy(&o.stderr));
    };
    chattr("+i");
    let _undo = Undo(c.s("f"));
    std::fs::write(c.p("f"), "two, longer").unwrap();
    let listed = || -> Vec<serde_json::Value> {
        let o = c.geo("failures --json");
        serde_json::from_str::<Vec<serde_json::Value>>(&o.stdout).unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(60), || !listed().is_empty()), "nothing listed: {}", c.worker_log());
    let f = listed()[0].clone();
    assert_eq!(f["path"], "f", "{f}");
    assert!(["DATA", "DATA,META"].contains(&f["op"].as_str().unwrap()), "{f}\n{}", c.worker_log());
    assert_eq!(f["errno"], libc::EPERM, "{f}");
    assert!(f["attempts"].as_u64().unwrap() >= 1 && f["first_seen_ms"].as_u64().unwrap() > 0, "{f}");
    let gfid = f["gfid"].as_str().unwrap().to_string();
    let table = c.geo("failures").ok().to_string();
    assert!(table.starts_with("GFID") && table.contains(&gfid) && table.contains("not permitted"), "{table}");
    assert_eq!(c.rows(true)[0][12], "1", "FAILURES column: {:?}", c.rows(true));
    // The API lists the same.
    let t = c.pri.cli("api-token").ok().trim().to_string();
    let api = |method: &str, path: &str| -> (u16, String) {
        let o = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", &format!("Authorization: Bearer {t}")])
            .arg(format!("http://{}/api/v1/volumes/pvol/geo-replication-sessions/sec::svol{path}", c.pri.api_addr()))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    };
    let (code, body) = api("GET", "/failures");
    assert_eq!(code, 200);
    assert!(body.contains(&gfid), "{body}");
    // Retried while the cause remains: still listed, tried once more.
    let said = c.geo("failures retry").ok().to_string();
    assert!(said.contains("1 failed change(s) recorded again"), "{said}");
    assert!(
        wait_until(Duration::from_secs(60), || listed()
            .first()
            .is_some_and(|x| x["attempts"].as_u64() > f["attempts"].as_u64())),
        "{:?}",
        listed()
    );
    // Bad input and an unknown GFID, as the CLI and the API say them.
    assert_eq!(c.geo("failures retry not-a-gfid").code, 1);
    let other = "00000000-0000-0000-0000-00000000abcd";
    assert!(c.geo(&format!("failures retry {other}")).refused().contains("is not among the failed changes"));
    assert_eq!(api("POST", &format!("/failures/{other}/retry")).0, 404);
    assert_eq!(api("POST", "/failures/xyz/retry").0, 400);
    // The cause fixed, one retry (by its GFID, through the API): applied, off the list.
    chattr("-i");
    let (code, body) = api("POST", &format!("/failures/{gfid}/retry"));
    assert_eq!(code, 200, "{body}");
    assert!(wait_until(Duration::from_secs(60), || listed().is_empty()), "{:?}", listed());
    c.assert_converged(Duration::from_secs(30));
    assert_eq!(std::fs::read_to_string(c.s("f")).unwrap(), "two, longer");
    assert_eq!(c.rows(true)[0][12], "0");
}

/// Takes the immutable flag off a file, whatever happens to the test.
struct Undo(std::path::PathBuf);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
    }
}

/// `ssh-keygen -l`'s SHA-256 fingerprint of a public key line.
fn fingerprint(dir: &std::path::Path, key_line: &str) -> String {
    let f = dir.join("key.pub");
    std::fs::write(&f, format!("{key_line}\n")).unwrap();
    let o = Command::new("ssh-keygen").args(["-l", "-E", "sha256", "-f"]).arg(&f).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).unwrap().to_string()
}

/// A session's rows as JSON.
fn status_json(s: &Sites) -> Vec<serde_json::Value> {
    serde_json::from_str(&s.geo(0, 1, "status detail --json").stdout).unwrap_or_default()
}

#[test]
fn destinations_pin_the_host_key_test_in_stages_and_re_establish_only_when_told() {
    let mut s = Sites::new("dst", 87, &["a", "b"]);
    let host = s[1].host.addr.clone();
    let user = s.user.name.clone();
    let pinned = fingerprint(s.dir.path(), &s[1].host.host_key());
    // Bad input: one line naming the field, nothing added.
    let o = s[0].node.cli_args(&["destination", "add", "--", "-oProxyCommand=x"]);
    assert_eq!((o.code, o.stderr.trim()), (1, "host: \"-oProxyCommand=x\" is not a host name or address"), "{o:?}");
    let o = s[0].cli(&format!("destination add {host} --user a;b"));
    assert_eq!((o.code, o.stderr.trim().starts_with("user: ")), (1, true), "{o:?}");
    assert_eq!(s[0].cli("destination list").ok().trim(), "No destinations");

    // Add: the fingerprint pinned is the host's; the keys installed.
    let said = s[0].cli(&format!("destination add {host} --user {user} --push-keys")).ok().to_string();
    assert!(said.contains(&pinned) && said.contains("session keys installed"), "{said}");
    assert!(s[0].cli(&format!("destination add {host}")).refused().contains("already exists"));
    let list = s[0].cli("destination list").ok().to_string();
    assert!(
        list.contains(&format!("{user}@{host}:22")) && list.contains(&pinned) && list.contains("Not tested"),
        "{list}"
    );

    // Test: every stage passes, each said.
    let o = s[0].cli(&format!("destination test {host}"));
    assert_eq!(o.code, 0, "{o:?}");
    let stages: Vec<&str> = o.stdout.lines().map(|l| l.split_whitespace().nth(1).unwrap_or("")).collect();
    assert_eq!(stages, ["reachable", "host", "authentication", "georep", "volumes"], "{}", o.stdout);
    assert!(o.stdout.lines().all(|l| l.starts_with("ok")), "{}", o.stdout);
    assert!(o.stdout.contains("bvol (") && o.stdout.contains("georep "), "{}", o.stdout);
    assert!(s[0].cli("destination list").ok().contains("Connected"));

    // A session to it; the destination is in use.
    s.session(0, 1);
    std::fs::write(s[0].p("before"), "x").unwrap();
    s.assert_converged(0, 1, Duration::from_secs(30));
    let list: serde_json::Value = serde_json::from_str(s[0].cli("destination list --json").ok()).unwrap();
    assert_eq!(list[0]["sessions"][0], format!("avol -> {}", s.url(1)), "{list}");
    assert!(s[0].cli(&format!("destination remove {host}")).refused().contains("is used by avol -> "));

    // The host key changes (a reinstalled server, or an attacker): the test fails at that
    // stage, naming both keys; the session goes Faulty saying why.
    s[1].host.sshd(false);
    s[1].host.new_host_key();
    let changed = fingerprint(s.dir.path(), &s[1].host.host_key());
    assert_ne!(changed, pinned);
    std::fs::write(s[0].p("during"), "y").unwrap();
    let o = s[0].cli(&format!("destination test {host}"));
    assert_eq!(o.code, 1, "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("ok") && lines[1].starts_with("FAIL  host key"), "{}", o.stdout);
    assert!(lines[1].contains(&format!("pinned {pinned}, now {changed}")), "{}", o.stdout);
    assert_eq!(lines.len(), 2, "no stage after the one that failed: {}", o.stdout);
    assert!(s[0].cli("destination list").ok().contains("Failed: host key"));
    assert!(
        wait_until(Duration::from_secs(60), || status_json(&s)
            .first()
            .is_some_and(|r| r["worker_status"] == "Faulty"
                && r["last_error"].as_str().unwrap_or("").contains("host key changed"))),
        "{:?}",
        status_json(&s)
    );
    // Re-establish: refused unless the new key is named, then pinned; the session goes on.
    let no = s[0].cli(&format!("destination re-establish {host}")).refused().to_string();
    assert!(no.contains(&pinned) && no.contains(&changed) && no.contains("--accept"), "{no}");
    let wrong = s[0].cli(&format!("destination re-establish {host} --accept {pinned}")).refused().to_string();
    assert!(wrong.contains("changed"), "{wrong}");
    let yes = s[0].cli(&format!("destination re-establish {host} --accept {changed}")).ok().to_string();
    assert!(yes.contains(&format!("host key {changed} pinned (was {pinned})")), "{yes}");
    assert_eq!(s[0].cli(&format!("destination test {host}")).code, 0);
    s.assert_converged(0, 1, Duration::from_secs(120));

    // Remove: refused while used; forced, gone (the session keeps its pin).
    assert_eq!(s[0].cli(&format!("destination remove {host}")).code, 1);
    assert!(s[0].cli(&format!("destination remove {host} --force")).ok().contains("removed"));
    assert_eq!(s[0].cli("destination list").ok().trim(), "No destinations");
    std::fs::write(s[0].p("after"), "z").unwrap();
    s.assert_converged(0, 1, Duration::from_secs(30));
}
