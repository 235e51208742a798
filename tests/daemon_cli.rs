//! The CLI against real daemons: volume and session lifecycles, config, status and checkpoint
//! rules as GlusterFS's `00-georep-verify-setup.t` and `01-georep-glusterd-tests.t` check
//! them (reference 7.2, 7.4), with the exact messages and status columns.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use common::*;

const TITLES: [&str; 9] = [
    "PRIMARY NODE",
    "PRIMARY VOL",
    "PRIMARY BRICK",
    "SECONDARY USER",
    "SECONDARY",
    "SECONDARY NODE",
    "STATUS",
    "CRAWL STATUS",
    "LAST_SYNCED",
];

fn ok_msg(c: &Cluster, rest: &str, verb: &str) {
    assert_eq!(
        c.geo(rest).ok(),
        format!("{verb} geo-replication session between pvol & sec::svol has been successful\n")
    );
}

fn status_of(c: &Cluster) -> String {
    let rows = c.rows(false);
    assert_eq!(rows.len(), 1, "one brick, one row: {rows:?}");
    rows[0][6].clone()
}

#[test]
fn volume_rules() {
    let c = Cluster::new(false);
    // Mounting a volume that is not started is refused.
    let o = std::process::Command::new(mount_bin()).arg("pvol").arg(&c.pmnt).envs(c.pri.envs()).output().unwrap();
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "mount.georep: volume pvol is not started");
    assert_eq!(
        c.pri.cli(&format!("volume create pvol pri:{}/other", c.dir.path().display())).refused(),
        "volume create: pvol: failed: Volume pvol already exists"
    );
    assert_eq!(
        c.pri.cli(&format!("volume create v2 nohost:{}/v2", c.dir.path().display())).refused(),
        "volume create: v2: failed: Host nohost is not in 'Peer in Cluster' state"
    );
    assert!(c.pri.cli("volume create v3 pri:relative/path").refused().contains("invalid brick"));
    assert_eq!(
        c.pri.cli("volume start nosuch").refused(),
        "volume start: nosuch: failed: Volume nosuch does not exist"
    );
    assert_eq!(
        c.pri.cli("volume stop pvol").refused(),
        "volume stop: pvol: failed: Volume pvol is not in the started state"
    );
    assert_eq!(c.pri.cli("volume start pvol").ok(), "volume start: pvol: success\n");
    assert_eq!(c.pri.cli("volume start pvol").refused(), "volume start: pvol: failed: Volume pvol already started");
    assert_eq!(
        c.pri.cli("volume delete pvol").refused(),
        "volume delete: pvol: failed: Volume pvol has been started.Volume needs to be stopped before deletion."
    );
    let info = c.pri.cli("vol info pvol").ok().to_string();
    assert!(info.contains("Volume Name: pvol\n") && info.contains("Status: Started\n"), "{info}");
    assert!(info.contains(&format!("Brick1: pri:{}\n", c.pbrick.display())), "{info}");
    assert_eq!(c.pri.cli("volume list").ok(), "pvol\n");
    let j: serde_json::Value = serde_json::from_str(c.pri.cli("volume info --json").ok()).unwrap();
    assert_eq!(j[0]["name"], "pvol");
    assert_eq!(j[0]["status"], "Started");
    // The brick was made a brick: it has the volume's id.
    let id = std::fs::read_to_string(c.pbrick.join(".georep/brick.id")).unwrap();
    assert!(id.contains(j[0]["id"].as_str().unwrap()), "{id}");
    c.mount_primary();
    std::fs::write(c.p("f"), "x").unwrap();
    assert_eq!(std::fs::read(c.pbrick.join("f")).unwrap(), b"x");
    // Mounted: stopping is refused unless forced; forced, the mount is cut off (ENOTCONN).
    assert_eq!(
        c.pri.cli("volume stop pvol").refused(),
        format!(
            "volume stop: pvol: failed: Volume pvol is mounted on this node ({}). Unmount it first, or use 'force': the mounts will then fail with ENOTCONN",
            c.pmnt.display()
        )
    );
    assert_eq!(c.pri.cli("volume stop pvol force").ok(), "volume stop: pvol: success\n");
    // (A request the kernel had queued as the connection went may end ECONNABORTED.)
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::metadata(&c.pmnt)
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))),
        "the mount of a force-stopped volume reports ENOTCONN"
    );
    assert!(std::process::Command::new("umount").arg("-l").arg(&c.pmnt).status().unwrap().success());
    assert_eq!(c.pri.cli("volume delete pvol").ok(), "volume delete: pvol: success\n");
    assert_eq!(c.pri.cli("volume list").ok(), "No volumes present in cluster\n");
}

