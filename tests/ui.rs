//! The web console in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/ui/console.cjs`), against two real sites (network namespaces with their own sshd).
//! The script does what an operator does in the page; what only the machine can do (write on
//! the primary mount, stop the secondary's sshd, make a change fail, restart georepd) it asks
//! this side for, one line at a time. Screenshots go to `target/tmp/ui/`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sites::Sites;

/// Where `scripts/deps` installs playwright-core.
const PLAYWRIGHT: &str = "/opt/georep-test/node/node_modules";

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Takes the immutable flag off a file, whatever happens to the test.
struct Undo(PathBuf);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
    }
}

/// Unmounts a filesystem the test mounted, whatever happens to it.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn chattr(flag: &str, p: &std::path::Path) {
    let o = Command::new("chattr").arg(flag).arg(p).output().unwrap();
    assert!(o.status.success(), "chattr {flag}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_console_in_a_real_browser() {
    assert!(
        std::path::Path::new(PLAYWRIGHT).join("playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core and chromium are needed: run scripts/deps"
    );
    let mut s = Sites::new("ui", 93, &["a", "b"]);
    // A destination volume too small for the primary (a 16 MiB tmpfs): not eligible.
    let small = s[1].node.root.join("small-brick");
    std::fs::create_dir_all(&small).unwrap();
    let o = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(&small).output().unwrap();
    assert!(o.status.success(), "tmpfs: {}", String::from_utf8_lossy(&o.stderr));
    let _unmount = Unmount(small.clone());
    s[1].cli(&format!("volume create smallvol b:{}", small.display())).ok();
    s[1].cli("volume start smallvol").ok();
    let token = s[0].cli("api-token").ok().trim().to_string();
    let addr = s[0].node.api_addr();
    let out = out_dir();
    let mut node = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/console.cjs"))
        .env("NODE_PATH", PLAYWRIGHT)
        .env("URL", format!("http://{addr}"))
        .env("TOKEN", &token)
        .env("DEST_HOST", &s[1].host.addr)
        .env("DEST_USER", &s.user.name)
        .env("DEST_VOL", &s[1].vol)
        .env("SMALL_VOL", "smallvol")
        .env("PVOL", &s[0].vol)
        .env("OUT", &out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut to_node = node.stdin.take().unwrap();
    let from_node = BufReader::new(node.stdout.take().unwrap());
    let (mut written, mut verdict, mut undo) = (0, None, None);
    let t0 = Instant::now();
    for line in from_node.lines().map_while(Result::ok) {
        eprintln!("[{:>5.1} s] {line}", t0.elapsed().as_secs_f64());
        let Some(what) = line.strip_prefix("ASK ") else {
            if line == "PASS" || line.starts_with("FAIL ") {
                verdict = Some(line);
            }
            continue;
        };
        match what {
            "write-files" => {
                for _ in 0..20 {
                    written += 1;
                    std::fs::write(s[0].p(&format!("ui-{written}")), format!("file {written}\n")).unwrap();
                }
            }
            "sshd-stop" => s[1].host.sshd(false),
            "sshd-start" => s[1].host.sshd(true),
            "host-key-change" => s[1].host.new_host_key(),
            "make-failure" => {
                std::fs::write(s[0].p("stuck"), "one").unwrap();
                s.assert_converged(0, 1, Duration::from_secs(60));
                chattr("+i", &s[1].b("stuck"));
                undo = Some(Undo(s[1].b("stuck")));
                std::fs::write(s[0].p("stuck"), "two, longer").unwrap();
            }
            "clear-failure" => {
                chattr("-i", &s[1].b("stuck"));
                undo = None;
            }
            // georepd goes away for a few seconds (the page must say so), then comes back on
            // the same address.
            "georepd-restart" => s[0].die(),
            "georepd-started" => {
                s[0].node.extra.extend(["--listen".to_string(), addr.clone()]);
                s[0].revive();
            }
            other => panic!("the browser script asked for {other:?}"),
        }
        to_node.write_all(b"DONE\n").unwrap();
    }
    drop(undo);
    let st = node.wait().unwrap();
    assert_eq!(verdict.as_deref(), Some("PASS"), "the browser script failed (screenshots in {})", out.display());
    assert!(st.success());
    // The failure's cause gone and retried: the secondary has the primary's content.
    s.assert_converged(0, 1, Duration::from_secs(60));
    let shots = std::fs::read_dir(&out).unwrap().count();
    assert!(shots >= 10, "screenshots of each view: {shots} in {}", out.display());
}
