//! Audit events: every state-changing request to the admin API, answered or refused, is an `AUDIT` line in
//! the tracking log; reading requests are not.

use std::time::Duration;

use crate::harness::*;

const TOKEN: &str = "Bearer s3cret";

fn get(s: &Server, path: &str) -> serde_json::Value {
    let (status, body) = http(s.admin, "GET", path, &[("Authorization", TOKEN)], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn send(s: &Server, from: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail(from, &["bob@remote.test"], "Subject: audit\r\n\r\nHello.\r\n");
    assert!(r.starts_with("250"), "{r}");
}

fn audits(s: &Server) -> Vec<serde_json::Value> {
    tracking_events(&s.data()).into_iter().filter(|e| e["event_id"] == "AUDIT").collect()
}

#[test]
fn a_bulk_suspension_and_refused_requests_are_audit_events_naming_who_what_and_how_many() {
    // `token` goes into `[admin]`; the next hop never answers, so the messages wait in Retry.
    let s = Server::start(&format!(
        "token = \"s3cret\"\n\n[transport]\nqueue_glitch_retry_interval = \"60s\"\n\
         transient_failure_retry_interval = \"60s\"\n\n[[send_connectors]]\nname = \"Sink\"\n\
         address_spaces = [\"remote.test\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n",
        free_port()
    ));
    for from in ["a@one.test", "b@two.test", "c@one.test"] {
        send(&s, from);
    }
    let queued = || get(&s, "/api/v1/messages?queue=mx%5C16")["items"].as_array().unwrap().len();
    assert!(wait_until(Duration::from_secs(15), || queued() == 3));

    let filter = "FromAddress%20-like%20%27*%40one.test%27";
    let path = format!("/api/v1/messages/suspend?filter={filter}");
    let marked = ("X-Sluice-Request", "1");
    let (status, body) = http(s.admin, "POST", &path, &[("Authorization", TOKEN), marked], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(s.admin, "POST", &path, &[marked], "").0, 401);
    assert_eq!(http(s.admin, "POST", &path, &[("Authorization", TOKEN)], "").0, 400);
    let refused_host = [("Authorization", TOKEN), marked, ("Host", "evil.test")];
    assert_eq!(http(s.admin, "DELETE", "/api/v1/messages/mx%5C16%5C1", &refused_host, "").0, 403);

    assert!(wait_until(Duration::from_secs(5), || audits(&s).len() >= 4), "{:?}", audits(&s));
    let events = audits(&s);
    // The reading requests above (lists, health) are not audited.
    assert_eq!(events.len(), 4, "{events:?}");
    let found: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let a = &e["audit"];
            assert!(e["source"].as_str().unwrap().starts_with("admin API 127.0.0.1:"), "{e}");
            assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
            let line = format!("{} {}", a["method"].as_str().unwrap(), a["path"].as_str().unwrap());
            serde_json::json!([line, a["status"], a["token"], a["matched"], a["changed"]])
        })
        .collect();
    let post = format!("POST {path}");
    assert_eq!(
        found,
        [
            serde_json::json!([post, 200, true, 2, 2]),
            serde_json::json!([post, 401, false, null, null]),
            serde_json::json!([post, 400, true, null, null]),
            serde_json::json!(["DELETE /api/v1/messages/mx%5C16%5C1", 403, true, null, null]),
        ]
    );
    // The answer to the audited request is whole.
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["identities"].as_array().unwrap().len(), 2, "{r}");
}
