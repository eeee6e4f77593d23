//! The message tracking log: one JSON line per event in daily files under `<data_dir>/tracking`
//! (`tracking-YYYY-MM-DD.log`). A thread of its own writes them, so that a slow disk never stalls a
//! session; when its buffer is full, events are dropped and counted rather than blocking mail. Events
//! reach the file within 200 ms.
//!
//! Files older than `[tracking] max_age` are deleted (`retention.rs`); the log is searched by
//! `search.rs` (`GET /api/v1/tracking`), which first writes what is buffered ([`Tracking::flush`]).

mod retention;
pub mod search;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;
use sluice_queue_db::time::{date, now_ms, rfc3339};

/// One tracking event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub time: String,
    pub event_id: EventId,
    pub mid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    pub sender: String,
    pub recipients: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// What an `AUDIT` event records (none on message events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// A state-changing request to the admin API and its outcome, as an `AUDIT` event records it; the event's
/// `source` names who asked (`admin API 192.0.2.7:53412`) and its `mid` is 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// `POST`, `PATCH` or `DELETE`.
    pub method: String,
    /// The path with its query, as sent (`/api/v1/messages/suspend?filter=...`).
    pub path: String,
    /// Whether the request carried the configured bearer token (false without a token configured).
    pub token: bool,
    /// The HTTP status of the answer; refused requests (`401`, `403`, `400`) are recorded too.
    pub status: u16,
    /// Objects the request selected, when its answer says (`ActionResult`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    /// Objects it changed, when its answer says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<u64>,
}

impl Event {
    pub fn new(event_id: EventId, mid: u64) -> Event {
        Event {
            time: rfc3339(now_ms()),
            event_id,
            mid,
            internet_message_id: None,
            sender: String::new(),
            recipients: Vec::new(),
            queue: None,
            source: None,
            source_ip: None,
            reply: None,
            audit: None,
        }
    }
}

named_enum! {
    /// What happened to a message, as an event's `event_id` names it (written in capitals: `RECEIVE`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "UPPERCASE")]
    pub enum EventId {
        /// Received (over SMTP, or from replay or pickup).
        Receive = "RECEIVE",
        /// Put in Submission.
        Submit = "SUBMIT",
        /// Categorized: routed to delivery queues.
        Route = "ROUTE",
        /// Delivered to a recipient.
        Deliver = "DELIVER",
        /// Not delivered this time; retried later.
        Defer = "DEFER",
        /// Failed for good (also: dropped by a work-queue stage, `source` naming it).
        Fail = "FAIL",
        /// A work-queue stage's verdict on a message it passed (`source` names the stage, `reply` the
        /// verdict).
        Scan = "SCAN",
        /// A work-queue stage quarantined the message (`reply` says why).
        Quarantine = "QUARANTINE",
        /// A delivery status notice about the message was queued (`reply` names its action and MID).
        Dsn = "DSN",
        /// An administrator suspended a message copy (`source` names the request's origin).
        Suspend = "SUSPEND",
        /// An administrator resumed a message copy, or a message left Poison.
        Resume = "RESUME",
        /// An administrator removed a message copy (`reply` says whether a notice was sent).
        Remove = "REMOVE",
        /// A message went back to the categorizer: from Poison, by Retry-Queue with resubmit, or as a Safety
        /// Net copy resubmitted (then under its new MID, `reply` naming the original one).
        Resubmit = "RESUBMIT",
        /// A cluster node took over a message of a dead or drained node from its shadow copy, under a new
        /// MID (`reply` names the original node and MID).
        Adopt = "ADOPT",
        /// A message reached `poison_threshold` crashes and was moved to Poison, suspended.
        PoisonMessage = "POISONMESSAGE",
        /// A state-changing request to the admin API, answered or refused (`audit` says what; not about
        /// one message).
        Audit = "AUDIT",
    }
}

/// Events are serialized by the caller into a shared buffer that a writer thread drains every
/// [`FLUSH_INTERVAL`] (or sooner when it fills): no thread wake-up per event.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
/// Above this many buffered bytes events are dropped (and counted) rather than growing memory.
const MAX_BUFFERED: usize = 16 << 20;
/// Above this many buffered bytes the writer is woken early.
const WAKE_AT: usize = 1 << 20;

struct Shared {
    dir: PathBuf,
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    dropped: AtomicU64,
    /// Held while a batch is taken from `buf` and written, by the writer and by [`Tracking::flush`]: batches
    /// reach the file whole and in order. (Always taken before `buf`.)
    writing: Mutex<()>,
    /// `[tracking] max_age`, in seconds.
    max_age_secs: AtomicU64,
    /// Set when `max_age` changed: the writer prunes at its next wake-up rather than the next day.
    prune_now: AtomicBool,
}

/// A handle to the tracking log. Cheap to clone.
#[derive(Clone)]
pub struct Tracking {
    shared: Option<Arc<Shared>>,
}

impl Tracking {
    /// Starts the writer for `dir`, which keeps files for `max_age` (deleting older ones now and daily).
    pub fn start(dir: PathBuf, max_age: Duration) -> std::io::Result<Tracking> {
        fs::create_dir_all(&dir)?;
        let shared = Arc::new(Shared {
            dir,
            buf: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            writing: Mutex::new(()),
            max_age_secs: AtomicU64::new(max_age.as_secs()),
            prune_now: AtomicBool::new(true),
        });
        let s = shared.clone();
        std::thread::Builder::new().name("tracking".into()).spawn(move || write_events(s))?;
        Ok(Tracking { shared: Some(shared) })
    }

