//! `GET /api/v1/status`, `POST /api/v1/counters/reset` and `GET /metrics` from the binary: a scripted run
//! whose counters are known exactly (recipients refused at RCPT, delivered to a loopback sink, refused by it
//! with 5xx and 4xx, notices generated and delivered, copies removed), the lifetime column across a
//! restart, a reset, the exposition format, the named back pressure resource and the exemption of
//! authenticated clients.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::harness::*;

/// Messages in the scripted run.
const N: u64 = 4;

/// The sink takes `ok*`, refuses `reject*` with 550 and `later*` with 451; the sender's mailbox is here and
/// is the only one of `localhost`, so that `nobody@localhost` is refused at RCPT.
fn config(sink: u16) -> String {
    format!(
        "[transport]\nmessage_retry_interval = \"1h\"\n\n\
         [[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{sink}\"]\n\n\
         [[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"sender\"]\n"
    )
}

fn status(s: &Server) -> serde_json::Value {
    s.get_json("/api/v1/status")
}

/// The `(reset, uptime, lifetime)` columns of every counter.
fn counters(st: &serde_json::Value) -> BTreeMap<String, (u64, u64, u64)> {
    st["counters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let col = |c: &str| v[c].as_u64().unwrap_or_else(|| panic!("{k}.{c} in {st}"));
            (k.clone(), (col("reset"), col("uptime"), col("lifetime")))
        })
        .collect()
}

fn post(s: &Server, path: &str) -> (u16, String) {
    http(s.admin, "POST", path, &[("X-Sluice-Request", "1")], "")
}

