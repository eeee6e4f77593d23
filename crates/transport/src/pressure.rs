//! Back pressure: free space on the queue database's file system, the process's resident memory
//! and the length of Submission, checked every `check_interval`. Each resource has Medium and High
//! thresholds and comes down a level only past that level's lower mark (hysteresis). Medium refuses new
//! mail from clients outside `relay_networks`, High refuses all new mail, both with `452 4.3.1` at MAIL
//! FROM; connections are still accepted. Under disk pressure the Safety Net gives way first.
//!
//! The levels and their hysteresis are plain functions; the monitor that applies them every
//! `check_interval`, and raises alerts on a change of level, runs as one of the transport's tasks.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sluice_queue_db::time::rfc3339;

use crate::Inner;
use crate::alerts::{AlertClass, Severity};

named_enum! {
    /// How much the server refuses.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Level {
        Normal = "Normal",
        Medium = "Medium",
        High = "High",
    }
}

impl Level {
    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Normal,
            1 => Level::Medium,
            _ => Level::High,
        }
    }
}

/// `[back_pressure]`, as the transport uses it. Disk figures are bytes of free space; a 0 disables that
/// threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub check_interval: Duration,
    pub disk_free_medium: u64,
    pub disk_free_high: u64,
    pub disk_free_normal: u64,
    pub memory_medium_percent: u8,
    pub memory_high_percent: u8,
    pub memory_normal_percent: u8,
    pub submission_queue_medium: u64,
    pub submission_queue_high: u64,
    pub submission_queue_normal: u64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            check_interval: Duration::from_secs(2),
            // "2GB", "500MB" and "3GB" as the configuration reads them: binary units.
            disk_free_medium: 2 << 30,
            disk_free_high: 500 << 20,
            disk_free_normal: 3 << 30,
            memory_medium_percent: 73,
            memory_high_percent: 75,
            memory_normal_percent: 71,
            submission_queue_medium: 4000,
            submission_queue_high: 10_000,
            submission_queue_normal: 2000,
        }
    }
}

/// The next level of a resource whose value grows with pressure (a queue length, a memory share), from
/// `level`: up as soon as a threshold is reached, down to Medium below `medium`, to Normal below `normal`.
/// A threshold of 0 is off.
pub fn rising(level: Level, value: u64, medium: u64, high: u64, normal: u64) -> Level {
    if high > 0 && value >= high {
        Level::High
    } else if (medium > 0 && value >= medium) || (level > Level::Normal && normal > 0 && value >= normal) {
        Level::Medium
    } else {
        Level::Normal
    }
}

/// The same for free space, which shrinks with pressure: up when it falls under a threshold, down to
/// Medium above `high`, to Normal only above `normal`.
pub fn falling(level: Level, free: u64, medium: u64, high: u64, normal: u64) -> Level {
    if high > 0 && free < high {
        Level::High
    } else if (medium > 0 && free < medium) || (level > Level::Normal && normal > 0 && free < normal) {
        Level::Medium
    } else {
        Level::Normal
    }
}

/// The current level, shared with the receive sessions.
#[derive(Debug, Default)]
pub struct BackPressure {
    level: AtomicU8,
    disk: AtomicU8,
    memory: AtomicU8,
    submission: AtomicU8,
}

/// One resource's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Disk,
    Memory,
    Submission,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Disk, Resource::Memory, Resource::Submission];

    /// The name in the status and metrics (`queue_database_disk`, `memory`, `submission_queue`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Disk => "queue_database_disk",
            Resource::Memory => "memory",
            Resource::Submission => "submission_queue",
        }
    }

    /// The name for people, as the `452 4.3.1` reply gives it.
    pub fn describe(self) -> &'static str {
        match self {
            Resource::Disk => "queue database disk",
            Resource::Memory => "memory",
            Resource::Submission => "submission queue",
        }
    }
}

impl BackPressure {
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    pub fn of(&self, r: Resource) -> Level {
        Level::from_u8(self.cell(r).load(Ordering::Relaxed))
    }

    fn cell(&self, r: Resource) -> &AtomicU8 {
        match r {
            Resource::Disk => &self.disk,
            Resource::Memory => &self.memory,
            Resource::Submission => &self.submission,
        }
    }

    /// The resource at the overall level (the first of disk, memory, Submission when several are).
    pub fn cause(&self) -> Resource {
        let level = Resource::ALL.iter().map(|r| self.of(*r)).max().unwrap_or(Level::Normal);
        Resource::ALL.into_iter().find(|r| self.of(*r) == level).unwrap_or(Resource::Disk)
    }

    /// Sets one resource's level; returns the overall level before and after.
    pub fn set(&self, r: Resource, level: Level) -> (Level, Level) {
        self.cell(r).store(level as u8, Ordering::Relaxed);
        let overall = [Resource::Disk, Resource::Memory, Resource::Submission].into_iter().map(|r| self.of(r)).max();
        let overall = overall.unwrap_or(Level::Normal);
        let before = Level::from_u8(self.level.swap(overall as u8, Ordering::Relaxed));
        (before, overall)
    }
}

