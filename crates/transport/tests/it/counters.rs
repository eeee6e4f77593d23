//! The counters and the status on the paused clock: outcomes counted where they happen, the gauges of the
//! queued recipients, the periodic save of `counters.json` (what a crash keeps) and the lifetime column
//! across a restart.

use std::time::Duration;

use sluice_transport::Counter;

use crate::harness::{Answer, FakeAgent, pass, smart_host, start, still, submit, until};

#[tokio::test(start_paused = true)]
async fn outcomes_are_counted_saved_every_interval_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering([Answer::Accept, Answer::DeferFirst("451 4.2.0 later")]);
    let relay = || smart_host("g-relay", "relay.example:25");
    let transport = start(dir.path(), relay(), &agent).await;
    submit(&transport, &["bob@remote.example"]).await;
    let second = submit(&transport, &["carol@remote.example", "dave@remote.example"]).await;
    let c = transport.counters().clone();
    until("both attempts ended", || {
        c.get(Counter::DeliveredRecipients).uptime == 2 && c.get(Counter::SoftBouncedEvents).uptime == 1
    })
    .await;
    assert_eq!(c.get(Counter::MessagesReceived).uptime, 2);
    assert_eq!(c.get(Counter::RecipientsReceived).uptime, 3);
    assert_eq!(c.get(Counter::HardBouncedRecipients).uptime, 0);
    // Carol waits for her retry, once her copy is narrowed to her (just after the outcomes are counted).
    until("one recipient is active", || transport.status().gauges.active_recipients == 1).await;
    let st = transport.status();
    assert_eq!(st.oldest_message.as_ref().map(|m| m.mid), Some(second), "{st:?}");
    assert!(st.current_ids.dcid >= 1 && st.current_ids.mid >= second, "{st:?}");
    assert_eq!(st.counters.completed_recipients.uptime, 2);
    assert_eq!(st.back_pressure.level, "Normal");

    // Within one save interval the file has what was counted: a crash now would keep it.
    let file = dir.path().join("counters.json");
    pass(Duration::from_secs(11)).await;
    until("the counters were saved", || {
        let saved: serde_json::Value =
            std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        saved["lifetime"]["delivered_recipients"] == 2
    })
    .await;
    still(transport.shutdown()).await;

    let transport = start(dir.path(), relay(), &agent).await;
    let delivered = transport.counters().get(Counter::DeliveredRecipients);
    assert_eq!((delivered.reset, delivered.uptime, delivered.lifetime), (2, 0, 2));
    still(transport.shutdown()).await;
}
