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
    Alerts, BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, Handoff, Outbound, Parts, RecipientOutcome,
    Routing, SendConnector, SendSession, Target, Tracking, Transport,
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
        Answer::Defer(line) => RecipientOutcome::Transient(reply(line)),
        Answer::DeferFirst(line) if i == 0 => RecipientOutcome::Transient(reply(line)),
        Answer::Reject(line) => RecipientOutcome::Permanent(reply(line)),
        Answer::DeferFirst(_) | Answer::Accept | Answer::RefuseConnection(_) => {
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
            Ok(Box::new(FakeConnection { agent: self.clone(), target: target.clone() }) as Box<dyn DeliveryConnection>)
        })
    }
}

struct FakeConnection {
    agent: FakeAgent,
    target: Target,
}

impl DeliveryConnection for FakeConnection {
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, DeliveryError>> {
        Box::pin(async move {
            let answer = self.agent.shared.script.lock().unwrap().pop_front().unwrap_or(Answer::Accept);
            let recipients: Vec<String> = msg.recipients().map(|r| r.address.to_owned()).collect();
            let outcomes = (0..recipients.len()).map(|i| outcome(&answer, i)).collect();
            let body = msg.body.read_all().map_err(DeliveryError::Body)?;
            self.agent.record(Attempt {
                at: Instant::now(),
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

/// Opens the queue database in `dir`, loads its queues under `routing` and starts the transport on them.
pub async fn start(dir: &Path, routing: Routing, agent: &FakeAgent) -> Transport {
    start_with(dir, routing, agent, Tracking::disabled())
}

/// [`start`], with the tracking log written to `<dir>/tracking` (read it with [`tracking_events`] after
/// shutdown).
pub async fn start_tracked(dir: &Path, routing: Routing, agent: &FakeAgent) -> Transport {
    start_with(dir, routing, agent, Tracking::start(dir.join("tracking")).unwrap())
}

fn start_with(dir: &Path, routing: Routing, agent: &FakeAgent, tracking: Tracking) -> Transport {
    let storage = FsStorage::new(dir.join("queue")).unwrap();
    let (db, loaded, _) =
        QueueDb::open_with(Arc::new(storage), Options::default(), |state| Transport::load(state, &routing)).unwrap();
    let alerts = Alerts::open(&dir.join("logs"), SERVER, "test", Duration::from_secs(3600)).unwrap();
    Transport::start(Parts {
        db,
        loaded,
        routing,
        agent: Arc::new(agent.clone()),
        tracking,
        server_name: SERVER.to_owned(),
        hostname: HOSTNAME.to_owned(),
        alerts,
    })
}

/// The events of the tracking log [`start_tracked`] wrote under `dir`, in order.
pub fn tracking_events(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("tracking")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect()
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
