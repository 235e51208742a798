//! Real etcd for the tests: Debian's `etcd` (3.4), one process per member on loopback ports,
//! its data in the test's directory, SIGKILLed when dropped. `etcdctl` reads what georep wrote.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A free TCP port on loopback (free when asked; etcd binds it at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Certificates for etcd over TLS (PEM files): the CA, the members' (for 127.0.0.1) and a
/// client's, made with openssl.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Tls {
    pub fn make(dir: &Path) -> Tls {
        let d = dir.join("tls");
        std::fs::create_dir_all(&d).unwrap();
        let sh = |script: &str| {
            let o = Command::new("sh").arg("-ec").arg(script).current_dir(&d).output().unwrap();
            assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
        };
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!(
            "openssl req -x509 {key} -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=georep-test-ca 2>/dev/null"
        ));
        for (name, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            sh(&format!(
                "openssl req {key} -keyout {name}-key.pem -out {name}.csr -subj /CN={name} 2>/dev/null
                 printf '{ext}\n' > {name}.ext
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext 2>/dev/null"
            ));
        }
        Tls {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server-key.pem"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client-key.pem"),
        }
    }
}

/// One etcd member.
pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: String,
    state: &'static str,
    tls: Option<Tls>,
}

impl Member {
    /// `HOST:PORT` of its client URL, as `--store etcd://...` takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    fn spawn(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client);
        // Without TLS (whose certificate names 127.0.0.1), every address of this machine:
        // nodes in network namespaces reach it at their link's address (`endpoints_via`).
        let listen = if self.tls.is_some() { client.clone() } else { format!("http://0.0.0.0:{}", self.client) };
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.name))).unwrap();
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            // Clients must show a certificate the CA signed.
            cmd.arg("--cert-file").arg(&t.server_cert).arg("--key-file").arg(&t.server_key);
            cmd.arg("--trusted-ca-file").arg(&t.ca).arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.join(&self.name))
            .args(["--listen-client-urls", &listen, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster, "--initial-cluster-state", self.state])
            .args(["--initial-cluster-token", &format!("georep-test-{}", std::process::id())])
            // Fast elections: the tests kill leaders.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; scripts/deps installs it)");
        self.child = Some(child);
    }

    /// SIGKILLs the member (its data stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the killed member again on its data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        self.state = "existing";
        self.spawn();
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd cluster of `n` members on this machine.
pub struct Etcd {
    pub members: Vec<Member>,
    /// `USER:PASSWORD` for etcdctl, once authentication is on.
    pub auth: Option<String>,
    pub tls: Option<Tls>,
}

impl Etcd {
    pub fn start(dir: &Path, n: usize) -> Etcd {
        Etcd::start_with(dir, n, None)
    }

    /// As `start`, its clients served over TLS only, with certificates `tls` made.
    pub fn start_tls(dir: &Path, n: usize) -> Etcd {
        Etcd::start_with(dir, n, Some(Tls::make(dir)))
    }

    fn start_with(dir: &Path, n: usize, tls: Option<Tls>) -> Etcd {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, peer))| Member {
                name: format!("m{i}"),
                client,
                peer,
                dir: dir.to_path_buf(),
                child: None,
                cluster: cluster.join(","),
                state: "new",
                tls: tls.clone(),
            })
            .collect();
        for m in &mut members {
            m.spawn();
        }
        let e = Etcd { members, auth: None, tls };
        assert!(
            wait_until(Duration::from_secs(30), || e.healthy()),
            "etcd did not come up: see {}/m*.log",
            dir.display()
        );
        e
    }

    /// Every running member's `HOST:PORT`, comma-separated (the `--store` form).
    pub fn endpoints(&self) -> String {
        self.members.iter().map(Member::endpoint).collect::<Vec<_>>().join(",")
    }

    /// As `endpoints`, at `ip`, an address of this machine (a namespace's gateway).
    pub fn endpoints_via(&self, ip: &str) -> String {
        self.members.iter().map(|m| format!("{ip}:{}", m.client)).collect::<Vec<_>>().join(",")
    }

    /// `etcdctl` (v3 API) against the running members.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let eps: Vec<String> =
            self.members.iter().filter(|m| m.running()).map(|m| format!("{scheme}://{}", m.endpoint())).collect();
        let mut cmd = Command::new("etcdctl");
        if let Some(t) = &self.tls {
            cmd.arg("--cacert").arg(&t.ca).arg("--cert").arg(&t.client_cert).arg("--key").arg(&t.client_key);
        }
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(eps.join(","))
            .args(["--command-timeout", "3s"])
            .args(self.auth.iter().flat_map(|a| ["--user", a.as_str()]))
            .args(args)
            .output()
            .expect("etcdctl (Debian's etcd-client; scripts/deps installs it)")
    }

    /// Every running member answers, and the cluster has a leader.
    pub fn healthy(&self) -> bool {
        self.ctl(&["endpoint", "health"]).status.success()
    }

    /// The value etcdctl reads at `key` (a full key, the store's prefix included).
    pub fn get(&self, key: &str) -> Option<String> {
        let o = self.ctl(&["get", "--print-value-only", key]);
        assert!(o.status.success(), "etcdctl get {key}: {}", String::from_utf8_lossy(&o.stderr));
        let v = String::from_utf8(o.stdout).unwrap();
        if v.is_empty() { None } else { Some(v.trim_end_matches('\n').to_string()) }
    }
}
