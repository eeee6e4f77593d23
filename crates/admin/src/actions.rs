//! Queue and message actions: Suspend-, Resume-, Retry-Queue and Get-, Suspend-, Resume-, Remove-,
//! Export-Message, on one identity in the path or on a list in the body (`{"identities": [...]}`).
//!
//! One identity answers with the resulting object (a queue) or the copies acted on; a list answers with
//! `{"matched", "changed", "identities", "items"}`. A list is all or nothing: an unknown identity is a 404
//! and one in the wrong state a 409, each named in `detail`, and nothing is changed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_api_types as api;
use sluice_transport::ActionError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::{BulkQuery, BulkRemoveQuery, BulkRetryQuery, Errors, IdentityPath};
use crate::{AdminState, ApiError, Origin, bad_request};

/// The routes of the actions, with their part of the OpenAPI document.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(suspend_queues))
        .routes(routes!(resume_queues))
        .routes(routes!(retry_queues))
        .routes(routes!(suspend_queue))
        .routes(routes!(resume_queue))
        .routes(routes!(retry_queue))
        .routes(routes!(suspend_messages))
        .routes(routes!(resume_messages))
        .routes(routes!(remove_messages))
        .routes(routes!(get_message, remove_message))
        .routes(routes!(suspend_message))
        .routes(routes!(resume_message))
        .routes(routes!(export_message))
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> ApiError {
        let (status, detail) = match &e {
            ActionError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            ActionError::NotFound { identities, .. } => {
                (StatusCode::NOT_FOUND, Some(serde_json::json!({ "identities": identities })))
            }
            ActionError::WrongState(wrong) => {
                let each: Vec<serde_json::Value> =
                    wrong.iter().map(|(id, why)| serde_json::json!({ "identity": id, "error": why })).collect();
                (StatusCode::CONFLICT, Some(serde_json::Value::Array(each)))
            }
            ActionError::Stopped(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        ApiError(status, e.to_string(), detail)
    }
}

/// `true`/`false` (or `1`/`0`) in a query, with its default when absent.
fn flag(name: &str, value: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match value {
        None | Some("") => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(bad_request(format!("{name} must be true or false, not {other:?}"))),
    }
}

/// The body of a list action. An unknown field (a misspelt option) is a 400, never ignored.
fn list_body(
    body: Result<Json<api::ActionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<api::ActionRequest, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| bad_request(format!("the body must be {{\"identities\": [...]}}: {}", e.body_text())))
}

/// The one queue of a single-queue action.
fn one_queue(r: api::ActionResult<api::Queue>) -> Result<Json<api::Queue>, ApiError> {
    r.items.into_iter().next().map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "the queue is gone"))
}

/// Suspend-Queue: no new connection; deliveries in flight finish; survives a restart.
#[utoipa::path(post, path = "/api/v1/queues/{identity}/suspend", tag = "queues", params(IdentityPath),
    responses((status = 200, description = "The queue after the action", body = api::Queue), Errors))]
async fn suspend_queue(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
) -> Result<Json<api::Queue>, ApiError> {
    one_queue(s.transport.suspend_queues(&[identity], &origin).await?)
}

/// Resume-Queue: `409` unless suspended.
#[utoipa::path(post, path = "/api/v1/queues/{identity}/resume", tag = "queues", params(IdentityPath),
    responses((status = 200, description = "The queue after the action", body = api::Queue), Errors))]
async fn resume_queue(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
) -> Result<Json<api::Queue>, ApiError> {
    one_queue(s.transport.resume_queues(&[identity], &origin).await?)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RetryQuery {
    /// Send the queue's waiting messages back to the categorizer instead (default false).
    #[param(value_type = Option<bool>)]
    resubmit: Option<String>,
}

/// Retry-Queue: a queue in Retry connects now; with `resubmit=true` its waiting messages go back to the
/// categorizer.
#[utoipa::path(post, path = "/api/v1/queues/{identity}/retry", tag = "queues", params(IdentityPath, RetryQuery),
    responses((status = 200, description = "The queue after the action", body = api::Queue), Errors))]
