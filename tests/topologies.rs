//! Topologies between sites (SPEC 11), each site a georepd node with its own sshd in a network
//! namespace: cascading A → B → C with GlusterFS's data sets and tricky sequences, where C must
//! equal A whatever kind of change it was.

mod common;

use std::time::Duration;

use common::datasets::{create_data, tricky_sequences};
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
    }
}

/// Counts the records of a site's brick.
fn records(site: &common::sites::Site) -> usize {
    georep::changelog::brick_records(&georep::types::BrickLayout::new(&site.brick)).unwrap().len()
}

#[test]
fn two_way_sessions_never_send_a_change_back() {
    let s = Sites::new("two", 75, &["a", "b"]);
    s.session(0, 1);
    s.session(1, 0);
    // Past their first (Hybrid) crawls, whose prune makes each secondary what its primary was.
    for (from, to) in [(0, 1), (1, 0)] {
        let live = || s.rows(from, to).first().is_some_and(|r| r[7] == "Changelog Crawl");
        assert!(common::wait_until(SYNC, live), "{:?}", s.rows(from, to));
    }
    create_data(&s[0].mnt, "on_a");
    create_data(&s[1].mnt, "on_b");
    tricky_sequences(&s[0].mnt, "on_a");
    s.assert_converged(0, 1, SYNC);
    // Each change crossed once: nothing comes back, so the changelogs stop growing.
    let settled = |s: &Sites| {
        let before = (records(&s[0]), records(&s[1]));
        std::thread::sleep(Duration::from_secs(2));
        before == (records(&s[0]), records(&s[1]))
    };
    assert!(common::wait_until(SYNC, || settled(&s)), "changes keep travelling between the sites");
    s.assert_converged(0, 1, SYNC);
    let a = georep::fs::brick::volume_of(&s[0].brick).unwrap().unwrap();
    let b = georep::fs::brick::volume_of(&s[1].brick).unwrap().unwrap();
    for (site, other) in [(&s[0], b), (&s[1], a)] {
        let all = georep::changelog::brick_records(&georep::types::BrickLayout::new(&site.brick)).unwrap();
        assert!(all.iter().all(|r| matches!(r.origin(), Origin::User) || r.origin() == Origin::Received(other)));
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

#[test]
fn dr_drill_failover_refuses_the_stale_primary() {
    let mut s = Sites::new("dr", 77, &["a", "b"]);
    create_data(&s[0].mnt, "before");
    s.session(0, 1);
    s.assert_converged(0, 1, SYNC);
    // A secondary's users read, and may not write.
    assert!(s[1].p("before_f1").exists());
    let e = std::fs::write(s[1].p("user_on_secondary"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    // A dies in the middle of writing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = writer(s[0].p("inflight"), stop.clone());
    std::thread::sleep(Duration::from_millis(700));
    s[0].die();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = w.join().unwrap();
    assert!(written > 10, "the writer wrote {written} files");

    // Failover on B: B's users write.
    let a_vol = s[0].vol.clone();
    let url = s.url(1);
    let out = s[1].cli(&format!("volume geo-replication {a_vol} {url} failover")).ok().to_string();
    assert!(out.contains("Failover successful"), "{out}");
    assert!(s[1].cli(&format!("volume geo-replication {a_vol} {url} failover")).refused().contains("already promoted"));
    std::fs::write(s[1].p("after_failover"), "written on B\n").unwrap();

    // A comes back: its worker is refused, with the reason in its status.
    s[0].revive();
    let refused = || {
        s.rows(0, 1).first().is_some_and(|r| r[6] == "Faulty") && s.worker_log(0, 1).contains("promoted by a failover")
    };
    assert!(common::wait_until(SYNC, refused), "{:?}\n{}", s.rows(0, 1), s.worker_log(0, 1));
    assert!(!s[0].b("after_failover").exists());
    assert_eq!(std::fs::read_to_string(s[1].b("after_failover")).unwrap(), "written on B\n");
}
