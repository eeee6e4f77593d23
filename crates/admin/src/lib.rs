//! The admin HTTP API (README.md, "A short tour"): JSON in and out, lists as `{"items": [...], "next": ...}`, errors as
//! `{"error": ...}` with a 4xx status.
//!
//! **Security**: with a token configured every request but `GET /api/v1/health` needs
//! `Authorization: Bearer <token>`; the `Host` header must name the listen address or an allowed host
//! (DNS rebinding); state-changing requests need a JSON body or `X-Sluice-Request: 1` (no cross-site form
//! posts). The configuration refuses a non-loopback listen address without a token and TLS; with `[admin] tls`
//! the API is served over HTTPS ([`serve_tls`]). Every state-changing request, refused ones included, is an
//! `AUDIT` event in the tracking log (`audit.rs`). The OpenAPI document comes from the route registration
//! (`openapi.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use sluice_api_types as api;
use sluice_transport::{BoxFuture, CopyRow, Transport};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod actions;
mod audit;
pub mod cluster;
mod digest;
mod hosts;
mod metrics;
mod openapi;
mod query;
mod resubmit;
mod status;
mod tls;
mod tracking;
mod viewer;
mod workqueue;

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
    /// `<data_dir>/logs/updater.log`, served by `GET /api/v1/logs/updater`.
    pub updater_log: std::path::PathBuf,
    /// This node's cluster (`[cluster]`); `None` on a single server.
    pub cluster: Option<sluice_cluster::Cluster>,
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

/// Runs `work` on a blocking thread, off the runtime that serves SMTP (a listing or a file scan that takes a
/// good part of a second); a panic in it is a `500`.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Every route of the API, each registered with its part of the OpenAPI document (`openapi.rs` says how).
fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(list_queues))
        .routes(routes!(get_queue))
        .routes(routes!(digest::queue_digest))
        .routes(routes!(list_messages))
        .routes(routes!(list_alerts))
        .routes(routes!(reload))
        .routes(routes!(defrag))
        .merge(actions::routes())
        .merge(resubmit::routes())
        .merge(status::routes())
        .merge(metrics::routes())
        .merge(tracking::routes())
        .merge(hosts::routes())
        .merge(workqueue::routes())
        .merge(cluster::routes())
}

/// The API's routes.
pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    let (routes, _) = routes().split_for_parts();
    routes
        .merge(viewer::routes(state.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        // Outside the guard: refused requests are audited too.
        .layer(middleware::from_fn_with_state(state.clone(), audit::audit))
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

/// Serves the API over TLS (`[admin] tls`) until `shutdown` is cancelled; `acceptor` holds the certificate.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: AdminState,
    shutdown: CancellationToken,
) {
    use axum::serve::ListenerExt;
    let listener = match tls::TlsListener::start(listener, acceptor, shutdown.clone()) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "admin API cannot serve TLS");
            return;
        }
    };
    let app = router(state);
    let done = async move { shutdown.cancelled().await };
    // `tap_io` gives the TLS connections the peer address as `ConnectInfo<SocketAddr>`, as plain ones have.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener.tap_io(|_| {}), app).with_graceful_shutdown(done).await {
        tracing::error!(error = %e, "admin API stopped");
    }
}

async fn guard(State(s): State<Arc<AdminState>>, mut req: Request, next: Next) -> Response {
    if let Err(e) = check(&s, req.method(), req.uri().path(), req.headers()) {
        return e.into_response();
    }
    let origin = origin_of(&req);
    req.extensions_mut().insert(Origin(origin));
    // A message held by another node of the cluster is that node's to show and act on.
    match cluster::proxy(&s, req).await {
        Ok(answered) => answered,
        Err(req) => next.run(req).await,
    }
}

/// Who sent `req`, as tracking events name it: `admin API 127.0.0.1:53412`. An IPv4 client of a dual-stack
/// listener (`[::]`) is named by its IPv4 address, as on an IPv4 listener.
fn origin_of(req: &Request) -> String {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => format!("admin API {}", SocketAddr::new(peer.ip().to_canonical(), peer.port())),
        None => "admin API".to_owned(),
    }
}

/// Whether `headers` carry the configured bearer token (false when none is configured).
fn token_given(s: &AdminState, headers: &HeaderMap) -> bool {
    let Some(token) = &s.token else { return false };
    let given = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).unwrap_or("");
    given.strip_prefix("Bearer ").is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

/// Who asked for an action, as its tracking event names it (`admin API 127.0.0.1:53412`): set on every
/// request by the guard.
#[derive(Debug, Clone)]
pub struct Origin(pub String);

