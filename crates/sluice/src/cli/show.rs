//! How each answer of the admin API is shown to people.

use sluice_api_types as api;

use super::say;
use sluice_api_types as st;

use super::table::Table;

/// A rate with two decimals, as the queue listings carry it.
fn rate(r: f64) -> String {
    format!("{r:.2}")
}

fn opt(text: &Option<String>) -> String {
    text.clone().unwrap_or_default()
}

pub fn queues(list: &api::List<api::Queue>) -> anyhow::Result<()> {
    let mut t =
        Table::new(&["Identity", "DeliveryType", "Status", "MessageCount", "Velocity", "NextHopDomain", "LastError"])
            .right(&["MessageCount", "Velocity"])
            .keep(&["Identity"]);
    for q in &list.items {
        t.row(vec![
            q.identity.clone(),
            q.delivery_type.clone(),
            q.status.clone(),
            q.message_count.to_string(),
            rate(q.velocity),
            q.next_hop_domain.clone(),
            opt(&q.last_error),
        ]);
    }
    t.print();
    more(&list.next);
    Ok(())
}

pub fn messages(list: &api::List<api::Message>, recipients: bool) -> anyhow::Result<()> {
    let mut t =
        Table::new(&["Identity", "FromAddress", "Status", "Size", "MessageSourceName", "SCL", "Queue", "Subject"])
            .right(&["Size", "SCL"])
            .keep(&["Identity"]);
    for m in &list.items {
        t.row(vec![
            m.identity.clone(),
            m.from_address.clone(),
            m.status.clone(),
            m.size.to_string(),
            m.message_source_name.clone(),
            m.scl.to_string(),
            m.queue.clone(),
            opt(&m.subject),
        ]);
    }
    t.print();
    if recipients {
        for m in &list.items {
            for r in m.recipients.iter().flatten() {
                say!("{}  {}  {}  {}", m.identity, r.address, r.status, opt(&r.last_error));
            }
        }
    }
    more(&list.next);
    Ok(())
}

/// Says where the next page starts, when there is one.
pub(super) fn more(next: &Option<String>) {
    if let Some(next) = next {
        eprintln!("more: --bookmark {next}");
    }
}

/// Every property of an object, one `Name: value` line each (nested values as compact JSON).
pub fn properties(v: &serde_json::Value) -> anyhow::Result<()> {
    let Some(object) = v.as_object() else {
        say!("{v}");
        return Ok(());
    };
    let width = object.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in object {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        say!("{k:<width$}  {}", text.replace(|c: char| c.is_control(), " "));
    }
    Ok(())
}

/// A message: each copy's properties, then its recipients as a table.
pub fn message_detail(v: &serde_json::Value) -> anyhow::Result<()> {
    let copies = match v.as_array() {
        Some(copies) => copies.clone(),
        None => vec![v.clone()],
    };
    for (i, copy) in copies.iter().enumerate() {
        if i > 0 {
            say!("");
        }
        let mut without = copy.clone();
        let recipients = without.as_object_mut().and_then(|o| o.remove("recipients"));
        properties(&without)?;
        if let Some(list) = recipients.and_then(|r| serde_json::from_value::<Vec<api::Recipient>>(r).ok()) {
            say!("");
            let mut t =
                Table::new(&["Recipient", "Status", "RetryCount", "NextHop", "LastError"]).right(&["RetryCount"]);
            for r in list {
                t.row(vec![r.address, r.status, r.retry_count.to_string(), r.next_hop, opt(&r.last_error)]);
            }
            t.print();
        }
    }
    Ok(())
}

/// The answer to an action: one object (`identity: status`) or a list action's counts and identities.
pub fn action(verb: &str, v: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(matched) = v.get("matched").and_then(|m| m.as_u64()) {
        let changed = v.get("changed").and_then(|c| c.as_u64()).unwrap_or(0);
        say!("{verb}: {matched} matched, {changed} changed");
        for id in v.get("identities").and_then(|i| i.as_array()).into_iter().flatten() {
            say!("  {}", id.as_str().unwrap_or_default());
        }
    } else if let (Some(id), Some(status)) = (v.get("identity"), v.get("status")) {
        say!("{}: {}", id.as_str().unwrap_or_default(), status.as_str().unwrap_or_default());
    } else {
        say!("{verb}: done");
    }
    Ok(())
}

pub fn digest(list: &api::List<api::DigestRow>) -> anyhow::Result<()> {
    let mut t = Table::new(&["Group", "MessageCount", "QueueCount", "DeliveryType", "Status", "Velocity", "LastError"])
        .right(&["MessageCount", "QueueCount", "Velocity"]);
    for r in &list.items {
        t.row(vec![
            r.group.clone(),
            r.message_count.to_string(),
            r.queue_count.to_string(),
            r.delivery_type.clone(),
            r.status.clone(),
            rate(r.velocity),
            opt(&r.last_error),
        ]);
    }
    t.print();
    more(&list.next);
    Ok(())
}