async fn retry_queue(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
    Query(q): Query<RetryQuery>,
) -> Result<Json<api::Queue>, ApiError> {
    let resubmit = flag("resubmit", q.resubmit.as_deref(), false)?;
    one_queue(s.transport.retry_queues(&[identity], resubmit, &origin).await?)
}

type ListBody = Result<Json<api::ActionRequest>, axum::extract::rejection::JsonRejection>;

/// What a list action acts on: the identities in its body, or, with `filter=` in the query (the bulk form),
/// every queue or message copy the filter selects now; with the action's options from either.
pub(crate) struct ListAction {
    pub(crate) request: api::ActionRequest,
    pub(crate) by_filter: bool,
}

async fn list_action(
    s: &Arc<AdminState>,
    query: HashMap<String, String>,
    body: ListBody,
    option: &str,
    messages: bool,
) -> Result<ListAction, ApiError> {
    let allowed: Vec<&str> = ["filter", option].into_iter().filter(|k| !k.is_empty()).collect();
    let query = crate::query::keys(query, &allowed)?;
    let from_query = match query.get(option) {
        Some(v) => Some(flag(option, Some(v), false)?),
        None => None,
    };
    let Some(_) = query.get("filter") else {
        let mut request = list_body(body)?;
        if let Some(v) = from_query {
            match option {
                "with_ndr" => request.with_ndr = request.with_ndr.or(Some(v)),
                _ => request.resubmit = request.resubmit.or(Some(v)),
            }
        }
        return Ok(ListAction { request, by_filter: false });
    };
    // The bulk form: the body, if any, may only carry the option.
    let mut request = match body {
        Ok(Json(b)) if !b.identities.is_empty() => {
            return Err(bad_request("give either identities in the body or a filter in the query, not both"));
        }
        Ok(Json(b)) => b,
        Err(_) => api::ActionRequest::default(),
    };
    let only_filter: HashMap<String, String> =
        query.iter().filter(|(k, _)| k.as_str() == "filter").map(|(k, v)| (k.clone(), v.clone())).collect();
    request.identities = if messages {
        // A filter over every queued message: on a blocking thread, as the listing.
        let s = s.clone();
        crate::blocking(move || crate::select_messages(&s, &only_filter))
            .await??
            .iter()
            .map(|m| m.identity().to_owned())
            .collect()
    } else {
        crate::select_queues(s, &only_filter)?.into_iter().map(|q| q.identity).collect()
    };
    match option {
        "with_ndr" => request.with_ndr = request.with_ndr.or(from_query),
        _ => request.resubmit = request.resubmit.or(from_query),
    }
    Ok(ListAction { request, by_filter: true })
}

/// Runs a list action. By filter, nothing matching is an empty answer (not an error), and a copy that left
/// its queue between the selection and the action (delivered meanwhile) is left out rather than failing the
/// whole action.
pub(crate) async fn run_list<T, F, Fut>(list: ListAction, act: F) -> Result<Json<api::ActionResult<T>>, ApiError>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<api::ActionResult<T>, ActionError>>,
{
    let mut identities = list.request.identities;
    if list.by_filter && identities.is_empty() {
        return Ok(Json(api::ActionResult { matched: 0, changed: 0, identities: Vec::new(), items: Vec::new() }));
    }
    for _ in 0..3 {
        match act(identities.clone()).await {
            Err(ActionError::NotFound { identities: gone, .. }) if list.by_filter => {
                identities.retain(|i| !gone.contains(i));
                if identities.is_empty() {
                    let empty = api::ActionResult { matched: 0, changed: 0, identities: Vec::new(), items: Vec::new() };
                    return Ok(Json(empty));
                }
            }
            other => return Ok(Json(other?)),
        }
    }
    Ok(Json(act(identities).await?))
}

/// Suspend-Queue on a list of queues, or on those a filter selects.
#[utoipa::path(post, path = "/api/v1/queues/suspend", tag = "queues", params(BulkQuery),
    request_body(content = Option<api::ActionRequest>, description = "The identities to act on (without `filter`), \
        or only the action's options (with it)"),
    responses((status = 200, body = api::ActionResult<api::Queue>), Errors))]
