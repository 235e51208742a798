//! The routes of `/api/v1`, each a `control::Request` to the daemon core, and the OpenAPI
//! document made from them (`utoipa`: the paths, parameters and schemas are this code's).

use std::sync::Arc;

use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::auth::Token;
use super::view::{self, SessionView};
use crate::daemon::Daemon;
use crate::daemon::control::{Request, Response, VolumeInfo};
use crate::daemon::destinations::{DestinationCmd, DestinationView, TestReport};
use crate::daemon::events::Event;
use crate::daemon::refusal::{Kind, Refusal};
use crate::daemon::webhooks::{Webhook, WebhookCmd};
use crate::session::config::OptionInfo;
use crate::session::grammar::{ConfigAction, SecondaryUrl, SessionCmd, VolumeCmd};
use crate::session::status::StatusRow;
use crate::sync::failures::FailedChange;

/// A refusal or a failure: `error` says which kind (`bad_input`, `not_found`, `refused`,
/// `unauthorized`, `forbidden`, `failed`), `message` is the CLI's line.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    error: &'static str,
    message: String,
}

fn error(status: StatusCode, kind: &'static str, message: impl Into<String>) -> HttpResponse {
    (status, Json(ApiError { error: kind, message: message.into() })).into_response()
}

/// A body that is not what the route takes: 413 if too big, else 400 naming the field.
fn rejected(e: axum::extract::rejection::JsonRejection) -> HttpResponse {
    let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { e.status() } else { StatusCode::BAD_REQUEST };
    error(status, "bad_input", e.body_text())
}

/// The HTTP status of a refusal's kind, and the kind's name in the answer.
pub(super) fn status_of(kind: Kind) -> (StatusCode, &'static str) {
    match kind {
        Kind::BadInput => (StatusCode::BAD_REQUEST, "bad_input"),
        Kind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Kind::Refused => (StatusCode::CONFLICT, "refused"),
        Kind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
    }
}

/// A refusal of the daemon core, with the HTTP status of its kind.
fn refusal(r: Refusal) -> HttpResponse {
    let (status, kind) = status_of(r.kind);
    error(status, kind, r.message)
}

/// A message for the user (what the CLI prints).
#[derive(Serialize, ToSchema)]
pub struct Done {
    message: String,
}

/// `verify`'s report.
#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    differences: u64,
    report: String,
}

/// One session option and its value.
#[derive(Serialize, ToSchema)]
pub struct OptionValue {
    name: String,
    value: String,
}

/// The daemon core's answer, as HTTP.
fn answer(r: Response) -> HttpResponse {
    match r {
        Response::Ok(message) => Json(Done { message }).into_response(),
        Response::Err(message) => refusal(message),
        Response::Status(rows) => Json(rows).into_response(),
        Response::Volumes(v) => Json(v).into_response(),
        Response::Config(kv) => {
            Json(kv.into_iter().map(|(name, value)| OptionValue { name, value }).collect::<Vec<_>>()).into_response()
        }
        Response::Value(value) => Json(serde_json::json!({ "value": value })).into_response(),
        Response::Report { text, differences } => Json(VerifyReport { differences, report: text }).into_response(),
        Response::Options(o) => Json(o).into_response(),
        Response::Webhooks(w) => Json(w).into_response(),
        Response::Failures(f) => Json(f).into_response(),
        Response::Destinations(v) => Json(v).into_response(),
        Response::Mountbroker(m) => Json(m).into_response(),
        Response::Nodes(n) => Json(n).into_response(),
        Response::DestinationTest(t) => Json(t).into_response(),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", format!("unexpected answer {other:?}")),
    }
}

/// Hands `req` to the daemon core on a blocking thread.
pub(super) async fn ask(d: Arc<Daemon>, req: Request) -> Response {
    match tokio::task::spawn_blocking(move || d.handle(req)).await {
        Ok(r) => r,
        Err(e) => Response::Err(Refusal::new(Kind::Refused, format!("the request's thread failed: {e}"))),
    }
}