fn check(s: &AdminState, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    check_host(s, headers)?;
    // The web viewer's pages have their own sign-in and same-origin checks (`viewer.rs`).
    if viewer::is_viewer_path(path) {
        return Ok(());
    }
    if s.token.is_some() && !(method == Method::GET && path == "/api/v1/health") && !token_given(s, headers) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required"));
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

/// The `Host` header must name the listen address or an allowed host (DNS rebinding), for the API and the
/// viewer alike.
fn check_host(s: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let port = s.listen.port();
    let host_ok = host == s.listen.to_string()
        || s.allowed_hosts.iter().any(|h| host_allowed(h, host, port))
        || (s.listen.ip().is_loopback()
            && [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host)));
    if !host_ok {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("Host {host:?} is not this server's admin address")));
    }
    Ok(())
}

/// Whether the `Host` header `host` names `allowed` (an `allowed_hosts` entry): equal to it, or, for an entry
/// without a port, equal to it with or without the listen port.
fn host_allowed(allowed: &str, host: &str, port: u16) -> bool {
    // A port follows the last ':' outside the brackets of an IPv6 literal.
    let has_port = allowed.rsplit_once(':').is_some_and(|(name, _)| !name.is_empty() && !name.ends_with(':'))
        && (!allowed.starts_with('[') || allowed.contains("]:"));
    host.eq_ignore_ascii_case(allowed) || (!has_port && host.eq_ignore_ascii_case(&format!("{allowed}:{port}")))
}

/// Whether `given` equals `expected`, in a time that depends on `given`'s length only: neither where the
/// first difference is nor the token's length can be learnt from how long a refusal takes.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        // `expected` is read cyclically so that a longer guess costs the same per byte.
        let e = expected.get(i % expected.len().max(1)).copied().unwrap_or(0);
        diff |= std::hint::black_box(g ^ e);
    }
    diff == 0
}

/// Liveness and readiness: `degraded` while the server runs but refuses new mail; `draining` (with 503, so
/// that a load balancer sends new clients elsewhere) while a cluster node drains.
#[utoipa::path(get, path = "/api/v1/health", tag = "server", security(()),
    responses((status = 200, body = api::Health), (status = 503, body = api::Health)))]
async fn health(State(s): State<Arc<AdminState>>) -> (StatusCode, Json<api::Health>) {
    let (code, status) = if s.transport.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if s.transport.healthy() {
        (StatusCode::OK, "ok")
    } else {
        // The server runs but refuses new mail (a stopped queue database, back pressure High).
        (StatusCode::OK, "degraded")
    };
    let health = api::Health {
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: s.started.elapsed().as_secs(),
    };
    (code, Json(health))
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
    select_from(s.transport.queues(), q)
}

/// The queues of `queues` a query selects (`filter`, `include`, `exclude`), in its `sort_order`.
fn select_from(queues: Vec<api::Queue>, q: &HashMap<String, String>) -> Result<Vec<api::Queue>, ApiError> {
    let filter = query::filter(q, query::QUEUE_PROPERTIES)?;
    let order = query::sort_order(q, query::QUEUE_PROPERTIES)?;
    let queues = query::include_exclude(q, queues)?;
    Ok(query::select(queues, filter.as_ref(), &order, query::queue_value, |_| {}))
}

/// The message copies a query selects (`queue`, `filter`), in its `sort_order`. The filter and the sort
/// read the rows; only the copies a page shows are made into JSON.
fn select_messages(s: &AdminState, q: &HashMap<String, String>) -> Result<Vec<CopyRow>, ApiError> {
    let filter = query::filter(q, query::MESSAGE_PROPERTIES)?;
    let order = query::sort_order(q, query::MESSAGE_PROPERTIES)?;
    let queue = q.get("queue").map(String::as_str).filter(|q| !q.is_empty());
    // The filter runs in the listing's pass: only the copies it keeps become rows.
    let keep = |row: &CopyRow| filter.as_ref().is_none_or(|f| f.matches(&|i| query::message_value(row, i)));
    let rows =
        s.transport.copy_rows_where(queue, keep).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(query::select(rows, None, &order, query::message_value, sluice_transport::in_listing_order))
}

/// Get-Queue: the queues a query selects, a page at a time.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", params(openapi::QueueListQuery),
    responses((status = 200, body = api::List<api::Queue>), openapi::Errors))]
async fn list_queues(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::Queue>>, ApiError> {
    let q = query::keys(q, QUEUE_LIST_KEYS)?;
    Ok(Json(page(select_queues(&s, &q)?, &q)?))
}

/// Get-Queue: one queue.
#[utoipa::path(get, path = "/api/v1/queues/{identity}", tag = "queues", params(openapi::IdentityPath),
    responses((status = 200, body = api::Queue), openapi::Errors))]