async fn suspend_queues(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
    body: ListBody,
) -> Result<Json<api::ActionResult<api::Queue>>, ApiError> {
    let list = list_action(&s, q, body, "", false).await?;
    run_list(list, |ids| {
        let (s, origin) = (s.clone(), origin.clone());
        async move { s.transport.suspend_queues(&ids, &origin).await }
    })
    .await
}

/// Resume-Queue on a list of queues, or on those a filter selects.
#[utoipa::path(post, path = "/api/v1/queues/resume", tag = "queues", params(BulkQuery),
    request_body(content = Option<api::ActionRequest>, description = "The identities to act on (without `filter`), \
        or only the action's options (with it)"),
    responses((status = 200, body = api::ActionResult<api::Queue>), Errors))]
async fn resume_queues(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
    body: ListBody,
) -> Result<Json<api::ActionResult<api::Queue>>, ApiError> {
    let list = list_action(&s, q, body, "", false).await?;
    run_list(list, |ids| {
        let (s, origin) = (s.clone(), origin.clone());
        async move { s.transport.resume_queues(&ids, &origin).await }
    })
    .await
}

/// Retry-Queue on a list of queues, or on those a filter selects.
#[utoipa::path(post, path = "/api/v1/queues/retry", tag = "queues", params(BulkRetryQuery),
    request_body(content = Option<api::ActionRequest>, description = "The identities to act on (without `filter`), \
        or only the action's options (with it)"),
    responses((status = 200, body = api::ActionResult<api::Queue>), Errors))]
async fn retry_queues(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
    body: ListBody,
) -> Result<Json<api::ActionResult<api::Queue>>, ApiError> {
    let list = list_action(&s, q, body, "resubmit", false).await?;
    let resubmit = list.request.resubmit.unwrap_or(false);
    run_list(list, |ids| {
        let (s, origin) = (s.clone(), origin.clone());
        async move { s.transport.retry_queues(&ids, resubmit, &origin).await }
    })
    .await
}

/// `GET /api/v1/messages/{identity}`: the copy it names, or (`<server>\*\<mid>`, a bare MID) the list of
/// every copy of the message.
#[utoipa::path(get, path = "/api/v1/messages/{identity}", tag = "messages", params(IdentityPath),
    responses((status = 200, description = "The copy; for every copy of a MID, `{\"items\": [...]}` of them",
        body = api::Message), Errors))]
async fn get_message(State(s): State<Arc<AdminState>>, Path(identity): Path<String>) -> Result<Response, ApiError> {
    let (copies, every) = s.transport.message(&identity)?;
    if every {
        return Ok(Json(api::List { items: copies, next: None }).into_response());
    }
    let one = copies.into_iter().next().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such message"))?;
    Ok(Json(one).into_response())
}

/// Suspend-Message: nothing delivers it until it is resumed.
#[utoipa::path(post, path = "/api/v1/messages/{identity}/suspend", tag = "messages", params(IdentityPath),
    responses((status = 200, body = api::ActionResult<api::Message>), Errors))]
async fn suspend_message(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
) -> Result<Json<api::ActionResult<api::Message>>, ApiError> {
    Ok(Json(s.transport.suspend_messages(&[identity], &origin).await?))
}

/// Resume-Message; a copy in Poison goes back to the categorizer.
#[utoipa::path(post, path = "/api/v1/messages/{identity}/resume", tag = "messages", params(IdentityPath),
    responses((status = 200, body = api::ActionResult<api::Message>), Errors))]
