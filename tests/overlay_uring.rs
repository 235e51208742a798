//! FUSE over io_uring: when the kernel offers it (`fuse.enable_uring`), the overlay serves its
//! requests from one ring per CPU, by a thread bound to that CPU; `-o no-uring` keeps to
//! `/dev/fuse`. Both paths give the same results and the same changelog.

mod common;

use std::fs;

use common::*;

const ENABLE: &str = "/sys/module/fuse/parameters/enable_uring";

/// Turns the kernel's FUSE-over-io_uring on for this test. `scripts/test` turns it on for the
/// whole run (and back as it was at the end), so no test turns it off again.
fn enable_uring() {
    require_root();
    let now = fs::read_to_string(ENABLE).unwrap_or_else(|e| panic!("{ENABLE}: {e}: kernel without FUSE io_uring"));
    if now.trim() != "Y" {
        fs::write(ENABLE, "Y").unwrap();
    }
}

/// The daemon's threads whose name starts with `prefix`: (name, voluntary context switches,
/// CPUs it may run on).
fn threads(pid: i32, prefix: &str) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let comm = fs::read_to_string(t.join("comm")).unwrap_or_default().trim().to_string();
        if !comm.starts_with(prefix) {
            continue;
        }
        let status = fs::read_to_string(t.join("status")).unwrap_or_default();
        let field =
            |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap_or_default();
        out.push((comm, field("voluntary_ctxt_switches:").parse().unwrap(), field("Cpus_allowed_list:")));
    }
    out.sort();
    out
}

fn switches(pid: i32, prefix: &str) -> u64 {
    threads(pid, prefix).iter().map(|t| t.1).sum()
}

/// Creates, reads, renames and removes `n` files; returns what the changelog says of it, with
/// GFIDs left out (they differ from mount to mount).
fn workload(m: &Mount, n: usize) -> Vec<String> {
    fs::create_dir(m.p("d")).unwrap();
    for i in 0..n {
        fs::write(m.p(&format!("d/f{i}")), format!("file {i}")).unwrap();
        assert_eq!(fs::read_to_string(m.p(&format!("d/f{i}"))).unwrap(), format!("file {i}"));
    }
    for i in 0..n {
        fs::rename(m.p(&format!("d/f{i}")), m.p(&format!("d/g{i}"))).unwrap();
    }
    assert_eq!(fs::read_dir(m.p("d")).unwrap().count(), n);
    for i in (0..n).step_by(2) {
        fs::remove_file(m.p(&format!("d/g{i}"))).unwrap();
    }
    for i in 0..n {
        assert_eq!(m.b(&format!("d/g{i}")).exists(), i % 2 == 1, "g{i} in the brick");
    }
    m.dump().iter().map(|l| without_gfids(l)).collect()
}

/// A changelog line with every GFID replaced by `G`.
fn without_gfids(line: &str) -> String {
    let word = |w: &str| if w.parse::<georep::types::Gfid>().is_ok() { "G".to_string() } else { w.to_string() };
    line.split(' ').map(|w| w.split('/').map(word).collect::<Vec<_>>().join("/")).collect::<Vec<_>>().join(" ")
}

fn daemon(m: &Mount) -> i32 {
    daemon_pid(&m.mnt).expect("the mount's daemon")
}

#[test]
fn requests_are_served_from_per_cpu_rings_bound_to_their_cpu() {
    enable_uring();
    let m = Mount::new("");
    let pid = daemon(&m);
    let cpus = std::thread::available_parallelism().unwrap().get();
    // The rings start once the mount is up.
    wait_until(std::time::Duration::from_secs(5), || threads(pid, "fuser-ring-").len() >= cpus);
    let rings = threads(pid, "fuser-ring-");
    assert!(rings.len() >= cpus, "one ring thread per CPU: {rings:?}");
    for (name, _, allowed) in &rings {
        let qid = name.trim_start_matches("fuser-ring-");
        assert_eq!(allowed, qid, "{name} is bound to CPU {qid}");
    }
    let (ring0, dev0) = (switches(pid, "fuser-ring-"), switches(pid, "fuser-") - switches(pid, "fuser-ring-"));
    let n = 300;
    workload(&m, n);
    let ring = switches(pid, "fuser-ring-") - ring0;
    let dev = switches(pid, "fuser-") - switches(pid, "fuser-ring-") - dev0;
    // Each file costs several requests (lookup, create, open, release, rename, unlink...); the
    // /dev/fuse threads only see what the kernel still sends there (forgets, interrupts).
    assert!(ring >= n as u64 * 3, "ring threads woke {ring} times for {n} files");
    assert!(dev * 10 < ring, "/dev/fuse threads woke {dev} times, the rings {ring}");
}

