//! The SSH transport: a russh client to the secondary's OpenSSH server, authenticated with the
//! session key, the server's host key checked against the session's known_hosts file, and the
//! receiver run as the remote command (the key's forced command, on a set-up secondary). The
//! channel is bridged to one end of a Unix socket pair, so the worker's `Link` reads and writes
//! plain blocking streams whatever carries them.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use serde::{Deserialize, Serialize};

pub use crate::session::config::{HostKeyPolicy, SshOptions};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The session's private key (OpenSSH format).
    pub key: PathBuf,
    /// Host keys this node trusts, recorded at `create`.
    pub known_hosts: PathBuf,
    /// Connect, handshake and authentication must be done within this.
    pub timeout: Duration,
    /// SSH keepalives: this often when the server is silent, and the connection given up
    /// after `keepalive_max` unanswered (`ServerAliveInterval`, `ServerAliveCountMax`).
    #[serde(default)]
    pub keepalive: Option<Duration>,
    #[serde(default)]
    pub keepalive_max: usize,
    /// `StrictHostKeyChecking`.
    #[serde(default)]
    pub host_keys: HostKeyPolicy,
    /// How long the worker waits for an answer of the receiver before it gives up on the
    /// connection (`secondary-timeout`; none if `None`).
    #[serde(default)]
    pub answer_timeout: Option<Duration>,
}

impl SshTarget {
    /// The target with `ssh-options` applied.
    pub fn with_options(mut self, o: &SshOptions) -> SshTarget {
        if let Some(k) = &o.identity {
            self.key = PathBuf::from(k);
        }
        if let Some(p) = o.port {
            self.port = p;
        }
        if let Some(t) = o.connect_timeout {
            self.timeout = Duration::from_secs(t.max(1));
        }
        if let Some(i) = o.alive_interval {
            self.keepalive = (i > 0).then(|| Duration::from_secs(i));
        }
        if let Some(n) = o.alive_count {
            self.keepalive_max = n;
        }
        if let Some(k) = &o.known_hosts {
            self.known_hosts = PathBuf::from(k);
        }
        self.host_keys = o.host_keys;
        self
    }
}

/// Why a connection failed, as status shows it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}:{port}: connection refused or unreachable: {why}")]
    Unreachable { host: String, port: u16, why: String },
    #[error("{host}:{port}: no answer within {secs} s")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("{host}: host key changed (known_hosts line {line}): refusing to connect")]
    HostKeyChanged { host: String, line: usize },
    #[error("{host}: host key not known (not recorded at session create)")]
    HostKeyUnknown { host: String },
    #[error("{user}@{host}: authentication with the session key failed")]
    AuthFailed { user: String, host: String },
    #[error("{0}")]
    Other(String),
}

struct Verifier {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    /// Record an unknown key instead of refusing it (at `create`, or `accept-new`).
    learn: bool,
    /// Accept any key (`StrictHostKeyChecking=no`).
    any: bool,
    /// What went wrong, for a clearer error than russh's.
    verdict: Arc<parking_lot::Mutex<Option<SshError>>>,
}

impl client::Handler for Verifier {
    type Error = anyhow::Error;

