//! Alerts: what an administrator must know about now — a queue database that stopped
//! committing, a disk running full, back pressure rising. Each alert goes to `<data_dir>/logs/alerts.log`
//! (one JSON object a line) and to the recent list the API serves. Repeats of the same alert are
//! suppressed with a growing interval (5 s, 15 s, 35 s, 75 s, ... up to `max_repeat_interval`); the alert
//! that ends a quiet spell says how many were suppressed.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_api_types as api;
use sluice_queue_db::time::{now_ms, rfc3339};

/// Parses an RFC 3339 time (the `since` of a query) into ms since the epoch.
pub use sluice_queue_db::time::parse_rfc3339 as parse_time;

named_enum! {
    /// What an alert is about.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum AlertClass {
        System = "System",
        Hardware = "Hardware",
        Updater = "Updater",
        AntiVirus = "Anti-Virus",
        AntiSpam = "Anti-Spam",
        Queue = "Queue",
        BackPressure = "Back Pressure",
    }
}

impl AlertClass {
    /// Parses a class name, ignoring case, spaces and dashes (`back_pressure`, `antivirus` work too).
    pub fn parse(s: &str) -> Option<AlertClass> {
        let norm = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        let want = norm(s);
        AlertClass::ALL.iter().copied().find(|c| norm(c.as_str()) == want)
    }
}

named_enum! {
    /// How urgent an alert is; ordered from the most urgent.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Severity {
        Critical = "Critical",
        Warning = "Warning",
        Information = "Information",
    }
}

impl Severity {
    /// Parses a severity name, ignoring case (`info` for Information).
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            "information" | "info" => Some(Severity::Information),
            _ => None,
        }
    }
}

/// The first interval between repeats of one alert.
const FIRST_REPEAT: Duration = Duration::from_secs(5);
/// Alerts kept for the API.
const RECENT: usize = 1000;
/// Alerts a slow subscriber may fall behind by before it misses some (it is told how many).
const SUBSCRIBED: usize = 256;

/// The alert log and the recent alerts. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    log: Option<(PathBuf, std::fs::File)>,
    server: String,
    version: String,
    max_repeat: Duration,
    next_id: u64,
    recent: VecDeque<api::Alert>,
    repeats: HashMap<String, Repeat>,
    /// Alerts raised since start (suppressed repeats too), by class and severity.
    raised: HashMap<(AlertClass, Severity), u64>,
    /// Every alert written, for the notifiers (e-mail, webhook) that subscribed.
    sent: tokio::sync::broadcast::Sender<api::Alert>,
}

