//! The work queue (the appliance's `workqueue status|rate|pause|resume`), its engines and their updates
//! (`antispamstatus`, `antispamupdate`, `tail updater_logs`), and quarantine.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_api_types as api;
use sluice_transport::workqueue::{QuarantineError, ScanStage};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AdminState, ApiError, bad_request};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(rate))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(engines))
        .routes(routes!(antispam_rules))
        .routes(routes!(update))
        .routes(routes!(updater_log))
        .routes(routes!(list_quarantine))
        .routes(routes!(release))
        .routes(routes!(delete))
}

/// A stage named in a request: `antispam` or `antivirus`; anything else is a 400.
fn stage(name: &str) -> Result<ScanStage, ApiError> {
    ScanStage::parse(name)
        .ok_or_else(|| bad_request(format!("unknown stage {name:?}: the stages are antispam and antivirus")))
}

/// The body of a pause or resume: JSON, or nothing.
fn pause_request(body: &Bytes) -> Result<api::PauseRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(api::PauseRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body is not a pause request: {e}")))
}

/// ESA's `workqueue status`: Operational, Paused (with each paused stage and why) or Offline, and the
/// messages in the work queue.
#[utoipa::path(get, path = "/api/v1/workqueue", tag = "workqueue",
    responses((status = 200, body = api::WorkQueue), crate::openapi::Errors))]
async fn status(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::WorkQueue>, ApiError> {
    crate::status::no_query(&q)?;
    Ok(Json(s.transport.work_queue()))
}

/// The query of `GET /api/v1/workqueue/rate`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document only.
pub(crate) struct RateQuery {
    /// Seconds per row (1..3600; default 10).
    interval: Option<u64>,
    /// Rows (1..360; default 6), the last one ending now.
    samples: Option<usize>,
}

/// ESA's `workqueue rate`: per `interval` seconds, the messages that entered and left the work queue and
/// those waiting at its end, oldest row first.
#[utoipa::path(get, path = "/api/v1/workqueue/rate", tag = "workqueue", params(RateQuery),
    responses((status = 200, body = Vec<api::WorkQueueRate>), crate::openapi::Errors))]
async fn rate(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<api::WorkQueueRate>>, ApiError> {
    let q = crate::query::keys(q, &["interval", "samples"])?;
    let number = |key: &str, default: u64, max: u64| -> Result<u64, ApiError> {
        match q.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| bad_request(format!("{key} must be a whole number from 1 to {max}, not {v:?}"))),
        }
    };
    let interval = number("interval", 10, 3600)?;
    let samples = number("samples", 6, 360)? as usize;
    Ok(Json(s.transport.work_queue_rate(interval, samples)))
}

/// ESA's `workqueue pause`: the stage (every stage without one) stops taking messages; they wait in
/// Submission. A pause that lasts raises the paused alert, and the stuck alert past `work_queue_stuck_after`.
#[utoipa::path(post, path = "/api/v1/workqueue/pause", tag = "workqueue", request_body = Option<api::PauseRequest>,
    responses((status = 200, body = api::WorkQueue), crate::openapi::Errors))]
async fn pause(State(s): State<Arc<AdminState>>, body: Bytes) -> Result<Json<api::WorkQueue>, ApiError> {
    let req = pause_request(&body)?;
    let stage = req.stage.as_deref().map(stage).transpose()?;
    let reason = req.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("paused by administrator");
    // One line of plain text: it is shown in status and alerts.
    let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    Ok(Json(s.transport.pause_work_queue(stage, &reason)))
}

/// ESA's `workqueue resume`: ends an administrator's pause of the stage (every stage without one).
#[utoipa::path(post, path = "/api/v1/workqueue/resume", tag = "workqueue", request_body = Option<api::PauseRequest>,
    responses((status = 200, body = api::WorkQueue), crate::openapi::Errors))]
async fn resume(State(s): State<Arc<AdminState>>, body: Bytes) -> Result<Json<api::WorkQueue>, ApiError> {
    let req = pause_request(&body)?;
    let stage = req.stage.as_deref().map(stage).transpose()?;
    Ok(Json(s.transport.resume_work_queue(stage)))
}

/// ESA's `antispamstatus` and `antivirusstatus`: each engine, its set's version, and the last update.
#[utoipa::path(get, path = "/api/v1/engines", tag = "workqueue",
    responses((status = 200, body = Vec<api::Engine>), crate::openapi::Errors))]
async fn engines(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<api::Engine>>, ApiError> {
    crate::status::no_query(&q)?;
    Ok(Json(s.transport.engines()))
}

/// The query of `GET /api/v1/engines/antispam/rules`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RulesQuery {
    /// How many of the costliest rules to list (default 20; 0..1000).
    slowest: Option<usize>,
}

/// What the built-in anti-spam engine loaded and skipped, and its costliest rules (`sluice engines --rules`).
/// 409 when the anti-spam stage has no built-in engine.
#[utoipa::path(get, path = "/api/v1/engines/antispam/rules", tag = "workqueue", params(RulesQuery),
    responses((status = 200, body = api::RuleReport), crate::openapi::Errors))]
async fn antispam_rules(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::RuleReport>, ApiError> {
    let q = crate::query::keys(q, &["slowest"])?;
    let slowest = match q.get("slowest") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| bad_request(format!("slowest must be a whole number from 0 to 1000, not {v:?}")))?,
    };
    s.transport.antispam_rules(slowest).map(Json).ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "the antispam stage has no built-in engine: no rules to report")
    })
}

/// An engine in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct EnginePath {
    /// `antispam` or `antivirus`.
    engine: String,
}

