//! MX routing against a loopback DNS server (`sluice-testdns`) and real SMTP listeners on loopback.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use sluice_queue_db::{BodySource, Envelope, EnvelopeParts, Recipient};
use sluice_testdns::{TestDns, Zone};
use sluice_transport::{DeliveryAgent, Outbound, RecipientOutcome, SendSession, Target};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::*;
use crate::Agent;

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// A loopback address where nothing listens on the test's port: a connection there is refused.
const NOBODY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Every line a next hop received, over all its sessions.
type Lines = Arc<Mutex<Vec<String>>>;

/// A next hop on `127.0.0.1` with a free port: it greets with `greeting`, and after a `220` takes every
/// message. Returns its port and the lines it gets.
async fn next_hop(greeting: &'static str) -> (u16, Lines) {
    let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines: Lines = Arc::default();
    let seen = lines.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = tokio::io::BufReader::new(r);
                let _ = w.write_all(greeting.as_bytes()).await;
                let mut in_data = false;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_owned();
                    seen.lock().unwrap().push(line.clone());
                    let reply: &[u8] = match line.as_str() {
                        "." if in_data => {
                            in_data = false;
                            b"250 2.0.0 queued\r\n"
                        }
                        _ if in_data => continue,
                        "DATA" => {
                            in_data = true;
                            b"354 go\r\n"
                        }
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    (port, lines)
}

fn dns(server: &TestDns) -> Dns {
    Dns::new(&DnsSettings { servers: vec![server.addr()] })
}

fn agent(server: &TestDns) -> Agent {
    Agent::new("me.test", &DnsSettings { servers: vec![server.addr()] }, crate::ClientTls::with_roots([]))
}

fn to_domain(domain: &str, port: u16) -> Target {
    Target::Dns { domain: domain.into(), port, session: SendSession::default() }
}

fn message(to: &str) -> Outbound {
    let parts = EnvelopeParts {
        from: "a@example.test".into(),
        recipients: vec![Recipient { address: to.into(), notify: None, orcpt: None }],
        ..Default::default()
    };
    Outbound {
        mid: 1,
        envelope: Arc::new(Envelope::from(parts)),
        indices: vec![0],
        body: BodySource::memory(b"Subject: x\r\n\r\nbody\r\n".to_vec()),
    }
}

/// Connects to `target`, delivers one message to `to` and quits.
async fn deliver(agent: &Agent, target: &Target, to: &str) -> Result<Vec<RecipientOutcome>, DeliveryError> {
    let mut c = agent.connect(target).await?;
    let out = c.deliver(&message(to)).await;
    c.quit().await;
    out
}

fn delivered(out: &[RecipientOutcome]) -> bool {
    matches!(out, [RecipientOutcome::Delivered(_)])
}

fn line(error: &DeliveryError) -> String {
    reply_line(&error.reply())
}

#[tokio::test]
async fn the_most_preferred_host_that_answers_takes_the_mail() {
    let (port, lines) = next_hop("220 mx2\r\n").await;
    let zone = Zone::new()
        .mx("two.test", 10, "mx1.two.test")
        .mx("two.test", 20, "mx2.two.test")
        .a("mx1.two.test", NOBODY)
        .a("mx2.two.test", LOCAL);
    let server = TestDns::start(zone).unwrap();
    let exchanges = dns(&server).exchanges("two.test").await.unwrap();
    assert_eq!(exchanges, Exchanges { hosts: vec!["mx1.two.test".into(), "mx2.two.test".into()], implicit: false });
    let out = deliver(&agent(&server), &to_domain("two.test", port), "b@two.test").await.unwrap();
    assert!(delivered(&out), "{out:?}");
    assert!(lines.lock().unwrap().contains(&"RCPT TO:<b@two.test>".to_owned()));
}

#[tokio::test]
async fn equal_preferences_are_tried_in_random_order() {
    let zone = Zone::new()
        .mx("eq.test", 10, "b.eq.test")
        .mx("eq.test", 10, "a.eq.test")
        .mx("eq.test", 5, "first.eq.test")
        .mx("eq.test", 20, "last.eq.test");
    let server = TestDns::start(zone).unwrap();
    let dns = dns(&server);
    let (mut a_second, mut b_second) = (0, 0);
    for _ in 0..64 {
        let hosts = dns.exchanges("eq.test").await.unwrap().hosts;
        assert_eq!((hosts[0].as_str(), hosts[3].as_str()), ("first.eq.test", "last.eq.test"), "{hosts:?}");
        match hosts[1].as_str() {
            "a.eq.test" => a_second += 1,
            "b.eq.test" => b_second += 1,
            other => panic!("{other}"),
        }
    }
    // Each order has a chance of 2^-64 of never coming up.
    assert!(a_second > 0 && b_second > 0, "a first {a_second} times, b first {b_second} times");
}

#[tokio::test]
async fn a_null_mx_fails_every_recipient_at_once() {
    let server = TestDns::start(Zone::new().mx("null.test", 0, ".")).unwrap();
    let error = deliver(&agent(&server), &to_domain("null.test", 25), "b@null.test").await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert_eq!(line(&error), "556 5.1.10 null.test accepts no mail (null MX)");
}

#[tokio::test]
async fn a_null_mx_beside_real_ones_is_skipped() {
    let zone = Zone::new().mx("mixed.test", 0, ".").mx("mixed.test", 10, "mx.mixed.test");
    let server = TestDns::start(zone).unwrap();
    assert_eq!(dns(&server).exchanges("mixed.test").await.unwrap().hosts, ["mx.mixed.test"]);
}

#[tokio::test]
async fn a_domain_that_does_not_exist_fails_at_once() {
    let server = TestDns::start(Zone::new().nxdomain("gone.test")).unwrap();
    let error = deliver(&agent(&server), &to_domain("gone.test", 25), "b@gone.test").await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert_eq!(line(&error), "550 5.1.2 gone.test does not exist (NXDOMAIN)");
}

#[tokio::test]
async fn a_failed_lookup_is_tried_again_later() {
    let server = TestDns::start(Zone::new().servfail("broken.test")).unwrap();
    let error = deliver(&agent(&server), &to_domain("broken.test", 25), "b@broken.test").await.unwrap_err();
    assert!(!error.is_permanent(), "{error:?}");
    assert!(line(&error).starts_with("451 4.4.3 DNS lookup for broken.test failed: "), "{}", line(&error));
    // A name the server refuses is no answer either.
    let error = deliver(&agent(&server), &to_domain("unknown.test", 25), "b@unknown.test").await.unwrap_err();
    assert!(matches!(error, DeliveryError::Dns { .. }), "{error:?}");
}

#[tokio::test]
async fn an_answer_truncated_over_udp_is_asked_again_over_tcp() {
    let zone = Zone::new().mx("big.test", 10, "mx.big.test").truncated("big.test").a("mx.big.test", LOCAL);
    let server = TestDns::start(zone).unwrap();
    let exchanges = dns(&server).exchanges("big.test").await.unwrap();
    assert_eq!(exchanges.hosts, ["mx.big.test"]);
}

#[tokio::test]
async fn without_mx_the_domains_own_address_takes_the_mail() {
    let (port, lines) = next_hop("220 plain\r\n").await;
    let server = TestDns::start(Zone::new().a("plain.test", LOCAL)).unwrap();
    let exchanges = dns(&server).exchanges("plain.test").await.unwrap();
    assert_eq!(exchanges, Exchanges { hosts: vec!["plain.test".into()], implicit: true });
    let out = deliver(&agent(&server), &to_domain("plain.test", port), "b@plain.test").await.unwrap();
    assert!(delivered(&out), "{out:?}");
    assert!(lines.lock().unwrap().contains(&"RCPT TO:<b@plain.test>".to_owned()));
}

#[tokio::test]
async fn without_mx_or_address_the_domain_takes_no_mail() {
    let server = TestDns::start(Zone::new().empty("bare.test")).unwrap();
    let error = deliver(&agent(&server), &to_domain("bare.test", 25), "b@bare.test").await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert_eq!(line(&error), "550 5.1.2 bare.test has no MX record and no address");
}

#[tokio::test]
async fn when_every_host_fails_the_error_names_each_and_what_it_said() {
    let (port, _) = next_hop("554 5.7.1 go away\r\n").await;
    let zone = Zone::new()
        .mx("fail.test", 10, "mx1.fail.test")
        .mx("fail.test", 20, "mx2.fail.test")
        .mx("fail.test", 30, "mx3.fail.test")
        .a("mx1.fail.test", NOBODY)
        .a("mx2.fail.test", LOCAL)
        .nxdomain("mx3.fail.test");
    let server = TestDns::start(zone).unwrap();
    let error = deliver(&agent(&server), &to_domain("fail.test", port), "b@fail.test").await.unwrap_err();
    assert!(!error.is_permanent(), "{error:?}");
    let text = line(&error);
    let want_start = format!(
        "451 4.4.1 no host for fail.test took the session: cannot connect to mx1.fail.test[127.0.0.2]:{port}: "
    );
    assert!(text.starts_with(&want_start), "{text}");
    let want_end = format!(
        "; 554 5.7.1 go away (greeting from mx2.fail.test[127.0.0.1]:{port}); mx3.fail.test: no address (NXDOMAIN)"
    );
    assert!(text.ends_with(&want_end), "{text}");
}

#[tokio::test]
async fn hosts_without_any_address_fail_as_routing() {
    let zone = Zone::new().mx("dangling.test", 10, "mx.dangling.test").nxdomain("mx.dangling.test");
    let server = TestDns::start(zone).unwrap();
    let error = deliver(&agent(&server), &to_domain("dangling.test", 25), "b@dangling.test").await.unwrap_err();
    assert!(!error.is_permanent(), "{error:?}");
    assert_eq!(
        line(&error),
        "451 4.4.4 no host for dangling.test took the session: mx.dangling.test: no address (NXDOMAIN)"
    );
}

#[tokio::test]
async fn a_domain_literal_is_connected_to_without_dns() {
    let (port, lines) = next_hop("220 literal\r\n").await;
    let server = TestDns::start(Zone::new()).unwrap();
    let out = deliver(&agent(&server), &to_domain("[127.0.0.1]", port), "b@[127.0.0.1]").await.unwrap();
    assert!(delivered(&out), "{out:?}");
    assert!(lines.lock().unwrap().contains(&"RCPT TO:<b@[127.0.0.1]>".to_owned()));
    assert_eq!(server.queries(), 0);
    let error = deliver(&agent(&server), &to_domain("[300.0.0.1]", port), "b@[300.0.0.1]").await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
}

#[tokio::test]
async fn smart_hosts_by_name_resolve_through_the_configured_servers() {
    let (port, lines) = next_hop("220 smart\r\n").await;
    let server = TestDns::start(Zone::new().a("smart.test", LOCAL).nxdomain("gone.test")).unwrap();
    let agent = agent(&server);
    let hosts =
        |host: &str| Target::SmartHosts { hosts: vec![format!("{host}:{port}")], session: SendSession::default() };
    let out = deliver(&agent, &hosts("smart.test"), "b@remote.test").await.unwrap();
    assert!(delivered(&out), "{out:?}");
    assert!(lines.lock().unwrap().contains(&"RCPT TO:<b@remote.test>".to_owned()));
    let error = deliver(&agent, &hosts("gone.test"), "b@remote.test").await.unwrap_err();
    assert!(!error.is_permanent(), "{error:?}");
    assert_eq!(line(&error), "451 4.4.3 DNS lookup for gone.test failed: NXDOMAIN");
}

#[test]
fn host_specs() {
    assert_eq!(split_host("127.0.0.1:2526"), ("127.0.0.1".into(), 2526));
    assert_eq!(split_host("[10.0.0.1]"), ("10.0.0.1".into(), 25));
    assert_eq!(split_host("[::1]:2525"), ("::1".into(), 2525));
    assert_eq!(split_host("mx.example.test"), ("mx.example.test".into(), 25));
}

#[test]
fn domain_literals() {
    assert_eq!(domain_literal("[192.0.2.1]"), Some(IpAddr::from([192, 0, 2, 1])));
    assert_eq!(domain_literal("[IPv6:2001:db8::1]"), "2001:db8::1".parse().ok());
    assert_eq!(domain_literal("[ipv6:::1]"), "::1".parse().ok());
    for bad in ["[2001:db8::1]", "[192.0.2.1", "192.0.2.1", "[example.test]", "[IPv6:192.0.2.1]"] {
        assert_eq!(domain_literal(bad), None, "{bad}");
    }
}

#[test]
fn shuffling_keeps_the_order_of_preferences_and_every_host() {
    let mut rng = Shuffle::seeded();
    for _ in 0..200 {
        let mut list: Vec<(u16, u32)> = vec![(0, 0), (5, 1), (5, 2), (5, 3), (7, 4), (9, 5), (9, 6)];
        shuffle_equal_preferences(&mut list, &mut rng);
        assert!(list.windows(2).all(|w| w[0].0 <= w[1].0), "{list:?}");
        let mut ids: Vec<u32> = list.iter().map(|(_, id)| *id).collect();
        ids.sort();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6]);
    }
}