async fn call(d: Arc<Daemon>, req: Request) -> HttpResponse {
    answer(ask(d, req).await)
}

fn secondary(s: &str) -> Result<SecondaryUrl, HttpResponse> {
    SecondaryUrl::parse(s).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_input", format!("secondary: {e}")))
}

async fn session_cmd(d: Arc<Daemon>, volume: String, sec: &str, cmd: SessionCmd) -> HttpResponse {
    match secondary(sec) {
        Ok(s) => call(d, Request::Session { primary: volume, secondary: s, cmd }).await,
        Err(e) => e,
    }
}

/// The daemon is up (no token needed).
#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = Done)))]
async fn health(State(d): State<Arc<Daemon>>) -> HttpResponse {
    Json(Done { message: format!("georepd {} on {} is up", crate::VERSION, d.node.name) }).into_response()
}

/// Every volume, as `volume info` shows them.
#[utoipa::path(get, path = "/api/v1/volumes", responses((status = 200, body = [VolumeInfo])))]
async fn volumes(State(d): State<Arc<Daemon>>) -> HttpResponse {
    call(d, Request::Volume(VolumeCmd::Info { name: None })).await
}

/// One volume.
#[utoipa::path(get, path = "/api/v1/volumes/{volume}", params(("volume" = String, Path)),
    responses((status = 200, body = [VolumeInfo]), (status = 404, body = ApiError)))]
async fn volume(State(d): State<Arc<Daemon>>, Path(volume): Path<String>) -> HttpResponse {
    call(d, Request::Volume(VolumeCmd::Info { name: Some(volume) })).await
}

/// The volume's size on this node, and what a secondary volume needs to receive it (the
/// checks `create` makes without `force`).
#[utoipa::path(get, path = "/api/v1/volumes/{volume}/capacity", params(("volume" = String, Path)),
    responses((status = 200, body = crate::daemon::volumes::Capacity), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn capacity(State(d): State<Arc<Daemon>>, Path(volume): Path<String>) -> HttpResponse {
    let name = volume.clone();
    match tokio::task::spawn_blocking(move || crate::daemon::volumes::Capacity::of(&d, &name)).await {
        Ok(Ok(Some(c))) => Json(c).into_response(),
        Ok(Ok(None)) => error(StatusCode::CONFLICT, "refused", format!("this node hosts no brick of {volume}")),
        Ok(Err(e)) => refusal(Refusal::from_error(&e)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", format!("the request's thread failed: {e}")),
    }
}

/// The cluster's nodes (`pool list`): this one first, each Connected while its registration
/// in the store lives.
#[utoipa::path(get, path = "/api/v1/nodes", responses((status = 200, body = [crate::daemon::nodes::NodeView])))]
async fn nodes(State(d): State<Arc<Daemon>>) -> HttpResponse {
    call(d, Request::Nodes).await
}

/// A new volume (`volume create`).
#[derive(Deserialize, ToSchema)]
pub struct NewVolume {
    name: String,
    /// `NODE:/path`, one per node hosting the brick.
    bricks: Vec<String>,
    #[serde(default)]
    replica: Option<u32>,
    #[serde(default)]
    force: bool,
}

#[utoipa::path(post, path = "/api/v1/volumes", request_body = NewVolume,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn create_volume(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<NewVolume>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return rejected(e),
    };
    let mut bricks = Vec::new();
    for brick in &b.bricks {
        match brick.split_once(':') {
            Some((node, path)) if !node.is_empty() && path.starts_with('/') => {
                bricks.push((node.to_string(), path.to_string()))
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_input",
                    format!("bricks: {brick:?} is not NODE:/absolute/path"),
                );
            }
        }
    }
    let replica = b.replica.unwrap_or(bricks.len().max(1) as u32);
    call(d, Request::Volume(VolumeCmd::Create { name: b.name, replica, bricks, force: b.force })).await
}

