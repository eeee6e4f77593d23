//! `sluice mailq`: every queued message as Postfix's `mailq` lists it, one entry per message (its copies in
//! all queues together): the MID as the queue ID (`*` while a delivery is under way, `!` when suspended), the
//! size, the arrival time (UTC), the sender (`MAILER-DAEMON` for the null sender), then each recipient still
//! to deliver, under the reason of its last deferral in parentheses.

use std::collections::BTreeMap;
use std::process::ExitCode;

use sluice_api_types as api;

use super::say;

use super::client::Api;
use super::{checked, query};

/// One message, all its copies.
#[derive(Default)]
struct Entry {
    size: u64,
    arrival: String,
    sender: String,
    active: bool,
    suspended: bool,
    /// Each pending recipient with the reason its copy is deferred, in the order listed.
    recipients: Vec<(String, Option<String>)>,
}

pub fn run(api: &Api, json: bool) -> anyhow::Result<ExitCode> {
    let mut copies = Vec::new();
    let mut bookmark = None;
    loop {
        let q = query(&[
            ("include_recipient_info", Some("true".into())),
            ("result_size", Some("10000".into())),
            ("bookmark", bookmark.take()),
        ]);
        let r = checked(api.get(&format!("/api/v1/messages{q}"))?)?;
        let page: api::List<api::Message> = serde_json::from_value(r.json()?)?;
        copies.extend(page.items);
        match page.next {
            Some(next) => bookmark = Some(next),
            None => break,
        }
    }
    if json {
        say!("{}", serde_json::to_string(&copies)?);
    } else {
        super::write_out(&render(&copies));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(copies: &[api::Message]) -> String {
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    for c in copies {
        let e = entries.entry(c.mid).or_default();
        e.size = c.size;
        e.arrival = arrival(&c.date_received);
        e.sender = if c.from_address.is_empty() { "MAILER-DAEMON".into() } else { c.from_address.clone() };
        e.active |= c.status == "Active";
        e.suspended |= c.status == "Suspended";
        for r in c.recipients.iter().flatten() {
            e.recipients.push((r.address.clone(), r.last_error.clone().or_else(|| c.last_error.clone())));
        }
    }
    if entries.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = String::from("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut bytes = 0;
    for (mid, e) in &entries {
        bytes += e.size;
        let mark = if e.active {
            "*"
        } else if e.suspended {
            "!"
        } else {
            " "
        };
        // As Postfix: the sender starts in column 41, where the recipients below it do.
        out.push_str(&format!("{:<10}{mark}{:>8} {:<19}  {}\n", mid, e.size, e.arrival, e.sender));
        let mut last_reason: Option<&str> = None;
        for (address, reason) in &e.recipients {
            if let Some(reason) = reason.as_deref().filter(|r| Some(*r) != last_reason) {
                out.push_str(&format!("({})\n", reason.replace(|c: char| c.is_control(), " ")));
                last_reason = Some(reason);
            }
            out.push_str(&format!("{:41}{address}\n", ""));
        }
        out.push('\n');
    }
    let n = entries.len();
    out.push_str(&format!("-- {} Kbytes in {n} Request{}.\n", bytes.div_ceil(1024), if n == 1 { "" } else { "s" }));
    out
}

/// `Thu Dec  3 06:00:00` (UTC) from an RFC 3339 time; the text as it is when it does not parse.
fn arrival(rfc3339: &str) -> String {
    let Some(ms) = sluice_queue_db::time::parse_rfc3339(rfc3339) else { return rfc3339.to_owned() };
    // `Thu, 3 Dec 2026 06:00:00 +0000`
    let text = sluice_queue_db::time::rfc5322(ms);
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        [day, date, month, _year, time, _] => format!("{} {month} {date:>2} {time}", day.trim_end_matches(',')),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(mid: u64, status: &str, from: &str, rcpts: &[&str], error: Option<&str>) -> api::Message {
        serde_json::from_value(serde_json::json!({
            "identity": format!("mx\\16\\{mid}"), "mid": mid, "queue": "mx\\16", "status": status,
            "from_address": from, "original_from_address": from, "internet_message_id": null, "subject": null,
            "size": 2048, "date_received": "2026-12-03T06:05:09.123Z", "expiration_time": "2026-12-05T06:05:09Z",
            "source_ip": "127.0.0.1", "message_source_name": "SMTP:Default", "last_error": error, "retry_count": 1,
            "scl": -1, "priority": "Normal", "directionality": "Incoming", "deferred_reason": null,
            "message_latency": 5,
            "recipients": rcpts.iter().map(|r| serde_json::json!({
                "address": r, "status": status, "last_error": error, "retry_count": 1, "next_hop": "remote.test"
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn the_listing_reads_like_postfix() {
        let out = render(&[
            copy(7, "Retry", "a@client.test", &["b@remote.test", "c@remote.test"], Some("451 4.4.0 refused")),
            copy(9, "Active", "", &["d@other.test"], None),
        ]);
        let want = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n\
                    7              2048 Thu Dec  3 06:05:09  a@client.test\n\
                    (451 4.4.0 refused)\n\
                    \x20                                        b@remote.test\n\
                    \x20                                        c@remote.test\n\
                    \n\
                    9         *    2048 Thu Dec  3 06:05:09  MAILER-DAEMON\n\
                    \x20                                        d@other.test\n\
                    \n\
                    -- 4 Kbytes in 2 Requests.\n";
        assert_eq!(out, want);
        assert_eq!(render(&[]), "Mail queue is empty\n");
    }
}
