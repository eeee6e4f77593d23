//! `GET /api/v1/status` (ESA's `status detail`) and `POST /api/v1/counters/reset` (ESA's `resetcounters`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use sluice_api_types as api;

use crate::{AdminState, ApiError};

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/api/v1/status", get(status)).route("/api/v1/counters/reset", post(reset))
}

/// The status walks the queued messages under the queues' lock: on a blocking thread, so that a large queue
/// does not hold up the runtime's other tasks meanwhile.
async fn status(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::Status>, ApiError> {
    no_query(&q)?;
    let transport = s.transport.clone();
    tokio::task::spawn_blocking(move || transport.status())
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the status could not be read: {e}")))
}

/// Sets the `reset` column of every counter to 0; the next save keeps it across a restart.
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
