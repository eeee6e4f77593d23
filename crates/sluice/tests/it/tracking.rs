//! `GET /api/v1/tracking` (Get-MessageTrackingLog), the retention of the daily files (`[tracking] max_age`),
//! and `GET /api/v1/tophosts` / `GET /api/v1/hosts/{domain}` (ESA's `tophosts` and `hoststatus`) from the
//! binary: a scripted run to two loopback sinks, one per next hop, whose events and per-host counts are
//! known.

use std::time::Duration;

use sluice_queue_db::time::{date, now_ms};

use crate::harness::*;

/// Two smart-host connectors, one sink each: `a.test` to `a`, `b.test` to `b` (the sinks refuse `reject*`
/// with 550 and `later*` with 451). The sender's mailbox is local, so that failure notices are delivered.
fn config(a: u16, b: u16) -> String {
    format!(
        "[transport]\nmessage_retry_interval = \"1h\"\n\n\
         [[send_connectors]]\nname = \"A\"\naddress_spaces = [\"a.test\"]\nsmart_hosts = [\"127.0.0.1:{a}\"]\n\n\
         [[send_connectors]]\nname = \"B\"\naddress_spaces = [\"b.test\"]\nsmart_hosts = [\"127.0.0.1:{b}\"]\n\n\
         [[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"sender\"]\n"
    )
}

/// The items of a tracking search (asserting a 200).
fn track(s: &Server, query: &str) -> Vec<serde_json::Value> {
    let v = s.get_json(&format!("/api/v1/tracking?{query}"));
    v["items"].as_array().unwrap().clone()
}

