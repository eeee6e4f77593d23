//! The query of a list: which keys an endpoint takes (any other is a 400, never ignored: a script that
//! misspells `filter` must not act on everything), the filter language over queues and messages, `include`
//! and `exclude` of queues, `sort_order`, and the page.

use std::collections::HashMap;

use sluice_api_types as api;
use sluice_filter::{Filter, Kind, Property, Value};
use sluice_transport::CopyRow;

use crate::{ApiError, bad_request};

const MESSAGE_STATUSES: &[&str] =
    &["Active", "Ready", "Retry", "Suspended", "PendingSuspend", "PendingRemove", "Locked"];
const QUEUE_STATUSES: &[&str] = &["Active", "Connecting", "Ready", "Retry", "Suspended"];
const DELIVERY_TYPES: &[&str] =
    &["DnsConnectorDelivery", "SmartHostConnectorDelivery", "SmtpDeliveryToMailbox", "Undefined", "Unreachable"];
const CATEGORIES: &[&str] = &["Internal", "External"];
const PRIORITIES: &[&str] = &["High", "Normal", "Low"];
const DIRECTIONALITIES: &[&str] = &["Incoming", "Originating"];
const DEFERRED_REASONS: &[&str] =
    &["TransientFailure", "QueueRetry", "QueueSuspended", "Suspended", "NoRoute", "Poison"];

/// The properties a message filter or sort may name, in the order of [`message_value`].
pub(crate) const MESSAGE_PROPERTIES: &[Property] = &[
    Property { name: "Identity", kind: Kind::Str },
    Property { name: "Mid", kind: Kind::Int },
    Property { name: "Queue", kind: Kind::Str },
    Property { name: "Status", kind: Kind::Enum(MESSAGE_STATUSES) },
    Property { name: "FromAddress", kind: Kind::Str },
    Property { name: "InternetMessageId", kind: Kind::Str },
    Property { name: "Subject", kind: Kind::Str },
    Property { name: "Size", kind: Kind::Size },
    Property { name: "DateReceived", kind: Kind::Time },
    Property { name: "ExpirationTime", kind: Kind::Time },
    Property { name: "LastError", kind: Kind::Str },
    Property { name: "RetryCount", kind: Kind::Int },
    Property { name: "SourceIp", kind: Kind::Str },
    Property { name: "MessageSourceName", kind: Kind::Str },
    Property { name: "OriginalFromAddress", kind: Kind::Str },
    Property { name: "Scl", kind: Kind::Int },
    Property { name: "Priority", kind: Kind::Enum(PRIORITIES) },
    Property { name: "Directionality", kind: Kind::Enum(DIRECTIONALITIES) },
    Property { name: "DeferredReason", kind: Kind::Enum(DEFERRED_REASONS) },
    Property { name: "MessageLatency", kind: Kind::Duration },
    Property { name: "Recipients", kind: Kind::List },
];

/// The properties a queue filter or sort may name, in the order of [`queue_value`].
pub(crate) const QUEUE_PROPERTIES: &[Property] = &[
    Property { name: "Identity", kind: Kind::Str },
    Property { name: "DeliveryType", kind: Kind::Enum(DELIVERY_TYPES) },
    Property { name: "NextHopDomain", kind: Kind::Str },
    Property { name: "NextHopConnector", kind: Kind::Str },
    Property { name: "NextHopCategory", kind: Kind::Enum(CATEGORIES) },
    Property { name: "Status", kind: Kind::Enum(QUEUE_STATUSES) },
    Property { name: "MessageCount", kind: Kind::Int },
    Property { name: "DeferredMessageCount", kind: Kind::Int },
    Property { name: "LockedMessageCount", kind: Kind::Int },
    Property { name: "RetryCount", kind: Kind::Int },
    Property { name: "LastError", kind: Kind::Str },
    Property { name: "FirstRetryTime", kind: Kind::Time },
    Property { name: "LastRetryTime", kind: Kind::Time },
    Property { name: "NextRetryTime", kind: Kind::Time },
    Property { name: "IncomingRate", kind: Kind::Rate },
    Property { name: "OutgoingRate", kind: Kind::Rate },
    Property { name: "Velocity", kind: Kind::Rate },
    Property { name: "TlsDomain", kind: Kind::Str },
];

fn time(t: Option<&str>) -> Value<'static> {
    t.and_then(sluice_transport::alerts::parse_time).map_or(Value::Missing, Value::Number)
}

/// A rate in thousandths, as the filter language holds rates.
fn rate(r: f64) -> Value<'static> {
    Value::Number((r * 1000.0).round() as i64)
}

