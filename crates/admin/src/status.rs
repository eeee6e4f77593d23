//! `GET /api/v1/status` (ESA's `status detail`) and `POST /api/v1/counters/reset` (ESA's `resetcounters`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use sluice_api_types as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AdminState, ApiError};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(status)).routes(routes!(reset))
}

/// System status, counters, gauges, rates and back pressure (ESA's `status detail`).
///
/// The status walks the queued messages under the queues' lock: on a blocking thread, so that a large queue
/// does not hold up the runtime's other tasks meanwhile.
#[utoipa::path(get, path = "/api/v1/status", tag = "server",
    responses((status = 200, body = api::Status), crate::openapi::Errors))]
async fn status(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::Status>, ApiError> {
    no_query(&q)?;
    let transport = s.transport.clone();
    let cluster = s.cluster.as_ref().map(|c| c.status(&s.transport));
    tokio::task::spawn_blocking(move || api::Status { cluster, ..transport.status() })
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the status could not be read: {e}")))
}

/// Sets the `reset` column of every counter to 0 (ESA's `resetcounters`); the next save keeps it across a
/// restart.
#[utoipa::path(post, path = "/api/v1/counters/reset", tag = "server",
    responses((status = 200, body = api::CountersReset), crate::openapi::Errors))]
async fn reset(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::CountersReset>, ApiError> {
    no_query(&q)?;
    Ok(Json(api::CountersReset { last_counter_reset: s.transport.reset_counters() }))
}

/// Refuses any query parameter (a 400 naming them): an endpoint never ignores what it was asked.
pub(crate) fn no_query(q: &HashMap<String, String>) -> Result<(), ApiError> {
    if q.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<String> = q.keys().map(|k| format!("{k:?}")).collect();
    keys.sort();
    Err(crate::bad_request(format!("unknown query parameter {}: this endpoint takes none", keys.join(", "))))
}
