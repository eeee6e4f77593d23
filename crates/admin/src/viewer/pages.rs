//! The viewer's pages: maud templates, every value escaped.

use std::collections::HashMap;

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use sluice_api_types as api;

use super::{MessageQuery, PAGE_SIZE};

/// The message statuses the status field offers.
const STATUSES: &[&str] = &["Active", "Ready", "Retry", "Suspended", "PendingSuspend", "PendingRemove", "Poison"];

/// A page: the header with the navigation, `body`, and the scripts.
fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx's indicator styles are an inline style, which the page's CSP refuses.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · sluice" }
                link rel="stylesheet" href="/assets/viewer.css";
                script src="/assets/htmx.min.js" {}
            }
            body hx-boost="true" {
                header {
                    nav {
                        strong { "sluice" }
                        a href="/" { "Dashboard" }
                        a href="/queues" { "Queues" }
                        a href="/messages" { "Messages" }
                        a href="/alerts" { "Alerts" }
                        a href="/quarantine" { "Quarantine" }
                        a href="/resubmit" { "Safety Net" }
                        form.logout method="post" action="/logout" { button type="submit" { "Sign out" } }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `identity` as one path segment (`mx\16\26` → `mx%5C16%5C26`).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn message_href(identity: &str) -> String {
    format!("/messages/{}", encode(identity))
}

fn messages_href(pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", encode(v))).collect();
    if query.is_empty() { "/messages".to_owned() } else { format!("/messages?{}", query.join("&")) }
}

pub(super) fn error(status: StatusCode, what: &str) -> Markup {
    layout(
        "Error",
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error role="alert" { (what) }
            p { a href="/" { "Back to the dashboard" } }
        },
    )
}

pub(super) fn login(token_set: bool, failed: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · sluice" }
                link rel="stylesheet" href="/assets/viewer.css";
            }
            body {
                main.login {
                    h1 { "sluice" }
                    @if token_set {
                        @if let Some(failed) = failed { p.error role="alert" { (failed) } }
                        form method="post" action="/login" {
                            label for="token" { "Admin token" }
                            input #token type="password" name="token" autocomplete="current-password" required;
                            button type="submit" { "Sign in" }
                        }
                    } @else {
                        p { "This server has no admin token: its pages need no sign-in. " a href="/" { "Open the dashboard" } }
                    }
                }
            }
        }
    }
}

/// A result page: what was done, and where to go next.
pub(super) fn done(what: &str, back: &str) -> Markup {
    layout(
        "Done",
        html! {
            p.done role="status" { (what) }
            p { a href=(back) { "Back" } }
        },
    )
}

fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn alert_list(alerts: &[api::Alert]) -> Markup {
    html! {
        table {
            thead { tr { th { "Time" } th { "Severity" } th { "Class" } th { "Alert" } } }
            tbody {
                @for a in alerts {
                    tr class=(a.severity.to_lowercase()) {
                        td { (a.time) } td { (a.severity) } td { (a.class) }
                        td { (a.text) @if a.suppressed > 0 { " (" (a.suppressed) " more)" } }
                    }
                }
            }
        }
    }
}