/// `volume start` / `volume stop` (`?force=true`).
#[utoipa::path(post, path = "/api/v1/volumes/{volume}/{action}",
    params(("volume" = String, Path), ("action" = String, Path, description = "start or stop"), Flags),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn volume_action(
    State(d): State<Arc<Daemon>>,
    Path((name, action)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> HttpResponse {
    let cmd = match action.as_str() {
        "start" => VolumeCmd::Start { name, force: f.force },
        "stop" => VolumeCmd::Stop { name, force: f.force },
        other => return error(StatusCode::NOT_FOUND, "not_found", format!("action: no action {other:?}")),
    };
    call(d, Request::Volume(cmd)).await
}

/// `volume delete`.
#[utoipa::path(delete, path = "/api/v1/volumes/{volume}", params(("volume" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn delete_volume(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> HttpResponse {
    call(d, Request::Volume(VolumeCmd::Delete { name })).await
}

/// The sessions of the volume, each with its brick rows (`status detail`); none is `[]`.
#[utoipa::path(get, path = "/api/v1/volumes/{volume}/geo-replication-sessions", params(("volume" = String, Path)),
    responses((status = 200, body = [SessionView]), (status = 404, body = ApiError)))]
async fn sessions(State(d): State<Arc<Daemon>>, Path(volume): Path<String>) -> HttpResponse {
    match views_of(&d, &volume, None).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => refusal(e),
    }
}

/// How old the brick rows the API shows may be (`Daemon::rows`).
pub(super) const ROWS_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(250);

/// The sessions of `volume` (one, with `secondary`). A volume that exists may have none; a
/// session asked for by name that does not exist is not found.
pub(super) async fn views_of(
    d: &Arc<Daemon>,
    volume: &str,
    secondary: Option<&str>,
) -> Result<Vec<SessionView>, Refusal> {
    let secondary = match secondary.map(SecondaryUrl::parse).transpose() {
        Ok(s) => s,
        Err(e) => return Err(Refusal::new(Kind::BadInput, format!("secondary: {e}"))),
    };
    // A read of the store (redb: no waiting on writers) is done here; the rows are made on a
    // blocking thread only when those at hand are too old.
    crate::daemon::volumes::get(d, volume).map_err(|e| Refusal::from_error(&e))?;
    let all = rows(d).await?;
    let rows = all
        .iter()
        .filter(|r| r.primary_volume == volume)
        .filter(|r| {
            secondary.as_ref().is_none_or(|s| {
                let at = r.secondary.trim_start_matches("ssh://");
                let at = at.rsplit_once('@').map_or(at, |(_, h)| h);
                at == format!("{}::{}", s.host, s.volume)
            })
        })
        .cloned()
        .collect();
    Ok(view::sessions(rows))
}

/// Every session's brick rows, at most `ROWS_MAX_AGE` old (`Daemon::rows`).
async fn rows(d: &Arc<Daemon>) -> Result<Arc<Vec<StatusRow>>, Refusal> {
    if let Some(rows) = d.fresh_rows(ROWS_MAX_AGE) {
        return Ok(rows);
    }
    let d = d.clone();
    tokio::task::spawn_blocking(move || d.rows(ROWS_MAX_AGE))
        .await
        .map_err(|e| Refusal::new(Kind::Refused, format!("the request's thread failed: {e}")))?
        .map_err(|e| Refusal::from_error(&e))
}

/// A new session (`create`).
#[derive(Deserialize, ToSchema)]
pub struct NewSession {
    /// `[user@]host::volume`
    secondary: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    push_pem: bool,
    ssh_port: Option<u16>,
}