#[test]
fn session_lifecycle_config_and_status() {
    let c = Cluster::new(false);
    // Bad URLs (reference 7.2 step 2) and ports (7.3 step 9) never reach the daemon.
    assert!(
        c.pri.cli("volume geo-replication pvol sec:svol create push-pem").refused().contains("invalid secondary url")
    );
    assert!(
        c.pri.cli("volume geo-replication pvol sec:::svol create push-pem").refused().contains("invalid secondary url")
    );
    for p in ["-22", "abc", "6875943", "4.5", "22a"] {
        assert!(c.geo(&format!("create ssh-port {p} no-verify")).refused().contains("invalid ssh-port"), "{p}");
    }
    // Both volumes must exist and be started (7.4 steps 1-2).
    assert_eq!(c.geo("create push-pem").refused(), "Volume pvol needs to be started before geo-replication create");
    c.pri.cli("volume start pvol").ok();
    assert!(c.geo("create push-pem").refused().contains("Volume svol is not started"));
    c.sec.cli("volume start svol").ok();
    assert!(c.pri.cli("volume geo-replication nosuch sec::svol create push-pem").refused().contains("does not exist"));
    assert!(
        c.pri
            .cli("volume geo-replication pvol sec::nosuch create push-pem")
            .refused()
            .contains("Volume nosuch does not exist")
    );
    assert!(c.pri.cli("volume geo-replication pvol nohost::svol create push-pem").refused().contains("gsec_create"));
    // No session yet.
    let o = c.pri.cli("volume geo-replication status");
    assert_eq!((o.code, o.stderr.trim()), (1, "No active geo-replication sessions"));
    assert_eq!(
        c.geo("start").refused(),
        "Geo-replication session between pvol and sec::svol does not exist. Please create session and retry."
    );

    // A secondary volume that is not empty is refused unless forced.
    std::fs::write(c.sbrick.join("stray"), "x").unwrap();
    assert!(c.geo("create push-pem").refused().contains("sec::svol is not empty"));
    std::fs::remove_file(c.sbrick.join("stray")).unwrap();
    ok_msg(&c, "create push-pem", "Creating");
    // Re-creating, with root@ or without, fails; force passes (7.4 step 5).
    assert_eq!(c.geo("create push-pem").refused(), "Session between pvol and sec::svol is already created.");
    assert_eq!(
        c.pri.cli("volume geo-replication pvol root@sec::svol create push-pem").refused(),
        "Session between pvol and sec::svol is already created."
    );
    ok_msg(&c, "create push-pem force", "Creating");

    // status: the exact columns, one row, Created.
    let o = c.geo("status");
    let lines: Vec<&str> = o.ok().lines().collect();
    assert_eq!(lines[0], "");
    assert_eq!(split_columns(lines[1]), TITLES);
    assert!(lines[2].chars().all(|ch| ch == '-') && lines[2].len() >= lines[1].len());
    assert_eq!(
        split_columns(lines[3]),
        ["pri", "pvol", &c.pbrick.display().to_string(), "root", "ssh://sec::svol", "N/A", "Created", "N/A", "N/A"]
    );
    assert_eq!(lines.len(), 4);
    let detail = c.geo("status detail");
    assert_eq!(split_columns(detail.ok().lines().nth(1).unwrap()).len(), 16);
    assert_eq!(c.pri.cli("volume geo-replication pvol status").ok(), o.stdout, "the session's rows, by volume");
    assert_eq!(c.pri.cli("vol geo-rep status").ok(), o.stdout, "and all sessions, abbreviated");

    // config (7.4 step 8).
    let all = c.geo("config").ok().to_string();
    assert!(all.lines().any(|l| l == "sync_jobs:3"), "{all}");
    assert!(all.lines().all(|l| l.split_once(':').is_some_and(|(k, _)| !k.contains('-'))));
    let mut names: Vec<&str> = all.lines().map(|l| l.split(':').next().unwrap()).collect();
    let sorted = names.clone();
    names.sort();
    assert_eq!(names, sorted);
    assert_eq!(c.geo("config arsync-options -W").refused(), "invalid config name \"arsync-options\"");
    assert_eq!(c.geo("config rsync-options -W").ok(), "geo-replication config updated successfully\n");
    assert_eq!(c.geo("config rsync-options").ok(), "-W\n");
    assert_eq!(c.geo("config !rsync-options").ok(), "geo-replication config updated successfully\n");
    assert_eq!(c.geo("config rsync_options").ok(), "\n");
    assert_eq!(c.geo("config sync-xattrs false").ok(), "geo-replication config updated successfully\n");
    assert_eq!(c.geo("config sync_xattrs").ok(), "false\n");
    for bad in ["-22", "abc", "6875943", "4.5", "22a"] {
        let o = c.geo(&format!("config ssh-port {bad}"));
        assert!(o.refused().starts_with("invalid config value ssh-port="), "{bad}: {o:?}");
    }
    assert_eq!(c.geo("config ssh-port 22").ok(), "geo-replication config updated successfully\n");
    assert!(c.geo("config sync-jobs 0").refused().contains("sync-jobs"));
    assert_eq!(c.geo("config sync-jobs").ok(), "3\n", "nothing changed on a refusal");
    c.geo("config !sync-xattrs").ok();

    // Lifecycle (7.2 step 7, 7.4 step 9, 11).
    assert_eq!(
        c.geo("resume").refused(),
        "Resume check failed: geo-replication session between pvol and sec::svol is not running."
    );
    assert_eq!(
        c.geo("pause").refused(),
        "Pause check failed: geo-replication session between pvol and sec::svol is not running."
    );
    ok_msg(&c, "start", "Starting");
    assert_eq!(c.geo("start").refused(), "Geo-replication session between pvol and sec::svol already started.");
    ok_msg(&c, "start force", "Starting");
    assert!(
        wait_until(Duration::from_secs(20), || status_of(&c) == "Active"),
        "{:?}\n{}",
        c.rows(true),
        c.worker_log()
    );
    let rows = c.rows(false);
    assert_eq!(rows[0][5], "sec", "the secondary node of an Active worker");
    assert!(
        c.pri.cli("volume stop pvol").refused().contains("geo-replication sessions are active for the volume pvol")
    );
    assert_eq!(c.geo("resume").refused(), "Geo-replication session between pvol and sec::svol is not Paused.");
    ok_msg(&c, "resume force", "Resuming");
    ok_msg(&c, "pause", "Pausing");
    assert_eq!(status_of(&c), "Paused");
    assert_eq!(c.geo("pause").refused(), "Geo-replication session between pvol and sec::svol already Paused.");
    ok_msg(&c, "pause force", "Pausing");
    ok_msg(&c, "resume", "Resuming");
    assert!(wait_until(Duration::from_secs(20), || status_of(&c) == "Active"));
    assert_eq!(
        c.geo("delete").refused(),
        "Geo-replication session between pvol and sec::svol is still active. Please stop the session and retry."
    );
    ok_msg(&c, "stop", "Stopping");
    assert_eq!(status_of(&c), "Stopped");
    assert!(c.worker_pid().is_none(), "the worker is gone");
    assert_eq!(c.geo("stop").refused(), "Geo-replication session between pvol and sec::svol is not running.");
    ok_msg(&c, "stop force", "Stopping");
    assert!(c.geo("resume").refused().starts_with("Resume check failed"));
    assert!(c.geo("delete force").refused().contains("usage"), "delete takes no force, as in GlusterFS");
    ok_msg(&c, "delete reset-sync-time", "Deleting");
    let o = c.geo("status");
    assert_eq!((o.code, o.stderr.trim()), (1, "No active geo-replication sessions between pvol and sec::svol"));
    assert!(!c.pbrick.join(".georep/consumers/georep-pvol_sec_svol").exists(), "reset-sync-time forgets the stime");
    assert_eq!(c.pri.cli("volume stop pvol").ok(), "volume stop: pvol: success\n");
}

