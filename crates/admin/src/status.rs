//! `GET /api/v1/status` (ESA's `status detail`) and `POST /api/v1/counters/reset` (ESA's `resetcounters`).

use std::sync::Arc;

use axum::extract::State;
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
async fn status(State(s): State<Arc<AdminState>>) -> Result<Json<api::Status>, ApiError> {
    let transport = s.transport.clone();
    tokio::task::spawn_blocking(move || transport.status())
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the status could not be read: {e}")))
}

/// Sets the `reset` column of every counter to 0; the next save keeps it across a restart.
async fn reset(State(s): State<Arc<AdminState>>) -> Json<api::CountersReset> {
    Json(api::CountersReset { last_counter_reset: s.transport.reset_counters() })
}