#[utoipa::path(post, path = "/api/v1/volumes/{volume}/geo-replication-sessions", params(("volume" = String, Path)),
    request_body = NewSession,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn create_session(
    State(d): State<Arc<Daemon>>,
    Path(volume): Path<String>,
    body: Result<Json<NewSession>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return rejected(e),
    };
    let cmd = SessionCmd::Create { ssh_port: b.ssh_port, push_pem: b.push_pem, no_verify: false, force: b.force };
    session_cmd(d, volume, &b.secondary, cmd).await
}

/// One session, with its brick rows (`status detail`).
#[utoipa::path(get, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    responses((status = 200, body = SessionView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn session(State(d): State<Arc<Daemon>>, Path((volume, sec)): Path<(String, String)>) -> HttpResponse {
    match views_of(&d, &volume, Some(&sec)).await {
        Ok(mut v) if !v.is_empty() => Json(v.swap_remove(0)).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "not_found", format!("no session between {volume} and {sec}")),
        Err(e) => refusal(e),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct SampledAfter {
    /// Only samples taken after this time (seconds since the epoch); none: the whole hour.
    #[serde(default)]
    after: u64,
}

/// The session's last hour: every 2 s its lag (its most lagging brick), files and bytes
/// synced (its bricks' sum) and Faulty bricks, oldest first; kept in georepd's memory (the
/// web UI's graphs).
#[utoipa::path(get, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/samples",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), SampledAfter),
    responses((status = 200, body = [crate::daemon::samples::Sample]), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn samples(
    State(d): State<Arc<Daemon>>,
    Path((volume, sec)): Path<(String, String)>,
    Query(q): Query<SampledAfter>,
) -> HttpResponse {
    match views_of(&d, &volume, Some(&sec)).await {
        Ok(v) if !v.is_empty() => Json(d.samples.since(&volume, &v[0].secondary, q.after)).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "not_found", format!("no session between {volume} and {sec}")),
        Err(e) => refusal(e),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct Flags {
    #[serde(default)]
    pub(super) force: bool,
    #[serde(default)]
    pub(super) reset_sync_time: bool,
    #[serde(default)]
    checksum: bool,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    keep_conflicts: bool,
}

/// `delete` (`?reset_sync_time=true`).
#[utoipa::path(delete, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), Flags),
    responses((status = 200, body = Done), (status = 409, body = ApiError)))]
async fn delete_session(
    State(d): State<Arc<Daemon>>,
    Path((volume, sec)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> HttpResponse {
    session_cmd(d, volume, &sec, SessionCmd::Delete { reset_sync_time: f.reset_sync_time }).await
}

/// A session's lifecycle, DR and check actions: `start`, `stop`, `pause`, `resume`
/// (`?force=true`), `checkpoint`, `verify` (`?checksum=true&full=true`), `failover`,
/// `failback` (`?keep_conflicts=true`), `restore`.
#[utoipa::path(post, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/{action}",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), ("action" = String, Path), Flags),
    responses((status = 200, body = Done), (status = 200, body = VerifyReport),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn action(
    State(d): State<Arc<Daemon>>,
    Path((volume, sec, action)): Path<(String, String, String)>,
    Query(f): Query<Flags>,
) -> HttpResponse {
    let cmd = match action.as_str() {
        "start" => SessionCmd::Start { force: f.force },
        "stop" => SessionCmd::Stop { force: f.force },
        "pause" => SessionCmd::Pause { force: f.force },
        "resume" => SessionCmd::Resume { force: f.force },
        "checkpoint" => SessionCmd::Config(ConfigAction::CheckpointNow),
        "verify" => SessionCmd::Verify { checksum: f.checksum, full: f.full },
        "failover" => SessionCmd::Failover,
        "failback" => SessionCmd::Failback { keep_conflicts: f.keep_conflicts },
        "restore" => SessionCmd::Restore,
        other => return error(StatusCode::NOT_FOUND, "not_found", format!("action: no action {other:?}")),
    };
    session_cmd(d, volume, &sec, cmd).await
}

/// A session's options: value, default, allowed values and description each
/// (`config --describe`).
#[utoipa::path(get, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/options",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    responses((status = 200, body = [OptionInfo]), (status = 404, body = ApiError)))]
async fn options(State(d): State<Arc<Daemon>>, Path((volume, sec)): Path<(String, String)>) -> HttpResponse {
    session_cmd(d, volume, &sec, SessionCmd::Config(ConfigAction::Describe)).await
}

/// A new value for an option.
#[derive(Deserialize, ToSchema)]
pub struct NewValue {
    value: String,
}

/// Sets an option (the rules of `config`).
#[utoipa::path(put, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/options/{name}",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), ("name" = String, Path)),
    request_body = NewValue,
    responses((status = 200, body = Done), (status = 400, body = ApiError)))]
async fn set_option(
    State(d): State<Arc<Daemon>>,
    Path((volume, sec, name)): Path<(String, String, String)>,
    body: Result<Json<NewValue>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return rejected(e),
    };
    session_cmd(d, volume, &sec, SessionCmd::Config(ConfigAction::Set(name, b.value))).await
}

