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
    /// The cluster store: `local` (embedded)
    #[arg(long, env = "GEOREPD_STORE", default_value = "local")]
    pub store: String,
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
