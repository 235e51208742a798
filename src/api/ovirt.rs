//! The oVirt design's paths (SPEC 9):
//! `/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions[/{session}[/options|/start|/stop|/pause|/resume]]`,
//! with that design's field names (`session_key`, `slave_host_name`, `slave_volume_name`, per
//! brick `checkpoint_status`, `crawl_status`, `files_pending`, ...) and status values, in JSON
//! or, for a client that asks for it (`Accept`/`Content-Type: application/xml`), XML as the
//! oVirt engine's REST API writes it. Every handler is the same daemon call as its `/api/v1`
//! twin: only the shapes differ.
//!
//! The cluster is this node's (its UUID or name); a session is named as in `/api/v1`, by its
//! secondary `[user@]host::volume`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::routes::{Flags, ask, views_of};
use super::view::{SessionView, Status};
use crate::daemon::Daemon;
use crate::daemon::control::{Request, Response, VolumeInfo};
use crate::daemon::refusal::{Kind, Refusal};
use crate::session::grammar::{ConfigAction, SecondaryUrl, SessionCmd, VolumeCmd};

/// A geo-replication session (the design's `gluster_georep_session`).
#[derive(Serialize, ToSchema)]
pub struct GeoRepSession {
    #[serde(rename = "@id")]
    #[schema(rename = "id")]
    id: String,
    /// `<primary node UUID>:ssh://[user@]host::volume`
    session_key: String,
    master_volume_id: String,
    master_volume_name: String,
    slave_host_name: String,
    slave_volume_name: String,
    user_name: String,
    status: Status,
    details: Details,
}

#[derive(Serialize, ToSchema)]
pub struct Details {
    #[serde(rename = "georeplication_session_detail")]
    detail: Vec<GeoRepSessionDetail>,
}

/// One brick of a session (the design's `gluster_georep_session_details`).
#[derive(Serialize, ToSchema)]
pub struct GeoRepSessionDetail {
    /// `NODE:/brick`
    master_brick: String,
    master_node_uuid: String,
    slave_host_name: String,
    status: Status,
    /// `Yes` when the checkpoint is reached, `No`, or `N/A` without a checkpoint.
    checkpoint_status: String,
    crawl_status: String,
    files_synced: u64,
    files_pending: u64,
    bytes_pending: u64,
    deletes_pending: u64,
    files_skipped: u64,
    /// `YYYY-MM-DD HH:MM:SS` UTC, or `N/A`.
    last_synced_at: String,
    checkpoint_time: String,
    checkpoint_completed_time: String,
    lag_seconds: f64,
    /// Why the worker is Faulty (empty otherwise).
    last_error: String,
}

#[derive(Serialize, ToSchema)]
pub struct GeoRepSessions {
    #[serde(rename = "georeplication_session")]
    session: Vec<GeoRepSession>,
}

/// One option of a session (the design's `gluster_georep_config`).
#[derive(Serialize, ToSchema)]
pub struct GeoRepOption {
    config_key: String,
    config_value: String,
    default_value: String,
    allowed_values: String,
    config_description: String,
}

#[derive(Serialize, ToSchema)]
pub struct GeoRepOptions {
    #[serde(rename = "georeplication_option")]
    option: Vec<GeoRepOption>,
}

/// A new session, as the design's "New Geo-Replication Session" dialog fills it.
#[derive(Deserialize, ToSchema)]
pub struct NewGeoRepSession {
    slave_host_name: String,
    slave_volume_name: String,
    /// The secondary's user (root when absent).
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    push_pem: bool,
    #[serde(default)]
    ssh_port: Option<u16>,
}

/// An option to set.
#[derive(Deserialize, ToSchema)]
pub struct SetGeoRepOption {
    config_key: String,
    config_value: String,
}

/// A result for the user (the engine's `<action>` answer, in short).
#[derive(Serialize, ToSchema)]
pub struct Action {
    status: &'static str,
    message: String,
}

/// What went wrong (the engine's `<fault>`): the kind and the daemon's line.
#[derive(Serialize, ToSchema)]
pub struct Fault {
    reason: &'static str,
    detail: String,
}

/// JSON or XML, as the client asked.
#[derive(Clone, Copy)]
struct Format {
    xml: bool,
}

impl Format {
    fn of(h: &HeaderMap) -> Format {
        let accept = h.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Format { xml: accept.contains("application/xml") && !accept.contains("application/json") }
    }