    /// A log that writes nothing (tests).
    pub fn disabled() -> Tracking {
        Tracking { shared: None }
    }

    /// Writes what is buffered now (at shutdown, and before a search).
    pub fn flush(&self) {
        let Some(shared) = &self.shared else { return };
        let _writing = shared.writing.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *shared.buf.lock().unwrap_or_else(|e| e.into_inner()));
        let mut current = None;
        append(&shared.dir, &mut current, &batch);
    }

    /// The directory of the daily files (none for a disabled log).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.shared.as_ref().map(|s| s.dir.as_path())
    }

    /// Changes `max_age` (on reload); files older than the new one are deleted within a moment.
    pub fn set_max_age(&self, max_age: Duration) {
        let Some(shared) = &self.shared else { return };
        if shared.max_age_secs.swap(max_age.as_secs(), Ordering::Relaxed) != max_age.as_secs() {
            shared.prune_now.store(true, Ordering::Relaxed);
            shared.wake.notify_one();
        }
    }

    /// The events that match `criteria`, oldest first, from `from` on, at most `limit`: buffered events are
    /// written first, so that an event logged before the call is found. Reads files: call it off the async
    /// runtime.
    pub fn search(
        &self,
        criteria: &search::Criteria,
        from: Option<&search::Bookmark>,
        limit: usize,
    ) -> std::io::Result<search::Found> {
        let Some(shared) = &self.shared else { return Ok(search::Found::default()) };
        self.flush();
        search::search(&shared.dir, criteria, from, limit)
    }

    pub fn log(&self, event: Event) {
        let Some(shared) = &self.shared else { return };
        let mut line = Vec::with_capacity(256);
        if serde_json::to_writer(&mut line, &event).is_err() {
            return;
        }
        line.push(b'\n');
        let mut buf = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() + line.len() > MAX_BUFFERED {
            drop(buf);
            if shared.dropped.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                tracing::warn!("message tracking log is behind; events dropped");
            }
            return;
        }
        buf.extend_from_slice(&line);
        if buf.len() >= WAKE_AT {
            shared.wake.notify_one();
        }
    }
}

fn write_events(shared: Arc<Shared>) {
    let mut current: Option<(String, File)> = None;
    let mut batch = Vec::new();
    let mut pruned_on = String::new();
    loop {
        {
            let buf = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
            let _ = shared
                .wake
                .wait_timeout_while(buf, FLUSH_INTERVAL, |b| {
                    b.len() < WAKE_AT && !shared.prune_now.load(Ordering::Relaxed)
                })
                .unwrap_or_else(|e| e.into_inner());
        }
        {
            let _writing = shared.writing.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *shared.buf.lock().unwrap_or_else(|e| e.into_inner()), &mut batch);
            append(&shared.dir, &mut current, &batch);
        }
        batch.clear();
        let now = now_ms();
        let today = date(now);
        let asked = shared.prune_now.swap(false, Ordering::Relaxed);
        if asked || today != pruned_on {
            let max_age = Duration::from_secs(shared.max_age_secs.load(Ordering::Relaxed));
            retention::prune(&shared.dir, max_age, now);
            pruned_on = today;
        }
    }
}

/// Appends whole lines to the day's file.
fn append(dir: &std::path::Path, current: &mut Option<(String, File)>, batch: &[u8]) {
    if batch.is_empty() {
        return;
    }
    let day = date(now_ms());
    if current.as_ref().is_none_or(|(d, _)| *d != day) {
        let path = dir.join(format!("tracking-{day}.log"));
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => *current = Some((day, f)),
            Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot open the tracking log"),
        }
    }
    if let Some((_, f)) = current.as_mut()
        && let Err(e) = f.write_all(batch)
    {
        tracing::error!(error = %e, "cannot write the tracking log");
    }
}

#[cfg(test)]
mod tests {
    use super::{Audit, Event, EventId};

    /// The search reads lines into the API's type: every field an event writes keeps its name and value.
    #[test]
    fn an_event_line_reads_back_as_the_apis_tracking_event() {
        let mut e = Event::new(EventId::Audit, 0);
        e.internet_message_id = Some("<a@b>".into());
        e.sender = "s@x".into();
        e.recipients = vec!["r@y".into()];
        e.queue = Some("mx\\16".into());
        e.source = Some("admin API 127.0.0.1:1".into());
        e.source_ip = Some("127.0.0.1".into());
        e.reply = Some("250 ok".into());
        e.audit = Some(Audit {
            method: "POST".into(),
            path: "/x".into(),
            token: true,
            status: 200,
            matched: Some(2),
            changed: None,
        });
        let line = serde_json::to_value(&e).unwrap();
        let read: sluice_api_types::TrackingEvent = serde_json::from_value(line.clone()).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), line);
        assert_eq!(read.event_id, "AUDIT");
    }

    #[test]
    fn an_event_id_is_written_as_its_name() {
        for id in EventId::ALL {
            assert_eq!(serde_json::to_string(id).unwrap(), format!("\"{}\"", id.as_str()));
        }
    }
}
