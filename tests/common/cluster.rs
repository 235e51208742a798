//! Two georep nodes on this machine, each its own `georepd` with its own state, config, log
//! and run directories: `pri` (primary volume `pvol`, mounted) and `sec` (secondary volume
//! `svol`), the secondary reached as a local peer. Everything is killed and unmounted on drop,
//! even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{is_mounted, require_root, try_describe_tree, wait_until};

pub fn georepd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_georepd")
}

pub struct Node {
    pub name: String,
    pub root: PathBuf,
    pub peers: Vec<(String, PathBuf)>,
    /// More georepd flags.
    pub extra: Vec<String>,
    /// More environment for georepd (what systemd would give it, say).
    pub vars: Vec<(String, String)>,
    /// Where its programs are (georepd, georep, mount_georep): this build's unless set (a
    /// previous release's, for the upgrade tests).
    pub exe_dir: Option<PathBuf>,
    /// The network namespace its daemon runs in and its address there (`on`): a machine of
    /// its own on the network, its files still on this one's.
    pub netns: Option<(String, String)>,
    child: Option<Child>,
}

impl Drop for Node {
    /// A node a test forgot is not left running.
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a command printed and its exit status.
#[derive(Debug)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        &self.stdout
    }

    /// Asserts a refusal: non-zero, one line on stderr, nothing on stdout; returns the line.
    #[track_caller]
    pub fn refused(&self) -> &str {
        assert_ne!(self.code, 0, "command succeeded but should not: {self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "want one error line: {self:?}");
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:?}");
        self.stderr.trim_end()
    }
}

impl Node {
    pub fn new(base: &Path, name: &str) -> Node {
        let root = base.join(name);
        std::fs::create_dir_all(&root).unwrap();
        Node {
            name: name.into(),
            root,
            peers: Vec::new(),
            extra: Vec::new(),
            vars: Vec::new(),
            exe_dir: None,
            netns: None,
            child: None,
        }
    }

