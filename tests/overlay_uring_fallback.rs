//! When the kernel offers FUSE over io_uring but this process may not use io_uring
//! (`kernel.io_uring_disabled`), the overlay must not agree to it: once agreed, the kernel holds
//! every request until the rings are up, and the mount would hang. It keeps to `/dev/fuse`.
//! (A test binary of its own: it changes a system-wide setting for its duration.)

mod common;

use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const ENABLE: &str = "/sys/module/fuse/parameters/enable_uring";
const DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// Sets `kernel.io_uring_disabled` for the test and back as it was afterwards.
struct IoUringDisabled(String);

impl IoUringDisabled {
    fn set(v: &str) -> IoUringDisabled {
        let was = fs::read_to_string(DISABLED).unwrap_or_else(|e| panic!("{DISABLED}: {e}"));
        fs::write(DISABLED, v).unwrap();
        IoUringDisabled(was.trim().to_string())
    }
}

impl Drop for IoUringDisabled {
    fn drop(&mut self) {
        let _ = fs::write(DISABLED, &self.0);
    }
}

#[test]
fn without_io_uring_the_mount_keeps_to_dev_fuse_instead_of_hanging() {
    require_root();
    fs::write(ENABLE, "Y").unwrap();
    let _off = IoUringDisabled::set("2");
    let m = Mount::new("");
    let (tx, rx) = mpsc::channel();
    let (p, b) = (m.p("d/f"), m.b("d/f"));
    let d = m.p("d");
    std::thread::spawn(move || {
        fs::create_dir(&d).unwrap();
        fs::write(&p, b"through /dev/fuse").unwrap();
        let _ = tx.send(fs::read(&b).unwrap());
    });
    let got = rx.recv_timeout(Duration::from_secs(20));
    if got.is_err() {
        // Let the stuck thread go before failing.
        m.kill9();
        panic!("requests hang: FUSE over io_uring agreed without rings");
    }
    assert_eq!(got.unwrap(), b"through /dev/fuse");
    let pid = daemon_pid(&m.mnt).unwrap();
    let names: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| fs::read_to_string(t.unwrap().path().join("comm")).unwrap().trim().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("fuser-ring-")), "{names:?}");
    assert!(names.iter().filter(|n| n.starts_with("fuser-")).count() > 1, "all /dev/fuse threads: {names:?}");
    assert!(m.dump().iter().any(|l| l.contains("CREATE") && l.ends_with("/f")));
}