fn text(t: &Option<String>) -> Value<'_> {
    t.as_deref().map_or(Value::Missing, Value::Text)
}

fn opt(t: Option<&str>) -> Value<'_> {
    t.map_or(Value::Missing, Value::Text)
}

/// The value of [`MESSAGE_PROPERTIES`]`[i]` of a message copy.
pub(crate) fn message_value(m: &CopyRow, i: usize) -> Value<'_> {
    match i {
        0 => Value::Text(m.identity()),
        1 => Value::Number(m.mid as i64),
        2 => Value::Text(m.queue()),
        3 => Value::Text(m.status()),
        4 => Value::Text(m.from_address()),
        5 => opt(m.internet_message_id()),
        6 => opt(m.subject()),
        7 => Value::Number(m.size() as i64),
        8 => Value::Number(m.received_ms()),
        9 => Value::Number(m.expiration_ms()),
        10 => opt(m.last_error()),
        11 => Value::Number(i64::from(m.retry_count())),
        12 => Value::Text(m.source_ip()),
        13 => Value::Text(m.source_name()),
        14 => Value::Text(m.from_address()),
        15 => Value::Number(i64::from(m.scl())),
        16 => Value::Text(m.priority()),
        17 => Value::Text(m.directionality()),
        18 => opt(m.deferred_reason()),
        // Shown in whole seconds: compared so too.
        19 => Value::Number(m.latency_ms() / 1000 * 1000),
        _ => Value::List(m.recipients().collect()),
    }
}

/// The value of [`QUEUE_PROPERTIES`]`[i]` of a queue.
pub(crate) fn queue_value(q: &api::Queue, i: usize) -> Value<'_> {
    match i {
        0 => Value::Text(&q.identity),
        1 => Value::Text(&q.delivery_type),
        2 => Value::Text(&q.next_hop_domain),
        3 => Value::Text(&q.next_hop_connector),
        4 => Value::Text(&q.next_hop_category),
        5 => Value::Text(&q.status),
        6 => Value::Number(q.message_count as i64),
        7 => Value::Number(q.deferred_message_count as i64),
        8 => Value::Number(q.locked_message_count as i64),
        9 => Value::Number(i64::from(q.retry_count)),
        10 => text(&q.last_error),
        11 => time(q.first_retry_time.as_deref()),
        12 => time(q.last_retry_time.as_deref()),
        13 => time(q.next_retry_time.as_deref()),
        14 => rate(q.incoming_rate),
        15 => rate(q.outgoing_rate),
        16 => rate(q.velocity),
        _ => text(&q.tls_domain),
    }
}

/// The query's keys, refusing any not in `allowed`.
pub(crate) fn keys(query: HashMap<String, String>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut unknown: Vec<&String> = query.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(bad_request(format!(
            "unknown query parameter {}: this endpoint takes {}",
            unknown.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "),
            allowed.join(", ")
        )));
    }
    Ok(query)
}

/// The `filter` of a query, parsed against `properties`; a filter error is a 400 naming its position.
pub(crate) fn filter(q: &HashMap<String, String>, properties: &[Property]) -> Result<Option<Filter>, ApiError> {
    let Some(text) = q.get("filter").filter(|f| !f.trim().is_empty()) else { return Ok(None) };
    sluice_filter::parse(text, properties, sluice_transport::alerts::parse_time).map(Some).map_err(|e| {
        crate::ApiError(
            axum::http::StatusCode::BAD_REQUEST,
            format!("filter: {e}"),
            Some(serde_json::json!({ "position": e.position, "token": e.token })),
        )
    })
}

/// `sort_order=-Size,FromAddress`: property indices, descending when `-` (or ascending with `+`).
pub(crate) fn sort_order(q: &HashMap<String, String>, properties: &[Property]) -> Result<Vec<(usize, bool)>, ApiError> {
    let Some(text) = q.get("sort_order").filter(|s| !s.trim().is_empty()) else { return Ok(Vec::new()) };
    let normalize = |s: &str| s.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect::<String>();
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (descending, name) = match part.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            properties
                .iter()
                .position(|p| normalize(p.name) == normalize(name))
                .map(|i| (i, descending))
                .ok_or_else(|| bad_request(format!("sort_order: unknown property {name:?}")))
        })
        .collect()
}

/// Orders values: missing first, numbers by value, text without regard to case.
fn cmp_values(a: &Value<'_>, b: &Value<'_>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Missing, Value::Missing) => Ordering::Equal,
        (Value::Missing, _) => Ordering::Less,
        (_, Value::Missing) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::List(x), Value::List(y)) => x.len().cmp(&y.len()),
        _ => Ordering::Equal,
    }
}

