//! Expiry: a message still queued `message_expiration_timeout` after it was received fails for its
//! remaining recipients with `550 4.4.7`, one FAIL event, and its copies are removed durably; a copy being
//! delivered then expires when its attempt ends without success.

use std::time::Duration;

use sluice_transport::{Counter, Limits, Routing};

use crate::harness::{
    Answer, FakeAgent, delivery_queue, ms, notices, originals, pass, smart_host, start, still, submit, tracked, until,
};

const EXPIRY: Duration = Duration::from_secs(30 * 60);

fn limits() -> Limits {
    Limits { message_expiration_timeout: EXPIRY, ..Limits::default() }
}

fn relay() -> Routing {
    Routing { limits: limits(), ..smart_host("g-relay", "relay.example:25") }
}

#[tokio::test(start_paused = true)]
async fn a_message_its_next_hop_never_takes_expires_with_one_failure_and_stays_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering((0..100).map(|_| Answer::RefuseConnection("421 4.4.1 connection refused")));
    let transport = start(dir.path(), relay(), &agent).await;
    let mid = submit(&transport, &["bob@remote.example", "carol@remote.example"]).await;
    until("the queue waits for its retry", || transport.queue(&delivery_queue(0)).is_ok_and(|q| q.status == "Retry"))
        .await;
    let listed = originals(&transport);
    let received = ms(&Some(listed[0].date_received.clone()));
    assert_eq!(ms(&Some(listed[0].expiration_time.clone())) - received, EXPIRY.as_millis() as i64);

    pass(EXPIRY - Duration::from_secs(5)).await;
    assert_eq!(originals(&transport).len(), 1, "expired early");
    assert_eq!(transport.expired_since_start(), 0);
    pass(Duration::from_secs(10)).await;
    until("the message expired", || originals(&transport).is_empty()).await;
    assert_eq!(transport.expired_since_start(), 1);
    let fail = tracked(dir.path(), "FAIL", mid).await;
    let reply = fail["reply"].as_str().unwrap();
    assert!(reply.starts_with("550 4.4.7 Message expired"), "{reply}");
    assert_eq!(fail["recipients"], serde_json::json!(["bob@remote.example", "carol@remote.example"]));
    // The notice's event is logged once the notice is stored, after the FAIL.
    tracked(dir.path(), "DSN", mid).await;
    let sent = notices(dir.path(), mid);
    assert_eq!(sent.len(), 1, "one failure notice covers both recipients: {sent:?}");
    assert_eq!(sent[0]["recipients"], serde_json::json!(["bob@remote.example", "carol@remote.example"]));
    // The notice waits in the same queue for the same next hop.
    assert_eq!(transport.queue(&delivery_queue(0)).map_or(0, |q| q.message_count), 1);
    // Counted: both recipients hard-bounced, one notice generated, every failed attempt a deferral of both.
    let counters = transport.counters();
    assert_eq!(counters.get(Counter::MessagesReceived).uptime, 1);
    assert_eq!(counters.get(Counter::RecipientsReceived).uptime, 2);
    assert_eq!(counters.get(Counter::HardBouncedRecipients).uptime, 2);
    assert_eq!(counters.get(Counter::GeneratedBounceRecipients).uptime, 1);
    assert_eq!(counters.get(Counter::DeliveredRecipients).uptime, 0);
    let deferrals = counters.get(Counter::SoftBouncedEvents).uptime;
    assert!(deferrals >= 2 && deferrals % 2 == 0, "{deferrals}");
    let attempts = agent.attempts().len();
    still(transport.shutdown()).await;

    let transport = start(dir.path(), relay(), &agent).await;
    assert!(originals(&transport).is_empty(), "the expiry is durable");
    let hard = transport.counters().get(Counter::HardBouncedRecipients);
    assert_eq!((hard.uptime, hard.lifetime, hard.reset), (0, 2, 2), "the lifetime column survives a restart");
    pass(Duration::from_secs(3600)).await;
    let later = &agent.attempts()[attempts..];
    assert!(later.iter().all(|a| a.mid != Some(mid)), "an expired message is not tried again");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_waiting_for_its_retry_expires_on_time() {
    let dir = tempfile::tempdir().unwrap();
    // The copy would wait 15 minutes (`message_retry_interval`); it expires after 10.
    let limits = Limits { message_expiration_timeout: Duration::from_secs(600), ..Limits::default() };
    let agent = FakeAgent::answering([Answer::Defer("451 4.2.2 mailbox full")]);
    let transport = start(dir.path(), Routing { limits, ..smart_host("g-relay", "relay.example:25") }, &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    until("the copy waits", || originals(&transport).iter().any(|m| m.status == "Retry")).await;
    pass(Duration::from_secs(600 + 2)).await;
    until("the message expired", || originals(&transport).is_empty()).await;
    assert!(tracked(dir.path(), "FAIL", mid).await["reply"].as_str().unwrap().starts_with("550 4.4.7"));
    assert_eq!(tries(&agent, mid), 1);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_being_delivered_expires_when_its_attempt_ends_without_success() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { message_expiration_timeout: Duration::from_secs(600), ..Limits::default() };
    // The next hop takes 15 minutes, then defers.
    let agent = FakeAgent::answering([Answer::DeferAfter(Duration::from_secs(900), "451 4.3.0 busy")]);
    let transport = start(dir.path(), Routing { limits, ..smart_host("g-relay", "relay.example:25") }, &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    pass(Duration::from_secs(660)).await;
    let listed = originals(&transport);
    assert_eq!(listed.len(), 1, "a copy being delivered stays while its attempt goes on");
    assert_eq!(listed[0].status, "Active");
    assert_eq!(transport.queue(&delivery_queue(0)).unwrap().status, "Active");
    pass(Duration::from_secs(300)).await;
    until("the message expired", || originals(&transport).is_empty()).await;
    assert!(tracked(dir.path(), "FAIL", mid).await["reply"].as_str().unwrap().starts_with("550 4.4.7"));
    assert_eq!((tries(&agent, mid), transport.expired_since_start()), (1, 1));
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_message_expires_too() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let transport = start(dir.path(), Routing { limits: limits(), ..Routing::default() }, &agent).await;
    let mid = submit(&transport, &["carol@nowhere.example"]).await;
    until("the message is in Unreachable", || transport.queue("Unreachable").unwrap().message_count == 1).await;
    let unreachable = transport.queue("Unreachable").unwrap();
    assert_eq!(unreachable.status, "Ready", "Unreachable delivers nothing: never Active");
    pass(EXPIRY + Duration::from_secs(2)).await;
    until("the message expired", || originals(&transport).is_empty()).await;
    let fail = tracked(dir.path(), "FAIL", mid).await;
    assert_eq!(fail["queue"], "test\\Unreachable");
    // What is left there is the failure notice to the sender, whose domain has no route either.
    tracked(dir.path(), "DSN", mid).await;
    until("the notice waits in Unreachable", || transport.queue("Unreachable").unwrap().message_count == 1).await;
    assert_eq!(notices(dir.path(), mid).len(), 1);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_with_a_copy_in_flight_at_its_expiry_expires_whole_with_one_notice_when_the_attempt_ends() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { message_expiration_timeout: Duration::from_secs(600), ..Limits::default() };
    let routing = Routing {
        limits,
        ..crate::harness::connectors(&[
            ("g-a", "a.example", "mx.a.example:25"),
            ("g-b", "b.example", "mx.b.example:25"),
        ])
    };
    // One copy's attempt takes 15 minutes; the other's is deferred at once and waits 15 minutes.
    let agent = FakeAgent::answering([
        Answer::DeferAfter(Duration::from_secs(900), "451 4.3.0 busy"),
        Answer::DeferAfter(Duration::from_secs(1), "451 4.3.0 busy"),
    ]);
    let transport = start(dir.path(), routing, &agent).await;
    let mid = submit(&transport, &["x@a.example", "y@b.example"]).await;
    pass(Duration::from_secs(720)).await;
    assert_eq!(originals(&transport).len(), 2, "both copies wait for the one in flight");
    assert_eq!(transport.expired_since_start(), 0);
    pass(Duration::from_secs(200)).await;
    until("the message expired", || originals(&transport).is_empty()).await;
    // A few rounds of the timer later, still one expiry: the notice, received now, does not expire with it.
    pass(Duration::from_secs(5)).await;
    assert_eq!(transport.expired_since_start(), 1, "one notice for the whole message");
    let fails = || {
        crate::harness::tracking_events(dir.path())
            .into_iter()
            .filter(|e| e["event_id"] == "FAIL" && e["mid"] == mid)
            .count()
    };
    until("a FAIL per copy is logged", || fails() == 2).await;
    assert_eq!(tries(&agent, mid), 2);
    tracked(dir.path(), "DSN", mid).await;
    assert_eq!(notices(dir.path(), mid).len(), 1);
    still(transport.shutdown()).await;
}

/// The attempts that carried message `mid` (not its notices).
fn tries(agent: &FakeAgent, mid: sluice_queue_db::Mid) -> usize {
    agent.attempts().iter().filter(|a| a.mid == Some(mid)).count()
}
