//! Safety Net resubmit requests (Add-ResubmitRequest): an administrator asks for the copies the Safety Net
//! holds that were delivered within a time window — optionally only a sender's, a recipient's, or one
//! Internet message id — to be sent again. Each match becomes a new message (a new MID, source `Resubmit`,
//! only the matched recipients) that goes through the categorizer like any other; no delivery status
//! notice is ever sent for it (`dsn::notify`).
//!
//! Requests persist in a small JSON file under the data directory (`resubmit-requests.json`), replaced
//! atomically on every change, so that they are listed after a restart until removed. One task processes
//! the enabled requests, one at a time, soon after they are added or enabled. A request remembers the
//! highest original MID it has handled (the matches go in MID order) and is saved every
//! [`SAVE_EVERY`] messages: after a crash it resumes there, so at most that many are sent twice — a
//! duplicate, never a loss.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sluice_api_types as api;
use sluice_queue_db::time::{now_ms, parse_rfc3339, rfc3339};
use sluice_queue_db::{Envelope, Mid, SafetyNetCopy, SafetyNetFilter};
use tokio::sync::Notify;

use crate::Inner;
use crate::tracking::EventId;

/// The `source_name` of a resubmitted message: no notice is sent for it, and requests do not select it.
pub(crate) const SOURCE_RESUBMIT: &str = "Resubmit";

/// A running request saves its progress after this many messages.
const SAVE_EVERY: u64 = 64;

/// The file's format version.
const FILE_VERSION: u32 = 1;

/// Why a resubmit request could not be added, changed or removed.
#[derive(Debug, thiserror::Error)]
pub enum ResubmitError {
    /// The request is not valid (a time that is not RFC 3339, an end before the start).
    #[error("{0}")]
    Invalid(String),
    #[error("no resubmit request {0}")]
    NotFound(u64),
    /// The request's state does not allow the change (enabling a completed request).
    #[error("resubmit request {id} is {status}: {why}")]
    WrongState { id: u64, status: &'static str, why: &'static str },
    /// The change was made but could not be saved; it is lost at the next restart.
    #[error("the resubmit requests could not be saved to {path}: {source}")]
    Save {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why the requests file could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum RequestsFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a resubmit requests file: {source}")]
    Format {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} has version {found}; this sluice reads version {FILE_VERSION}")]
    Version { path: String, found: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Pending,
    Running,
    Completed,
    Disabled,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Running => "Running",
            Status::Completed => "Completed",
            Status::Disabled => "Disabled",
            Status::Failed => "Failed",
        }
    }
}

/// A request as the file keeps it (times in ms since the epoch).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    id: u64,
    start_ms: i64,
    end_ms: i64,
    sender: Option<String>,
    recipient: Option<String>,
    internet_message_id: Option<String>,
    enabled: bool,
    status: Status,
    matched: u64,
    resubmitted: u64,
    created_ms: i64,
    completed_ms: Option<i64>,
    origin: String,
    error: Option<String>,
    /// Every match with an original MID at or below this was handled (resubmitted or found unreadable).
    done_through: Mid,
}

impl Request {
    fn to_api(&self) -> api::ResubmitRequest {
        api::ResubmitRequest {
            id: self.id,
            start_time: rfc3339(self.start_ms),
            end_time: rfc3339(self.end_ms),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            internet_message_id: self.internet_message_id.clone(),
            enabled: self.enabled,
            status: self.status.as_str().to_owned(),
            matched: self.matched,
            resubmitted: self.resubmitted,
            created: rfc3339(self.created_ms),
            completed: self.completed_ms.map(rfc3339),
            origin: self.origin.clone(),
            error: self.error.clone(),
        }
    }

    fn filter(&self) -> SafetyNetFilter {
        SafetyNetFilter {
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            internet_message_id: self.internet_message_id.clone(),
        }
    }
}

/// The file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Book {
    version: u32,
    next_id: u64,
    requests: Vec<Request>,
}

impl Default for Book {
    fn default() -> Book {
        Book { version: FILE_VERSION, next_id: 1, requests: Vec::new() }
    }
}

