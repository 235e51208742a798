//! Several sites for the topology tests: each a georepd node with its volume (`<name>vol`,
//! started and mounted) and a network namespace with its own sshd, through which the other
//! sites' workers reach its receiver. Sessions between sites run over SSH as a uid-0 alias
//! account (`georepsites`, its home in the test's directory) with the session keys that
//! `create push-pem` installs. Everything is killed and unmounted on drop, even when the
//! test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cluster::{Node, Out, clean_up_under, split_columns};
use super::netns::Host;
use super::users::RootAlias;
use super::{is_mounted, mount_bin, require_root, shared_georep_bin, try_describe_tree, wait_until};

pub struct Site {
    pub node: Node,
    pub host: Host,
    pub vol: String,
    pub brick: PathBuf,
    pub mnt: PathBuf,
}

impl Site {
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn b(&self, rel: &str) -> PathBuf {
        self.brick.join(rel)
    }

    /// Mounts the site's volume at `mnt` with `opts` (if any); returns the mount's result.
    pub fn mount_at(&self, mnt: &Path, opts: &str) -> std::process::Output {
        let mut c = Command::new(mount_bin());
        c.arg(&self.vol).arg(mnt).envs(self.node.envs());
        if !opts.is_empty() {
            c.arg("-o").arg(opts);
        }
        c.output().unwrap()
    }

    pub fn mount(&self) {
        let o = self.mount_at(&self.mnt, "");
        assert!(o.status.success(), "mount {}: {}", self.vol, String::from_utf8_lossy(&o.stderr));
    }

    pub fn umount(&self) {
        if is_mounted(&self.mnt) {
            let st = Command::new("umount").arg(&self.mnt).status().unwrap();
            assert!(st.success(), "umount {}", self.mnt.display());
        }
    }

    pub fn cli(&self, words: &str) -> Out {
        self.node.cli(words)
    }

    /// The site goes down at once: its georepd (and with it its workers) and its brick server
    /// SIGKILLed, its users' mount gone.
    pub fn die(&mut self) {
        self.node.kill9();
        let _ =
            Command::new("pkill").args(["-9", "-f", "--"]).arg(format!("--serve {}", self.brick.display())).status();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }

    /// The site comes back: its georepd (which starts the brick server and the workers the
    /// store says run) and its users' mount.
    pub fn revive(&mut self) {
        self.node.start();
        let vol = self.vol.clone();
        assert!(
            wait_until(Duration::from_secs(30), || self.mount_at(&self.mnt, "").status.success()),
            "mount {vol} after revival"
        );
    }
}

pub struct Sites {
    pub dir: tempfile::TempDir,
    pub user: RootAlias,
    pub sites: Vec<Site>,
    /// The sessions made (from, to): their status and logs are shown when a test fails.
    sessions: std::cell::RefCell<Vec<(usize, usize)>>,
}

impl std::ops::Index<usize> for Sites {
    type Output = Site;
    fn index(&self, i: usize) -> &Site {
        &self.sites[i]
    }
}

impl std::ops::IndexMut<usize> for Sites {
    fn index_mut(&mut self, i: usize) -> &mut Site {
        &mut self.sites[i]
    }
}

impl Sites {
    /// Sites named `names` (at most 9), each up with its volume started and mounted and its
    /// session key made; namespaces `georep-<tag><name>` at 10.231.`<net + i>`.2.
    pub fn new(tag: &str, net: u8, names: &[&str]) -> Sites {
        Sites::with_small_bricks(tag, net, names, &[])
    }

