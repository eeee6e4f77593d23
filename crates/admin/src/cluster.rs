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