    fn reply<T: Serialize>(self, status: StatusCode, root: &str, v: &T) -> HttpResponse {
        if !self.xml {
            return (status, axum::Json(v)).into_response();
        }
        match quick_xml::se::to_string_with_root(root, v) {
            Ok(body) => (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("XML: {e}")).into_response(),
        }
    }

    fn fault(self, r: Refusal) -> HttpResponse {
        let (status, reason) = super::routes::status_of(r.kind);
        self.reply(status, "fault", &Fault { reason, detail: r.message })
    }

    fn answer(self, r: Response) -> HttpResponse {
        match r {
            Response::Ok(message) => self.reply(StatusCode::OK, "action", &Action { status: "complete", message }),
            Response::Err(e) => self.fault(e),
            other => self.fault(Refusal::new(Kind::Refused, format!("unexpected answer {other:?}"))),
        }
    }
}

/// A body in JSON or XML (by its `Content-Type`); bad input names the field.
fn body<T: DeserializeOwned>(h: &HeaderMap, b: &Bytes) -> Result<T, Refusal> {
    let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let bad = |e: String| Refusal::new(Kind::BadInput, format!("body: {e}"));
    if ct.contains("xml") {
        let text = std::str::from_utf8(b).map_err(|e| bad(e.to_string()))?;
        quick_xml::de::from_str(text).map_err(|e| bad(e.to_string()))
    } else {
        serde_json::from_slice(b).map_err(|e| bad(e.to_string()))
    }
}

/// The cluster in the path must be this one (its UUID or name).
fn cluster(d: &Daemon, c: &str) -> Result<(), Refusal> {
    if c == d.node.id || c == d.node.name {
        return Ok(());
    }
    Err(Refusal::new(Kind::NotFound, format!("cluster: no cluster {c:?} here (this one is {})", d.node.id)))
}

fn session_of(d: &Daemon, volume: &VolumeInfo, s: SessionView) -> GeoRepSession {
    let detail = s
        .bricks
        .iter()
        .map(|b| {
            let num = |v: &str| v.parse::<u64>().unwrap_or(0);
            GeoRepSessionDetail {
                master_brick: format!("{}:{}", b.primary_node, b.primary_brick),
                master_node_uuid: b.primary_node_uuid.clone(),
                slave_host_name: b.secondary_node.clone(),
                status: Status::of_brick(&b.worker_status),
                checkpoint_status: b.checkpoint_completed.clone(),
                crawl_status: b.crawl_status.clone(),
                files_synced: b.files_synced,
                files_pending: num(&b.data),
                bytes_pending: b.bytes_pending,
                deletes_pending: b.deletes_pending,
                files_skipped: b.files_skipped,
                last_synced_at: b.last_synced_utc.clone(),
                checkpoint_time: b.checkpoint_time_utc.clone(),
                checkpoint_completed_time: b.checkpoint_completion_time_utc.clone(),
                lag_seconds: b.lag_seconds,
                last_error: b.last_error.clone(),
            }
        })
        .collect();
    GeoRepSession {
        session_key: format!("{}:{}", d.node.id, s.secondary),
        master_volume_id: volume.id.clone(),
        master_volume_name: s.primary_volume.clone(),
        slave_host_name: s.secondary_host.clone(),
        slave_volume_name: s.secondary_volume.clone(),
        user_name: s.secondary_user.clone(),
        status: s.status,
        id: s.id,
        details: Details { detail },
    }
}

async fn volume_info(d: &Arc<Daemon>, volume: &str) -> Result<VolumeInfo, Refusal> {
    match ask(d.clone(), Request::Volume(VolumeCmd::Info { name: Some(volume.into()) })).await {
        Response::Volumes(mut v) if !v.is_empty() => Ok(v.swap_remove(0)),
        Response::Err(e) => Err(e),
        other => Err(Refusal::new(Kind::Refused, format!("unexpected answer {other:?}"))),
    }
}

/// The sessions of a volume (one, with `session`), in the design's shape.
async fn sessions_of(
    d: &Arc<Daemon>,
    c: &str,
    volume: &str,
    session: Option<&str>,
) -> Result<Vec<GeoRepSession>, Refusal> {
    cluster(d, c)?;
    let info = volume_info(d, volume).await?;
    let views = views_of(d, volume, session).await?;
    Ok(views.into_iter().map(|s| session_of(d, &info, s)).collect())
}

/// Every geo-replication session of the volume.
#[utoipa::path(get, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions",
    params(("cluster" = String, Path), ("volume" = String, Path)),
    responses((status = 200, body = GeoRepSessions), (status = 404, body = Fault)))]