    async fn check_server_key(&mut self, k: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = k else {
            bail!("{}: host certificates are not supported", self.host);
        };
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if self.learn => {
                russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts)?;
                Ok(true)
            }
            Ok(false) => {
                *self.verdict.lock() = Some(SshError::HostKeyUnknown { host: self.host.clone() });
                Ok(false)
            }
            Err(russh::keys::Error::KeyChanged { line }) if self.any => {
                log::warn!(
                    "{}: host key changed (known_hosts line {line}); accepted: StrictHostKeyChecking=no",
                    self.host
                );
                Ok(true)
            }
            Err(russh::keys::Error::KeyChanged { line }) => {
                *self.verdict.lock() = Some(SshError::HostKeyChanged { host: self.host.clone(), line });
                Ok(false)
            }
            Err(e) if !self.known_hosts.exists() && self.learn => {
                let _ = e;
                russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts)?;
                Ok(true)
            }
            Err(e) if !self.known_hosts.exists() => {
                let _ = e;
                *self.verdict.lock() = Some(SshError::HostKeyUnknown { host: self.host.clone() });
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

async fn open(
    t: &SshTarget,
    command: &str,
    learn: bool,
) -> Result<(client::Handle<Verifier>, russh::Channel<client::Msg>), SshError> {
    let key = russh::keys::load_secret_key(&t.key, None)
        .map_err(|e| SshError::Other(format!("session key {}: {e}", t.key.display())))?;
    let cfg = Arc::new(client::Config {
        keepalive_interval: t.keepalive,
        keepalive_max: t.keepalive_max,
        nodelay: true,
        window_size: 8 << 20,
        // AES-GCM first: both ends have AES-NI here, and OpenSSH's sshd spends a third of the
        // CPU on ChaCha20-Poly1305 (russh's first choice) for the same stream.
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_128_GCM,
                russh::cipher::AES_256_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
                russh::cipher::AES_128_CTR,
            ]),
            ..Default::default()
        },
        ..Default::default()
    });
    let verdict = Arc::new(parking_lot::Mutex::new(None));
    let v = Verifier {
        host: t.host.clone(),
        port: t.port,
        known_hosts: t.known_hosts.clone(),
        learn: learn || t.host_keys != HostKeyPolicy::Yes,
        any: t.host_keys == HostKeyPolicy::No,
        verdict: Arc::clone(&verdict),
    };
    let secs = t.timeout.as_secs();
    let tcp = tokio::time::timeout(t.timeout, tokio::net::TcpStream::connect((t.host.as_str(), t.port)))
        .await
        .map_err(|_| SshError::Timeout { host: t.host.clone(), port: t.port, secs })?
        .map_err(|e| SshError::Unreachable { host: t.host.clone(), port: t.port, why: e.to_string() })?;
    let _ = tcp.set_nodelay(true);
    let mut h = match tokio::time::timeout(t.timeout, client::connect_stream(cfg, tcp, v)).await {
        Err(_) => return Err(SshError::Timeout { host: t.host.clone(), port: t.port, secs }),
        Ok(Err(e)) => {
            return Err(verdict.lock().take().unwrap_or_else(|| SshError::Other(format!("{}: {e:#}", t.host))));
        }
        Ok(Ok(h)) => h,
    };
    let auth = tokio::time::timeout(
        t.timeout,
        h.authenticate_publickey(&t.user, PrivateKeyWithHashAlg::new(Arc::new(key), None)),
    )
    .await
    .map_err(|_| SshError::Timeout { host: t.host.clone(), port: t.port, secs })?
    .map_err(|e| SshError::Other(format!("{}: {e}", t.host)))?;
    if !auth.success() {
        return Err(SshError::AuthFailed { user: t.user.clone(), host: t.host.clone() });
    }
    let ch = h.channel_open_session().await.map_err(|e| SshError::Other(format!("{}: open a channel: {e}", t.host)))?;
    ch.exec(true, command).await.map_err(|e| SshError::Other(format!("{}: run the receiver: {e}", t.host)))?;
    Ok((h, ch))
}

/// What the remote command said on its standard error and how it ended, kept by the bridge
/// so that a link that ends early can say why (command not found, permission denied, the
/// receiver's own refusal) rather than only that it ended.
#[derive(Clone, Debug, Default)]
pub struct Remote(Arc<parking_lot::Mutex<RemoteEnd>>);

#[derive(Debug, Default)]
struct RemoteEnd {
    /// The last bytes of its standard error.
    stderr: Vec<u8>,
    exit: Option<u32>,
}

/// How much of the remote's standard error is kept: its last lines are what tells.
const STDERR_KEPT: usize = 4096;

