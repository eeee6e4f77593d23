//! Safety Net resubmission: a delivered message is found by its delivery window and sender, sent again
//! as a new message (source `Resubmit`) without a delivery status notice, and logged as `RESUBMIT` naming
//! the original; the other messages of the window are left alone. Requests refuse bad input and wrong
//! states with errors the API maps to 400, 404 and 409.

use std::time::Duration;

use sluice_api_types::NewResubmitRequest;
use sluice_queue_db::time::rfc3339;
use sluice_queue_db::{EnvelopeParts, now_ms};
use sluice_transport::{Handoff, ResubmitError, Transport};

use crate::harness::{FakeAgent, SENDER, envelope, pass, smart_host, start, still, submit_message, tracked, until};

const BODY: &[u8] = b"Subject: test\r\nMessage-ID: <orig.1@here.example>\r\n\r\nHello.\r\n";

fn with(f: impl FnOnce(&mut EnvelopeParts), recipients: &[&str]) -> EnvelopeParts {
    let mut e = envelope(recipients);
    f(&mut e);
    e
}

fn window(sender: Option<&str>) -> NewResubmitRequest {
    NewResubmitRequest {
        start_time: rfc3339(now_ms() - 60_000),
        end_time: rfc3339(now_ms() + 60_000),
        sender: sender.map(str::to_owned),
        ..NewResubmitRequest::default()
    }
}

