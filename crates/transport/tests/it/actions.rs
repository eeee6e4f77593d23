//! An administrator's actions on the paused clock: a message suspended or removed while it is being
//! delivered is suspended or removed when the attempt ends (unless it delivered it); Retry-Queue connects at
//! once; Suspend-Queue holds a queue's copies without changing their statuses; lists are all or nothing.

use std::time::Duration;

use sluice_transport::ActionError;

use crate::harness::{
    Answer, FakeAgent, SERVER, delivery_queue, notices, pass, queue, smart_host, start, still, submit, tracked, until,
};

const ORIGIN: &str = "admin API 127.0.0.1:1";

fn id(queue: &str, mid: u64) -> String {
    format!("{SERVER}\\{queue}\\{mid}")
}

/// Whether the copy of `mid` in the first delivery queue is being delivered (in Submission a copy is
/// Active too, until the categorizer places it).
fn delivering(transport: &sluice_transport::Transport, mid: u64) -> bool {
    let queue = format!("{SERVER}\\{}", delivery_queue(0));
    transport.messages(None, false).unwrap().iter().any(|m| m.mid == mid && m.queue == queue && m.status == "Active")
}

/// Whether the first delivery queue exists and has this status.
fn queue_is(transport: &sluice_transport::Transport, status: &str) -> bool {
    transport.queue(&delivery_queue(0)).is_ok_and(|q| q.status == status)
}

fn status(transport: &sluice_transport::Transport, mid: u64) -> Option<String> {
    transport.messages(None, false).unwrap().into_iter().find(|m| m.mid == mid).map(|m| m.status)
}

