//! A transport on a real queue database in a temporary directory, a fake next hop that answers from a
//! script, and waits that keep the paused clock still while the database's own threads work.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_queue_db::{EnvelopeParts, FsStorage, Mid, Options, QueueDb, Recipient};
use sluice_smtp::{EnhancedCode, Reply};
use sluice_transport::{
    Alerts, BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, Handoff, InProcess, Outbound, Parts,
    RecipientOutcome, ResubmitRequests, Routing, SendConnector, SendSession, Target, Tracking, Transport,
};
use tokio::time::Instant;

/// The server name in every queue identity of these tests.
pub const SERVER: &str = "test";

/// The server's host name: the reporting MTA of delivery status notices.
pub const HOSTNAME: &str = "mx.test.example";

/// The envelope sender of [`submit`]'s messages.
pub const SENDER: &str = "alice@here.example";

/// What the fake next hop does with one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The connection fails: a queue-level transient failure.
    RefuseConnection(&'static str),
    /// Every recipient gets this transient reply.
    Defer(&'static str),
    /// Every recipient gets this permanent reply.
    Reject(&'static str),
    /// The first recipient gets this transient reply; the others are delivered.
    DeferFirst(&'static str),
    /// Every recipient is delivered.
    Accept,
    /// The next hop takes this long (on the paused clock), then every recipient is delivered.
    AcceptAfter(Duration),
    /// The next hop takes this long, then every recipient gets this transient reply.
    DeferAfter(Duration, &'static str),
}

/// One attempt the fake next hop saw, on the paused clock.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    pub target: Target,
    /// None when the connection was refused.
    pub mid: Option<Mid>,
    /// The envelope sender (empty for the null sender and for a refused connection).
    pub from: String,
    pub recipients: Vec<String>,
    pub answer: Answer,
    /// The message as the connection read it (empty for a refused connection).
    pub body: Vec<u8>,
}

/// A next hop that answers each attempt (a refused connection, or one message delivered) with the next
/// answer of its script, and accepts everything once the script is done.
#[derive(Clone, Default)]
pub struct FakeAgent {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    attempts: Mutex<Vec<Attempt>>,
    /// What its connections say a delivered recipient has become; `Relayed` unless set.
    handoff: Mutex<Option<Handoff>>,
    /// Connections open now, and the most ever open at once.
    open: Mutex<(usize, usize)>,
    /// A recipient whose delivery attempts panic (a bug in the delivery agent), and how many more times.
    panic_for: Mutex<Option<(String, usize)>>,
    /// The attempts that panicked.
    panics: Mutex<usize>,
}

impl FakeAgent {
    pub fn answering(script: impl IntoIterator<Item = Answer>) -> FakeAgent {
        let agent = FakeAgent::default();
        agent.shared.script.lock().unwrap().extend(script);
        agent
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared.attempts.lock().unwrap().clone()
    }

    /// The attempts that carried a message (not refused connections).
    pub fn deliveries(&self) -> Vec<Attempt> {
        self.attempts().into_iter().filter(|a| a.mid.is_some()).collect()
    }

    /// What its connections' `handoff()` says from now on (a Maildir-like `Delivered`, say).
    pub fn set_handoff(&self, handoff: Handoff) {
        *self.shared.handoff.lock().unwrap() = Some(handoff);
    }

    /// Makes the next `times` attempts to deliver to `recipient` panic.
    pub fn panic_for(&self, recipient: &str, times: usize) {
        *self.shared.panic_for.lock().unwrap() = Some((recipient.to_owned(), times));
    }

    /// How many attempts panicked.
    pub fn panics(&self) -> usize {
        *self.shared.panics.lock().unwrap()
    }

    /// The most connections that were open at once.
    pub fn most_open(&self) -> usize {
        self.shared.open.lock().unwrap().1
    }

    fn record(&self, attempt: Attempt) {
        self.shared.attempts.lock().unwrap().push(attempt);
    }
}

/// A scripted reply line (`451 4.3.0 try again later`) as the delivery seam carries it.
fn reply(line: &str) -> Reply {
    let (code, rest) = line.split_once(' ').unwrap_or((line, ""));
    let code: u16 = code.parse().expect("a scripted reply starts with its code");
    match rest.split_once(' ') {
        Some((enhanced, text)) if EnhancedCode::parse_for(code, enhanced).is_some() => Reply::new(code, enhanced, text),
        _ => Reply::plain(code, rest),
    }
}

/// A refused connection: the next hop's `421` while the session opens.
fn connect_error(line: &str) -> DeliveryError {
    DeliveryError::Closing(reply(line))
}

/// The outcome for the `i`-th recipient of an attempt.
fn outcome(answer: &Answer, i: usize) -> RecipientOutcome {
    match answer {
        Answer::Defer(line) | Answer::DeferAfter(_, line) => RecipientOutcome::Transient(reply(line)),
        Answer::DeferFirst(line) if i == 0 => RecipientOutcome::Transient(reply(line)),
        Answer::Reject(line) => RecipientOutcome::Permanent(reply(line)),
        Answer::DeferFirst(_) | Answer::Accept | Answer::AcceptAfter(_) | Answer::RefuseConnection(_) => {
            RecipientOutcome::Delivered(reply("250 2.0.0 Ok"))
        }
    }
}

impl DeliveryAgent for FakeAgent {
    fn connect<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Box<dyn DeliveryConnection>, DeliveryError>> {
        Box::pin(async move {
            let mut script = self.shared.script.lock().unwrap();
            if let Some(Answer::RefuseConnection(reply)) = script.front().cloned() {
                script.pop_front();
                drop(script);
                let answer = Answer::RefuseConnection(reply);
                self.record(Attempt {
                    at: Instant::now(),
                    target: target.clone(),
                    mid: None,
                    from: String::new(),
                    recipients: vec![],
                    answer,
                    body: vec![],
                });
                return Err(connect_error(reply));
            }
            drop(script);
            let mut open = self.shared.open.lock().unwrap();
            open.0 += 1;
            open.1 = open.1.max(open.0);
            Ok(Box::new(FakeConnection { agent: self.clone(), target: target.clone() }) as Box<dyn DeliveryConnection>)
        })
    }
}

struct FakeConnection {
    agent: FakeAgent,
    target: Target,
}

impl Drop for FakeConnection {
    fn drop(&mut self) {
        self.agent.shared.open.lock().unwrap().0 -= 1;
    }
}

impl DeliveryConnection for FakeConnection {
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, DeliveryError>> {
        Box::pin(async move {
            let recipients: Vec<String> = msg.recipients().map(|r| r.address.to_owned()).collect();
            let panics = match &mut *self.agent.shared.panic_for.lock().unwrap() {
                Some((r, times)) if *times > 0 && recipients.contains(r) => {
                    *times -= 1;
                    true
                }
                _ => false,
            };
            if panics {
                *self.agent.shared.panics.lock().unwrap() += 1;
                tokio::task::yield_now().await;
                panic!("the fake agent panics for message {}", msg.mid);
            }
            let answer = self.agent.shared.script.lock().unwrap().pop_front().unwrap_or(Answer::Accept);
            let at = Instant::now();
            if let Answer::AcceptAfter(d) | Answer::DeferAfter(d, _) = &answer {
                tokio::time::sleep(*d).await;
            }
            let outcomes = (0..recipients.len()).map(|i| outcome(&answer, i)).collect();
            let body = msg.body.read_all().map_err(DeliveryError::Body)?;
            self.agent.record(Attempt {
                at,
                target: self.target.clone(),
                mid: Some(msg.mid),
                from: msg.envelope.from_address().to_owned(),
                recipients,
                answer,
                body,
            });
            Ok(outcomes)
        })
    }

    fn handoff(&self) -> Handoff {
        self.agent.shared.handoff.lock().unwrap().unwrap_or(Handoff::Relayed)
    }

    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// A routing table that sends every domain to one smart host through the connector `guid`.
pub fn smart_host(guid: &str, host: &str) -> Routing {
    Routing {
        send_connectors: vec![SendConnector {
            name: format!("Connector {guid}"),
            guid: guid.to_owned(),
            address_spaces: vec!["*".to_owned()],
            smart_hosts: vec![host.to_owned()],
            port: 25,
            session: SendSession::default(),
        }],
        ..Routing::default()
    }
}

/// Opens the queue database in `dir`, loads its queues under `routing` and starts the transport on them, with
/// its tracking log in `<dir>/tracking` (see [`tracking_events`]).
pub async fn start(dir: &Path, routing: Routing, agent: &FakeAgent) -> Transport {
    start_with(dir, routing, agent, false).await
}

/// As [`start`], with `[debug] fault_injection` on: `X-Sluice-Fault` headers take effect.
pub async fn start_with_faults(dir: &Path, routing: Routing, agent: &FakeAgent) -> Transport {
    start_with(dir, routing, agent, true).await
}

async fn start_with(dir: &Path, routing: Routing, agent: &FakeAgent, fault_injection: bool) -> Transport {
    let storage = FsStorage::new(dir.join("queue")).unwrap();
    let in_process = InProcess::open(&dir.join("inprocess")).unwrap();
    let (db, loaded, _) =
        QueueDb::open_with(Arc::new(storage), Options::default(), |state| Transport::load(state, &routing)).unwrap();
    let alerts = Alerts::open(&dir.join("logs"), SERVER, "test", Duration::from_secs(3600)).unwrap();
    Transport::start(Parts {
        db,
        loaded,
        routing,
        agent: Arc::new(agent.clone()),
        tracking: Tracking::start(dir.join("tracking"), std::time::Duration::from_secs(30 * 86_400)).unwrap(),
        server_name: SERVER.to_owned(),
        hostname: HOSTNAME.to_owned(),
        alerts,
        resubmit_requests: ResubmitRequests::open(dir.join("resubmit-requests.json")).unwrap(),
        in_process,
        fault_injection,
        counters: sluice_transport::Counters::open(dir.join("counters.json")).unwrap(),
        work_queue: sluice_transport::workqueue::Settings::off(),
        cluster: None,
        adopted_elsewhere: Vec::new(),
    })
    .await
    .unwrap()
}

/// The envelope of a message from [`SENDER`] to `recipients`, received over SMTP now.
pub fn envelope(recipients: &[&str]) -> EnvelopeParts {
    EnvelopeParts {
        from: SENDER.to_owned(),
        recipients: recipients
            .iter()
            .map(|a| Recipient { address: (*a).to_owned(), notify: None, orcpt: None })
            .collect(),
        source_name: "SMTP:Default".to_owned(),
        received_at_ms: sluice_queue_db::now_ms(),
        ..EnvelopeParts::default()
    }
}

/// Submits a message from [`SENDER`] to `recipients`; returns its MID once it is durable.
pub async fn submit(transport: &Transport, recipients: &[&str]) -> Mid {
    submit_message(transport, envelope(recipients), b"Subject: test\r\n\r\nHello.\r\n").await
}

/// Submits a message with this envelope and body; returns its MID once it is durable.
pub async fn submit_message(transport: &Transport, envelope: EnvelopeParts, body: &[u8]) -> Mid {
    let mid = transport.allocate_mid();
    still(transport.submit(mid, envelope.into(), body.to_vec())).await.unwrap();
    mid
}

/// How long the waits below go on, in real time, before a test fails.
const GIVE_UP: Duration = Duration::from_secs(20);

/// Runs `fut` to completion without letting the paused clock move. The queue database works on threads of
/// its own, in real time: a plain `.await` on it would leave the runtime idle, and an idle runtime with a
/// paused clock jumps to its next timer.
pub async fn still<F: Future>(fut: F) -> F::Output {
    tokio::pin!(fut);
    let give_up = std::time::Instant::now() + GIVE_UP;
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            () = tokio::task::yield_now() => {}
        }
        assert!(std::time::Instant::now() < give_up, "gave up waiting");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits, without letting the paused clock move, until `done` holds.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + GIVE_UP;
    while !done() {
        assert!(std::time::Instant::now() < give_up, "gave up waiting until {what}");
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lets `d` pass on the paused clock, with the transport's timers firing on the way.
pub async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The queue `<SERVER>\<name>` as Get-Queue shows it.
pub fn queue(transport: &Transport, name: &str) -> sluice_api_types::Queue {
    transport.queue(name).unwrap()
}

/// The name of the `n`-th delivery queue made (from 0).
pub fn delivery_queue(n: u32) -> String {
    (sluice_queue_db::FIRST_DELIVERY_QUEUE + n).to_string()
}

/// The tracking log's events so far (written by its thread within 200 ms, in real time).
pub fn tracking_events(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir.join("tracking")) else { return Vec::new() };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    // One file per day, named by the day: in order.
    files.sort();
    let mut events = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        events.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    events
}

/// Waits (in real time, the paused clock still) until the tracking log holds an event `event_id` for `mid`;
/// returns it.
pub async fn tracked(dir: &Path, event_id: &str, mid: Mid) -> serde_json::Value {
    let found = || tracking_events(dir).into_iter().find(|e| e["event_id"] == event_id && e["mid"] == mid);
    until(&format!("the tracking log has {event_id} for {mid}"), || found().is_some()).await;
    found().unwrap()
}

/// A routing table with one connector per domain: `(guid, address space, smart host)`.
pub fn connectors(list: &[(&str, &str, &str)]) -> Routing {
    Routing {
        send_connectors: list
            .iter()
            .map(|(guid, space, host)| SendConnector {
                name: format!("Connector {guid}"),
                guid: (*guid).to_owned(),
                address_spaces: vec![(*space).to_owned()],
                smart_hosts: vec![(*host).to_owned()],
                port: 25,
                session: SendSession::default(),
            })
            .collect(),
        ..Routing::default()
    }
}

/// A wall-clock time of the API (RFC 3339) in ms.
pub fn ms(time: &Option<String>) -> i64 {
    sluice_queue_db::time::parse_rfc3339(time.as_deref().expect("a time")).expect("an RFC 3339 time")
}

/// The messages Get-Message lists, without the delivery status notices sluice made of them (source `DSN`).
pub fn originals(transport: &Transport) -> Vec<sluice_api_types::Message> {
    transport.messages(None, false).unwrap().into_iter().filter(|m| m.message_source_name != "DSN").collect()
}

/// The `DSN` events of the tracking log for `mid`: one per notice sent about it.
pub fn notices(dir: &Path, mid: Mid) -> Vec<serde_json::Value> {
    tracking_events(dir).into_iter().filter(|e| e["event_id"] == "DSN" && e["mid"] == mid).collect()
}
