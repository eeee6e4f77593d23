//! Idle queues and connections: a delivery queue empty for `queue_max_idle_time` is deleted (durably), never
//! a suspended one, and made again with a new number when mail comes; `max_outbound_connections` caps the
//! connections of all queues together.

use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::{FsStorage, Options, QueueDb, Record};
use sluice_transport::{Limits, Routing};

use crate::harness::{
    Answer, FakeAgent, connectors, delivery_queue, pass, queue, smart_host, start, still, submit, until,
};

const IDLE: Duration = Duration::from_secs(180);

#[tokio::test(start_paused = true)]
async fn an_empty_queue_is_deleted_after_the_idle_time_and_made_again_with_a_new_number() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let routing = smart_host("g-relay", "relay.example:25");
    let transport = start(dir.path(), routing.clone(), &agent).await;
    submit(&transport, &["bob@remote.example"]).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let first = delivery_queue(0);
    // The idle time counts from when the last worker left (it keeps its connection `connection_idle`).
    pass(Limits::default().connection_idle + Duration::from_secs(1)).await;
    pass(IDLE - Duration::from_secs(5)).await;
    assert_eq!(queue(&transport, &first).status, "Ready", "deleted before its idle time");
    pass(Duration::from_secs(10)).await;
    assert!(transport.queue(&first).is_err(), "an idle queue is deleted");

    submit(&transport, &["carol@remote.example"]).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let second = delivery_queue(1);
    assert_eq!(queue(&transport, &second).next_hop_connector, "g-relay", "a new queue, with a new number");
    still(transport.shutdown()).await;

    // The deletion is durable: the first queue does not come back at a restart.
    let transport = start(dir.path(), routing, &agent).await;
    assert!(transport.queue(&first).is_err());
    assert!(transport.queue(&second).is_ok());
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_suspended_queue_is_never_deleted_as_idle() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let routing = smart_host("g-relay", "relay.example:25");
    let transport = start(dir.path(), routing.clone(), &agent).await;
    submit(&transport, &["bob@remote.example"]).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    still(transport.shutdown()).await;

    // An administrator's suspension, as the database keeps it.
    {
        let storage = FsStorage::new(dir.path().join("queue")).unwrap();
        let (db, _, _) = QueueDb::open(Arc::new(storage), Options::default()).unwrap();
        let id = sluice_queue_db::FIRST_DELIVERY_QUEUE;
        still(db.commit(vec![Record::QueueSuspend { id, suspended: true }])).await.unwrap();
        still(db.close()).await;
    }
    let transport = start(dir.path(), routing, &agent).await;
    pass(3 * IDLE).await;
    assert_eq!(queue(&transport, &delivery_queue(0)).status, "Suspended");
    still(transport.shutdown()).await;
}

/// Two queues (one per domain), each with a message whose delivery takes a minute.
async fn most_connections_at_once(cap: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let slow = || Answer::AcceptAfter(Duration::from_secs(60));
    let agent = FakeAgent::answering([slow(), slow(), slow()]);
    let routing = Routing {
        limits: Limits { max_outbound_connections: cap, ..Limits::default() },
        ..connectors(&[
            ("g-a", "a.example", "mx.a.example:25"),
            ("g-b", "b.example", "mx.b.example:25"),
            ("g-c", "c.example", "mx.c.example:25"),
        ])
    };
    let transport = start(dir.path(), routing, &agent).await;
    for to in ["x@a.example", "x@b.example", "x@c.example"] {
        submit(&transport, &[to]).await;
    }
    pass(Duration::from_secs(600)).await;
    until("every message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_eq!(agent.attempts().len(), 3);
    still(transport.shutdown()).await;
    agent.most_open()
}

#[tokio::test(start_paused = true)]
async fn max_outbound_connections_caps_the_connections_of_all_queues_together() {
    assert_eq!(most_connections_at_once(1).await, 1);
    assert_eq!(most_connections_at_once(2).await, 2);
    assert_eq!(most_connections_at_once(1000).await, 3);
}

#[tokio::test(start_paused = true)]
async fn a_queue_waiting_for_a_connection_slot_is_connecting_while_another_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let slow = || Answer::AcceptAfter(Duration::from_secs(60));
    let agent = FakeAgent::answering([slow(), slow()]);
    let routing = Routing {
        limits: Limits { max_outbound_connections: 1, ..Limits::default() },
        ..connectors(&[("g-a", "a.example", "mx.a.example:25"), ("g-b", "b.example", "mx.b.example:25")])
    };
    let transport = start(dir.path(), routing, &agent).await;
    for to in ["x@a.example", "x@b.example"] {
        submit(&transport, &[to]).await;
    }
    let statuses = || {
        let mut s: Vec<String> =
            (0..2).filter_map(|n| transport.queue(&delivery_queue(n)).ok()).map(|q| q.status).collect();
        s.sort();
        s
    };
    until("one queue delivers while the other waits", || statuses() == ["Active", "Connecting"]).await;
    pass(Duration::from_secs(200)).await;
    until("both are delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_eq!(statuses(), ["Ready", "Ready"]);
    still(transport.shutdown()).await;
}
