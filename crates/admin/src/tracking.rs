//! `GET /api/v1/tracking` (Get-MessageTrackingLog): the message tracking events that match a query, oldest
//! first, a page at a time. The search (`sluice_transport::tracking::search`) streams the daily files on a
//! blocking thread.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use sluice_api_types as api;
use sluice_transport::EventId;
use sluice_transport::tracking::search::{Bookmark, Criteria};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AdminState, ApiError, bad_request};

/// Events per page unless `result_size` says otherwise.
const DEFAULT_RESULT_SIZE: usize = 1000;
/// The most events one page holds.
pub(crate) const MAX_RESULT_SIZE: usize = 10_000;

const KEYS: &[&str] =
    &["sender", "recipient", "internet_message_id", "mid", "event_id", "start", "end", "result_size", "bookmark"];

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(tracking))
}

/// The query of `GET /api/v1/tracking`; any other key is a 400. Every criterion given must match.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document only.
pub(crate) struct TrackingQuery {
    /// The envelope sender, ASCII case-insensitive; `*` stands for any characters (`*@example.com`).
    sender: Option<String>,
    /// One of the event's recipients, as `sender`.
    recipient: Option<String>,
    /// The Message-ID, with or without angle brackets.
    internet_message_id: Option<String>,
    /// The message's MID.
    mid: Option<u64>,
    /// One event name: RECEIVE, SUBMIT, ROUTE, DELIVER, DEFER, FAIL, DSN, SUSPEND, RESUME, REMOVE, RESUBMIT,
    /// POISONMESSAGE, AUDIT (any case).
    event_id: Option<String>,
    /// Events at or after this time (RFC 3339).
    start: Option<String>,
    /// Events at or before this time (RFC 3339).
    end: Option<String>,
    /// Events per page (1..10000; default 1000).
    result_size: Option<u32>,
    /// The `next` of the previous page (asked with the same criteria).
    bookmark: Option<String>,
}

/// Get-MessageTrackingLog: the tracking events that match every criterion given, oldest first. A page ends
/// after `result_size` events; `next` is then the bookmark of the next page (`<date>:<offset>`), else null.
/// Lines of the files that do not parse are skipped (and logged).
#[utoipa::path(get, path = "/api/v1/tracking", tag = "tracking", params(TrackingQuery),
    responses((status = 200, body = api::List<api::TrackingEvent>), crate::openapi::Errors))]
async fn tracking(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::TrackingEvent>>, ApiError> {
    let q = crate::query::keys(q, KEYS)?;
    let (criteria, from, limit) = parse(&q)?;
    let transport = s.transport.clone();
    let found =
        crate::blocking(move || transport.tracking().search(&criteria, from.as_ref(), limit)).await?.map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the tracking log cannot be read: {e}"))
        })?;
    if found.skipped > 0 {
        tracing::warn!(lines = found.skipped, "tracking log lines that do not parse were skipped by a search");
    }
    Ok(Json(api::List { items: found.events, next: found.next.map(|b| b.to_string()) }))
}

/// The criteria, the bookmark and the page size a query asks for.
fn parse(q: &HashMap<String, String>) -> Result<(Criteria, Option<Bookmark>, usize), ApiError> {
    let get = |key: &str| q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let time = |key: &str| -> Result<Option<i64>, ApiError> {
        get(key)
            .map(|v| {
                sluice_transport::alerts::parse_time(v).ok_or_else(|| {
                    bad_request(format!("{key}: {v:?} is not an RFC 3339 time such as 2026-12-01T15:00:00Z"))
                })
            })
            .transpose()
    };
    let event_id = get("event_id")
        .map(|v| {
            EventId::ALL.iter().copied().find(|id| id.as_str().eq_ignore_ascii_case(v)).ok_or_else(|| {
                let names: Vec<&str> = EventId::ALL.iter().map(|id| id.as_str()).collect();
                bad_request(format!("event_id: {v:?} is not one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let mid = get("mid")
        .map(|v| v.parse::<u64>().map_err(|_| bad_request(format!("mid: {v:?} is not a MID (a number)"))))
        .transpose()?;
    let criteria = Criteria {
        sender: get("sender").map(str::to_owned),
        recipient: get("recipient").map(str::to_owned),
        internet_message_id: get("internet_message_id").map(str::to_owned),
        mid,
        event_id,
        start_ms: time("start")?,
        end_ms: time("end")?,
    };
    if let (Some(s), Some(e)) = (criteria.start_ms, criteria.end_ms)
        && s > e
    {
        return Err(bad_request("start is after end"));
    }
    let limit = match get("result_size") {
        None => DEFAULT_RESULT_SIZE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULT_SIZE).contains(n))
            .ok_or_else(|| bad_request(format!("result_size must be 1..{MAX_RESULT_SIZE}, not {v:?}")))?,
    };
    let from = get("bookmark")
        .map(|b| Bookmark::parse(b).ok_or_else(|| bad_request(format!("bookmark {b:?} is not one we gave"))))
        .transpose()?;
    Ok((criteria, from, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_query_becomes_criteria_or_a_400_naming_what_is_wrong() {
        let (c, from, limit) = parse(&query(&[
            ("sender", "*@Example.com"),
            ("event_id", "deliver"),
            ("mid", "42"),
            ("start", "2026-12-01T00:00:00Z"),
            ("result_size", "5"),
            ("bookmark", "2026-12-01:100"),
        ]))
        .unwrap();
        assert_eq!(c.sender.as_deref(), Some("*@Example.com"));
        assert_eq!(c.event_id, Some(EventId::Deliver));
        assert_eq!(c.mid, Some(42));
        assert!(c.start_ms.is_some() && c.end_ms.is_none());
        assert_eq!((from.map(|b| b.offset), limit), (Some(100), 5));
        assert_eq!(parse(&query(&[])).unwrap().2, DEFAULT_RESULT_SIZE);
        for (pairs, named) in [
            (&[("event_id", "DELIVERED")][..], "event_id"),
            (&[("start", "yesterday")][..], "start"),
            (&[("end", "2026-12-01")][..], "end"),
            (&[("mid", "x")][..], "mid"),
            (&[("result_size", "0")][..], "result_size"),
            (&[("result_size", "10001")][..], "result_size"),
            (&[("bookmark", "12")][..], "bookmark"),
            (&[("start", "2026-12-02T00:00:00Z"), ("end", "2026-12-01T00:00:00Z")][..], "start"),
        ] {
            let e = parse(&query(pairs)).err().unwrap_or_else(|| panic!("{pairs:?} accepted"));
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.contains(named), "{pairs:?}: {}", e.1);
        }
    }
}
