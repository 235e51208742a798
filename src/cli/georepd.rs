//! `georepd`'s command line (its flags are what `/etc/default/georepd` sets), here so that its
//! manual and completions are generated with the others' (`cli::manual`).

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "georepd",
    version,
    long_version = crate::version::LONG.as_str(),
    about = "The georep node daemon: store, control socket, brick servers, session workers, REST API"
)]
pub struct Args {
    /// This node's name (default: the hostname)
    #[arg(long, env = "GEOREPD_NODE_NAME")]
    pub node_name: Option<String>,
    /// The cluster store: `local` (embedded, one node) or
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (several nodes share it; docs/cluster.md)
    #[arg(long, env = "GEOREPD_STORE", default_value = "local")]
    pub store: String,
    /// etcd over TLS: the CA certificate of the members (PEM)
    #[arg(long, env = "GEOREPD_STORE_CACERT", value_name = "FILE")]
    pub store_cacert: Option<PathBuf>,
    /// etcd over TLS: this node's client certificate (PEM), if the members ask for one
    #[arg(long, env = "GEOREPD_STORE_CERT", value_name = "FILE", requires = "store_key")]
    pub store_cert: Option<PathBuf>,
    /// The client certificate's key (PEM)
    #[arg(long, env = "GEOREPD_STORE_KEY", value_name = "FILE", requires = "store_cert")]
    pub store_key: Option<PathBuf>,
    /// etcd's authentication: the user georepd logs in as
    #[arg(long, env = "GEOREPD_STORE_USER", requires = "store_password_file")]
    pub store_user: Option<String>,
    /// The user's password: the first line of this file
    #[arg(long, env = "GEOREPD_STORE_PASSWORD_FILE", value_name = "FILE", requires = "store_user")]
    pub store_password_file: Option<PathBuf>,
    /// Replica volumes: how long a node stays Active before it hands the role back to the
    /// volume's first node when that node is back and has run this long (no flapping)
    #[arg(long, env = "GEOREPD_REPLICA_HOLD_TIME", value_name = "SECONDS", default_value_t = 60)]
    pub replica_hold_time: u64,
    /// State directory [env GEOREP_STATE_DIR; default /var/lib/georep]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Config directory [env GEOREP_CONFIG_DIR; default /etc/georep]
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// Log directory [env GEOREP_LOG_DIR; default /var/log/georep]
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Socket directory [env GEOREP_RUN_DIR; default /run/georep]
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// A secondary host on this machine, reached without SSH: HOST=RUN_DIR (its georepd's
    /// socket directory). Repeatable.
    #[arg(long = "local-peer", value_name = "HOST=RUN_DIR")]
    pub local_peers: Vec<String>,
    /// The operator's SSH key to secondaries, used by `create push-pem` to install the
    /// session keys (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa)
    #[arg(long)]
    pub operator_key: Option<PathBuf>,
    /// The command the session keys are restricted to on secondaries
    #[arg(long, default_value = "georep receiver")]
    pub remote_receiver: String,
    /// The REST API's address (`ADDR:PORT`; port 0: any free one, written to
    /// `<run>/api.addr`), or `none`
    #[arg(long, env = "GEOREPD_LISTEN", default_value = "127.0.0.1:9900")]
    pub listen: String,
    /// Serve the API over plain HTTP on an address other than loopback
    #[arg(long)]
    pub insecure_http: bool,
    /// Serve the API over HTTPS with this certificate chain (PEM)
    #[arg(long, env = "GEOREPD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, env = "GEOREPD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl Args {
    /// The store `--store` and the `--store-*` options name.
    pub fn store_spec(&self) -> anyhow::Result<crate::daemon::store::Spec> {
        use crate::daemon::store::Spec;
        let mut spec = Spec::parse(&self.store)?;
        match &mut spec {
            Spec::Local => {
                let etcd_only = [
                    ("--store-cacert", self.store_cacert.is_some()),
                    ("--store-cert", self.store_cert.is_some()),
                    ("--store-user", self.store_user.is_some()),
                ];
                if let Some((flag, _)) = etcd_only.iter().find(|(_, given)| *given) {
                    anyhow::bail!("{flag}: only for an etcd store (--store etcd://...)");
                }
            }
            Spec::Etcd(o) => {
                if self.store_cert.is_some() && self.store_cacert.is_none() {
                    anyhow::bail!("--store-cert: a client certificate needs TLS: give --store-cacert too");
                }
                o.ca = self.store_cacert.clone();
                o.cert = self.store_cert.clone();
                o.key = self.store_key.clone();
                if let (Some(u), Some(f)) = (&self.store_user, &self.store_password_file) {
                    let text = std::fs::read_to_string(f)
                        .map_err(|e| anyhow::anyhow!("--store-password-file {}: {e}", f.display()))?;
                    let password = text.lines().next().unwrap_or("").to_string();
                    if password.is_empty() {
                        anyhow::bail!("--store-password-file {}: empty", f.display());
                    }
                    o.user = Some((u.clone(), password));
                }
            }
        }
        Ok(spec)
    }
}
