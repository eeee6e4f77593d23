//! Retry: a recipient-level transient reply makes its copy wait `message_retry_interval` (15 minutes by
//! default), a queue-level failure holds the queue in Retry (the first ones `queue_glitch_retry_interval`,
//! a minute), on the paused clock; the attempt after it delivers. The whole schedule is in `glitch.rs`.

use std::time::Duration;

use crate::harness::{Answer, FakeAgent, SERVER, delivery_queue, pass, queue, smart_host, start, still, submit, until};

/// A copy's wait after a recipient-level 4xx in `Limits::default()` (`message_retry_interval`).
const RETRY: Duration = Duration::from_secs(900);

/// A queue's wait after its first failure in `Limits::default()` (`queue_glitch_retry_interval`).
const GLITCH: Duration = Duration::from_secs(60);

/// The retry timer looks every second, so a retry comes at most this long after its time.
const TICK: Duration = Duration::from_secs(1);

fn assert_waited_the_retry_interval(first: tokio::time::Instant, second: tokio::time::Instant) {
    assert_waited(RETRY, first, second);
}

fn assert_waited(wait: Duration, first: tokio::time::Instant, second: tokio::time::Instant) {
    let gap = second - first;
    assert!(gap >= wait - Duration::from_millis(100) && gap <= wait + TICK, "retried after {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_recipient_the_next_hop_defers_is_retried_after_the_retry_interval() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Defer("451 4.3.0 try again later")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;

    until("the copy waits for its retry", || {
        transport.messages(None, false).unwrap().iter().any(|m| m.mid == mid && m.status == "Retry")
    })
    .await;
    let listed = transport.messages(None, false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].retry_count, 1);
    assert_eq!(listed[0].last_error.as_deref(), Some("451 4.3.0 try again later"));
    // A deferred recipient holds its copy back, not the queue.
    let q = queue(&transport, &delivery_queue(0));
    assert_eq!((q.status.as_str(), q.deferred_message_count, q.next_retry_time), ("Ready", 1, None));

    pass(RETRY - TICK).await;
    assert_eq!(agent.attempts().len(), 1, "retried before the retry interval");
    pass(2 * TICK).await;
    until("the retry delivered the message", || transport.messages(None, false).unwrap().is_empty()).await;

    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].answer, Answer::Accept);
    assert_eq!(attempts[1].recipients, ["bob@remote.example"]);
    assert_waited_the_retry_interval(attempts[0].at, attempts[1].at);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn only_the_recipients_the_next_hop_defers_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::DeferFirst("452 4.2.2 mailbox full")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    submit(&transport, &["bob@remote.example", "carol@remote.example"]).await;

    until("the copy waits for its retry", || {
        transport.messages(None, false).unwrap().iter().any(|m| m.status == "Retry")
    })
    .await;
    let listed = transport.messages(None, true).unwrap();
    let waiting: Vec<&str> = listed[0].recipients.iter().flatten().map(|r| r.address.as_str()).collect();
    assert_eq!(waiting, ["bob@remote.example"], "carol was delivered");
    assert_eq!(listed[0].last_error.as_deref(), Some("452 4.2.2 mailbox full"));

    pass(RETRY + TICK).await;
    until("the retry delivered the message", || transport.messages(None, false).unwrap().is_empty()).await;
    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].recipients, ["bob@remote.example", "carol@remote.example"]);
    assert_eq!(attempts[1].recipients, ["bob@remote.example"]);
    assert_waited_the_retry_interval(attempts[0].at, attempts[1].at);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_next_hop_that_refuses_connections_holds_its_queue_in_retry_for_the_glitch_interval() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::RefuseConnection("421 4.4.1 connection refused")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    submit(&transport, &["bob@remote.example", "carol@remote.example"]).await;

    until("the queue waits for its retry", || transport.queue(&delivery_queue(0)).is_ok_and(|q| q.status == "Retry"))
        .await;
    let q = queue(&transport, &delivery_queue(0));
    assert_eq!(q.identity, format!("{SERVER}\\{}", delivery_queue(0)));
    assert_eq!(q.retry_count, 1);
    assert_eq!(q.last_error.as_deref(), Some("421 4.4.1 connection refused"));
    assert!(q.next_retry_time.is_some() && q.first_retry_time.is_some());
    assert_eq!((q.message_count, q.deferred_message_count), (1, 1));

    pass(GLITCH - TICK).await;
    assert_eq!(agent.attempts().len(), 1, "connected again before the retry interval");
    pass(2 * TICK).await;
    until("the retry delivered the message", || transport.messages(None, false).unwrap().is_empty()).await;

    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].mid, None, "the first attempt never got a connection");
    assert_eq!(attempts[1].recipients, ["bob@remote.example", "carol@remote.example"]);
    assert_waited(GLITCH, attempts[0].at, attempts[1].at);
    let q = queue(&transport, &delivery_queue(0));
    assert_eq!((q.status.as_str(), q.message_count, q.next_retry_time), ("Ready", 0, None));
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_deferred_copy_keeps_its_retry_count_and_waits_out_its_time_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let routing = smart_host("g-relay", "relay.example:25");
    let before = FakeAgent::answering([Answer::Defer("451 4.3.0 try again later")]);
    let transport = start(dir.path(), routing.clone(), &before).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    until("the copy waits for its retry", || {
        transport.messages(None, false).unwrap().iter().any(|m| m.status == "Retry")
    })
    .await;
    let deferred_at = before.attempts()[0].at;
    still(transport.shutdown()).await;

    let after = FakeAgent::default();
    let transport = start(dir.path(), routing, &after).await;
    let listed = transport.messages(None, false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].mid, listed[0].status.as_str(), listed[0].retry_count), (mid, "Retry", 1));
    assert_eq!(listed[0].last_error.as_deref(), Some("451 4.3.0 try again later"));

    pass(RETRY - TICK).await;
    assert!(after.attempts().is_empty(), "a restart does not cut a retry short");
    pass(2 * TICK).await;
    until("the retry delivered the message", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_waited_the_retry_interval(deferred_at, after.attempts()[0].at);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_recipient_the_next_hop_rejects_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Reject("550 5.1.1 no such user")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mid = submit(&transport, &["nobody@remote.example"]).await;
    until("the copy is done", || transport.messages(None, false).unwrap().iter().all(|m| m.mid != mid)).await;
    pass(3 * RETRY).await;
    // The sender's notice goes out too; the original is tried once.
    assert_eq!(agent.attempts().iter().filter(|a| a.mid == Some(mid)).count(), 1);
    // The empty queue is deleted once idle (`queue_max_idle_time`), if it is not yet.
    assert_eq!(transport.queue(&delivery_queue(0)).map_or(0, |q| q.message_count), 0);
    still(transport.shutdown()).await;
}
