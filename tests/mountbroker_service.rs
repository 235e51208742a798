//! The mountbroker service of `georepd` (SPEC section 7, the reference's 5.3), tried by real
//! unprivileged users over the control socket: what a user added for a volume gets (a mount
//! where it is root, behind its cookie), and each attack that must fail: another volume, extra
//! options, another user's label or cookie, paths outside the hive, a mount root with a
//! writable ancestor, and root's commands.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::cluster::*;
use common::users::LocalUser;
use common::*;
use georep::mountbroker::Config;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `georep <words>` as `user`, against the secondary's daemon.
fn georep_as(user: &LocalUser, c: &Cluster, words: &str) -> Run {
    let o = user
        .command(georep_bin())
        .args(words.split_whitespace())
        .env("GEOREP_RUN_DIR", c.sec.run_dir())
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[track_caller]
fn refused(r: &Run, why: &str) {
    assert_ne!(r.code, 0, "should be refused: {} {}", r.stdout, r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert!(r.stderr.contains(why), "want {why:?}: {}", r.stderr);
}

fn mounts_under(p: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .filter(|m| Path::new(m).starts_with(p))
        .collect()
}

#[test]
fn users_get_only_what_the_mountbroker_allows() {
    let c = Cluster::new(false);
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    c.sec.cli("volume start svol").ok();
    let other = c.dir.path().join("sbrick2");
    c.sec.cli(&format!("volume create svol2 sec:{}", other.display())).ok();
    c.sec.cli("volume start svol2").ok();
    let alice = LocalUser::new(c.dir.path(), "georepmba", None);
    let bob = LocalUser::new(c.dir.path(), "georepmbb", None);

    // Nothing set up: refused.
    let args = |u: &str, vol: &str| format!("system mount {u} aux-gfid-mount user-map-root={u} volfile-id={vol}");
    refused(&georep_as(&alice, &c, &args("georepmba", "svol")), "not set up");
    // What `gluster-mountbroker setup` and `add` write.
    let parent = c.dir.path().join("mb");
    let root = parent.join("root");
    std::fs::create_dir(&parent).unwrap();
    georep::mountbroker::make_root(&root).unwrap();
    let mut conf = Config { root: Some(root.clone()), group: Some("root".into()), ..Default::default() };
    conf.add("svol", "georepmba").unwrap();
    conf.save(&Config::path(&c.sec.root.join("etc"))).unwrap();

    // Alice gets svol, where she is root; the cookie is all she handles.
    let r = georep_as(&alice, &c, &args("georepmba", "svol"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cookie = r.stdout.trim().to_string();
    assert!(Path::new(&cookie).starts_with(root.join("mb_hive")), "{cookie}");
    let o = alice
        .command("sh")
        .arg("-c")
        .arg(format!("cd {cookie} && echo hi > f && chown 1234:4321 f && setfattr -n user.x -v 1 f && ls -a"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("f\n"), "the listing shows the file");
    let md = std::fs::metadata(c.s("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 4321));
    let udir = root.join(format!("user{}", alice.uid));
    let umd = std::fs::metadata(&udir).unwrap();
    assert_eq!((umd.mode() & 0o7777, umd.uid(), umd.gid()), (0o700, alice.uid, 0));
    // Bob may not reach into it.
    let o = bob.command("sh").arg("-c").arg(format!("ls {cookie}/ || cat {cookie}/f")).output().unwrap();
    assert!(!o.status.success());

    // Each attack, refused with one line, and nothing mounted by it.
    let before = mounts_under(&root).len();
    refused(&georep_as(&alice, &c, &args("georepmba", "svol2")), "volume svol2 is not added for user georepmba");
    refused(
        &georep_as(&alice, &c, &format!("{} allow_other", args("georepmba", "svol"))),
        "\"allow_other\" is not allowed",
    );
    refused(&georep_as(&alice, &c, &format!("{} suid", args("georepmba", "svol"))), "\"suid\" is not allowed");
    refused(
        &georep_as(&alice, &c, "system mount georepmba aux-gfid-mount user-map-root=root volfile-id=svol"),
        "user-map-root=root is not georepmba",
    );
    refused(&georep_as(&alice, &c, "system mount georepmba user-map-root=georepmba volfile-id=svol"), "required");
    refused(&georep_as(&bob, &c, &args("georepmba", "svol")), "may not mount for georepmba");
    refused(&georep_as(&bob, &c, &args("georepmbb", "svol")), "no volume is added for user georepmbb");
    refused(&georep_as(&bob, &c, &format!("system umount {cookie}")), "is not a mount of georepmbb");
    refused(&georep_as(&bob, &c, &format!("system umount {cookie} lazy")), "is not a mount of georepmbb");
    let mtpt = std::fs::read_link(&cookie).unwrap();
    let real = root.join(mtpt.strip_prefix("..").unwrap());
    for bad in
        [real.display().to_string(), "/etc/passwd".into(), format!("{}/../mb_hive/x", root.join("mb_hive").display())]
    {
        refused(&georep_as(&alice, &c, &format!("system umount {bad}")), "is not a mount cookie");
    }
    refused(&georep_as(&alice, &c, "volume stop svol"), "only root");
    refused(&georep_as(&alice, &c, "volume geo-replication status"), "only root");
    assert_eq!(mounts_under(&root).len(), before);
    assert!(is_mounted(&real));

    // A mount root whose ancestor others may write: no mounts at all.
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&georep_as(&alice, &c, &args("georepmba", "svol")), "ancestor");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A user directory others could enter: refused too.
    std::fs::set_permissions(&udir, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(&georep_as(&alice, &c, &args("georepmba", "svol")), "0700");
    std::fs::set_permissions(&udir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Her own cookie she may unmount: mount, mount point and cookie gone.
    let r = georep_as(&alice, &c, &format!("system umount {cookie}"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&real)));
    assert!(!Path::new(&cookie).exists() && !real.exists());
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
    // Removed from the config: refused at once, no restart.
    conf.remove(Some("svol"), None).unwrap();
    conf.save(&Config::path(&c.sec.root.join("etc"))).unwrap();
    refused(&georep_as(&alice, &c, &args("georepmba", "svol")), "no volume is added");
}
