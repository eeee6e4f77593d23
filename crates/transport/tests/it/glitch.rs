//! The retry schedule of a queue whose next hop cannot be reached: `queue_glitch_retry_count` failures in a
//! row wait `queue_glitch_retry_interval`, the next `transient_failure_retry_count` wait
//! `transient_failure_retry_interval`, every later one `outbound_connection_failure_retry_interval`; a
//! delivery starts the count again. Get-Queue's retry fields follow it.

use std::time::Duration;

use sluice_transport::{Limits, Routing};
use tokio::time::Instant;

use crate::harness::{Answer, FakeAgent, delivery_queue, ms, pass, queue, smart_host, start, still, submit, until};

/// The retry timer looks every second, so a retry comes at most this long after its time.
const TICK: Duration = Duration::from_secs(1);

fn relay_with(limits: Limits) -> Routing {
    Routing { limits, ..smart_host("g-relay", "relay.example:25") }
}

/// The gaps between the next hop's attempts, in whole seconds (each is at most a tick late).
fn gaps(agent: &FakeAgent) -> Vec<u64> {
    let at: Vec<Instant> = agent.attempts().iter().map(|a| a.at).collect();
    at.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
}

/// Lets virtual time pass until the next hop saw `n` attempts (or `limit` passed).
async fn until_attempts(agent: &FakeAgent, n: usize, limit: Duration) {
    let end = Instant::now() + limit;
    while agent.attempts().len() < n && Instant::now() < end {
        pass(TICK).await;
    }
    assert_eq!(agent.attempts().len(), n, "attempts within {limit:?}");
}

#[tokio::test(start_paused = true)]
async fn a_queue_that_cannot_connect_retries_four_times_a_minute_apart_six_five_minutes_apart_then_every_ten() {
    let dir = tempfile::tempdir().unwrap();
    let refusals = 12;
    let agent = FakeAgent::answering((0..refusals).map(|_| Answer::RefuseConnection("421 4.4.1 connection refused")));
    let transport = start(dir.path(), relay_with(Limits::default()), &agent).await;
    let name = delivery_queue(0);
    submit(&transport, &["bob@remote.example"]).await;
    until("the queue waits for its retry", || transport.queue(&name).is_ok_and(|q| q.status == "Retry")).await;

    let q = queue(&transport, &name);
    assert_eq!((q.retry_count, q.last_error.as_deref()), (1, Some("421 4.4.1 connection refused")));
    assert_eq!(q.first_retry_time, q.last_retry_time);
    assert_eq!(ms(&q.next_retry_time) - ms(&q.last_retry_time), 60_000, "the first failure is a glitch");
    let first_retry = ms(&q.first_retry_time);

    until_attempts(&agent, 5, Duration::from_secs(3600)).await;
    until("the fifth failure is counted", || queue(&transport, &name).retry_count == 5).await;
    let q = queue(&transport, &name);
    assert_eq!(q.status, "Retry");
    assert_eq!(ms(&q.first_retry_time), first_retry, "the first retry time stays while failures go on");
    assert_eq!(ms(&q.next_retry_time) - ms(&q.last_retry_time), 300_000, "the glitch retries are used up");

    until_attempts(&agent, refusals + 1, Duration::from_secs(3 * 3600)).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_eq!(gaps(&agent), [60, 60, 60, 60, 300, 300, 300, 300, 300, 300, 600, 600]);
    assert_eq!(agent.attempts()[refusals].answer, Answer::Accept);

    // The delivery starts the count again.
    let q = queue(&transport, &name);
    assert_eq!((q.status.as_str(), q.retry_count), ("Ready", 0));
    assert_eq!((q.first_retry_time, q.next_retry_time), (None, None));
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn configured_retry_counts_and_intervals_make_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        queue_glitch_retry_count: 2,
        queue_glitch_retry_interval: Duration::from_secs(3),
        transient_failure_retry_count: 1,
        transient_failure_retry_interval: Duration::from_secs(20),
        outbound_connection_failure_retry_interval: Duration::from_secs(45),
        ..Limits::default()
    };
    let agent = FakeAgent::answering((0..5).map(|_| Answer::RefuseConnection("421 4.4.1 connection refused")));
    let transport = start(dir.path(), relay_with(limits), &agent).await;
    submit(&transport, &["bob@remote.example"]).await;
    until_attempts(&agent, 6, Duration::from_secs(600)).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    assert_eq!(gaps(&agent), [3, 3, 20, 45, 45]);
    still(transport.shutdown()).await;
}

#[tokio::test(start_paused = true)]
async fn a_delivery_starts_the_count_of_failures_again() {
    let dir = tempfile::tempdir().unwrap();
    let refused = || Answer::RefuseConnection("421 4.4.1 connection refused");
    // Five failures (past the glitch retries), a delivery, then a failure again.
    let script = [refused(), refused(), refused(), refused(), refused(), Answer::Accept, refused()];
    let agent = FakeAgent::answering(script);
    let transport = start(dir.path(), relay_with(Limits::default()), &agent).await;
    let name = delivery_queue(0);
    submit(&transport, &["bob@remote.example"]).await;
    until_attempts(&agent, 6, Duration::from_secs(3600)).await;
    until("the message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    // The connection closes once idle, so that the next message connects again.
    pass(Duration::from_secs(10)).await;

    submit(&transport, &["carol@remote.example"]).await;
    until("the queue waits again", || transport.queue(&name).is_ok_and(|q| q.status == "Retry")).await;
    let q = queue(&transport, &name);
    assert_eq!(q.retry_count, 1, "counted from the delivery on");
    assert_eq!(q.first_retry_time, q.last_retry_time, "a new first retry time");
    assert_eq!(ms(&q.next_retry_time) - ms(&q.last_retry_time), 60_000, "a glitch again");
    until_attempts(&agent, 8, Duration::from_secs(600)).await;
    assert_eq!(gaps(&agent).last(), Some(&60));
    until("the second message is delivered", || transport.messages(None, false).unwrap().is_empty()).await;
    still(transport.shutdown()).await;
}