/// Resets an option to its default.
#[utoipa::path(delete, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/options/{name}",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), ("name" = String, Path)),
    responses((status = 200, body = Done), (status = 400, body = ApiError)))]
async fn reset_option(
    State(d): State<Arc<Daemon>>,
    Path((volume, sec, name)): Path<(String, String, String)>,
) -> HttpResponse {
    session_cmd(d, volume, &sec, SessionCmd::Config(ConfigAction::Reset(name))).await
}

/// The changes the secondary could not apply, each with its path, GFID, operation, error,
/// attempts, first and last seen (`failures`).
#[utoipa::path(get, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/failures",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    responses((status = 200, body = [FailedChange]), (status = 404, body = ApiError)))]
async fn failures(State(d): State<Arc<Daemon>>, Path((volume, sec)): Path<(String, String)>) -> HttpResponse {
    session_cmd(d, volume, &sec, SessionCmd::Failures { retry: false, gfid: None }).await
}

/// Sends every listed change again (`failures retry`).
#[utoipa::path(post, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/failures/retry",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn retry_all(State(d): State<Arc<Daemon>>, Path((volume, sec)): Path<(String, String)>) -> HttpResponse {
    session_cmd(d, volume, &sec, SessionCmd::Failures { retry: true, gfid: None }).await
}

/// Sends one listed change again (`failures retry <GFID>`).
#[utoipa::path(post, path = "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/failures/{gfid}/retry",
    params(("volume" = String, Path), ("secondary" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), ("gfid" = String, Path)),
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn retry_one(
    State(d): State<Arc<Daemon>>,
    Path((volume, sec, gfid)): Path<(String, String, String)>,
) -> HttpResponse {
    if gfid.parse::<crate::types::Gfid>().is_err() {
        return error(StatusCode::BAD_REQUEST, "bad_input", format!("gfid: {gfid:?} is not a GFID"));
    }
    session_cmd(d, volume, &sec, SessionCmd::Failures { retry: true, gfid: Some(gfid) }).await
}

/// The destinations: pinned fingerprint, connection status, the sessions that use each.
#[utoipa::path(get, path = "/api/v1/destinations", responses((status = 200, body = [DestinationView])))]
async fn destinations(State(d): State<Arc<Daemon>>) -> HttpResponse {
    call(d, Request::Destination(DestinationCmd::List)).await
}

/// A new destination (`georep destination add`): its host key is pinned now.
#[derive(Deserialize, ToSchema)]
pub struct NewDestination {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    /// Install this cluster's session keys there with the operator's SSH access.
    #[serde(default)]
    push_keys: bool,
}

#[utoipa::path(post, path = "/api/v1/destinations", request_body = NewDestination,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn add_destination(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<NewDestination>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    match body {
        Ok(Json(n)) => {
            let cmd = DestinationCmd::Add { host: n.host, port: n.port, user: n.user, push_keys: n.push_keys };
            call(d, Request::Destination(cmd)).await
        }
        Err(e) => rejected(e),
    }
}

