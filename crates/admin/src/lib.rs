//! The admin HTTP API (README.md, "A short tour"): JSON in and out, lists as `{"items": [...], "next": ...}`, errors as
//! `{"error": ...}` with a 4xx status.
//!
//! **Security**: with a token configured every request but `GET /api/v1/health` needs
//! `Authorization: Bearer <token>`; the `Host` header must name the listen address or an allowed host
//! (DNS rebinding); state-changing requests need a JSON body or `X-Sluice-Request: 1` (no cross-site form
//! posts). The configuration refuses a non-loopback listen address without a token and TLS (and, while
//! `admin.tls` is not in effect, any non-loopback address).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sluice_api_types as api;
use sluice_transport::{BoxFuture, Transport};
use tokio_util::sync::CancellationToken;

mod actions;
mod metrics;
mod query;
mod resubmit;
mod status;

/// Reloads the configuration; returns what happened, or why it failed (the old configuration stays).
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<'static, Result<api::ReloadResult, String>> + Send + Sync>;

/// What the API serves from.
#[derive(Clone)]
pub struct AdminState {
    pub transport: Transport,
    pub started: Instant,
    pub token: Option<String>,
    /// `Host` values accepted besides the listen address.
    pub allowed_hosts: Vec<String>,
    pub listen: SocketAddr,
    pub reload: ReloadFn,
    /// How long an on-demand defragmentation may run (`online_defrag_time_to_run`).
    pub defrag_time_to_run: std::time::Duration,
}

const DEFAULT_RESULT_SIZE: usize = 1000;
const MAX_RESULT_SIZE: usize = 250_000;

/// An API error: a status and plain words, and sometimes the details (e.g. each identity that failed).
#[derive(Debug)]
pub struct ApiError(StatusCode, String, Option<serde_json::Value>);

impl ApiError {
    fn new(status: StatusCode, what: impl Into<String>) -> ApiError {
        ApiError(status, what.into(), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(api::ErrorBody { error: self.1, detail: self.2 })).into_response()
    }
}

fn bad_request(what: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, what)
}

/// The API's routes.
pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/queues", get(list_queues))
        .route("/api/v1/queues/{identity}", get(get_queue))
        .route("/api/v1/messages", get(list_messages))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/config/reload", post(reload))
        .route("/api/v1/database/defrag", post(defrag))
        .merge(actions::routes())
        .merge(resubmit::routes())
        .merge(status::routes())
        .merge(metrics::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves the API until `shutdown` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState, shutdown: CancellationToken) {
    let app = router(state);
    let done = async move { shutdown.cancelled().await };
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(done).await {
        tracing::error!(error = %e, "admin API stopped");
    }
}

async fn guard(State(s): State<Arc<AdminState>>, mut req: Request, next: Next) -> Response {
    if let Err(e) = check(&s, req.method(), req.uri().path(), req.headers()) {
        return e.into_response();
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let origin = match peer {
        Some(peer) => format!("admin API {peer}"),
        None => "admin API".to_owned(),
    };
    req.extensions_mut().insert(Origin(origin));
    next.run(req).await
}

/// Who asked for an action, as its tracking event names it (`admin API 127.0.0.1:53412`): set on every
/// request by the guard.
#[derive(Debug, Clone)]
pub struct Origin(pub String);

fn check(s: &AdminState, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let port = s.listen.port();
    let host_ok = host == s.listen.to_string()
        || s.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        || (s.listen.ip().is_loopback()
            && [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host)));
    if !host_ok {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("Host {host:?} is not this server's admin address")));
    }
    if let Some(token) = &s.token
        && !(method == Method::GET && path == "/api/v1/health")
    {
        let given = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).unwrap_or("");
        let ok = given.strip_prefix("Bearer ").is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if !ok {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required"));
        }
    }
    if method != Method::GET && method != Method::HEAD {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        let marked = headers.get("x-sluice-request").is_some_and(|v| v == "1");
        if !json && !marked {
            return Err(bad_request("state-changing requests need a JSON body or the header X-Sluice-Request: 1"));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(s): State<Arc<AdminState>>) -> Json<api::Health> {
    Json(api::Health {
        // "degraded": the server runs but refuses new mail (a stopped queue database, back pressure High).
        status: if s.transport.healthy() { "ok" } else { "degraded" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: s.started.elapsed().as_secs(),
    })
}

/// The page of `items` that `result_size` and `bookmark` ask for.
fn page<T>(items: Vec<T>, q: &HashMap<String, String>) -> Result<api::List<T>, ApiError> {
    let size = match q.get("result_size") {
        None => DEFAULT_RESULT_SIZE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULT_SIZE).contains(n))
            .ok_or_else(|| bad_request(format!("result_size must be 1..{MAX_RESULT_SIZE}, not {s:?}")))?,
    };
    let start = match q.get("bookmark") {
        None => 0,
        Some(b) => b.parse::<usize>().map_err(|_| bad_request(format!("bookmark {b:?} is not one we gave")))?,
    };
    let total = items.len();
    let items: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + size < total).then(|| (start + size).to_string());
    Ok(api::List { items, next })
}