async fn list(State(d): State<Arc<Daemon>>, Path((c, volume)): Path<(String, String)>, h: HeaderMap) -> HttpResponse {
    let f = Format::of(&h);
    match sessions_of(&d, &c, &volume, None).await {
        Ok(session) => f.reply(StatusCode::OK, "georeplication_sessions", &GeoRepSessions { session }),
        Err(e) => f.fault(e),
    }
}

/// One session with its bricks.
#[utoipa::path(get, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions/{session}",
    params(("cluster" = String, Path), ("volume" = String, Path), ("session" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    responses((status = 200, body = GeoRepSession), (status = 404, body = Fault)))]
async fn details(
    State(d): State<Arc<Daemon>>,
    Path((c, volume, session)): Path<(String, String, String)>,
    h: HeaderMap,
) -> HttpResponse {
    let f = Format::of(&h);
    match sessions_of(&d, &c, &volume, Some(&session)).await {
        Ok(mut v) if !v.is_empty() => f.reply(StatusCode::OK, "georeplication_session", &v.swap_remove(0)),
        Ok(_) => f.fault(Refusal::new(Kind::NotFound, format!("no session between {volume} and {session}"))),
        Err(e) => f.fault(e),
    }
}

/// Runs a session command after checking the cluster and the session's name.
async fn session_call(d: Arc<Daemon>, c: &str, volume: String, session: &str, cmd: SessionCmd) -> Response {
    if let Err(e) = cluster(&d, c) {
        return Response::Err(e);
    }
    match SecondaryUrl::parse(session) {
        Ok(secondary) => ask(d, Request::Session { primary: volume, secondary, cmd }).await,
        Err(e) => Response::Err(Refusal::new(Kind::BadInput, format!("session: {e}"))),
    }
}

/// A new session (`create`; `push_pem` installs the keys as `create push-pem` does).
#[utoipa::path(post, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions",
    params(("cluster" = String, Path), ("volume" = String, Path)),
    request_body(content((NewGeoRepSession = "application/json"), (NewGeoRepSession = "application/xml"))),
    responses((status = 201, body = GeoRepSession), (status = 400, body = Fault), (status = 409, body = Fault)))]
async fn create(
    State(d): State<Arc<Daemon>>,
    Path((c, volume)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResponse {
    let f = Format::of(&h);
    let n: NewGeoRepSession = match body(&h, &b) {
        Ok(n) => n,
        Err(e) => return f.fault(e),
    };
    let user = n.user_name.filter(|u| !u.is_empty() && u != "root").map(|u| format!("{u}@")).unwrap_or_default();
    let id = format!("{user}{}::{}", n.slave_host_name, n.slave_volume_name);
    let cmd = SessionCmd::Create { ssh_port: n.ssh_port, push_pem: n.push_pem, no_verify: false, force: n.force };
    match session_call(d.clone(), &c, volume.clone(), &id, cmd).await {
        Response::Ok(_) => match sessions_of(&d, &c, &volume, Some(&id)).await {
            Ok(mut v) if !v.is_empty() => f.reply(StatusCode::CREATED, "georeplication_session", &v.swap_remove(0)),
            Ok(_) => f.fault(Refusal::new(Kind::NotFound, format!("no session between {volume} and {id}"))),
            Err(e) => f.fault(e),
        },
        other => f.answer(other),
    }
}

/// `start`, `stop`, `pause`, `resume` (`?force=true`), as the design's buttons.
#[utoipa::path(post, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions/{session}/{action}",
    params(("cluster" = String, Path), ("volume" = String, Path), ("session" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"),
        ("action" = String, Path, description = "start, stop, pause or resume"), Flags),
    responses((status = 200, body = Action), (status = 404, body = Fault), (status = 409, body = Fault)))]
async fn action(
    State(d): State<Arc<Daemon>>,
    Path((c, volume, session, action)): Path<(String, String, String, String)>,
    Query(q): Query<Flags>,
    h: HeaderMap,
) -> HttpResponse {
    let f = Format::of(&h);
    let cmd = match action.as_str() {
        "start" => SessionCmd::Start { force: q.force },
        "stop" => SessionCmd::Stop { force: q.force },
        "pause" => SessionCmd::Pause { force: q.force },
        "resume" => SessionCmd::Resume { force: q.force },
        other => return f.fault(Refusal::new(Kind::NotFound, format!("action: no action {other:?}"))),
    };
    f.answer(session_call(d, &c, volume, &session, cmd).await)
}

/// Removes an inactive session (`delete`, `?reset_sync_time=true`).
#[utoipa::path(delete, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions/{session}",
    params(("cluster" = String, Path), ("volume" = String, Path), ("session" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), Flags),
    responses((status = 200, body = Action), (status = 404, body = Fault), (status = 409, body = Fault)))]
