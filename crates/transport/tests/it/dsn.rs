//! Delivery status notifications end to end: a recipient the next hop rejects makes one notice, which is
//! queued like any message (from `<>`, source `DSN`) and delivered through the same next hop; the delivered
//! bytes are read back with Python's `email` package, an independent MIME parser. `NOTIFY=`, the null
//! sender and a bouncing notice decide when none is sent.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice_queue_db::EnvelopeParts;
use sluice_transport::{Handoff, Transport};

use crate::harness::{
    Answer, Attempt, FakeAgent, HOSTNAME, SENDER, envelope, pass, smart_host, start, still, submit_message,
    tracking_events, until,
};

const BODY: &[u8] = b"Subject: test\r\nMessage-ID: <orig.1@here.example>\r\n\r\nHello.\r\n";

/// Reads a delivered notice with Python's `email` package and returns what it found, as JSON: the
/// top-level fields, the parts' types, the report's per-message and per-recipient fields, the explanation,
/// what was returned, and every parsing defect.
fn parse(notice: &[u8]) -> Value {
    const SCRIPT: &str = r#"
import email, json, sys
msg = email.message_from_bytes(sys.stdin.buffer.read())
parts = msg.get_payload()
status = next(p for p in parts if p.get_content_type() == "message/delivery-status")
blocks = status.get_payload()
out = {
    "content_type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "from": msg["From"], "to": msg["To"], "subject": msg["Subject"],
    "auto_submitted": msg["Auto-Submitted"], "in_reply_to": msg["In-Reply-To"],
    "parts": [p.get_content_type() for p in parts],
    "per_message": dict(blocks[0].items()),
    "recipients": [dict(b.items()) for b in blocks[1:]],
    "text": parts[0].get_payload(decode=True).decode("ascii"),
    "defects": [type(d).__name__ for p in msg.walk() for d in p.defects],
}
if len(parts) > 2:
    returned = parts[2]
    if returned.get_content_type() == "message/rfc822":
        original = returned.get_payload()[0]
        body = original.get_payload(decode=True).decode("utf-8", "replace")
        out["returned"] = {"subject": str(original["Subject"]), "body": body}
    else:
        out["returned"] = {"headers": returned.get_payload()}
print(json.dumps(out))
"#;
    let mut python = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python.stdin.take().unwrap().write_all(notice).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 could not read the notice: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Lets the paused clock run a second at a time until `done` holds (retries included), for at most a day.
async fn run_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..86_400 {
        if done() {
            return;
        }
        pass(Duration::from_secs(1)).await;
        // The queue database answers on its own threads, in real time.
        until("a moment passes", || true).await;
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("gave up waiting until {what}");
}

/// Waits until nothing is queued, then lets a few more virtual minutes pass, so that a notice that should
/// not exist would have been made and delivered.
async fn settle(transport: &Transport) {
    until("nothing is queued", || transport.messages(None, false).unwrap().is_empty()).await;
    pass(Duration::from_secs(120)).await;
    until("nothing is queued", || transport.messages(None, false).unwrap().is_empty()).await;
}

/// The deliveries of notices (from the null sender).
fn notices(agent: &FakeAgent) -> Vec<Attempt> {
    agent.deliveries().into_iter().filter(|a| a.from.is_empty()).collect()
}

fn with(f: impl FnOnce(&mut EnvelopeParts), recipients: &[&str]) -> EnvelopeParts {
    let mut e = envelope(recipients);
    f(&mut e);
    e
}

#[tokio::test(start_paused = true)]
async fn a_rejected_recipient_gets_its_sender_one_notice_queued_and_then_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // The original is rejected; the notice is deferred once, so that it can be seen waiting in its queue.
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user"), Answer::Defer("451 4.3.0 later")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let e = with(
        |e| e.internet_message_id = Some("<orig.1@here.example>".into()),
        &["bob@remote.example", "carol@remote.example"],
    );
    let mid = submit_message(&transport, e, BODY).await;

    until("the notice waits for its retry", || {
        transport.messages(None, false).unwrap().iter().any(|m| m.message_source_name == "DSN" && m.retry_count == 1)
    })
    .await;
    let listed = transport.messages(None, true).unwrap();
    assert_eq!(listed.len(), 1, "the original is done; only the notice is queued: {listed:?}");
    let queued = &listed[0];
    assert_ne!(queued.mid, mid);
    assert_eq!(queued.from_address, "");
    assert_eq!(queued.subject.as_deref(), Some("Undelivered Mail Returned to Sender"));
    let to: Vec<&str> = queued.recipients.iter().flatten().map(|r| r.address.as_str()).collect();
    assert_eq!(to, [SENDER]);

    run_until("the notice is delivered", || notices(&agent).len() == 2).await;
    settle(&transport).await;
    let deliveries = agent.deliveries();
    assert_eq!(deliveries.len(), 3, "the original, then the notice twice: {deliveries:?}");
    let notice = &deliveries[2];
    assert_eq!(
        (notice.mid, notice.from.as_str(), notice.recipients.clone()),
        (Some(queued.mid), "", vec![SENDER.into()])
    );

    let n = parse(&notice.body);
    assert_eq!(n["defects"], serde_json::json!([]), "{n}");
    assert_eq!(n["content_type"], "multipart/report");
    assert_eq!(n["report_type"], "delivery-status");
    assert_eq!(n["parts"], serde_json::json!(["text/plain", "message/delivery-status", "message/rfc822"]));
    assert_eq!(n["from"], format!("Mail Delivery System <MAILER-DAEMON@{HOSTNAME}>"));
    assert_eq!(n["to"], format!("<{SENDER}>"));
    assert_eq!(n["subject"], "Undelivered Mail Returned to Sender");
    assert_eq!(n["auto_submitted"], "auto-replied");
    assert_eq!(n["in_reply_to"], "<orig.1@here.example>");
    assert_eq!(n["per_message"]["Reporting-MTA"], format!("dns; {HOSTNAME}"));
    let recipients = n["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "one notice lists both recipients");
    for (r, address) in recipients.iter().zip(["bob@remote.example", "carol@remote.example"]) {
        assert_eq!(r["Final-Recipient"], format!("rfc822; {address}"));
        assert_eq!(r["Action"], "failed");
        assert_eq!(r["Status"], "5.1.1");
        assert_eq!(r["Diagnostic-Code"], "smtp; 550 5.1.1 no such user");
        assert!(r.get("Will-Retry-Until").is_none());
    }
    assert!(n["text"].as_str().unwrap().contains("<bob@remote.example>: 550 5.1.1 no such user"));
    assert_eq!(n["returned"]["subject"], "test");
    assert_eq!(n["returned"]["body"], "Hello.\r\n");
    still(transport.shutdown()).await;

    let dsn: Vec<Value> = tracking_events(dir.path()).into_iter().filter(|e| e["event_id"] == "DSN").collect();
    assert_eq!(dsn.len(), 1, "{dsn:?}");
    assert_eq!(dsn[0]["mid"], mid);
    assert_eq!(dsn[0]["recipients"], serde_json::json!(["bob@remote.example", "carol@remote.example"]));
    assert_eq!(dsn[0]["reply"], format!("failed notice queued as {}", queued.mid));
}

