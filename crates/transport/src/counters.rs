//! The server's counters (ESA's `status detail`): what it received, delivered, bounced, refused and removed,
//! each in three columns — since the last reset (`POST /api/v1/counters/reset`), since this process started,
//! and over the server's lifetime — and the connection ids (ICID, DCID) and connection gauges.
//!
//! Counting is one relaxed atomic addition at the point where the thing happens (the commit of a received
//! message, a refused RCPT, a delivery outcome, an expiry, a removal, a notice stored): no lock, no
//! allocation. Only the process's own figures are atomics; the lifetime and reset columns are those plus an
//! offset, kept under a mutex that only readers and a reset take.
//!
//! The lifetime and reset columns and the id marks are kept in `<data_dir>/counters.json`, written beside,
//! fsynced and renamed every [`SAVE_INTERVAL`] (when something changed) and at a clean stop. A crash loses at
//! most what was counted since the last save; the connection ids are saved [`ID_HEADROOM`] ahead of those
//! handed out, so that they never repeat across a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_queue_db::time::{now_ms, parse_rfc3339, rfc3339};

named_enum! {
    /// One counter of `GET /api/v1/status` (its JSON name). `completed_recipients` is not among them: it is
    /// the sum of delivered, hard-bounced and deleted recipients.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Counter {
        /// Messages stored in Submission from clients (SMTP and the replay directory); notices and Safety Net
        /// resubmissions are not received.
        MessagesReceived = "messages_received",
        /// The recipients of those messages (after alias expansion).
        RecipientsReceived = "recipients_received",
        /// Recipients of the delivery status notices the server generated (each notice has one).
        GeneratedBounceRecipients = "generated_bounce_recipients",
        /// Recipients refused at RCPT (unknown user, relay denied, too many recipients, bad syntax).
        RejectedRecipients = "rejected_recipients",
        /// Messages accepted and then dropped on purpose (by the work queue's filters, which do not exist yet).
        DroppedMessages = "dropped_messages",
        /// Deferrals: a recipient's attempt that ended in a transient failure (4xx, no connection).
        SoftBouncedEvents = "soft_bounced_events",
        /// Recipients that failed for good: a 5xx from the next hop, no route, expiry.
        HardBouncedRecipients = "hard_bounced_recipients",
        /// Recipients the next hop or the mailbox store accepted.
        DeliveredRecipients = "delivered_recipients",
        /// Recipients removed by an administrator (Remove-Message).
        DeletedRecipients = "deleted_recipients",
        /// Messages put in quarantine (which does not exist yet).
        QuarantinedMessages = "quarantined_messages",
    }
}

const COUNTERS: usize = 10;
const _: () = assert!(Counter::ALL.len() == COUNTERS);

/// How often the counters are saved (when they changed) and the rates sampled.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// How far ahead of the connection ids handed out the saved marks are: after a crash ids go on from the
/// mark, so they never repeat (unless more than this many connections came within one save interval).
pub const ID_HEADROOM: u64 = 1_000_000;

/// The rates are kept over 15 minutes, one sample per [`SAVE_INTERVAL`].
const RATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The three columns of one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    pub reset: u64,
    pub uptime: u64,
    pub lifetime: u64,
}

/// Events per hour, averaged over the last 1, 5 and 15 minutes (or since start, when that is shorter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub one_minute: u64,
    pub five_minutes: u64,
    pub fifteen_minutes: u64,
}

/// One counter on a cache line of its own: receive sessions and delivery workers on different cores count
/// different things without taking the line from each other.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell(AtomicU64);

/// The counters of one server, shared by receive (through the transport) and the transport.
#[derive(Debug)]
pub struct Counters {
    /// Since this process started.
    uptime: [Cell; COUNTERS],
    columns: Mutex<Offsets>,
    icid: AtomicU64,
    dcid: AtomicU64,
    /// SMTP sessions open now, and since start.
    inbound: AtomicU64,
    sessions: AtomicU64,
    /// Replies 400..=599 sent to SMTP clients, by code.
    refusals: [AtomicU64; 200],
    started_ms: i64,
    started: std::time::Instant,
    rates: Mutex<Samples>,
    file: Option<PathBuf>,
}