fn event_ids(items: &[serde_json::Value]) -> Vec<String> {
    items.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

fn send(s: &Server, from: &str, to: &[&str], subject: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail(from, to, &format!("Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nbody\r\n"));
    assert!(r.starts_with("250"), "{r}");
}

#[test]
fn a_delivered_message_is_found_by_sender_and_a_refused_one_by_recipient_and_mid() {
    let (a, b) = (Sink::start(), Sink::start());
    let s = Server::start(&config(a.port, b.port));
    send(&s, "Sender@localhost", &["ok@a.test"], "delivered");
    assert!(wait_until(Duration::from_secs(20), || a.count() == 1), "{}", s.log());

    // The DELIVER event is logged just before the copy is done: a search right after sees it (the buffered
    // events are written first), at the latest a moment later.
    let found = || track(&s, "sender=sender%40LOCALHOST");
    assert!(wait_until(Duration::from_secs(5), || event_ids(&found()).contains(&"DELIVER".to_owned())));
    let items = found();
    assert_eq!(event_ids(&items), ["RECEIVE", "SUBMIT", "SCAN", "ROUTE", "DELIVER"], "{items:?}");
    let mid = items[0]["mid"].as_u64().unwrap();
    assert!(items.iter().all(|e| e["mid"] == mid && e["sender"] == "Sender@localhost"), "{items:?}");
    assert_eq!(items[4]["recipients"], serde_json::json!(["ok@a.test"]));
    assert!(items[4]["queue"].as_str().unwrap().starts_with("mx\\"), "{items:?}");
    assert!(items[4]["reply"].as_str().unwrap().starts_with("250"), "{items:?}");
    assert_eq!(items[0]["internet_message_id"], "<delivered@client.test>");
    // A wildcard, an event id in any case, the Message-ID without brackets.
    assert_eq!(event_ids(&track(&s, "sender=*%40localhost&event_id=deliver")), ["DELIVER"]);
    assert_eq!(track(&s, "internet_message_id=delivered%40client.test").len(), 5);
    assert!(track(&s, "sender=other%40localhost").is_empty());

    // A 5xx recipient: FAIL for it, and a DSN event naming the notice.
    send(&s, "sender@localhost", &["reject@b.test"], "refused");
    let failed = || track(&s, "recipient=REJECT%40b.test");
    assert!(wait_until(Duration::from_secs(20), || event_ids(&failed()).contains(&"FAIL".to_owned())), "{}", s.log());
    let items = failed();
    let refused_mid = items[0]["mid"].as_u64().unwrap();
    assert_ne!(refused_mid, mid);
    let fail = items.iter().find(|e| e["event_id"] == "FAIL").unwrap();
    assert!(fail["reply"].as_str().unwrap().starts_with("550 5.1.1"), "{fail}");
    let dsn = || track(&s, &format!("mid={refused_mid}&event_id=DSN"));
    assert!(wait_until(Duration::from_secs(10), || dsn().len() == 1), "{:?}", track(&s, &format!("mid={refused_mid}")));
    let of_mid = event_ids(&track(&s, &format!("mid={refused_mid}")));
    assert_eq!(of_mid[..4], ["RECEIVE", "SUBMIT", "SCAN", "ROUTE"], "{of_mid:?}");
    assert!(of_mid.contains(&"FAIL".to_owned()) && of_mid.contains(&"DSN".to_owned()), "{of_mid:?}");

    // Pages: one event each, then a bookmark to the next; the pages together are the whole answer.
    let all = track(&s, &format!("mid={refused_mid}"));
    let mut paged = Vec::new();
    let mut next = String::new();
    loop {
        let bookmark = if next.is_empty() { String::new() } else { format!("&bookmark={next}") };
        let v = s.get_json(&format!("/api/v1/tracking?mid={refused_mid}&result_size=1{bookmark}"));
        paged.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => next = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, all);

    // A time range: the events are of now, not of an hour ago, and all of them are within the last hour.
    let hour_ago = sluice_queue_db::time::rfc3339(now_ms() - 3_600_000);
    let later = sluice_queue_db::time::rfc3339(now_ms() + 60_000);
    assert!(track(&s, &format!("end={hour_ago}")).is_empty());
    assert_eq!(track(&s, &format!("start={hour_ago}&end={later}&mid={refused_mid}")).len(), all.len());
    assert!(track(&s, &format!("start={later}")).is_empty());
}

#[test]
fn a_bad_tracking_query_is_a_400_naming_what_is_wrong() {
    let s = Server::start("");
    for (query, named) in [
        ("event_id=DELIVERED", "event_id"),
        ("start=yesterday", "start"),
        ("end=2026-12-01", "end"),
        ("mid=twelve", "mid"),
        ("result_size=0", "result_size"),
        ("senders=a%40b", "senders"),
        ("bookmark=nowhere", "bookmark"),
    ] {
        let (status, body) = s.get(&format!("/api/v1/tracking?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(named), "{query}: {body}");
    }
    let (status, body) = s.get("/api/v1/tophosts?sort=bounced");
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.get("/api/v1/hosts/nowhere.test");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nowhere.test"), "{body}");
}

#[test]
fn daily_files_older_than_max_age_are_deleted_at_start_and_on_reload() {
    let mut s = Server::start("[tracking]\nmax_age = \"30d\"\n");
    let dir = s.data().join("tracking");
    let day = |days_ago: i64| date(now_ms() - days_ago * 86_400_000);
    let file = |days_ago: i64| dir.join(format!("tracking-{}.log", day(days_ago)));
    s.kill9();
    let old_event = format!(
        "{{\"time\":\"{}T12:00:00.000Z\",\"event_id\":\"RECEIVE\",\"mid\":1,\"sender\":\"old@x\",\"recipients\":[]}}\n",
        day(40)
    );
    std::fs::write(file(40), &old_event).unwrap();
    std::fs::write(file(5), old_event.replace(&day(40), &day(5))).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a tracking file").unwrap();
    s.spawn();
    assert!(wait_until(Duration::from_secs(5), || !file(40).exists()), "{}", s.log());
    assert!(file(5).exists() && dir.join("notes.txt").exists());
    // The file of five days ago is searched like today's.
    assert_eq!(event_ids(&track(&s, "sender=old%40x")), ["RECEIVE"]);

    // A shorter max_age takes effect on reload.
    s.extra = "[tracking]\nmax_age = \"2d\"\n".into();
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("tracking.max_age"), "neither restart-only nor not in effect: {body}");
    assert!(wait_until(Duration::from_secs(5), || !file(5).exists()), "{}", s.log());
    assert!(track(&s, "sender=old%40x").is_empty());
}

#[test]
fn tophosts_and_hoststatus_count_a_scripted_run_per_next_hop() {
    let (a, b) = (Sink::start(), Sink::start());
    let s = Server::start(&config(a.port, b.port));
    let (host_a, host_b) = (format!("127.0.0.1:{}", a.port), format!("127.0.0.1:{}", b.port));
    // Three messages of two recipients to A; to B one refused for good and one deferred.
    for i in 0..3 {
        send(&s, "sender@localhost", &["ok1@a.test", "ok2@a.test"], &format!("a{i}"));
    }
    send(&s, "sender@localhost", &["reject@b.test", "later@b.test"], "b");
    let host = |h: &str| s.get_json(&format!("/api/v1/hosts/{h}"));
    let settled = wait_until(Duration::from_secs(30), || {
        a.count() == 3
            && host(&host_a)["delivered_recipients"] == 6
            && s.get(&format!("/api/v1/hosts/{host_b}")).0 == 200
            && host(&host_b)["hard_bounced_recipients"] == 1
            && host(&host_b)["soft_bounced_events"] == 1
            && host(&host_b)["active_recipients"] == 1
    });
    assert!(
        settled,
        "{}\n{}",
        s.get(&format!("/api/v1/hosts/{host_a}")).1,
        s.get(&format!("/api/v1/hosts/{host_b}")).1
    );

    let ha = host(&host_a);
    assert_eq!(ha["domain"], host_a);
    assert_eq!((ha["hard_bounced_recipients"].as_u64(), ha["soft_bounced_events"].as_u64()), (Some(0), Some(0)));
    assert_eq!(ha["active_recipients"], 0);
    assert!(ha["last_activity"].is_string(), "{ha}");
    let queues = ha["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "{ha}");
    assert!(queues[0]["identity"].as_str().unwrap().starts_with("mx\\"), "{ha}");
    assert_eq!(queues[0]["delivery_type"], "SmartHostConnectorDelivery");
    // The connector's GUID.
    assert!(queues[0]["next_hop_connector"].as_str().is_some_and(|c| !c.is_empty()), "{ha}");
    let hb = host(&host_b);
    assert_eq!(hb["delivered_recipients"], 0, "{hb}");
    assert_eq!(hb["queues"][0]["message_count"], 1, "{hb}");
    assert!(["Ready", "Active", "Retry", "Connecting"].contains(&hb["queues"][0]["status"].as_str().unwrap()), "{hb}");

    // The notice of the refused recipient went to the sender's mailbox: the Local Maildir next hop.
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "sender").len() == 1));
    let top = |query: &str| -> Vec<String> {
        let v = s.get_json(&format!("/api/v1/tophosts?{query}"));
        assert!(v["next"].is_null(), "{v}");
        v["items"].as_array().unwrap().iter().map(|h| h["domain"].as_str().unwrap().to_owned()).collect()
    };
    assert!(wait_until(Duration::from_secs(10), || top("sort=delivered")
        == [host_a.clone(), "local maildir".to_owned(), host_b.clone()]));
    assert_eq!(top("sort=hard_bounced&result_size=1"), [host_b.as_str()]);
    assert_eq!(top("sort=active")[0], host_b);
    assert_eq!(top("")[0], host_b, "active is the default order");
    assert_eq!(top("sort=soft_bounced&result_size=2")[0], host_b);
    // hoststatus takes the domain in any case.
    assert_eq!(host("LOCAL%20MAILDIR")["delivered_recipients"], 1);
}
