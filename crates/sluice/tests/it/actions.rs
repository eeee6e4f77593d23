//! Queue and message actions through the binary's admin API, as an administrator drives them: suspend a
//! queue of 100 messages and resume it, retry a queue in Retry once its next hop is back, suspend a message
//! that then survives SIGKILL, export it, remove messages with and without a notice, retry Unreachable with
//! resubmit, and the errors of bad requests.

use std::time::Duration;

use crate::harness::*;

/// A smart host on `port`, retried every `retry` after a failed connection.
fn config(port: u16, retry: &str) -> String {
    format!(
        "[transport]\nqueue_glitch_retry_interval = \"{retry}\"\ntransient_failure_retry_interval = \"{retry}\"\n\n[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"remote.test\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
    )
}

/// A path segment for an identity (`\` is `%5C`).
fn enc(identity: &str) -> String {
    identity.replace('\\', "%5C")
}

fn post(s: &Server, path: &str, body: &str) -> (u16, serde_json::Value) {
    let headers: &[(&str, &str)] =
        if body.is_empty() { &[("X-Sluice-Request", "1")] } else { &[("Content-Type", "application/json")] };
    let (status, text) = http(s.admin, "POST", path, headers, body);
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("POST {path}: {status} {text:?}")))
}

fn delete(s: &Server, path: &str) -> (u16, serde_json::Value) {
    let (status, text) = http(s.admin, "DELETE", path, &[("X-Sluice-Request", "1")], "");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("DELETE {path}: {status} {text:?}")))
}

/// The first delivery queue, once it exists with `status`.
fn wait_for_queue(s: &Server, status: &str) -> serde_json::Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(15), || {
        let (code, body) = s.get("/api/v1/queues/mx%5C16");
        let q: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let here = code == 200 && q["status"] == status;
        found = Some(q);
        here
    });
    assert!(ok, "queue 16 never {status}: {:?}", found);
    found.unwrap()
}

/// The copies in queue 16 (status, identity), oldest first.
fn copies(s: &Server) -> Vec<(String, String)> {
    let v = s.get_json("/api/v1/messages?queue=mx%5C16");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["status"].as_str().unwrap().to_owned(), m["identity"].as_str().unwrap().to_owned()))
        .collect()
}

fn send(s: &Server, from: &str, subject: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let body = format!("Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nHello.\r\n");
    let r = c.mail(from, &["bob@remote.test"], &body);
    assert!(r.starts_with("250"), "{r}");
}

#[test]
fn a_suspended_queue_of_100_messages_delivers_nothing_until_resumed() {
    let port = free_port();
    let s = Server::start(&config(port, "1s"));
    send(&s, "a@client.test", "m0");
    wait_for_queue(&s, "Retry");
    let (status, q) = post(&s, "/api/v1/queues/mx%5C16/suspend", "");
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["status"], "Suspended");
    // The next hop is back, and new mail still enters the suspended queue.
    let sink = Sink::start_on(port);
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for i in 1..100 {
        let r = c.mail("a@client.test", &["bob@remote.test"], &format!("Subject: m{i}\r\n\r\nx\r\n"));
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(wait_until(Duration::from_secs(15), || copies(&s).len() == 100), "{}", copies(&s).len());
    assert!(holds_for(Duration::from_secs(3), || sink.count() == 0), "a suspended queue delivered");
    let q = s.get_json("/api/v1/queues/mx%5C16");
    assert_eq!((q["status"].as_str(), q["message_count"].as_u64()), (Some("Suspended"), Some(100)));
    // The messages keep their own statuses.
    assert!(copies(&s).iter().all(|(st, _)| st == "Ready" || st == "Retry"), "{:?}", copies(&s));

    let (status, q) = post(&s, "/api/v1/queues/mx%5C16/resume", "");
    assert_eq!(status, 200, "{q}");
    assert!(wait_until(Duration::from_secs(20), || sink.count() == 100), "delivered {}", sink.count());
    // Resuming a queue that is not suspended is a conflict that names its state.
    let (status, e) = post(&s, "/api/v1/queues/mx%5C16/resume", "");
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("not suspended"), "{e}");
}

