//! Relaying to a smart host, queueing while it is down, Unreachable and its resubmission on reload.

use std::time::Duration;

use crate::harness::*;

pub(crate) fn relay_config(sink_port: u16) -> String {
    format!(
        "[transport]\nqueue_glitch_retry_interval = \"1s\"\ntransient_failure_retry_interval = \"1s\"\noutbound_connection_failure_retry_interval = \"1s\"\nmessage_retry_interval = \"1s\"\n\n[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{sink_port}\"]\n"
    )
}

#[test]
fn relayed_mail_reaches_the_smart_host() {
    let sink = Sink::start();
    let s = Server::start(&relay_config(sink.port));
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                let mut c = s.smtp();
                c.cmd("EHLO client.test");
                for i in 0..25 {
                    let r = c.mail("a@example.test", &["b@remote.test"], &format!("Subject: m{t}-{i}\r\n\r\nx\r\n"));
                    assert!(r.starts_with("250"), "{r}");
                }
            });
        }
    });
    assert!(wait_until(Duration::from_secs(20), || sink.count() == 100), "sink has {}", sink.count());
    assert!(wait_until(Duration::from_secs(5), || s.queued() == 0));
    let subjects = sink.subjects.lock().unwrap();
    assert!(subjects.values().all(|n| *n == 1), "no duplicates without crashes");
}

#[test]
fn dsn_parameters_are_stored_with_the_message_and_passed_on() {
    let port = free_port();
    let mut s = Server::start(&relay_config(port));
    let mut c = s.smtp();
    assert!(c.cmd("EHLO client.test").contains("\r\n250-DSN\r\n"));
    assert!(c.cmd("MAIL FROM:<a@example.test> RET=HDRS ENVID=q+2Bx").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<b@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2B@remote.test").starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<c@remote.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: dsn\r\n\r\nx\r\n.\r\n");
    assert!(c.read().starts_with("250"));
    // The next hop is down: the parameters come back from the queue database after a restart.
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 1));
    assert!(s.signal_and_wait("TERM").success());
    s.spawn();
    let sink = Sink::start_on(port);
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 1), "sink has {}", sink.count());
    let commands = sink.commands.lock().unwrap().clone();
    assert_eq!(
        commands,
        [
            "MAIL FROM:<a@example.test> RET=HDRS ENVID=q+2Bx",
            "RCPT TO:<b@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2B@remote.test",
            "RCPT TO:<c@remote.test>",
        ]
    );
}

#[test]
fn mail_waits_in_retry_while_the_next_hop_is_down_then_arrives() {
    let port = free_port();
    let s = Server::start(&relay_config(port));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for i in 0..5 {
        assert!(
            c.mail("a@example.test", &["b@remote.test"], &format!("Subject: w{i}\r\n\r\nx\r\n")).starts_with("250")
        );
    }
    assert!(wait_until(Duration::from_secs(10), || {
        let q = s.get_json("/api/v1/queues");
        q["items"].as_array().unwrap().iter().any(|q| q["status"] == "Retry" && q["message_count"] == 5)
    }));
    let q = s.get_json("/api/v1/queues");
    let dq =
        q["items"].as_array().unwrap().iter().find(|q| q["delivery_type"] == "SmartHostConnectorDelivery").unwrap();
    assert_eq!(dq["next_hop_domain"], format!("127.0.0.1:{port}"));
    assert!(dq["last_error"].as_str().unwrap().starts_with("451 4.4.1"), "{dq}");
    let identity = dq["identity"].as_str().unwrap().to_owned();
    let m = s.get_json(&format!("/api/v1/messages?queue={}", identity.replace('\\', "%5C")));
    let items = m["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|m| m["status"] == "Retry" && m["from_address"] == "a@example.test"));
    let sink = Sink::start_on(port);
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 5), "sink has {}", sink.count());
    assert!(wait_until(Duration::from_secs(5), || s.queued() == 0));
}

#[test]
fn unroutable_mail_is_held_in_unreachable_until_a_reload_routes_it() {
    let sink = Sink::start();
    let mut s = Server::start("");
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("a@example.test", &["b@remote.test", "u@localhost"], "Subject: u\r\n\r\nx\r\n").starts_with("250"));
    assert!(wait_until(Duration::from_secs(10), || {
        let q = s.get_json("/api/v1/queues");
        q["items"].as_array().unwrap().iter().any(|q| q["identity"] == "mx\\Unreachable" && q["message_count"] == 1)
    }));
    // The local recipient was delivered; the remote one waits.
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "u").len() == 1));
    s.extra = relay_config(sink.port);
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "resubmitted after reload");
    assert!(wait_until(Duration::from_secs(5), || s.queued() == 0));
    // SIGHUP reloads too.
    s.signal_and_wait("HUP");
    assert!(s.child.is_some());
}

