//! Topologies between sites (SPEC 11), each site a georepd node with its own sshd in a network
//! namespace: cascading A → B → C with GlusterFS's data sets and tricky sequences, where C must
//! equal A whatever kind of change it was.

mod common;

use std::time::Duration;

use common::datasets::{create_data, sh, tricky_sequences};
use common::sites::Sites;
use georep::changelog::Origin;

const SYNC: Duration = Duration::from_secs(60);

#[test]
fn cascade_carries_every_kind_of_change_to_the_third_site() {
    let s = Sites::new("cas", 71, &["a", "b", "c"]);
    // Data before the sessions (Hybrid crawls on both hops).
    create_data(&s[0].mnt, "hybrid");
    s.session(0, 1);
    s.session(1, 2);
    s.assert_converged(0, 1, SYNC);
    s.assert_converged(0, 2, SYNC);
    // Live changes (Changelog crawls): what B's receiver applies is recorded on B and goes on.
    create_data(&s[0].mnt, "live");
    tricky_sequences(&s[0].mnt, "live");
    s.assert_converged(0, 1, SYNC);
    s.assert_converged(0, 2, SYNC);
    let c = &s[2];
    assert_eq!(std::fs::read_to_string(c.b("live_logrotate/lg_test_file")).unwrap(), "4\n");
    assert_eq!(std::fs::read_to_string(c.b("live_logrotate/lg_test_file.1")).unwrap(), "3\n");
    assert_eq!(std::fs::read_to_string(c.b("live_rename_with_existing_destination/data_set")).unwrap(), "Data_set5\n");
    assert_eq!(std::fs::read_to_string(c.b("live_same_size")).unwrap(), "BBBB");
    assert!(xattr::get(c.b("live_acl"), "system.posix_acl_access").unwrap().is_some());
    // Both hops recorded where the changes were first made: on A.
    let a = georep::fs::brick::volume_of(&s[0].brick).unwrap().unwrap();
    // (A Hybrid crawl sees states, not where changes came from: what it sends is the
    // sender's.)
    for site in [&s[1], &s[2]] {
        let records = georep::changelog::brick_records(&georep::types::BrickLayout::new(&site.brick)).unwrap();
        let live: Vec<_> = records
            .iter()
            .filter(|r| r.entry.as_ref().is_some_and(|e| e.entry.name.to_string_lossy().starts_with("live_")))
            .collect();
        assert!(live.len() > 20, "{}: {live:?}", site.vol);
        for r in live {
            assert_eq!(r.origin(), Origin::Received(a), "{} {r:?}", site.vol);
        }
    }
    for (from, to) in [(0, 1), (1, 2)] {
        let row = &s.rows(from, to)[0];
        assert_eq!(row[12], "0", "no failures {from}->{to}: {row:?}\n{}", s.worker_log(from, to));
        let v = s.geo(from, to, "verify --checksum");
        assert_eq!(v.code, 0, "{from}->{to}: {v:?}");
    }
}

/// Writes `n` files `<dir>/f<i>` on the mount, until told to stop or the mount fails.
fn writer(
    dir: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let _ = std::fs::create_dir_all(&dir);
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if std::fs::write(dir.join(format!("f{i}")), format!("{i}\n")).is_err() {
                break;
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        i
    })
}

/// Counts the records of a site's brick.
fn records(site: &common::sites::Site) -> usize {
    georep::changelog::brick_records(&georep::types::BrickLayout::new(&site.brick)).unwrap().len()
}