/// Suppression of one alert's repeats.
struct Repeat {
    /// When it was last written.
    emitted: Instant,
    /// Until `emitted + interval`, repeats are only counted.
    interval: Duration,
    /// When it was last raised, written or not.
    raised: Instant,
    suppressed: u64,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

impl Alerts {
    /// Alerts written to `<log_dir>/alerts.log`; the last alerts found there are the recent list again.
    pub fn open(log_dir: &Path, server: &str, version: &str, max_repeat: Duration) -> std::io::Result<Alerts> {
        std::fs::create_dir_all(log_dir)?;
        let path = log_dir.join("alerts.log");
        let mut recent = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                // A line cut by a crash or written by hand is skipped: this is a log, not a database.
                if let Ok(a) = serde_json::from_str::<api::Alert>(line) {
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back(a);
                }
            }
        }
        let next_id = recent.back().map_or(1, |a: &api::Alert| a.id + 1);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Alerts::with(Some((path, file)), server, version, max_repeat, next_id, recent))
    }

    /// Alerts kept in memory only (tests, tools).
    pub fn in_memory(server: &str, version: &str, max_repeat: Duration) -> Alerts {
        Alerts::with(None, server, version, max_repeat, 1, VecDeque::new())
    }

    fn with(
        log: Option<(PathBuf, std::fs::File)>,
        server: &str,
        version: &str,
        max_repeat: Duration,
        next_id: u64,
        recent: VecDeque<api::Alert>,
    ) -> Alerts {
        Alerts {
            inner: Arc::new(Mutex::new(Inner {
                log,
                server: server.to_owned(),
                version: version.to_owned(),
                max_repeat: max_repeat.max(FIRST_REPEAT),
                next_id,
                recent,
                repeats: HashMap::new(),
                raised: HashMap::new(),
                sent: tokio::sync::broadcast::channel(SUBSCRIBED).0,
            })),
        }
    }

    /// Raises an alert; repeats of the same class, severity and text are suppressed (see the module).
    /// Returns the alert when it was written, `None` when it was a suppressed repeat.
    pub fn raise(&self, class: AlertClass, severity: Severity, text: impl Into<String>) -> Option<api::Alert> {
        let text = text.into();
        let key = format!("{}\u{0}{}\u{0}{text}", class.as_str(), severity.as_str());
        self.raise_keyed(&key, class, severity, text)
    }

    /// Raises an alert whose repeats are recognized by `key` rather than by its text (for texts that carry a
    /// changing figure, such as a message count).
    pub fn raise_keyed(
        &self,
        key: &str,
        class: AlertClass,
        severity: Severity,
        text: impl Into<String>,
    ) -> Option<api::Alert> {
        self.raise_at(Instant::now(), key, class, severity, text.into())
    }

    fn raise_at(
        &self,
        now: Instant,
        key: &str,
        class: AlertClass,
        severity: Severity,
        text: String,
    ) -> Option<api::Alert> {
        // Alert texts carry what clients and next hops said (replies, names): one line, escaped, in the
        // alert log, the API and the text log alike.
        let text = sluice_smtp::printable(&text).into_owned();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.raised.entry((class, severity)).or_default() += 1;
        let max = inner.max_repeat;
        let suppressed = match inner.repeats.get_mut(key) {
            // Quiet for longer than the longest interval: the alert starts over.
            Some(r) if now.duration_since(r.raised) > max => {
                let n = r.suppressed;
                *r = Repeat { emitted: now, interval: FIRST_REPEAT, raised: now, suppressed: 0 };
                n
            }
            Some(r) if now < r.emitted + r.interval => {
                r.raised = now;
                r.suppressed += 1;
                return None;
            }
            Some(r) => {
                let n = r.suppressed;
                r.interval = (r.interval * 2 + FIRST_REPEAT).min(max);
                r.emitted = now;
                r.raised = now;
                r.suppressed = 0;
                n
            }
            None => {
                inner.repeats.insert(
                    key.to_owned(),
                    Repeat { emitted: now, interval: FIRST_REPEAT, raised: now, suppressed: 0 },
                );
                0
            }
        };
        let alert = api::Alert {
            id: inner.next_id,
            time: rfc3339(now_ms()),
            class: class.as_str().to_owned(),
            severity: severity.as_str().to_owned(),
            text,
            suppressed,
            server: inner.server.clone(),
            version: inner.version.clone(),
        };
        inner.next_id += 1;
        match severity {
            Severity::Critical => tracing::error!(class = class.as_str(), id = alert.id, "ALERT {}", alert.text),
            Severity::Warning => tracing::warn!(class = class.as_str(), id = alert.id, "ALERT {}", alert.text),
            Severity::Information => tracing::info!(class = class.as_str(), id = alert.id, "ALERT {}", alert.text),
        }
        if let Some((path, file)) = inner.log.as_mut() {
            let mut line = serde_json::to_vec(&alert).unwrap_or_default();
            line.push(b'\n');
            // Not synced: an alert is worth a write, not a disk flush (and a full disk may refuse it; the
            // alert is still listed and logged to stderr).
            if let Err(e) = file.write_all(&line) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the alert log");
            }
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(alert.clone());
        // Nobody subscribed is not an error: notifiers are optional.
        let _ = inner.sent.send(alert.clone());
        Some(alert)
    }

    /// Every alert written from now on (suppressed repeats are not sent), for a notifier.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<api::Alert> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).sent.subscribe()
    }

    /// How many alerts of each class and severity were raised since start, suppressed repeats included; every
    /// pair is listed, in the order of [`AlertClass::ALL`] and [`Severity::ALL`].
    pub fn raised_since_start(&self) -> Vec<(AlertClass, Severity, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(AlertClass::ALL.len() * Severity::ALL.len());
        for class in AlertClass::ALL {
            for severity in Severity::ALL {
                out.push((*class, *severity, inner.raised.get(&(*class, *severity)).copied().unwrap_or(0)));
            }
        }
        out
    }

    /// Recent alerts, oldest first: at or after `since` (ms since the epoch), of `severity` or more urgent,
    /// of `class`.
    pub fn list(&self, since: Option<i64>, severity: Option<Severity>, class: Option<AlertClass>) -> Vec<api::Alert> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .recent
            .iter()
            .filter(|a| since.is_none_or(|s| sluice_queue_db::time::parse_rfc3339(&a.time).is_some_and(|t| t >= s)))
            .filter(|a| severity.is_none_or(|s| Severity::parse(&a.severity).is_some_and(|x| x <= s)))
            .filter(|a| class.is_none_or(|c| a.class == c.as_str()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts() -> Alerts {
        Alerts::in_memory("mx1", "0.1.0", Duration::from_secs(60))
    }

    #[test]
    fn repeats_are_suppressed_with_a_growing_interval_up_to_the_cap() {
        let a = alerts();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let raise = |s| a.raise_at(at(s), "k", AlertClass::Queue, Severity::Warning, "stuck".into());
        assert!(raise(0).is_some());
        assert!(raise(4).is_none(), "within 5 s");
        let second = raise(5).unwrap();
        assert_eq!(second.suppressed, 1);
        assert!(raise(19).is_none(), "the next interval is 15 s");
        assert!(raise(20).is_some());
        assert!(raise(54).is_none(), "then 35 s");
        assert!(raise(55).is_some());
        // 75 s is over the 60 s cap.
        assert!(raise(114).is_none());
        assert!(raise(115).is_some());
        assert!(raise(174).is_none());
        assert!(raise(175).is_some(), "capped at 60 s");
        // Quiet for longer than the cap: it starts over.
        assert!(raise(300).is_some());
        assert!(raise(304).is_none());
        assert!(raise(305).is_some());
        let ids: Vec<u64> = a.list(None, None, None).iter().map(|x| x.id).collect();
        assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn other_alerts_are_not_suppressed_by_one() {
        let a = alerts();
        assert!(a.raise(AlertClass::System, Severity::Critical, "one").is_some());
        assert!(a.raise(AlertClass::System, Severity::Critical, "two").is_some());
        assert!(a.raise(AlertClass::Queue, Severity::Critical, "one").is_some());
        assert!(a.raise(AlertClass::System, Severity::Critical, "one").is_none());
        let raised = a.raised_since_start();
        assert_eq!(raised.len(), AlertClass::ALL.len() * Severity::ALL.len(), "every pair, also at 0");
        let count = |c, s| raised.iter().find(|(x, y, _)| *x == c && *y == s).map(|r| r.2);
        assert_eq!(count(AlertClass::System, Severity::Critical), Some(3), "a suppressed repeat counts");
        assert_eq!(count(AlertClass::Queue, Severity::Critical), Some(1));
        assert_eq!(count(AlertClass::Queue, Severity::Warning), Some(0));
    }

    #[test]
    fn filters_by_time_severity_and_class() {
        let a = alerts();
        a.raise(AlertClass::System, Severity::Critical, "c");
        a.raise(AlertClass::BackPressure, Severity::Warning, "w");
        a.raise(AlertClass::Queue, Severity::Information, "i");
        let texts = |v: Vec<api::Alert>| v.into_iter().map(|a| a.text).collect::<Vec<_>>();
        assert_eq!(texts(a.list(None, Some(Severity::Warning), None)), ["c", "w"]);
        assert_eq!(texts(a.list(None, None, AlertClass::parse("back_pressure"))), ["w"]);
        assert_eq!(texts(a.list(Some(now_ms() + 60_000), None, None)), Vec::<String>::new());
        assert_eq!(texts(a.list(Some(now_ms() - 60_000), None, None)), ["c", "w", "i"]);
        assert_eq!(AlertClass::parse("Anti-Virus"), Some(AlertClass::AntiVirus));
        assert_eq!(AlertClass::parse("nope"), None);
        assert_eq!(Severity::parse("INFO"), Some(Severity::Information));
    }

    #[test]
    fn the_log_is_json_lines_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = Alerts::open(dir.path(), "mx1", "0.1.0", Duration::from_secs(60)).unwrap();
        a.raise(AlertClass::Hardware, Severity::Critical, "disk full");
        a.raise(AlertClass::System, Severity::Information, "started");
        drop(a);
        let text = std::fs::read_to_string(dir.path().join("alerts.log")).unwrap();
        let lines: Vec<api::Alert> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].class.as_str(), lines[0].severity.as_str()), ("Hardware", "Critical"));
        assert_eq!(lines[0].server, "mx1");
        let b = Alerts::open(dir.path(), "mx1", "0.1.0", Duration::from_secs(60)).unwrap();
        assert_eq!(b.list(None, None, None).len(), 2);
        assert_eq!(b.raise(AlertClass::System, Severity::Warning, "again").unwrap().id, 3, "ids go on");
    }
}
