//! Replication over SSH to a second host: a network namespace with its own OpenSSH server.
//! The session key (`gsec_create`) is installed on the secondary by `create push-pem` through
//! the operator's own SSH access, restricted to the receiver; `create` records the host key;
//! the worker's connection is a russh client to that sshd. The key runs the receiver and
//! nothing else, and a changed host key stops the session with that reason.
//!
//! The secondary user here is a uid-0 alias with its home in the test's directory (so that its
//! `~/.ssh/authorized_keys` is the test's own); unprivileged users need the mountbroker.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use common::netns::Host;
use common::users::RootAlias;
use common::*;

/// Two nodes, the secondary reached over SSH only; push-pem uses `<dir>/operator_key`, and the
/// keys it installs run the receiver of the secondary's daemon.
fn remote_cluster() -> Cluster {
    Cluster::remote(|dir, sec| {
        vec![
            "--operator-key".into(),
            dir.join("operator_key").display().to_string(),
            "--remote-receiver".into(),
            format!("env GEOREP_RUN_DIR={} {} receiver", sec.run_dir().display(), shared_georep_bin(dir).display()),
        ]
    })
}

/// The operator's own SSH key, `<dir>/operator_key`, which `remote_cluster`'s primary uses
/// for push-pem (given to no user yet).
fn operator_key(c: &Cluster) -> std::path::PathBuf {
    let op = c.dir.path().join("operator_key");
    let o = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&op).output().unwrap();
    assert!(o.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&o.stderr));
    op
}

#[test]
fn replicates_over_ssh_to_another_host() {
    let c = remote_cluster();
    let mut h = Host::new(c.dir.path(), "t1", 51);
    let user = RootAlias::new(c.dir.path(), "georepsshtest");
    let url = format!("{}@{}::svol", user.name, h.addr);
    let geo = |rest: &str| c.pri.cli(&format!("volume geo-replication pvol {url} {rest}"));
    let rows = || -> Vec<Vec<String>> {
        let o = geo("status detail");
        o.stdout.lines().skip(3).map(split_columns).collect()
    };

    // Without a session key there is nothing to log in with.
    assert!(geo("create push-pem").refused().contains("gsec_create"));
    let out = c.pri.cli("system execute gsec_create").ok().to_string();
    assert!(out.contains("common_secret.pem.pub"), "{out}");
    let key = c.pri.root.join("state/geo-replication/secret.pem");
    let public = std::fs::read_to_string(key.with_extension("pem.pub")).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    // Idempotent: the key is kept.
    c.pri.cli("sshkey generate").ok();
    assert_eq!(std::fs::read_to_string(key.with_extension("pem.pub")).unwrap(), public);

    // push-pem uses the operator's own access, which does not exist yet.
    let op = operator_key(&c);
    let refusal = geo("create push-pem").refused().to_string();
    assert!(refusal.contains("push-pem") && refusal.contains("authentication"), "{refusal}");
    std::fs::write(user.authorized_keys(), std::fs::read(op.with_extension("pub")).unwrap()).unwrap();
    assert!(geo("create push-pem ssh-port 2").refused().contains("unreachable"), "a closed port");
    assert_eq!(
        geo("create push-pem").ok(),
        format!("Creating geo-replication session between pvol & {url} has been successful\n")
    );
    // The session key is installed once, restricted to the receiver; again, no duplicate.
    geo("create push-pem force").ok();
    let installed = std::fs::read_to_string(user.authorized_keys()).unwrap();
    let restricted: Vec<&str> = installed.lines().filter(|l| l.contains(public.trim())).collect();
    assert_eq!(restricted.len(), 1, "{installed}");
    assert!(
        restricted[0].starts_with("command=\"env GEOREP_RUN_DIR=") && restricted[0].contains(",restrict ssh-ed25519 ")
    );
    // The host key was recorded.
    let known = std::fs::read_to_string(c.pri.root.join("state/geo-replication/known_hosts")).unwrap();
    let host_key = h.host_key();
    let key_b64 = host_key.split_whitespace().nth(1).unwrap();
    assert!(known.contains(key_b64), "{known}");

    geo("start").ok();
    std::fs::create_dir(c.p("d")).unwrap();
    std::fs::write(c.p("d/f"), "over ssh").unwrap();
    std::fs::write(c.p("big"), vec![7u8; 3 << 20]).unwrap();
    c.assert_converged(Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(20), || rows().first().is_some_and(|r| r[6] == "Active")), "{:?}", rows());
    assert_eq!(rows()[0][5], h.addr, "the secondary node");

    // The session key runs the receiver and nothing else: no shell, no command, no forwarding.
    let ssh = |extra: &[&str]| {
        Command::new("timeout")
            .args(["10", "ssh", "-i", key.to_str().unwrap(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"])
            .args(extra)
            .arg(format!("{}@{}", user.name, h.addr))
            .output()
            .unwrap()
    };
    let o = ssh(&["id; echo pwned"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("uid=") && !out.contains("pwned"), "{out}");
    let o = ssh(&["-o", "ExitOnForwardFailure=yes", "-N", "-L", "12722:127.0.0.1:22"]);
    assert!(!o.status.success(), "port forwarding must be refused");

    // A receiver that cannot start: the row gives the remote's own words, not a broken stream.
    let exe = c.dir.path().join("bin/georep");
    std::fs::rename(&exe, exe.with_extension("away")).unwrap();
    geo("config sync-jobs 2").ok(); // restarts the worker
    let status = || c.pri.cli(&format!("volume geo-replication pvol {url} status --json")).stdout;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = status();
            s.contains("the receiver did not start") && s.contains("No such file or directory; exit status 127")
        }),
        "{}",
        status()
    );
    std::fs::rename(exe.with_extension("away"), &exe).unwrap();
    std::fs::write(c.p("after-restore"), "back").unwrap();
    c.assert_converged(Duration::from_secs(60));

    // A changed host key: the worker refuses the server, and the row says why.
    h.new_host_key();
    geo("config sync-jobs 4").ok(); // restarts the worker
    assert!(
        wait_until(Duration::from_secs(30), || {
            let o = c.pri.cli(&format!("volume geo-replication pvol {url} status --json"));
            o.stdout.contains("host key changed")
        }),
        "{}",
        c.pri.cli(&format!("volume geo-replication pvol {url} status --json")).stdout
    );
    assert_eq!(rows().first().map(|r| r[6].clone()), Some("Faulty".into()));
    // ssh-options are honoured, and what georep's client cannot honour is refused by name.
    assert!(geo("config ssh-options -L 1:localhost:22").refused().contains("-L: not an option"));
    assert!(geo("config ssh-options -o ProxyCommand=nc").refused().contains("ProxyCommand"));
    geo("config ssh-options -oPasswordAuthentication=no -o StrictHostKeyChecking=no -o ServerAliveInterval=5").ok();
    std::fs::write(c.p("after-new-key"), "accepted").unwrap();
    c.assert_converged(Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(20), || rows().first().is_some_and(|r| r[6] == "Active")), "{:?}", rows());
    geo("stop").ok();
}

