//! Replication over SSH to a second host: a network namespace with its own OpenSSH server.
//! The session key (`gsec_create`) is installed on the secondary with a forced command, as the
//! secondary's operator does; `create` records the host key; the worker's connection is a
//! russh client to that sshd. The key runs the receiver and nothing else, and a changed host
//! key stops the session with that reason.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use common::netns::Host;
use common::*;

#[test]
fn replicates_over_ssh_to_another_host() {
    let c = Cluster::remote();
    let mut h = Host::new(c.dir.path(), "t1", 51);
    let url = format!("{}::svol", h.addr);
    let geo = |rest: &str| c.pri.cli(&format!("volume geo-replication pvol {url} {rest}"));
    let rows = || -> Vec<Vec<String>> {
        let o = geo("status detail");
        o.stdout.lines().skip(3).map(split_columns).collect()
    };

    // Without a session key there is nothing to log in with.
    assert!(geo("create push-pem").refused().contains("gsec_create"));
    let out = c.pri.cli("system execute gsec_create").ok().to_string();
    assert!(out.contains("common_secret.pem.pub"), "{out}");
    let key = c.pri.root.join("state/geo-replication/secret.pem");
    let public = std::fs::read_to_string(key.with_extension("pem.pub")).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    // Idempotent: the key is kept.
    c.pri.cli("sshkey generate").ok();
    assert_eq!(std::fs::read_to_string(key.with_extension("pem.pub")).unwrap(), public);

    // Not installed yet on the secondary: refused, with the reason.
    assert!(geo("create push-pem").refused().contains("authentication with the session key failed"));
    // The secondary's operator installs it, restricted to the receiver.
    std::fs::write(
        h.authorized_keys(),
        format!(
            "command=\"env GEOREP_RUN_DIR={} {} receiver\",restrict {}",
            c.sec.run_dir().display(),
            georep_bin(),
            public
        ),
    )
    .unwrap();
    assert!(geo("create push-pem ssh-port 2").refused().contains("unreachable"), "a closed port");
    assert_eq!(
        geo("create push-pem").ok(),
        format!("Creating geo-replication session between pvol & {url} has been successful\n")
    );
    // The host key was recorded.
    let known = std::fs::read_to_string(c.pri.root.join("state/geo-replication/known_hosts")).unwrap();
    let host_key = h.host_key();
    let key_b64 = host_key.split_whitespace().nth(1).unwrap();
    assert!(known.contains(key_b64), "{known}");

    geo("start").ok();
    std::fs::create_dir(c.p("d")).unwrap();
    std::fs::write(c.p("d/f"), "over ssh").unwrap();
    std::fs::write(c.p("big"), vec![7u8; 3 << 20]).unwrap();
    c.assert_converged(Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(20), || rows().first().is_some_and(|r| r[6] == "Active")), "{:?}", rows());
    assert_eq!(rows()[0][5], h.addr, "the secondary node");

    // The session key runs the receiver and nothing else: no shell, no command, no forwarding.
    let ssh = |extra: &[&str]| {
        Command::new("timeout")
            .args(["10", "ssh", "-i", key.to_str().unwrap(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"])
            .args(extra)
            .arg(format!("root@{}", h.addr))
            .output()
            .unwrap()
    };
    let o = ssh(&["id; echo pwned"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("uid=") && !out.contains("pwned"), "{out}");
    let o = ssh(&["-o", "ExitOnForwardFailure=yes", "-N", "-L", "12722:127.0.0.1:22"]);
    assert!(!o.status.success(), "port forwarding must be refused");

    // A changed host key: the worker refuses the server, and the row says why.
    h.new_host_key();
    geo("config sync-jobs 4").ok(); // restarts the worker
    assert!(
        wait_until(Duration::from_secs(30), || {
            let o = c.pri.cli(&format!("volume geo-replication pvol {url} status --json"));
            o.stdout.contains("host key changed")
        }),
        "{}",
        c.pri.cli(&format!("volume geo-replication pvol {url} status --json")).stdout
    );
    assert_eq!(rows().first().map(|r| r[6].clone()), Some("Faulty".into()));
    geo("stop").ok();
}