async fn remove(
    State(d): State<Arc<Daemon>>,
    Path((c, volume, session)): Path<(String, String, String)>,
    Query(q): Query<Flags>,
    h: HeaderMap,
) -> HttpResponse {
    let cmd = SessionCmd::Delete { reset_sync_time: q.reset_sync_time };
    Format::of(&h).answer(session_call(d, &c, volume, &session, cmd).await)
}

/// The session's options: value, default, allowed values, description.
#[utoipa::path(get, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions/{session}/options",
    params(("cluster" = String, Path), ("volume" = String, Path), ("session" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    responses((status = 200, body = GeoRepOptions), (status = 404, body = Fault)))]
async fn options(
    State(d): State<Arc<Daemon>>,
    Path((c, volume, session)): Path<(String, String, String)>,
    h: HeaderMap,
) -> HttpResponse {
    let f = Format::of(&h);
    match session_call(d, &c, volume, &session, SessionCmd::Config(ConfigAction::Describe)).await {
        Response::Options(o) => {
            let option = o
                .into_iter()
                .map(|o| GeoRepOption {
                    config_key: o.name,
                    config_value: o.value,
                    default_value: o.default,
                    allowed_values: o.allowed,
                    config_description: o.description,
                })
                .collect();
            f.reply(StatusCode::OK, "georeplication_options", &GeoRepOptions { option })
        }
        other => f.answer(other),
    }
}

/// Sets an option (`config KEY VALUE`, the same validation).
#[utoipa::path(put, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions/{session}/options",
    params(("cluster" = String, Path), ("volume" = String, Path), ("session" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$")),
    request_body(content((SetGeoRepOption = "application/json"), (SetGeoRepOption = "application/xml"))),
    responses((status = 200, body = Action), (status = 400, body = Fault)))]
async fn set_option(
    State(d): State<Arc<Daemon>>,
    Path((c, volume, session)): Path<(String, String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResponse {
    let f = Format::of(&h);
    let o: SetGeoRepOption = match body(&h, &b) {
        Ok(o) => o,
        Err(e) => return f.fault(e),
    };
    let cmd = SessionCmd::Config(ConfigAction::Set(o.config_key, o.config_value));
    f.answer(session_call(d, &c, volume, &session, cmd).await)
}

/// Resets an option to its default (`config !KEY`).
#[utoipa::path(delete, path = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions/{session}/options/{key}",
    params(("cluster" = String, Path), ("volume" = String, Path), ("session" = String, Path, description = "[user@]host::volume", pattern = r"^([A-Za-z0-9._-]{1,255}@)?[A-Za-z0-9._-]{1,255}::[A-Za-z0-9._-]{1,255}$"), ("key" = String, Path)),
    responses((status = 200, body = Action), (status = 400, body = Fault)))]
async fn reset_option(
    State(d): State<Arc<Daemon>>,
    Path((c, volume, session, key)): Path<(String, String, String, String)>,
    h: HeaderMap,
) -> HttpResponse {
    let cmd = SessionCmd::Config(ConfigAction::Reset(key));
    Format::of(&h).answer(session_call(d, &c, volume, &session, cmd).await)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, details, create, action, remove, options, set_option, reset_option),
    components(schemas(
        GeoRepSession,
        GeoRepSessions,
        GeoRepSessionDetail,
        Details,
        GeoRepOption,
        GeoRepOptions,
        NewGeoRepSession,
        SetGeoRepOption,
        Action,
        Fault,
        Status
    ))
)]
pub struct Doc;

/// The oVirt paths (behind the same token check as the rest).
pub fn router() -> Router<Arc<Daemon>> {
    const S: &str = "/api/clusters/{cluster}/glustervolumes/{volume}/georeplication-sessions";
    Router::new()
        .route(S, get(list).post(create))
        .route(&format!("{S}/{{session}}"), get(details).delete(remove))
        .route(&format!("{S}/{{session}}/options"), get(options).put(set_option))
        .route(&format!("{S}/{{session}}/options/{{key}}"), axum::routing::delete(reset_option))
        .route(&format!("{S}/{{session}}/{{action}}"), post(action))
}