/// Keeps the items `filter` matches and sorts them by `order` (stable: ties keep the listing's order).
pub(crate) fn select<T>(
    items: Vec<T>,
    filter: Option<&Filter>,
    order: &[(usize, bool)],
    value: for<'a> fn(&'a T, usize) -> Value<'a>,
    in_natural_order: fn(&mut [T]),
) -> Vec<T> {
    let mut items: Vec<T> = match filter {
        Some(f) => items.into_iter().filter(|item| f.matches(&|i| value(item, i))).collect(),
        None => items,
    };
    in_natural_order(&mut items);
    if !order.is_empty() {
        items.sort_by(|a, b| {
            for (i, descending) in order {
                let o = cmp_values(&value(a, *i), &value(b, *i));
                let o = if *descending { o.reverse() } else { o };
                if o.is_ne() {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    items
}

/// Whether a queue is one `include`/`exclude` names: `Empty`, `External`, `Internal` or a delivery type.
fn queue_is(q: &api::Queue, what: &str) -> bool {
    match what.to_ascii_lowercase().as_str() {
        "empty" => q.message_count == 0,
        "external" | "internal" => q.next_hop_category.eq_ignore_ascii_case(what),
        _ => q.delivery_type.eq_ignore_ascii_case(what),
    }
}

/// Applies `include` (keep the queues that are any of these) and `exclude` (drop those that are any).
pub(crate) fn include_exclude(
    q: &HashMap<String, String>,
    queues: Vec<api::Queue>,
) -> Result<Vec<api::Queue>, ApiError> {
    let list = |key: &str| -> Result<Vec<String>, ApiError> {
        let Some(v) = q.get(key).filter(|v| !v.trim().is_empty()) else { return Ok(Vec::new()) };
        v.split(',')
            .map(|w| {
                let w = w.trim();
                let known =
                    ["Empty", "External", "Internal"].iter().chain(DELIVERY_TYPES).any(|k| k.eq_ignore_ascii_case(w));
                if known {
                    Ok(w.to_owned())
                } else {
                    Err(bad_request(format!(
                        "{key}: {w:?} is not Empty, External, Internal or a delivery type ({})",
                        DELIVERY_TYPES.join(", ")
                    )))
                }
            })
            .collect()
    };
    let (include, exclude) = (list("include")?, list("exclude")?);
    Ok(queues
        .into_iter()
        .filter(|queue| include.is_empty() || include.iter().any(|w| queue_is(queue, w)))
        .filter(|queue| !exclude.iter().any(|w| queue_is(queue, w)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_property_has_its_value() {
        let q = api::Queue {
            identity: "mx\\16".into(),
            delivery_type: "DnsConnectorDelivery".into(),
            next_hop_domain: "remote.test".into(),
            next_hop_connector: "c".into(),
            next_hop_category: "External".into(),
            status: "Retry".into(),
            message_count: 60,
            deferred_message_count: 60,
            locked_message_count: 0,
            retry_count: 1,
            last_error: Some("451 4.4.0 no".into()),
            first_retry_time: None,
            last_retry_time: None,
            next_retry_time: Some("2026-12-03T00:00:00Z".into()),
            incoming_rate: 5.0,
            outgoing_rate: 0.25,
            velocity: -4.75,
            tls_domain: Some("remote.test".into()),
            message_counts_per_priority: api::PriorityCounts { high: 1, normal: 59, low: 0 },
        };
        let queue_filter =
            |text: &str| sluice_filter::parse(text, QUEUE_PROPERTIES, sluice_transport::alerts::parse_time);
        for text in [
            "Identity -like '*\\16' -and DeliveryType -eq dnsconnectordelivery -and NextHopDomain -eq 'REMOTE.test'",
            "NextHopConnector -eq c -and NextHopCategory -eq external -and Status -eq retry -and MessageCount -gt 10",
            "DeferredMessageCount -eq 60 -and LockedMessageCount -eq 0 -and RetryCount -eq 1 -and LastError -like '451*'",
            "FirstRetryTime -ne '2026-12-01T00:00:00Z' -and NextRetryTime -gt '2026-12-02T00:00:00Z' -and -not (LastRetryTime -lt '2027-01-01T00:00:00Z')",
            "IncomingRate -eq 5 -and OutgoingRate -eq 0.25 -and Velocity -lt -4.7 -and TlsDomain -eq 'remote.test'",
        ] {
            assert!(queue_filter(text).unwrap().matches(&|i| queue_value(&q, i)), "{text}");
        }
        assert_eq!(QUEUE_PROPERTIES.len(), 18);
    }
}