#[test]
fn retry_queue_delivers_within_seconds_once_the_next_hop_is_back() {
    let port = free_port();
    let s = Server::start(&config(port, "60s"));
    send(&s, "a@client.test", "later");
    wait_for_queue(&s, "Retry");
    let sink = Sink::start_on(port);
    let (status, q) = post(&s, "/api/v1/queues/mx%5C16/retry", "");
    assert_eq!(status, 200, "{q}");
    assert!(wait_until(Duration::from_secs(5), || sink.count() == 1), "not delivered within 5 s of Retry-Queue");
    // Now the queue is not in Retry: retrying it is a conflict.
    assert!(wait_until(Duration::from_secs(5), || s.queued() == 0));
    let (status, e) = post(&s, "/api/v1/queues/mx%5C16/retry", "");
    assert_eq!(status, 409, "{e}");
}

#[test]
fn a_suspended_message_survives_sigkill_exports_its_bytes_and_is_delivered_when_resumed() {
    let port = free_port();
    let mut s = Server::start(&config(port, "60s"));
    send(&s, "a@client.test", "keep-me");
    wait_for_queue(&s, "Retry");
    let identity = copies(&s)[0].1.clone();
    assert_eq!(identity, format!("mx\\16\\{}", identity.rsplit('\\').next().unwrap()));

    // Export needs a suspended message.
    let (status, body) = s.get(&format!("/api/v1/messages/{}/export", enc(&identity)));
    assert_eq!(status, 409, "{body}");
    let (status, r) = post(&s, &format!("/api/v1/messages/{}/suspend", enc(&identity)), "");
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["matched"].as_u64(), r["changed"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(r["items"][0]["status"], "Suspended");
    assert_eq!(r["identities"][0], identity.as_str());
    let (status, exported) = s.get(&format!("/api/v1/messages/{}/export", enc(&identity)));
    assert_eq!(status, 200, "{exported}");
    assert!(exported.starts_with("Received: from client.test"), "{exported}");
    assert!(exported.contains("Subject: keep-me\r\n") && exported.ends_with("Hello.\r\n"), "{exported}");
    // The tracking log reaches its file within 200 ms; the kill is not to race it.
    let suspended = || tracking_events(&s.data()).iter().any(|e| e["event_id"] == "SUSPEND");
    assert!(wait_until(Duration::from_secs(5), suspended));

    s.kill9();
    s.spawn();
    let m = s.get_json(&format!("/api/v1/messages/{}", enc(&identity)));
    assert_eq!(m["status"], "Suspended", "{m}");
    let (status, again) = s.get(&format!("/api/v1/messages/{}/export", enc(&identity)));
    assert_eq!((status, again.as_str()), (200, exported.as_str()));
    // Every copy of the message, by its MID.
    let mid = m["mid"].as_u64().unwrap();
    let all = s.get_json(&format!("/api/v1/messages/mx%5C*%5C{mid}"));
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");

    let sink = Sink::start_on(port);
    let (status, r) = post(&s, &format!("/api/v1/messages/{}/resume", enc(&identity)), "");
    assert_eq!(status, 200, "{r}");
    // Resumed, it is ready at once (the queue's retry state did not survive the restart).
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "the resumed message was not delivered");
    let resumed = || tracking_events(&s.data()).iter().any(|e| e["event_id"] == "RESUME");
    assert!(wait_until(Duration::from_secs(5), resumed));
    let events = tracking_events(&s.data());
    for event_id in ["SUSPEND", "RESUME"] {
        let e = events.iter().find(|e| e["event_id"] == event_id && e["mid"] == mid);
        let e = e.unwrap_or_else(|| panic!("no {event_id} event"));
        assert!(e["source"].as_str().unwrap().starts_with("admin API 127.0.0.1:"), "{e}");
    }
}

#[test]
fn remove_with_a_notice_tells_the_sender_and_without_one_does_not_and_both_stay_removed() {
    let port = free_port();
    let mut s = Server::start(&config(port, "60s"));
    send(&s, "sender@localhost", "first");
    send(&s, "sender@localhost", "second");
    assert!(wait_until(Duration::from_secs(15), || copies(&s).len() == 2));
    let ids: Vec<String> = copies(&s).into_iter().map(|(_, id)| id).collect();

    let (status, r) = delete(&s, &format!("/api/v1/messages/{}", enc(&ids[0])));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["changed"], 1);
    let reports = || maildir_new(&s.data(), "localhost", "sender");
    assert!(wait_until(Duration::from_secs(10), || reports().len() == 1), "no notice of the removal");
    let report = std::fs::read_to_string(&reports()[0]).unwrap();
    assert!(report.contains("multipart/report") && report.contains("Status: 5.3.0"), "{report}");
    assert!(report.contains("Action: failed") && report.contains("removed by the administrator"), "{report}");

    let (status, r) = delete(&s, &format!("/api/v1/messages/{}?with_ndr=false", enc(&ids[1])));
    assert_eq!(status, 200, "{r}");
    assert!(holds_for(Duration::from_secs(2), || reports().len() == 1), "a notice without with_ndr");
    assert!(copies(&s).is_empty());

    s.kill9();
    s.spawn();
    for id in &ids {
        let (status, body) = s.get(&format!("/api/v1/messages/{}", enc(id)));
        assert_eq!(status, 404, "{id} came back: {body}");
        let e: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(e["error"].as_str().unwrap().contains("no such message"), "{e}");
    }
    let removed = tracking_events(&s.data()).into_iter().filter(|e| e["event_id"] == "REMOVE").count();
    assert_eq!(removed, 2);
}

