//! MX routing end to end: a send connector without smart hosts, `[dns] servers` pointing at a loopback DNS
//! server, and the sink as the next hop that DNS names.

use std::net::Ipv4Addr;
use std::time::Duration;

use sluice_testdns::{TestDns, Zone};

use crate::harness::*;

/// A queue's entry in the admin API's listing, found by its next-hop domain.
fn queue(s: &Server, domain: &str) -> Option<serde_json::Value> {
    let q = s.get_json("/api/v1/queues");
    q["items"].as_array().unwrap().iter().find(|q| q["next_hop_domain"] == domain).cloned()
}

#[test]
fn mail_goes_to_the_hosts_dns_names_and_a_domain_without_mail_fails_at_once() {
    let sink = Sink::start();
    let zone = Zone::new()
        // The preferred host has no listener on the sink's port: its connection is refused.
        .mx("two.test", 10, "mx1.two.test")
        .mx("two.test", 20, "mx2.two.test")
        .a("mx1.two.test", Ipv4Addr::new(127, 0, 0, 2))
        .a("mx2.two.test", Ipv4Addr::LOCALHOST)
        .mx("null.test", 0, ".")
        .servfail("broken.test");
    let dns = TestDns::start(zone).unwrap();
    let s = Server::start(&format!(
        "[dns]\nservers = [\"{}\"]\n\n[transport]\ntransient_failure_retry_interval = \"1s\"\n\n\
         [[send_connectors]]\nname = \"Internet\"\naddress_spaces = [\"*\"]\nport = {}\n",
        dns.addr(),
        sink.port
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for (to, subject) in [("b@two.test", "two"), ("c@null.test", "null"), ("d@broken.test", "broken")] {
        let r = c.mail("a@example.test", &[to], &format!("Subject: {subject}\r\n\r\nx\r\n"));
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(wait_until(Duration::from_secs(20), || sink.count() == 1), "sink has {}", sink.count());
    assert_eq!(sink.subjects.lock().unwrap().get("two"), Some(&1));
    assert!(
        wait_until(Duration::from_secs(10), || {
            tracking_events(&s.data()).iter().any(|e| {
                e["event_id"] == "FAIL"
                    && e["recipients"][0] == "c@null.test"
                    && e["reply"].as_str().unwrap_or("").starts_with("556 5.1.10")
            })
        }),
        "no FAIL for the null MX domain: {:?}",
        tracking_events(&s.data())
    );
    assert!(
        wait_until(Duration::from_secs(10), || queue(&s, "null.test").is_none_or(|q| q["message_count"] == 0)),
        "{:?}",
        queue(&s, "null.test")
    );
    assert!(
        wait_until(Duration::from_secs(10), || queue(&s, "broken.test").is_some_and(|q| q["status"] == "Retry"
            && q["message_count"] == 1
            && q["last_error"].as_str().unwrap_or("").contains("4.4.3"))),
        "{:?}",
        queue(&s, "broken.test")
    );
    assert_eq!(queue(&s, "broken.test").unwrap()["delivery_type"], "DnsConnectorDelivery");
    assert!(!s.log().contains("not yet in effect"), "{}", s.log());
}
