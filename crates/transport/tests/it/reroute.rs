//! Reload re-routes: the waiting copies of a queue whose connector was removed or changed go back to the
//! categorizer at once (not at their retry time); a copy being delivered goes when its attempt ends; a queue
//! in Retry for `max_idle_time_before_resubmit` has its messages categorized again.

use std::time::Duration;

use sluice_transport::{Limits, Routing, Target, TlsPolicy};

use crate::harness::{
    Answer, FakeAgent, delivery_queue, pass, queue, smart_host, start, still, submit, tracking_events, until,
};

#[tokio::test(start_paused = true)]
async fn a_reload_that_moves_a_connector_to_other_hosts_routes_its_waiting_copies_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::RefuseConnection("421 4.4.1 connection refused")]);
    let transport = start(dir.path(), smart_host("g-relay", "old.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    let old = delivery_queue(0);
    until("the queue waits for its retry", || transport.queue(&old).is_ok_and(|q| q.status == "Retry")).await;
    let reloaded = tokio::time::Instant::now();

    still(transport.set_routing(smart_host("g-relay", "new.example:25"))).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].mid, Some(mid));
    assert!(matches!(&attempts[1].target, Target::SmartHosts { hosts, .. } if hosts == &["new.example:25"]));
    assert!(attempts[1].at - reloaded < Duration::from_secs(1), "routed again at once, not at the retry time");
    assert_eq!(queue(&transport, &delivery_queue(1)).next_hop_domain, "new.example:25");
    // The old queue, empty and without a target, goes once idle.
    pass(Duration::from_secs(200)).await;
    assert!(transport.queue(&old).is_err());
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_changes_a_connectors_session_retries_its_queue_at_once_with_the_new_target() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Defer("451 4.7.0 TLS required")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    submit(&transport, &["bob@remote.example"]).await;
    until("the copy waits", || transport.messages(None, false).unwrap().iter().any(|m| m.status == "Retry")).await;

    let mut changed = smart_host("g-relay", "relay.example:25");
    changed.send_connectors[0].session.tls = TlsPolicy::Required;
    still(transport.set_routing(changed)).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(matches!(&attempts[1].target, Target::SmartHosts { session, .. } if session.tls == TlsPolicy::Required));
    assert!(attempts[1].at - attempts[0].at < Duration::from_secs(1), "not at the copy's retry time");
    // The same key: the same queue.
    assert_eq!(queue(&transport, &delivery_queue(0)).message_count, 0);
    assert!(transport.queue(&delivery_queue(1)).is_err());
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_being_delivered_at_a_reload_is_routed_again_when_its_attempt_ends() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::DeferAfter(Duration::from_secs(30), "451 4.3.0 busy")]);
    let transport = start(dir.path(), smart_host("g-relay", "old.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    until("the copy is being delivered", || {
        transport.messages(Some(&delivery_queue(0)), false).is_ok_and(|m| m.iter().any(|m| m.status == "Active"))
    })
    .await;
    still(transport.set_routing(smart_host("g-relay", "new.example:25"))).await;
    assert_eq!(transport.messages(None, false).unwrap()[0].status, "Active", "left to its attempt");
    pass(Duration::from_secs(31)).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].mid, Some(mid));
    assert!(matches!(&attempts[1].target, Target::SmartHosts { hosts, .. } if hosts == &["new.example:25"]));
    assert!(attempts[1].at - attempts[0].at < Duration::from_secs(32), "not after message_retry_interval");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_queue_in_retry_that_delivered_nothing_for_long_has_its_messages_categorized_again() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_idle_time_before_resubmit: Duration::from_secs(1800), ..Limits::default() };
    let agent = FakeAgent::answering((0..100).map(|_| Answer::RefuseConnection("421 4.4.1 connection refused")));
    let transport = start(dir.path(), Routing { limits, ..smart_host("g-relay", "relay.example:25") }, &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    let name = delivery_queue(0);
    let routes = || tracking_events(dir.path()).iter().filter(|e| e["event_id"] == "ROUTE" && e["mid"] == mid).count();
    until("the queue waits for its retry", || transport.queue(&name).is_ok_and(|q| q.status == "Retry")).await;
    until("the message was routed", || routes() == 1).await;
    pass(Duration::from_secs(1790)).await;
    assert_eq!(queue(&transport, &name).message_count, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(routes(), 1, "categorized again too early");
    // Resubmitted: categorized again, into the same queue (the routing did not change), which still waits.
    let before = agent.attempts().len();
    pass(Duration::from_secs(15)).await;
    until("the message was routed again", || routes() == 2).await;
    until("the message is back in its queue", || queue(&transport, &name).message_count == 1).await;
    assert_eq!(agent.attempts().len(), before, "a resubmission does not cut the queue's Retry short");
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_routes_only_the_recipients_that_came_back_to_submission() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let only_a = crate::harness::connectors(&[("g-a", "a.example", "mx.a.example:25")]);
    let transport = start(dir.path(), only_a, &agent).await;
    let mid = submit(&transport, &["bob@a.example", "carol@b.example"]).await;
    until("carol waits in Unreachable", || transport.queue("Unreachable").unwrap().message_count == 1).await;
    until("bob is delivered", || agent.attempts().len() == 1).await;

    let both =
        crate::harness::connectors(&[("g-a", "a.example", "mx.a.example:25"), ("g-b", "b.example", "mx.b.example:25")]);
    still(transport.set_routing(both)).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    pass(Duration::from_secs(10)).await;
    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 2, "bob is not delivered twice: {attempts:?}");
    assert_eq!((attempts[1].mid, attempts[1].recipients.clone()), (Some(mid), vec!["carol@b.example".to_owned()]));
    still(transport.shutdown()).await;
}
