//! End to end, with real mounts: a primary overlay, a secondary aux-gfid mount, and
//! `georep replicate` (worker + local receiver). Each phase ends with an exact comparison of
//! the two trees (names, types, content, modes, owners, symlink targets, hard links, xattrs).

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use common::*;

struct Pair {
    p: Mount,
    s: Mount,
}

impl Pair {
    fn new() -> Pair {
        Pair::with("rollover-time=0.1")
    }

    /// A pair whose primary is mounted with `opts`.
    fn with(opts: &str) -> Pair {
        let p = Mount::new(opts);
        let s = Mount::new("aux-gfid-mount,rollover-time=600");
        Pair { p, s }
    }

    /// Waits for the active changelog to be published, then runs one replication pass.
    fn replicate(&self, extra: &[&str]) -> String {
        std::thread::sleep(std::time::Duration::from_millis(400));
        let out = Command::new(georep_bin())
            .arg("replicate")
            .arg("--brick")
            .arg(&self.p.brick)
            .arg("--secondary-mount")
            .arg(&self.s.mnt)
            .arg("--once")
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "replicate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn check(&self) {
        assert_same_tree(&self.p.mnt, &self.s.mnt);
    }
}

fn sh(dir: &std::path::Path, script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// GlusterFS's data generators in spirit: files of several sizes, deep dirs, symlinks,
/// hard links, special files, owners, xattrs.
fn populate(root: &std::path::Path) {
    sh(
        root,
        "mkdir -p d1/d2/d3 empty 'sp ace' && \
         for i in 1 2 3 4 5 6 7 8 9 10; do head -c $((i * 1500)) /dev/urandom > d1/f$i; done && \
         head -c 3000000 /dev/urandom > d1/d2/big && \
         echo hello > d1/d2/d3/small && ln d1/d2/d3/small hl1 && ln d1/d2/d3/small d1/hl2 && \
         ln -s d1/d2/d3/small sl && ln -s /nonexistent/dangling dangling && \
         mkfifo fifo && touch 'sp ace/x y' && \
         chown 1000:1000 d1/f1 && chown -h 1000:1000 sl && chown 2000:3000 d1/d2 && chmod 4750 d1/f2 && chmod 1777 empty && \
         setfattr -n user.one -v 1 d1/f3 && setfattr -n user.two -v 2 d1/d2 && setfattr -n trusted.t -v x d1/f4",
    );
}

#[test]
fn hybrid_then_changelog_crawl_converge_exactly() {
    let pair = Pair::new();
    populate(&pair.p.mnt);
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0"), "{out}");
    pair.check();
    let mark = pair.p.layout().consumers_dir().join("replicate");
    let after_hybrid = std::fs::read(&mark).unwrap();

    // The tricky sequences of GlusterFS's functional test.
    sh(
        &pair.p.mnt,
        "mv d1/f5 d1/f5.renamed && \
         mv d1/f6 d1/f7 && \
         ln d1/f8 d1/f8.link && mv d1/f8.link d1/f8.moved && rm d1/f8.moved && \
         mv sl sl.renamed && mkdir sl && \
         echo log > app.log && for i in 1 2 3; do mv app.log app.log.$i; echo new$i > app.log; done && \
         for i in $(seq 1 100); do echo $i > tmp.x; mv -f tmp.x target; done && \
         truncate -s 100 d1/f9 && chmod 600 d1/f10 && chown 1000:1000 d1/f10 && \
         setfattr -x user.one d1/f3 && setfattr -n user.new -v 9 d1/f3 && \
         rm -rf d1/d2/d3 && rmdir empty && mkdir -p new/deep && echo x > new/deep/file && \
         mv 'sp ace' 'space moved'",
    );
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0"), "{out}");
    pair.check();

    // Replaying the processed changelogs (the progress mark set back) changes nothing.
    let before = describe_tree(&pair.s.mnt);
    std::fs::write(&mark, &after_hybrid).unwrap();
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0") && !out.starts_with("entries 0 "), "a replay: {out}");
    assert_eq!(describe_tree(&pair.s.mnt), before);
    pair.check();

    // Replaying everything from the start changes nothing.
    let out = pair.replicate(&["--full"]);
    assert!(out.contains("failures 0"), "{out}");
    pair.check();
}

#[test]
fn data_is_sent_once_per_batch_however_many_changelogs_name_it() {
    let pair = Pair::new();
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0"), "{out}");
    // One file written across many changelogs (rollover 0.1 s).
    let mut f = fs::OpenOptions::new().create(true).append(true).open(pair.p.p("growing")).unwrap();
    for _ in 0..10 {
        std::io::Write::write_all(&mut f, &[7u8; 100_000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    drop(f);
    let out = pair.replicate(&[]);
    // "files 1": the file's data went once, not once per changelog.
    assert!(out.contains("files 1 "), "{out}");
    pair.check();
}

#[test]
fn rename_exchange_and_type_changes() {
    let pair = Pair::new();
    fs::write(pair.p.p("a"), b"A").unwrap();
    fs::create_dir(pair.p.p("b")).unwrap();
    fs::write(pair.p.p("b/inner"), b"I").unwrap();
    pair.replicate(&[]);
    pair.check();
    let (ca, cb) = (
        std::ffi::CString::new(pair.p.p("a").to_str().unwrap()).unwrap(),
        std::ffi::CString::new(pair.p.p("b").to_str().unwrap()).unwrap(),
    );
    // SAFETY: valid C strings.
    assert_eq!(
        unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) },
        0
    );
    // A name changing type: file -> directory.
    fs::remove_file(pair.p.p("b")).unwrap();
    fs::create_dir(pair.p.p("b")).unwrap();
    symlink("a/inner", pair.p.p("c")).unwrap();
    fs::set_permissions(pair.p.p("a"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0"), "{out}");
    pair.check();
}

#[test]
fn the_tree_comparison_sees_every_difference() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        populate(d);
    }
    // Random contents differ: make them equal first.
    sh(b.path(), &format!("rm -rf ./* && cp -a {}/. .", a.path().display()));
    assert_same_tree(a.path(), b.path());
    for change in [
        "echo x >> d1/f1",
        "chmod 644 d1/f2",
        "chown 1001 d1/f3",
        "setfattr -n user.z -v 1 d1/f4",
        "rm hl1 && cp d1/hl2 hl1",
        "rm sl && ln -s elsewhere sl",
        "mv fifo fifo2",
    ] {
        let c = tempfile::tempdir().unwrap();
        sh(c.path(), &format!("cp -a {}/. . && {change}", a.path().display()));
        let r = std::panic::catch_unwind(|| assert_same_tree(a.path(), c.path()));
        assert!(r.is_err(), "not detected: {change}");
    }
}

#[test]
fn hybrid_crawl_removes_what_the_primary_no_longer_has() {
    let pair = Pair::new();
    populate(&pair.p.mnt);
    pair.replicate(&[]);
    // Entries only the secondary has (written behind the session's back, or deleted on the
    // primary while changelogs were lost).
    sh(&pair.s.mnt, "echo stray > stray && mkdir -p d1/junk/deeper && echo x > d1/junk/deeper/f && ln -s x d1/strayln");
    sh(&pair.p.mnt, "rm -rf d1/f1 d1/d2");
    let out = pair.replicate(&["--full"]);
    assert!(out.contains("failures 0"), "{out}");
    pair.check();
}

/// A `georep replicate` that follows changes until dropped.
struct Live(std::process::Child);

impl Live {
    fn start(pair: &Pair) -> Live {
        Live(
            Command::new(georep_bin())
                .arg("replicate")
                .arg("--brick")
                .arg(&pair.p.brick)
                .arg("--secondary-mount")
                .arg(&pair.s.mnt)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn live_changes_arrive_within_a_second_or_two() {
    let pair = Pair::new();
    let _live = Live::start(&pair);
    for i in 0..5 {
        let name = format!("live{i}");
        let t = std::time::Instant::now();
        fs::write(pair.p.p(&name), format!("content {i}")).unwrap();
        let arrived = wait_until(std::time::Duration::from_secs(10), || {
            fs::read(pair.s.p(&name)).map(|c| c == format!("content {i}").as_bytes()).unwrap_or(false)
        });
        assert!(arrived, "{name} did not arrive");
        eprintln!("{name}: {:?}", t.elapsed());
    }
    assert!(wait_until(std::time::Duration::from_secs(10), || describe_tree(&pair.p.mnt) == describe_tree(&pair.s.mnt)));
}

/// The worker tails the active changelog: with a rollover of ten minutes, so that no changelog
/// is published during the test, every kind of change still reaches the secondary within a
/// second or two, a file kept open and written twice included; and a worker killed in the
/// middle of the active file resumes from its place in it.
#[test]
fn changes_arrive_from_the_active_changelog_long_before_its_rollover() {
    let pair = Pair::with("rollover-time=600");
    let live = Live::start(&pair);
    let steps = [
        "echo one > a",
        "mkdir d && echo two > d/b",
        "echo more >> a",
        "mv a d/a2",
        "chmod 600 d/b && chown 1000:1000 d/b",
        "setfattr -n user.k -v v d/b",
        "ln d/b hl && ln -s d/b sl",
        "truncate -s 3 d/a2",
        "rm hl",
        "exec 3>>d/open; echo first >&3; sleep 0.3; echo second >&3; sleep 0.3; exec 3>&-",
        "echo again > d/b",
    ];
    let mut slowest = std::time::Duration::ZERO;
    for step in steps {
        let t = std::time::Instant::now();
        sh(&pair.p.mnt, step);
        let same =
            wait_until(std::time::Duration::from_secs(10), || describe_tree(&pair.p.mnt) == describe_tree(&pair.s.mnt));
        assert!(same, "{step}: not on the secondary after 10 s");
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("slowest step to arrive: {slowest:?}");
    assert!(slowest < std::time::Duration::from_secs(3), "{slowest:?}");
    let index = pair.p.brick.join(".georep/changelogs/history.idx");
    let published = (fs::metadata(&index).unwrap().len() - 32) / 32;
    assert_eq!(published, 0, "a changelog was published: the changes did not come from the active file");
    // Killed mid-file: its place is a sequence number inside the active file.
    drop(live);
    let mark = fs::read_to_string(pair.p.layout().consumers_dir().join("replicate")).unwrap();
    let seq: u64 = mark.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(seq > 10, "{mark}");
    sh(&pair.p.mnt, "echo after > d/after && rm d/a2");
    let _live = Live::start(&pair);
    assert!(wait_until(std::time::Duration::from_secs(10), || describe_tree(&pair.p.mnt) == describe_tree(&pair.s.mnt)));
    pair.check();
}

#[test]
fn worker_killed_mid_sync_converges_after_restart() {
    let pair = Pair::new();
    sh(
        &pair.p.mnt,
        "mkdir -p many && cd many && for d in $(seq 1 20); do mkdir d$d; for f in $(seq 1 500); do echo $d-$f > d$d/f$f; done; done",
    );
    for (i, kill_after_ms) in [300u64, 900].into_iter().enumerate() {
        let mut live = Live::start(&pair);
        std::thread::sleep(std::time::Duration::from_millis(kill_after_ms));
        // SIGKILL, mid-crawl or mid-batch; its receiver dies with the pipe.
        live.0.kill().unwrap();
        live.0.wait().unwrap();
        std::mem::forget(live);
        let (a, b, c) = (1 + 3 * i, 2 + 3 * i, 3 + 3 * i);
        sh(&pair.p.mnt, &format!("mv many/d{a} many/moved-{a} && rm -rf many/d{b}/f1* && echo changed > many/d{c}/f3"));
        sh(&pair.p.mnt, &format!("echo back > many/d{b}/new"));
    }
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0"), "{out}");
    pair.check();
    assert_eq!(describe_tree(&pair.p.mnt).len(), describe_tree(&pair.s.mnt).len());
}

#[test]
fn a_crashed_primary_daemon_makes_the_worker_crawl() {
    let pair = Pair::new();
    populate(&pair.p.mnt);
    pair.replicate(&[]);
    fs::write(pair.p.p("after"), b"1").unwrap();
    // The primary's daemon dies; the remount publishes its changelog flagged unclean.
    pair.p.kill9();
    pair.p.mount();
    fs::write(pair.p.p("later"), b"2").unwrap();
    let out = pair.replicate(&[]);
    assert!(out.contains("failures 0"), "{out}");
    // A whole-tree crawl happened: every entry was sent again, not just the two new files.
    let entries: usize = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    // (Only "after" and "later" are new: a changelog-only pass would send 2.)
    assert!(entries >= describe_tree(&pair.p.mnt).len() - 3, "{out}");
    pair.check();
}

/// Delta transfer: a big file the secondary already has is compared block by block, and only
/// the blocks that changed travel (in place, an append, a truncation); whole files with
/// `sync-method tarssh` semantics are covered by every other test's new files.
#[test]
fn changed_big_files_send_only_the_blocks_that_differ() {
    let pair = Pair::new();
    let bytes = |out: &str| -> u64 {
        let w: Vec<&str> = out.split_whitespace().collect();
        let i = w.iter().position(|x| *x == "bytes").unwrap();
        w[i + 1].parse().unwrap()
    };
    sh(&pair.p.mnt, "head -c 4194304 /dev/urandom > big && head -c 3000000 /dev/urandom > other");
    let out = pair.replicate(&[]);
    assert!(bytes(&out) >= 7_194_304, "{out}");
    pair.check();

    // One 4 KiB write in the middle: that page (its 128 KiB block differs, and of that
    // block's 4 KiB pages only one).
    sh(&pair.p.mnt, "head -c 4096 /dev/urandom | dd of=big bs=4096 seek=300 conv=notrunc status=none");
    let out = pair.replicate(&[]);
    assert_eq!(bytes(&out), 4096, "{out}");
    pair.check();
    // Pages written here and there, two in one block: those pages.
    sh(
        &pair.p.mnt,
        "for p in 3 5 77 200 201 512 900 1023; do head -c 4096 /dev/urandom | dd of=big bs=4096 seek=$p conv=notrunc status=none; done",
    );
    let out = pair.replicate(&[]);
    assert_eq!(bytes(&out), 8 * 4096, "{out}");
    pair.check();

    // An append: the last, partial page and what follows.
    sh(&pair.p.mnt, "head -c 100000 /dev/urandom >> other");
    let out = pair.replicate(&[]);
    let tail = 3_100_000 - (3_000_000 / 4096) * 4096;
    assert_eq!(bytes(&out), tail as u64, "{out}");
    pair.check();

    // A truncation on a block boundary: nothing but the size.
    sh(&pair.p.mnt, "truncate -s 2097152 big");
    let out = pair.replicate(&[]);
    assert_eq!(bytes(&out), 0, "{out}");
    pair.check();
    // Inside a block, on a page boundary or not: the fine round finds every byte the same
    // up to the new end, and the size alone must still travel (found by scripts/chaos).
    for size in [2_097_152 - 3 * 4096, 1_999_999] {
        sh(&pair.p.mnt, &format!("truncate -s {size} big"));
        let out = pair.replicate(&[]);
        assert_eq!(bytes(&out), 0, "{out}");
        pair.check();
    }

    // 1000 bytes inserted at the start: everything after moved. A rolling delta finds it
    // where it went and sends the new bytes and little else (in place, block by block, it
    // would be the whole file).
    sh(&pair.p.mnt, "{ head -c 1000 /dev/urandom; cat other; } > other.new && cat other.new > other && rm other.new");
    let out = pair.replicate(&[]);
    assert!(bytes(&out) < 20_000, "{out}");
    pair.check();
    // 5000 bytes cut out of the middle.
    sh(&pair.p.mnt, "{ head -c 1500000 other; tail -c +1505001 other; } > o2 && cat o2 > other && rm o2");
    let out = pair.replicate(&[]);
    assert!(bytes(&out) < 20_000, "{out}");
    pair.check();
}

/// A change the secondary cannot apply is tried again (max-rsync-retries, 10 by default), then
/// counted and logged with its path and reason, and the worker moves on; a full crawl repairs it
/// once the cause is gone.
#[test]
fn failing_changes_are_retried_then_counted_and_logged() {
    let pair = Pair::new();
    fs::write(pair.p.p("f"), "one").unwrap();
    pair.replicate(&[]);
    pair.check();
    // The secondary's copy cannot be written (immutable).
    assert!(Command::new("chattr").arg("+i").arg(pair.s.b("f")).status().unwrap().success());
    fs::write(pair.p.p("f"), "two").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = Command::new(georep_bin())
        .args(["replicate", "--once", "--brick"])
        .arg(&pair.p.brick)
        .arg("--secondary-mount")
        .arg(&pair.s.mnt)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = Command::new("chattr").arg("-i").arg(pair.s.b("f")).status();
    assert!(!out.status.success(), "{stdout}{stderr}");
    // Its data and its metadata: two changes.
    assert!(stdout.contains("failures 2 "), "{stdout}");
    assert!(stderr.contains("retry 10 of 10"), "{stderr}");
    let path = pair.p.brick.join("f");
    assert!(stderr.contains(&format!("could not apply a change to {}", path.display())), "{stderr}");
    assert_eq!(fs::read(pair.s.b("f")).unwrap(), b"one");
    pair.replicate(&["--full"]);
    pair.check();
}

/// `sync-jobs`: a batch's data shared out among parallel streams, each its own receiver
/// working in the first one's mount; whole files and deltas both, and the result exact.
#[test]
fn parallel_data_streams_converge_exactly() {
    let pair = Pair::new();
    let streams = |out: &str| -> Vec<u64> {
        let w: Vec<&str> = out.split_whitespace().collect();
        let i = w.iter().position(|x| *x == "streams").unwrap();
        w[i + 1].split(',').map(|n| n.parse().unwrap()).collect()
    };
    sh(
        &pair.p.mnt,
        "mkdir d && for i in 1 2 3 4 5 6; do head -c 3000000 /dev/urandom > d/big$i; done && \
         for i in $(seq 20); do echo small $i > d/s$i; done && ln d/big1 hl",
    );
    let out = pair.replicate(&["--sync-jobs", "3"]);
    let s = streams(&out);
    assert_eq!(s.len(), 3, "{out}");
    assert!(s.iter().filter(|b| **b > 2_000_000).count() >= 2, "the data went by more than one stream: {out}");
    pair.check();
    // Changes by delta, in parallel too; one file truncated, one grown.
    sh(
        &pair.p.mnt,
        "for i in 1 2 3 4; do head -c 4096 /dev/urandom | dd of=d/big$i bs=4096 seek=$((i * 50)) conv=notrunc status=none; done && \
         truncate -s 1000 d/big5 && head -c 2000000 /dev/urandom >> d/big6",
    );
    let out = pair.replicate(&["--sync-jobs", "3"]);
    assert_eq!(streams(&out).len(), 3, "{out}");
    pair.check();
}

/// `bandwidth-limit`: what the worker sends, all its streams together, stays within the limit
/// on average (a quarter second's burst aside).
#[test]
fn bandwidth_limit_holds_across_parallel_streams() {
    let pair = Pair::new();
    sh(&pair.p.mnt, "mkdir d && for i in 1 2 3; do head -c 2000000 /dev/urandom > d/f$i; done");
    let t = std::time::Instant::now();
    pair.replicate(&["--sync-jobs", "3", "--bandwidth-limit", "2000000"]);
    let took = t.elapsed().as_secs_f64();
    // 6 MB at 2 MB/s, less the 0.5 MB a full bucket lets through at once.
    assert!(took >= 2.6, "6 MB at 2 MB/s took {took:.2} s");
    pair.check();
}
