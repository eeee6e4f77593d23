//! Unreachable and reload: a recipient with no route waits in Unreachable, across a restart too, until a
//! configuration reload routes it; a copy whose connector is gone at a restart is categorized again.

use sluice_transport::{Routing, Target};

use crate::harness::{FakeAgent, SERVER, delivery_queue, queue, smart_host, start, still, submit, until};

#[tokio::test(start_paused = true)]
async fn an_unroutable_recipient_waits_in_unreachable_across_a_restart_until_a_reload_routes_it() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::default();
    // No send connector: no recipient has a route.
    let transport = start(dir.path(), Routing::default(), &agent).await;
    let mid = submit(&transport, &["carol@nowhere.example"]).await;
    until("the message is in Unreachable", || queue(&transport, "Unreachable").message_count == 1).await;
    let listed = transport.messages(Some("Unreachable"), true).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].mid, listed[0].queue.clone()), (mid, format!("{SERVER}\\Unreachable")));
    assert_eq!(listed[0].recipients.as_ref().unwrap()[0].address, "carol@nowhere.example");
    still(transport.shutdown()).await;

    let transport = start(dir.path(), Routing::default(), &agent).await;
    assert_eq!(queue(&transport, "Unreachable").message_count, 1, "Unreachable is recovered as it was");
    assert_eq!(queue(&transport, "Submission").message_count, 0);

    still(transport.set_routing(smart_host("g-relay", "relay.example:25"))).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let attempts = agent.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].mid, attempts[0].recipients.clone()), (Some(mid), vec!["carol@nowhere.example".into()]));
    assert!(matches!(&attempts[0].target, Target::SmartHosts { hosts, .. } if hosts == &["relay.example:25"]));
    assert_eq!(queue(&transport, "Unreachable").message_count, 0);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_whose_connector_is_gone_at_a_restart_is_routed_again_to_a_new_queue() {
    let dir = tempfile::tempdir().unwrap();
    let before = FakeAgent::answering([crate::harness::Answer::Defer("451 4.3.0 try again later")]);
    let transport = start(dir.path(), smart_host("g-old", "old.example:25"), &before).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    let old = delivery_queue(0);
    until("the copy waits for its retry in the old queue", || {
        transport.messages(Some(&old), false).is_ok_and(|m| m.iter().any(|m| m.status == "Retry"))
    })
    .await;
    still(transport.shutdown()).await;

    // The connector g-old is gone: its queue is not recreated, and the copy goes back to Submission.
    let after = FakeAgent::default();
    let transport = start(dir.path(), smart_host("g-new", "new.example:25"), &after).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    let attempts = after.attempts();
    assert_eq!(attempts.len(), 1, "routed again at once, without waiting for the old retry time");
    assert_eq!(attempts[0].mid, Some(mid));
    assert!(matches!(&attempts[0].target, Target::SmartHosts { hosts, .. } if hosts == &["new.example:25"]));
    // The new queue does not reuse the id of the one that is gone.
    assert!(transport.queue(&old).is_err());
    assert_eq!(queue(&transport, &delivery_queue(1)).next_hop_connector, "g-new");
    still(transport.shutdown()).await;
}
