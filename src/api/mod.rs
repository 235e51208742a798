//! The REST API of `georepd` (SPEC 9): HTTP on `--listen` (default `127.0.0.1:9900`), served by
//! axum on a runtime of its own, beside the control socket. The API and the CLI are two faces
//! of one daemon core: every handler builds the same `control::Request` the CLI sends and
//! hands it to `Daemon::handle` (on a blocking thread), so the rules, the messages and the
//! effects are the CLI's. A refusal is JSON `{error, message}` with the status that fits.
//!
//! Every path but `/api/v1/health` needs the node's bearer token (`auth`).

mod auth;
mod metrics;
mod ovirt;
mod routes;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::daemon::Daemon;

pub use auth::{TOKEN_FILE, ensure_token, rotate_token};

/// Where and how the API listens.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `None`: no API (`--listen none`).
    pub listen: Option<SocketAddr>,
    /// Plain HTTP on an address other than loopback (`--insecure-http`).
    pub insecure: bool,
    /// HTTPS with this certificate chain and key (PEM files: `--tls-cert`, `--tls-key`).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl ApiConfig {
    /// `--listen ADDR:PORT` or `none`, with `--tls-cert`/`--tls-key` (both or neither).
    pub fn parse(
        listen: &str,
        insecure: bool,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> anyhow::Result<ApiConfig> {
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        if listen == "none" {
            return Ok(ApiConfig { listen: None, insecure, tls });
        }
        let addr: SocketAddr =
            listen.parse().with_context(|| format!("--listen {listen:?}: expected ADDR:PORT or none"))?;
        if !addr.ip().is_loopback() && !insecure && tls.is_none() {
            anyhow::bail!(
                "--listen {listen}: plain HTTP is served on loopback only (--tls-cert/--tls-key for HTTPS, or --insecure-http)"
            );
        }
        Ok(ApiConfig { listen: Some(addr), insecure, tls })
    }
}

/// Starts the API on a thread of its own; returns the address it listens on (the port
/// chosen when 0 was asked for), also written to `<run>/api.addr`.
pub fn spawn(d: Arc<Daemon>, cfg: &ApiConfig) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = cfg.listen else {
        // No API: no address left from an earlier start either.
        let _ = std::fs::remove_file(d.dirs.run.join("api.addr"));
        return Ok(None);
    };
    let token = auth::Token::load(&d.dirs.state)?;
    metrics::handle()?;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("API: bind {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::fs::write(d.dirs.run.join("api.addr"), format!("{bound}\n"))?;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tls_config(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    std::thread::Builder::new().name("api".into()).spawn(move || {
        // One thread serves every connection (the work is in spawn_blocking): no wake-ups
        // across threads for each request, so that a busy API costs the node little.
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return log::error!("API: no runtime: {e}"),
        };
        rt.block_on(async move {
            let app = routes::router(d, token);
            let served = match tls {
                Some(config) => {
                    let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
                    axum_server::from_tcp_rustls(listener, config).serve(app.into_make_service()).await
                }
                None => match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => axum::serve(l, app).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = served {
                log::error!("API: {e}");
            }
        })
    })?;
    log::info!("API on {scheme}://{bound}/api/v1");
    Ok(Some(bound))
}

/// The server's TLS: the certificate chain and key (PEM) read now, so that a bad file stops
/// georepd at start with one line.
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    // ring, as the rest of georep's crypto (russh, ureq): no second C crypto library to build.
    // rustls deprecates it for want of post-quantum key exchange; for an admin API on a
    // site's own network that is the trade made.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-cert/--tls-key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
