//! The web queue viewer at `/` on the admin listener: pages for people beside the API, rendered on the server.
//!
//! - **Pages**: the dashboard (`/`, refreshed every 5 s), the queues (`/queues`, or grouped with their messages'
//!   ages), the messages with the filter language and simple fields (`/messages`), one message
//!   (`/messages/{identity}`), the alerts (`/alerts`), the quarantine (`/quarantine`) and the Safety Net's
//!   resubmit requests (`/resubmit`).
//!   The templates (`pages.rs`) are maud's: checked when compiled, every value escaped, so a subject of
//!   `<script>` is shown as text.
//! - **Actions** are forms posted to the server: a queue's suspend, resume and retry, a message's suspend,
//!   resume, remove (with or without a notice to the sender), and the same on every message a filter
//!   selects, done in one request after a preview that says how many match. They work without JavaScript;
//!   htmx (served from the binary, as every asset) makes links and forms update the page in place.
//! - **Sign-in**: with `[admin] token` set, a page needs the token, given once in the sign-in form: the
//!   server answers with a `SameSite=Strict`, `HttpOnly` cookie holding a keyed hash of the token (not the
//!   token). `Authorization: Bearer` works too. Without a token the admin listener is on loopback only.
//! - **Requests from other sites**: a form post needs an `Origin` naming this server or htmx's `HX-Request`
//!   header (which no other site can add without the server's consent); every answer carries
//!   `Content-Security-Policy: default-src 'self'`. Posts are audited as the API's are.
//!
//! These routes are pages, not API operations: they are not in the OpenAPI document.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::Markup;
use serde::Deserialize;
use sluice_api_types as api;

use crate::{AdminState, ApiError, Origin, constant_time_eq};

mod pages;

/// The cookie that holds a signed-in browser's session.
const COOKIE: &str = "sluice_viewer";

/// Messages shown on one page of the messages list.
pub(crate) const PAGE_SIZE: usize = 100;

const HTMX: &str = include_str!("viewer/assets/htmx.min.js");
const CSS: &str = include_str!("viewer/assets/viewer.css");

/// Whether `path` is one of the viewer's (everything outside the API and the metrics).
pub(crate) fn is_viewer_path(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/api" || path == "/metrics")
}

/// The viewer's routes, behind its sign-in and same-origin checks.
pub(crate) fn routes(state: Arc<AdminState>) -> Router<Arc<AdminState>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/queues", get(queues))
        .route("/queues/action", post(queue_action))
        .route("/messages", get(messages))
        .route("/messages/bulk", post(bulk))
        .route("/messages/{identity}", get(message))
        .route("/messages/{identity}/action", post(message_action))
        .route("/messages/{identity}/export", get(export))
        .route("/alerts", get(alerts))
        .route("/quarantine", get(quarantine))
        .route("/quarantine/action", post(quarantine_action))
        .route("/resubmit", get(resubmit).post(add_resubmit))
        .route("/assets/htmx.min.js", get(|| async { asset("text/javascript", HTMX) }))
        .route("/assets/viewer.css", get(|| async { asset("text/css", CSS) }))
        .layer(middleware::from_fn_with_state(state, guard))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

/// The session cookie's value for `token`: HMAC-SHA256 of a fixed text keyed with the token, in hex. A copy
/// of the cookie is not the token: it cannot be used as the API's bearer token.
fn session_value(token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let tag = ring::hmac::sign(&key, b"sluice web queue viewer session");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the request carries the session cookie of the configured token.
pub(crate) fn signed_in(s: &AdminState, headers: &HeaderMap) -> bool {
    let Some(token) = &s.token else { return false };
    let expected = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && constant_time_eq(value.as_bytes(), expected.as_bytes()))
}

/// Whether a state-changing request comes from this server's pages: htmx's header, or an `Origin` whose
/// host is the `Host` the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    if headers.get("hx-request").is_some_and(|v| v == "true") {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => {
            origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        }
        _ => false,
    }
}

