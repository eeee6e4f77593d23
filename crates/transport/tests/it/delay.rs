//! The delay notice: once `delay_notification_timeout` has passed since a message was received with
//! recipients still undelivered, its sender gets exactly one notice, never again, also not after a restart.

use std::time::Duration;

use sluice_transport::{Limits, Routing};

use crate::harness::{Answer, FakeAgent, notices, originals, pass, smart_host, start, still, submit, until};

const DELAY: Duration = Duration::from_secs(3600);

fn relay() -> Routing {
    Routing {
        limits: Limits { delay_notification_timeout: DELAY, ..Limits::default() },
        ..smart_host("g-relay", "relay.example:25")
    }
}

#[tokio::test(start_paused = true)]
async fn a_delayed_message_gets_one_delay_notice_and_none_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let refused = || Answer::RefuseConnection("421 4.4.1 connection refused");
    let agent = FakeAgent::answering((0..100).map(|_| refused()));
    let transport = start(dir.path(), relay(), &agent).await;
    let mid = submit(&transport, &["bob@remote.example"]).await;
    pass(DELAY - Duration::from_secs(5)).await;
    assert_eq!(transport.delay_notices_since_start(), 0, "a notice before its time");
    pass(Duration::from_secs(10)).await;
    until("the delay notice is sent", || transport.delay_notices_since_start() == 1).await;
    pass(3 * DELAY).await;
    assert_eq!(transport.delay_notices_since_start(), 1, "one notice per message");
    assert_eq!(originals(&transport).len(), 1, "the message is still tried");
    still(transport.shutdown()).await;

    // After a restart the message's delay is counted from its reception again by the new start's clock:
    // only the durable mark keeps the notice from going out a second time.
    let transport = start(dir.path(), relay(), &agent).await;
    pass(2 * DELAY).await;
    assert_eq!(transport.delay_notices_since_start(), 0, "a second notice after the restart");
    assert_eq!(originals(&transport).len(), 1);
    still(transport.shutdown()).await;
    let sent = notices(dir.path(), mid);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0]["reply"].as_str().unwrap().starts_with("delayed"), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn a_message_delivered_in_time_gets_no_delay_notice_and_each_delayed_message_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    // The first message is delivered; the two after it wait (recipient-level 4xx, 15 minutes each time).
    let script = [Answer::Accept, Answer::Defer("451 4.3.0 later"), Answer::Defer("451 4.3.0 later")];
    let agent = FakeAgent::answering(script.into_iter().chain((0..20).map(|_| Answer::Defer("451 4.3.0 later"))));
    let transport = start(dir.path(), relay(), &agent).await;
    submit(&transport, &["a@remote.example"]).await;
    until("the first is delivered", || originals(&transport).is_empty()).await;
    submit(&transport, &["b@remote.example"]).await;
    pass(Duration::from_secs(60)).await;
    submit(&transport, &["c@remote.example"]).await;
    pass(DELAY + Duration::from_secs(120)).await;
    until("both waiting messages got their notice", || transport.delay_notices_since_start() == 2).await;
    pass(DELAY).await;
    assert_eq!(transport.delay_notices_since_start(), 2);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_notification_timeout_sends_no_delay_notice() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering((0..100).map(|_| Answer::RefuseConnection("421 4.4.1 connection refused")));
    let mut routing = relay();
    routing.limits.delay_notification_timeout = Duration::ZERO;
    let transport = start(dir.path(), routing, &agent).await;
    submit(&transport, &["bob@remote.example"]).await;
    pass(2 * DELAY).await;
    assert_eq!(originals(&transport).len(), 1);
    assert_eq!(transport.delay_notices_since_start(), 0);
    still(transport.shutdown()).await;
}