/// ESA's `antispamupdate`: checks the update source now and applies a new set (with `force`, downloads
/// every file again even when the version is the same). Answers 202 at once; the steps go to the updater log.
#[utoipa::path(post, path = "/api/v1/engines/{engine}/update", tag = "workqueue", params(EnginePath),
    responses((status = 202, body = api::UpdateStarted), crate::openapi::Errors))]
async fn update(
    State(s): State<Arc<AdminState>>,
    Path(engine): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json<api::UpdateStarted>), ApiError> {
    let q = crate::query::keys(q, &["force"])?;
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") | Some("") => true,
        Some(v) => return Err(bad_request(format!("force is true or false, not {v:?}"))),
    };
    let stage = ScanStage::parse(&engine)
        .ok_or_else(|| bad_request(format!("unknown engine {engine:?}: the engines are antispam and antivirus")))?;
    if !s.transport.request_update(stage, force) {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("the {engine} engine is off: nothing to update")));
    }
    Ok((StatusCode::ACCEPTED, Json(api::UpdateStarted { engine: stage.as_str().into(), force })))
}

/// The query of `GET /api/v1/logs/updater`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct LogQuery {
    /// The last lines (default 100; 1..100000).
    tail: Option<usize>,
    /// Instead of `tail`: the text from this byte offset on (what `X-Log-Offset` said last time).
    offset: Option<u64>,
}

/// The most a log read returns.
const MAX_LOG_READ: u64 = 8 << 20;

/// ESA's `tail updater_logs`: the updater log as text. `X-Log-Offset` is the log's length when read: poll
/// with `?offset=` to follow it.
#[utoipa::path(get, path = "/api/v1/logs/updater", tag = "workqueue", params(LogQuery),
    responses((status = 200, body = String, content_type = "text/plain"), crate::openapi::Errors))]
async fn updater_log(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q = crate::query::keys(q, &["tail", "offset"])?;
    let tail = match q.get("tail") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| bad_request(format!("tail must be a whole number from 1 to 100000, not {v:?}")))?,
    };
    let offset = match q.get("offset") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| bad_request(format!("offset must be a byte offset, not {v:?}")))?),
    };
    let path = s.updater_log.clone();
    let (text, end) = crate::blocking(move || read_log(&path, offset, tail)).await?;
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
        (header::HeaderName::from_static("x-log-offset"), end.to_string()),
    ];
    Ok((headers, text).into_response())
}

/// The log from `offset` on, or its last `tail` lines; with the log's length. A log not written yet is empty.
fn read_log(path: &std::path::Path, offset: Option<u64>, tail: usize) -> (String, u64) {
    let Ok(mut f) = std::fs::File::open(path) else { return (String::new(), 0) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = match offset {
        Some(o) => o.min(len),
        None => len.saturating_sub(MAX_LOG_READ),
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(MAX_LOG_READ).read_to_end(&mut buf).is_err() {
        return (String::new(), len);
    }
    let end = start + buf.len() as u64;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if offset.is_some() {
        return (text, end);
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(tail)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    (out, end)
}

/// The query of `GET /api/v1/quarantine`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct QuarantineQuery {
    /// Messages per page (default 1000).
    result_size: Option<usize>,
    /// The `next` of the previous page.
    bookmark: Option<String>,
}

/// The quarantined messages, oldest MID first, with each one's verdict.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "workqueue", params(QuarantineQuery),
    responses((status = 200, body = api::List<api::Quarantined>), crate::openapi::Errors))]
async fn list_quarantine(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::Quarantined>>, ApiError> {
    let q = crate::query::keys(q, &["result_size", "bookmark"])?;
    let size = match q.get("result_size") {
        None => crate::DEFAULT_RESULT_SIZE,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=crate::MAX_RESULT_SIZE).contains(n)).ok_or_else(|| {
            bad_request(format!("result_size must be a whole number from 1 to {}", crate::MAX_RESULT_SIZE))
        })?,
    };
    let after = match q.get("bookmark") {
        None => None,
        Some(b) => Some(b.parse::<u64>().map_err(|_| bad_request(format!("bad bookmark {b:?}")))?),
    };
    let (items, next) = s.transport.quarantine(after, size);
    Ok(Json(api::List { items, next: next.map(|m| m.to_string()) }))
}

/// A quarantined message's MID in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct MidPath {
    mid: u64,
}

fn quarantine_error(e: QuarantineError) -> ApiError {
    match e {
        QuarantineError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        QuarantineError::Commit(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn parse_mid(mid: &str) -> Result<u64, ApiError> {
    mid.parse().map_err(|_| bad_request(format!("{mid:?} is not a MID")))
}

/// Releases a quarantined message: it goes on past the stage that quarantined it and is delivered.
#[utoipa::path(post, path = "/api/v1/quarantine/{mid}/release", tag = "workqueue", params(MidPath),
    responses((status = 200, body = api::Quarantined), crate::openapi::Errors))]
async fn release(
    State(s): State<Arc<AdminState>>,
    Path(mid): Path<String>,
) -> Result<Json<api::Quarantined>, ApiError> {
    let mid = parse_mid(&mid)?;
    s.transport.release_quarantined(mid).await.map(Json).map_err(quarantine_error)
}

/// Deletes a quarantined message for good (no notice to the sender).
#[utoipa::path(delete, path = "/api/v1/quarantine/{mid}", tag = "workqueue", params(MidPath),
    responses((status = 200, body = api::Quarantined), crate::openapi::Errors))]
async fn delete(State(s): State<Arc<AdminState>>, Path(mid): Path<String>) -> Result<Json<api::Quarantined>, ApiError> {
    let mid = parse_mid(&mid)?;
    s.transport.delete_quarantined(mid).await.map(Json).map_err(quarantine_error)
}