async fn settle(transport: &Transport) {
    until("nothing is queued", || transport.messages(None, false).unwrap().is_empty()).await;
    pass(Duration::from_secs(120)).await;
    until("nothing is queued", || transport.messages(None, false).unwrap().is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn a_delivered_message_is_resubmitted_by_window_and_sender_without_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    // Delivered to the mailbox: a recipient that asked for it gets a success notice.
    agent.set_handoff(Handoff::Delivered);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let success = |e: &mut EnvelopeParts| e.recipients[0].notify = Some("SUCCESS".into());
    let first = submit_message(&transport, with(success, &["bob@remote.example"]), BODY).await;
    let other = with(|e| e.from = "carol@here.example".into(), &["dave@remote.example", "erin@remote.example"]);
    let other = submit_message(&transport, other, BODY).await;
    until("both are delivered, and the success notice", || agent.deliveries().len() == 3).await;
    settle(&transport).await;
    let notices = || agent.deliveries().iter().filter(|a| a.from.is_empty()).count();
    assert_eq!(notices(), 1, "the first delivery's success notice");

    let added = still(transport.add_resubmit_request(&window(Some(&SENDER.to_uppercase())), "admin API test")).await;
    let added = added.unwrap();
    assert_eq!((added.enabled, added.origin.as_str()), (true, "admin API test"));
    until("the request completes", || transport.resubmit_request(added.id).unwrap().status == "Completed").await;
    let done = transport.resubmit_request(added.id).unwrap();
    assert_eq!((done.matched, done.resubmitted), (1, 1), "{done:?}");
    assert!(done.completed.is_some());

    until("the resubmitted copy is delivered", || agent.deliveries().len() == 4).await;
    settle(&transport).await;
    let deliveries = agent.deliveries();
    assert_eq!(deliveries.len(), 4, "{deliveries:?}");
    let again = &deliveries[3];
    let new_mid = again.mid.unwrap();
    assert!(new_mid != first && new_mid != other, "a new MID");
    assert_eq!((again.from.as_str(), again.recipients.clone()), (SENDER, vec!["bob@remote.example".to_owned()]));
    assert!(again.body.ends_with(BODY), "the same message");
    assert_eq!(notices(), 1, "no notice for the resubmitted message");

    let ev = tracked(dir.path(), "RESUBMIT", new_mid).await;
    assert_eq!(ev["source"], "admin API test");
    assert!(ev["reply"].as_str().unwrap().contains(&format!("original MID {first}")), "{ev}");

    // A second request over the same window for everyone: the two originals and the success notice (a
    // delivered message too), not the resubmission.
    let all = still(transport.add_resubmit_request(&window(None), "admin API test")).await.unwrap();
    until("the second request completes", || transport.resubmit_request(all.id).unwrap().status == "Completed").await;
    let all = transport.resubmit_request(all.id).unwrap();
    assert_eq!((all.matched, all.resubmitted), (3, 3), "{all:?}");
    until("all three are delivered again", || agent.deliveries().len() == 7).await;
    let carol = agent.deliveries().into_iter().rfind(|a| a.from == "carol@here.example").unwrap();
    assert_eq!(carol.recipients, ["dave@remote.example", "erin@remote.example"]);
    settle(&transport).await;
    assert_eq!(agent.deliveries().len(), 7);
    // One notice was ever made: the first delivery's.
    tokio::time::sleep(Duration::from_millis(1)).await;
    std::thread::sleep(Duration::from_millis(300));
    let dsn_events = crate::harness::tracking_events(dir.path()).into_iter().filter(|e| e["event_id"] == "DSN").count();
    assert_eq!(dsn_events, 1);
    transport.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn requests_refuse_bad_times_unknown_ids_and_changes_to_a_completed_request() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let bad = NewResubmitRequest { start_time: "yesterday".into(), ..window(None) };
    let e = still(transport.add_resubmit_request(&bad, "t")).await.unwrap_err();
    assert!(matches!(&e, ResubmitError::Invalid(w) if w.starts_with("start_time")), "{e}");
    let backwards = NewResubmitRequest { end_time: rfc3339(now_ms() - 120_000), ..window(None) };
    let e = still(transport.add_resubmit_request(&backwards, "t")).await.unwrap_err();
    assert!(matches!(&e, ResubmitError::Invalid(w) if w.contains("before")), "{e}");
    assert!(transport.resubmit_requests().is_empty());
    assert!(matches!(transport.resubmit_request(7), Err(ResubmitError::NotFound(7))));
    assert!(matches!(still(transport.remove_resubmit_request(7)).await, Err(ResubmitError::NotFound(7))));

    let r = still(transport.add_resubmit_request(&window(None), "t")).await.unwrap();
    until("the empty request completes", || transport.resubmit_request(r.id).unwrap().status == "Completed").await;
    assert_eq!(transport.resubmit_request(r.id).unwrap().matched, 0);
    let e = still(transport.set_resubmit_request_enabled(r.id, false)).await.unwrap_err();
    assert!(matches!(e, ResubmitError::WrongState { .. }), "{e}");
    let removed = still(transport.remove_resubmit_request(r.id)).await.unwrap();
    assert_eq!(removed.id, r.id);
    assert!(transport.resubmit_requests().is_empty());
    transport.shutdown().await;
}

/// A request that was running when the server stopped runs again at start from the progress it saved: the
/// messages it had handled are not sent twice.
#[tokio::test(start_paused = true)]
async fn a_request_running_at_a_stop_resumes_after_the_last_message_it_saved() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let first = submit_message(&transport, envelope(&["bob@remote.example"]), BODY).await;
    let second = submit_message(&transport, envelope(&["carol@remote.example"]), BODY).await;
    until("both are delivered", || agent.deliveries().len() == 2).await;
    settle(&transport).await;
    transport.shutdown().await;

    // As the file is when a run had handled the first message, saved, and the process died.
    let window = window(None);
    let file = serde_json::json!({
        "version": 1,
        "next_id": 8,
        "requests": [{
            "id": 7,
            "start_ms": sluice_queue_db::time::parse_rfc3339(&window.start_time).unwrap(),
            "end_ms": sluice_queue_db::time::parse_rfc3339(&window.end_time).unwrap(),
            "sender": null, "recipient": null, "internet_message_id": null,
            "enabled": true, "status": "Running", "matched": 2, "resubmitted": 1,
            "created_ms": now_ms(), "completed_ms": null, "origin": "admin API test", "error": null,
            "done_through": first
        }]
    });
    std::fs::write(dir.path().join("resubmit-requests.json"), file.to_string()).unwrap();
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    until("the request completes", || transport.resubmit_request(7).is_ok_and(|r| r.status == "Completed")).await;
    let done = transport.resubmit_request(7).unwrap();
    assert_eq!((done.matched, done.resubmitted), (2, 2), "{done:?}");
    until("the second is delivered again", || agent.deliveries().len() == 3).await;
    settle(&transport).await;
    let recipients: Vec<Vec<String>> = agent.deliveries().into_iter().map(|a| a.recipients).collect();
    assert_eq!(recipients[2], ["carol@remote.example"], "only the message after the saved progress: {recipients:?}");
    assert_eq!(agent.deliveries().len(), 3);
    assert!(second > first);
    // The next request gets a new id, and the file keeps both.
    let next = still(transport.add_resubmit_request(&window, "t")).await.unwrap();
    assert_eq!(next.id, 8);
    transport.shutdown().await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("resubmit-requests.json")).unwrap()).unwrap();
    let ids: Vec<u64> = saved["requests"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [7, 8]);
}