#[test]
fn counters_match_a_scripted_run_survive_a_restart_and_reset() {
    let sink = Sink::start();
    let mut s = Server::start(&config(sink.port));
    let before = status(&s);
    assert_eq!(before["system_status"], "Online");
    assert!(before["oldest_message"].is_null(), "{before}");
    assert!(counters(&before).values().all(|c| *c == (0, 0, 0)), "{before}");

    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for i in 0..N {
        assert!(c.cmd("MAIL FROM:<sender@localhost>").starts_with("250"));
        for to in ["ok1@remote.test", "ok2@remote.test", "reject@remote.test", "later@remote.test"] {
            let r = c.cmd(&format!("RCPT TO:<{to}>"));
            assert!(r.starts_with("250"), "{to}: {r}");
        }
        let r = c.cmd("RCPT TO:<nobody@localhost>");
        assert!(r.starts_with("550 5.1.1"), "{r}");
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(format!("Subject: run {i}\r\n\r\nbody\r\n.\r\n").as_bytes());
        let r = c.read();
        assert!(r.starts_with("250"), "{r}");
    }
    // Every message went to the sink (two recipients each delivered, one refused, one deferred), and each
    // refusal brought the sender a failure notice, delivered to its mailbox.
    let notices = || maildir_new(&s.data(), "localhost", "sender").len() as u64;
    assert!(wait_until(Duration::from_secs(30), || sink.count() as u64 == N && notices() == N), "{}", s.log());
    let settled = wait_until(Duration::from_secs(15), || {
        let c = counters(&status(&s));
        c["delivered_recipients"].1 == 3 * N && c["soft_bounced_events"].1 == N
    });
    let st = status(&s);
    assert!(settled, "{st}");
    let want = [
        ("messages_received", N),
        ("recipients_received", 4 * N),
        ("rejected_recipients", N),
        // Two per message at the sink, and the notices in the sender's mailbox.
        ("delivered_recipients", 3 * N),
        ("hard_bounced_recipients", N),
        ("soft_bounced_events", N),
        ("generated_bounce_recipients", N),
        ("deleted_recipients", 0),
        ("completed_recipients", 4 * N),
        ("dropped_messages", 0),
        ("quarantined_messages", 0),
    ];
    let got = counters(&st);
    for (name, n) in want {
        assert_eq!(got[name], (n, n, n), "{name}: {st}");
    }
    // The deferred recipients are what is still queued (once each copy is narrowed to them, just after its
    // outcomes are counted).
    let active = |n: u64| wait_until(Duration::from_secs(10), || status(&s)["gauges"]["active_recipients"] == n);
    assert!(active(N), "{}", status(&s));
    assert_eq!(st["gauges"]["messages_in_work_queue"], 0, "{st}");
    assert!(st["gauges"]["kilobytes_used"].as_u64().unwrap() > 0, "{st}");
    assert!(st["gauges"]["kilobytes_free"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["gauges"]["messages_in_quarantine"], 0);
    assert!(st["oldest_message"]["mid"].as_u64().unwrap() > 0, "{st}");
    let ids = st["current_ids"].clone();
    assert!(ids["mid"].as_u64().unwrap() >= 2 * N, "the messages and their notices: {st}");
    assert!(ids["icid"].as_u64().unwrap() >= 1 && ids["dcid"].as_u64().unwrap() >= 1, "{st}");
    // This client's session is open; the server's readiness probes have ended.
    assert!(wait_until(Duration::from_secs(5), || status(&s)["gauges"]["current_inbound_connections"] == 1));
    assert!(st["rates"]["received"]["one_minute"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["back_pressure"]["level"], "Normal");
    let resources: Vec<&str> =
        st["back_pressure"]["resources"].as_array().unwrap().iter().map(|r| r["resource"].as_str().unwrap()).collect();
    assert_eq!(resources, ["queue_database_disk", "memory", "submission_queue"], "{st}");
    drop(c);

    // The administrator removes the deferred copies: deleted recipients, and nothing is active.
    let filter = "FromAddress%20-eq%20'sender%40localhost'";
    let (code, body) = post(&s, &format!("/api/v1/messages/remove?with_ndr=false&filter={filter}"));
    assert_eq!(code, 200, "{body}");
    assert!(active(0), "{}", status(&s));
    let st = status(&s);
    let got = counters(&st);
    assert_eq!(got["deleted_recipients"].1, N, "{st}");
    assert_eq!(got["completed_recipients"].1, 5 * N, "{st}");
    assert!(st["oldest_message"].is_null(), "{st}");
    let lifetime = got;

    // A restart: the lifetime (and reset) columns go on, the uptime column starts at 0, ids keep rising.
    assert!(s.signal_and_wait("TERM").success());
    s.spawn();
    let st = status(&s);
    for (name, (reset, uptime, life)) in counters(&st) {
        assert_eq!((reset, uptime, life), (lifetime[&name].0, 0, lifetime[&name].2), "{name}: {st}");
    }
    assert!(st["current_ids"]["icid"].as_u64() > ids["icid"].as_u64(), "{st}");
    assert!(st["current_ids"]["mid"].as_u64() >= ids["mid"].as_u64(), "{st}");

    // A reset zeroes the reset column only, and says when.
    let (code, body) = post(&s, "/api/v1/counters/reset");
    assert_eq!(code, 200, "{body}");
    let reset: serde_json::Value = serde_json::from_str(&body).unwrap();
    let st = status(&s);
    assert_eq!(st["last_counter_reset"], reset["last_counter_reset"], "{st}");
    assert!(st["last_counter_reset"].as_str() >= st["up_since"].as_str(), "{st}");
    for (name, (reset, uptime, life)) in counters(&st) {
        assert_eq!((reset, uptime, life), (0, 0, lifetime[&name].2), "{name}: {st}");
    }
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("sender@localhost", &["ok@remote.test"], "Subject: after\r\n\r\nx\r\n").starts_with("250"));
    let got = counters(&status(&s));
    assert_eq!(got["messages_received"], (1, 1, N + 1));
    // The reset is kept across a restart too.
    drop(c);
    assert!(s.signal_and_wait("TERM").success());
    s.spawn();
    let got = counters(&status(&s));
    assert_eq!(got["messages_received"], (1, 0, N + 1));
    assert_eq!(got["recipients_received"], (1, 0, 4 * N + 1));

    // Nothing is ignored: a query parameter is a 400.
    for path in ["/api/v1/status?detail=1", "/metrics?name=x"] {
        let (code, body) = s.get(path);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("unknown query parameter"), "{body}");
    }
    // A cross-site form post cannot reset the counters.
    let (code, _) = http(s.admin, "POST", "/api/v1/counters/reset", &[], "");
    assert_eq!(code, 400);
}

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reading of the Prometheus text format (0.0.4): `# HELP`/`# TYPE` lines, then samples
/// `name{label="value",...} value`, each of a family declared before it (histograms as `_bucket`, `_sum`,
/// `_count`), no series twice, label values with only the escapes `\\`, `\"` and `\n`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, what) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(valid_name(name), "{line}");
            if kind == "TYPE" {
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&what), "{line}");
                assert!(types.insert(name.to_owned(), what.to_owned()).is_none(), "family twice: {line}");
            } else {
                assert_eq!(kind, "HELP", "{line}");
            }
            continue;
        }
        assert!(!line.is_empty(), "an empty line");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(valid_name(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        let kind = types.get(family).unwrap_or_else(|| panic!("no TYPE before {line}"));
        if kind == "counter" {
            assert!(name.ends_with("_total") && value >= 0.0, "{line}");
        }
        if name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "{line}");
        }
        assert!(seen.insert(series.to_owned()), "series twice: {line}");
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("escape {other:?}: {line}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated value: {line}"),
            }
        }
        assert!(labels.insert(name, value).is_none(), "label twice: {line}");
        match chars.next() {
            Some(',') | None => {}
            other => panic!("after a label {other:?}: {line}"),
        }
    }
    labels
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

