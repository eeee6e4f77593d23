//! Safety Net resubmit requests: `POST/GET/DELETE /api/v1/resubmit-requests`, `PATCH .../{id}`.

use std::sync::Arc;

use axum::Router;

use crate::AdminState;

/// The routes of resubmit requests.
pub(crate) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
}
