//! Retention of the tracking log (`[tracking] max_age`): a daily file whose last moment is older than
//! `max_age` is deleted, when the writer starts and whenever it rolls to a new day (or the setting changes).

use std::path::Path;
use std::time::Duration;

use super::search::{DAY_MS, file_date};

/// Deletes the daily files in `dir` that hold nothing newer than `max_age` before `now_ms`; returns the
/// names it deleted.
pub(crate) fn prune(dir: &Path, max_age: Duration, now_ms: i64) -> Vec<String> {
    let mut deleted = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot list the tracking log");
            return deleted;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((_, day)) = file_date(name) else { continue };
        if expired(day, max_age, now_ms) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => deleted.push(name.to_owned()),
                Err(e) => tracing::error!(file = name, error = %e, "cannot delete an old tracking log file"),
            }
        }
    }
    if !deleted.is_empty() {
        deleted.sort();
        tracing::info!(files = ?deleted, "tracking log files older than max_age deleted");
    }
    deleted
}

/// Whether the file of `day` (days since the epoch) ends more than `max_age` before `now_ms`.
fn expired(day: i64, max_age: Duration, now_ms: i64) -> bool {
    let end_ms = (day + 1) * DAY_MS;
    let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    end_ms < now_ms.saturating_sub(age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_queue_db::time::parse_rfc3339;

    #[test]
    fn a_file_goes_once_its_whole_day_is_older_than_max_age() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "tracking-2026-11-01.log",
            "tracking-2026-11-02.log",
            "tracking-2026-11-03.log",
            "notes.txt",
            "tracking-x.log",
        ] {
            std::fs::write(dir.path().join(name), b"{}\n").unwrap();
        }
        // 2 days: the 1st ended 2026-11-02T00:00, more than 2 days before; the 2nd ended 2026-11-03T00:00, less.
        let now = parse_rfc3339("2026-11-04T12:00:00Z").unwrap();
        assert_eq!(prune(dir.path(), Duration::from_secs(2 * 86_400), now), ["tracking-2026-11-01.log"]);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "tracking-2026-11-02.log", "tracking-2026-11-03.log", "tracking-x.log"]);
    }
}
