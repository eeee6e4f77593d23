//! The cluster endpoints: this node's part (`/api/v1/cluster/status`), the nodes, the digest merged over
//! the live nodes, cluster-wide queue actions kept as desired state, and drain. Without `[cluster]` each
//! answers 404 saying so.
//!
//! A cluster-wide action is stored in Redis, not run here: every node, this one included, applies it in
//! [`reconcile`] when it is announced and at every heartbeat (announcements can be lost; a node that starts
//! later finds it too). A suspend holds: every queue its filter selects stays suspended, including queues
//! made later. A resume is applied once by each node that sees it, and replaces a suspend stored under the
//! same filter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use sluice_api_types as api;
use sluice_cluster::Cluster;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::digest::{self, digest};
use crate::openapi::Errors;
use crate::{AdminState, ApiError, Origin, bad_request, page, query};

/// How long a drain keeps delivering when the request names no deadline.
const DEFAULT_DRAIN_DEADLINE: &str = "1h";

pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(cluster_status))
        .routes(routes!(cluster_nodes))
        .routes(routes!(cluster_digest))
        .routes(routes!(cluster_suspend))
        .routes(routes!(cluster_resume))
        .routes(routes!(cluster_drain))
}

fn cluster(s: &AdminState) -> Result<&Cluster, ApiError> {
    s.cluster.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "this server is not a cluster node: [cluster] is not configured")
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the cluster's Redis cannot be used: {e}"))
}

/// This node's part in the cluster.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster",
    responses((status = 200, body = api::ClusterStatus), Errors))]
async fn cluster_status(State(s): State<Arc<AdminState>>) -> Result<Json<api::ClusterStatus>, ApiError> {
    Ok(Json(cluster(&s)?.status(&s.transport)))
}

/// Every node Redis knows: active, draining or dead, with the age of its last heartbeat.
#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster",
    responses((status = 200, body = api::List<api::ClusterNode>), Errors))]
async fn cluster_nodes(State(s): State<Arc<AdminState>>) -> Result<Json<api::List<api::ClusterNode>>, ApiError> {
    let nodes = cluster(&s)?.nodes().await.map_err(unavailable)?;
    Ok(Json(api::List { items: nodes, next: None }))
}

/// The query of `GET /api/v1/cluster/digest`: that of `GET /api/v1/queue-digest`, and `group_by=node`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ClusterDigestQuery {
    /// `next_hop_domain` (default), `node`, `last_error`, `delivery_type`, `status`, `queue_name` or
    /// `next_hop_category`.
    group_by: Option<String>,
    /// An OPATH filter over queue properties.
    filter: Option<String>,
    include: Option<String>,
    exclude: Option<String>,
    digest_threshold: Option<u64>,
    details_level: Option<String>,
    result_size: Option<u32>,
    bookmark: Option<String>,
}

/// Get-QueueDigest over every live node: their queues (as of each one's last heartbeat) grouped, counts
/// and rates added.
#[utoipa::path(get, path = "/api/v1/cluster/digest", tag = "cluster", params(ClusterDigestQuery),
    responses((status = 200, body = api::ClusterDigest), Errors))]
async fn cluster_digest(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::ClusterDigest>, ApiError> {
    let c = cluster(&s)?;
    let q = query::keys(q, digest::KEYS)?;
    let key = digest::group_key(&q, true)?;
    let (threshold, details) = digest::threshold_and_details(&q, u64::from(s.transport.digest_threshold()))?;
    let (nodes, per_node) = c.digests().await.map_err(unavailable)?;
    let mut keyed = Vec::new();
    for (node, queues) in per_node {
        for queue in crate::select_from(queues, &q)? {
            keyed.push((key.map_or_else(|| node.clone(), |key| key(&queue)), queue));
        }
    }
    let api::List { items, next } = page(digest(keyed, threshold, details), &q)?;
    Ok(Json(api::ClusterDigest { items, next, nodes }))
}

/// Suspend-Queue on every node: the queues the filter selects, now and later, stay suspended.
#[utoipa::path(post, path = "/api/v1/cluster/queues/suspend", tag = "cluster", params(crate::openapi::BulkQuery),
    responses((status = 200, body = api::ClusterAction), Errors))]