/// Tests a destination stage by stage (200 with the report whether it passed or not).
#[utoipa::path(post, path = "/api/v1/destinations/{host}/test", params(("host" = String, Path)),
    responses((status = 200, body = TestReport), (status = 404, body = ApiError)))]
async fn test_destination(State(d): State<Arc<Daemon>>, Path(host): Path<String>) -> HttpResponse {
    call(d, Request::Destination(DestinationCmd::Test { host })).await
}

/// `re-establish`: accept a changed host key (`accept`: its new fingerprint, as the refusal
/// shows it), and/or install the session keys again.
#[derive(Deserialize, ToSchema)]
pub struct ReEstablish {
    accept: Option<String>,
    #[serde(default)]
    push_keys: bool,
}

#[utoipa::path(post, path = "/api/v1/destinations/{host}/re-establish", params(("host" = String, Path)),
    request_body = ReEstablish,
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn reestablish_destination(
    State(d): State<Arc<Daemon>>,
    Path(host): Path<String>,
    body: Result<Json<ReEstablish>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    match body {
        Ok(Json(r)) => {
            let cmd = DestinationCmd::ReEstablish { host, accept: r.accept, push_keys: r.push_keys };
            call(d, Request::Destination(cmd)).await
        }
        Err(e) => rejected(e),
    }
}

/// Removes a destination (`?force=true` while sessions use it).
#[utoipa::path(delete, path = "/api/v1/destinations/{host}", params(("host" = String, Path), Flags),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn remove_destination(
    State(d): State<Arc<Daemon>>,
    Path(host): Path<String>,
    Query(f): Query<Flags>,
) -> HttpResponse {
    call(d, Request::Destination(DestinationCmd::Remove { host, force: f.force })).await
}

/// The mountbroker on this node: its mount root and group (and whether they are as it needs
/// them), and which users may have which volumes mounted (`gluster-mountbroker status`).
#[utoipa::path(get, path = "/api/v1/mountbroker", responses((status = 200, body = crate::mountbroker::Status)))]
async fn mountbroker(State(d): State<Arc<Daemon>>) -> HttpResponse {
    call(d, Request::MountbrokerStatus).await
}

/// Where the event stream starts: after the event `Last-Event-ID` names (or `?after=`), with
/// the recent ones since; else from now.
#[derive(Deserialize, IntoParams)]
pub struct After {
    after: Option<u64>,
}

/// The events as a server-sent event stream: each `event:` is the event's name, `id:` its id,
/// `data:` the event as webhooks get it.
#[utoipa::path(get, path = "/api/v1/events", params(After),
    responses((status = 200, description = "text/event-stream of Event", body = Event)))]
async fn events(State(d): State<Arc<Daemon>>, Query(q): Query<After>, h: axum::http::HeaderMap) -> HttpResponse {
    use axum::response::sse::{Event as Sse, KeepAlive};
    let last = h.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let (past, rx) = d.events.subscribe(last.or(q.after));
    let sse = |e: &Event| Sse::default().id(e.id.to_string()).event(e.event.clone()).json_data(e);
    let past = futures_util::stream::iter(past.into_iter().map(move |e| sse(&e)));
    let live = futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((sse(&e), rx)),
                // A client too slow for the stream misses events; it can come back with its
                // Last-Event-ID for the recent ones.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    axum::response::sse::Sse::new(futures_util::StreamExt::chain(past, live))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The webhooks (bearer tokens not shown).
#[utoipa::path(get, path = "/api/v1/webhooks", responses((status = 200, body = [Webhook])))]
async fn webhooks(State(d): State<Arc<Daemon>>) -> HttpResponse {
    call(d, Request::Webhook(WebhookCmd::List)).await
}

/// Adds a webhook (`georep webhook add URL [--bearer TOKEN]`).
#[utoipa::path(post, path = "/api/v1/webhooks", request_body = Webhook,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn add_webhook(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<Webhook>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    match body {
        Ok(Json(w)) => call(d, Request::Webhook(WebhookCmd::Add { url: w.url, bearer: w.bearer })).await,
        Err(e) => rejected(e),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct WebhookUrl {
    url: String,
}

/// Removes a webhook (`georep webhook del URL`).
#[utoipa::path(delete, path = "/api/v1/webhooks", params(WebhookUrl),
    responses((status = 200, body = Done), (status = 404, body = ApiError)))]