/// The resubmit requests of a server, and where they are saved.
pub struct ResubmitRequests {
    /// `None`: kept in memory only (tests).
    path: Option<PathBuf>,
    book: Mutex<Book>,
    /// Saves one at a time, each writing the book as it is when it starts, so that an older state never
    /// replaces a newer one.
    saving: tokio::sync::Mutex<()>,
    wake: Notify,
}

impl ResubmitRequests {
    /// Reads the requests saved in `path` (none when it does not exist). A request that was running when
    /// the server stopped runs again from where it last saved its progress.
    pub fn open(path: PathBuf) -> Result<ResubmitRequests, RequestsFileError> {
        let shown = path.display().to_string();
        let mut book = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Book>(&bytes)
                .map_err(|source| RequestsFileError::Format { path: shown.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(source) => return Err(RequestsFileError::Io { path: shown, source }),
        };
        if book.version != FILE_VERSION {
            return Err(RequestsFileError::Version { path: shown, found: book.version });
        }
        for r in &mut book.requests {
            if r.status == Status::Running {
                r.status = Status::Pending;
            }
        }
        Ok(ResubmitRequests::with(Some(path), book))
    }

    /// Requests kept in memory only, lost at a restart (tests).
    pub fn in_memory() -> ResubmitRequests {
        ResubmitRequests::with(None, Book::default())
    }

    fn with(path: Option<PathBuf>, book: Book) -> ResubmitRequests {
        ResubmitRequests { path, book: Mutex::new(book), saving: tokio::sync::Mutex::new(()), wake: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // Never held across an await; every update is complete before it is released.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the book as it is now: beside, fsync, rename, fsync of the directory.
    async fn save(&self) -> Result<(), ResubmitError> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let _one_at_a_time = self.saving.lock().await;
        let bytes = match serde_json::to_vec_pretty(&*self.lock()) {
            Ok(b) => b,
            // Plain data: serializing it cannot fail.
            Err(e) => return Err(ResubmitError::Save { path: path.display().to_string(), source: e.into() }),
        };
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| ResubmitError::Save { path: shown, source })
    }

    /// Updates request `id` with `f`; `NotFound` when it is gone.
    fn update<T>(&self, id: u64, f: impl FnOnce(&mut Request) -> T) -> Result<T, ResubmitError> {
        let mut book = self.lock();
        let r = book.requests.iter_mut().find(|r| r.id == id).ok_or(ResubmitError::NotFound(id))?;
        Ok(f(r))
    }

    /// Takes the next enabled request waiting to run, marks it Running, and returns it.
    fn next_pending(&self) -> Option<Request> {
        let mut book = self.lock();
        let r = book.requests.iter_mut().find(|r| r.enabled && r.status == Status::Pending)?;
        r.status = Status::Running;
        Some(r.clone())
    }

    /// Whether request `id` may go on: it exists, is enabled and still marked Running.
    fn may_go_on(&self, id: u64) -> bool {
        self.lock().requests.iter().any(|r| r.id == id && r.enabled && r.status == Status::Running)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one: written beside, fsynced,
/// renamed, and the directory fsynced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A filter field as given: blank means no filter.
fn field(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

fn time(name: &str, value: &str) -> Result<i64, ResubmitError> {
    parse_rfc3339(value.trim()).ok_or_else(|| {
        ResubmitError::Invalid(format!("{name}: {value:?} is not an RFC 3339 time such as 2026-12-01T15:00:00Z"))
    })
}

impl crate::Transport {
    /// Adds a resubmit request (Add-ResubmitRequest), enabled; it runs soon after. `origin` says who asked.
    pub async fn add_resubmit_request(
        &self,
        new: &api::NewResubmitRequest,
        origin: &str,
    ) -> Result<api::ResubmitRequest, ResubmitError> {
        let start_ms = time("start_time", &new.start_time)?;
        let end_ms = time("end_time", &new.end_time)?;
        if end_ms < start_ms {
            return Err(ResubmitError::Invalid(format!(
                "end_time {} is before start_time {}",
                new.end_time.trim(),
                new.start_time.trim()
            )));
        }
        let requests = &self.inner.resubmit;
        let added = {
            let mut book = requests.lock();
            let id = book.next_id;
            book.next_id += 1;
            let r = Request {
                id,
                start_ms,
                end_ms,
                sender: field(&new.sender),
                recipient: field(&new.recipient),
                internet_message_id: field(&new.internet_message_id),
                enabled: true,
                status: Status::Pending,
                matched: 0,
                resubmitted: 0,
                created_ms: now_ms(),
                completed_ms: None,
                origin: origin.to_owned(),
                error: None,
                done_through: 0,
            };
            book.requests.push(r.clone());
            r
        };
        tracing::info!(
            request = added.id,
            origin = %sluice_smtp::printable(origin),
            start = %rfc3339(start_ms),
            end = %rfc3339(end_ms),
            "Safety Net resubmit request added"
        );
        requests.save().await?;
        requests.wake.notify_one();
        Ok(added.to_api())
    }

    /// Every resubmit request, oldest first.
    pub fn resubmit_requests(&self) -> Vec<api::ResubmitRequest> {
        self.inner.resubmit.lock().requests.iter().map(Request::to_api).collect()
    }

    /// One resubmit request.
    pub fn resubmit_request(&self, id: u64) -> Result<api::ResubmitRequest, ResubmitError> {
        self.inner.resubmit.update(id, |r| r.to_api())
    }

    /// Enables or disables a request. Disabling one that runs stops it after the message in hand;
    /// enabling it again goes on from there. A completed request cannot be changed (add a new one).
    pub async fn set_resubmit_request_enabled(
        &self,
        id: u64,
        enabled: bool,
    ) -> Result<api::ResubmitRequest, ResubmitError> {
        let requests = &self.inner.resubmit;
        let changed = requests.update(id, |r| {
            if r.status == Status::Completed {
                return Err(ResubmitError::WrongState {
                    id,
                    status: r.status.as_str(),
                    why: "a completed request cannot be enabled or disabled; add a new one",
                });
            }
            let changed = r.enabled != enabled || (enabled && r.status == Status::Failed);
            r.enabled = enabled;
            if enabled && matches!(r.status, Status::Disabled | Status::Failed) {
                r.status = Status::Pending;
                r.error = None;
            } else if !enabled {
                r.status = Status::Disabled;
            }
            Ok((changed, r.to_api()))
        })??;
        if changed.0 {
            requests.save().await?;
            requests.wake.notify_one();
        }
        Ok(changed.1)
    }

    /// Removes a request; one that runs stops after the message in hand.
    pub async fn remove_resubmit_request(&self, id: u64) -> Result<api::ResubmitRequest, ResubmitError> {
        let requests = &self.inner.resubmit;
        let removed = {
            let mut book = requests.lock();
            let i = book.requests.iter().position(|r| r.id == id).ok_or(ResubmitError::NotFound(id))?;
            book.requests.remove(i)
        };
        requests.save().await?;
        Ok(removed.to_api())
    }

    /// Removes every request; those running stop after the message in hand.
    pub async fn remove_resubmit_requests(&self) -> Result<Vec<api::ResubmitRequest>, ResubmitError> {
        let requests = &self.inner.resubmit;
        let removed = std::mem::take(&mut requests.lock().requests);
        requests.save().await?;
        Ok(removed.iter().map(Request::to_api).collect())
    }
}

/// Runs the enabled requests, one at a time, until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        while let Some(request) = inner.resubmit.next_pending() {
            if inner.shutdown.is_cancelled() {
                return;
            }
            process(&inner, request).await;
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.resubmit.wake.notified() => {}
        }
    }
}

/// Why a request stopped before its end.
enum Stop {
    /// Removed, disabled, or the server is stopping: nothing to record.
    Quietly,
    /// The queue database refused: the request fails, saying why.
    Failed(String),
}

/// Resubmits what `request` selects, after what it already handled.
async fn process(inner: &Arc<Inner>, request: Request) {
    let id = request.id;
    let requests = &inner.resubmit;
    match resubmit_matches(inner, &request).await {
        Ok(()) => {
            // Unless it was disabled or removed meanwhile (then it stays as that change left it).
            let _ = requests.update(id, |r| {
                if r.status == Status::Running {
                    r.status = Status::Completed;
                    r.completed_ms = Some(now_ms());
                    tracing::info!(
                        request = id,
                        matched = r.matched,
                        resubmitted = r.resubmitted,
                        "Safety Net resubmit request completed"
                    );
                }
            });
        }
        Err(Stop::Failed(why)) => {
            tracing::error!(request = id, error = %why, "Safety Net resubmit request failed");
            let _ = requests.update(id, |r| {
                r.status = Status::Failed;
                r.error = Some(why);
            });
        }
        Err(Stop::Quietly) => {}
    }
    if let Err(e) = requests.save().await {
        tracing::error!(request = id, error = %e, "cannot save the progress of a resubmit request");
    }
}

async fn resubmit_matches(inner: &Arc<Inner>, request: &Request) -> Result<(), Stop> {
    let id = request.id;
    let requests = &inner.resubmit;
    let matches: Vec<SafetyNetCopy> = match inner.db.safety_net(request.filter()).await {
        Ok(m) => m,
        Err(e) => return Err(Stop::Failed(format!("the Safety Net cannot be read: {e}"))),
    };
    // Copies that were themselves resubmitted are not selected again: a second request over the same
    // window sends the originals once more, not every earlier resubmission too.
    let matches: Vec<SafetyNetCopy> =
        matches.into_iter().filter(|c| c.envelope.source_name() != SOURCE_RESUBMIT).collect();
    if requests.update(id, |r| r.matched = matches.len() as u64).is_err() {
        return Err(Stop::Quietly);
    }
    let mut since_save = 0;
    for copy in matches.iter().filter(|c| c.mid > request.done_through) {
        if inner.shutdown.is_cancelled() || !requests.may_go_on(id) {
            return Err(Stop::Quietly);
        }
        let resubmitted = resubmit_one(inner, request, copy).await?;
        let updated = requests.update(id, |r| {
            r.done_through = copy.mid;
            r.resubmitted += u64::from(resubmitted);
        });
        if updated.is_err() {
            return Err(Stop::Quietly);
        }
        since_save += 1;
        if since_save >= SAVE_EVERY {
            since_save = 0;
            if let Err(e) = requests.save().await {
                tracing::error!(request = id, error = %e, "cannot save the progress of a resubmit request");
            }
        }
    }
    Ok(())
}

/// Sends one Safety Net copy again as a new message; false when its body can no longer be read (its
/// generation went since the query), which is logged and skipped.
async fn resubmit_one(inner: &Arc<Inner>, request: &Request, copy: &SafetyNetCopy) -> Result<bool, Stop> {
    let db = inner.db.clone();
    let (mid, body) = (copy.mid, copy.body);
    let read = tokio::task::spawn_blocking(move || db.read_body_of(mid, &body)).await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::warn!(request = request.id, mid, error = %e, "a Safety Net copy cannot be read; skipped");
            return Ok(false);
        }
        Err(e) => return Err(Stop::Failed(format!("reading message {mid}: {e}"))),
    };
    let mut parts = copy.envelope.to_parts();
    parts.recipients = copy.recipients.iter().filter_map(|i| parts.recipients.get(*i as usize).cloned()).collect();
    SOURCE_RESUBMIT.clone_into(&mut parts.source_name);
    // A new message: its expiry and delay notice count from now.
    parts.received_at_ms = now_ms();
    let envelope = Envelope::from(parts);
    let new_mid = inner.db.allocate_mid();
    let mut ev = inner.event(EventId::Resubmit, new_mid, &envelope);
    ev.recipients = envelope.recipients().map(|r| r.address.to_owned()).collect();
    ev.source = Some(request.origin.clone());
    ev.reply = Some(format!("resubmitted from the Safety Net: original MID {mid}, resubmit request {}", request.id));
    if let Err(e) = inner.submit(new_mid, envelope, bytes.into()).await {
        return Err(Stop::Failed(format!("message {mid} could not be resubmitted: {e}")));
    }
    inner.tracking.log(ev);
    tracing::info!(request = request.id, mid = new_mid, original = mid, "resubmitted from the Safety Net");
    Ok(true)
}