#[tokio::test(start_paused = true)]
async fn ret_hdrs_returns_the_header_section_and_the_report_names_envid_and_orcpt() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Reject("554 5.7.1 refused")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let e = with(
        |e| {
            e.ret = Some("HDRS".into());
            e.env_id = Some("ENV-42".into());
            e.recipients[0].orcpt = Some("rfc822;Bob@Remote.Example".into());
        },
        &["bob@remote.example"],
    );
    submit_message(&transport, e, BODY).await;
    run_until("the notice is delivered", || notices(&agent).len() == 1).await;
    settle(&transport).await;

    let n = parse(&notices(&agent)[0].body);
    assert_eq!(n["defects"], serde_json::json!([]), "{n}");
    assert_eq!(n["parts"], serde_json::json!(["text/plain", "message/delivery-status", "text/rfc822-headers"]));
    let headers = n["returned"]["headers"].as_str().unwrap();
    assert!(headers.contains("Subject: test") && !headers.contains("Hello."), "{headers}");
    assert_eq!(n["per_message"]["Original-Envelope-Id"], "ENV-42");
    assert_eq!(n["recipients"][0]["Original-Recipient"], "rfc822;Bob@Remote.Example");
    assert_eq!(n["recipients"][0]["Status"], "5.7.1");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn notify_never_means_no_notice() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let e = with(|e| e.recipients[0].notify = Some("NEVER".into()), &["bob@remote.example"]);
    submit_message(&transport, e, BODY).await;
    settle(&transport).await;
    assert_eq!(agent.deliveries().len(), 1, "only the original");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_from_the_null_sender_gets_no_notice() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    submit_message(&transport, with(|e| e.from = String::new(), &["bob@remote.example"]), BODY).await;
    settle(&transport).await;
    assert_eq!(agent.deliveries().len(), 1, "only the original");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_notice_that_bounces_gets_no_notice_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    // The original is rejected, and so is the notice to its sender.
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user"), Answer::Reject("550 5.1.1 gone")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    submit_message(&transport, envelope(&["bob@remote.example"]), BODY).await;
    run_until("the notice is tried", || notices(&agent).len() == 1).await;
    settle(&transport).await;
    let deliveries = agent.deliveries();
    assert_eq!(deliveries.len(), 2, "the original and its notice, nothing more: {deliveries:?}");
    assert_eq!((deliveries[1].from.as_str(), deliveries[1].recipients.clone()), ("", vec![SENDER.to_owned()]));
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_resubmitted_message_gets_no_notice() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    submit_message(&transport, with(|e| e.source_name = "Resubmit".into(), &["bob@remote.example"]), BODY).await;
    settle(&transport).await;
    assert_eq!(agent.deliveries().len(), 1, "only the original");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn notify_success_with_a_mailbox_delivery_gets_a_delivered_notice() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    agent.set_handoff(Handoff::Delivered);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let e = with(|e| e.recipients[0].notify = Some("SUCCESS".into()), &["bob@remote.example", "carol@remote.example"]);
    submit_message(&transport, e, BODY).await;
    run_until("the notice is delivered", || notices(&agent).len() == 1).await;
    settle(&transport).await;
    assert_eq!(agent.deliveries().len(), 2);

    let n = parse(&notices(&agent)[0].body);
    assert_eq!(n["defects"], serde_json::json!([]), "{n}");
    assert_eq!(n["subject"], "Successful Mail Delivery Report");
    // A notice of success returns the header section only, whatever RET says.
    assert_eq!(n["parts"][2], "text/rfc822-headers");
    let recipients = n["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 1, "carol did not ask: {recipients:?}");
    assert_eq!(recipients[0]["Final-Recipient"], "rfc822; bob@remote.example");
    assert_eq!(recipients[0]["Action"], "delivered");
    assert_eq!(recipients[0]["Status"], "2.0.0");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn notify_success_gets_a_relayed_notice_unless_the_next_hop_took_the_dsn_parameters() {
    for (handoff, want) in [(Handoff::Relayed, Some("relayed")), (Handoff::PassedOn, None)] {
        let dir = tempfile::tempdir().unwrap();
        let agent = FakeAgent::default();
        agent.set_handoff(handoff);
        let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
        let e = with(|e| e.recipients[0].notify = Some("SUCCESS,FAILURE".into()), &["bob@remote.example"]);
        submit_message(&transport, e, BODY).await;
        settle(&transport).await;
        let notices = notices(&agent);
        match want {
            Some(action) => {
                assert_eq!(notices.len(), 1, "{handoff:?}");
                let n = parse(&notices[0].body);
                assert_eq!(n["recipients"][0]["Action"], action);
                assert_eq!(n["subject"], "Relayed Mail Delivery Report");
            }
            None => assert!(notices.is_empty(), "{handoff:?}: the next hop notifies"),
        }
        still(transport.shutdown()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_eight_bit_message_is_returned_unchanged_in_a_notice_declared_8bit() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let body = "Subject: caf\u{e9}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nna\u{ef}ve\r\n".as_bytes();
    submit_message(&transport, with(|e| e.body_8bit = true, &["bob@remote.example"]), body).await;
    run_until("the notice is delivered", || notices(&agent).len() == 1).await;
    settle(&transport).await;

    let notice = &notices(&agent)[0].body;
    assert!(notice.windows(body.len()).any(|w| w == body), "the original is returned byte for byte");
    let text = String::from_utf8_lossy(notice);
    assert!(text.contains("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"), "{text}");
    let n = parse(notice);
    assert_eq!(n["defects"], serde_json::json!([]), "{n}");
    assert_eq!(n["parts"][2], "message/rfc822");
    assert_eq!(n["recipients"][0]["Action"], "failed");
    assert_eq!(n["returned"]["body"], "na\u{ef}ve\r\n");
    still(transport.shutdown()).await;
}