/// Sign-in, same-origin posts, and the security headers of every answer.
async fn guard(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let public = path == "/login" || path.starts_with("/assets/");
    let authorized = s.token.is_none() || signed_in(&s, req.headers()) || crate::token_given(&s, req.headers());
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let mut response = if !public && !authorized {
        if reading {
            Redirect::to("/login").into_response()
        } else {
            error(StatusCode::UNAUTHORIZED, "Sign in first: this server needs its admin token.")
        }
    } else if !reading && !same_origin(req.headers()) {
        error(
            StatusCode::FORBIDDEN,
            "This request did not come from this server's pages (no same-origin Origin header).",
        )
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An error page with `status`.
fn error(status: StatusCode, what: &str) -> Response {
    (status, pages::error(status, what)).into_response()
}

impl ApiError {
    /// The error as a page of the viewer.
    fn page(self) -> Response {
        error(self.0, &self.1)
    }
}

async fn login_page(State(s): State<Arc<AdminState>>) -> Markup {
    pages::login(s.token.is_some(), None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<Arc<AdminState>>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &s.token else { return Redirect::to("/").into_response() };
    if !constant_time_eq(form.token.as_bytes(), token.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, pages::login(true, Some("That is not this server's admin token.")))
            .into_response();
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Secure", session_value(token));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

async fn dashboard(State(s): State<Arc<AdminState>>) -> Response {
    let transport = s.transport.clone();
    let Ok(status) = tokio::task::spawn_blocking(move || transport.status()).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the status could not be read");
    };
    let queues = s.transport.queues();
    let alerts = recent_alerts(&s);
    let work_queue = s.transport.work_queue();
    pages::dashboard(&status, &work_queue, &queues, &alerts).into_response()
}

/// The alerts of the last 24 hours, newest first.
fn recent_alerts(s: &AdminState) -> Vec<api::Alert> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let since = now.as_millis() as i64 - 24 * 3600 * 1000;
    let mut alerts = s.transport.alerts().list(Some(since), None, None);
    alerts.reverse();
    alerts
}

async fn queues(State(s): State<Arc<AdminState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut query = HashMap::new();
    for key in ["filter", "sort_order"] {
        if let Some(v) = q.get(key).filter(|v| !v.trim().is_empty()) {
            query.insert(key.to_owned(), v.clone());
        }
    }
    let list = match crate::select_queues(&s, &query) {
        Ok(list) => list,
        Err(e) => return e.page(),
    };
    let Some(group_by) = q.get("group_by").filter(|g| !g.is_empty()) else {
        return pages::queues(&list, &q, None).into_response();
    };
    let Some((name, key)) = crate::digest::GROUPS.iter().find(|(name, _)| name == group_by) else {
        return error(StatusCode::BAD_REQUEST, &format!("{group_by:?} is not something queues are grouped by"));
    };
    let rows =
        crate::digest::digest(list.into_iter().map(|q| (key(&q), q)).collect(), 1, crate::digest::Details::Normal);
    let transport = s.transport.clone();
    let ages = tokio::task::spawn_blocking(move || transport.copy_ages(&AGE_BOUNDS_MS)).await.unwrap_or_default();
    let digest = pages::Digest { group_by: name, rows: &rows, ages: &ages };
    pages::queues(&[], &q, Some(digest)).into_response()
}

/// The age buckets of the digest: under 5 minutes, 5 to 60 minutes, 1 to 6 hours, 6 to 24 hours, older.
pub(crate) const AGE_BOUNDS_MS: [i64; 4] = [5 * 60_000, 3_600_000, 6 * 3_600_000, 24 * 3_600_000];

#[derive(Deserialize)]
struct QueueActionForm {
    identity: String,
    action: String,
}

async fn queue_action(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Form(form): Form<QueueActionForm>,
) -> Response {
    let ids = [form.identity.clone()];
    let result = match form.action.as_str() {
        "suspend" => s.transport.suspend_queues(&ids, &origin).await,
        "resume" => s.transport.resume_queues(&ids, &origin).await,
        "retry" => s.transport.retry_queues(&ids, false, &origin).await,
        other => return error(StatusCode::BAD_REQUEST, &format!("{other:?} is not a queue action")),
    };
    match result {
        Ok(r) => {
            pages::done(&format!("{}: {} of {} queue changed.", past(&form.action), r.changed, r.matched), "/queues")
                .into_response()
        }
        Err(e) => ApiError::from(e).page(),
    }
}

/// What the messages page's form asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MessageQuery {
    pub queue: String,
    pub filter: String,
    pub sender: String,
    pub recipient: String,
    pub domain: String,
    pub subject: String,
    pub message_id: String,
    pub status: String,
    /// Older than this (a duration: `30m`, `2h`, `00:05:00`).
    pub older_than: String,
    /// Larger than this (a size: `100KB`).
    pub larger_than: String,
    pub sort_order: String,
    pub bookmark: String,
}

impl MessageQuery {
    /// The filter the form's fields make: the filter box and each simple field, all of them holding.
    pub(crate) fn filter(&self) -> String {
        let quote = |v: &str| format!("'{}'", v.trim().replace('\'', "''"));
        let contains = |v: &str| quote(&format!("*{}*", v.trim()));
        let mut parts = Vec::new();
        if !self.filter.trim().is_empty() {
            parts.push(format!("({})", self.filter.trim()));
        }
        let fields: [(&str, String); 8] = [
            (&self.sender, format!("FromAddress -like {}", contains(&self.sender))),
            (&self.recipient, format!("Recipients -like {}", contains(&self.recipient))),
            (&self.domain, format!("Recipients -like {}", quote(&format!("*@{}", self.domain.trim())))),
            (&self.subject, format!("Subject -like {}", contains(&self.subject))),
            (&self.message_id, format!("InternetMessageId -like {}", contains(&self.message_id))),
            (&self.status, format!("Status -eq {}", quote(&self.status))),
            (&self.older_than, format!("MessageLatency -gt {}", self.older_than.trim())),
            (&self.larger_than, format!("Size -gt {}", self.larger_than.trim())),
        ];
        parts.extend(fields.into_iter().filter(|(v, _)| !v.trim().is_empty()).map(|(_, f)| f));
        parts.join(" -and ")
    }

    /// The API query the form makes.
    fn api_query(&self) -> HashMap<String, String> {
        let mut q = HashMap::new();
        let filter = self.filter();
        for (key, value) in [("queue", &self.queue), ("filter", &filter), ("sort_order", &self.sort_order)] {
            if !value.trim().is_empty() {
                q.insert(key.to_owned(), value.trim().to_owned());
            }
        }
        q
    }
}

async fn messages(State(s): State<Arc<AdminState>>, Query(form): Query<MessageQuery>) -> Response {
    let start = form.bookmark.parse::<usize>().unwrap_or(0);
    let q = form.api_query();
    let selected = crate::blocking(move || {
        let rows = crate::select_messages(&s, &q)?;
        let total = rows.len();
        let page: Vec<api::Message> = rows.iter().skip(start).take(PAGE_SIZE).map(|r| r.to_api(false)).collect();
        Ok::<_, ApiError>((total, page))
    })
    .await;
    match selected {
        Ok(Ok((total, page))) => pages::messages(&form, total, start, &page).into_response(),
        Ok(Err(e)) | Err(e) => (e.0, pages::messages_error(&form, &e.1)).into_response(),
    }
}

#[derive(Deserialize)]
struct BulkForm {
    #[serde(flatten)]
    query: MessageQuery,
    action: String,
    #[serde(default)]
    with_ndr: Option<String>,
    /// Present once the administrator confirmed the preview.
    #[serde(default)]
    confirm: Option<String>,
}

/// A bulk action: without `confirm`, a preview naming how many copies match; with it, the action on every copy
/// the filter selects now, in one request.
async fn bulk(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Form(form): Form<BulkForm>,
) -> Response {
    if !["suspend", "resume", "remove"].contains(&form.action.as_str()) {
        return error(StatusCode::BAD_REQUEST, &format!("{:?} is not a message action", form.action));
    }
    let q = form.query.api_query();
    if !q.contains_key("filter") && !q.contains_key("queue") {
        return error(
            StatusCode::BAD_REQUEST,
            "a bulk action needs a filter or a queue: it never acts on every message",
        );
    }
    let selecting = s.clone();
    let identities = match crate::blocking(move || crate::select_messages(&selecting, &q)).await {
        Ok(Ok(rows)) => rows.iter().map(|r| r.identity().to_owned()).collect::<Vec<String>>(),
        Ok(Err(e)) | Err(e) => return e.page(),
    };
    let with_ndr = form.with_ndr.is_some();
    if form.confirm.is_none() {
        return pages::bulk_preview(&form.query, &form.action, with_ndr, identities.len()).into_response();
    }
    if identities.is_empty() {
        return pages::done("No message matches: nothing was changed.", "/messages").into_response();
    }
    let result = act_on_messages(&s, &form.action, identities, with_ndr, &origin).await;
    match result {
        Ok((matched, changed)) => {
            pages::done(&format!("{}: {changed} of {matched} messages.", past(&form.action)), "/messages")
                .into_response()
        }
        Err(e) => e.page(),
    }
}

/// Acts on `identities` as the API's bulk form does (`actions::run_list`): a copy that left its queue since it
/// was selected (delivered meanwhile) is left out. The matched and changed counts.
async fn act_on_messages(
    s: &Arc<AdminState>,
    action: &str,
    identities: Vec<String>,
    with_ndr: bool,
    origin: &str,
) -> Result<(u64, u64), ApiError> {
    let list = crate::actions::ListAction {
        request: api::ActionRequest { identities, ..Default::default() },
        by_filter: true,
    };
    let axum::Json(r) = crate::actions::run_list(list, |ids| {
        let (s, origin, action) = (s.clone(), origin.to_owned(), action.to_owned());
        async move {
            match action.as_str() {
                "suspend" => s.transport.suspend_messages(&ids, &origin).await,
                "resume" => s.transport.resume_messages(&ids, &origin).await,
                _ => s.transport.remove_messages(&ids, with_ndr, &origin).await,
            }
        }
    })
    .await?;
    Ok((r.matched, r.changed))
}

/// `suspend` → `Suspended`.
fn past(action: &str) -> &'static str {
    match action {
        "suspend" => "Suspended",
        "resume" => "Resumed",
        "remove" => "Removed",
        "retry" => "Retried",
        _ => "Done",
    }
}