async fn del_webhook(State(d): State<Arc<Daemon>>, Query(q): Query<WebhookUrl>) -> HttpResponse {
    call(d, Request::Webhook(WebhookCmd::Del { url: q.url })).await
}

/// POSTs an empty body to the URL (`georep webhook test`): 200 if it answered 2xx.
#[utoipa::path(post, path = "/api/v1/webhooks/test", request_body = Webhook,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn test_webhook(
    State(d): State<Arc<Daemon>>,
    body: Result<Json<Webhook>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    match body {
        Ok(Json(w)) => call(d, Request::Webhook(WebhookCmd::Test { url: w.url, bearer: w.bearer })).await,
        Err(e) => rejected(e),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "georep", description = "The georepd REST API (SPEC 9). Bearer token: `georep api-token`."),
    paths(
        health,
        nodes,
        volumes,
        create_volume,
        volume_action,
        delete_volume,
        volume,
        capacity,
        sessions,
        create_session,
        session,
        delete_session,
        action,
        options,
        set_option,
        reset_option,
        mountbroker,
        destinations,
        add_destination,
        test_destination,
        reestablish_destination,
        remove_destination,
        failures,
        retry_all,
        retry_one,
        samples,
        events,
        webhooks,
        add_webhook,
        del_webhook,
        test_webhook
    ),
    components(schemas(
        OptionInfo,
        ApiError,
        Done,
        VerifyReport,
        OptionValue,
        NewSession,
        NewValue,
        NewVolume,
        VolumeInfo,
        crate::daemon::volumes::Capacity,
        crate::daemon::nodes::NodeView,
        crate::daemon::nodes::NodeRecord,
        StatusRow,
        SessionView,
        view::Status,
        Event,
        Webhook,
        FailedChange,
        DestinationView,
        TestReport,
        NewDestination,
        ReEstablish,
        crate::mountbroker::Status
    ))
)]
struct Doc;

/// What every operation may answer besides its own: 400 for input it cannot take (a query or
/// body that does not parse), 401 without the token (all but health), 404 for a name in its
/// path that does not exist, 413 and 415 for a body too big or not JSON; and the bearer
/// token as the security scheme.
struct Refusals;

