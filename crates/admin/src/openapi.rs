//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`, generated from the same
//! registration as the routes, so that the two cannot drift apart.
//!
//! **Adding an endpoint** (the pattern every route follows):
//! 1. Annotate the handler with `#[utoipa::path(...)]`: method, `path` (axum's `{name}` syntax), a `tag`,
//!    `params(...)` (an `IntoParams` type for the path or the query: [`IdentityPath`], [`QueueListQuery`], or
//!    one of your own), `request_body` when it takes JSON, and `responses((status = 200, body = ...),
//!    Errors)`. The handler's doc comment becomes the operation's summary and description. Types in
//!    bodies derive `utoipa::ToSchema` (in `sluice-api-types` behind its `openapi` feature:
//!    `#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]`).
//! 2. Register it with `.routes(routes!(handler))` on the `OpenApiRouter` (in `crate::routes`, or a
//!    module's own `routes()` that `crate::routes` merges) — one `routes!` per path, listing every handler
//!    of that path (`routes!(get_message, remove_message)`). Never `.route(...)`: such a route would be
//!    served but missing from the document, and the test `routes_are_registered_only_with_their_document`
//!    fails. (The web viewer's pages, `viewer.rs`, are the one exception: HTML for people, not the API.)
//! 3. Add the method and path to `ROUTES` in the tests below (the API's surface, checked against the document).
//!
//! Every operation needs the bearer token when one is configured ([`SecurityAddon`]), except
//! `GET /api/v1/health`, which says so with `security(())`.

use std::sync::{Arc, OnceLock};

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use sluice_api_types as api;

/// The document's fixed part: title, version, the bearer scheme; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice admin API",
        description = "Queues, messages, Safety Net resubmission, alerts and configuration of a sluice \
                       mail transport server. Lists are `{\"items\": [...], \"next\": ...}`; errors are \
                       `{\"error\": ..., \"detail\": ...}` with a 4xx or 5xx status. State-changing requests \
                       need a JSON body or the header `X-Sluice-Request: 1`.",
        license(name = "see the repository")
    ),
    modifiers(&SecurityAddon),
    security(("bearer" = [])),
    tags(
        (name = "server", description = "Health, configuration, the queue database"),
        (name = "queues", description = "Get-, Suspend-, Resume-, Retry-Queue"),
        (name = "messages", description = "Get-, Suspend-, Resume-, Remove-, Export-Message"),
        (name = "resubmit", description = "Safety Net resubmit requests"),
        (name = "alerts", description = "Recent alerts"),
        (name = "tracking", description = "Get-MessageTrackingLog"),
        (name = "hosts", description = "Per-destination status (ESA's tophosts and hoststatus)"),
        (name = "workqueue", description = "The work queue, its engines and updates, quarantine (ESA's workqueue)"),
        (name = "cluster", description = "Several nodes: status, nodes, the merged digest, cluster-wide actions, drain"),
    )
)]
pub(crate) struct ApiDoc;

/// `Authorization: Bearer <token>` (`[admin] token`).
struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error answers every endpoint may give, each `{"error": ..., "detail": ...}`.
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the document only.
pub(crate) enum Errors {
    /// Bad input: a malformed filter, an unknown query key, a body the endpoint does not take, or a
    /// state-changing request without a JSON body or `X-Sluice-Request: 1`.
    #[response(status = 400)]
    BadRequest(api::ErrorBody),
    /// A token is configured and the request lacks it.
    #[response(status = 401)]
    Unauthorized(api::ErrorBody),
    /// The `Host` header names neither the listen address nor an allowed host.
    #[response(status = 403)]
    Forbidden(api::ErrorBody),
    /// An identity that names nothing (each one in `detail`).
    #[response(status = 404)]
    NotFound(api::ErrorBody),
    /// An object whose state the action does not apply to (each one in `detail`).
    #[response(status = 409)]
    Conflict(api::ErrorBody),
}

