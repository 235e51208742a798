//! Replica volumes on etcd (SPEC 3, 10): one brick on storage three nodes reach, one of them
//! Active (elected), the others Passive; failover when the Active dies or stops answering,
//! with its fencing; the role handed back to the volume's first node, without flapping.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::Node;
use common::etcd::Etcd;
use common::netns::Host;

#[derive(Debug)]
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// A secondary node `sec` with its started volume `svol` (whose brick is returned), and the
/// primary nodes `names`, each (name, net) a machine of its own: a network namespace at
/// 10.231.`net`.2 (this machine, with etcd, at .1) whose daemon is started with the flags
/// `node_of` gives it and reaches `sec` at the run directory it gives. The namespaces are
/// returned for cutting a node's network or halting it whole.
fn site(
    dir: &Path,
    names: &[(&str, u8)],
    node_of: impl Fn(&str, &Node, &Host) -> (Vec<String>, PathBuf),
) -> (Node, PathBuf, Vec<Node>, Vec<Host>) {
    let mut sec = Node::new(dir, "sec");
    sec.start();
    let sbrick = dir.join("sbrick");
    sec.cli(&format!("volume create svol sec:{}", sbrick.display())).ok();
    sec.cli("volume start svol").ok();
    let mut hosts = Vec::new();
    let mut nodes = Vec::new();
    for &(n, net) in names {
        let host = Host::bare(dir, &format!("r{net}"), net);
        let mut node = Node::new(dir, n);
        node.on(&host);
        let (extra, peer) = node_of(n, &sec, &host);
        node.extra = extra;
        node.peers.push(("sec".into(), peer));
        node.start();
        nodes.push(node);
        hosts.push(host);
    }
    (sec, sbrick, nodes, hosts)
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

/// Mounts the volume `rvol` through node `n` at `mnt`.
fn mount(n: &Node, mnt: &Path) -> Result<Unmount, String> {
    mount_vol(n, "rvol", mnt)
}

fn mount_vol(n: &Node, vol: &str, mnt: &Path) -> Result<Unmount, String> {
    std::fs::create_dir_all(mnt).unwrap();
    let o = std::process::Command::new(n.exe("mount_georep")).arg(vol).arg(mnt).envs(n.envs()).output().unwrap();
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
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    let hold = 8;
    let (sec, sbrick, mut nodes, hosts) = site(dir.path(), &[("n1", 71), ("n2", 72), ("n3", 73)], |_, sec, h| {
        let url = format!("etcd://{}/replica", etcd.endpoints_via(&h.gateway()));
        (vec!["--store".into(), url, "--replica-hold-time".into(), hold.to_string()], sec.run_dir())
    });
    let brick = dir.path().join("shared/rbrick");
    let b = brick.display();
    // A node unknown to the cluster is refused.
    let e = nodes[0].cli(&format!("volume create rvol replica 2 n1:{b} n9:{b}")).refused().to_string();
    assert_eq!(e, "volume create: rvol: failed: Host n9 is not in 'Peer in Cluster' state");
    nodes[0].cli(&format!("volume create rvol replica 3 n1:{b} n2:{b} n3:{b}")).ok();
    let info = nodes[2].cli("volume info rvol").ok().to_string();
    assert!(info.contains(&format!("n3:{b}")), "{info}");
    // Given on a node that hosts none of its bricks: the first brick's node makes it, and a
    // refusal there comes back in one line.
    let x = dir.path().join("xbrick");
    nodes[2].cli(&format!("volume create xvol n1:{}", x.display())).ok();
    assert!(x.join(".georep/brick.id").exists(), "n1 opened the brick");
    let info = nodes[1].cli("volume info xvol").ok().to_string();
    assert!(info.contains(&format!("n1:{}", x.display())), "{info}");
    let e = nodes[2].cli(&format!("volume create yvol n1:{b}")).refused().to_string();
    assert_eq!(
        e,
        format!(
            "volume create: yvol: failed: The brick n1:{b} is already part of a volume. Use 'force' to reuse it (its volume id is kept)"
        )
    );
    nodes[2].cli("volume delete xvol").ok();
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
    // n1 halted: every process of its machine (georepd, brick server, worker) SIGKILLed.
    for p in hosts[0].pids() {
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
    // The secondary refused the old term: its receivers ended when n2's worker spoke, by
    // themselves on seeing the newer token, or ended by n2's receiver taking the volume
    // (`fs::claims`), whichever came first.
    let blog = std::fs::read_to_string(sec.root.join("log/bricks/svol.log")).unwrap_or_default();
    assert!(
        (wlog.contains("fenced: the primary volume") && wlog.contains("this receiver stops"))
            || blog.contains("took over: the one it replaced was ended"),
        "{wlog}\n{blog}"
    );
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

/// A node whose worker keeps failing (here n1 cannot reach the secondary; n2 can) resigns
/// after its workers were restarted three times, and stands again only after a backoff: n2
/// serves the volume meanwhile and replicates; the role changes hands once.
#[test]
fn a_faulty_active_resigns() {
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    // n1 reaches no secondary: its "sec" is a directory where nobody answers.
    let (_sec, sbrick, nodes, _hosts) = site(dir.path(), &[("n1", 74), ("n2", 75)], |n, sec, h| {
        let url = format!("etcd://{}/faulty", etcd.endpoints_via(&h.gateway()));
        (vec!["--store".into(), url], if n == "n1" { dir.path().join("nowhere") } else { sec.run_dir() })
    });
    let brick = dir.path().join("shared/fbrick");
    let b = brick.display();
    nodes[0].cli(&format!("volume create rvol replica 2 n1:{b} n2:{b}")).ok();
    nodes[0].cli("volume start rvol").ok();
    let geo = |n: &Node, rest: &str| n.cli(&format!("volume geo-replication rvol sec::svol {rest}"));
    geo(&nodes[1], "create push-pem").ok();
    let start = Instant::now();
    geo(&nodes[1], "start").ok();
    assert!(
        common::wait_until(Duration::from_secs(60), || rows(&nodes[1]).iter().any(|(n, s)| n == "n2" && s == "Active")),
        "n2 serves the volume once n1 resigned: {:?}",
        rows(&nodes[1])
    );
    println!("n1 resigned and n2 was Active {:?} after the start", start.elapsed());
    let m = dir.path().join("m2");
    let _g = mount(&nodes[1], &m).unwrap();
    std::fs::write(m.join("through-n2"), "ok").unwrap();
    assert!(common::wait_until(Duration::from_secs(30), || std::fs::read(sbrick.join("through-n2")).is_ok()));
    let log1 = std::fs::read_to_string(nodes[0].root.join("georepd.out")).unwrap();
    assert!(log1.contains("its workers keep failing here") && log1.contains("stands again in 30s"), "{log1}");
    // n1 stays out for the backoff: n2 keeps the role.
    std::thread::sleep(Duration::from_secs(5));
    assert!(rows(&nodes[0]).iter().any(|(n, s)| n == "n1" && s == "Passive"), "{:?}", rows(&nodes[0]));
    let log2 = std::fs::read_to_string(nodes[1].root.join("georepd.out")).unwrap();
    assert_eq!(log2.matches("Active: this node serves it").count(), 1, "{log2}");
    drop(nodes);
}

/// The member of a three-member etcd that leads, killed and restarted three times while a
/// replica 2 volume replicates: never two Active nodes, checked from the store's history (every
/// change to the election key and to the session's stime since the first revision, in order):
/// a term begins only when none is held, and every stime was committed by the node that held
/// the term then. Replication continues.
#[test]
fn etcd_leader_restarts_never_give_two_actives() {
    common::require_root();
    let dir = common::Scratch::new();
    let mut etcd = Etcd::start(dir.path(), 3);
    let (_sec, sbrick, nodes, _hosts) = site(dir.path(), &[("n1", 76), ("n2", 77)], |_, sec, h| {
        (vec!["--store".into(), format!("etcd://{}/leader", etcd.endpoints_via(&h.gateway()))], sec.run_dir())
    });
    let brick = dir.path().join("shared/lbrick");
    let b = brick.display();
    nodes[0].cli(&format!("volume create rvol replica 2 n1:{b} n2:{b}")).ok();
    nodes[0].cli("volume start rvol").ok();
    // Served once `volume start` returns: a mount on its first node works at once.
    let _first = mount(&nodes[0], &dir.path().join("mfirst")).expect("mounted right after volume start");
    let geo = |rest: &str| nodes[0].cli(&format!("volume geo-replication rvol sec::svol {rest}"));
    geo("create push-pem").ok();
    geo("start").ok();
    assert!(common::wait_until(Duration::from_secs(30), || active(&nodes[0]).is_some()), "{:?}", rows(&nodes[0]));
    let mut written = 0;
    for round in 0..3 {
        // Files through whichever node serves the volume now.
        let act = active(&nodes[0]).or_else(|| active(&nodes[1]));
        if let Some(a) = act {
            let n = nodes.iter().find(|n| n.name == a).unwrap();
            let m = dir.path().join(format!("m{round}"));
            if let Ok(_g) = mount(n, &m) {
                for i in 0..200 {
                    if std::fs::write(m.join(format!("r{round}-{i}")), format!("{round} {i}")).is_ok() {
                        written += 1;
                    }
                }
            }
        }
        let o = etcd.ctl(&["endpoint", "status", "-w", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let leader_id = status[0]["Status"]["leader"].as_u64().unwrap();
        let leader = status
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader_id))
            .unwrap();
        let ep = status[leader]["Endpoint"].as_str().unwrap().to_string();
        let i = etcd.members.iter().position(|m| ep.ends_with(&m.endpoint())).unwrap();
        println!("round {round}: restarting the leader {}", etcd.members[i].name);
        etcd.members[i].kill();
        std::thread::sleep(Duration::from_secs(2));
        etcd.members[i].restart();
        assert!(common::wait_until(Duration::from_secs(30), || etcd.healthy()), "etcd back");
    }
    // Replication continues: a file written now reaches the secondary.
    assert!(
        common::wait_until(Duration::from_secs(30), || active(&nodes[0]).is_some()),
        "one Active after the restarts: {:?}",
        rows(&nodes[0])
    );
    let a = active(&nodes[0]).unwrap();
    let n = nodes.iter().find(|n| n.name == a).unwrap();
    let m = dir.path().join("mlast");
    let g = mount(n, &m).unwrap();
    std::fs::write(m.join("last"), "after the restarts").unwrap();
    assert!(
        common::wait_until(Duration::from_secs(60), || std::fs::read_to_string(sbrick.join("last"))
            .is_ok_and(|s| s == "after the restarts")),
        "replication continues"
    );
    assert!(written > 0);
    drop(g);
    // The history, from the first revision.
    let events = history(&etcd, "leader/");
    let mut holder: Option<String> = None;
    let (mut terms, mut stimes) = (0, 0);
    for (op, key, value) in &events {
        if key == "leader/elections/rvol" {
            match op.as_str() {
                "PUT" => {
                    assert_eq!(holder, None, "a term began while {holder:?} held one: {events:?}");
                    let h: serde_json::Value = serde_json::from_str(value).unwrap();
                    holder = Some(h["name"].as_str().unwrap().to_string());
                    println!("term {}: {}", terms + 1, holder.as_deref().unwrap_or_default());
                    terms += 1;
                }
                _ => holder = None,
            }
        } else if key == "leader/stimes/rvol_sec_svol" {
            let s: serde_json::Value = serde_json::from_str(value).unwrap();
            assert_eq!(s["node"].as_str(), holder.as_deref(), "a stime from a node without the term: {events:?}");
            stimes += 1;
        }
    }
    println!("history: {terms} terms, {stimes} stimes committed, {} events", events.len());
    for n in &nodes {
        let log = std::fs::read_to_string(n.root.join("georepd.out")).unwrap_or_default();
        for l in log.lines().filter(|l| l.contains("election") || l.contains("lease")) {
            println!("{}: {l}", n.name);
        }
    }
    assert!(terms >= 1 && stimes >= 1, "{events:?}");
    assert!(terms <= 2, "few role changes across three leader restarts: {terms}");
}

/// Every change under `prefix` since the first revision, in order: (PUT or DELETE, key, value).
fn history(etcd: &Etcd, prefix: &str) -> Vec<(String, String, String)> {
    let o = std::process::Command::new("timeout")
        .args(["3", "etcdctl", "--endpoints", &etcd.members[0].endpoint(), "watch", "--rev", "1", "--prefix", prefix])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines().peekable();
    let mut out = Vec::new();
    while let Some(op) = lines.next() {
        let key = lines.next().unwrap_or_default().to_string();
        match op {
            "PUT" => out.push((op.to_string(), key, lines.next().unwrap_or_default().to_string())),
            "DELETE" => {
                // A delete's (empty) value line, if printed.
                if lines.peek().is_some_and(|l| l.is_empty()) {
                    lines.next();
                }
                out.push((op.to_string(), key, String::new()));
            }
            _ => {}
        }
    }
    out
}

/// n1, Active, loses etcd (not the secondary): short cuts (2 s, under the lease's TTL) change
/// nothing, five times over; a long one makes n1 stop by itself (its brick server and worker,
/// before its lease can expire) and n2 take over; from the store's history, only n2 commits
/// stimes after that. Back, n1 is Passive.
#[test]
fn a_node_cut_from_etcd_stops_itself() {
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    let (_sec, sbrick, nodes, hosts) = site(dir.path(), &[("n1", 78), ("n2", 79)], |_, sec, h| {
        (vec!["--store".into(), format!("etcd://{}/cut", etcd.endpoints_via(&h.gateway()))], sec.run_dir())
    });
    // n1's link down: its packets to etcd go nowhere (connections hang, as when a switch or a
    // cable fails), while it still reaches the secondary (a local peer, not over that link).
    let cut = |down: bool| hosts[0].link(!down);
    let brick = dir.path().join("shared/cbrick");
    let b = brick.display();
    nodes[0].cli(&format!("volume create rvol replica 2 n1:{b} n2:{b}")).ok();
    nodes[0].cli("volume start rvol").ok();
    let geo = |rest: &str| nodes[1].cli(&format!("volume geo-replication rvol sec::svol {rest}"));
    geo("create push-pem").ok();
    geo("start").ok();
    assert!(common::wait_until(Duration::from_secs(30), || active(&nodes[1]).as_deref() == Some("n1")));
    let server = format!("--serve {b}");
    let m1 = dir.path().join("m1");
    let g1 = mount(&nodes[0], &m1).unwrap();
    // Short cuts: nothing changes.
    for i in 0..5 {
        cut(true);
        if let Err(e) = std::fs::write(m1.join(format!("short-{i}")), "x") {
            let log = std::fs::read_to_string(nodes[0].root.join("georepd.out")).unwrap_or_default();
            let blog = std::fs::read_to_string(nodes[0].root.join("log/bricks/rvol.log")).unwrap_or_default();
            panic!("cut {i}: {e}\n{log}\n{blog}");
        }
        std::thread::sleep(Duration::from_secs(2));
        cut(false);
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(active(&nodes[1]).as_deref(), Some("n1"), "still n1: {:?}", rows(&nodes[1]));
    assert!(common::wait_until(Duration::from_secs(30), || sbrick.join("short-4").exists()), "replicated meanwhile");
    // A long cut: n1 stops itself, n2 takes over.
    cut(true);
    let t = Instant::now();
    assert!(common::wait_until(Duration::from_secs(12), || pids(&server).is_empty()), "n1's brick server stopped");
    let stopped = t.elapsed();
    assert!(
        common::wait_until(Duration::from_secs(20), || rows(&nodes[1]).iter().any(|(n, s)| n == "n2" && s == "Active")),
        "{:?}",
        rows(&nodes[1])
    );
    println!("cut from etcd: n1 stopped itself after {stopped:?}, n2 Active after {:?}", t.elapsed());
    assert!(stopped < Duration::from_secs(10), "before n1's lease could expire: {stopped:?}");
    drop(g1);
    let m2 = dir.path().join("m2");
    let g2 = mount(&nodes[1], &m2).unwrap();
    std::fs::write(m2.join("during-cut"), "n2").unwrap();
    assert!(common::wait_until(Duration::from_secs(30), || sbrick.join("during-cut").exists()));
    // Back: n1 Passive, n2 keeps the role (no hand-back before the hold time).
    cut(false);
    assert!(
        common::wait_until(Duration::from_secs(20), || rows(&nodes[0])
            .iter()
            .any(|(n, s)| n == "n1" && s == "Passive")),
        "{:?}",
        rows(&nodes[0])
    );
    drop(g2);
    // Only the holder of the term commits, before and after the cut.
    let events = history(&etcd, "cut/");
    let mut holder: Option<String> = None;
    let mut terms = Vec::new();
    for (op, key, value) in &events {
        if key == "cut/elections/rvol" {
            holder = (op == "PUT").then(|| {
                let h: serde_json::Value = serde_json::from_str(value).unwrap();
                h["name"].as_str().unwrap().to_string()
            });
            terms.extend(holder.clone());
        } else if key == "cut/stimes/rvol_sec_svol" {
            let s: serde_json::Value = serde_json::from_str(value).unwrap();
            assert_eq!(s["node"].as_str(), holder.as_deref(), "{events:?}");
        }
    }
    assert_eq!(terms, ["n1", "n2"], "one role change: {events:?}");
}

/// A secondary volume served by a cluster of its own: two secondary nodes (each a network
/// namespace with its sshd and its own home for the secondary user, named by its address) on
/// their etcd, with a replica 2 volume, and two primary nodes on theirs. One `gsec_create` on
/// one primary node gathers both primary nodes' keys; one `create push-pem` installs both on
/// both secondary nodes. The secondary node the worker reaches dies (its sshd, receivers,
/// georepd and brick server killed): the worker goes to the other, once that one serves the
/// volume, and the trees converge.
#[test]
fn a_secondary_cluster_keeps_receiving_when_its_node_dies() {
    use common::users::RootAlias;
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    let user = RootAlias::new(dir.path(), "georepsc");
    let op = dir.path().join("operator_key");
    let o = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&op).output();
    assert!(o.unwrap().status.success());
    let receiver = format!("{} receiver", common::shared_georep_bin(dir.path()).display());
    // The secondary's cluster.
    let sbrick = dir.path().join("shared/sbrick");
    let mut secs = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..2u8 {
        let addr = format!("10.231.{}.2", 61 + i);
        let mut node = Node::new(dir.path(), &addr);
        node.extra = vec!["--store".into(), format!("etcd://{}/sec", etcd.endpoints())];
        let home = dir.path().join(format!("home-s{i}"));
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::copy(op.with_extension("pub"), home.join(".ssh/authorized_keys")).unwrap();
        let env = [("GEOREP_RUN_DIR", node.run_dir().display().to_string())];
        hosts.push(Host::with_own_dir(dir.path(), &format!("sc{i}"), 61 + i, &env, &user.home, &home));
        assert_eq!(hosts[i as usize].addr, addr);
        node.start();
        secs.push(node);
    }
    let (a, b) = (secs[0].name.clone(), secs[1].name.clone());
    let sb = sbrick.display();
    secs[0].cli(&format!("volume create svol replica 2 {a}:{sb} {b}:{sb}")).ok();
    secs[1].cli("volume start svol").ok();
    // The primary's cluster.
    let pbrick = dir.path().join("shared/pbrick");
    let mut pris = Vec::new();
    for name in ["p1", "p2"] {
        let mut node = Node::new(dir.path(), name);
        node.extra = vec![
            "--store".into(),
            format!("etcd://{}/pri", etcd.endpoints()),
            "--operator-key".into(),
            op.display().to_string(),
            "--remote-receiver".into(),
            receiver.clone(),
        ];
        node.start();
        pris.push(node);
    }
    let pb = pbrick.display();
    pris[0].cli(&format!("volume create pvol replica 2 p1:{pb} p2:{pb}")).ok();
    pris[0].cli("volume start pvol").ok();
    pris[0].cli("system execute gsec_create").ok();
    let common_pub = std::fs::read_to_string(pris[0].root.join("state/geo-replication/common_secret.pem.pub"));
    let common_pub = common_pub.unwrap_or_else(|e| panic!("the common file: {e}"));
    assert_eq!(common_pub.lines().count(), 2, "both primary nodes' keys: {common_pub}");
    // One create push-pem, from the node that does not serve the volume, once svol is served.
    let url = format!("{}@{a}::svol", user.name);
    let geo = |n: &Node, rest: &str| n.cli(&format!("volume geo-replication pvol {url} {rest}"));
    assert!(
        common::wait_until(Duration::from_secs(20), || geo(&pris[1], "create push-pem").code == 0),
        "create push-pem: {:?}",
        geo(&pris[1], "create push-pem")
    );
    for (i, s) in secs.iter().enumerate() {
        let keys = std::fs::read_to_string(dir.path().join(format!("home-s{i}/.ssh/authorized_keys"))).unwrap();
        for k in common_pub.lines() {
            let line = format!("command=\"{receiver}\",restrict {k}");
            assert_eq!(keys.lines().filter(|l| *l == line).count(), 1, "{} has {k}: {keys}", s.name);
        }
    }
    geo(&pris[0], "start").ok();
    // (serving primary node, secondary node) of the Active row.
    let active_on = |n: &Node| -> Option<(String, String)> {
        let o = geo(n, "status --json");
        let v: serde_json::Value = serde_json::from_str(&o.stdout).ok()?;
        v.as_array()?.iter().find(|r| r["worker_status"] == "Active").map(|r| {
            (
                r["primary_node"].as_str().unwrap_or_default().into(),
                r["secondary_node"].as_str().unwrap_or_default().into(),
            )
        })
    };
    assert!(
        common::wait_until(Duration::from_secs(30), || active_on(&pris[1]).is_some_and(|(_, s)| s == a)),
        "one primary node Active, reaching {a}: {:?}",
        geo(&pris[1], "status detail")
    );
    let (serving, _) = active_on(&pris[1]).unwrap();
    let p = &pris[usize::from(serving == "p2")];
    let m = dir.path().join("pm");
    let g = mount_vol(p, "pvol", &m).unwrap();
    assert_eq!(write_files(&m, 0..1000), 1000);
    let converged = |within| {
        common::wait_until(within, || {
            common::try_describe_tree(&sbrick).ok() == common::try_describe_tree(&pbrick).ok()
        })
    };
    assert!(converged(Duration::from_secs(60)), "replicated through {a}");

    // The node the worker reaches dies; the users write on.
    let killed = Instant::now();
    hosts[0].kill_matching("");
    secs[0].kill9();
    for p in pids(&format!("--serve {sb}")) {
        signal(p, nix::sys::signal::Signal::SIGKILL);
    }
    assert_eq!(write_files(&m, 1000..3000), 2000);
    assert!(
        common::wait_until(Duration::from_secs(90), || active_on(&pris[1]) == Some((serving.clone(), b.clone()))),
        "the worker moved to {b}: {:?}\n{}",
        geo(&pris[1], "status detail"),
        std::fs::read_to_string(p.root.join(format!("log/geo-replication/pvol_{a}_svol/gsyncd.log")))
            .unwrap_or_default()
    );
    println!("the worker reached {b} {:?} after {a} died", killed.elapsed());
    assert!(converged(Duration::from_secs(90)), "the trees converge through {b}");
    println!("converged {:?} after {a} died", killed.elapsed());
    assert_eq!(walkdir(&sbrick), 3000 + 3, "nothing missing or extra");
    drop(g);
}
