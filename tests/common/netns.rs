//! A second host for tests: a network namespace joined to this one by a veth pair, with its
//! own OpenSSH server (own config, host key, authorized keys file, pid file). Everything is
//! removed on drop, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

pub struct Host {
    pub ns: String,
    /// The namespace's address, as the other side reaches it.
    pub addr: String,
    pub dir: PathBuf,
    veth: String,
    sshd: Option<Child>,
    /// Set in every session sshd starts (`SetEnv`).
    env: Vec<(String, String)>,
    /// A directory of this host's own mounted over a shared one (a user's home) for its sshd
    /// and its sessions: another machine's files.
    own: Option<(PathBuf, PathBuf)>,
}

fn run(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

impl Host {
    /// A namespace `georep-<tag>` at 10.231.`<net>`.2 (this side: .1), and an sshd on port 22
    /// in it that lets in uid 0 by key, from the user's `~/.ssh/authorized_keys` or from
    /// `<dir>/authorized_keys`.
    pub fn new(dir: &Path, tag: &str, net: u8) -> Host {
        Host::with_env(dir, tag, net, &[])
    }

    /// As `new`, with `env` set in every session of its sshd (as the host's own environment
    /// would be: a site's `GEOREP_RUN_DIR`).
    pub fn with_env(dir: &Path, tag: &str, net: u8, env: &[(&str, String)]) -> Host {
        Host::make(dir, tag, net, env, None)
    }

    /// As `with_env`, its sshd and sessions seeing the directory `own` in place of `shared`
    /// (a user's home: each host its own `~/.ssh/authorized_keys`).
    pub fn with_own_dir(dir: &Path, tag: &str, net: u8, env: &[(&str, String)], shared: &Path, own: &Path) -> Host {
        Host::make(dir, tag, net, env, Some((shared.to_path_buf(), own.to_path_buf())))
    }

    /// A namespace as `new` makes it, without an sshd: a machine of its own for a node whose
    /// programs the test starts in it (`Node::on`), reaching this side at 10.231.`<net>`.1.
    pub fn bare(dir: &Path, tag: &str, net: u8) -> Host {
        Host::make_with(dir, tag, net, &[], None, false)
    }

    fn make(dir: &Path, tag: &str, net: u8, env: &[(&str, String)], own: Option<(PathBuf, PathBuf)>) -> Host {
        Host::make_with(dir, tag, net, env, own, true)
    }

    fn make_with(
        dir: &Path,
        tag: &str,
        net: u8,
        env: &[(&str, String)],
        own: Option<(PathBuf, PathBuf)>,
        sshd: bool,
    ) -> Host {
        let ns = format!("georep-{tag}");
        let veth = format!("gr{tag}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        run(&["ip", "netns", "add", &ns]);
        let peer = format!("{veth}p");
        run(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        run(&["ip", "link", "set", &peer, "netns", &ns]);
        run(&["ip", "addr", "add", &format!("10.231.{net}.1/24"), "dev", &veth]);
        run(&["ip", "link", "set", &veth, "up"]);
        run(&["ip", "-n", &ns, "addr", "add", &format!("10.231.{net}.2/24"), "dev", &peer]);
        run(&["ip", "-n", &ns, "link", "set", &peer, "up"]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let dir = dir.join(format!("host-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut h = Host { ns, addr: format!("10.231.{net}.2"), dir, veth, sshd: None, env, own };
        if sshd {
            h.start_sshd();
        }
        h
    }

    /// This side's address on the link, as the host reaches the machine it runs on.
    pub fn gateway(&self) -> String {
        self.addr.rsplit_once('.').map(|(net, _)| format!("{net}.1")).unwrap()
    }

    /// The processes in the namespace (a machine's, to halt it all at once).
    pub fn pids(&self) -> Vec<i32> {
        let o = Command::new("ip").args(["netns", "pids", &self.ns]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }

    fn start_sshd(&mut self) {
        let key = self.dir.join("ssh_host_ed25519_key");
        if !key.exists() {
            run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]);
        }
        let conf = self.dir.join("sshd_config");
        let setenv: String = self.env.iter().map(|(k, v)| format!("SetEnv {k}={v}\n")).collect();
        std::fs::write(
            &conf,
            setenv
                + &format!(
                    "ListenAddress {addr}\nPort 22\nHostKey {key}\nPidFile {dir}/sshd.pid\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AuthorizedKeysFile .ssh/authorized_keys {dir}/authorized_keys\nStrictModes no\nLogLevel VERBOSE\n",
                    addr = self.addr,
                    key = key.display(),
                    dir = self.dir.display()
                ),
        )
        .unwrap();
        if !self.authorized_keys().exists() {
            std::fs::write(self.authorized_keys(), "").unwrap();
        }
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(self.dir.join("sshd.log")).unwrap();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]);
        // `ip netns exec` gives the command a mount namespace of its own: the bind mount is
        // seen by sshd and its sessions alone.
        if let Some((shared, own)) = &self.own {
            c.args(["sh", "-c", "mount --bind \"$0\" \"$1\" && shift && exec \"$@\""]).arg(own).arg(shared);
        }
        let child = c
            .args(["/usr/sbin/sshd", "-D", "-e", "-f", conf.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        let addr = format!("{}:22", self.addr);
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(&addr).is_ok()),
            "sshd in {} did not come up: {}",
            self.ns,
            std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
        );
    }

    /// Cuts (`false`) or restores (`true`) the link between the two hosts.
    pub fn link(&self, up: bool) {
        run(&["ip", "link", "set", &self.veth, if up { "up" } else { "down" }]);
    }

    /// Restarts the OpenSSH server, ending every connection it serves.
    pub fn restart_sshd(&mut self) {
        self.stop_sshd();
        self.kill_matching("sshd");
        self.start_sshd();
    }

    /// Stops the OpenSSH server and every connection it serves (`false`), or starts it again.
    pub fn sshd(&mut self, up: bool) {
        if up {
            self.start_sshd();
        } else {
            self.stop_sshd();
            self.kill_matching("sshd");
        }
    }

    /// SIGKILLs the processes of the namespace whose command line contains `pattern`;
    /// returns how many.
    pub fn kill_matching(&self, pattern: &str) -> usize {
        self.signal_matching(pattern, "-9")
    }

    /// Sends `signal` (as kill(1) takes it) to the processes in the namespace whose command
    /// line contains `pattern`; returns how many.
    pub fn signal_matching(&self, pattern: &str, signal: &str) -> usize {
        let o = Command::new("ip").args(["netns", "pids", &self.ns]).output().unwrap();
        let mut n = 0;
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(pattern) {
                let _ = Command::new("kill").args([signal, pid]).output();
                n += 1;
            }
        }
        n
    }

    /// The host key's public line, as `known_hosts` holds it.
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub")).unwrap().trim().to_string()
    }

    /// Replaces the host key (a changed server, or an attacker's) and restarts sshd.
    pub fn new_host_key(&mut self) {
        self.stop_sshd();
        let key = self.dir.join("ssh_host_ed25519_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        self.start_sshd();
    }

    fn stop_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("sshd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).output();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_sshd();
        // sshd's session children live in the namespace too.
        let _ = Command::new("ip").args(["netns", "pids", &self.ns]).output().map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        });
        let _ = Command::new("ip").args(["link", "del", &self.veth]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
