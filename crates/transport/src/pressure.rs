//! Back pressure (spec 04): free space on the queue database's file system, the process's resident memory
//! and the length of Submission, checked every `check_interval`. Each resource has Medium and High
//! thresholds and comes down a level only past that level's lower mark (hysteresis). Medium refuses new
//! mail from clients outside `relay_networks`, High refuses all new mail, both with `452 4.3.1` at MAIL
//! FROM; connections are still accepted. Under disk pressure the Safety Net gives way first.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How much the server refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Normal,
    Medium,
    High,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "Normal",
            Level::Medium => "Medium",
            Level::High => "High",
        }
    }

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
    }
}