async fn cluster_suspend(
    State(s): State<Arc<AdminState>>,
    axum::Extension(Origin(origin)): axum::Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::ClusterAction>, ApiError> {
    put_action(&s, "suspend", q, &origin).await
}

/// Resume-Queue on every node: each node resumes the suspended queues the filter selects, once.
#[utoipa::path(post, path = "/api/v1/cluster/queues/resume", tag = "cluster", params(crate::openapi::BulkQuery),
    responses((status = 200, body = api::ClusterAction), Errors))]
async fn cluster_resume(
    State(s): State<Arc<AdminState>>,
    axum::Extension(Origin(origin)): axum::Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::ClusterAction>, ApiError> {
    put_action(&s, "resume", q, &origin).await
}

async fn put_action(
    s: &AdminState,
    action: &str,
    q: HashMap<String, String>,
    origin: &str,
) -> Result<Json<api::ClusterAction>, ApiError> {
    let c = cluster(s)?;
    let q = query::keys(q, &["filter"])?;
    // Checked here, so that no node is handed a filter it cannot read.
    if query::filter(&q, query::QUEUE_PROPERTIES)?.is_none() {
        return Err(bad_request("a cluster-wide action needs a filter, e.g. filter=NextHopDomain -eq 'example.com'"));
    }
    let filter = q.get("filter").map(|f| f.trim().to_owned()).unwrap_or_default();
    Ok(Json(c.put_action(action, &filter, origin).await.map_err(unavailable)?))
}

/// Drains this node: `/health` answers 503, new SMTP sessions get `421 4.3.2`, queued mail is delivered
/// until the deadline; then what is left is released for peers to adopt from its shadow copies.
#[utoipa::path(post, path = "/api/v1/cluster/drain", tag = "cluster",
    request_body(content = Option<api::DrainRequest>),
    responses((status = 200, body = api::ClusterStatus), Errors))]
async fn cluster_drain(
    State(s): State<Arc<AdminState>>,
    body: Option<Json<api::DrainRequest>>,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    let c = cluster(&s)?;
    let deadline = body.and_then(|Json(b)| b.deadline).unwrap_or_else(|| DEFAULT_DRAIN_DEADLINE.to_owned());
    let deadline = sluice_config::parse_duration(&deadline)
        .map_err(|why| bad_request(format!("deadline: {why}; e.g. \"30m\" or \"1h\"")))?;
    c.drain(&s.transport, deadline);
    Ok(Json(c.status(&s.transport)))
}