/// The link cut for 30 s during a sync, the secondary's sshd restarted, the receiver killed:
/// each time the session recovers by itself and the volumes converge.
#[test]
fn recovers_from_link_cuts_sshd_restarts_and_receiver_kills() {
    let c = remote_cluster();
    let mut h = Host::new(c.dir.path(), "t2", 52);
    let user = RootAlias::new(c.dir.path(), "georepsshfault");
    let url = format!("{}@{}::svol", user.name, h.addr);
    let geo = |rest: &str| c.pri.cli(&format!("volume geo-replication pvol {url} {rest}"));
    let op = operator_key(&c);
    std::fs::write(user.authorized_keys(), std::fs::read(op.with_extension("pub")).unwrap()).unwrap();
    c.pri.cli("system execute gsec_create").ok();
    geo("create push-pem").ok();
    geo("config connection-timeout 5").ok();
    geo("start").ok();
    let write = |tag: &str, n: usize| {
        std::fs::create_dir_all(c.p(tag)).unwrap();
        for i in 0..n {
            std::fs::write(c.p(&format!("{tag}/f{i}")), format!("{tag} {i}")).unwrap();
        }
    };
    write("before", 200);
    c.assert_converged(Duration::from_secs(60));

    // The link down for 30 s while changes are being synced.
    write("cut", 500);
    h.link(false);
    write("during", 200);
    std::thread::sleep(Duration::from_secs(30));
    h.link(true);
    c.assert_converged(Duration::from_secs(120));

    // sshd restarted: the connection it served is gone.
    h.restart_sshd();
    write("after-sshd", 200);
    c.assert_converged(Duration::from_secs(120));

    // The receiver killed.
    assert!(wait_until(Duration::from_secs(30), || h.kill_matching("receiver") > 0), "no receiver to kill");
    write("after-kill", 200);
    c.assert_converged(Duration::from_secs(120));

    // A receiver that stops answering (SIGSTOP): after secondary-timeout the worker gives up
    // on it, and the row says why; once it is gone the session goes on.
    geo("config secondary-timeout 3").ok();
    write("before-stop", 10);
    c.assert_converged(Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(30), || h.signal_matching("receiver", "-STOP") > 0), "no receiver");
    write("stopped", 50);
    let reason = || c.pri.cli(&format!("volume geo-replication pvol {url} status --json")).stdout;
    assert!(
        wait_until(Duration::from_secs(30), || reason().contains("did not answer within 3 s (secondary-timeout)")),
        "{}\n{}",
        reason(),
        c.worker_log()
    );
    h.kill_matching("receiver");
    c.assert_converged(Duration::from_secs(120));
    geo("stop").ok();
}

