//! Replica volumes on etcd (SPEC 3, 10): one brick on storage three nodes reach, one of them
//! Active (elected), the others Passive; failover when the Active dies or stops answering,
//! with its fencing; the role handed back to the volume's first node, without flapping.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::Node;
use common::etcd::Etcd;

#[derive(Debug)]
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Every brick row of the session, as `status --json` on `n` shows them: (node, status).
fn rows(n: &Node) -> Vec<(String, String)> {
    let o = n.cli("volume geo-replication rvol sec::svol status --json");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["primary_node"].as_str().unwrap_or_default().to_string(),
                        r["worker_status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The node whose row is Active, if exactly one is and the others are Passive.
fn active(n: &Node) -> Option<String> {
    let r = rows(n);
    let act: Vec<&(String, String)> = r.iter().filter(|(_, s)| s == "Active").collect();
    (act.len() == 1 && r.iter().filter(|(_, s)| s == "Passive").count() == r.len() - 1).then(|| act[0].0.clone())
}

/// Mounts the volume through node `n` at `mnt`.
fn mount(n: &Node, mnt: &Path) -> Result<Unmount, String> {
    std::fs::create_dir_all(mnt).unwrap();
    let o = std::process::Command::new(n.exe("mount_georep")).arg("rvol").arg(mnt).envs(n.envs()).output().unwrap();
    if o.status.success() {
        Ok(Unmount(mnt.to_path_buf()))
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn pids(pattern: &str) -> Vec<i32> {
    let o = std::process::Command::new("pgrep").args(["-f", "--", pattern]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn signal(pid: i32, s: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s);
}

/// The files `f{i}` for `i` in `range`, written through `mnt` (stops at the first error: the
/// mount's node died).
fn write_files(mnt: &Path, range: std::ops::Range<usize>) -> usize {
    let mut n = 0;
    for i in range {
        if std::fs::create_dir_all(mnt.join(format!("d{}", i / 1000)))
            .and_then(|()| std::fs::write(mnt.join(format!("d{}/f{i}", i / 1000)), format!("file {i}\n")))
            .is_err()
        {
            break;
        }
        n += 1;
    }
    n
}

/// Three primary nodes on one etcd, a replica 3 volume on one brick they share, a session to
/// a secondary node. n1 (the volume's first node) is Active and the others Passive, on every
/// node's status; a mount on a Passive node is refused in one line naming the Active. Then:
/// - n1's georepd and brick server SIGKILLed during a copy of 10,000 files: n2 is Active
///   within the bound (the lease's TTL, 10 s, and the pass, 1 s: measured), the rest of the
///   copy goes through n2, and the secondary ends with exactly the brick's tree;
/// - n1 back: Passive, then Active again once it has run `--replica-hold-time` (the role
///   handed back, once);
/// - n1's georepd and worker SIGSTOPped past the lease: its brick server stops by itself, n2
///   takes over, and n1, continued, stops shipping and turns Passive; the store's stime is
///   the new term's; the trees converge.
#[test]
fn replica_failover_handback_and_fencing() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), 1);
    let url = format!("etcd://{}/replica", etcd.endpoints());
    let mut sec = Node::new(dir.path(), "sec");
    sec.start();
    let sbrick = dir.path().join("sbrick");
    sec.cli(&format!("volume create svol sec:{}", sbrick.display())).ok();
    sec.cli("volume start svol").ok();
    let hold = 8;
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| {
            let mut node = Node::new(dir.path(), n);
            node.extra = vec!["--store".into(), url.clone(), "--replica-hold-time".into(), hold.to_string()];
            node.peers.push(("sec".into(), sec.run_dir()));
            node.start();
            node
        })
        .collect();
    let brick = dir.path().join("shared/rbrick");
    let b = brick.display();
    // A node unknown to the cluster is refused.
    let e = nodes[0].cli(&format!("volume create rvol replica 2 n1:{b} n9:{b}")).refused().to_string();
    assert_eq!(e, "volume create: rvol: failed: Host n9 is not in 'Peer in Cluster' state");
    nodes[0].cli(&format!("volume create rvol replica 3 n1:{b} n2:{b} n3:{b}")).ok();
    let info = nodes[2].cli("volume info rvol").ok().to_string();
    assert!(info.contains(&format!("n3:{b}")), "{info}");
    nodes[1].cli("volume start rvol").ok();
    let geo = |n: &Node, rest: &str| n.cli(&format!("volume geo-replication rvol sec::svol {rest}"));
    geo(&nodes[1], "create push-pem").ok();
    geo(&nodes[2], "start").ok();
    for n in &nodes {
        assert!(
            common::wait_until(Duration::from_secs(30), || active(n).as_deref() == Some("n1")),
            "{}: n1 Active, n2 and n3 Passive: {:?}",
            n.name,
            rows(n)
        );
    }
    // A Passive node refuses to mount it, naming the Active.
    let e = mount(&nodes[1], &dir.path().join("m2")).expect_err("n2 is Passive");
    assert!(e.contains("Volume rvol is served by n1 (its Active node); this node is Passive for it"), "{e}");

    // n1 killed during the copy.
    const N: usize = 10_000;
    let m1 = dir.path().join("m1");
    let g1 = mount(&nodes[0], &m1).unwrap();
    let server = format!("--serve {b}");
    let m1c = m1.clone();
    let writer = std::thread::spawn(move || write_files(&m1c, 0..N));
    let under_way = Instant::now() + Duration::from_secs(60);
    while !brick.join("d0/f300").exists() && Instant::now() < under_way {
        std::thread::sleep(Duration::from_millis(2));
    }
    for p in pids(&server) {
        signal(p, nix::sys::signal::Signal::SIGKILL);
    }
    nodes[0].kill9();
    let killed = Instant::now();
    let copied = writer.join().unwrap();
    drop(g1);
    assert!(copied < N, "the copy was cut short ({copied})");
    assert!(
        common::wait_until(Duration::from_secs(30), || rows(&nodes[1]).iter().any(|(n, s)| n == "n2" && s == "Active")),
        "n2 takes over: {:?}",
        rows(&nodes[1])
    );
    let failover = killed.elapsed();
    println!("failover: n1 killed to n2 Active in {failover:?} (bound: the lease's 10 s and the 1 s pass)");
    assert!(failover < Duration::from_secs(13), "{failover:?}");
    let (_, s1) = rows(&nodes[1]).into_iter().find(|(n, _)| n == "n1").unwrap();
    assert_eq!(s1, "Faulty", "the dead node's row");
    // The rest of the copy through n2; everything on the secondary, exactly.
    let m2 = dir.path().join("m2");
    let g2 = mount(&nodes[1], &m2).unwrap();
    let rest = write_files(&m2, 0..N);
    assert_eq!(rest, N);
    let converged = |within| {
        common::wait_until(within, || common::try_describe_tree(&sbrick).ok() == common::try_describe_tree(&brick).ok())
    };
    assert!(converged(Duration::from_secs(120)), "the secondary has the brick's tree");
    let on_secondary = walkdir(&sbrick);
    assert_eq!(on_secondary, N + N.div_ceil(1000), "nothing missing or extra");
    println!("converged {:?} after the kill", killed.elapsed());

    // n1 back: Passive, and after the hold time Active again (handed back once).
    nodes[0].start();
    assert!(
        common::wait_until(Duration::from_secs(15), || rows(&nodes[0])
            .iter()
            .any(|(n, s)| n == "n1" && s == "Passive")),
        "{:?}",
        rows(&nodes[0])
    );
    drop(g2);
    assert!(
        common::wait_until(Duration::from_secs(hold * 2 + 15), || active(&nodes[0]).as_deref() == Some("n1")),
        "handed back to n1: {:?}",
        rows(&nodes[0])
    );
    let log2 = std::fs::read_to_string(nodes[1].root.join("georepd.out")).unwrap();
    assert_eq!(log2.matches("hands the Active role back to n1").count(), 1, "{log2}");

    // n1's georepd and worker SIGSTOPped past the lease: n2 takes over; n1, continued, stops.
    let spec1 = nodes[0].root.join("state/geo-replication/rvol_sec_svol/worker.json");
    let workers = pids(&format!("worker {}", spec1.display()));
    assert_eq!(workers.len(), 1, "n1's worker runs");
    let g1 = mount(&nodes[0], &m1).unwrap();
    std::fs::write(m1.join("before-stop"), "n1").unwrap();
    let stopped = [nodes[0].pid().unwrap() as i32, workers[0]];
    for p in stopped {
        signal(p, nix::sys::signal::Signal::SIGSTOP);
    }
    let t = Instant::now();
    // Its brick server stops by itself before the lease can expire.
    assert!(common::wait_until(Duration::from_secs(12), || pids(&server).is_empty()), "n1's brick server stopped");
    println!("n1's brick server stopped itself {:?} after SIGSTOP", t.elapsed());
    let only_n2 = |n: &Node| {
        let r = rows(n);
        r.iter().filter(|(_, s)| s == "Active").map(|(n, _)| n.as_str()).collect::<Vec<_>>() == ["n2"]
    };
    assert!(common::wait_until(Duration::from_secs(30), || only_n2(&nodes[2])), "{:?}", rows(&nodes[2]));
    println!("n2 Active {:?} after n1 was stopped", t.elapsed());
    drop(g1);
    let g2 = mount(&nodes[1], &m2).unwrap();
    std::fs::write(m2.join("after-stop"), "n2").unwrap();
    for p in stopped {
        signal(p, nix::sys::signal::Signal::SIGCONT);
    }
    assert!(
        common::wait_until(Duration::from_secs(20), || rows(&nodes[0])
            .iter()
            .any(|(n, s)| n == "n1" && s == "Passive")),
        "n1 Passive once continued: {:?}",
        rows(&nodes[0])
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || pids(&format!("worker {}", spec1.display())).is_empty()),
        "n1's worker is gone"
    );
    let glog = std::fs::read_to_string(nodes[0].root.join("georepd.out")).unwrap();
    assert!(glog.contains("may lapse") || glog.contains("is over"), "n1 knows its term ended: {glog}");
    let wlog =
        std::fs::read_to_string(nodes[0].root.join("log/geo-replication/rvol_sec_svol/gsyncd.log")).unwrap_or_default();
    for l in glog
        .lines()
        .chain(wlog.lines())
        .filter(|l| l.contains("term") || l.contains("fenced") || l.contains("shipping"))
    {
        println!("n1: {l}");
    }
    // The secondary refused the old term: its receivers ended when n2's worker spoke.
    assert!(wlog.contains("fenced: the primary volume") && wlog.contains("this receiver stops"), "{wlog}");
    assert!(converged(Duration::from_secs(60)), "converged after the SIGSTOP");
    assert_eq!(std::fs::read_to_string(sbrick.join("after-stop")).unwrap(), "n2");
    // The store's stime is the new term's (n2's), the last to commit.
    let stime = etcd.get("replica/stimes/rvol_sec_svol").expect("a stime in the store");
    assert!(stime.contains("\"node\":\"n2\""), "{stime}");
    drop(g2);
}

/// How many entries are under `root` (its private directories left out).
fn walkdir(root: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if d == root && (e.file_name() == ".georep" || e.file_name() == ".gfid") {
                continue;
            }
            n += 1;
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    n
}
