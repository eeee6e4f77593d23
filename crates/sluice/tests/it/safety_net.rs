//! Safety Net resubmission through the binary: two messages from different senders are delivered to a
//! sink; the Safety Net index and a resubmit request survive SIGKILL and a restart; the request for one
//! sender's window sends that message again (and not the other) with no delivery status notice; bad input
//! gets 400, an unknown id 404, a change to a completed request 409.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn config(sink_port: u16) -> String {
    format!(
        "[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{sink_port}\"]\n"
    )
}

/// A state-changing call on the admin API with a JSON body: (status, answer).
fn call(s: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(s.admin, method, path, &[("Content-Type", "application/json")], &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A time `secs` from now, RFC 3339.
fn at(secs: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t = now + secs;
    // Days since the epoch to a civil date (Howard Hinnant's algorithm), as the server's own clock writes.
    let (days, rest) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Messages the sink took from the null sender: notices.
fn notices(sink: &Sink) -> usize {
    sink.commands.lock().unwrap().iter().filter(|c| c.to_ascii_uppercase().starts_with("MAIL FROM:<>")).count()
}

fn subject_count(sink: &Sink, subject: &str) -> u32 {
    sink.subjects.lock().unwrap().get(subject).copied().unwrap_or(0)
}

#[test]
fn a_delivered_message_is_resubmitted_from_the_safety_net_by_window_and_sender_without_a_notice() {
    let sink = Sink::start();
    let mut s = Server::start(&config(sink.port));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    // A local recipient asks to hear of success: the first delivery into its mailbox makes one notice (to
    // the sink, from the null sender), and a resubmission must make none.
    assert!(c.cmd("MAIL FROM:<alice@client.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@localhost> NOTIFY=SUCCESS").starts_with("250"));
    assert!(c.cmd("RCPT TO:<frank@remote.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: first\r\nMessage-ID: <first@client.test>\r\n\r\nfirst body\r\n.\r\n");
    assert!(c.read().starts_with("250"));
    let r = c.mail("carol@client.test", &["dave@remote.test"], "Subject: second\r\n\r\nsecond body\r\n");
    assert!(r.starts_with("250"), "{r}");
    let mailbox = |s: &Server| maildir_new(&s.data(), "localhost", "bob").len();
    let delivered = || {
        subject_count(&sink, "first") == 1
            && subject_count(&sink, "second") == 1
            && notices(&sink) == 1
            && mailbox(&s) == 1
    };
    assert!(
        wait_until(Duration::from_secs(20), delivered),
        "not delivered: {:?} {:?}: {}",
        sink.subjects.lock().unwrap(),
        sink.commands.lock().unwrap(),
        s.log()
    );
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 0));
    let received = |e: &Value| e["event_id"] == "RECEIVE" && e["sender"] == "alice@client.test";
    // The tracking log is written every 200 ms.
    assert!(wait_until(Duration::from_secs(5), || tracking_events(&s.data()).iter().any(received)));
    let original = tracking_events(&s.data()).into_iter().find(received).unwrap()["mid"].as_u64().unwrap();

    // The deliveries' records are written within 100 ms of them; then the process dies without a word.
    std::thread::sleep(Duration::from_millis(500));
    s.kill9();
    s.spawn();

    let (status, added) = call(
        &s,
        "POST",
        "/api/v1/resubmit-requests",
        json!({"start_time": at(-600), "end_time": at(600), "sender": "Alice@Client.test"}),
    );
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_u64().unwrap();
    assert_eq!(added["enabled"], true);
    assert!(added["origin"].as_str().unwrap().starts_with("admin API 127.0.0.1:"), "{added}");
    let path = format!("/api/v1/resubmit-requests/{id}");
    let completed = || s.get_json(&path)["status"] == "Completed";
    assert!(wait_until(Duration::from_secs(20), completed), "{}: {}", s.get_json(&path), s.log());
    let done = s.get_json(&path);
    assert_eq!((done["matched"].as_u64(), done["resubmitted"].as_u64()), (Some(1), Some(1)), "{done}");
    assert!(done["completed"].is_string(), "{done}");

    let again = || subject_count(&sink, "first") == 2 && mailbox(&s) == 2;
    assert!(wait_until(Duration::from_secs(20), again), "not resubmitted: {}", s.log());
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 0));
    assert!(
        holds_for(Duration::from_secs(2), || subject_count(&sink, "second") == 1 && notices(&sink) == 1),
        "the other sender's message or a notice went: {:?}",
        sink.commands.lock().unwrap()
    );
    let resubmit = |e: &Value| e["event_id"] == "RESUBMIT";
    assert!(wait_until(Duration::from_secs(5), || tracking_events(&s.data()).iter().any(resubmit)));
    let event = tracking_events(&s.data()).into_iter().find(resubmit).unwrap();
    assert!(event["source"].as_str().unwrap().starts_with("admin API"), "{event}");
    assert!(event["reply"].as_str().unwrap().contains(&format!("original MID {original}")), "{event}");
    assert_ne!(event["mid"].as_u64(), Some(original), "a new MID");

    // The request is still listed after another SIGKILL, completed; a completed request cannot be enabled.
    s.kill9();
    s.spawn();
    let list = s.get_json("/api/v1/resubmit-requests");
    assert_eq!(list["next"], Value::Null);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!((items[0]["id"].as_u64(), items[0]["status"].as_str()), (Some(id), Some("Completed")));
    let (status, body) = call(&s, "PATCH", &path, json!({"enabled": true}));
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("completed"), "{body}");
    assert!(holds_for(Duration::from_secs(1), || subject_count(&sink, "first") == 2), "a restart ran it again");
    assert_eq!(mailbox(&s), 2);

    let (status, body) = call(&s, "DELETE", &path, json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get(&path).0, 404);
    assert_eq!(s.get_json("/api/v1/resubmit-requests")["items"], json!([]));
}

#[test]
fn resubmit_requests_refuse_bad_input_with_400_and_unknown_ids_with_404() {
    let sink = Sink::start();
    let s = Server::start(&config(sink.port));
    let post = |body: Value| call(&s, "POST", "/api/v1/resubmit-requests", body);
    let (status, body) = post(json!({"start_time": at(0), "end_time": at(-60)}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("end_time"), "{body}");
    let (status, body) = post(json!({"start_time": "yesterday", "end_time": at(0)}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("start_time"), "{body}");
    let (status, body) = post(json!({"start_time": at(0), "end_time": "2026-13-01T00:00:00Z"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("end_time"), "{body}");
    let (status, body) = post(json!({"end_time": at(0)}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("start_time"), "{body}");
    assert_eq!(s.get_json("/api/v1/resubmit-requests")["items"], json!([]));

    assert_eq!(s.get("/api/v1/resubmit-requests/42").0, 404);
    let (status, body) = call(&s, "PATCH", "/api/v1/resubmit-requests/42", json!({"enabled": false}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(&s, "DELETE", "/api/v1/resubmit-requests/x", json!({}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(&s, "PATCH", "/api/v1/resubmit-requests/42", json!({"enable": "yes"}));
    assert_eq!(status, 400, "an unknown field: {body}");
}