/// A queue's or a message copy's identity in the path (`\` is `%5C`; `/` may stand for it).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct IdentityPath {
    /// `<server>\<queue>` or `<server>\<queue>\<mid>`; for a message, `<server>\*\<mid>` or a bare MID names
    /// every copy.
    identity: String,
}

/// A resubmit request's id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct IdPath {
    /// The number the request was given when added.
    id: u64,
}

/// The query of `GET /api/v1/queues`; any other key is a 400.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct QueueListQuery {
    /// An OPATH filter over queue properties, e.g. `MessageCount -gt 100 -and Status -eq 'Retry'`.
    filter: Option<String>,
    /// Only these (comma-separated): `Empty`, `External`, `Internal` or a DeliveryType.
    include: Option<String>,
    /// Not these (comma-separated), as `include`.
    exclude: Option<String>,
    /// Properties, `-` for descending: `-MessageCount,+NextHopDomain`.
    sort_order: Option<String>,
    /// Items per page (1..250000; default 1000).
    result_size: Option<u32>,
    /// The `next` of the previous page.
    bookmark: Option<String>,
}

/// The query of `GET /api/v1/messages`; any other key is a 400.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct MessageListQuery {
    /// Only the copies in this queue (an identity).
    queue: Option<String>,
    /// An OPATH filter over message properties, e.g. `FromAddress -like '*@example.com'`.
    filter: Option<String>,
    /// With each copy's recipients.
    include_recipient_info: Option<bool>,
    /// Properties, `-` for descending: `from_address,-size`.
    sort_order: Option<String>,
    /// Items per page (1..250000; default 1000).
    result_size: Option<u32>,
    /// The `next` of the previous page.
    bookmark: Option<String>,
}

/// The query of a bulk action: with `filter`, it acts on every object the filter selects now (the body may
/// then carry only the action's options); without, on the identities in the body.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BulkQuery {
    /// An OPATH filter, as the list of the same objects takes it.
    filter: Option<String>,
}

/// The query of `POST /api/v1/queues/retry`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BulkRetryQuery {
    /// An OPATH filter over queue properties.
    filter: Option<String>,
    /// Send the queues' waiting messages back to the categorizer (default false).
    resubmit: Option<bool>,
}