const QUEUE_LIST_KEYS: &[&str] = &["filter", "include", "exclude", "sort_order", "result_size", "bookmark"];
const MESSAGE_LIST_KEYS: &[&str] =
    &["queue", "filter", "include_recipient_info", "sort_order", "result_size", "bookmark"];

/// The queues a query selects (`filter`, `include`, `exclude`), in its `sort_order`.
fn select_queues(s: &AdminState, q: &HashMap<String, String>) -> Result<Vec<api::Queue>, ApiError> {
    let filter = query::filter(q, query::QUEUE_PROPERTIES)?;
    let order = query::sort_order(q, query::QUEUE_PROPERTIES)?;
    let queues = query::include_exclude(q, s.transport.queues())?;
    Ok(query::select(queues, filter.as_ref(), &order, query::queue_value))
}

/// The message copies a query selects (`queue`, `filter`), in its `sort_order`.
fn select_messages(s: &AdminState, q: &HashMap<String, String>) -> Result<Vec<api::Message>, ApiError> {
    let include = match q.get("include_recipient_info").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => return Err(bad_request(format!("include_recipient_info must be true or false, not {other:?}"))),
    };
    let filter = query::filter(q, query::MESSAGE_PROPERTIES)?;
    let order = query::sort_order(q, query::MESSAGE_PROPERTIES)?;
    let queue = q.get("queue").map(String::as_str).filter(|q| !q.is_empty());
    // A filter or a sort may look at the recipients; they are dropped again unless asked for.
    let with_recipients = include || filter.is_some() || !order.is_empty();
    let items = s
        .transport
        .messages(queue, with_recipients)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let mut items = query::select(items, filter.as_ref(), &order, query::message_value);
    if !include {
        for m in &mut items {
            m.recipients = None;
        }
    }
    Ok(items)
}

async fn list_queues(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::Queue>>, ApiError> {
    let q = query::keys(q, QUEUE_LIST_KEYS)?;
    Ok(Json(page(select_queues(&s, &q)?, &q)?))
}

async fn get_queue(
    State(s): State<Arc<AdminState>>,
    Path(identity): Path<String>,
) -> Result<Json<api::Queue>, ApiError> {
    s.transport.queue(&identity).map(Json).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
}

async fn list_messages(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::Message>>, ApiError> {
    let q = query::keys(q, MESSAGE_LIST_KEYS)?;
    Ok(Json(page(select_messages(&s, &q)?, &q)?))
}

async fn reload(State(s): State<Arc<AdminState>>) -> Result<Json<api::ReloadResult>, ApiError> {
    (s.reload)().await.map(Json).map_err(|e| bad_request(format!("configuration not reloaded: {e}")))
}

async fn defrag(State(s): State<Arc<AdminState>>) -> Result<Json<api::DefragResult>, ApiError> {
    let r = s
        .transport
        .defrag(s.defrag_time_to_run)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(api::DefragResult {
        generations_compacted: r.generations_compacted,
        messages_moved: r.messages_moved,
        bytes_moved: r.bytes_moved,
        interrupted: r.interrupted,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    since: Option<String>,
    severity: Option<String>,
    class: Option<String>,
}

/// `GET /api/v1/alerts?since=&severity=&class=`: recent alerts, oldest first. `since` is RFC 3339;
/// `severity` keeps that severity and the more urgent ones.
async fn list_alerts(
    State(state): State<Arc<AdminState>>,
    q: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::List<api::Alert>>, ApiError> {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    use sluice_transport::{AlertClass, Severity};
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(sluice_transport::alerts::parse_time(s).ok_or_else(|| {
            bad_request(format!("since: {s:?} is not an RFC 3339 time such as 2026-12-01T15:00:00Z"))
        })?),
    };
    let severity = match q.severity.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            Severity::parse(s)
                .ok_or_else(|| bad_request(format!("severity: {s:?} is not one of Critical, Warning, Information")))?,
        ),
    };
    let class = match q.class.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(AlertClass::parse(s).ok_or_else(|| {
            let names: Vec<&str> = AlertClass::ALL.iter().map(|c| c.as_str()).collect();
            bad_request(format!("class: {s:?} is not one of {}", names.join(", ")))
        })?),
    };
    Ok(Json(api::List { items: state.transport.alerts().list(since, severity, class), next: None }))
}
