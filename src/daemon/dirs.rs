//! Where a node keeps things: state, config, logs, sockets. Defaults per SPEC section 2,
//! overridden by `GEOREP_STATE_DIR`, `GEOREP_CONFIG_DIR`, `GEOREP_LOG_DIR`, `GEOREP_RUN_DIR`
//! (and by `georepd`'s flags), so that several nodes can run side by side on one machine.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    pub state: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub run: PathBuf,
}

fn env_or(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| default.into())
}

impl Dirs {
    pub fn from_env() -> Dirs {
        Dirs {
            state: env_or("GEOREP_STATE_DIR", "/var/lib/georep"),
            config: env_or("GEOREP_CONFIG_DIR", "/etc/georep"),
            log: env_or("GEOREP_LOG_DIR", "/var/log/georep"),
            run: env_or("GEOREP_RUN_DIR", "/run/georep"),
        }
    }

    /// The variables that make a child process see these directories.
    pub fn envs(&self) -> [(&'static str, &Path); 4] {
        [
            ("GEOREP_STATE_DIR", &self.state),
            ("GEOREP_CONFIG_DIR", &self.config),
            ("GEOREP_LOG_DIR", &self.log),
            ("GEOREP_RUN_DIR", &self.run),
        ]
    }

    /// The daemon's control socket.
    pub fn socket(&self) -> PathBuf {
        self.run.join("georepd.sock")
    }

    pub fn store(&self) -> PathBuf {
        self.state.join("store.redb")
    }

    /// The node's identity (`UUID=...`), made once.
    pub fn node_id(&self) -> PathBuf {
        self.state.join("node.id")
    }

    /// A session's working directory: its worker spec and brick status.
    pub fn session(&self, key: &str) -> PathBuf {
        self.state.join("geo-replication").join(key)
    }

    /// This node's session key (the public half beside it, `.pem.pub`).
    pub fn session_key(&self) -> PathBuf {
        self.state.join("geo-replication").join("secret.pem")
    }

    /// The public keys of the primary nodes, which `push-pem` installs on secondaries.
    pub fn common_secret_pub(&self) -> PathBuf {
        self.state.join("geo-replication").join("common_secret.pem.pub")
    }

    /// The secondaries' SSH host keys, recorded at session create.
    pub fn known_hosts(&self) -> PathBuf {
        self.state.join("geo-replication").join("known_hosts")
    }

    pub fn session_log(&self, key: &str) -> PathBuf {
        self.log.join("geo-replication").join(key)
    }

    /// Where the receiver's aux-gfid mounts are made (and detached at once).
    pub fn aux_mounts(&self) -> PathBuf {
        self.run.join("aux")
    }
}
