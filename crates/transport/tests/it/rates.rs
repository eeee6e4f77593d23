//! Queue rates: copies entering and leaving each queue, per second over the last 60 seconds, on the paused
//! clock: a steady injection reads as its rate, a blocked queue grows (negative velocity), and a drain
//! shows as outgoing.

use std::time::Duration;

use crate::harness::{Answer, FakeAgent, delivery_queue, pass, queue, smart_host, start, still, submit, until};

const ORIGIN: &str = "test";

/// Retries delivery queue 0 until the next hop (refusing a few connections first) took everything.
async fn drain(transport: &sluice_transport::Transport) {
    for _ in 0..10 {
        if queue(transport, &delivery_queue(0)).message_count == 0 {
            return;
        }
        // Not in Retry (an attempt is under way) is fine: the next round looks again.
        let _ = still(transport.retry_queues(&[delivery_queue(0)], false, ORIGIN)).await;
        pass(Duration::from_secs(1)).await;
    }
    panic!("the queue did not drain");
}

fn within_10_percent(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected * 0.1
}

#[tokio::test(start_paused = true)]
async fn a_steady_injection_reads_as_its_rate_and_a_blocked_queue_has_negative_velocity() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering(std::iter::repeat_n(Answer::RefuseConnection("421 4.4.0 busy"), 3));
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let fresh = queue(&transport, "Submission");
    assert_eq!((fresh.incoming_rate, fresh.outgoing_rate, fresh.velocity), (0.0, 0.0, 0.0));

    // 5 messages a second for 70 seconds, into a next hop that refuses connections.
    for _ in 0..350 {
        submit(&transport, &["bob@remote.example"]).await;
        pass(Duration::from_millis(200)).await;
    }
    let q = queue(&transport, &delivery_queue(0));
    assert_eq!(q.status, "Retry");
    assert!(within_10_percent(q.incoming_rate, 5.0), "{q:?}");
    assert_eq!(q.outgoing_rate, 0.0);
    assert!(q.velocity < -4.5, "a blocked queue grows: {}", q.velocity);
    let s = queue(&transport, "Submission");
    assert!(within_10_percent(s.incoming_rate, 5.0) && within_10_percent(s.outgoing_rate, 5.0), "{s:?}");
    assert!(s.velocity.abs() < 0.5, "Submission keeps up: {}", s.velocity);

    // The next hop answers again: the queue drains at once, and its rate shows it.
    drain(&transport).await;
    pass(Duration::from_secs(5)).await;
    let q = queue(&transport, &delivery_queue(0));
    assert!(q.outgoing_rate >= 350.0 / 60.0 - 0.01, "{q:?}");
    assert!(q.velocity > 0.0, "a draining queue has positive velocity: {}", q.velocity);

    // A minute later with no traffic, every rate is back to zero.
    pass(Duration::from_secs(65)).await;
    let q = queue(&transport, &delivery_queue(0));
    assert_eq!((q.incoming_rate, q.outgoing_rate, q.velocity), (0.0, 0.0, 0.0));
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn priorities_and_directionality_come_from_the_headers_and_the_client() {
    use crate::harness::{envelope, submit_message};
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::answering(std::iter::repeat_n(Answer::RefuseConnection("421 4.4.0 busy"), 3));
    let transport = start(dir.path(), smart_host("g-relay", "relay.example:25"), &agent).await;
    let mut high = envelope(&["bob@remote.example"]);
    high.priority = sluice_queue_db::Priority::High;
    high.originating = true;
    high.received_at_ms -= 90_000;
    submit_message(&transport, high, b"Importance: high\r\n\r\nx\r\n").await;
    submit(&transport, &["carol@remote.example"]).await;
    until("both wait in the delivery queue", || queue(&transport, &delivery_queue(0)).message_count == 2).await;
    let counts = queue(&transport, &delivery_queue(0)).message_counts_per_priority;
    assert_eq!((counts.high, counts.normal, counts.low), (1, 1, 0));
    let listed = transport.messages(None, false).unwrap();
    let shown: Vec<(&str, &str)> = listed.iter().map(|m| (m.priority.as_str(), m.directionality.as_str())).collect();
    assert_eq!(shown, [("High", "Originating"), ("Normal", "Incoming")]);
    assert!(listed.iter().all(|m| m.scl == -1 && m.original_from_address == m.from_address));
    until("the queue waits for its retry", || queue(&transport, &delivery_queue(0)).status == "Retry").await;
    let listed = transport.messages(None, false).unwrap();
    assert!(listed.iter().all(|m| m.deferred_reason.as_deref() == Some("QueueRetry")), "{listed:?}");
    // Latency is wall-clock time since receipt (the paused clock does not move it).
    let latency: Vec<u64> = listed.iter().map(|m| m.message_latency).collect();
    assert!((90..100).contains(&latency[0]) && latency[1] < 10, "{latency:?}");

    // The counts follow the messages out.
    drain(&transport).await;
    let counts = queue(&transport, &delivery_queue(0)).message_counts_per_priority;
    assert_eq!((counts.high, counts.normal, counts.low), (0, 0, 0));
    still(transport.shutdown()).await;
}