impl utoipa::Modify for Refusals {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder, schema::Ref};
        let refusal = |what: &str, schema: &str| {
            ResponseBuilder::new()
                .description(what)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build())
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = path == "/api/v1/health";
            let has_params = path.contains('{');
            // The oVirt paths refuse with faults, but for the token (checked before them).
            let shape = if path.starts_with("/api/clusters/") { "Fault" } else { "ApiError" };
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                if open {
                    // No token needed: an empty requirement.
                    op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::default()]);
                }
                let r = &mut op.responses.responses;
                let mut add = |code: &str, what: &str| {
                    let schema = if code == "401" { "ApiError" } else { shape };
                    r.entry(code.to_string()).or_insert_with(|| RefOr::T(refusal(what, schema)));
                };
                add("400", "bad input: the message names the field");
                if !open {
                    add("401", "no bearer token, or not this node's");
                }
                if has_params {
                    add("404", "what the path names does not exist");
                }
                if op.request_body.is_some() {
                    add("413", "the body is over 64 KiB");
                    add("415", "the body is not of a type the operation takes");
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// Whatever refuses a request (axum's own extractors and routing too) answers JSON
/// `{error, message}`: a refusal in any other form is made one.
async fn json_errors(req: HttpRequest, next: Next) -> HttpResponse {
    let ovirt = req.uri().path().starts_with("/api/clusters/");
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let typed = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if typed.starts_with("application/json") || typed.starts_with("application/xml") {
        return r;
    }
    let text = match axum::body::to_bytes(r.into_body(), 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let kind = match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 | 405 => "not_found",
        409 => "refused",
        400..=499 => "bad_input",
        _ => "failed",
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("refused").to_string() } else { text };
    // axum answers a body it could not read as JSON with 422; here that is bad input, 400.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
    if ovirt && status != StatusCode::UNAUTHORIZED {
        // The oVirt paths' refusals are faults (`api::ovirt`).
        return (status, Json(serde_json::json!({ "reason": kind, "detail": message }))).into_response();
    }
    error(status, kind, message)
}

/// The OpenAPI 3 document of this API.
async fn openapi() -> HttpResponse {
    let mut doc = Doc::openapi();
    doc.merge(super::ovirt::Doc::openapi());
    utoipa::Modify::modify(&Refusals, &mut doc);
    Json(doc).into_response()
}

/// Prometheus's scrape: every session's series of this node (`api::metrics`).
async fn metrics(State(d): State<Arc<Daemon>>) -> HttpResponse {
    let node = d.node.name.clone();
    let rows = rows(&d).await.ok();
    match super::metrics::handle() {
        Ok(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            super::metrics::render(h, &node, rows.as_deref().map(|r| r.as_slice())),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", format!("{e:#}")),
    }
}

/// Every request counted, with its time (the API's health in `/metrics`).
async fn count(req: HttpRequest, next: Next) -> HttpResponse {
    let method = req.method().to_string();
    let t = std::time::Instant::now();
    let r = next.run(req).await;
    super::metrics::request(&method, r.status().as_u16(), t.elapsed().as_secs_f64());
    r
}

/// Every path but health needs the bearer token.
async fn auth(State(token): State<Token>, req: HttpRequest, next: Next) -> HttpResponse {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token.accepts(given) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is needed (georep api-token)");
    }
    next.run(req).await
}

pub fn router(d: Arc<Daemon>, token: Token) -> Router {
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/volumes", get(volumes).post(create_volume))
        .route("/api/v1/volumes/{volume}", get(volume).delete(delete_volume))
        .route("/api/v1/volumes/{volume}/capacity", get(capacity))
        .route("/api/v1/volumes/{volume}/{action}", post(volume_action))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions", get(sessions).post(create_session))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}", get(session).delete(delete_session))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/options", get(options))
        .route(
            "/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/options/{name}",
            axum::routing::put(set_option).delete(reset_option),
        )
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/{action}", post(action))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/failures", get(failures))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/samples", get(samples))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/failures/retry", post(retry_all))
        .route("/api/v1/volumes/{volume}/geo-replication-sessions/{secondary}/failures/{gfid}/retry", post(retry_one))
        .route("/api/v1/mountbroker", get(mountbroker))
        .route("/api/v1/destinations", get(destinations).post(add_destination))
        .route("/api/v1/destinations/{host}", axum::routing::delete(remove_destination))
        .route("/api/v1/destinations/{host}/test", post(test_destination))
        .route("/api/v1/destinations/{host}/re-establish", post(reestablish_destination))
        .route("/api/v1/events", get(events))
        .route("/api/v1/webhooks", get(webhooks).post(add_webhook).delete(del_webhook))
        .route("/api/v1/webhooks/test", post(test_webhook))
        .merge(super::ovirt::router())
        .route_layer(axum::middleware::from_fn_with_state(token, auth));
    Router::new()
        .route("/api/v1/health", get(health))
        .merge(api)
        .merge(crate::ui::router())
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(count))
        .with_state(d)
}
