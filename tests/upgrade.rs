//! An upgrade in place: what an earlier release left on two nodes
//! (`tests/fixtures/upgrade-from-<release>.tar.xz`, made by `scripts/make-upgrade-fixture` with
//! that release's own binaries) is read by this one: its store, bricks, changelogs and status
//! files; and its session, paused with changes recorded but not shipped, resumes under this
//! release from its sync time (a History crawl, no Hybrid crawl), and the volumes converge.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::{Node, clean_up_under};
use common::*;

/// Where the fixture's nodes live (the store keeps the bricks' absolute paths).
const F: &str = "/var/tmp/georep-upgrade-fixture";

/// The fixture unpacked, and everything under it stopped, unmounted and removed on drop.
struct Unpacked {
    nodes: Vec<Node>,
}

impl Unpacked {
    fn new(release: &str) -> Unpacked {
        require_root();
        let tarball =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/upgrade-from-{release}.tar.xz"));
        clean_up_under(Path::new(F));
        let _ = std::fs::remove_dir_all(F);
        let o = Command::new("tar")
            .args(["-C", "/", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xJf"])
            .arg(&tarball)
            .output()
            .unwrap();
        assert!(o.status.success(), "unpack {}: {}", tarball.display(), String::from_utf8_lossy(&o.stderr));
        Unpacked { nodes: Vec::new() }
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        clean_up_under(Path::new(F));
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(F);
    }
}

#[test]
fn a_paused_session_of_release_0_1_0_resumes_from_its_sync_time() {
    let mut u = Unpacked::new("0.1.0");
    let base = Path::new(F);
    let (pbrick, sbrick, pmnt) = (base.join("pbrick"), base.join("sbrick"), base.join("pmnt"));
    // Its changelogs, as the earlier release wrote them, read by this one.
    let records = georep::changelog::brick_records(&georep::types::BrickLayout::new(&pbrick)).unwrap();
    assert!(records.len() > 150, "{} records", records.len());

    let mut sec = Node::new(base, "sec");
    let mut pri = Node::new(base, "pri");
    pri.peers.push(("sec".into(), sec.run_dir()));
    sec.start();
    u.nodes.push(sec);
    pri.start();
    u.nodes.push(pri);
    let pri = &u.nodes[1];
    // Its store: the volumes (started again) and the session, paused with its sync time.
    let info = pri.cli("volume info pvol").ok().to_string();
    assert!(info.contains("Started") && info.contains(&pbrick.display().to_string()), "{info}");
    let geo = |rest: &str| pri.cli(&format!("volume geo-replication pvol sec::svol {rest}"));
    let status = geo("status detail").ok().to_string();
    assert!(status.contains("Paused"), "{status}");
    let o = Command::new(mount_bin()).arg("pvol").arg(&pmnt).envs(pri.envs()).output().unwrap();
    assert!(o.status.success(), "mount pvol: {}", String::from_utf8_lossy(&o.stderr));

    // Resumed under this release: what was recorded and not shipped arrives, from the sync
    // time on (no Hybrid crawl of the whole volume).
    geo("resume").ok();
    let converged = wait_until(
        Duration::from_secs(60),
        || matches!((try_describe_tree(&pmnt), try_describe_tree(&sbrick)), (Ok(a), Ok(b)) if a == b),
    );
    if !converged {
        assert_same_tree(&pmnt, &sbrick);
    }
    assert_eq!(std::fs::read(sbrick.join("pending/renamed")).unwrap(), b"synced 3\n");
    assert!(!sbrick.join("synced/f4").exists());
    assert_eq!(xattr::get(sbrick.join("synced/f2"), "user.fixture").unwrap(), Some(b"made-by-0.1.0".to_vec()));
    let log = std::fs::read_to_string(base.join("pri/log/geo-replication/pvol_sec_svol/gsyncd.log")).unwrap();
    assert!(log.contains("crawl: History Crawl") || log.contains("crawl: Changelog Crawl"), "{log}");
    assert!(!log.contains("crawl: Hybrid Crawl"), "a Hybrid crawl after the upgrade:\n{log}");
    geo("stop").ok();
    let _ = Command::new("umount").arg(&pmnt).status();
}
