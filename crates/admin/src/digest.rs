//! `GET /api/v1/queue-digest` (Get-QueueDigest): the queues grouped by a property, largest group first.
//!
//! A delivery queue is counted once it holds `digest_threshold` messages (`[transport] digest_threshold`, or
//! the query's); Submission, Unreachable, Poison and suspended queues count from one message, since any mail
//! there needs a look. Rows carry counts and rates that add up across servers (`api::DigestRow::merge`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use sluice_api_types as api;

use crate::{AdminState, ApiError, bad_request, page, query};

pub(crate) const KEYS: &[&str] =
    &["group_by", "filter", "include", "exclude", "digest_threshold", "details_level", "result_size", "bookmark"];

/// The property of a queue a digest groups by.
pub(crate) type GroupKey = fn(&api::Queue) -> String;

/// What rows group queues by: the `group_by` values and the property each reads.
pub(crate) const GROUPS: &[(&str, GroupKey)] = &[
    ("next_hop_domain", |q| q.next_hop_domain.clone()),
    ("last_error", |q| q.last_error.clone().unwrap_or_default()),
    ("delivery_type", |q| q.delivery_type.clone()),
    ("status", |q| q.status.clone()),
    ("queue_name", |q| q.identity.clone()),
    ("next_hop_category", |q| q.next_hop_category.clone()),
];

/// How much of each queue a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Details {
    None,
    Normal,
    Verbose,
}

/// The query of `GET /api/v1/queue-digest`; any other key is a 400.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct DigestQuery {
    /// `next_hop_domain` (default), `last_error`, `delivery_type`, `status`, `queue_name` or
    /// `next_hop_category`.
    group_by: Option<String>,
    /// An OPATH filter over queue properties: only the queues it selects are counted.
    filter: Option<String>,
    /// Only these queues (comma-separated): `Empty`, `External`, `Internal` or a DeliveryType.
    include: Option<String>,
    /// Not these queues, as `include`.
    exclude: Option<String>,
    /// The messages a delivery queue needs to be counted (default `[transport] digest_threshold`).
    digest_threshold: Option<u64>,
    /// `None`, `Normal` (default: each queue's identity, status and count) or `Verbose` (each whole queue).
    details_level: Option<String>,
    /// Rows per page (1..250000; default 1000).
    result_size: Option<u32>,
    /// The `next` of the previous page.
    bookmark: Option<String>,
}

/// Get-QueueDigest: the queues grouped by a property, largest group first.
#[utoipa::path(get, path = "/api/v1/queue-digest", tag = "queues", params(DigestQuery),
    responses((status = 200, body = api::List<api::DigestRow>), crate::openapi::Errors))]
