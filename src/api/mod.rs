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
}

impl ApiConfig {
    /// `--listen ADDR:PORT` or `none`.
    pub fn parse(listen: &str, insecure: bool) -> anyhow::Result<ApiConfig> {
        if listen == "none" {
            return Ok(ApiConfig { listen: None, insecure });
        }
        let addr: SocketAddr =
            listen.parse().with_context(|| format!("--listen {listen:?}: expected ADDR:PORT or none"))?;
        if !addr.ip().is_loopback() && !insecure {
            anyhow::bail!(
                "--listen {listen}: plain HTTP is served on loopback only (TLS is not available yet; --insecure-http to serve it anyway)"
            );
        }
        Ok(ApiConfig { listen: Some(addr), insecure })
    }
}

/// Starts the API on a thread of its own; returns the address it listens on (the port
/// chosen when 0 was asked for), also written to `<run>/api.addr`.
pub fn spawn(d: Arc<Daemon>, cfg: &ApiConfig) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = cfg.listen else { return Ok(None) };
    let token = auth::Token::load(&d.dirs.state)?;
    metrics::handle()?;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("API: bind {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::fs::write(d.dirs.run.join("api.addr"), format!("{bound}\n"))?;
    std::thread::Builder::new().name("api".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return log::error!("API: no runtime: {e}"),
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return log::error!("API: {e}"),
            };
            let app = routes::router(d, token);
            if let Err(e) = axum::serve(listener, app).await {
                log::error!("API: {e}");
            }
        })
    })?;
    log::info!("API on http://{bound}/api/v1");
    Ok(Some(bound))
}