async fn message(State(s): State<Arc<AdminState>>, Path(identity): Path<String>) -> Response {
    let copies = match s.transport.message(&identity) {
        Ok((copies, _)) => copies,
        Err(e) => return ApiError::from(e).page(),
    };
    let Some(mid) = copies.first().map(|c| c.mid) else {
        return error(StatusCode::NOT_FOUND, "no such message");
    };
    let transport = s.transport.clone();
    let criteria = sluice_transport::tracking::search::Criteria { mid: Some(mid), ..Default::default() };
    let events = match tokio::task::spawn_blocking(move || transport.tracking().search(&criteria, None, 1000)).await {
        Ok(Ok(found)) => found.events,
        _ => Vec::new(),
    };
    let transport = s.transport.clone();
    let headers = tokio::task::spawn_blocking(move || transport.header_block(mid)).await.ok().flatten();
    let headers = headers.map(|h| String::from_utf8_lossy(&h).into_owned());
    // A copy waits for its queue's retry unless it has its own.
    let next_retries: HashMap<String, String> =
        s.transport.queues().into_iter().filter_map(|q| Some((q.identity, q.next_retry_time?))).collect();
    pages::message(&identity, &copies, &events, headers.as_deref(), &next_retries).into_response()
}

#[derive(Deserialize)]
struct MessageActionForm {
    action: String,
    #[serde(default)]
    with_ndr: Option<String>,
}