/// A session's worker status (files and bytes synced), as the worker reports it.
fn synced(s: &Sites, from: usize, to: usize) -> (u64, u64) {
    let key = format!("{}_{}_{}", s[from].vol, s[to].host.addr, s[to].vol);
    let p = s[from].node.root.join(format!("state/geo-replication/{key}/brick-status.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    (v["files_synced"].as_u64().unwrap(), v["bytes_synced"].as_u64().unwrap())
}

fn erofs(r: std::io::Result<()>) -> bool {
    r.is_err_and(|e| e.raw_os_error() == Some(libc::EROFS))
}

/// The drill of SPEC 11: A -> B running; A dies mid-write; failover to B; users write on B;
/// A comes back and its stale worker is refused (and its users write there meanwhile, a tail
/// it never ships); failback with the report of A's tail; roles restored; both sites equal,
/// nothing echoed, and the failback moved the changed files only.
#[test]
fn dr_drill_failover_failback_restore() {
    let mut s = Sites::new("dr", 77, &["a", "b"]);
    // 64 files of 256 KiB: what a full copy would move, and the failback must not.
    sh(&s[0].mnt, "mkdir big && for i in $(seq 1 64); do head -c 262144 /dev/urandom > big/f$i; done");
    create_data(&s[0].mnt, "before");
    s.session(0, 1);
    s.assert_converged(0, 1, SYNC);
    // A secondary's users read, and may not write.
    assert!(s[1].p("before_f1").exists());
    assert!(erofs(std::fs::write(s[1].p("user_on_secondary"), "x")));

    // A dies in the middle of writing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = writer(s[0].p("inflight"), stop.clone());
    std::thread::sleep(Duration::from_millis(700));
    s[0].die();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = w.join().unwrap();
    assert!(written > 10, "the writer wrote {written} files");

    // Failover on B: B's users write.
    let (a_url, b_url) = (s.url(0), s.url(1));
    let (avol, bvol) = (s[0].vol.clone(), s[1].vol.clone());
    let out = s[1].cli(&format!("volume geo-replication {avol} {b_url} failover")).ok().to_string();
    assert!(out.contains("Failover successful") && out.contains("applied here up to"), "{out}");
    assert!(
        s[1].cli(&format!("volume geo-replication {avol} {b_url} failover")).refused().contains("already promoted")
    );
    std::fs::write(s[1].p("after_failover"), "written on B\n").unwrap();
    std::fs::write(s[1].p("big/f1"), "changed on B\n").unwrap();

    // A comes back: its worker is refused, with the reason; A's users (who do not know yet)
    // change things there, which A never ships.
    s[0].revive();
    let refused = || {
        s.rows(0, 1).first().is_some_and(|r| r[6] == "Faulty") && s.worker_log(0, 1).contains("promoted by a failover")
    };
    assert!(common::wait_until(SYNC, refused), "{:?}\n{}", s.rows(0, 1), s.worker_log(0, 1));
    sh(&s[0].mnt, "echo stale > stale_on_a && echo stale > before_f1 && rm -r before_d1_ನನ್ನ && mv big/f2 big/f2.moved");
    assert!(!s[0].b("after_failover").exists());

    // Failback from B: A's tail reported, kept aside, and discarded; A takes B's state.
    let out = s[1].cli(&format!("volume geo-replication {bvol} {a_url} failback keep-conflicts")).ok().to_string();
    for what in ["stale_on_a", "before_d1_ನನ್ನ", "big/f2 -> big/f2.moved", "inflight/"] {
        assert!(out.contains(what), "the tail report names {what}: {out}");
    }
    s.assert_converged(0, 1, SYNC);
    let kept = s[0].node.root.join("state/conflicts/avol");
    let kept = std::fs::read_dir(&kept).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_to_string(kept.join("stale_on_a")).unwrap(), "stale\n", "{out}");
    assert!(kept.join("big/f2.moved").exists(), "{out}");
    assert_eq!(std::fs::read_to_string(s[0].b("after_failover")).unwrap(), "written on B\n");
    assert!(!s[0].b("stale_on_a").exists() && s[0].b("big/f2").exists());
    // Meanwhile A is B's secondary: its users read only; B's users' changes reach it.
    assert!(erofs(std::fs::write(s[0].p("user_on_a"), "x")));
    std::fs::write(s[1].p("during_failback"), "B again\n").unwrap();
    s.assert_converged(0, 1, SYNC);
    // Only what changed moved: no full copy of big/ (64 files of 256 KiB), not even one of its
    // files (one changed on B, one renamed on A: put right without their content). What A
    // wrote in flight is a few bytes a file.
    let (files, bytes) = synced(&s, 1, 0);
    eprintln!("the failback moved {bytes} bytes ({files} files compared or sent)");
    assert!(bytes < 64 << 10, "the failback moved {bytes} bytes ({files} files compared or sent)");
    // Nothing A had sent B before it died came back.
    let echoed = georep::changelog::brick_records(&georep::types::BrickLayout::new(&s[0].brick))
        .unwrap()
        .iter()
        .filter(|r| r.entry.as_ref().is_some_and(|e| e.entry.name.to_string_lossy().starts_with("inflight")))
        .filter(|r| r.origin() != Origin::User)
        .count();
    assert_eq!(echoed, 0, "changes first made on A came back to A");

    // Restore: A is the primary again, B its secondary; A -> B goes on from now.
    let out = s[1].cli(&format!("volume geo-replication {bvol} {a_url} restore")).ok().to_string();
    assert!(out.contains("Roles restored"), "{out}");
    assert!(erofs(std::fs::write(s[1].p("user_on_b_again"), "x")));
    std::fs::write(s[0].p("after_restore"), "A again\n").unwrap();
    s.assert_converged(0, 1, SYNC);
    assert!(s[1].b("after_restore").exists());
    let row = &s.rows(0, 1)[0];
    assert_eq!(row[6], "Active", "{row:?}\n{}", s.worker_log(0, 1));
    // Nothing travels back and forth: the changelogs stop growing.
    let settled = |s: &Sites| {
        let before = (records(&s[0]), records(&s[1]));
        std::thread::sleep(Duration::from_secs(2));
        before == (records(&s[0]), records(&s[1]))
    };
    assert!(common::wait_until(SYNC, || settled(&s)), "changes keep travelling between the sites");
    assert!(s.geo(1, 0, "status").code != 0 || s.rows(1, 0).is_empty(), "the failback session is gone");
    // And the session's own check agrees.
    let v = s.geo(0, 1, "verify --checksum");
    assert_eq!(v.code, 0, "{v:?}");
}

/// `verify` finds each planted difference, over the session's connection, and none on
/// identical volumes; incremental runs skip what did not change.
#[test]
fn verify_finds_every_planted_difference() {
    let s = Sites::new("ver", 79, &["a", "b"]);
    create_data(&s[0].mnt, "v");
    sh(
        &s[0].mnt,
        "mkdir -p deep/er tick && echo same-size > deep/er/f && echo owned > owned && touch tagged && setfattr -n user.k -v one tagged",
    );
    s.session(0, 1);
    s.assert_converged(0, 1, SYNC);
    // The stime must pass the last change for nothing to be set aside (a change in another
    // directory moves it on).
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(s[0].p("tick/later"), "x").unwrap();
    s.assert_converged(0, 1, SYNC);
    std::thread::sleep(Duration::from_millis(1000));
    let verify = |args: &str| s.geo(0, 1, &format!("verify {args}"));
    let out = verify("--checksum");
    assert_eq!(out.code, 0, "identical volumes: {out:?}");
    assert!(out.stdout.contains(" 0 differences"), "{}", out.stdout);

    // Differences planted on the secondary's brick, behind georep's back.
    let b = &s[1];
    std::fs::remove_file(b.b("v_f4")).unwrap();
    std::fs::write(b.b("extra"), "x").unwrap();
    std::os::unix::fs::chown(b.b("owned"), Some(1234), None).unwrap();
    xattr::set(b.b("tagged"), "user.k", b"two").unwrap();
    // Same size, same mtime: only the content tells.
    let f = b.b("deep/er/f");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, "SAME-SIZE\n").unwrap();
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();

    let out = verify("--full");
    assert_eq!(out.code, 1, "{out:?}");
    for want in [
        "missing on the secondary: v_f4",
        "extra on the secondary: extra",
        "owned: owner",
        "tagged: xattrs differ (user.k)",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    assert!(!out.stdout.contains("deep/er/f"), "without --checksum equal metadata is equal: {}", out.stdout);
    let out = verify("--checksum --full");
    assert!(out.stdout.contains("deep/er/f: content differs"), "{}", out.stdout);
    assert!(out.stdout.contains(" 5 differences"), "{}", out.stdout);
}

/// How long after its write each of `n` small files, written every 200 ms on site `from`,
/// appears on `to`'s brick; the longest.
fn lag(s: &Sites, from: usize, to: usize, tag: &str, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let name = format!("{tag}{i}");
        std::fs::write(s[from].p(&name), "x").unwrap();
        let t = std::time::Instant::now();
        assert!(common::wait_until(SYNC, || s[to].b(&name).exists()), "{name} never reached {}", s[to].vol);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    worst
}

/// Fan-out: one primary, two secondaries. One cut off, then one out of space, never holds up
/// the other; both converge after, with nothing skipped.
#[test]
fn fan_out_one_secondary_in_trouble_never_holds_up_the_other() {
    let s = Sites::with_small_bricks("fan", 81, &["a", "b", "c"], &[(2, 48)]);
    create_data(&s[0].mnt, "base");
    s.session(0, 1);
    // (C is smaller than A: create says so, unless forced.)
    s.session_created_with(0, 2, "create push-pem force");
    s.assert_converged(0, 1, SYNC);
    s.assert_converged(0, 2, SYNC);

    // B cut off: C stays current.
    s[1].host.link(false);
    let c_lag = lag(&s, 0, 2, "while_b_is_cut_", 10);
    eprintln!("lag to C while B is cut off: {c_lag:?} at worst");
    assert!(c_lag < Duration::from_secs(5), "{c_lag:?}");
    s[1].host.link(true);
    s.assert_converged(0, 1, SYNC);

    // C out of space: B stays current; C waits, skipping nothing.
    sh(&s[0].mnt, "head -c 64M /dev/urandom > huge");
    s.assert_converged(0, 1, SYNC);
    let b_lag = lag(&s, 0, 1, "while_c_is_full_", 10);
    eprintln!("lag to B while C is full: {b_lag:?} at worst");
    assert!(b_lag < Duration::from_secs(5), "{b_lag:?}");
    let full = || s.worker_log(0, 2).contains("out of space");
    assert!(common::wait_until(SYNC, full), "{:?}\n{}", s.rows(0, 2), s.worker_log(0, 2));
    // Room again: C catches up with everything, the small files included.
    std::fs::remove_file(s[0].p("huge")).unwrap();
    s.assert_converged(0, 1, SYNC);
    s.assert_converged(0, 2, SYNC);
    let row = &s.rows(0, 2)[0];
    assert_eq!(row[12], "0", "nothing skipped: {row:?}");
}
