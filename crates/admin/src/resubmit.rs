//! Safety Net resubmit requests: `POST/GET/DELETE /api/v1/resubmit-requests`, `GET/PATCH/DELETE
//! .../{id}` (Add-ResubmitRequest, Get-, Set- and Remove-ResubmitRequest). The transport keeps and runs
//! them; this file maps its answers to HTTP: bad input 400, an unknown id 404, a change the request's state
//! refuses 409, a request that could not be saved 500.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use sluice_api_types as api;
use sluice_transport::ResubmitError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::{Errors, IdPath};
use crate::{AdminState, ApiError, Origin, bad_request};

/// The routes of resubmit requests, with their part of the OpenAPI document.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(list, add, remove_all)).routes(routes!(one, change, remove))
}

impl From<ResubmitError> for ApiError {
    fn from(e: ResubmitError) -> ApiError {
        let status = match &e {
            ResubmitError::Invalid(_) => StatusCode::BAD_REQUEST,
            ResubmitError::NotFound(_) => StatusCode::NOT_FOUND,
            ResubmitError::WrongState { .. } => StatusCode::CONFLICT,
            ResubmitError::Save { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A JSON body the type refuses (a missing field, an unknown one, a wrong type) is bad input, 400, as
/// every other error of the API says it (axum's default would be 422 in plain text).
fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(v)| v).map_err(|e| bad_request(e.body_text()))
}

/// An id in the path: a number, else no such request.
fn id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no resubmit request {raw:?}")))
}

/// Add-ResubmitRequest: resubmits the Safety Net copies delivered in the time window.
#[utoipa::path(post, path = "/api/v1/resubmit-requests", tag = "resubmit", request_body = api::NewResubmitRequest,
    responses((status = 201, body = api::ResubmitRequest), Errors))]
async fn add(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    json: Result<Json<api::NewResubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<api::ResubmitRequest>), ApiError> {
    let new = body(json)?;
    let added = s.transport.add_resubmit_request(&new, &origin).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Get-ResubmitRequest: every request.
#[utoipa::path(get, path = "/api/v1/resubmit-requests", tag = "resubmit",
    responses((status = 200, body = api::List<api::ResubmitRequest>), Errors))]
async fn list(State(s): State<Arc<AdminState>>) -> Json<api::List<api::ResubmitRequest>> {
    Json(api::List { items: s.transport.resubmit_requests(), next: None })
}

/// Get-ResubmitRequest: one request.
#[utoipa::path(get, path = "/api/v1/resubmit-requests/{id}", tag = "resubmit", params(IdPath),
    responses((status = 200, body = api::ResubmitRequest), Errors))]
async fn one(
    State(s): State<Arc<AdminState>>,
    Path(raw): Path<String>,
) -> Result<Json<api::ResubmitRequest>, ApiError> {
    Ok(Json(s.transport.resubmit_request(id(&raw)?)?))
}

/// Set-ResubmitRequest: enables or disables a request.
#[utoipa::path(patch, path = "/api/v1/resubmit-requests/{id}", tag = "resubmit", params(IdPath),
    request_body = api::ResubmitRequestChange,
    responses((status = 200, body = api::ResubmitRequest), Errors))]
async fn change(
    State(s): State<Arc<AdminState>>,
    Path(raw): Path<String>,
    json: Result<Json<api::ResubmitRequestChange>, JsonRejection>,
) -> Result<Json<api::ResubmitRequest>, ApiError> {
    let id = id(&raw)?;
    let change = body(json)?;
    Ok(Json(s.transport.set_resubmit_request_enabled(id, change.enabled).await?))
}

/// Remove-ResubmitRequest: one request.
#[utoipa::path(delete, path = "/api/v1/resubmit-requests/{id}", tag = "resubmit", params(IdPath),
    responses((status = 200, body = api::ResubmitRequest), Errors))]
async fn remove(
    State(s): State<Arc<AdminState>>,
    Path(raw): Path<String>,
) -> Result<Json<api::ResubmitRequest>, ApiError> {
    Ok(Json(s.transport.remove_resubmit_request(id(&raw)?).await?))
}

/// Removes every request; answers the list of those removed.
#[utoipa::path(delete, path = "/api/v1/resubmit-requests", tag = "resubmit",
    responses((status = 200, body = api::List<api::ResubmitRequest>), Errors))]
async fn remove_all(State(s): State<Arc<AdminState>>) -> Result<Json<api::List<api::ResubmitRequest>>, ApiError> {
    Ok(Json(api::List { items: s.transport.remove_resubmit_requests().await?, next: None }))
}