/// Applies the cluster-wide actions on this node whenever one is announced, and at every heartbeat.
pub async fn reconcile(state: AdminState, cluster: Cluster, shutdown: CancellationToken) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let watcher = cluster.clone();
    tokio::spawn({
        let (shutdown, changed) = (shutdown.clone(), changed.clone());
        async move { watcher.watch_actions(shutdown, changed).await }
    });
    let mut resumed: HashSet<u64> = HashSet::new();
    loop {
        match cluster.actions().await {
            Ok(actions) => {
                for action in actions {
                    apply(&state, &action, &mut resumed).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the cluster's actions"),
        }
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(cluster.heartbeat_interval()) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One action on this node's queues.
async fn apply(state: &AdminState, action: &api::ClusterAction, resumed: &mut HashSet<u64>) {
    let q = HashMap::from([("filter".to_owned(), action.filter.clone())]);
    let Ok(queues) = crate::select_from(state.transport.queues(), &q) else {
        tracing::warn!(filter = action.filter, "a cluster action's filter does not parse here; skipped");
        return;
    };
    let suspend = match action.action.as_str() {
        "suspend" => true,
        "resume" if resumed.insert(action.id) => false,
        _ => return,
    };
    let ids: Vec<String> = queues
        .into_iter()
        .filter(|q| (q.status == "Suspended") != suspend && !q.identity.ends_with("\\Poison"))
        .map(|q| q.identity)
        .collect();
    if ids.is_empty() {
        return;
    }
    let origin = format!("cluster action {} ({})", action.id, action.origin);
    let done = if suspend {
        state.transport.suspend_queues(&ids, &origin).await
    } else {
        state.transport.resume_queues(&ids, &origin).await
    };
    match done {
        Ok(_) => {
            tracing::info!(action = action.action, queues = ids.len(), filter = action.filter, "cluster action applied")
        }
        Err(e) => {
            tracing::warn!(error = %e, filter = action.filter, "cluster action not applied; tried again at the next heartbeat")
        }
    }
}

/// How long a proxied request may take.
const PROXY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Set on a proxied request, so that it is never proxied again.
const PROXIED: &str = "x-sluice-proxied";
/// The largest request body taken for a proxied request, and answer given back.
const PROXY_MAX_BODY: usize = 64 << 20;

/// Sends a request about one message held by another node (`/api/v1/messages/<node>\<queue>\<mid>...`) to
/// that node's admin API (its heartbeat's `admin_url`, over `http://`) and answers with its answer; gives
/// any other request back. The caller's `Authorization` goes along: the nodes share the admin token.
pub(crate) async fn proxy(
    s: &AdminState,
    req: axum::extract::Request,
) -> Result<axum::response::Response, axum::extract::Request> {
    use axum::response::IntoResponse;
    let Some(c) = s.cluster.as_ref() else { return Err(req) };
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/api/v1/messages/") else { return Err(req) };
    if req.headers().contains_key(PROXIED) {
        return Err(req);
    }
    let identity = percent_decode(rest.split('/').next().unwrap_or(""));
    let server = identity.replace('/', "\\");
    let Some((server, _)) = server.split_once('\\') else { return Err(req) };
    if server.eq_ignore_ascii_case(s.transport.server_name()) || server == "*" {
        return Err(req);
    }
    let node = match c.nodes().await {
        Ok(nodes) => nodes.into_iter().find(|n| n.node.eq_ignore_ascii_case(server)),
        Err(e) => return Ok(unavailable(e).into_response()),
    };
    let Some(node) = node else { return Err(req) };
    if node.state == "dead" {
        let why =
            format!("message {identity:?} is on node {}, which is dead; its mail is adopted by the others", node.node);
        return Ok(ApiError::new(StatusCode::BAD_GATEWAY, why).into_response());
    }
    Ok(match tokio::time::timeout(PROXY_TIMEOUT, forward(&node.admin_url, req)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => ApiError::new(StatusCode::BAD_GATEWAY, format!("node {}: {why}", node.node)).into_response(),
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("node {} did not answer within {} s", node.node, PROXY_TIMEOUT.as_secs()),
        )
        .into_response(),
    })
}

/// One HTTP/1.1 request to a peer's admin API, `Connection: close`, read to the end.
async fn forward(base: &str, req: axum::extract::Request) -> Result<axum::response::Response, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(authority) = base.strip_prefix("http://") else {
        return Err(format!("its admin URL {base:?} is not http:// (requests are proxied over plain HTTP only)"));
    };
    let authority = authority.split('/').next().unwrap_or(authority);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, PROXY_MAX_BODY).await.map_err(|e| format!("reading the request: {e}"))?;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head =
        format!("{} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n{PROXIED}: 1\r\n", parts.method);
    for name in [axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    if let Some(v) = parts.headers.get("x-sluice-request").and_then(|v| v.to_str().ok()) {
        head.push_str(&format!("X-Sluice-Request: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut stream =
        tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(&body).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    (&mut stream).take(PROXY_MAX_BODY as u64).read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    parse_answer(&answer).ok_or_else(|| "its answer is not HTTP".to_owned())
}

/// A peer's whole answer (status line, head, body) as a response: status, content type and body kept.
fn parse_answer(answer: &[u8]) -> Option<axum::response::Response> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_owned()),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let raw = &answer[end + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).ok()?;
    if let Some(t) = content_type.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, t);
    }
    Some(response)
}

/// A chunked body's data.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&raw[..line_end]).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// `%5C` and the like decoded (a path segment); invalid escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_answer_is_read_plain_or_chunked() {
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let r = parse_answer(plain).unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[axum::http::header::CONTENT_TYPE], "application/json");
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"5\r\nab").is_none(), "a truncated chunk is not an answer");
        assert!(parse_answer(b"garbage").is_none());
    }

    #[test]
    fn identities_in_paths_are_percent_decoded() {
        assert_eq!(percent_decode("mx2%5C16%5C42"), "mx2\\16\\42");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
