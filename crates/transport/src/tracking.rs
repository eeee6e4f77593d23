//! The message tracking log: one JSON line per event in daily files under `<data_dir>/tracking`
//! (`tracking-YYYY-MM-DD.log`). A thread of its own writes them, so that a slow disk never stalls a
//! session; when its buffer is full, events are dropped and counted rather than blocking mail. Events
//! reach the file within 200 ms.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

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
        /// Failed for good.
        Fail = "FAIL",
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
}

/// A handle to the tracking log. Cheap to clone.
#[derive(Clone)]
pub struct Tracking {
    shared: Option<Arc<Shared>>,
}

impl Tracking {
    /// Starts the writer for `dir`.
    pub fn start(dir: PathBuf) -> std::io::Result<Tracking> {
        fs::create_dir_all(&dir)?;
        let shared =
            Arc::new(Shared { dir, buf: Mutex::new(Vec::new()), wake: Condvar::new(), dropped: AtomicU64::new(0) });
        let s = shared.clone();
        std::thread::Builder::new().name("tracking".into()).spawn(move || write_events(s))?;
        Ok(Tracking { shared: Some(shared) })
    }

    /// A log that writes nothing (tests).
    pub fn disabled() -> Tracking {
        Tracking { shared: None }
    }

    /// Writes what is buffered now (at shutdown).
    pub fn flush(&self) {
        let Some(shared) = &self.shared else { return };
        let batch = std::mem::take(&mut *shared.buf.lock().unwrap_or_else(|e| e.into_inner()));
        let mut current = None;
        append(&shared.dir, &mut current, &batch);
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
    loop {
        {
            let buf = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
            let (mut buf, _) = shared
                .wake
                .wait_timeout_while(buf, FLUSH_INTERVAL, |b| b.len() < WAKE_AT)
                .unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *buf, &mut batch);
        }
        append(&shared.dir, &mut current, &batch);
        batch.clear();
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
    use super::EventId;

    #[test]
    fn an_event_id_is_written_as_its_name() {
        for id in EventId::ALL {
            assert_eq!(serde_json::to_string(id).unwrap(), format!("\"{}\"", id.as_str()));
        }
    }
}