async fn message_action(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(identity): Path<String>,
    Form(form): Form<MessageActionForm>,
) -> Response {
    if !["suspend", "resume", "remove"].contains(&form.action.as_str()) {
        return error(StatusCode::BAD_REQUEST, &format!("{:?} is not a message action", form.action));
    }
    let with_ndr = form.with_ndr.is_some();
    match act_on_messages(&s, &form.action, vec![identity.clone()], with_ndr, &origin).await {
        Ok((_, changed)) => {
            let back = if form.action == "remove" { "/messages".to_owned() } else { pages::message_href(&identity) };
            pages::done(&format!("{}: {changed} copy of {identity}.", past(&form.action)), &back).into_response()
        }
        Err(e) => e.page(),
    }
}

async fn export(State(s): State<Arc<AdminState>>, Path(identity): Path<String>) -> Response {
    match crate::actions::export_message(State(s), Path(identity)).await {
        Ok(response) => response,
        Err(e) => e.page(),
    }
}

async fn alerts(State(s): State<Arc<AdminState>>) -> Markup {
    pages::alerts(&recent_alerts(&s))
}

/// The quarantine's first messages, oldest first.
const QUARANTINE_PAGE: usize = 500;

async fn quarantine(State(s): State<Arc<AdminState>>) -> Markup {
    let (items, more) = s.transport.quarantine(None, QUARANTINE_PAGE);
    pages::quarantine(&items, more.is_some())
}

