//! Delivery status notifications from the binary: a recipient the next hop refuses gets its sender an RFC 3464
//! report at once; one deferred forever gets one delay notice and, once the message expires, a failure report;
//! NOTIFY=NEVER and the null sender get none. The reports are read by Python's `email` package, the way a
//! mail client would read them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// A smart host (the sink: `reject` recipients get 550, `later` ones 451) and the sender's mailbox here.
fn config(sink_port: u16, transport: &str) -> String {
    format!(
        "[transport]\ntransient_failure_retry_interval = \"1s\"\n{transport}\n\n[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{sink_port}\"]\n"
    )
}

/// The reports in the sender's mailbox, oldest first.
fn reports(data: &Path) -> Vec<PathBuf> {
    let mut files = maildir_new(data, "localhost", "sender");
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
}

/// A report as Python's `email` package reads it: its content type and report type, its From, and per
/// recipient its Final-Recipient, Action and Status.
fn parse(report: &Path) -> serde_json::Value {
    let script = r#"
import email, json, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.compat32)
out = {"type": m.get_content_type(), "report_type": m.get_param("report-type"), "from": m["From"],
       "subject": m["Subject"], "recipients": [], "parts": [p.get_content_type() for p in m.walk()]}
for part in m.walk():
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        out["per_message"] = dict(blocks[0].items())
        for b in blocks[1:]:
            out["recipients"].append({
                "final_recipient": b["Final-Recipient"].split(";", 1)[1].strip(),
                "action": b["Action"].strip(),
                "status": b["Status"].strip(),
                "remote_mta": (b["Remote-MTA"] or "").strip(),
            })
print(json.dumps(out))
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(report).output().expect("python3 runs");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn recipients(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_owned();
            (field("final_recipient"), field("action"), field("status"))
        })
        .collect()
}

fn assert_is_a_report(report: &serde_json::Value) {
    assert_eq!(report["type"], "multipart/report", "{report}");
    assert_eq!(report["report_type"], "delivery-status", "{report}");
    assert!(report["from"].as_str().unwrap().to_ascii_lowercase().contains("mailer-daemon@mx.test"), "{report}");
}

#[test]
fn a_refused_recipient_gets_its_sender_a_failure_report_within_one_attempt() {
    let sink = Sink::start();
    let s = Server::start(&config(sink.port, ""));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail(
        "sender@localhost",
        &["reject@remote.test", "fine@remote.test"],
        "Subject: to be refused\r\nMessage-ID: <r1@localhost>\r\n\r\nbody\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(20), || !reports(&s.data()).is_empty()), "no report: {}", s.log());
    assert_eq!(sink.count(), 1, "the accepted recipient's copy went");
    let report = parse(&reports(&s.data())[0]);
    assert_is_a_report(&report);
    assert_eq!(
        recipients(&report),
        [("reject@remote.test".to_owned(), "failed".to_owned(), "5.1.1".to_owned())],
        "{report}"
    );
    // The next hop that refused it is named.
    assert_eq!(report["recipients"][0]["remote_mta"], "dns; 127.0.0.1", "{report}");
    // The report itself was submitted like any message: from the null sender, with a DSN event (the tracking
    // log is written every 200 ms, so the event may come after the report).
    let dsn_event = || tracking_events(&s.data()).iter().any(|e| e["event_id"] == "DSN");
    assert!(wait_until(Duration::from_secs(10), dsn_event), "{:?}", tracking_events(&s.data()));
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 0));
}

#[test]
fn a_recipient_deferred_forever_gets_one_delay_notice_then_a_failure_report() {
    let sink = Sink::start();
    let transport =
        "message_retry_interval = \"1s\"\ndelay_notification_timeout = \"2s\"\nmessage_expiration_timeout = \"6s\"";
    let s = Server::start(&config(sink.port, transport));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("sender@localhost", &["later@remote.test"], "Subject: deferred\r\n\r\nbody\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(30), || reports(&s.data()).len() >= 2), "reports: {:?}", reports(&s.data()));
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 0), "the expired message left its queue");
    // Nothing more comes: one delay notice, one failure report.
    assert!(holds_for(Duration::from_secs(3), || reports(&s.data()).len() == 2));
    let files = reports(&s.data());
    let (delay, failure) = (parse(&files[0]), parse(&files[1]));
    assert_is_a_report(&delay);
    assert_is_a_report(&failure);
    let delayed = recipients(&delay);
    assert_eq!(delayed.len(), 1, "{delay}");
    assert_eq!((delayed[0].0.as_str(), delayed[0].1.as_str()), ("later@remote.test", "delayed"), "{delay}");
    assert!(delayed[0].2.starts_with("4."), "{delay}");
    assert_eq!(
        recipients(&failure),
        [("later@remote.test".to_owned(), "failed".to_owned(), "4.4.7".to_owned())],
        "{failure}"
    );
}

#[test]
fn notify_never_and_the_null_sender_get_no_report() {
    let sink = Sink::start();
    let s = Server::start(&config(sink.port, ""));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    // NOTIFY=NEVER: no report.
    assert!(c.cmd("MAIL FROM:<sender@localhost>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<reject-never@remote.test> NOTIFY=NEVER").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: never\r\n\r\nx\r\n.\r\n");
    assert!(c.read().starts_with("250"));
    // The null sender: a bounce of a bounce is dropped.
    let r = c.mail("", &["reject-null@remote.test"], "Subject: from the null sender\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    // Then one that does get a report, after the two above.
    let r = c.mail("sender@localhost", &["reject-marker@remote.test"], "Subject: marker\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(20), || !reports(&s.data()).is_empty()), "no report: {}", s.log());
    assert!(wait_until(Duration::from_secs(10), || s.queued() == 0));
    assert!(holds_for(Duration::from_secs(1), || reports(&s.data()).len() == 1));
    let report = parse(&reports(&s.data())[0]);
    let named: Vec<String> = recipients(&report).into_iter().map(|r| r.0).collect();
    assert_eq!(named, ["reject-marker@remote.test"], "{report}");
    let fails = tracking_events(&s.data()).into_iter().filter(|e| e["event_id"] == "FAIL").count();
    assert_eq!(fails, 3, "every refusal is still tracked");
}