fn mountbroker(c: &Cluster, args: &str) -> Out {
    let bin = std::path::Path::new(georep_bin()).with_file_name("gluster-mountbroker");
    assert!(bin.exists(), "{} is built with the workspace (cargo test --workspace)", bin.display());
    let o = Command::new(bin).args(args.split_whitespace()).envs(c.sec.envs()).output().unwrap();
    Out {
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        code: o.status.code().unwrap_or(-1),
    }
}

/// GlusterFS's non-root test (`00-georep-verify-non-root-setup.t`) across two hosts: a group
/// and an unprivileged user on the secondary, the mountbroker set up for it, the operator's key
/// given to it, the session key pushed with `user@host::svol`; the receiver runs as that user
/// through its broker mount, where it is root: owners, trusted xattrs and hard links to
/// anybody's files are replicated exactly.
#[test]
fn unprivileged_secondary_through_the_mountbroker() {
    use common::users::{LocalGroup, LocalUser};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let c = remote_cluster();
    // The user's home and the secondary's socket are inside the test's directory.
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let h = Host::new(c.dir.path(), "t3", 53);
    let _group = LocalGroup::new("georepnrg");
    let user = LocalUser::new(c.dir.path(), "georepnr", Some("georepnrg"));
    let url = format!("georepnr@{}::svol", h.addr);
    let geo = |rest: &str| c.pri.cli(&format!("volume geo-replication pvol {url} {rest}"));

    let root = c.dir.path().join("mbroot");
    let o = mountbroker(&c, &format!("setup {} georepnrg", root.display()));
    assert!(o.ok().contains("OK"), "{o:?}");
    assert!(mountbroker(&c, "add svol georepnr").ok().contains("OK"));
    let st = mountbroker(&c, "status").ok().to_string();
    assert!(st.contains(&format!("{}(OK)", root.display())) && st.contains("georepnr(svol)"), "{st}");
    // The API says the same of the secondary's node.
    let token = c.sec.cli("api-token").ok().trim().to_string();
    let o = std::process::Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{}/api/v1/mountbroker", c.sec.api_addr()))
        .output()
        .unwrap();
    let api: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((api["configured"].as_bool(), api["mount_root_ok"].as_bool()), (Some(true), Some(true)), "{api}");
    assert_eq!(api["users"]["georepnr"], serde_json::json!(["svol"]), "{api}");
    assert_eq!(api["group"], "georepnrg", "{api}");

    let op = operator_key(&c);
    user.authorize(&op.with_extension("pub"));
    c.pri.cli("sshkey generate").ok();
    assert_eq!(
        geo("create push-pem").ok(),
        format!("Creating geo-replication session between pvol & {url} has been successful\n")
    );
    for bad in ["-22", "abc", "6875943", "4.5", "22a"] {
        geo(&format!("config ssh-port {bad}")).refused();
    }
    geo("config ssh-port 22").ok();
    geo("start").ok();
    assert!(c.pri.cli("volume stop pvol").refused().contains("geo-replication sessions are active"));

    // Owners of 1000:1000 and others, modes, a set-uid file, trusted and user xattrs, hard
    // links to files and to a symlink none of them the receiving user's.
    std::fs::create_dir(c.p("d")).unwrap();
    std::fs::write(c.p("d/f"), "mine").unwrap();
    std::os::unix::fs::chown(c.p("d"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(c.p("d/f"), Some(1000), Some(1000)).unwrap();
    std::fs::write(c.p("d/g"), "theirs").unwrap();
    std::fs::set_permissions(c.p("d/g"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(c.p("d/g"), Some(2000), Some(3000)).unwrap();
    xattr::set(c.p("d/g"), "trusted.georeptest", b"t").unwrap();
    xattr::set(c.p("d/g"), "user.georeptest", b"u").unwrap();
    std::fs::write(c.p("suid"), "x").unwrap();
    std::fs::set_permissions(c.p("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(c.p("suid"), c.p("suid.hl")).unwrap();
    std::fs::hard_link(c.p("d/g"), c.p("g.hl")).unwrap();
    std::os::unix::fs::symlink("f", c.p("d/s")).unwrap();
    std::os::unix::fs::lchown(c.p("d/s"), Some(1500), Some(1500)).unwrap();
    std::fs::hard_link(c.p("d/s"), c.p("d/s.hl")).unwrap();
    for i in 0..50 {
        std::fs::write(c.p(&format!("d/n{i}")), vec![i as u8; 1000 * i]).unwrap();
    }
    // Enough data for parallel streams (sync-jobs 3): the two data receivers join the first
    // one's mount as the same user.
    for i in 0..4 {
        std::fs::write(c.p(&format!("d/big{i}")), vec![i as u8 + 1; 3 << 20]).unwrap();
    }
    c.assert_converged(Duration::from_secs(60));
    assert_eq!(xattr::get(c.s("d/g"), "trusted.georeptest").unwrap(), Some(b"t".to_vec()));
    assert_eq!(std::fs::metadata(c.s("suid")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::symlink_metadata(c.s("d/s.hl")).unwrap().nlink(), 2);
    // The receiver is the user's, and has nothing mounted in anybody's sight.
    let o = Command::new("pgrep").args(["-u", &user.name, "-f", r"^\S*/georep receiver"]).output().unwrap();
    let receivers = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(receivers, 3, "three streams (sync-jobs 3), each a receiver running as {}", user.name);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "{mounts}");

    geo("pause").ok();
    std::fs::write(c.p("while-paused"), "p").unwrap();
    geo("resume").ok();
    c.assert_converged(Duration::from_secs(60));

    // A read-only look at the DR copy while the session runs: one more mount served by the
    // secondary volume's brick server, beside the receivers' own. It sees what arrives (a
    // name it looked up in vain before included), refuses writes, and disturbs nothing.
    let dr = c.dir.path().join("dr");
    std::fs::create_dir(&dr).unwrap();
    let o = Command::new(mount_bin()).arg("svol").arg(&dr).args(["-o", "ro"]).envs(c.sec.envs()).output().unwrap();
    assert!(o.status.success(), "mount -o ro svol: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(dr.join("while-paused")).unwrap(), b"p");
    assert!(std::fs::metadata(dr.join("seen-on-dr")).is_err());
    assert_eq!(std::fs::read(dr.join("d/n1")).unwrap().len(), 1000);
    std::fs::write(c.p("seen-on-dr"), "dr").unwrap();
    std::fs::write(c.p("d/n1"), "changed").unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read(dr.join("seen-on-dr")).is_ok_and(|d| d == b"dr")
            && std::fs::read(dr.join("d/n1")).is_ok_and(|d| d == b"changed")),
        "the read-only mount sees what the receivers apply"
    );
    assert_eq!(std::fs::write(dr.join("x"), "y").unwrap_err().raw_os_error(), Some(libc::EROFS));
    c.assert_converged(Duration::from_secs(60));
    let st = geo("status").ok().to_string();
    assert!(st.contains("Active") && !st.contains("Faulty"), "{st}");
    assert!(Command::new("umount").arg(&dr).status().unwrap().success());

    // Hybrid crawl of directory renames (BZ 1763439).
    geo("config change_detector xsync").ok();
    for d in ["dir1", "dir1/dir2", "dir1/dir3", "hybrid_d1"] {
        std::fs::create_dir(c.p(d)).unwrap();
    }
    std::fs::rename(c.p("hybrid_d1"), c.p("hybrid_rn_d1")).unwrap();
    std::fs::rename(c.p("dir1/dir2"), c.p("rn_dir2")).unwrap();
    std::fs::rename(c.p("dir1/dir3"), c.p("dir1/rn_dir3")).unwrap();
    c.assert_converged(Duration::from_secs(60));
    for d in ["dir1", "hybrid_rn_d1", "rn_dir2", "dir1/rn_dir3"] {
        assert!(c.s(d).is_dir(), "{d}");
    }

    geo("stop").ok();
    geo("delete").ok();
    assert!(mountbroker(&c, "remove --user georepnr").ok().contains("OK"));
    assert!(mountbroker(&c, "remove --volume svol").ok().contains("OK"));
    assert!(mountbroker(&c, "status").ok().contains("None"));
}