#[test]
fn unreachable_suspended_stays_through_a_reload_and_retry_with_resubmit_routes_it() {
    let sink = Sink::start();
    let mut s = Server::start("");
    send(&s, "a@client.test", "nowhere");
    assert!(wait_until(Duration::from_secs(10), || s.get_json("/api/v1/queues/mx%5CUnreachable")["message_count"] == 1));
    let (status, q) = post(&s, "/api/v1/queues/mx%5CUnreachable/suspend", "");
    assert_eq!((status, q["status"].as_str()), (200, Some("Suspended")), "{q}");
    s.extra = config(sink.port, "1s");
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    assert!(holds_for(Duration::from_secs(2), || sink.count() == 0), "a suspended Unreachable was resubmitted");
    // Unreachable is retried only with resubmit.
    let (status, e) = post(&s, "/api/v1/queues/mx%5CUnreachable/retry", "");
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("resubmit"), "{e}");
    let (status, q) = post(&s, "/api/v1/queues/mx%5CUnreachable/retry?resubmit=true", "");
    assert_eq!(status, 200, "{q}");
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "not delivered after Retry-Queue -Resubmit");
    let resubmitted = || tracking_events(&s.data()).iter().any(|e| e["event_id"] == "RESUBMIT");
    assert!(wait_until(Duration::from_secs(5), resubmitted), "no RESUBMIT event");
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let port = free_port();
    let s = Server::start(&config(port, "60s"));
    send(&s, "a@client.test", "stays");
    wait_for_queue(&s, "Retry");
    let good = copies(&s)[0].1.clone();

    let (status, body) = s.get("/api/v1/messages/mx%5C16%5C999999");
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.get("/api/v1/messages/not-a-message");
    assert_eq!(status, 400, "{body}");
    let (status, e) = post(&s, "/api/v1/queues/mx%5C77/suspend", "");
    assert_eq!(status, 404, "{e}");
    let (status, e) = post(&s, "/api/v1/queues/mx%5CSubmission/resume", "");
    assert_eq!(status, 409, "{e}");

    // A list with one unknown identity is refused whole, naming it.
    let body = serde_json::json!({ "identities": [good, "mx\\16\\999999"] }).to_string();
    let (status, e) = post(&s, "/api/v1/messages/suspend", &body);
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["detail"]["identities"][0], "mx\\16\\999999", "{e}");
    assert_eq!(copies(&s)[0].0, "Retry", "nothing was suspended");
    // Resuming a message that is not suspended is a conflict naming its status.
    let (status, e) = post(&s, "/api/v1/messages/resume", &serde_json::json!({ "identities": [good] }).to_string());
    assert_eq!(status, 409, "{e}");
    assert!(e["detail"][0]["error"].as_str().unwrap().contains("not suspended"), "{e}");
    for bad in [r#"{"identities": []}"#, r#"{"identitie": ["x"]}"#, "not json"] {
        let (status, text) =
            http(s.admin, "POST", "/api/v1/messages/suspend", &[("Content-Type", "application/json")], bad);
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["error"].is_string(), "{text}");
    }
    let (status, e) = delete(&s, &format!("/api/v1/messages/{}?with_ndr=maybe", enc(&good)));
    assert_eq!(status, 400, "{e}");
    // The list form acts on every identity and says so.
    let (status, r) = post(&s, "/api/v1/messages/suspend", &serde_json::json!({ "identities": [good] }).to_string());
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["matched"].as_u64(), r["changed"].as_u64()), (Some(1), Some(1)));
    // Repeating it is harmless.
    let (status, r) = post(&s, "/api/v1/messages/suspend", &serde_json::json!({ "identities": [good] }).to_string());
    assert_eq!((status, r["changed"].as_u64()), (200, Some(0)), "{r}");
}

