//! Audit events: every state-changing request to the API (`POST`, `PATCH`, `DELETE`), answered or refused,
//! is an `AUDIT` event in the message tracking log — who (the peer, and whether the bearer token or the web viewer's
//! session was given),
//! what (method, path and query), how many objects it matched and changed when its answer says, the status,
//! and when.
//!
//! The middleware wraps the guard, so that a request the guard refuses (`401`, `403`, `400`) is recorded
//! as well.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_transport::{Audit, Event, EventId};

use crate::{AdminState, origin_of, token_given};

/// The counts an answer may carry (`ActionResult`); other fields are skipped unread.
#[derive(Deserialize)]
struct Counts {
    matched: Option<u64>,
    changed: Option<u64>,
}

/// Whether a request with `method` changes something and is audited.
fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: runs the request and writes its `AUDIT` event.
pub(crate) async fn audit(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if !is_state_changing(req.method()) {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let path = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    // The viewer's session cookie stands for the token (it is made from it).
    let token = token_given(&s, req.headers()) || crate::viewer::signed_in(&s, req.headers());
    let source = origin_of(&req);
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let (response, counts) = counts(response).await;
    let mut event = Event::new(EventId::Audit, 0);
    event.source = Some(source);
    event.audit = Some(Audit {
        method,
        path,
        token,
        status,
        matched: counts.as_ref().and_then(|c| c.matched),
        changed: counts.as_ref().and_then(|c| c.changed),
    });
    s.transport.track(event);
    response
}

/// The `matched`/`changed` of a JSON answer, and the answer itself, unchanged. The API's JSON answers are
/// built in memory whole, so reading them again costs a copy of the bytes at most.
async fn counts(response: Response) -> (Response, Option<Counts>) {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            let counts = serde_json::from_slice::<Counts>(&bytes).ok();
            (Response::from_parts(parts, Body::from(bytes)), counts)
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin API: an answer could not be read for its audit event");
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_state_changing_methods_are_audited() {
        for (method, audited) in [
            (Method::GET, false),
            (Method::HEAD, false),
            (Method::OPTIONS, false),
            (Method::POST, true),
            (Method::PATCH, true),
            (Method::DELETE, true),
            (Method::PUT, true),
        ] {
            assert_eq!(is_state_changing(&method), audited, "{method}");
        }
    }
}