#[test]
fn status_json_xml_and_checkpoint() {
    let c = Cluster::new(true);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    std::fs::write(c.p("file1"), "one").unwrap();
    c.assert_converged(Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(20), || c.rows(false).first().is_some_and(|r| r[7] == "Changelog Crawl")));
    // A checkpoint is complete once everything recorded before it is synced: with nothing
    // written after it, it stays pending (7.4 step 7), and a write completes it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.geo("config checkpoint now").ok(), "geo-replication config updated successfully\n");
    std::thread::sleep(Duration::from_millis(1500));
    let yes = |c: &Cluster| c.rows(true).iter().filter(|r| r.len() == 16 && r[14] == "Yes").count();
    assert_eq!(yes(&c), 0, "{:?}", c.rows(true));
    assert_eq!(c.rows(true)[0][14], "No");
    let _ = std::fs::File::options().write(true).open(c.p("file1")).unwrap().set_len(0);
    assert!(wait_until(Duration::from_secs(20), || yes(&c) == 1), "{:?}", c.rows(true));
    let row = &c.rows(true)[0];
    assert_ne!(row[13], "N/A", "checkpoint time shown");
    assert_ne!(row[15], "N/A", "completion time shown");

    let j: serde_json::Value = serde_json::from_str(c.geo("status detail --json").ok()).unwrap();
    let r = &j[0];
    for k in ["worker_status", "crawl_status", "last_synced", "entry", "data", "meta", "failures", "checkpoint_time"] {
        assert!(r.get(k).is_some(), "{k} in {r}");
    }
    assert_eq!(r["worker_status"], "Active");
    assert_eq!(r["checkpoint_completed"], "Yes");
    assert!(r["files_synced"].as_u64().unwrap() >= 1);
    assert!(r["lag_seconds"].is_number());
    // --watch redraws until interrupted.
    let o = std::process::Command::new("timeout")
        .args(["2.5", georep_bin(), "volume", "geo-replication", "pvol", "sec::svol", "status", "--watch"])
        .envs(c.pri.envs())
        .output()
        .unwrap();
    let w = String::from_utf8_lossy(&o.stdout);
    assert!(w.matches("Every 1.0s").count() >= 2 && w.matches("PRIMARY NODE").count() >= 2, "{w}");
    assert!(c.geo("status --watch --json").refused().contains("--watch"));
    let x = c.geo("status --xml").ok().to_string();
    assert!(x.starts_with("<?xml") && x.contains("<cliOutput>") && x.contains("<status>Active</status>"), "{x}");
    assert!(x.contains("<session_secondary>ssh://sec::svol</session_secondary>"), "{x}");
}