#[test]
fn no_uring_keeps_to_dev_fuse_with_the_same_results() {
    enable_uring();
    let a = Mount::new("no-uring");
    let b = Mount::new("");
    let n = 50;
    let (ra, rb) = (workload(&a, n), workload(&b, n));
    assert!(threads(daemon(&a), "fuser-ring-").is_empty(), "no ring threads under no-uring");
    assert!(!threads(daemon(&b), "fuser-ring-").is_empty());
    assert_eq!(ra, rb, "the same changelog through /dev/fuse and through the rings");
    assert_eq!(ra.iter().filter(|l| l.contains("UNLINK")).count(), n / 2, "{ra:?}");
    assert_eq!(describe_tree(&a.b("d")), describe_tree(&b.b("d")));
}

/// fsync waits on the disk: it is served by the daemon's slow-request threads, which reply
/// themselves, so that a ring's thread (one per CPU) is not held up by it.
#[test]
fn fsync_is_served_off_the_ring_threads() {
    enable_uring();
    let m = Mount::new("");
    let pid = daemon(&m);
    wait_until(std::time::Duration::from_secs(5), || !threads(pid, "fuser-ring-").is_empty());
    let before = switches(pid, "fs-slow-");
    let mut f = fs::File::create(m.p("f")).unwrap();
    for i in 0..50u8 {
        std::io::Write::write_all(&mut f, &[i; 4096]).unwrap();
        f.sync_all().unwrap();
    }
    let d = fs::File::open(m.p("")).unwrap();
    d.sync_all().unwrap();
    assert!(switches(pid, "fs-slow-") >= before + 51, "fsyncs went to the slow-request threads");
    assert_eq!(fs::read(m.b("f")).unwrap().len(), 50 * 4096);
}

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// While the rings serve requests, the `/dev/fuse` thread lets forgets pile up and takes them
/// in batches (one wake-up each, not one per unlinked file); every forget still arrives: the
/// daemon lets go of each unlinked inode (its descriptor), so the brick frees it.
#[test]
fn forgets_come_in_batches_and_every_removed_inode_is_let_go() {
    enable_uring();
    let m = Mount::new("");
    let pid = daemon(&m);
    wait_until(std::time::Duration::from_secs(5), || !threads(pid, "fuser-ring-").is_empty());
    let n = 2000;
    fs::create_dir(m.p("d")).unwrap();
    for i in 0..n {
        fs::File::create(m.p(&format!("d/f{i}"))).unwrap();
    }
    let held = open_fds(pid);
    assert!(held >= n, "the daemon holds each inode the kernel knows: {held} descriptors");
    let dev0 = switches(pid, "fuser-") - switches(pid, "fuser-ring-");
    for i in 0..n {
        fs::remove_file(m.p(&format!("d/f{i}"))).unwrap();
    }
    let released = wait_until(std::time::Duration::from_secs(10), || open_fds(pid) + n <= held + 20);
    assert!(released, "forgotten inodes let go: {} descriptors of {held}", open_fds(pid));
    let dev = switches(pid, "fuser-") - switches(pid, "fuser-ring-") - dev0;
    assert!(dev * 3 < n as u64, "the /dev/fuse thread woke {dev} times for {n} forgets");
    assert_eq!(fs::read_dir(m.b("d")).unwrap().count(), 0);
}