    pub fn envs(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("GEOREP_STATE_DIR", self.root.join("state")),
            ("GEOREP_CONFIG_DIR", self.root.join("etc")),
            ("GEOREP_LOG_DIR", self.root.join("log")),
            ("GEOREP_RUN_DIR", self.root.join("run")),
        ]
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.root.join("georepd.out")).unwrap();
        let mut c = match &self.netns {
            Some((ns, _)) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(self.exe("georepd"));
                c
            }
            None => Command::new(self.exe("georepd")),
        };
        c.arg("--node-name").arg(&self.name).envs(self.envs()).stdin(Stdio::null()).stdout(log.try_clone().unwrap());
        c.stderr(log);
        for (h, d) in &self.peers {
            c.arg("--local-peer").arg(format!("{h}={}", d.display()));
        }
        c.args(&self.extra);
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
        // Several nodes on this machine: each API on a port of its own.
        // (In a namespace, its own loopback: plain HTTP is served on loopback only.)
        if !self.extra.iter().any(|a| a == "--listen") {
            c.args(["--listen", "127.0.0.1:0"]);
        }
        self.child = Some(c.spawn().unwrap());
        let sock = self.run_dir().join("georepd.sock");
        // Up means answering: the socket is bound before the node registers in the store and
        // serves its first request only after, so a bound socket alone is not enough for a peer
        // to name this node in `volume create`.
        assert!(
            wait_until(Duration::from_secs(10), || std::os::unix::net::UnixStream::connect(&sock).is_ok()
                && self.cli("pool list").code == 0),
            "georepd {} did not come up: {}",
            self.name,
            std::fs::read_to_string(self.root.join("georepd.out")).unwrap_or_default()
        );
    }

    /// Runs its daemon (and so its brick servers and workers) in `host`'s network namespace.
    pub fn on(&mut self, host: &super::netns::Host) {
        self.netns = Some((host.ns.clone(), host.addr.clone()));
    }

    /// `curl -X method` of its API at `path` with its token and the JSON `body`, from where
    /// the node is (its namespace, whose loopback its API listens on): (HTTP status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let token = self.cli("api-token").ok().trim().to_string();
        let mut c = match &self.netns {
            Some((ns, _)) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg("curl");
                c
            }
            None => Command::new("curl"),
        };
        c.args(["-s", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        c.arg("-H").arg(format!("Authorization: Bearer {token}"));
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let o = c.arg(format!("http://{}{path}", self.api_addr())).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let (body, code) = out.rsplit_once('\n').unwrap_or_default();
        (code.parse().unwrap_or(0), body.to_string())
    }

    /// The address its API listens on.
    pub fn api_addr(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("api.addr")).unwrap().trim().to_string()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The path of its program `name`.
    pub fn exe(&self, name: &str) -> PathBuf {
        match &self.exe_dir {
            Some(d) => d.join(name),
            None => Path::new(super::georep_bin()).with_file_name(name),
        }
    }

    /// Stops georepd as `systemctl stop` does (SIGTERM) and returns how it ended, if it ended
    /// within `within`.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `georep <words>` against this node.
    pub fn cli(&self, words: &str) -> Out {
        self.cli_args(&words.split_whitespace().collect::<Vec<_>>())
    }

    pub fn cli_args(&self, args: &[&str]) -> Out {
        let o = Command::new(self.exe("georep")).args(args).envs(self.envs()).output().unwrap();
        Out {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            code: o.status.code().unwrap_or(-1),
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub pri: Node,
    pub sec: Node,
    pub pbrick: PathBuf,
    pub sbrick: PathBuf,
    pub pmnt: PathBuf,
}

pub const SESSION: &str = "volume geo-replication pvol sec::svol";

impl Cluster {
    /// Both nodes up, both volumes created; started and mounted if `start`.
    pub fn new(start: bool) -> Cluster {
        Cluster::make(start, true, None, None, |_, _| Vec::new())
    }

    /// As `new(true)`, the primary's georepd with more flags (`extra`).
    pub fn with_extra(extra: impl Fn(&Path, &Node) -> Vec<String>) -> Cluster {
        Cluster::make(true, true, None, None, extra)
    }

    /// As `new`, but the primary reaches no secondary on this machine: only over SSH. `extra`
    /// gives the primary's georepd more flags (from the test's directory and the secondary).
    pub fn remote(extra: impl Fn(&Path, &Node) -> Vec<String>) -> Cluster {
        Cluster::make(true, false, None, None, extra)
    }

    /// As `remote`, the secondary's brick on a tmpfs of `mib` MiB of its own (`sfs`, the brick
    /// its `brick` directory): a disk that a test can fill beside the brick and free.
    pub fn remote_small(mib: u32, extra: impl Fn(&Path, &Node) -> Vec<String>) -> Cluster {
        Cluster::make(true, false, None, Some(mib), extra)
    }

    /// As `remote`, each node running the programs in a directory of its own (a previous
    /// release's, to be upgraded in place).
    pub fn remote_from(pri_exe: &Path, sec_exe: &Path, extra: impl Fn(&Path, &Node) -> Vec<String>) -> Cluster {
        Cluster::make(true, false, Some((pri_exe, sec_exe)), None, extra)
    }

    fn make(
        start: bool,
        local_peer: bool,
        exe_dirs: Option<(&Path, &Path)>,
        small: Option<u32>,
        extra: impl Fn(&Path, &Node) -> Vec<String>,
    ) -> Cluster {
        require_root();
        let dir = tempfile::Builder::new().prefix("georep-cluster-").tempdir().unwrap();
        let mut sec = Node::new(dir.path(), "sec");
        let mut pri = Node::new(dir.path(), "pri");
        if let Some((p, s)) = exe_dirs {
            (pri.exe_dir, sec.exe_dir) = (Some(p.to_path_buf()), Some(s.to_path_buf()));
        }
        if local_peer {
            pri.peers.push(("sec".into(), sec.run_dir()));
        }
        pri.extra = extra(dir.path(), &sec);
        sec.start();
        pri.start();
        let pbrick = dir.path().join("pbrick");
        let sbrick = match small {
            None => dir.path().join("sbrick"),
            Some(mib) => {
                let fs = dir.path().join("sfs");
                std::fs::create_dir(&fs).unwrap();
                let o = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                    .arg(&fs)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "tmpfs: {}", String::from_utf8_lossy(&o.stderr));
                fs.join("brick")
            }
        };
        let pmnt = dir.path().join("pmnt");
        std::fs::create_dir(&pmnt).unwrap();
        pri.cli(&format!("volume create pvol pri:{}", pbrick.display())).ok();
        sec.cli(&format!("volume create svol sec:{}", sbrick.display())).ok();
        let c = Cluster { dir, pri, sec, pbrick, sbrick, pmnt };
        if start {
            c.pri.cli("volume start pvol").ok();
            c.sec.cli("volume start svol").ok();
            c.mount_primary();
        }
        c
    }

    pub fn mount_primary(&self) {
        let o = Command::new(self.pri.exe("mount_georep"))
            .arg("pvol")
            .arg(&self.pmnt)
            .envs(self.pri.envs())
            .output()
            .unwrap();
        assert!(o.status.success(), "mount pvol: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// `georep volume geo-replication pvol sec::svol <rest>` on the primary.
    pub fn geo(&self, rest: &str) -> Out {
        self.pri.cli(&format!("{SESSION} {rest}"))
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.pmnt.join(rel)
    }

    pub fn s(&self, rel: &str) -> PathBuf {
        self.sbrick.join(rel)
    }

    /// The status rows' columns (split on runs of 2+ spaces).
    pub fn rows(&self, detail: bool) -> Vec<Vec<String>> {
        let o = self.geo(if detail { "status detail" } else { "status" });
        if o.code != 0 {
            return Vec::new();
        }
        o.stdout.lines().skip(3).map(split_columns).collect()
    }

    /// Waits until the secondary volume is an exact replica of the primary mount.
    pub fn converged(&self, within: Duration) -> bool {
        wait_until(within, || match (try_describe_tree(&self.pmnt), try_describe_tree(&self.sbrick)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        })
    }

    #[track_caller]
    pub fn assert_converged(&self, within: Duration) {
        if !self.converged(within) {
            super::assert_same_tree(&self.pmnt, &self.sbrick);
        }
    }

    /// The session's worker log (for failure messages).
    pub fn worker_log(&self) -> String {
        let Ok(dirs) = std::fs::read_dir(self.pri.root.join("log/geo-replication")) else { return String::new() };
        dirs.flatten().map(|d| std::fs::read_to_string(d.path().join("gsyncd.log")).unwrap_or_default()).collect()
    }

    /// The pid of the session's worker process, if one runs.
    pub fn worker_pid(&self) -> Option<i32> {
        let o =
            Command::new("pgrep").arg("-f").arg(format!("georep worker {}", self.pri.root.display())).output().ok()?;
        String::from_utf8_lossy(&o.stdout).lines().next()?.trim().parse().ok()
    }

    /// The pid of the worker's receiver.
    pub fn receiver_pid(&self) -> Option<i32> {
        let w = self.worker_pid()?;
        let o = Command::new("pgrep").arg("-P").arg(w.to_string()).output().ok()?;
        String::from_utf8_lossy(&o.stdout).lines().next()?.trim().parse().ok()
    }
}

pub fn split_columns(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if is_mounted(&self.pmnt) {
            let _ = Command::new("umount").arg(&self.pmnt).status();
        }
        // Workers die with their daemon.
        self.pri.kill9();
        self.sec.kill9();
        clean_up_under(self.dir.path());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Unmounts whatever is still mounted below `dir` (a receiver's mount is detached already;
/// this catches the rest) and kills every process whose command line names it.
pub fn clean_up_under(dir: &Path) {
    let me = dir.to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&me)) {
        let _ = Command::new("umount").arg("-l").arg(m).status();
    }
    let _ = Command::new("pkill").arg("-9").arg("-f").arg(&me).status();
}