impl Remote {
    fn said(&self, data: &[u8]) {
        let mut end = self.0.lock();
        end.stderr.extend_from_slice(data);
        let over = end.stderr.len().saturating_sub(STDERR_KEPT);
        end.stderr.drain(..over);
    }

    /// The remote command's last line on standard error and its exit status, as one phrase
    /// ("sh: 1: georep: not found; exit status 127"), if it said or ended with anything.
    pub fn last_words(&self) -> Option<String> {
        let end = self.0.lock();
        let text = String::from_utf8_lossy(&end.stderr);
        let line = text.lines().map(str::trim).rfind(|l| !l.is_empty());
        match (line, end.exit) {
            (Some(l), Some(c)) => Some(format!("{l}; exit status {c}")),
            (Some(l), None) => Some(l.to_string()),
            (None, Some(c)) if c != 0 => Some(format!("exit status {c}")),
            _ => None,
        }
    }
}

/// Connects, runs `command` on the secondary, and returns the local end of a stream carrying
/// its stdin/stdout, and what it says on stderr and how it ends. With `learn`, an unknown
/// host key is recorded (session create); a changed one is always refused.
pub fn connect(t: &SshTarget, command: &str, learn: bool) -> Result<(UnixStream, Remote), SshError> {
    let (mine, theirs) = UnixStream::pair().map_err(|e| SshError::Other(e.to_string()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), SshError>>();
    let t = t.clone();
    let command = command.to_string();
    let remote = Remote::default();
    let kept = remote.clone();
    std::thread::Builder::new()
        .name("ssh".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(SshError::Other(e.to_string())));
                    return;
                }
            };
            rt.block_on(async move {
                let (h, ch) = match open(&t, &command, learn).await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(()));
                let Ok(()) = theirs.set_nonblocking(true) else { return };
                let Ok(sock) = tokio::net::UnixStream::from_std(theirs) else { return };
                if let Err(e) = bridge(sock, ch, &kept).await {
                    log::warn!("ssh {}: {e}", t.host);
                }
                let _ = h.disconnect(russh::Disconnect::ByApplication, "", "en").await;
            });
        })
        .map_err(|e| SshError::Other(e.to_string()))?;
    match rx.recv() {
        Ok(Ok(())) => Ok((mine, remote)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(SshError::Other("the SSH thread ended without a word".into())),
    }
}