pub(crate) async fn queue_digest(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<api::List<api::DigestRow>>, ApiError> {
    let q = query::keys(q, KEYS)?;
    let key = group_key(&q, false)?.unwrap_or(GROUPS[0].1);
    let (threshold, details) = threshold_and_details(&q, u64::from(s.transport.digest_threshold()))?;
    let queues = crate::select_queues(&s, &q)?;
    let keyed = queues.into_iter().map(|q| (key(&q), q)).collect();
    Ok(Json(page(digest(keyed, threshold, details), &q)?))
}

/// The `group_by` of a digest query: one of [`GROUPS`], or `node` where `nodes` is true (the cluster
/// digest); `None` for `node`.
pub(crate) fn group_key(q: &HashMap<String, String>, nodes: bool) -> Result<Option<GroupKey>, ApiError> {
    let normalize = |s: &str| s.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect::<String>();
    let group_by = q.get("group_by").map_or("next_hop_domain", String::as_str);
    if nodes && normalize(group_by) == "node" {
        return Ok(None);
    }
    let (_, key) = GROUPS.iter().find(|(name, _)| normalize(name) == normalize(group_by)).ok_or_else(|| {
        let mut names: Vec<&str> = GROUPS.iter().map(|(n, _)| *n).collect();
        if nodes {
            names.push("node");
        }
        bad_request(format!("group_by: {group_by:?} is not one of {}", names.join(", ")))
    })?;
    Ok(Some(*key))
}

/// The `digest_threshold` and `details_level` of a digest query.
pub(crate) fn threshold_and_details(q: &HashMap<String, String>, default: u64) -> Result<(u64, Details), ApiError> {
    let threshold = match q.get("digest_threshold") {
        None => default,
        Some(t) => t.parse().map_err(|_| bad_request(format!("digest_threshold must be a whole number, not {t:?}")))?,
    };
    let details = match q.get("details_level").map(|d| d.to_ascii_lowercase()).as_deref() {
        None | Some("normal") => Details::Normal,
        Some("none") => Details::None,
        Some("verbose") => Details::Verbose,
        Some(_) => return Err(bad_request("details_level must be None, Normal or Verbose")),
    };
    Ok((threshold, details))
}

/// Whether a queue is counted in the digest.
fn counted(q: &api::Queue, threshold: u64) -> bool {
    let delivery = matches!(
        q.delivery_type.as_str(),
        "DnsConnectorDelivery" | "SmartHostConnectorDelivery" | "SmtpDeliveryToMailbox"
    );
    let from = if delivery && q.status != "Suspended" { threshold.max(1) } else { 1 };
    q.message_count >= from
}

/// The rows: queues grouped by their key, largest group first (then by name).
pub(crate) fn digest(queues: Vec<(String, api::Queue)>, threshold: u64, details: Details) -> Vec<api::DigestRow> {
    let mut groups: BTreeMap<String, Vec<api::Queue>> = BTreeMap::new();
    for (key, q) in queues.into_iter().filter(|(_, q)| counted(q, threshold)) {
        groups.entry(key).or_default().push(q);
    }
    let mut rows: Vec<api::DigestRow> = groups.into_iter().map(|(group, queues)| row(group, queues, details)).collect();
    rows.sort_by(|a, b| b.message_count.cmp(&a.message_count).then_with(|| a.group.cmp(&b.group)));
    rows
}

fn row(group: String, mut queues: Vec<api::Queue>, details: Details) -> api::DigestRow {
    queues.sort_by_key(|q| std::cmp::Reverse(q.message_count));
    let largest = &queues[0];
    let mut r = api::DigestRow {
        group,
        message_count: 0,
        queue_count: queues.len() as u64,
        delivery_type: largest.delivery_type.clone(),
        status: largest.status.clone(),
        last_error: largest.last_error.clone(),
        incoming_rate: 0.0,
        outgoing_rate: 0.0,
        velocity: 0.0,
        queues_by_status: BTreeMap::new(),
        queues: None,
    };
    for q in &queues {
        r.message_count += q.message_count;
        r.incoming_rate += q.incoming_rate;
        r.outgoing_rate += q.outgoing_rate;
        r.velocity += q.velocity;
        *r.queues_by_status.entry(q.status.clone()).or_default() += 1;
    }
    r.queues = match details {
        Details::None => None,
        Details::Normal => Some(
            queues
                .into_iter()
                .map(|q| api::DigestQueue::Normal {
                    identity: q.identity,
                    status: q.status,
                    message_count: q.message_count,
                })
                .collect(),
        ),
        Details::Verbose => Some(queues.into_iter().map(|q| api::DigestQueue::Verbose(Box::new(q))).collect()),
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: u32, domain: &str, count: u64, status: &str) -> api::Queue {
        api::Queue {
            identity: format!("mx\\{id}"),
            delivery_type: if id >= 16 { "DnsConnectorDelivery" } else { "Undefined" }.into(),
            next_hop_domain: domain.into(),
            next_hop_connector: String::new(),
            next_hop_category: "External".into(),
            status: status.into(),
            message_count: count,
            deferred_message_count: 0,
            locked_message_count: 0,
            retry_count: 0,
            last_error: (status == "Retry").then(|| "421 4.4.0 refused".to_owned()),
            first_retry_time: None,
            last_retry_time: None,
            next_retry_time: None,
            incoming_rate: 1.0,
            outgoing_rate: 0.5,
            velocity: -0.5,
            tls_domain: None,
            message_counts_per_priority: api::PriorityCounts { high: 0, normal: count, low: 0 },
        }
    }

    #[test]
    fn delivery_queues_below_the_threshold_are_left_out_and_the_largest_group_comes_first() {
        let queues = vec![
            queue(0, "Submission", 2, "Active"),
            queue(16, "a.test", 12, "Ready"),
            queue(17, "b.test", 60, "Retry"),
            queue(18, "c.test", 5, "Ready"),
            queue(19, "d.test", 30, "Retry"),
            queue(20, "e.test", 3, "Suspended"),
        ];
        let rows = digest(queues.iter().map(|q| (GROUPS[0].1(q), q.clone())).collect(), 10, Details::None);
        let shown: Vec<(&str, u64)> = rows.iter().map(|r| (r.group.as_str(), r.message_count)).collect();
        assert_eq!(shown, [("b.test", 60), ("d.test", 30), ("a.test", 12), ("e.test", 3), ("Submission", 2)]);
        assert!(rows.iter().all(|r| r.queues.is_none()));

        // By status: the two Retry queues make one row, with their counts and rates added.
        let rows = digest(queues.into_iter().map(|q| (GROUPS[3].1(&q), q)).collect(), 10, Details::Normal);
        assert_eq!(rows[0].group, "Retry");
        assert_eq!((rows[0].message_count, rows[0].queue_count), (90, 2));
        assert_eq!((rows[0].incoming_rate, rows[0].velocity), (2.0, -1.0));
        assert_eq!(rows[0].last_error.as_deref(), Some("421 4.4.0 refused"));
        let listed: Vec<&str> = rows[0].queues.iter().flatten().map(api::DigestQueue::identity).collect();
        assert_eq!(listed, ["mx\\17", "mx\\19"]);
    }
}
