//! georepd as a system service: systemd's `Type=notify` protocol (readiness only once its
//! control socket and API answer, the watchdog while it is healthy, `STOPPING=1`), spoken to a
//! socket of the test's as systemd's own would be; and a clean stop on SIGTERM that ends the
//! workers but leaves users' mounts working, with nothing lost across the restart.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// The messages georepd sends to the notify socket within `within`, until `until` is among them.
fn messages_until(sock: &UnixDatagram, until: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !got.iter().any(|m: &String| m.lines().any(|l| l == until)) {
        sock.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn georepd_speaks_systemds_notify_protocol_and_stops_cleanly_on_sigterm() {
    let mut c = Cluster::new(true);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    std::fs::write(c.p("before"), "1").unwrap();
    c.assert_converged(Duration::from_secs(60));

    // georepd restarted under a "service manager": the test's notify socket, a watchdog of 2 s.
    c.pri.kill9();
    let path = c.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // Its stderr (georepd.out) stands for the journal's stream.
    let out = c.pri.root.join("georepd.out");
    let journal = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&out).unwrap();
        format!("{}:{}", m.dev(), m.ino())
    };
    let logged_before = std::fs::read_to_string(&out).unwrap().len();
    c.pri.vars = vec![
        ("NOTIFY_SOCKET".into(), path.display().to_string()),
        ("WATCHDOG_USEC".into(), "2000000".into()),
        ("JOURNAL_STREAM".into(), journal),
    ];
    c.pri.start();
    let got = messages_until(&sock, "READY=1", Duration::from_secs(20));
    assert!(got.iter().any(|m| m.starts_with("READY=1\nSTATUS=serving ")), "{got:?}");
    // Ready means ready: the API and the control socket answer at once.
    let o = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/api/v1/volumes", c.pri.api_addr()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "401", "the API answers (without a token, 401)");
    c.pri.cli("volume info pvol").ok();
    // The watchdog hears from it about every second.
    let got = messages_until(&sock, "WATCHDOG=1", Duration::from_secs(5));
    assert!(got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
    assert!(wait_until(Duration::from_secs(20), || c.worker_pid().is_some()), "the worker came back");
    // To the journal, lines carry their priority and no timestamp (the journal stamps them);
    // the worker, whose stderr is its own log file, keeps its timestamps.
    let journal = std::fs::read_to_string(&out).unwrap()[logged_before..].to_string();
    let serving = journal.lines().find(|l| l.contains("serving")).unwrap_or_else(|| panic!("{journal}"));
    assert!(serving.starts_with("<6>georep::daemon: georepd "), "{journal}");
    assert!(c.worker_log().lines().last().is_some_and(|l| l.starts_with('[')), "{}", c.worker_log());

    // SIGTERM: STOPPING=1, the workers gone, exit 0; the user's mount still works.
    let status = c.pri.terminate(Duration::from_secs(20)).expect("georepd ends within 20 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    let got = messages_until(&sock, "STOPPING=1", Duration::from_secs(1));
    assert!(got.iter().any(|m| m.starts_with("STOPPING=1")), "{got:?}");
    assert_eq!(c.worker_pid(), None, "no worker outlives georepd's stop");
    std::fs::write(c.p("while-down"), "written while georepd was stopped").unwrap();
    assert_eq!(std::fs::read(c.p("before")).unwrap(), b"1");

    // Started again, the session resumes, and what was written meanwhile arrives.
    c.pri.vars.clear();
    c.pri.start();
    c.assert_converged(Duration::from_secs(60));
    c.geo("stop").ok();
}