/// Resident memory of this process as a percentage of physical memory (Linux `/proc`).
pub fn memory_percent() -> Option<u64> {
    // Both figures in kB: `VmRSS` of /proc/self/status, `MemTotal` of /proc/meminfo.
    let kb = |path: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
    };
    let resident = kb("/proc/self/status", "VmRSS:")?;
    let total = kb("/proc/meminfo", "MemTotal:")?;
    Some(resident * 100 / total.max(1))
}

/// The monitor's state in the transport: the levels, the thresholds, and what it last looked at and alerted.
#[derive(Debug)]
pub(crate) struct Monitor {
    levels: BackPressure,
    thresholds: RwLock<Thresholds>,
    /// When receive last looked at the free space itself (ms since `started`).
    disk_looked: AtomicU64,
    /// The back pressure level last alerted.
    alerted: Mutex<Level>,
    started: Instant,
}

impl Monitor {
    pub(crate) fn new() -> Monitor {
        Monitor {
            levels: BackPressure::default(),
            thresholds: RwLock::new(Thresholds::default()),
            disk_looked: AtomicU64::new(0),
            alerted: Mutex::new(Level::Normal),
            started: Instant::now(),
        }
    }

    /// The overall level, as the monitor and receive last set it.
    pub(crate) fn level(&self) -> Level {
        self.levels.level()
    }

