//! `gluster-mountbroker` as SPEC section 7 and the reference's 5.2 describe it: setup, add,
//! remove, status, their tables, the config file, and the mount root's safety rules.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn mb(config: &Path, args: &[&str]) -> (String, String, i32) {
    let o = Command::new(env!("CARGO_BIN_EXE_gluster-mountbroker"))
        .args(args)
        .env("GEOREP_CONFIG_DIR", config)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn setup_add_remove_status() {
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc");
    let root = d.path().join("mountbroker-root");
    let root_s = root.to_str().unwrap();
    let status_row = |conf: &Path| -> Vec<String> {
        let (out, _, code) = mb(conf, &["status"]);
        assert_eq!(code, 0);
        out.lines().nth(3).unwrap().split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
    };
    assert_eq!(status_row(&conf), ["localhost", "UP", "None", "None", "None"]);

    // Refusals: one line, non-zero, nothing written.
    let (out, err, code) = mb(&conf, &["setup", root_s, "no-such-group-xyz"]);
    assert!(code != 0 && out.is_empty() && err.lines().count() == 1 && err.contains("User Group not exists"), "{err}");
    let (_, err, code) = mb(&conf, &["add", "svol", "tests"]);
    assert!(code != 0 && err.contains("Group is not available"), "{err}");
    assert!(!conf.join("mountbroker.conf").exists());
    let (_, err, code) = mb(&conf, &["frobnicate"]);
    assert!(code != 0 && err.contains("usage"), "{err}");

    let (out, _, code) = mb(&conf, &["setup", root_s, "tests"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "+-----------+-------------+--------------+\n|    NODE   | NODE STATUS | SETUP STATUS |\n+-----------+-------------+--------------+\n| localhost |          UP |      OK      |\n+-----------+-------------+--------------+\n"
    );
    for p in [root.clone(), root.join("mb_hive")] {
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid()), (0o711, 0), "{}", p.display());
    }
    assert_eq!(status_row(&conf), ["localhost", "UP", &format!("{root_s}(OK)"), "tests(OK)", "None"]);

    let (_, err, code) = mb(&conf, &["add", "svol", "no-such-user-xyz"]);
    assert!(code != 0 && err.contains("does not exist"), "{err}");
    assert_eq!(mb(&conf, &["add", "svol", "tests"]).2, 0);
    assert_eq!(mb(&conf, &["add", "svol2", "tests"]).2, 0);
    assert_eq!(mb(&conf, &["add", "svol", "tests"]).2, 0, "adding twice is harmless");
    assert_eq!(status_row(&conf)[4], "tests(svol, svol2)");
    let text = std::fs::read_to_string(conf.join("mountbroker.conf")).unwrap();
    assert!(
        text.contains(&format!("mountbroker-root {root_s}\n"))
            && text.contains("mountbroker-geo-replication.tests svol,svol2\n"),
        "{text}"
    );

    assert_eq!(mb(&conf, &["remove", "--volume", "svol"]).2, 0);
    assert_eq!(status_row(&conf)[4], "tests(svol2)");
    assert_eq!(mb(&conf, &["remove", "--user", "tests"]).2, 0);
    assert_eq!(status_row(&conf)[4], "None");

    // A root that others may write into is not a mount root.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(status_row(&conf)[2], format!("{root_s}(NOT OK)"));
    let inner = root.join("inner");
    let (_, err, code) = mb(&conf, &["setup", inner.to_str().unwrap(), "tests"]);
    assert!(code != 0 && err.contains("ancestor"), "{err}");
}
