//! The admin API's first endpoints and its guards.

use std::time::Duration;

use crate::harness::*;

#[test]
fn health_and_lists_have_the_spec_shape() {
    let s = Server::start("");
    let h = s.get_json("/api/v1/health");
    assert_eq!(h["status"], "ok");
    assert!(h["uptime_seconds"].is_u64());
    let q = s.get_json("/api/v1/queues");
    assert!(q["next"].is_null());
    let sub = &q["items"][0];
    assert_eq!(sub["identity"], "mx\\Submission");
    assert_eq!(sub["delivery_type"], "Undefined");
    assert_eq!(sub["next_hop_domain"], "Submission");
    assert_eq!(sub["message_count"], 0);
    let one = s.get_json("/api/v1/queues/mx%5CUnreachable");
    assert_eq!(one["message_count"], 0);
    let m = s.get_json("/api/v1/messages?queue=Submission");
    assert_eq!(m["items"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_requests_get_json_errors() {
    let s = Server::start("");
    let (status, body) = s.get("/api/v1/messages?queue=mx%5C999");
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    let (status, body) = s.get("/api/v1/messages?result_size=0");
    assert_eq!(status, 400, "{body}");
    let (status, _) = s.get("/api/v1/nope");
    assert_eq!(status, 404);
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[], "");
    assert_eq!(status, 400, "a cross-site form post is refused: {body}");
    let (status, _) = http(s.admin, "GET", "/api/v1/queues", &[("Host", "evil.example:80")], "");
    assert!(status == 403 || status == 400, "{status}");
}

#[test]
fn a_token_guards_everything_but_health() {
    let mut s = Server::start("");
    s.restart_with_token("s3cret");
    assert_eq!(s.get("/api/v1/health").0, 200);
    assert_eq!(s.get("/api/v1/queues").0, 401);
    let (status, _) = http(s.admin, "GET", "/api/v1/queues", &[("Authorization", "Bearer wrong")], "");
    assert_eq!(status, 401);
    let (status, _) = http(s.admin, "GET", "/api/v1/queues", &[("Authorization", "Bearer s3cret")], "");
    assert_eq!(status, 200);
}

#[test]
fn defragmentation_runs_on_demand() {
    let s = Server::start("");
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("a@example.test", &["u@localhost"], "Subject: d\r\n\r\nx\r\n").starts_with("250"));
    let (status, body) = http(s.admin, "POST", "/api/v1/database/defrag", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["messages_moved"].is_u64() && v["interrupted"] == false, "{v}");
    let (status, _) = http(s.admin, "POST", "/api/v1/database/defrag", &[], "");
    assert_eq!(status, 400, "a cross-site post is refused");
}

#[test]
fn alerts_are_logged_listed_filtered_and_kept_across_a_restart() {
    let mut s = Server::start("");
    let all = s.get_json("/api/v1/alerts");
    let started = &all["items"][0];
    assert_eq!(started["class"], "System");
    assert_eq!(started["severity"], "Information");
    assert_eq!(started["server"], "mx");
    assert!(started["text"].as_str().unwrap().contains("started"), "{all}");
    // A reload that fails leaves the old configuration and raises a Warning.
    let good = std::fs::read_to_string(s.config_path()).unwrap();
    std::fs::write(s.config_path(), format!("{good}\n[transport]\nno_such_key = 1\n")).unwrap();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert!(status >= 400, "{status} {body}");
    std::fs::write(s.config_path(), &good).unwrap();
    let warnings = s.get_json("/api/v1/alerts?severity=Warning");
    let items = warnings["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "Information is filtered out: {warnings}");
    assert!(items[0]["text"].as_str().unwrap().contains("no_such_key"), "{warnings}");
    assert_eq!(s.get_json("/api/v1/alerts?class=back_pressure")["items"].as_array().unwrap().len(), 0);
    assert_eq!(s.get_json("/api/v1/alerts?since=2999-01-01T00:00:00Z")["items"].as_array().unwrap().len(), 0);
    assert_eq!(s.get_json("/api/v1/alerts?since=2000-01-01T00:00:00Z")["items"].as_array().unwrap().len(), 2);
    for bad in ["severity=bogus", "class=nope", "since=yesterday"] {
        let (status, body) = s.get(&format!("/api/v1/alerts?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string(), "{body}");
    }
    let log = std::fs::read_to_string(s.data().join("logs").join("alerts.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    // After a restart the earlier alerts are still listed and ids go on.
    s.kill9();
    s.spawn();
    let items = s.get_json("/api/v1/alerts")["items"].as_array().unwrap().clone();
    let ids: Vec<u64> = items.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3], "{items:?}");
}

#[test]
fn back_pressure_refuses_new_mail_with_452_and_recovers_by_itself() {
    // Thresholds above any real free space: the disk reads as under pressure at once.
    let high = "[back_pressure]\ncheck_interval = \"100ms\"\ndisk_free_normal = \"1000TB\"\ndisk_free_medium = \"1000TB\"\ndisk_free_high = \"1000TB\"\n";
    let mut s = Server::start(high);
    let refused = wait_until(Duration::from_secs(10), || mail_from(&s).starts_with("452 4.3.1"));
    assert!(refused, "High refuses MAIL FROM with 452 4.3.1");
    assert_eq!(s.get_json("/api/v1/health")["status"], "degraded");
    // The refusal can come first (receive looks at the disk itself); the alert follows within a check.
    let alerted = wait_until(Duration::from_secs(10), || {
        let alerts = s.get_json("/api/v1/alerts?class=Back%20Pressure&severity=Critical");
        let text = alerts["items"][0]["text"].as_str().unwrap_or_default().to_owned();
        text.contains("Normal -> High") && text.contains("free")
    });
    assert!(alerted, "{}", s.get_json("/api/v1/alerts"));
    // Medium refuses only clients outside relay_networks: this one (loopback) is inside.
    s.extra = high.replace("disk_free_high = \"1000TB\"", "disk_free_high = \"0\"");
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    assert!(wait_until(Duration::from_secs(10), || mail_from(&s).starts_with("250")));
    // The same Medium level with loopback outside relay_networks: refused.
    s.extra = format!(
        "{}\n[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\nrelay_networks = [\"192.0.2.0/24\"]\n",
        s.extra
    );
    s.write_config();
    s.kill9();
    s.spawn();
    assert!(wait_until(Duration::from_secs(10), || mail_from(&s).starts_with("452 4.3.1")));
    // Pressure gone: mail is accepted again without a restart.
    s.extra = "[back_pressure]\ncheck_interval = \"100ms\"\n".to_owned();
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    assert!(wait_until(Duration::from_secs(10), || mail_from(&s).starts_with("250")));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("a@example.test", &["user@localhost"], "Subject: t\r\n\r\nhi\r\n").starts_with("250"));
    let normal = || {
        let back = s.get_json("/api/v1/alerts?class=back_pressure&severity=Information");
        back["items"].as_array().unwrap().iter().any(|a| a["text"].as_str().unwrap().contains("-> Normal"))
    };
    assert!(
        wait_until(Duration::from_secs(10), normal),
        "an Information alert says it is over: {}",
        s.get_json("/api/v1/alerts")
    );
}

/// The reply to MAIL FROM in a fresh session.
fn mail_from(s: &Server) -> String {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>")
}

#[test]
fn the_openapi_document_lists_only_routes_the_server_serves() {
    let s = Server::start("");
    let doc = s.get_json("/api/v1/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    for (path, item) in paths {
        let concrete = path.replace("{identity}", "mx%5C9999").replace("{id}", "9999");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            let (status, body) = http(s.admin, &method, &concrete, &[("X-Sluice-Request", "1")], "");
            // Served by a handler: not the fallback's 404, nor a 405 for a method the path does not take.
            assert!(status != 405 && !body.contains("no such endpoint"), "{method} {path}: {status} {body}");
        }
    }
    // And the fallback does answer an unknown route that way, so the check above can fail.
    let (status, body) = http(s.admin, "POST", "/api/v1/bogus", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 404);
    assert!(body.contains("no such endpoint"), "{body}");
}