/// The percent-encoding of a query value (enough for filters).
fn q(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[test]
fn lists_are_filtered_and_sorted_and_bulk_actions_act_on_what_a_filter_selects() {
    let port = free_port();
    let s = Server::start(&config(port, "60s"));
    for (from, subject) in [("a@one.test", "small"), ("b@two.test", "other"), ("c@one.test", "third")] {
        send(&s, from, subject);
    }
    assert!(wait_until(Duration::from_secs(15), || copies(&s).len() == 3));
    let listed = |query: &str| -> Vec<String> {
        let v = s.get_json(&format!("/api/v1/messages?{query}"));
        v["items"].as_array().unwrap().iter().map(|m| m["from_address"].as_str().unwrap().to_owned()).collect()
    };
    let f = q("FromAddress -like '*@one.test' -and Status -eq 'retry'");
    assert_eq!(listed(&format!("filter={f}&sort_order=-from_address")), ["c@one.test", "a@one.test"]);
    assert_eq!(listed(&format!("filter={}", q("Recipients -contains 'BOB@remote.test' -and Size -lt 1MB"))).len(), 3);
    assert_eq!(listed("sort_order=%2BFromAddress"), ["a@one.test", "b@two.test", "c@one.test"]);
    // The two examples of the filter language as operators meet it.
    let spec = q("FromAddress -like '*@one.test' -or (Size -gt 1MB -and SCL -ge 7)");
    assert_eq!(listed(&format!("filter={spec}&sort_order=FromAddress")), ["a@one.test", "c@one.test"]);
    let big = s.get_json(&format!("/api/v1/queues?filter={}", q("MessageCount -gt 100 -and Status -eq 'Retry'")));
    assert_eq!(big["items"].as_array().unwrap().len(), 0, "{big}");
    let queues = s.get_json(&format!(
        "/api/v1/queues?filter={}",
        q("MessageCount -ge 3 -and DeliveryType -eq smarthostconnectordelivery")
    ));
    assert_eq!(queues["items"].as_array().unwrap().len(), 1, "{queues}");
    let queues = s.get_json("/api/v1/queues?exclude=Empty");
    assert!(queues["items"].as_array().unwrap().iter().all(|q| q["message_count"].as_u64() > Some(0)), "{queues}");

    // A misspelt key, a bad filter, an unknown sort property: 400, with the filter's position.
    let (status, body) = s.get("/api/v1/messages?filtr=x");
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.get(&format!("/api/v1/messages?filter={}", q("Status -eq 'Bogus'")));
    assert_eq!(status, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["detail"]["position"], 11, "{e}");
    assert_eq!(s.get("/api/v1/messages?sort_order=colour").0, 400);
    assert_eq!(s.get("/api/v1/queues?include=Bogus").0, 400);
    assert_eq!(s.get("/api/v1/alerts?sevrity=Warning").0, 400);

    // Bulk suspension by filter: the two from one.test, and nothing else.
    let (status, r) = post(&s, &format!("/api/v1/messages/suspend?filter={f}"), "");
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["matched"].as_u64(), r["changed"].as_u64()), (Some(2), Some(2)), "{r}");
    let suspended = listed(&format!("filter={}&sort_order=FromAddress", q("Status -eq Suspended")));
    assert_eq!(suspended, ["a@one.test", "c@one.test"]);
    // Nothing matching is an empty answer; a filter and identities together are refused.
    let (status, r) = post(&s, &format!("/api/v1/messages/resume?filter={}", q("FromAddress -eq 'nobody@x.test'")), "");
    assert_eq!((status, r["matched"].as_u64()), (200, Some(0)), "{r}");
    let body = serde_json::json!({ "identities": ["1"] }).to_string();
    let (status, r) = post(&s, &format!("/api/v1/messages/resume?filter={f}"), &body);
    assert_eq!(status, 400, "{r}");
    // Removal by filter without a notice.
    let (status, r) =
        post(&s, &format!("/api/v1/messages/remove?with_ndr=false&filter={}", q("Status -eq Suspended")), "");
    assert_eq!((status, r["changed"].as_u64()), (200, Some(2)), "{r}");
    assert_eq!(listed(""), ["b@two.test"]);
}
