//! The message tracking log: one JSON line per event in daily files under `<data_dir>/tracking`
//! (`tracking-YYYY-MM-DD.log`). A thread of its own writes them, so that a slow disk never stalls a
//! session; when the channel is full, events are dropped and counted rather than blocking mail.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;
use sluice_queue_db::time::{date, now_ms, rfc3339};

/// One tracking event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub time: String,
    pub event_id: &'static str,
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
}

impl Event {
    pub fn new(event_id: &'static str, mid: u64) -> Event {
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
        }
    }
}

/// A handle to the tracking log. Cheap to clone.
#[derive(Clone)]
pub struct Tracking {
    tx: Option<SyncSender<Event>>,
    dropped: Arc<AtomicU64>,
}

impl Tracking {
    /// Starts the writer for `dir`.
    pub fn start(dir: PathBuf) -> std::io::Result<Tracking> {
        fs::create_dir_all(&dir)?;
        let (tx, rx) = sync_channel(65_536);
        std::thread::Builder::new().name("tracking".into()).spawn(move || write_events(dir, rx))?;
        Ok(Tracking { tx: Some(tx), dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// A log that writes nothing (tests).
    pub fn disabled() -> Tracking {
        Tracking { tx: None, dropped: Arc::new(AtomicU64::new(0)) }
    }

    pub fn log(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                    tracing::warn!("message tracking log is behind; events dropped");
                }
            }
        }
    }
}

fn write_events(dir: PathBuf, rx: Receiver<Event>) {
    let mut current: Option<(String, BufWriter<File>)> = None;
    let mut line = Vec::with_capacity(512);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(event) = next {
            let day = date(now_ms());
            if current.as_ref().is_none_or(|(d, _)| *d != day) {
                let path = dir.join(format!("tracking-{day}.log"));
                match OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(f) => current = Some((day, BufWriter::with_capacity(64 * 1024, f))),
                    Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot open the tracking log"),
                }
            }
            if let Some((_, w)) = current.as_mut() {
                line.clear();
                if serde_json::to_writer(&mut line, &event).is_ok() {
                    line.push(b'\n');
                    let _ = w.write_all(&line);
                }
            }
            next = rx.try_recv().ok();
        }
        if let Some((_, w)) = current.as_mut() {
            let _ = w.flush();
        }
    }
}