#[tokio::test(start_paused = true)]
async fn a_message_suspended_in_flight_is_suspended_when_its_attempt_fails_and_waits_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::DeferAfter(Duration::from_secs(10), "451 4.3.0 later")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    until("the copy is being delivered", || delivering(&transport, mid)).await;

    let r = still(transport.suspend_messages(&[id(&delivery_queue(0), mid)], ORIGIN)).await.unwrap();
    assert_eq!((r.matched, r.changed), (1, 1));
    assert_eq!(r.items[0].status, "PendingSuspend");
    pass(Duration::from_secs(11)).await;
    until("the attempt ended and the copy is suspended", || status(&transport, mid).as_deref() == Some("Suspended"))
        .await;
    // A suspended copy is not retried, however long it waits.
    pass(Duration::from_secs(3600)).await;
    assert_eq!(agent.attempts().len(), 1);
    let q = queue(&transport, &delivery_queue(0));
    assert_eq!((q.message_count, q.deferred_message_count), (1, 1));

    let event = tracked(dir.path(), "SUSPEND", mid).await;
    assert_eq!(event["source"], ORIGIN);
    let r = still(transport.resume_messages(&[id(&delivery_queue(0), mid)], ORIGIN)).await.unwrap();
    assert_eq!(r.changed, 1);
    until("the resumed copy is delivered", || status(&transport, mid).is_none()).await;
    assert_eq!(agent.deliveries().len(), 2);
    tracked(dir.path(), "RESUME", mid).await;
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_suspension_asked_for_during_an_attempt_that_delivers_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::AcceptAfter(Duration::from_secs(10))]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    until("the copy is being delivered", || delivering(&transport, mid)).await;
    still(transport.suspend_messages(&[mid.to_string()], ORIGIN)).await.unwrap();
    pass(Duration::from_secs(11)).await;
    until("the copy was delivered", || status(&transport, mid).is_none()).await;
    assert_eq!(queue(&transport, &delivery_queue(0)).message_count, 0);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_removed_in_flight_goes_when_its_attempt_fails_and_its_sender_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::DeferAfter(Duration::from_secs(10), "451 4.3.0 later")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    until("the copy is being delivered", || delivering(&transport, mid)).await;

    let r = still(transport.remove_messages(&[format!("{SERVER}\\*\\{mid}")], true, ORIGIN)).await.unwrap();
    assert_eq!(r.items[0].status, "PendingRemove");
    pass(Duration::from_secs(11)).await;
    until("the copy is gone", || status(&transport, mid).is_none()).await;
    until("the sender was told", || notices(dir.path(), mid).len() == 1).await;
    let notice = &notices(dir.path(), mid)[0];
    assert!(notice["reply"].as_str().unwrap().contains("failed"), "{notice}");
    let event = tracked(dir.path(), "REMOVE", mid).await;
    assert_eq!(event["source"], ORIGIN);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn retry_queue_connects_at_once_instead_of_at_the_queue_s_retry_time() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::RefuseConnection("421 4.3.2 not now")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    let q = delivery_queue(0);
    until("the queue waits in Retry", || queue_is(&transport, "Retry")).await;
    let before = tokio::time::Instant::now();

    let r = still(transport.retry_queues(std::slice::from_ref(&q), false, ORIGIN)).await.unwrap();
    assert_eq!(r.changed, 1);
    pass(Duration::from_secs(2)).await;
    until("the retry delivered", || status(&transport, mid).is_none()).await;
    let delivered = agent.deliveries();
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0].at - before < Duration::from_secs(5),
        "delivered {:?} after the request",
        delivered[0].at - before
    );

    // A queue that is not in Retry is a conflict, and says its status.
    match still(transport.retry_queues(std::slice::from_ref(&q), false, ORIGIN)).await {
        Err(ActionError::WrongState(w)) => assert!(w[0].1.starts_with("Ready"), "{w:?}"),
        other => panic!("{other:?}"),
    }
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_suspended_queue_holds_its_copies_with_their_statuses_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::RefuseConnection("421 4.3.2 not now")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let first = submit(&transport, &["bob@remote.example"]).await;
    let q = delivery_queue(0);
    until("the queue waits in Retry", || queue_is(&transport, "Retry")).await;
    still(transport.suspend_queues(std::slice::from_ref(&q), ORIGIN)).await.unwrap();
    let mut mids = vec![first];
    for _ in 0..9 {
        mids.push(submit(&transport, &["bob@remote.example"]).await);
    }
    until("every copy is in the queue", || queue(&transport, &q).message_count == 10).await;
    // Past the queue's retry time: nothing is tried while it is suspended.
    pass(Duration::from_secs(300)).await;
    assert_eq!(agent.attempts().len(), 1);
    let listed = queue(&transport, &q);
    assert_eq!((listed.status.as_str(), listed.message_count), ("Suspended", 10));
    for mid in &mids {
        let s = status(&transport, *mid).unwrap();
        assert!(s == "Ready" || s == "Retry", "a message's own status is left alone: {s}");
    }
    // A second suspension changes nothing; Poison cannot be suspended; a list with one unknown queue
    // changes nothing.
    assert_eq!(still(transport.suspend_queues(std::slice::from_ref(&q), ORIGIN)).await.unwrap().changed, 0);
    assert!(matches!(
        still(transport.suspend_queues(&["Poison".to_owned()], ORIGIN)).await,
        Err(ActionError::WrongState(_))
    ));
    match still(transport.resume_queues(&[q.clone(), "99".to_owned()], ORIGIN)).await {
        Err(ActionError::NotFound { identities, .. }) => assert_eq!(identities, ["99"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(queue(&transport, &q).status, "Suspended");

    still(transport.resume_queues(std::slice::from_ref(&q), ORIGIN)).await.unwrap();
    until("every copy is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_eq!(agent.deliveries().len(), 10);
    assert!(matches!(
        still(transport.resume_queues(std::slice::from_ref(&q), ORIGIN)).await,
        Err(ActionError::WrongState(_))
    ));
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_list_action_with_a_copy_in_the_wrong_state_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::RefuseConnection("421 4.3.2 not now")]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let a = submit(&transport, &["bob@remote.example"]).await;
    let b = submit(&transport, &["bob@remote.example"]).await;
    let q = delivery_queue(0);
    until("both wait in Retry", || queue_is(&transport, "Retry") && queue(&transport, &q).message_count == 2).await;
    still(transport.suspend_messages(&[id(&q, a)], ORIGIN)).await.unwrap();
    // b is not suspended: resuming both is refused whole, a stays suspended.
    match still(transport.resume_messages(&[id(&q, a), id(&q, b)], ORIGIN)).await {
        Err(ActionError::WrongState(w)) => assert_eq!(w.len(), 1, "{w:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&transport, a).as_deref(), Some("Suspended"));
    // Removing without a notice: gone, nobody told.
    let r = still(transport.remove_messages(&[id(&q, a), id(&q, b)], false, ORIGIN)).await.unwrap();
    assert_eq!((r.matched, r.changed), (2, 2));
    assert!(transport.messages(None, false).unwrap().is_empty());
    pass(Duration::from_secs(1)).await;
    assert!(notices(dir.path(), a).is_empty() && notices(dir.path(), b).is_empty());
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_suspended_submission_queue_stops_the_categorizer_and_its_messages_can_be_suspended_there() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([]);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    still(transport.suspend_queues(&["Submission".to_owned()], ORIGIN)).await.unwrap();
    let a = submit(&transport, &["bob@remote.example"]).await;
    let b = submit(&transport, &["bob@remote.example"]).await;
    pass(Duration::from_secs(5)).await;
    assert_eq!(queue(&transport, "Submission").message_count, 2);
    assert!(agent.attempts().is_empty(), "the categorizer ran while Submission was suspended");
    // A message suspended in Submission stays there when the queue is resumed; the other goes on.
    still(transport.suspend_messages(&[id("Submission", a)], ORIGIN)).await.unwrap();
    still(transport.resume_queues(&["Submission".to_owned()], ORIGIN)).await.unwrap();
    until("the other message is delivered", || status(&transport, b).is_none()).await;
    pass(Duration::from_secs(5)).await;
    assert_eq!(status(&transport, a).as_deref(), Some("Suspended"));
    assert_eq!(queue(&transport, "Submission").message_count, 1);
    still(transport.resume_messages(&[a.to_string()], ORIGIN)).await.unwrap();
    until("the resumed message is delivered", || status(&transport, a).is_none()).await;
    assert_eq!(agent.deliveries().len(), 2);
    still(transport.shutdown()).await;
}
