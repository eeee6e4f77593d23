//! Poison messages at the transport's level: a delivery agent that panics for one message. The panic is
//! caught and counts as a crash; at `poison_threshold` (2 by default) the message goes to Poison,
//! suspended, and stays there across a restart; the messages sent around it are delivered; a resume sends
//! it through the categorizer again.

use std::time::Duration;

use crate::harness::{
    FakeAgent, envelope, pass, smart_host, start, start_with_faults, still, submit, submit_message, tracked,
    tracking_events, until,
};

const POISON_RECIPIENT: &str = "poison@remote.example";

fn in_poison(transport: &sluice_transport::Transport) -> Vec<sluice_api_types::Message> {
    transport.messages(Some("Poison"), false).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_message_whose_delivery_panics_twice_goes_to_poison_suspended_and_the_others_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    agent.panic_for(POISON_RECIPIENT, usize::MAX);
    let mut routing = smart_host("g-relay", "relay.example:25");
    routing.limits.message_expiration_timeout = Duration::from_secs(3600);
    routing.limits.delay_notification_timeout = Duration::from_secs(600);
    let transport = start(dir.path(), routing.clone(), &agent).await;
    let a = submit(&transport, &["a@remote.example"]).await;
    let p = submit(&transport, &[POISON_RECIPIENT]).await;
    let b = submit(&transport, &["b@remote.example"]).await;

    until("the panicking message is in Poison", || !in_poison(&transport).is_empty()).await;
    let poisoned = in_poison(&transport);
    assert_eq!(poisoned.len(), 1);
    assert_eq!((poisoned[0].mid, poisoned[0].status.as_str()), (p, "Suspended"));
    assert_eq!(poisoned[0].queue, "test\\Poison");
    let event = tracked(dir.path(), "POISONMESSAGE", p).await;
    assert_eq!(event["recipients"][0], POISON_RECIPIENT);
    assert!(
        transport.alerts().list(None, None, None).iter().any(|a| a.text.contains(&format!("message {p} crashed"))),
        "an alert names the message"
    );
    until("the others are delivered", || {
        let delivered: Vec<_> = agent.deliveries().iter().filter_map(|d| d.mid).collect();
        delivered.contains(&a) && delivered.contains(&b)
    })
    .await;
    assert!(agent.deliveries().iter().all(|d| d.mid != Some(p)), "no attempt of the poison message went through");

    // Poison copies never expire nor get a delay notice: a wait past both leaves it where it is.
    pass(Duration::from_secs(2 * 3600)).await;
    assert_eq!(in_poison(&transport).len(), 1);
    assert!(tracking_events(dir.path()).iter().all(|e| e["event_id"] != "DSN"));
    assert_eq!(agent.panics(), 2, "poison_threshold = 2: the second panic moved it");
    still(transport.shutdown()).await;

    // Suspended in Poison across a restart; a resume sends it to the categorizer and, the agent fixed, it is
    // delivered.
    agent.panic_for(POISON_RECIPIENT, 0);
    let transport = start(dir.path(), routing, &agent).await;
    let poisoned = in_poison(&transport);
    assert_eq!(poisoned.len(), 1);
    assert_eq!((poisoned[0].mid, poisoned[0].status.as_str()), (p, "Suspended"));
    pass(Duration::from_secs(5)).await;
    assert!(agent.deliveries().iter().all(|d| d.mid != Some(p)), "nothing takes a message from Poison by itself");
    // Resume-Message on the Poison copy, as the admin API asks for it.
    let origin = "admin API 127.0.0.1:9";
    let r = still(transport.resume_messages(&[format!("Poison\\{p}")], origin)).await.unwrap();
    assert_eq!(r.changed, 1);
    assert!(!transport.resume_poison(p).await, "only a message in Poison is resumed");
    assert_eq!(tracked(dir.path(), "RESUBMIT", p).await["source"], origin);
    assert_eq!(tracked(dir.path(), "RESUME", p).await["source"], origin);
    until("the resumed message is delivered", || agent.deliveries().iter().any(|d| d.mid == Some(p))).await;
    until("nothing is left queued", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_eq!(transport.queue("Poison").unwrap().message_count, 0);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_whose_delivery_panicked_once_is_retried_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    agent.panic_for(POISON_RECIPIENT, 1);
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let p = submit(&transport, &[POISON_RECIPIENT]).await;
    let a = submit(&transport, &["a@remote.example"]).await;
    until("the suspect is delivered", || agent.deliveries().iter().any(|d| d.mid == Some(p))).await;
    until("the other is delivered", || agent.deliveries().iter().any(|d| d.mid == Some(a))).await;
    assert_eq!(agent.panics(), 1);
    assert!(in_poison(&transport).is_empty(), "one crash is below the threshold of 2");
    assert!(tracking_events(dir.path()).iter().all(|e| e["event_id"] != "POISONMESSAGE"));
    until("nothing is left queued", || transport.messages(None, false).unwrap().is_empty()).await;
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_whose_categorization_panics_twice_goes_to_poison_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    let transport = start_with_faults(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let a = submit(&transport, &["a@remote.example"]).await;
    let body = b"Subject: p\r\nX-Sluice-Fault: panic@categorizer\r\n\r\nHello.\r\n";
    let p = submit_message(&transport, envelope(&[POISON_RECIPIENT]), body).await;
    let b = submit(&transport, &["b@remote.example"]).await;
    until("the panicking message is in Poison", || !in_poison(&transport).is_empty()).await;
    let poisoned = in_poison(&transport);
    assert_eq!((poisoned[0].mid, poisoned[0].status.as_str()), (p, "Suspended"));
    tracked(dir.path(), "POISONMESSAGE", p).await;
    until("the others are delivered", || {
        let delivered: Vec<_> = agent.deliveries().iter().filter_map(|d| d.mid).collect();
        delivered.contains(&a) && delivered.contains(&b)
    })
    .await;
    assert!(agent.deliveries().iter().all(|d| d.mid != Some(p)));
    // A header in the body, not the header section, does nothing.
    let body = b"Subject: q\r\n\r\nX-Sluice-Fault: panic@categorizer\r\n";
    let q = submit_message(&transport, envelope(&["q@remote.example"]), body).await;
    until("the other message is delivered", || agent.deliveries().iter().any(|d| d.mid == Some(q))).await;
    assert_eq!(in_poison(&transport).len(), 1);
    still(transport.shutdown()).await;
}