/// `create` checks the secondary over the network without holding the daemon's command lock:
/// a secondary that never answers keeps no other command waiting.
#[test]
fn a_silent_secondary_blocks_no_other_command() {
    let c = Cluster::remote(|_, _| Vec::new());
    c.pri.cli("system execute gsec_create").ok();
    // A "secondary" that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let (conn, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(8));
        drop(conn);
    });
    let envs = c.pri.envs();
    let create = std::thread::spawn(move || {
        std::process::Command::new(georep_bin())
            .args(["volume", "geo-replication", "pvol", "127.0.0.2::svol", "create", "ssh-port", &port.to_string()])
            .envs(envs)
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = std::time::Instant::now();
    let other = c.pri.root.join("otherbrick");
    c.pri.cli(&format!("volume create other pri:{}", other.display())).ok();
    assert!(t.elapsed() < Duration::from_secs(3), "a command waited {:?} for the create", t.elapsed());
    held.join().unwrap();
    let out = create.join().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!c.pri.cli("volume geo-replication status").stdout.contains("127.0.0.2"), "no session was made");
}

/// Every program's `--version` names its release, its commit and the version of each format it
/// writes and protocol it speaks; `-V` the release alone.
#[test]
fn every_program_prints_its_versions() {
    let dir = std::path::Path::new(georep_bin()).parent().unwrap();
    for (bin, name) in [
        ("georep", "georep"),
        ("georepd", "georepd"),
        ("mount_georep", "mount.georep"),
        ("gluster-mountbroker", "gluster-mountbroker"),
    ] {
        let run = |flag: &str| {
            let o = Command::new(dir.join(bin)).arg(flag).output().unwrap();
            assert!(o.status.success(), "{bin} {flag}");
            String::from_utf8(o.stdout).unwrap()
        };
        assert_eq!(run("-V"), format!("{name} {}\n", georep::VERSION));
        let long = run("--version");
        let first = long.lines().next().unwrap();
        let commit =
            first.strip_prefix(&format!("{name} {} (commit ", georep::VERSION)).unwrap_or_else(|| panic!("{long}"));
        assert!(commit.len() > 1 && commit.ends_with(')'), "{long}");
        for (format, v, _) in georep::version::formats() {
            assert!(
                long.lines().any(|l| l.starts_with(&format!("{format}: {v}"))),
                "{bin}: {format} missing in\n{long}"
            );
        }
    }
}