    /// As `new`, the bricks of the sites `small` lists (index, MiB) on a tmpfs of that size
    /// (a disk that fills).
    pub fn with_small_bricks(tag: &str, net: u8, names: &[&str], small: &[(usize, u32)]) -> Sites {
        require_root();
        let dir = tempfile::Builder::new().prefix("georep-sites-").tempdir().unwrap();
        let user = RootAlias::new(dir.path(), &format!("georep{tag}"));
        let op = dir.path().join("operator_key");
        let o = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&op).output().unwrap();
        assert!(o.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&o.stderr));
        std::fs::write(user.authorized_keys(), std::fs::read(op.with_extension("pub")).unwrap()).unwrap();
        let receiver = format!("{} receiver", shared_georep_bin(dir.path()).display());
        let mut sites = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut node = Node::new(dir.path(), name);
            node.extra =
                vec!["--operator-key".into(), op.display().to_string(), "--remote-receiver".into(), receiver.clone()];
            let host = Host::with_env(
                dir.path(),
                &format!("{tag}{name}"),
                net + i as u8,
                &[("GEOREP_RUN_DIR", node.run_dir().display().to_string())],
            );
            node.start();
            let vol = format!("{name}vol");
            let brick = node.root.join("brick");
            if let Some((_, mib)) = small.iter().find(|(n, _)| *n == i) {
                std::fs::create_dir_all(&brick).unwrap();
                let o = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                    .arg(&brick)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "tmpfs: {}", String::from_utf8_lossy(&o.stderr));
            }
            let mnt = node.root.join("mnt");
            std::fs::create_dir_all(&mnt).unwrap();
            node.cli(&format!("volume create {vol} {name}:{}", brick.display())).ok();
            node.cli(&format!("volume start {vol}")).ok();
            node.cli("system execute gsec_create").ok();
            let site = Site { node, host, vol, brick, mnt };
            site.mount();
            sites.push(site);
        }
        Sites { dir, user, sites, sessions: Default::default() }
    }

    /// The secondary URL of site `to`, as other sites name it.
    pub fn url(&self, to: usize) -> String {
        format!("{}@{}::{}", self.user.name, self.sites[to].host.addr, self.sites[to].vol)
    }

    /// `georep volume geo-replication <from's volume> <to's url> <rest>` on site `from`.
    pub fn geo(&self, from: usize, to: usize, rest: &str) -> Out {
        let s = &self.sites[from];
        s.cli(&format!("volume geo-replication {} {} {rest}", s.vol, self.url(to)))
    }

    /// Creates (push-pem) and starts the session `from` → `to`.
    pub fn session(&self, from: usize, to: usize) {
        self.session_created_with(from, to, "create push-pem");
    }

    /// As `session`, created with `create` (its options: `create push-pem force`).
    pub fn session_created_with(&self, from: usize, to: usize, create: &str) {
        self.geo(from, to, create).ok();
        self.sessions.borrow_mut().push((from, to));
        self.geo(from, to, "start").ok();
    }

    /// The session's status detail rows (columns split on runs of 2+ spaces).
    pub fn rows(&self, from: usize, to: usize) -> Vec<Vec<String>> {
        let o = self.geo(from, to, "status detail");
        if o.code != 0 {
            return Vec::new();
        }
        o.stdout.lines().skip(3).map(split_columns).collect()
    }

    /// The worker log of the session `from` → `to`.
    pub fn worker_log(&self, from: usize, to: usize) -> String {
        let key = format!("{}_{}_{}", self.sites[from].vol, self.sites[to].host.addr, self.sites[to].vol);
        let p = self.sites[from].node.root.join(format!("log/geo-replication/{key}/gsyncd.log"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| format!("{}: {e}", p.display()))
    }

    /// Waits until the bricks of sites `a` and `b` hold the same tree.
    pub fn converged(&self, a: usize, b: usize, within: Duration) -> bool {
        wait_until(within, || match (try_describe_tree(&self[a].brick), try_describe_tree(&self[b].brick)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        })
    }

    #[track_caller]
    pub fn assert_converged(&self, a: usize, b: usize, within: Duration) {
        if !self.converged(a, b, within) {
            self.show_sessions();
            super::assert_same_tree(&self[a].brick, &self[b].brick);
        }
    }
}

impl Sites {
    /// Prints every session's status and worker log (for a failing test).
    pub fn show_sessions(&self) {
        for &(from, to) in self.sessions.borrow().iter() {
            eprintln!("session {from} -> {to}: {:?}\n{}", self.rows(from, to), self.worker_log(from, to));
        }
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        for s in &self.sites {
            if is_mounted(&s.mnt) {
                let _ = Command::new("umount").arg(&s.mnt).status();
            }
        }
        for s in &mut self.sites {
            s.node.kill9();
        }
        clean_up_under(self.dir.path());
        std::thread::sleep(Duration::from_millis(100));
    }
}