#[derive(Deserialize)]
struct QuarantineForm {
    mid: u64,
    action: String,
}

async fn quarantine_action(State(s): State<Arc<AdminState>>, Form(form): Form<QuarantineForm>) -> Response {
    let result = match form.action.as_str() {
        "release" => s.transport.release_quarantined(form.mid).await,
        "delete" => s.transport.delete_quarantined(form.mid).await,
        other => return error(StatusCode::BAD_REQUEST, &format!("{other:?} is not a quarantine action")),
    };
    match result {
        Ok(q) => {
            let what = if form.action == "release" { "Released" } else { "Deleted" };
            pages::done(&format!("{what}: message {} ({}).", q.mid, q.verdict), "/quarantine").into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

async fn resubmit(State(s): State<Arc<AdminState>>) -> Markup {
    pages::resubmit(&s.transport.resubmit_requests())
}

#[derive(Deserialize)]
struct ResubmitForm {
    start_time: String,
    end_time: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipient: String,
}

/// Add-ResubmitRequest from the form: the Safety Net's copies delivered in the window, as new messages.
async fn add_resubmit(
    State(s): State<Arc<AdminState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Form(form): Form<ResubmitForm>,
) -> Response {
    let some = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let new = api::NewResubmitRequest {
        start_time: form.start_time.trim().to_owned(),
        end_time: form.end_time.trim().to_owned(),
        sender: some(&form.sender),
        recipient: some(&form.recipient),
        internet_message_id: None,
    };
    match s.transport.add_resubmit_request(&new, &origin).await {
        Ok(r) => pages::done(&format!("Resubmit request {} added: {} messages match.", r.id, r.matched), "/resubmit")
            .into_response(),
        Err(e) => ApiError::from(e).page(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simple_fields_make_one_filter_with_quotes_doubled() {
        let q = MessageQuery {
            filter: "Size -gt 1KB".into(),
            sender: "o'brien@example.test".into(),
            domain: "example.org".into(),
            status: "Retry".into(),
            ..Default::default()
        };
        assert_eq!(
            q.filter(),
            "(Size -gt 1KB) -and FromAddress -like '*o''brien@example.test*' -and Recipients -like '*@example.org' \
             -and Status -eq 'Retry'"
        );
        assert_eq!(MessageQuery::default().filter(), "");
    }

    #[test]
    fn posts_need_this_servers_origin_or_htmx() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8025"), ("origin", "http://127.0.0.1:8025")])));
        assert!(same_origin(&headers(&[("hx-request", "true")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8025"), ("origin", "http://evil.test")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8025")])), "no Origin at all");
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8025"), ("origin", "null")])));
    }

    #[test]
    fn the_session_cookie_is_not_the_token() {
        let value = session_value("s3cret");
        assert_eq!(value.len(), 64);
        assert!(!value.contains("s3cret"));
        assert_ne!(value, session_value("s3cres"));
    }
}