/// Carries the socket's bytes to the channel's stdin and the channel's stdout to the socket,
/// keeping its stderr and exit status in `remote`, until both directions have ended.
async fn bridge(sock: tokio::net::UnixStream, ch: russh::Channel<client::Msg>, remote: &Remote) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_worker, mut to_worker) = sock.into_split();
    let (mut from_remote, to_remote) = ch.split();
    let up = async {
        // Big chunks: each becomes SSH packets of the server's largest size rather than one
        // 8 KiB packet per chunk (sshd's work is per packet).
        let mut w = to_remote.make_writer();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = from_worker.read(&mut buf).await?;
            if n == 0 {
                let _ = to_remote.eof().await;
                return Ok::<(), std::io::Error>(());
            }
            w.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        // OpenSSH sends the exit status after the end of the output: once the output has
        // ended, the status is waited for (briefly) before the worker is told.
        let mut ended = false;
        loop {
            let next = if ended {
                tokio::time::timeout(Duration::from_secs(2), from_remote.wait()).await.unwrap_or(None)
            } else {
                from_remote.wait().await
            };
            match next {
                Some(russh::ChannelMsg::Data { data }) => to_worker.write_all(&data).await?,
                Some(russh::ChannelMsg::ExtendedData { data, .. }) => remote.said(&data),
                Some(russh::ChannelMsg::ExitStatus { exit_status }) => {
                    remote.0.lock().exit = Some(exit_status);
                    if ended {
                        break;
                    }
                }
                Some(russh::ChannelMsg::Eof) => ended = true,
                Some(russh::ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        to_worker.shutdown().await
    };
    // Each direction runs to its own end: an upload that fails (the channel closed) does not
    // cut short the reading of what the remote said before it went. Once the remote has gone,
    // the upload is given a moment and then dropped with the socket: an upload blocked on a
    // closed channel's window would otherwise keep the worker's writes blocked for good.
    tokio::pin!(up);
    tokio::pin!(down);
    tokio::select! {
        u = &mut up => {
            let d = down.await;
            u.and(d)
        }
        d = &mut down => match tokio::time::timeout(Duration::from_secs(1), up).await {
            Ok(u) => u.and(d),
            Err(_) => d,
        },
    }
}

/// Runs `command` on the host (no stdin) and returns its exit status and its output, stdout
/// then stderr. For set-up steps (`push-pem`) with the operator's own access.
pub fn run(t: &SshTarget, command: &str, learn: bool) -> Result<(u32, String), SshError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SshError::Other(e.to_string()))?;
    rt.block_on(async {
        let (h, mut ch) = open(t, command, learn).await?;
        let _ = ch.eof().await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut code = None;
        let wait = async {
            while let Some(m) = ch.wait().await {
                match m {
                    russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                    russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
                    russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(t.timeout, wait).await.is_err() {
            return Err(SshError::Timeout { host: t.host.clone(), port: t.port, secs: t.timeout.as_secs() });
        }
        let _ = h.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        out.extend_from_slice(&err);
        Ok((code.unwrap_or(255), String::from_utf8_lossy(&out).into_owned()))
    })
}

/// Takes the server's host key and goes no further.
struct KeyTaker(Arc<parking_lot::Mutex<Option<russh::keys::PublicKey>>>);

impl client::Handler for KeyTaker {
    type Error = anyhow::Error;

    async fn check_server_key(&mut self, k: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = k {
            *self.0.lock() = Some(key.clone());
        }
        Ok(false)
    }
}

/// The host key `host:port`'s SSH server shows (nothing else is done on the connection).
pub fn host_key(host: &str, port: u16, timeout: Duration) -> Result<russh::keys::PublicKey, SshError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SshError::Other(e.to_string()))?;
    let taken = Arc::new(parking_lot::Mutex::new(None));
    let secs = timeout.as_secs();
    rt.block_on(async {
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| SshError::Timeout { host: host.into(), port, secs })?
            .map_err(|e| SshError::Unreachable { host: host.into(), port, why: e.to_string() })?;
        let cfg = Arc::new(client::Config::default());
        let _ = tokio::time::timeout(timeout, client::connect_stream(cfg, tcp, KeyTaker(Arc::clone(&taken)))).await;
        Ok::<(), SshError>(())
    })?;
    let key = taken.lock().take();
    key.ok_or_else(|| SshError::Other(format!("{host}:{port}: no SSH host key shown (is it an SSH server?)")))
}

/// `SHA256:<base64>`, as ssh-keygen -l shows a key's fingerprint.
pub fn fingerprint(key: &russh::keys::PublicKey) -> String {
    key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Makes an Ed25519 key pair (OpenSSH format) at `path` and `path.pub` if there is none;
/// returns the public key line.
pub fn ensure_key(path: &std::path::Path, comment: &str) -> anyhow::Result<String> {
    use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
    let pubp = path.with_extension("pem.pub");
    if path.exists() && pubp.exists() {
        return Ok(std::fs::read_to_string(&pubp)?.trim().to_string());
    }
    let mut seed = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
    let key = russh::keys::PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), comment)
        .context("make the session key")?;
    let text = key.to_openssh(russh::keys::ssh_key::LineEnding::LF).context("encode the session key")?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let public = key.public_key().to_openssh().context("encode the public key")?;
    std::fs::write(&pubp, format!("{public}\n"))?;
    Ok(public)
}