pub(super) fn dashboard(
    status: &api::Status,
    work_queue: &api::WorkQueue,
    queues: &[api::Queue],
    alerts: &[api::Alert],
) -> Markup {
    let queued: u64 = queues.iter().map(|q| q.message_count).sum();
    // Per hour over the last minute, shown per second.
    let rate_in = status.rates.received.one_minute as f64 / 3600.0;
    let rate_out = status.rates.delivered.one_minute as f64 / 3600.0;
    // `+ 0.0` turns a sum of -0.0 into 0.0, which prints without its sign.
    let velocity: f64 = queues.iter().map(|q| q.velocity).sum::<f64>() + 0.0;
    let urgent: Vec<&api::Alert> = alerts.iter().filter(|a| a.severity != "Information").take(3).collect();
    let g = &status.gauges;
    layout(
        "Dashboard",
        html! {
            div #dashboard hx-get="/" hx-trigger="every 5s" hx-select="#dashboard" hx-swap="outerHTML" {
                @if !urgent.is_empty() {
                    div.banner role="alert" {
                        @for a in &urgent { p { strong { (a.severity) } " " (a.time) ": " (a.text) } }
                        a href="/alerts" { "All alerts" }
                    }
                }
                h1 { "Dashboard" }
                dl.figures {
                    div { dt { "System status" } dd #system-status { (status.system_status) } }
                    div { dt { "Queued messages" } dd #queued { (number(queued)) } }
                    div { dt { "Received / delivered (per s, last minute)" } dd { (format!("{rate_in:.1} / {rate_out:.1}")) } }
                    div { dt { "Velocity" } dd { (format!("{velocity:+.1}")) } }
                    div { dt { "Queue database" } dd { (number(g.kilobytes_used)) " KB used, " (number(g.kilobytes_free)) " KB free" } }
                    div { dt { "Oldest message" } dd {
                        @match &status.oldest_message {
                            Some(m) => { (age(m.age_seconds)) " (MID " (m.mid) ")" }
                            None => { "none" }
                        }
                    } }
                    div { dt { "Work queue" } dd #work-queue { (work_queue.status) ", " (number(g.messages_in_work_queue)) " messages" } }
                    div { dt { "Quarantine" } dd { (number(g.messages_in_quarantine)) " messages" } }
                    div { dt { "Received (since reset)" } dd { (number(status.counters.messages_received.reset)) } }
                    div { dt { "Delivered recipients" } dd { (number(status.counters.delivered_recipients.reset)) } }
                }
                h2 { "Work queue: " (work_queue.status) }
                table {
                    thead { tr { th { "Stage" } th { "Engine" } th { "State" } th { "Why" } th { "In process" } } }
                    tbody {
                        @for st in &work_queue.stages {
                            tr { td { (st.stage) } td { (st.engine) } td { (st.state) }
                                td { (st.reason.as_deref().unwrap_or("")) } td { (number(st.in_process)) } }
                        }
                    }
                }
                h2 { "Back pressure: " (status.back_pressure.level) }
                table {
                    thead { tr { th { "Resource" } th { "Level" } th { "Value" } th { "Unit" } th { "Medium" } th { "High" } } }
                    tbody {
                        @for r in &status.back_pressure.resources {
                            tr {
                                td { (r.resource) } td { (r.level) }
                                td { @if let Some(v) = r.value { (number(v)) } @else { "unknown" } }
                                td { (r.unit) } td { (number(r.medium)) } td { (number(r.high)) }
                            }
                        }
                    }
                }
                h2 { "Queues" }
                (queue_table(queues, &HashMap::new()))
            }
        },
    )
}

fn queue_table(queues: &[api::Queue], q: &HashMap<String, String>) -> Markup {
    let sorted_by = q.get("sort_order").map(String::as_str).unwrap_or("");
    let head = |label: &str, property: &str| {
        let order = if sorted_by == property { format!("-{property}") } else { property.to_owned() };
        let mut pairs = vec![("sort_order", order.as_str())];
        let filter = q.get("filter").map(String::as_str).unwrap_or("");
        pairs.push(("filter", filter));
        let query: Vec<String> =
            pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", encode(v))).collect();
        html! { th { a href=(format!("/queues?{}", query.join("&"))) { (label) } } }
    };
    html! {
        table #queues {
            thead {
                tr {
                    (head("Queue", "Identity")) (head("Type", "DeliveryType")) (head("Next hop", "NextHopDomain"))
                    (head("Status", "Status")) (head("Messages", "MessageCount")) (head("In/s", "IncomingRate"))
                    (head("Out/s", "OutgoingRate")) (head("Velocity", "Velocity")) (head("Last error", "LastError"))
                    (head("Next retry", "NextRetryTime")) th { "Actions" }
                }
            }
            tbody {
                @for queue in queues {
                    tr data-queue=(queue.identity) {
                        td { a href=(messages_href(&[("queue", &queue.identity)])) { (queue.identity) } }
                        td { (queue.delivery_type) }
                        td { (queue.next_hop_domain) }
                        td.status { (queue.status) }
                        td.count { (number(queue.message_count)) }
                        td { (format!("{:.1}", queue.incoming_rate)) }
                        td { (format!("{:.1}", queue.outgoing_rate)) }
                        td { (format!("{:+.1}", queue.velocity + 0.0)) }
                        td { (queue.last_error.as_deref().unwrap_or("")) }
                        td { (queue.next_retry_time.as_deref().unwrap_or("")) }
                        td.actions {
                            @for action in ["suspend", "resume", "retry"] {
                                form method="post" action="/queues/action" {
                                    input type="hidden" name="identity" value=(queue.identity);
                                    button type="submit" name="action" value=(action) { (action) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The queues grouped by a property, with how old their messages are.
pub(super) struct Digest<'a> {
    pub group_by: &'a str,
    pub rows: &'a [api::DigestRow],
    /// Copies per queue identity in the age buckets of [`super::AGE_BOUNDS_MS`].
    pub ages: &'a HashMap<String, Vec<u64>>,
}

const AGE_LABELS: [&str; 5] = ["< 5 min", "5–60 min", "1–6 h", "6–24 h", "> 1 day"];

/// A digest row's queues, and their copies by age added up.
fn group_ages<'a>(d: &Digest<'_>, row: &'a api::DigestRow) -> (Vec<&'a str>, [u64; 5]) {
    let identities: Vec<&str> = row.queues.iter().flatten().map(api::DigestQueue::identity).collect();
    let mut ages = [0u64; 5];
    for counts in identities.iter().filter_map(|id| d.ages.get(*id)) {
        for (sum, n) in ages.iter_mut().zip(counts) {
            *sum += n;
        }
    }
    (identities, ages)
}

fn digest_table(d: &Digest<'_>) -> Markup {
    html! {
        table #digest {
            thead {
                tr {
                    th { (d.group_by) } th { "Queues" } th { "Messages" }
                    @for label in AGE_LABELS { th { (label) } }
                    th { "Status" } th { "Velocity" } th { "Last error" }
                }
            }
            tbody {
                @for row in d.rows {
                    @let (identities, ages) = group_ages(d, row);
                    tr {
                        td { (row.group) }
                        td {
                            @for (i, id) in identities.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href=(messages_href(&[("queue", id)])) { (id) }
                            }
                        }
                        td.count { (number(row.message_count)) }
                        @for n in ages { td.count { (number(n)) } }
                        td { @for (status, n) in &row.queues_by_status { (status) " " (n) " " } }
                        td { (format!("{:+.1}", row.velocity + 0.0)) }
                        td { (row.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// The queues page: `queues` as a table, or with `digest` the groups instead.
pub(super) fn queues(queues: &[api::Queue], q: &HashMap<String, String>, digest: Option<Digest<'_>>) -> Markup {
    let filter = q.get("filter").map(String::as_str).unwrap_or("");
    let grouped = digest.as_ref().map_or("", |d| d.group_by);
    layout(
        "Queues",
        html! {
            h1 { "Queues" }
            form.filter method="get" action="/queues" {
                label for="queue-filter" { "Filter" }
                input #queue-filter type="text" name="filter" value=(filter) placeholder="MessageCount -gt 100 -and Status -eq 'Retry'";
                label for="group_by" { "Group by" }
                select #group_by name="group_by" {
                    option value="" { "nothing: every queue" }
                    @for (name, label) in [("next_hop_domain", "next hop"), ("last_error", "last error"), ("status", "status")] {
                        option value=(name) selected[grouped == name] { (label) }
                    }
                }
                button type="submit" { "Apply" }
            }
            @if let Some(d) = &digest { (digest_table(d)) } @else { (queue_table(queues, q)) }
        },
    )
}

/// The filter form of the messages page, filled with `form`.
fn message_form(form: &MessageQuery) -> Markup {
    let field = |id: &str, label: &str, value: &str, placeholder: &str| {
        html! {
            label for=(id) { (label) }
            input id=(id) type="text" name=(id) value=(value) placeholder=(placeholder);
        }
    };
    html! {
        form.filter #message-filter method="get" action="/messages" {
            (field("filter", "Filter", &form.filter, "FromAddress -like '*@example.com' -and Size -gt 1MB"))
            (field("queue", "Queue", &form.queue, "server\\queue"))
            (field("sender", "Sender", &form.sender, "contains"))
            (field("recipient", "Recipient", &form.recipient, "contains"))
            (field("domain", "Recipient domain", &form.domain, "example.com"))
            (field("subject", "Subject", &form.subject, "contains"))
            (field("message_id", "Message-ID", &form.message_id, "contains"))
            label for="status" { "Status" }
            select #status name="status" {
                option value="" { "any" }
                @for s in STATUSES { option value=(s) selected[form.status == *s] { (s) } }
            }
            (field("older_than", "Older than", &form.older_than, "30m"))
            (field("larger_than", "Larger than", &form.larger_than, "100KB"))
            (field("sort_order", "Sort", &form.sort_order, "-Size"))
            button type="submit" { "Find" }
        }
    }
}

/// The form's fields as hidden inputs (the bulk action and the paging carry them on).
fn hidden_fields(form: &MessageQuery) -> Markup {
    html! {
        @for (name, value) in form_pairs(form) {
            @if !value.is_empty() { input type="hidden" name=(name) value=(value); }
        }
    }
}

fn form_pairs(form: &MessageQuery) -> [(&'static str, &str); 11] {
    [
        ("queue", &form.queue),
        ("filter", &form.filter),
        ("sender", &form.sender),
        ("recipient", &form.recipient),
        ("domain", &form.domain),
        ("subject", &form.subject),
        ("message_id", &form.message_id),
        ("status", &form.status),
        ("older_than", &form.older_than),
        ("larger_than", &form.larger_than),
        ("sort_order", &form.sort_order),
    ]
}

pub(super) fn messages(form: &MessageQuery, total: usize, start: usize, page: &[api::Message]) -> Markup {
    let end = start + page.len();
    let next = (end < total).then(|| {
        let bookmark = end.to_string();
        let mut pairs: Vec<(&str, &str)> = form_pairs(form).to_vec();
        pairs.push(("bookmark", &bookmark));
        messages_href(&pairs)
    });
    let selecting = !form.filter().is_empty() || !form.queue.trim().is_empty();
    layout(
        "Messages",
        html! {
            h1 { "Messages" }
            (message_form(form))
            p #match-count { (number(total as u64)) " messages match" @if total > 0 { "; showing " (start + 1) "–" (end) } "." }
            @if selecting && total > 0 {
                form.bulk method="post" action="/messages/bulk" {
                    (hidden_fields(form))
                    "Every matching message: "
                    button type="submit" name="action" value="suspend" { "Suspend…" }
                    button type="submit" name="action" value="resume" { "Resume…" }
                    button type="submit" name="action" value="remove" { "Remove…" }
                    label { input type="checkbox" name="with_ndr" value="1" checked; " tell the senders when removing" }
                }
            }
            table #messages {
                thead {
                    tr {
                        th { "Identity" } th { "From" } th { "Subject" } th { "Status" } th { "Size" }
                        th { "Received" } th { "Retries" } th { "Last error" } th { "SCL" }
                    }
                }
                tbody {
                    @for m in page {
                        tr data-identity=(m.identity) {
                            td { a href=(message_href(&m.identity)) { (m.identity) } }
                            td.from { (m.from_address) }
                            td.subject { (m.subject.as_deref().unwrap_or("")) }
                            td.status { (m.status) }
                            td { (number(m.size)) }
                            td { (m.date_received) }
                            td { (m.retry_count) }
                            td { (m.last_error.as_deref().unwrap_or("")) }
                            td { @if m.scl >= 0 { (m.scl) } }
                        }
                    }
                }
            }
            @if let Some(next) = next { p { a #next-page href=(next) { "Next " (PAGE_SIZE) } } }
        },
    )
}

pub(super) fn messages_error(form: &MessageQuery, what: &str) -> Markup {
    layout(
        "Messages",
        html! {
            h1 { "Messages" }
            (message_form(form))
            p.error role="alert" { (what) }
        },
    )
}

pub(super) fn bulk_preview(form: &MessageQuery, action: &str, with_ndr: bool, matching: usize) -> Markup {
    layout(
        "Confirm",
        html! {
            h1 { "Confirm" }
            p #preview { (number(matching as u64)) " messages match: " code { (form.filter()) }
                @if !form.queue.is_empty() { " in " code { (form.queue) } } }
            form method="post" action="/messages/bulk" {
                (hidden_fields(form))
                input type="hidden" name="action" value=(action);
                @if with_ndr { input type="hidden" name="with_ndr" value="1"; }
                button #confirm type="submit" name="confirm" value="1" {
                    (action) " " (number(matching as u64)) " messages"
                    @if action == "remove" { @if with_ndr { " and tell their senders" } @else { " without a notice" } }
                }
                " "
                a href=(messages_href(&form_pairs(form))) { "Cancel" }
            }
            p { "The filter is applied again when you confirm: messages that arrived meanwhile and match are included." }
        },
    )
}

pub(super) fn message(
    identity: &str,
    copies: &[api::Message],
    events: &[api::TrackingEvent],
    headers: Option<&str>,
    next_retries: &HashMap<String, String>,
) -> Markup {
    let first = &copies[0];
    layout(
        "Message",
        html! {
            h1 { "Message " (first.mid) }
            dl.figures {
                div { dt { "From" } dd #from { (first.from_address) } }
                div { dt { "Subject" } dd #subject { (first.subject.as_deref().unwrap_or("")) } }
                div { dt { "Message-ID" } dd { (first.internet_message_id.as_deref().unwrap_or("")) } }
                div { dt { "Size" } dd { (number(first.size)) " bytes" } }
                div { dt { "Received" } dd { (first.date_received) " from " (first.source_ip) " (" (first.message_source_name) ")" } }
                div { dt { "Expires" } dd { (first.expiration_time) } }
                div { dt { "SCL" } dd { @if first.scl >= 0 { (first.scl) } @else { "not scanned" } } }
                div { dt { "Direction" } dd { (first.directionality) } }
            }
            @for copy in copies {
                section.copy {
                    h2 { "In " (copy.queue) ": " (copy.status)
                        @if let Some(reason) = &copy.deferred_reason { " (" (reason) ")" } }
                    p { "Retries: " (copy.retry_count)
                        @if let Some(e) = &copy.last_error { "; last reply: " code { (e) } }
                        @if let Some(next) = next_retries.get(&copy.queue) { "; the queue's next retry: " (next) } }
                    @if let Some(recipients) = &copy.recipients {
                        table {
                            thead { tr { th { "Recipient" } th { "Status" } th { "Retries" } th { "Last reply" } th { "Next hop" } } }
                            tbody {
                                @for r in recipients {
                                    tr { td { (r.address) } td { (r.status) } td { (r.retry_count) }
                                        td { (r.last_error.as_deref().unwrap_or("")) } td { (r.next_hop) } }
                                }
                            }
                        }
                    }
                    div.actions {
                        @for action in ["suspend", "resume"] {
                            form method="post" action=(format!("{}/action", message_href(&copy.identity))) {
                                button type="submit" name="action" value=(action) { (action) }
                            }
                        }
                        form method="post" action=(format!("{}/action", message_href(&copy.identity))) {
                            label { input type="checkbox" name="with_ndr" value="1" checked; " tell the sender" }
                            button type="submit" name="action" value="remove" { "remove" }
                        }
                        @if copy.status == "Suspended" {
                            a href=(format!("{}/export", message_href(&copy.identity))) hx-boost="false" { "Export .eml" }
                        } @else {
                            span.hint { "Suspend the message to export it." }
                        }
                    }
                }
            }
            h2 { "Headers" }
            @match headers {
                Some(h) => { pre #headers { (h) } }
                None => { p.hint { "The message's stored copy could not be read." } }
            }
            h2 { "Tracking events" }
            table #events {
                thead { tr { th { "Time" } th { "Event" } th { "Recipients" } th { "Queue" } th { "Source" } th { "Reply" } } }
                tbody {
                    @for e in events {
                        tr { td { (e.time) } td { (e.event_id) } td { (e.recipients.join(", ")) }
                            td { (e.queue.as_deref().unwrap_or("")) } td { (e.source.as_deref().unwrap_or("")) }
                            td { (e.reply.as_deref().unwrap_or("")) } }
                    }
                }
            }
            p { a href=(messages_href(&[])) { "All messages" } " · identity " code { (identity) } }
        },
    )
}

pub(super) fn quarantine(items: &[api::Quarantined], more: bool) -> Markup {
    layout(
        "Quarantine",
        html! {
            h1 { "Quarantine" }
            @if items.is_empty() { p { "No message is quarantined." } } @else {
                table #quarantine {
                    thead { tr { th { "MID" } th { "Quarantined" } th { "Stage" } th { "Verdict" } th { "From" }
                        th { "Recipients" } th { "Subject" } th { "Size" } th { "Expires" } th { "Actions" } } }
                    tbody {
                        @for q in items {
                            tr {
                                td { (q.mid) } td { (q.quarantined_at) } td { (q.stage) } td { (q.verdict) }
                                td { (q.from_address) } td { (q.recipients.join(", ")) } td { (q.subject) }
                                td { (number(q.size)) } td { (q.expires_at) }
                                td.actions {
                                    @for action in ["release", "delete"] {
                                        form method="post" action="/quarantine/action" {
                                            input type="hidden" name="mid" value=(q.mid);
                                            button type="submit" name="action" value=(action) { (action) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if more { p { "The first " (items.len()) " are shown; `sluice quarantine list` pages through all." } }
            }
        },
    )
}

pub(super) fn resubmit(requests: &[api::ResubmitRequest]) -> Markup {
    layout(
        "Safety Net",
        html! {
            h1 { "Safety Net resubmit requests" }
            form.filter method="post" action="/resubmit" {
                label for="start_time" { "Delivered from" }
                input #start_time type="text" name="start_time" required placeholder="2026-12-01T15:00:00Z";
                label for="end_time" { "to" }
                input #end_time type="text" name="end_time" required placeholder="2026-12-01T16:00:00Z";
                label for="rs-sender" { "Sender" }
                input #rs-sender type="text" name="sender" placeholder="any";
                label for="rs-recipient" { "Recipient" }
                input #rs-recipient type="text" name="recipient" placeholder="any";
                button type="submit" { "Resubmit" }
            }
            table #resubmit {
                thead { tr { th { "Id" } th { "Window" } th { "Sender" } th { "Recipient" } th { "Status" }
                    th { "Matched" } th { "Resubmitted" } th { "Added by" } } }
                tbody {
                    @for r in requests {
                        tr { td { (r.id) } td { (r.start_time) " – " (r.end_time) }
                            td { (r.sender.as_deref().unwrap_or("any")) } td { (r.recipient.as_deref().unwrap_or("any")) }
                            td { (r.status) @if let Some(e) = &r.error { ": " (e) } }
                            td { (number(r.matched)) } td { (number(r.resubmitted)) } td { (r.origin) } }
                    }
                }
            }
        },
    )
}

pub(super) fn alerts(alerts: &[api::Alert]) -> Markup {
    layout(
        "Alerts",
        html! {
            h1 { "Alerts of the last 24 hours" }
            @if alerts.is_empty() { p { "None." } } @else { (alert_list(alerts)) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_paths_encoded() {
        let page = done("<script>alert(1)</script>", "/messages").into_string();
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
        assert_eq!(message_href("mx\\16\\26"), "/messages/mx%5C16%5C26");
        assert_eq!(number(1_234_567), "1,234,567");
        assert_eq!(number(12), "12");
    }
}