#[test]
fn metrics_parse_and_match_the_counters() {
    let sink = Sink::start();
    let s = Server::start(&config(sink.port));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<sender@localhost>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<nobody@localhost>").starts_with("550"));
    assert!(
        c.mail("sender@localhost", &["ok@remote.test"], "Subject: m\r\n\r\nx\r\n").starts_with("503"),
        "no MAIL twice"
    );
    c.cmd("RSET");
    assert!(c.mail("sender@localhost", &["ok@remote.test"], "Subject: m\r\n\r\nx\r\n").starts_with("250"));
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 1));
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 0));

    let (code, text) = s.get("/metrics");
    assert_eq!(code, 200, "{text}");
    let samples = parse_exposition(&text);
    let v =
        |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels).unwrap_or_else(|| panic!("{name}: {text}"));
    assert_eq!(v("sluice_messages_received_total", &[]), 1.0);
    assert_eq!(v("sluice_recipients_delivered_total", &[]), 1.0);
    assert_eq!(v("sluice_recipients_rejected_total", &[]), 1.0);
    assert_eq!(v("sluice_smtp_rejections_total", &[("code", "550")]), 1.0);
    assert_eq!(v("sluice_smtp_rejections_total", &[("code", "503")]), 1.0);
    assert!(v("sluice_smtp_sessions_total", &[]) >= 1.0);
    assert_eq!(v("sluice_queue_messages", &[("queue", "other")]), 0.0);
    assert_eq!(v("sluice_queue_messages", &[("queue", "mx\\Submission"), ("next_hop", "Submission")]), 0.0);
    assert_eq!(v("sluice_back_pressure_level", &[]), 0.0);
    assert_eq!(v("sluice_alerts_total", &[("class", "System"), ("severity", "Information")]), 1.0, "the start");
    assert_eq!(v("sluice_work_queue_messages", &[]), 0.0);
    // The commit latency histogram holds at least the message's enqueue; its buckets add up.
    let count = v("sluice_queue_database_commit_latency_seconds_count", &[]);
    assert!(count >= 1.0, "{text}");
    assert_eq!(v("sluice_queue_database_commit_latency_seconds_bucket", &[("le", "+Inf")]), count);
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "sluice_queue_database_commit_latency_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative: {buckets:?}");
    assert!(v("sluice_queue_database_fsyncs_total", &[]) >= 1.0);
    assert!(v("sluice_queue_database_batch_size_count", &[]) >= 1.0);
    // The status and the metrics count alike.
    let st = status(&s);
    assert_eq!(st["counters"]["delivered_recipients"]["uptime"], 1);
}