async fn resume_message(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
) -> Result<Json<api::ActionResult<api::Message>>, ApiError> {
    Ok(Json(s.transport.resume_messages(&[identity], &origin).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RemoveQuery {
    /// Send the sender a non-delivery report (default true).
    #[param(value_type = Option<bool>)]
    with_ndr: Option<String>,
}

/// `DELETE /api/v1/messages/{identity}?with_ndr=true`: with a notice to the sender unless `with_ndr=false`.
#[utoipa::path(delete, path = "/api/v1/messages/{identity}", tag = "messages", params(IdentityPath, RemoveQuery),
    responses((status = 200, body = api::ActionResult<api::Message>), Errors))]
async fn remove_message(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<api::ActionResult<api::Message>>, ApiError> {
    let with_ndr = flag("with_ndr", q.with_ndr.as_deref(), true)?;
    Ok(Json(s.transport.remove_messages(&[identity], with_ndr, &origin).await?))
}

/// Suspend-Message on a list of copies, or on those a filter selects.
#[utoipa::path(post, path = "/api/v1/messages/suspend", tag = "messages", params(BulkQuery),
    request_body(content = Option<api::ActionRequest>, description = "The identities to act on (without `filter`), \
        or only the action's options (with it)"),
    responses((status = 200, body = api::ActionResult<api::Message>), Errors))]
async fn suspend_messages(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
    body: ListBody,
) -> Result<Json<api::ActionResult<api::Message>>, ApiError> {
    let list = list_action(&s, q, body, "", true).await?;
    run_list(list, |ids| {
        let (s, origin) = (s.clone(), origin.clone());
        async move { s.transport.suspend_messages(&ids, &origin).await }
    })
    .await
}

/// Resume-Message on a list of copies, or on those a filter selects.
#[utoipa::path(post, path = "/api/v1/messages/resume", tag = "messages", params(BulkQuery),
    request_body(content = Option<api::ActionRequest>, description = "The identities to act on (without `filter`), \
        or only the action's options (with it)"),
    responses((status = 200, body = api::ActionResult<api::Message>), Errors))]
async fn resume_messages(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
    body: ListBody,
) -> Result<Json<api::ActionResult<api::Message>>, ApiError> {
    let list = list_action(&s, q, body, "", true).await?;
    run_list(list, |ids| {
        let (s, origin) = (s.clone(), origin.clone());
        async move { s.transport.resume_messages(&ids, &origin).await }
    })
    .await
}

/// Remove-Message on a list of copies, or on those a filter selects.
#[utoipa::path(post, path = "/api/v1/messages/remove", tag = "messages", params(BulkRemoveQuery),
    request_body(content = Option<api::ActionRequest>, description = "The identities to act on (without `filter`), \
        or only the action's options (with it)"),
    responses((status = 200, body = api::ActionResult<api::Message>), Errors))]
async fn remove_messages(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Query(q): Query<HashMap<String, String>>,
    body: ListBody,
) -> Result<Json<api::ActionResult<api::Message>>, ApiError> {
    let list = list_action(&s, q, body, "with_ndr", true).await?;
    let with_ndr = list.request.with_ndr.unwrap_or(true);
    run_list(list, |ids| {
        let (s, origin) = (s.clone(), origin.clone());
        async move { s.transport.remove_messages(&ids, with_ndr, &origin).await }
    })
    .await
}

/// A piece of an exported message: what one read of the queue database gives.
const EXPORT_CHUNK: usize = 256 * 1024;

/// `GET /api/v1/messages/{identity}/export`: the message as `message/rfc822`, read from the queue
/// database a piece at a time (on a blocking thread) while it is sent, never held whole.
#[utoipa::path(get, path = "/api/v1/messages/{identity}/export", tag = "messages", params(IdentityPath),
    responses((status = 200, description = "The message as an .eml file", content_type = "message/rfc822",
        body = String), Errors))]
pub(crate) async fn export_message(
    State(s): State<Arc<AdminState>>,
    Path(identity): Path<String>,
) -> Result<Response, ApiError> {
    let (mid, source) = s.transport.export(&identity)?;
    let len = source.len();
    let chunks = source.chunks();
    let stream = futures_util::stream::unfold(Some(chunks), move |state| async move {
        let mut chunks = state?;
        let read = tokio::task::spawn_blocking(move || {
            let r = chunks.next_chunk(EXPORT_CHUNK);
            (r, chunks)
        })
        .await;
        match read {
            Ok((Ok(Some(bytes)), chunks)) => Some((Ok::<_, std::io::Error>(bytes), Some(chunks))),
            Ok((Ok(None), _)) => None,
            Ok((Err(e), _)) => {
                tracing::error!(mid, error = %e, "cannot export a message body");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{mid}.eml\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