#[test]
fn a_permanent_failure_is_recorded_and_the_other_recipients_delivered() {
    let sink = Sink::start();
    let s = Server::start(&relay_config(sink.port));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["ok@remote.test", "reject@remote.test"], "Subject: f\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    // The delivered copy, then the sender's notice about the rejected recipient (through the same connector).
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 2));
    assert!(wait_until(Duration::from_secs(5), || s.queued() == 0), "a 5xx recipient does not stay queued");
    assert!(sink.commands.lock().unwrap().iter().any(|c| c.starts_with("MAIL FROM:<>")), "the notice is from <>");
    let messages = sink.messages.lock().unwrap();
    let notice = messages.iter().map(|m| String::from_utf8_lossy(m)).find(|m| m.contains("Reporting-MTA:"));
    let notice = notice.expect("a delivery status notice reached the sender's next hop");
    assert!(notice.contains("Content-Type: multipart/report; report-type=delivery-status;"), "{notice}");
    assert!(notice.contains("Reporting-MTA: dns; mx.test\r\n"), "{notice}");
    assert!(notice.contains("Final-Recipient: rfc822; reject@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
    assert!(notice.contains("To: <a@example.test>\r\n"), "{notice}");
    drop(messages);
    assert!(wait_until(Duration::from_secs(5), || {
        tracking_events(&s.data()).iter().any(|e| {
            e["event_id"] == "FAIL"
                && e["recipients"][0] == "reject@remote.test"
                && e["reply"].as_str().unwrap_or("").starts_with("550 5.1.1")
        })
    }));
    assert!(
        tracking_events(&s.data()).iter().any(|e| e["event_id"] == "DELIVER" && e["recipients"][0] == "ok@remote.test")
    );
}

#[test]
fn the_queue_database_shrinks_after_delivery_without_a_restart() {
    let sink = Sink::start();
    let s = Server::start(&format!(
        "[queue_database]\ngeneration_interval = \"5s\"\ncheckpoint_interval = \"2s\"\n\n\
         [transport]\nsafety_net_hold_time = \"2s\"\nqueue_glitch_retry_interval = \"1s\"\ntransient_failure_retry_interval = \"1s\"\noutbound_connection_failure_retry_interval = \"1s\"\nmessage_retry_interval = \"1s\"\n\n\
         [[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n",
        sink.port
    ));
    let body = format!("Subject: s\r\n\r\n{}\r\n", "y".repeat(4000));
    // `SLUICE_SHRINK_MESSAGES=20000` is the size issue #4 names; CI runs 2,000.
    let total: usize = std::env::var("SLUICE_SHRINK_MESSAGES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (s, body) = (&s, &body);
            scope.spawn(move || {
                let mut c = s.smtp();
                c.cmd("EHLO client.test");
                for _ in 0..total / 4 {
                    assert!(c.mail("a@example.test", &["b@remote.test"], body).starts_with("250"));
                }
            });
        }
    });
    assert!(wait_until(Duration::from_secs(60), || sink.count() == total), "sink has {}", sink.count());
    let queue_dir = s.data().join("queue");
    // The reserve files (`*.jrs`) are a fixed 2 MB set aside for a full disk, not data: they are left out
    // at the CI size (2,000 messages, 8 MB) and fit within the 10% at issue #4's 20,000.
    let reserves = total < 20_000;
    let size = || -> u64 {
        std::fs::read_dir(&queue_dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !(reserves && e.file_name().to_string_lossy().ends_with(".jrs")))
            // A generation removed between the listing and its stat has no size left.
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let message_bytes = (total * body.len()) as u64;
    let shrunk = wait_until(Duration::from_secs(60), || size() * 10 < message_bytes);
    let files: Vec<String> =
        std::fs::read_dir(&queue_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(shrunk, "queue database still {} bytes for {message_bytes} message bytes: {files:?}", size());
}

#[test]
fn a_large_message_is_spooled_and_streamed_out_intact() {
    // 6 MB, spooled by the session past its header and sent out in pieces: lines that start with a dot
    // fall on every kind of piece boundary.
    let sink = Sink::start();
    let s = Server::start(&relay_config(sink.port));
    let mut content = String::from("Subject: big\r\nX-Sluice-Test: kept from a relay client\r\n\r\n");
    let mut i = 0u64;
    while content.len() < 6 << 20 {
        let line = match i % 7 {
            0 => ".leading dot".to_owned(),
            3 => "..two dots".to_owned(),
            _ => format!("line {i} {}", "y".repeat((i % 97) as usize)),
        };
        content.push_str(&line);
        content.push_str("\r\n");
        i += 1;
    }
    let stuffed: String = content
        .split_inclusive("\r\n")
        .map(|l| if l.starts_with('.') { format!(".{l}") } else { l.to_owned() })
        .collect();
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["b@remote.test"], &stuffed);
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(30), || sink.count() == 1), "sink has {}", sink.count());
    let got = sink.messages.lock().unwrap()[0].clone();
    assert!(got.starts_with(b"Received: "), "sluice's trace header comes first");
    assert!(
        got.ends_with(content.as_bytes()),
        "the content arrived changed ({} bytes, sent {})",
        got.len(),
        content.len()
    );
    // Nothing is left in the spool directory: its files are unlinked when created.
    let spool = s.data().join("spool");
    assert_eq!(std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn a_next_hops_message_rate_spaces_its_deliveries() {
    let sink = Sink::start();
    let config =
        relay_config(sink.port).replace("[transport]\n", "[transport]\nmax_per_domain_messages_per_minute = 120\n");
    let s = Server::start(&config);
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let started = std::time::Instant::now();
    for i in 0..6 {
        let r = c.mail("a@example.test", &["b@remote.test"], &format!("Subject: rate {i}\r\n\r\nx\r\n"));
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(wait_until(Duration::from_secs(30), || sink.count() == 6), "sink has {}", sink.count());
    // 120 a minute: one every half second, so the sixth goes 2.5 s after the first at the earliest.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2400), "6 messages at 120 a minute took only {took:?}");
}