pub fn alerts(list: &api::List<api::Alert>) -> anyhow::Result<()> {
    let mut t = Table::new(&["Time", "Severity", "Class", "Text"]);
    for a in &list.items {
        let text =
            if a.suppressed > 0 { format!("{} ({} more suppressed)", a.text, a.suppressed) } else { a.text.clone() };
        t.row(vec![a.time.clone(), a.severity.clone(), a.class.clone(), text]);
    }
    t.print();
    more(&list.next);
    Ok(())
}

pub fn reload(r: &api::ReloadResult) -> anyhow::Result<()> {
    say!("configuration reloaded");
    for key in &r.restart_required {
        say!("  {key}: changed, takes effect only after a restart");
    }
    for key in &r.not_yet_in_effect {
        say!("  {key}: accepted, not yet in effect in this release");
    }
    Ok(())
}

pub fn resubmit_requests(items: &[api::ResubmitRequest]) -> anyhow::Result<()> {
    let mut t = Table::new(&["Id", "Status", "Enabled", "StartTime", "EndTime", "Matched", "Resubmitted", "Criteria"])
        .right(&["Id", "Matched", "Resubmitted"]);
    for r in items {
        let criteria: Vec<String> =
            [("sender", &r.sender), ("recipient", &r.recipient), ("message-id", &r.internet_message_id)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect();
        t.row(vec![
            r.id.to_string(),
            r.status.clone(),
            r.enabled.to_string(),
            r.start_time.clone(),
            r.end_time.clone(),
            r.matched.to_string(),
            r.resubmitted.to_string(),
            criteria.join(" "),
        ]);
    }
    t.print();
    Ok(())
}

/// The appliance's `status` (the essentials) or `status detail` (everything), as of now.
pub fn status(s: &st::Status, detail: bool) -> anyhow::Result<()> {
    super::write_out(&super::status::render_status(s, detail, sluice_queue_db::time::now_ms()));
    Ok(())
}

/// Tracking events, one line each: time, event, MID, sender -> recipients, then where and what was answered.
pub fn tracking(list: &api::List<api::TrackingEvent>) -> anyhow::Result<()> {
    if list.items.is_empty() {
        eprintln!("no tracking events found");
    }
    for e in &list.items {
        let sender = if e.sender.is_empty() { "<>" } else { &e.sender };
        let mut line = format!("{}  {:<13} MID {}  {sender} -> {}", e.time, e.event_id, e.mid, e.recipients.join(", "));
        for (key, value) in [("queue", &e.queue), ("source", &e.source), ("reply", &e.reply)] {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                line.push_str(&format!("  {key}={value}"));
            }
        }
        if let Some(a) = &e.audit {
            line.push_str(&format!("  {} {} -> {}", a.method, a.path, a.status));
        }
        say!("{}", line.replace(|c: char| c.is_control(), " "));
    }
    more(&list.next);
    Ok(())
}

pub fn tophosts(list: &api::List<api::Host>) -> anyhow::Result<()> {
    let mut t =
        Table::new(&["Domain", "Active", "Connections", "Delivered", "SoftBounced", "HardBounced", "LastActivity"])
            .right(&["Active", "Connections", "Delivered", "SoftBounced", "HardBounced"])
            .keep(&["Domain"]);
    for h in &list.items {
        t.row(vec![
            h.domain.clone(),
            h.active_recipients.to_string(),
            h.connections.to_string(),
            h.delivered_recipients.to_string(),
            h.soft_bounced_events.to_string(),
            h.hard_bounced_recipients.to_string(),
            opt(&h.last_activity),
        ]);
    }
    t.print();
    more(&list.next);
    Ok(())
}

pub fn hoststatus(h: &api::Host) -> anyhow::Result<()> {
    say!("Host:                     {}", h.domain);
    say!("Last activity:            {}", h.last_activity.as_deref().unwrap_or("none"));
    say!("Active recipients:        {}", h.active_recipients);
    say!("Outbound connections:     {}", h.connections);
    say!("Delivered recipients:     {}", h.delivered_recipients);
    say!("Soft bounced events:      {}", h.soft_bounced_events);
    say!("Hard bounced recipients:  {}", h.hard_bounced_recipients);
    say!("Last error:               {}", opt(&h.last_error).replace(|c: char| c.is_control(), " "));
    if !h.queues.is_empty() {
        say!("");
        let mut t = Table::new(&["Queue", "Status", "DeliveryType", "MessageCount", "NextRetryTime", "LastError"])
            .right(&["MessageCount"])
            .keep(&["Queue"]);
        for q in &h.queues {
            t.row(vec![
                q.identity.clone(),
                q.status.clone(),
                q.delivery_type.clone(),
                q.message_count.to_string(),
                opt(&q.next_retry_time),
                opt(&q.last_error),
            ]);
        }
        t.print();
    }
    Ok(())
}
