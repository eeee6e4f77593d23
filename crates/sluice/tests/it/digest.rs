//! The queue digest, the newer Get-Queue and Get-Message properties, and paged alerts, through the binary's
//! admin API: queues of 60, 30, 12 and 5 messages behind next hops that refuse connections.

use std::time::Duration;

use crate::harness::*;

/// One send connector per domain, each to a smart host that refuses connections (a port nothing listens
/// on), retried only after an hour; with each queue's next hop domain (its smart host).
fn config(domains: &[&str]) -> (String, Vec<String>) {
    let mut c =
        String::from("[transport]\nqueue_glitch_retry_interval = \"1h\"\ntransient_failure_retry_interval = \"1h\"\n");
    let mut hops = Vec::new();
    for d in domains {
        let hop = format!("127.0.0.1:{}", free_port());
        c.push_str(&format!(
            "\n[[send_connectors]]\nname = \"{d}\"\naddress_spaces = [\"{d}\"]\nsmart_hosts = [\"{hop}\"]\n"
        ));
        hops.push(hop);
    }
    (c, hops)
}

fn q(filter: &str) -> String {
    filter
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn items(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["items"].as_array().unwrap()
}

#[test]
fn the_digest_shows_the_queues_over_the_threshold_largest_first() {
    let domains = ["a.test", "b.test", "c.test", "d.test"];
    let (config, hops) = config(&domains);
    let s = Server::start(&config);
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for (domain, n) in domains.iter().zip([60, 30, 12, 5]) {
        for i in 0..n {
            let priority = if i == 0 { "Importance: high\r\n" } else { "" };
            let body = format!("Subject: {domain} {i}\r\n{priority}\r\nHello.\r\n");
            let r = c.mail("sender@client.test", &[&format!("rcpt@{domain}")], &body);
            assert!(r.starts_with("250"), "{r}");
        }
    }
    assert!(wait_until(Duration::from_secs(20), || {
        let v = s.get_json("/api/v1/queues?include=External");
        let queued: u64 = items(&v).iter().map(|q| q["message_count"].as_u64().unwrap()).sum();
        queued == 107 && items(&v).iter().all(|q| q["status"] == "Retry")
    }));
    assert!(wait_until(Duration::from_secs(10), || s.get_json("/api/v1/queues/Submission")["message_count"] == 0));

    let rows = s.get_json("/api/v1/queue-digest?digest_threshold=10");
    let shown: Vec<(&str, u64)> =
        items(&rows).iter().map(|r| (r["group"].as_str().unwrap(), r["message_count"].as_u64().unwrap())).collect();
    assert_eq!(shown, [(hops[0].as_str(), 60), (hops[1].as_str(), 30), (hops[2].as_str(), 12)], "{rows}");
    let a = &rows["items"][0];
    assert_eq!((a["queue_count"].as_u64(), a["status"].as_str()), (Some(1), Some("Retry")), "{a}");
    assert!(a["last_error"].as_str().is_some_and(|e| e.starts_with("451")), "{a}");
    assert!(a["incoming_rate"].as_f64().is_some() && a["velocity"].as_f64().is_some(), "{a}");
    assert_eq!(a["queues"][0]["message_count"], 60, "Normal details name each queue: {a}");

    // The configured threshold is 10 too; by status, every delivery queue is in Retry; details None.
    let by_status = s.get_json("/api/v1/queue-digest?group_by=Status&details_level=None");
    assert_eq!(by_status["items"][0]["group"], "Retry", "{by_status}");
    assert_eq!(by_status["items"][0]["message_count"], 102, "{by_status}");
    assert!(by_status["items"][0].get("queues").is_none(), "{by_status}");
    let last = q(&format!("NextHopDomain -eq '{}'", hops[3]));
    let filtered = s.get_json(&format!("/api/v1/queue-digest?digest_threshold=1&filter={last}"));
    assert_eq!(items(&filtered).len(), 1, "{filtered}");
    assert_eq!(filtered["items"][0]["message_count"], 5, "{filtered}");
    assert_eq!(s.get("/api/v1/queue-digest?group_by=colour").0, 400);
    assert_eq!(s.get("/api/v1/queue-digest?details_level=loud").0, 400);
    assert_eq!(s.get("/api/v1/queue-digest?treshold=1").0, 400);

    // The queue's rates and priorities, and the message properties a filter can select by.
    let first = q(&format!("NextHopDomain -eq '{}'", hops[0]));
    let a_queue = || s.get_json(&format!("/api/v1/queues?filter={first}"))["items"][0].clone();
    let per_priority = serde_json::json!({"high": 1, "normal": 59, "low": 0});
    assert_eq!(a_queue()["message_counts_per_priority"], per_priority);
    // Rates count complete 5-second buckets: the growth shows once the bucket of each queue's last message
    // is complete.
    let growing = || s.get_json(&format!("/api/v1/queues?filter={}", q("Velocity -lt 0 -and IncomingRate -gt 0")));
    assert!(wait_until(Duration::from_secs(10), || items(&growing()).len() == 4), "{}", growing());
    let high = s.get_json(&format!(
        "/api/v1/messages?filter={}",
        q("Priority -eq 'High' -and DeferredReason -eq 'QueueRetry'")
    ));
    assert_eq!(items(&high).len(), 4, "{high}");
    let m = &high["items"][0];
    assert_eq!(m["directionality"].as_str(), Some("Originating"), "{m}");
    // Scanned by the built-in anti-spam engine, and below the quarantine level.
    assert!((0..7).contains(&m["scl"].as_i64().unwrap()), "{m}");
    assert_eq!(m["original_from_address"], "sender@client.test");
    assert!(m["message_latency"].as_u64().is_some(), "{m}");

    // Alerts page like every list.
    assert_eq!(s.get("/api/v1/alerts?result_size=1&bookmark=0").0, 200);
    assert_eq!(s.get("/api/v1/alerts?result_size=0").0, 400);
    assert_eq!(s.get("/api/v1/alerts?bookmark=x").0, 400);
}

#[test]
fn every_message_property_can_be_filtered_on() {
    let (config, _) = config(&["a.test"]);
    let s = Server::start(&config);
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let body = "Subject: Quarterly report\r\nMessage-ID: <q1@client.test>\r\nX-Priority: 5\r\n\r\nHello.\r\n";
    let r = c.mail("alice@client.test", &["bob@a.test", "carol@a.test"], body);
    assert!(r.starts_with("250"), "{r}");
    let big = format!("Subject: other\r\n\r\n{}\r\n", "x".repeat(2000));
    let r = c.mail("zed@client.test", &["dan@a.test"], &big);
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(15), || {
        let v = s.get_json("/api/v1/messages");
        items(&v).len() == 2 && items(&v).iter().all(|m| m["status"] == "Retry")
    }));
    let first = s.get_json("/api/v1/messages?result_size=1")["items"][0].clone();
    let (identity, mid) = (first["identity"].as_str().unwrap(), first["mid"].as_u64().unwrap());
    let matching = |filter: &str| -> usize {
        let (status, body) = s.get(&format!("/api/v1/messages?filter={}", q(filter)));
        assert_eq!(status, 200, "{filter}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        items(&v).len()
    };
    for filter in [
        format!("Identity -eq '{identity}'"),
        format!("Mid -eq {mid}"),
        "Queue -like '*\\16' -and Status -eq 'Retry' -and FromAddress -eq 'ALICE@client.test'".to_owned(),
        "InternetMessageId -eq '<q1@client.test>' -and Subject -like 'quarterly*'".to_owned(),
        "Size -gt 40 -and Size -lt 1KB -and DateReceived -gt '2026-01-01T00:00:00Z'".to_owned(),
        "ExpirationTime -gt '2026-01-01T00:00:00Z' -and LastError -like '451*' -and RetryCount -ge 0 -and Subject -like 'Q*'".to_owned(),
        "SourceIp -eq '127.0.0.1' -and MessageSourceName -eq 'SMTP:Default' -and Scl -ge 0 -and Scl -lt 7 -and Size -lt 1KB".to_owned(),
        "OriginalFromAddress -eq 'alice@client.test' -and Priority -eq 'low' -and Directionality -eq Originating"
            .to_owned(),
        "DeferredReason -eq 'QueueRetry' -and MessageLatency -lt 1h -and Recipients -contains 'carol@a.test'"
            .to_owned(),
        "-not (Subject -eq 'other') -and (Recipients -like 'bob@*' -or Recipients -like 'nobody@*')".to_owned(),
    ] {
        assert_eq!(matching(&filter), 1, "{filter}");
        assert_eq!(matching(&format!("-not ({filter})")), 1, "the other message: -not ({filter})");
    }
    assert_eq!(matching("MessageLatency -gt 1h"), 0);
    assert_eq!(matching("Priority -eq Normal"), 1);
    // Sorting reads the same properties; recipients come only when asked for.
    let sorted = s.get_json("/api/v1/messages?sort_order=-Priority,Size");
    let subjects: Vec<&str> = items(&sorted).iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["other", "Quarterly report"], "Normal sorts after Low, descending");
    assert!(sorted["items"][0]["recipients"].is_null());
    let with = s.get_json(&format!("/api/v1/messages?include_recipient_info=true&filter={}", q("Mid -eq 1000")));
    assert!(items(&with).is_empty());
    let with =
        s.get_json(&format!("/api/v1/messages?include_recipient_info=true&filter={}", q(&format!("Mid -eq {mid}"))));
    assert_eq!(with["items"][0]["recipients"].as_array().map(Vec::len), Some(2), "{with}");
}