async fn get_queue(
    State(s): State<Arc<AdminState>>,
    Path(identity): Path<String>,
) -> Result<Json<api::Queue>, ApiError> {
    s.transport.queue(&identity).map(Json).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
}

/// Get-Message: the message copies a query selects, a page at a time.
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages", params(openapi::MessageListQuery),
    responses((status = 200, body = api::List<api::Message>), openapi::Errors))]
async fn list_messages(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::Message>>, ApiError> {
    let q = query::keys(q, MESSAGE_LIST_KEYS)?;
    let include = match q.get("include_recipient_info").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => return Err(bad_request(format!("include_recipient_info must be true or false, not {other:?}"))),
    };
    // A filter over a million messages takes a good part of a second.
    let page = blocking(move || {
        let rows = page(select_messages(&s, &q)?, &q)?;
        Ok::<_, ApiError>(api::List { items: rows.items.iter().map(|r| r.to_api(include)).collect(), next: rows.next })
    });
    Ok(Json(page.await??))
}

/// Reloads the configuration file (as SIGHUP does); keys that need a restart are named and keep their
/// running value.
#[utoipa::path(post, path = "/api/v1/config/reload", tag = "server",
    responses((status = 200, body = api::ReloadResult), openapi::Errors))]
async fn reload(State(s): State<Arc<AdminState>>) -> Result<Json<api::ReloadResult>, ApiError> {
    (s.reload)().await.map(Json).map_err(|e| bad_request(format!("configuration not reloaded: {e}")))
}

/// Starts online defragmentation of the queue database now, for at most `online_defrag_time_to_run`.
#[utoipa::path(post, path = "/api/v1/database/defrag", tag = "server",
    responses((status = 200, body = api::DefragResult), openapi::Errors,
        (status = 503, description = "The queue database stopped", body = api::ErrorBody)))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    /// Only alerts raised at or after this time (RFC 3339).
    since: Option<String>,
    /// `Critical`, `Warning` or `Information`: this severity and the more urgent ones.
    severity: Option<String>,
    /// Only alerts of this class.
    class: Option<String>,
    /// Items per page (1..250000; default 1000).
    result_size: Option<String>,
    /// The `next` of the previous page.
    bookmark: Option<String>,
}

/// `GET /api/v1/alerts?since=&severity=&class=&result_size=&bookmark=`: recent alerts, oldest first.
/// `since` is RFC 3339; `severity` keeps that severity and the more urgent ones.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = api::List<api::Alert>), openapi::Errors))]
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
    let paging: HashMap<String, String> = [("result_size", q.result_size), ("bookmark", q.bookmark)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
    Ok(Json(page(state.transport.alerts().list(since, severity, class), &paging)?))
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, host_allowed};

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        let cases: &[(&str, &str, bool)] = &[
            ("s3cret", "s3cret", true),
            ("s3cret", "s3cres", false),
            ("s3cre", "s3cret", false),
            ("s3cret!", "s3cret", false),
            ("s3crets3cret", "s3cret", false),
            ("", "s3cret", false),
            ("", "", true),
        ];
        for (given, expected, equal) in cases {
            assert_eq!(constant_time_eq(given.as_bytes(), expected.as_bytes()), *equal, "{given:?} {expected:?}");
        }
    }

    #[test]
    fn allowed_hosts_match_with_their_port_or_the_listen_port() {
        let cases: &[(&str, &str, bool)] = &[
            ("mx1.example.test:8025", "mx1.example.test:8025", true),
            ("mx1.example.test:8025", "MX1.Example.Test:8025", true),
            ("mx1.example.test:8025", "mx1.example.test:9000", false),
            ("mx1.example.test:8025", "mx1.example.test", false),
            ("mx1.example.test", "mx1.example.test:8443", true),
            ("mx1.example.test", "mx1.example.test", true),
            ("mx1.example.test", "mx1.example.test:9000", false),
            ("mx1.example.test", "evil.test:8443", false),
            ("[2001:db8::1]", "[2001:db8::1]:8443", true),
            ("[2001:db8::1]:8443", "[2001:db8::1]:8443", true),
            ("[2001:db8::1]:9000", "[2001:db8::1]:8443", false),
        ];
        for (allowed, host, ok) in cases {
            assert_eq!(host_allowed(allowed, host, 8443), *ok, "{allowed:?} {host:?}");
        }
    }
}
