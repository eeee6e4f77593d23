//! `GET /api/v1/tophosts` and `GET /api/v1/hosts/{domain}` (ESA's `tophosts` and `hoststatus`): per next hop
//! domain, the recipients queued and the connections now, and the outcomes since start
//! (`sluice_transport`'s `hosts.rs` says how they are counted and how long a domain is remembered).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sluice_api_types as api;
use sluice_transport::{HostSort, sort_hosts};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AdminState, ApiError, bad_request};

/// Rows of `tophosts` unless `result_size` says otherwise.
const DEFAULT_RESULT_SIZE: usize = 20;
/// The most rows `tophosts` gives.
const MAX_RESULT_SIZE: usize = 10_000;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(tophosts)).routes(routes!(host))
}

/// The query of `GET /api/v1/tophosts`; any other key is a 400.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document only.
pub(crate) struct TopHostsQuery {
    /// The column to sort by, descending: `active` (default), `connections`, `delivered`, `soft_bounced`,
    /// `hard_bounced`.
    sort: Option<String>,
    /// How many domains (1..10000; default 20).
    result_size: Option<u32>,
}

/// A destination domain in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct DomainPath {
    /// The next hop domain (any case).
    domain: String,
}

/// ESA's `tophosts`: the destination domains with the most of `sort`, descending (ties by domain). Every
/// domain with a delivery queue now, or with outcomes counted since start, is a candidate. `next` is always
/// null: the list is the top `result_size`.
#[utoipa::path(get, path = "/api/v1/tophosts", tag = "hosts", params(TopHostsQuery),
    responses((status = 200, body = api::List<api::Host>), crate::openapi::Errors))]
async fn tophosts(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::Host>>, ApiError> {
    let q = crate::query::keys(q, &["sort", "result_size"])?;
    let (sort, size) = parse(&q)?;
    let transport = s.transport.clone();
    let mut hosts = crate::blocking(move || transport.hosts(None)).await?;
    sort_hosts(&mut hosts, sort);
    hosts.truncate(size);
    for h in &mut hosts {
        h.queues.sort_by(|a, b| a.identity.cmp(&b.identity));
    }
    Ok(Json(api::List { items: hosts, next: None }))
}

/// ESA's `hoststatus`: one destination domain. A 404 when the domain has no delivery queue and no outcome
/// was counted for it (or it was forgotten after a day idle); a domain whose queue was deleted while idle
/// still has its counters.
#[utoipa::path(get, path = "/api/v1/hosts/{domain}", tag = "hosts", params(DomainPath),
    responses((status = 200, body = api::Host), crate::openapi::Errors))]
async fn host(
    State(s): State<Arc<AdminState>>,
    Path(domain): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::Host>, ApiError> {
    crate::status::no_query(&q)?;
    let transport = s.transport.clone();
    let wanted = domain.clone();
    let hosts = crate::blocking(move || transport.hosts(Some(&wanted))).await?;
    let mut host = hosts.into_iter().next().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no delivery queue and no delivery outcome for {domain:?}"))
    })?;
    host.queues.sort_by(|a, b| a.identity.cmp(&b.identity));
    Ok(Json(host))
}

fn parse(q: &HashMap<String, String>) -> Result<(HostSort, usize), ApiError> {
    let sort = match q.get("sort").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => HostSort::Active,
        Some(v) => HostSort::parse(v).ok_or_else(|| {
            let names: Vec<&str> = HostSort::ALL.iter().map(|o| o.as_str()).collect();
            bad_request(format!("sort: {v:?} is not one of {}", names.join(", ")))
        })?,
    };
    let size = match q.get("result_size") {
        None => DEFAULT_RESULT_SIZE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULT_SIZE).contains(n))
            .ok_or_else(|| bad_request(format!("result_size must be 1..{MAX_RESULT_SIZE}, not {v:?}")))?,
    };
    Ok((sort, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_and_result_size_are_checked() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        assert_eq!(parse(&q(&[])).unwrap(), (HostSort::Active, DEFAULT_RESULT_SIZE));
        assert_eq!(parse(&q(&[("sort", "Delivered"), ("result_size", "3")])).unwrap(), (HostSort::Delivered, 3));
        for bad in [&[("sort", "bounced")][..], &[("result_size", "0")][..], &[("result_size", "x")][..]] {
            let e = parse(&q(bad)).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