/// The query of `POST /api/v1/messages/remove`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BulkRemoveQuery {
    /// An OPATH filter over message properties.
    filter: Option<String>,
    /// Send the senders a non-delivery report (default true).
    with_ndr: Option<bool>,
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "server",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object), Errors)
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    // Serializing a document of plain values cannot fail; were it to, the answer would say so.
    let text =
        JSON.get_or_init(|| serde_json::to_string(&*document()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
}

/// The whole document: [`ApiDoc`] with every registered route. Built once.
pub(crate) fn document() -> Arc<utoipa::openapi::OpenApi> {
    static DOCUMENT: OnceLock<Arc<utoipa::openapi::OpenApi>> = OnceLock::new();
    DOCUMENT.get_or_init(|| Arc::new(crate::routes().into_openapi())).clone()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every route of the API (method and path): the surface of the API as the operations document lists it.
    pub(super) const ROUTES: &[(&str, &str)] = &[
        ("get", "/api/v1/health"),
        ("get", "/api/v1/cluster/status"),
        ("get", "/api/v1/cluster/nodes"),
        ("get", "/api/v1/cluster/digest"),
        ("post", "/api/v1/cluster/queues/suspend"),
        ("post", "/api/v1/cluster/queues/resume"),
        ("post", "/api/v1/cluster/drain"),
        ("get", "/api/v1/workqueue"),
        ("get", "/api/v1/workqueue/rate"),
        ("post", "/api/v1/workqueue/pause"),
        ("post", "/api/v1/workqueue/resume"),
        ("get", "/api/v1/engines"),
        ("get", "/api/v1/engines/antispam/rules"),
        ("post", "/api/v1/engines/{engine}/update"),
        ("get", "/api/v1/logs/updater"),
        ("get", "/api/v1/quarantine"),
        ("post", "/api/v1/quarantine/{mid}/release"),
        ("delete", "/api/v1/quarantine/{mid}"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/config/reload"),
        ("post", "/api/v1/database/defrag"),
        ("get", "/api/v1/status"),
        ("post", "/api/v1/counters/reset"),
        ("get", "/metrics"),
        ("get", "/api/v1/alerts"),
        ("get", "/api/v1/queues"),
        ("get", "/api/v1/queues/{identity}"),
        ("get", "/api/v1/queue-digest"),
        ("post", "/api/v1/queues/suspend"),
        ("post", "/api/v1/queues/resume"),
        ("post", "/api/v1/queues/retry"),
        ("post", "/api/v1/queues/{identity}/suspend"),
        ("post", "/api/v1/queues/{identity}/resume"),
        ("post", "/api/v1/queues/{identity}/retry"),
        ("get", "/api/v1/messages"),
        ("get", "/api/v1/messages/{identity}"),
        ("delete", "/api/v1/messages/{identity}"),
        ("post", "/api/v1/messages/suspend"),
        ("post", "/api/v1/messages/resume"),
        ("post", "/api/v1/messages/remove"),
        ("post", "/api/v1/messages/{identity}/suspend"),
        ("post", "/api/v1/messages/{identity}/resume"),
        ("get", "/api/v1/messages/{identity}/export"),
        ("get", "/api/v1/resubmit-requests"),
        ("post", "/api/v1/resubmit-requests"),
        ("delete", "/api/v1/resubmit-requests"),
        ("get", "/api/v1/resubmit-requests/{id}"),
        ("patch", "/api/v1/resubmit-requests/{id}"),
        ("delete", "/api/v1/resubmit-requests/{id}"),
        ("get", "/api/v1/tracking"),
        ("get", "/api/v1/tophosts"),
        ("get", "/api/v1/hosts/{domain}"),
    ];

    /// The (method, path) pairs of a document.
    pub(crate) fn operations(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_lists_every_route_and_nothing_else() {
        let doc = serde_json::to_value(&*document()).expect("serializable");
        let expected: BTreeSet<(String, String)> =
            ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        let got = operations(&doc);
        let missing: Vec<_> = expected.difference(&got).collect();
        let extra: Vec<_> = got.difference(&expected).collect();
        assert!(missing.is_empty() && extra.is_empty(), "not in the document: {missing:?}; not in ROUTES: {extra:?}");
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn every_operation_is_described_and_every_reference_resolves() {
        let doc = serde_json::to_value(&*document()).expect("serializable");
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        // Every `$ref` names a schema of the document.
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().expect("a name");
            assert!(schemas.contains_key(name), "{name} is referenced but not in components");
        }
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let r = &op["responses"];
                assert!(["200", "201", "202"].iter().any(|c| r[c].is_object()), "{method} {path}");
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
                let public = path == "/api/v1/health";
                assert_eq!(op["security"] == serde_json::json!([{}]), public, "{method} {path}: security");
            }
        }
    }

    /// A route registered with `.route(...)` is served but is not in the document: every registration goes
    /// through `routes!`, which puts the handler in both.
    #[test]
    fn routes_are_registered_only_with_their_document() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut offenders = Vec::new();
        for entry in std::fs::read_dir(dir).expect("src") {
            let path = entry.expect("entry").path();
            // The web viewer's pages are HTML for people, not API operations: outside the document.
            if path.file_name().is_some_and(|name| name == "viewer.rs" || name == "viewer") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                // Spelt in pieces, so that this test does not find itself.
                let calls = ["route", "route_service", "nest", "nest_service"].map(|name| format!(".{name}("));
                let plain_router = format!("{}::new()", "Router");
                let openapi_router = format!("OpenApi{plain_router}");
                if calls.iter().any(|call| code.contains(call.as_str()))
                    || code.replace(&openapi_router, "").contains(&plain_router)
                {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(offenders.is_empty(), "routes outside `routes!`:\n{}", offenders.join("\n"));
    }
}