#[test]
fn with_a_token_metrics_and_status_need_it() {
    let mut s = Server::start("");
    s.restart_with_token("s3cret");
    for path in ["/metrics", "/api/v1/status"] {
        assert_eq!(s.get(path).0, 401, "{path}");
        let (code, _) = http(s.admin, "GET", path, &[("Authorization", "Bearer wrong")], "");
        assert_eq!(code, 401, "{path}");
        let (code, body) = http(s.admin, "GET", path, &[("Authorization", "Bearer s3cret")], "");
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, _) = http(s.admin, "POST", "/api/v1/counters/reset", &[("X-Sluice-Request", "1")], "");
    assert_eq!(code, 401);
}

#[test]
fn back_pressure_names_its_resource_and_exempts_authenticated_clients_at_medium() {
    // Medium for the disk (free space reads under the threshold at once), High off; loopback is outside
    // relay_networks, so only AUTH makes a client trusted.
    let users = format!("users = [{{ name = \"alice\", password_hash = \"{}\" }}]", crate::tls::hash("correct horse"));
    let s = Server::start(&format!(
        "[back_pressure]\ncheck_interval = \"100ms\"\ndisk_free_normal = \"1000TB\"\ndisk_free_medium = \"1000TB\"\n\
         disk_free_high = \"0\"\n\n\
         [[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\nrelay_networks = []\nauth = \"optional\"\n{users}\n"
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.cmd("MAIL FROM:<a@example.test>");
    assert!(r.starts_with("452 4.3.1 Insufficient system resources (queue database disk), try again later"), "{r}");
    let r = c.cmd(&format!("AUTH PLAIN {}", crate::tls::b64(b"\0alice\0correct horse")));
    assert!(r.starts_with("235"), "{r}");
    let r = c.cmd("MAIL FROM:<a@example.test>");
    assert!(r.starts_with("250"), "an authenticated client is exempt at Medium: {r}");
    let st = status(&s);
    assert_eq!(st["back_pressure"]["level"], "Medium", "{st}");
    let disk = &st["back_pressure"]["resources"][0];
    assert_eq!((disk["resource"].as_str(), disk["level"].as_str()), (Some("queue_database_disk"), Some("Medium")));
    assert_eq!(disk["unit"], "bytes_free");
    assert!(disk["value"].as_u64().unwrap() < disk["medium"].as_u64().unwrap(), "{st}");
    let (_, text) = s.get("/metrics");
    let samples = parse_exposition(&text);
    assert_eq!(value(&samples, "sluice_back_pressure_level", &[]), Some(1.0), "{text}");
    assert_eq!(
        value(&samples, "sluice_back_pressure_resource_level", &[("resource", "queue_database_disk")]),
        Some(1.0)
    );
    assert_eq!(value(&samples, "sluice_smtp_rejections_total", &[("code", "452")]), Some(1.0), "{text}");
}

#[test]
fn a_damaged_counters_file_is_moved_aside_with_an_alert_and_the_counters_start_again() {
    let mut s = Server::start("");
    assert!(s.signal_and_wait("TERM").success());
    let file = s.data().join("counters.json");
    assert!(file.exists(), "a clean stop saves the counters");
    std::fs::write(&file, b"{\"version\": 1, \"lifetime\": ").unwrap();
    s.spawn();
    assert!(s.data().join("counters.json.damaged").exists());
    let alerts = s.get_json("/api/v1/alerts?severity=Warning");
    let text = alerts["items"][0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("counters start from zero") && text.contains("counters.json"), "{alerts}");
    assert!(counters(&status(&s)).values().all(|c| *c == (0, 0, 0)));
}