    pub(crate) fn set_thresholds(&self, t: Thresholds) {
        *self.thresholds.write().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        *self.thresholds.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Each resource's level, as last set.
    pub(crate) fn levels(&self) -> &BackPressure {
        &self.levels
    }
}

/// The back pressure level now (see `Transport::back_pressure`): raises the disk's level at once when the
/// free space, looked at here at most every 10 ms, calls for it.
pub(crate) fn look_at_disk(inner: &Arc<Inner>) -> Level {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &inner.pressure;
    let level = m.levels.level();
    if level == Level::High {
        return level;
    }
    // `disk_looked` is 0 until the first look, which is never skipped (also not in the monitor's first 10 ms).
    let now = (m.started.elapsed().as_millis() as u64).max(1);
    let last = m.disk_looked.load(Relaxed);
    if (last == 0 || now >= last + 10)
        && m.disk_looked.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
        && let Ok(free) = inner.db.free_space()
    {
        let t = m.thresholds();
        let was = m.levels.of(Resource::Disk);
        let disk = falling(was, free, t.disk_free_medium, t.disk_free_high, t.disk_free_normal);
        if disk > was {
            m.levels.set(Resource::Disk, disk);
            alert_level(inner, &[format!("{} MB free for the queue database", free / 1_000_000)]);
            // The Safety Net makes room at once rather than at the monitor's next check.
            if let Some(want) = eviction_target(&t, was, free, false) {
                let inner = inner.clone();
                tokio::spawn(async move { evict_safety_net(&inner, want).await });
            }
        }
    }
    m.levels.level()
}

/// The queue database's disk is full (see `Transport::disk_is_full`): the disk's level goes to High at once.
pub(crate) fn disk_is_full(inner: &Inner) {
    inner.db.note_disk_full();
    let (before, _) = inner.pressure.levels.set(Resource::Disk, Level::High);
    if before != Level::High {
        disk_full_alert(inner);
    }
}

fn disk_full_alert(inner: &Inner) {
    inner.alerts.raise_keyed(
        "queue-database-disk-full",
        AlertClass::Hardware,
        Severity::Critical,
        "the queue database's disk is full: a reserve file was released, in-flight commits finish, new mail \
         gets 452 4.3.1 until space returns",
    );
}

/// How much free space the Safety Net should make room for now, if any: under disk pressure (free space
/// below the Normal mark, or a level above Normal) up to that mark; on a full disk, all of it.
fn eviction_target(t: &Thresholds, level: Level, free: u64, disk_full: bool) -> Option<u64> {
    if disk_full {
        Some(u64::MAX)
    } else if free < t.disk_free_normal || level > Level::Normal {
        Some(t.disk_free_normal.max(t.disk_free_medium).max(t.disk_free_high))
    } else {
        None
    }
}

/// Drops Safety Net copies until `want` bytes are free, with a Warning alert saying what the Safety Net
/// still covers.
async fn evict_safety_net(inner: &Inner, want: u64) {
    let Ok(ev) = inner.db.evict_safety_net(want).await else { return };
    if ev.generations == 0 {
        return;
    }
    let holds = if ev.empty {
        "the Safety Net is now empty".to_owned()
    } else {
        format!("Safety Net now holds copies delivered since {}", rfc3339(ev.held_since))
    };
    inner.alerts.raise_keyed(
        "safety-net-evicted",
        AlertClass::BackPressure,
        Severity::Warning,
        format!(
            "disk pressure: {} Safety Net generations ({} MB) removed before their hold ended; {holds}",
            ev.generations,
            ev.bytes.div_ceil(1_000_000)
        ),
    );
}

/// Checks the back pressure resources every `check_interval` and alerts on every change of level.
pub(crate) async fn watch(inner: Arc<Inner>) {
    loop {
        let interval = inner.pressure.thresholds().check_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let t = inner.pressure.thresholds();
        let mut reasons = Vec::new();
        // Disk: the Safety Net gives way before the level rises.
        let was = inner.pressure.levels.of(Resource::Disk);
        let mut disk = match inner.db.free_space() {
            Ok(mut free) => {
                if let Some(want) = eviction_target(&t, was, free, inner.db.disk_full()) {
                    evict_safety_net(&inner, want).await;
                    free = inner.db.free_space().unwrap_or(free);
                }
                let level = falling(was, free, t.disk_free_medium, t.disk_free_high, t.disk_free_normal);
                if level > Level::Normal {
                    reasons.push(format!("{} MB free for the queue database", free / 1_000_000));
                }
                level
            }
            Err(_) => was,
        };
        if inner.db.disk_full() {
            if was != Level::High {
                disk_full_alert(&inner);
            }
            disk = Level::High;
            reasons.push("the queue database's disk is full".to_owned());
        }
        let mem_was = inner.pressure.levels.of(Resource::Memory);
        let memory = match memory_percent() {
            Some(p) => {
                let l = rising(
                    mem_was,
                    p,
                    t.memory_medium_percent.into(),
                    t.memory_high_percent.into(),
                    t.memory_normal_percent.into(),
                );
                if l > Level::Normal {
                    reasons.push(format!("resident memory at {p}% of physical memory"));
                }
                l
            }
            None => mem_was,
        };
        let submission_len = inner.lock().submission_len() as u64;
        let submission = rising(
            inner.pressure.levels.of(Resource::Submission),
            submission_len,
            t.submission_queue_medium,
            t.submission_queue_high,
            t.submission_queue_normal,
        );
        if submission > Level::Normal {
            reasons.push(format!("{submission_len} messages in Submission"));
        }
        inner.pressure.levels.set(Resource::Disk, disk);
        inner.pressure.levels.set(Resource::Memory, memory);
        inner.pressure.levels.set(Resource::Submission, submission);
        alert_level(&inner, &reasons);
    }
}

/// Alerts when the overall back pressure level differs from the one last alerted.
fn alert_level(inner: &Inner, reasons: &[String]) {
    let now = inner.pressure.levels.level();
    let before = {
        let mut alerted = inner.pressure.alerted.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *alerted, now)
    };
    if before == now {
        return;
    }
    let (severity, what) = match now {
        Level::High => (Severity::Critical, "all new mail gets 452 4.3.1"),
        Level::Medium => (Severity::Warning, "new mail from outside relay_networks gets 452 4.3.1"),
        Level::Normal => (Severity::Information, "new mail is accepted again"),
    };
    let why = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) };
    inner.alerts.raise(
        AlertClass::BackPressure,
        severity,
        format!("back pressure {} -> {}: {what}{why}", before.as_str(), now.as_str()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    #[test]
    fn free_space_levels_have_hysteresis() {
        // medium 2000, high 500, normal 3000
        let f = |l, free| falling(l, free, 2000, 500, 3000);
        assert_eq!(f(Normal, 2500), Normal);
        assert_eq!(f(Normal, 1999), Medium);
        assert_eq!(f(Medium, 2500), Medium, "stays until above normal");
        assert_eq!(f(Medium, 3000), Normal);
        assert_eq!(f(Medium, 499), High);
        assert_eq!(f(High, 1000), Medium, "down a level above high");
        assert_eq!(f(High, 100), High);
        assert_eq!(falling(Normal, 0, 0, 0, 0), Normal, "0 disables");
    }

    #[test]
    fn growing_levels_have_hysteresis() {
        // medium 4000, high 10000, normal 2000
        let r = |l, v| rising(l, v, 4000, 10_000, 2000);
        assert_eq!(r(Normal, 3999), Normal);
        assert_eq!(r(Normal, 4000), Medium);
        assert_eq!(r(Medium, 3000), Medium, "stays until below normal");
        assert_eq!(r(Medium, 1999), Normal);
        assert_eq!(r(Medium, 10_000), High);
        assert_eq!(r(High, 5000), Medium);
        assert_eq!(r(High, 3000), Medium);
        assert_eq!(r(High, 100), Normal);
    }

    #[test]
    fn the_overall_level_is_the_highest() {
        let bp = BackPressure::default();
        assert_eq!(bp.set(Resource::Disk, Medium), (Normal, Medium));
        assert_eq!(bp.set(Resource::Submission, High), (Medium, High));
        assert_eq!(bp.set(Resource::Submission, Normal), (High, Medium));
        assert_eq!(bp.level(), Medium);
        assert_eq!(bp.cause(), Resource::Disk);
        bp.set(Resource::Memory, High);
        assert_eq!(bp.cause(), Resource::Memory, "the resource at the highest level is named");
    }
}