/// The lifetime and reset columns, as offsets from the uptime one.
#[derive(Debug, Clone)]
struct Offsets {
    /// The lifetime figures when this process started.
    before: [u64; COUNTERS],
    /// The reset column is `uptime + reset` (wrapping: after a reset it is minus the uptime then).
    reset: [u64; COUNTERS],
    last_reset_ms: i64,
    /// The figures last saved, to skip a save when nothing changed.
    saved: Option<([u64; COUNTERS], u64, u64)>,
}

/// `counters.json`.
#[derive(Debug, Serialize, Deserialize)]
struct SavedFile {
    version: u32,
    last_counter_reset: String,
    lifetime: std::collections::BTreeMap<String, u64>,
    reset: std::collections::BTreeMap<String, u64>,
    /// The next connection ids to hand out.
    next_icid: u64,
    next_dcid: u64,
}

const FILE_VERSION: u32 = 1;

/// Why the counters file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct CountersFileError {
    pub path: String,
    pub why: String,
}

impl Counters {
    /// Counters kept in memory only (tests, tools): all columns start at 0.
    pub fn in_memory() -> Counters {
        Counters::with(None)
    }

    /// The counters saved in `path`, or new ones (reset now) when there is no such file. A file that cannot
    /// be read is an error: starting from zero would overwrite the lifetime figures.
    pub fn open(path: PathBuf) -> Result<Counters, CountersFileError> {
        let err = |why: String| CountersFileError { path: path.display().to_string(), why };
        let saved = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<SavedFile>(&bytes).map_err(|e| err(e.to_string()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e.to_string())),
        };
        let counters = Counters::with(Some(path.clone()));
        if let Some(saved) = saved {
            if saved.version != FILE_VERSION {
                return Err(err(format!("format version {}, this sluice reads {FILE_VERSION}", saved.version)));
            }
            let mut o = counters.offsets();
            for (i, c) in Counter::ALL.iter().enumerate() {
                o.before[i] = saved.lifetime.get(c.as_str()).copied().unwrap_or(0);
                o.reset[i] = saved.reset.get(c.as_str()).copied().unwrap_or(0);
            }
            o.last_reset_ms = parse_rfc3339(&saved.last_counter_reset).unwrap_or(counters.started_ms);
            drop(o);
            counters.icid.store(saved.next_icid.saturating_sub(1), Relaxed);
            counters.dcid.store(saved.next_dcid.saturating_sub(1), Relaxed);
        }
        Ok(counters)
    }

    fn with(file: Option<PathBuf>) -> Counters {
        let started_ms = now_ms();
        let started = std::time::Instant::now();
        Counters {
            uptime: [const { Cell(AtomicU64::new(0)) }; COUNTERS],
            columns: Mutex::new(Offsets {
                before: [0; COUNTERS],
                reset: [0; COUNTERS],
                last_reset_ms: started_ms,
                saved: None,
            }),
            icid: AtomicU64::new(0),
            dcid: AtomicU64::new(0),
            inbound: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            refusals: [const { AtomicU64::new(0) }; 200],
            started_ms,
            started,
            rates: Mutex::new(Samples::new(started)),
            file,
        }
    }

    fn offsets(&self) -> std::sync::MutexGuard<'_, Offsets> {
        // Every update under this lock is complete before it is released.
        self.columns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` of `c`.
    pub fn add(&self, c: Counter, n: u64) {
        self.uptime[c as usize].0.fetch_add(n, Relaxed);
    }

    /// One counter's three columns.
    pub fn get(&self, c: Counter) -> Columns {
        let o = self.offsets();
        self.columns_of(&o, c as usize)
    }

    fn columns_of(&self, o: &Offsets, i: usize) -> Columns {
        let uptime = self.uptime[i].0.load(Relaxed);
        Columns { reset: uptime.wrapping_add(o.reset[i]), uptime, lifetime: o.before[i] + uptime }
    }

    /// Every counter's columns, in [`Counter::ALL`]'s order, read at one moment with respect to a reset.
    pub fn all(&self) -> Vec<(Counter, Columns)> {
        let o = self.offsets();
        Counter::ALL.iter().map(|c| (*c, self.columns_of(&o, *c as usize))).collect()
    }

    /// Sets the reset column of every counter to 0, now.
    pub fn reset(&self) {
        let mut o = self.offsets();
        for i in 0..COUNTERS {
            o.reset[i] = 0u64.wrapping_sub(self.uptime[i].0.load(Relaxed));
        }
        o.last_reset_ms = now_ms();
        // The reset is saved at the next interval even if nothing else changed.
        o.saved = None;
    }

    /// When the reset column started (the last reset, or the first start of the server), ms since the epoch.
    pub fn last_reset_ms(&self) -> i64 {
        self.offsets().last_reset_ms
    }

    /// When this process started, ms since the epoch.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// A new injection connection id (ICID) for an SMTP session, and the session counted open until the
    /// guard is dropped.
    pub fn inbound_session(self: &Arc<Counters>) -> InboundSession {
        self.sessions.fetch_add(1, Relaxed);
        self.inbound.fetch_add(1, Relaxed);
        InboundSession { icid: self.icid.fetch_add(1, Relaxed) + 1, counters: self.clone() }
    }

    /// A new delivery connection id (DCID).
    pub fn next_dcid(&self) -> u64 {
        self.dcid.fetch_add(1, Relaxed) + 1
    }

    /// The last ICID and DCID handed out (0 before any).
    pub fn current_ids(&self) -> (u64, u64) {
        (self.icid.load(Relaxed), self.dcid.load(Relaxed))
    }

    /// SMTP sessions open now.
    pub fn inbound_connections(&self) -> u64 {
        self.inbound.load(Relaxed)
    }

    /// SMTP sessions since start.
    pub fn sessions_since_start(&self) -> u64 {
        self.sessions.load(Relaxed)
    }

    /// Counts a reply sent to an SMTP client when it refuses something (4xx or 5xx); others are ignored.
    pub fn smtp_reply(&self, code: u16) {
        if let Some(cell) = code.checked_sub(400).and_then(|i| self.refusals.get(usize::from(i))) {
            cell.fetch_add(1, Relaxed);
        }
    }

    /// The refusing replies sent since start, by code, those sent at least once.
    pub fn smtp_refusals(&self) -> Vec<(u16, u64)> {
        (400u16..600)
            .zip(self.refusals.iter())
            .map(|(code, n)| (code, n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Messages received, recipients delivered and recipients hard-bounced per hour, over 1, 5 and 15
    /// minutes.
    pub fn rates(&self) -> [Rate; 3] {
        let now = self.rate_figures();
        let samples = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        samples.rates(std::time::Instant::now(), now)
    }

    fn rate_figures(&self) -> [u64; 3] {
        [
            self.uptime[Counter::MessagesReceived as usize].0.load(Relaxed),
            self.uptime[Counter::DeliveredRecipients as usize].0.load(Relaxed),
            self.uptime[Counter::HardBouncedRecipients as usize].0.load(Relaxed),
        ]
    }

    /// Takes a rate sample (every [`SAVE_INTERVAL`]).
    pub(crate) fn sample(&self) {
        let figures = self.rate_figures();
        self.rates.lock().unwrap_or_else(|e| e.into_inner()).push(std::time::Instant::now(), figures);
    }

    /// Saves the counters to their file, if they have one and anything changed since the last save. `clean`
    /// (at a stop) saves the connection ids exactly instead of ahead by [`ID_HEADROOM`].
    pub fn save(&self, clean: bool) -> std::io::Result<()> {
        let Some(path) = &self.file else { return Ok(()) };
        let (bytes, figures) = {
            let o = self.offsets();
            let (icid, dcid) = self.current_ids();
            let cols: Vec<(Counter, Columns)> =
                Counter::ALL.iter().map(|c| (*c, self.columns_of(&o, *c as usize))).collect();
            let lifetime: [u64; COUNTERS] = std::array::from_fn(|i| cols[i].1.lifetime);
            let figures = (lifetime, icid, dcid);
            if !clean && o.saved == Some(figures) {
                return Ok(());
            }
            let headroom = if clean { 0 } else { ID_HEADROOM };
            let file = SavedFile {
                version: FILE_VERSION,
                last_counter_reset: rfc3339(o.last_reset_ms),
                lifetime: cols.iter().map(|(c, v)| (c.as_str().to_owned(), v.lifetime)).collect(),
                reset: cols.iter().map(|(c, v)| (c.as_str().to_owned(), v.reset)).collect(),
                next_icid: icid + 1 + headroom,
                next_dcid: dcid + 1 + headroom,
            };
            (serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?, figures)
        };
        crate::safety_net::write_atomically(path, &bytes)?;
        self.offsets().saved = Some(figures);
        Ok(())
    }

    /// Where the counters are saved, if anywhere.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Seconds since this process started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Samples the rates and saves the counters every [`SAVE_INTERVAL`] until shutdown (the last save is
/// `Transport::shutdown`'s, after every other task).
pub(crate) async fn run(inner: Arc<crate::Inner>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SAVE_INTERVAL) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        inner.counters.sample();
        let counters = inner.counters.clone();
        let saved = tokio::task::spawn_blocking(move || counters.save(false)).await.map_err(std::io::Error::other);
        if let Err(e) | Ok(Err(e)) = saved {
            let path = inner.counters.file().map(|p| p.display().to_string()).unwrap_or_default();
            inner.alerts.raise_keyed(
                "counters-not-saved",
                crate::AlertClass::System,
                crate::Severity::Warning,
                format!("the counters cannot be saved to {path}; a restart would lose what they counted since: {e}"),
            );
        }
    }
}

/// An SMTP session counted open; its ICID.
#[derive(Debug)]
pub struct InboundSession {
    counters: Arc<Counters>,
    pub icid: u64,
}

impl InboundSession {
    /// The counters it is counted in.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for InboundSession {
    fn drop(&mut self) {
        self.counters.inbound.fetch_sub(1, Relaxed);
    }
}

/// Samples of the rate figures, oldest first, over [`RATE_WINDOW`].
#[derive(Debug)]
struct Samples {
    samples: std::collections::VecDeque<(std::time::Instant, [u64; 3])>,
}

impl Samples {
    fn new(started: std::time::Instant) -> Samples {
        Samples { samples: std::collections::VecDeque::from([(started, [0; 3])]) }
    }

    fn push(&mut self, at: std::time::Instant, figures: [u64; 3]) {
        self.samples.push_back((at, figures));
        // One sample at or beyond the window's start is kept, so a full window is always covered.
        while self.samples.len() > 2 && self.samples[1].0 + RATE_WINDOW <= at {
            self.samples.pop_front();
        }
    }

    /// The rates per hour of the three figures (now `current`) over 1, 5 and 15 minutes: from the oldest
    /// sample within each window (the first sample when the server is younger than the window), over at
    /// least a second.
    fn rates(&self, now: std::time::Instant, current: [u64; 3]) -> [Rate; 3] {
        let over = |window: Duration, k: usize| -> u64 {
            let Some((at, figures)) = self.samples.iter().find(|(at, _)| *at + window >= now) else {
                return 0;
            };
            // A server younger than a second averages over one, rather than blowing up a few events.
            let secs = now.duration_since(*at).as_secs_f64().max(1.0);
            let events = current[k].saturating_sub(figures[k]) as f64;
            (events * 3600.0 / secs).round() as u64
        };
        std::array::from_fn(|k| Rate {
            one_minute: over(Duration::from_secs(60), k),
            five_minutes: over(Duration::from_secs(300), k),
            fifteen_minutes: over(RATE_WINDOW, k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn reset_zeroes_the_reset_column_only() {
        let c = Counters::in_memory();
        c.add(Counter::MessagesReceived, 3);
        assert_eq!(c.get(Counter::MessagesReceived), Columns { reset: 3, uptime: 3, lifetime: 3 });
        c.reset();
        c.add(Counter::MessagesReceived, 2);
        assert_eq!(c.get(Counter::MessagesReceived), Columns { reset: 2, uptime: 5, lifetime: 5 });
        assert!(c.last_reset_ms() >= c.started_ms());
    }

    #[test]
    fn lifetime_and_reset_columns_and_ids_survive_a_save_and_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.json");
        let c = Arc::new(Counters::open(path.clone()).unwrap());
        c.add(Counter::DeliveredRecipients, 7);
        c.reset();
        c.add(Counter::DeliveredRecipients, 2);
        let (s, _) = (c.inbound_session(), c.next_dcid());
        assert_eq!(s.icid, 1);
        drop(s);
        assert_eq!(c.inbound_connections(), 0);
        c.save(true).unwrap();
        let again = Counters::open(path.clone()).unwrap();
        assert_eq!(again.get(Counter::DeliveredRecipients), Columns { reset: 2, uptime: 0, lifetime: 9 });
        assert_eq!(again.last_reset_ms(), c.last_reset_ms());
        assert_eq!(again.current_ids(), (1, 1), "a clean stop saves the ids exactly");
        again.add(Counter::DeliveredRecipients, 1);
        assert_eq!(again.get(Counter::DeliveredRecipients), Columns { reset: 3, uptime: 1, lifetime: 10 });
        // A periodic save puts the ids ahead, as a crash after it would need.
        again.save(false).unwrap();
        let after_crash = Arc::new(Counters::open(path.clone()).unwrap());
        assert_eq!(after_crash.current_ids(), (1 + ID_HEADROOM, 1 + ID_HEADROOM));
        assert_eq!(after_crash.inbound_session().icid, 2 + ID_HEADROOM);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.json");
        std::fs::write(&path, b"{not json").unwrap();
        let e = Counters::open(path).unwrap_err();
        assert!(e.to_string().contains("counters.json"), "{e}");
    }

    #[test]
    fn refusals_are_counted_by_code() {
        let c = Counters::in_memory();
        for code in [250, 354, 452, 550, 550, 599, 600] {
            c.smtp_reply(code);
        }
        assert_eq!(c.smtp_refusals(), vec![(452, 1), (550, 2), (599, 1)]);
    }

    #[test]
    fn rates_are_per_hour_over_each_window() {
        let t0 = Instant::now();
        let mut s = Samples::new(t0);
        // 10 messages every 10 s for 20 minutes: 3600 per hour throughout.
        for i in 1..=120u64 {
            s.push(t0 + Duration::from_secs(10 * i), [10 * i, 0, i]);
        }
        let now = t0 + Duration::from_secs(1200);
        let r = s.rates(now, [1200, 0, 120]);
        assert_eq!(r[0], Rate { one_minute: 3600, five_minutes: 3600, fifteen_minutes: 3600 });
        assert_eq!(r[1], Rate::default());
        assert_eq!(r[2], Rate { one_minute: 360, five_minutes: 360, fifteen_minutes: 360 });
        assert!(s.samples.len() <= 92, "15 minutes of samples are kept: {}", s.samples.len());
        // A burst in the last minute shows in the 1-minute rate more than in the others.
        let r = s.rates(now, [1200 + 60, 0, 120]);
        assert!(r[0].one_minute > r[0].five_minutes && r[0].five_minutes > r[0].fifteen_minutes, "{r:?}");
    }

    #[test]
    fn a_young_server_averages_over_its_age() {
        let t0 = Instant::now();
        let s = Samples::new(t0);
        let r = s.rates(t0 + Duration::from_secs(30), [5, 0, 0]);
        assert_eq!(r[0], Rate { one_minute: 600, five_minutes: 600, fifteen_minutes: 600 });
        let r = s.rates(t0, [5, 0, 0])[0];
        assert_eq!(r, Rate { one_minute: 18_000, five_minutes: 18_000, fifteen_minutes: 18_000 }, "over a second");
    }
}
