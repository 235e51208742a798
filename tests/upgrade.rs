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

/// Copies this build's programs (or `from`'s) into `to`, each replacing the old file by a
/// rename as dpkg does: what runs keeps its old binary, what starts next gets the new one.
fn install_programs(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in ["georep", "georepd", "mount_georep"] {
        let tmp = to.join(format!(".{p}.new"));
        std::fs::copy(from.join(p), &tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, to.join(p)).unwrap();
    }
}

/// A rolling upgrade while a session runs over SSH and users keep writing: the secondary's
/// node first (its georepd restarted on the new binaries, the receiver the old worker reaches
/// next a new one), then the primary's (georepd restarted: new workers, from their sync time;
/// the users' mount served on by its brick server throughout). Nothing is lost, no Hybrid
/// crawl, the writer never sees an error. Needs the previous release's programs:
/// `scripts/rolling-upgrade` builds them and runs this.
#[test]
#[ignore = "needs a previous release's programs in GEOREP_PREVIOUS_BIN (scripts/rolling-upgrade)"]
fn a_rolling_upgrade_while_a_session_runs_loses_nothing() {
    use common::netns::Host;
    use common::users::RootAlias;
    use std::sync::atomic::{AtomicBool, Ordering};
    let prev = PathBuf::from(
        std::env::var("GEOREP_PREVIOUS_BIN").expect("GEOREP_PREVIOUS_BIN: the previous release's target/release"),
    );
    let this = Path::new(georep_bin()).parent().unwrap().to_path_buf();
    let bins = tempfile::tempdir().unwrap();
    let (pbin, sbin) = (bins.path().join("pri"), bins.path().join("sec"));
    install_programs(&prev, &pbin);
    install_programs(&prev, &sbin);
    let mut c = common::cluster::Cluster::remote_from(&pbin, &sbin, |dir, sec| {
        vec![
            "--operator-key".into(),
            dir.join("operator_key").display().to_string(),
            "--remote-receiver".into(),
            format!("env GEOREP_RUN_DIR={} {}/georep receiver", sec.run_dir().display(), sbin.display()),
        ]
    });
    let h = Host::new(c.dir.path(), "t5", 55);
    let user = RootAlias::new(c.dir.path(), "georepupgrade");
    let url = format!("{}@{}::svol", user.name, h.addr);
    let op = c.dir.path().join("operator_key");
    let o = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&op).output().unwrap();
    assert!(o.status.success());
    std::fs::write(user.authorized_keys(), std::fs::read(op.with_extension("pub")).unwrap()).unwrap();
    let geo =
        |c: &common::cluster::Cluster, rest: &str| c.pri.cli(&format!("volume geo-replication pvol {url} {rest}"));
    c.pri.cli("system execute gsec_create").ok();
    geo(&c, "create push-pem").ok();
    geo(&c, "start").ok();
    let old = c.pri.cli("--version").stdout;

    // Users write all along: creates, appends, renames.
    let stop = AtomicBool::new(false);
    let pmnt = c.pmnt.clone();
    std::thread::scope(|s| {
        let writer = s.spawn(|| -> Result<usize, String> {
            std::fs::create_dir_all(pmnt.join("w")).map_err(|e| e.to_string())?;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let f = pmnt.join(format!("w/f{i}"));
                std::fs::write(&f, format!("{i}\n")).map_err(|e| format!("{}: {e}", f.display()))?;
                if i % 10 == 9 {
                    use std::io::Write;
                    let mut a =
                        std::fs::OpenOptions::new().append(true).open(pmnt.join(format!("w/f{}", i - 5))).unwrap();
                    writeln!(a, "appended").map_err(|e| e.to_string())?;
                }
                if i % 25 == 24 {
                    std::fs::rename(pmnt.join(format!("w/f{}", i - 1)), pmnt.join(format!("w/r{i}")))
                        .map_err(|e| e.to_string())?;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(i)
        });
        std::thread::sleep(Duration::from_secs(5));

        // The secondary's node: new programs, georepd restarted; the old worker's next
        // receiver is a new one.
        install_programs(&this, &sbin);
        c.sec.kill9();
        c.sec.start();
        assert!(wait_until(Duration::from_secs(30), || h.kill_matching("receiver") > 0), "no receiver to end");
        std::thread::sleep(Duration::from_secs(5));
        let st = geo(&c, "status").stdout;
        assert!(st.contains("Active"), "an old worker with a new receiver: {st}");

        // The primary's node: new programs, georepd restarted (its workers with it). Only
        // this release's workers log their crawls: any Hybrid crawl below is after the upgrade.
        install_programs(&this, &pbin);
        c.pri.kill9();
        c.pri.start();
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        let n = writer.join().unwrap().expect("the users' writes never failed");
        assert!(n > 300, "{n} files written");
    });
    assert_ne!(c.pri.cli("--version").stdout, old, "the primary runs the new release");
    c.assert_converged(Duration::from_secs(120));
    let log: String = std::fs::read_dir(c.pri.root.join("log/geo-replication"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("gsyncd.log")).unwrap_or_default())
        .collect();
    assert!(log.contains("crawl: History Crawl") || log.contains("crawl: Changelog Crawl"), "{log}");
    assert!(!log.contains("crawl: Hybrid Crawl"), "a Hybrid crawl after the upgrade:\n{log}");
    geo(&c, "stop").ok();
}
