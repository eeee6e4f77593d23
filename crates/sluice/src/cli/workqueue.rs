//! The work queue from the command line, as the appliance's `workqueue status|rate|pause|resume`; its
//! engines (`antispamstatus`, `antivirusstatus`), their updates (`antispamupdate`, `antivirusupdate`) and
//! the updater's log (`tail updater_logs`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use sluice_api_types as api;

use super::ctime::{clock_of, count};
use super::status::render_work_queue;
use super::table::Table;
use super::{Output, encode, exit, say, write_out, write_out_bytes};
use crate::fail;

#[derive(Subcommand, Debug)]
pub enum WorkqueueVerb {
    /// The work queue's state (Operational, Paused or Offline, and why) and the messages in it.
    Status,
    /// Messages waiting, entering and leaving the work queue: one row every SECONDS seconds (default 10)
    /// until interrupted.
    Rate {
        #[arg(value_parser = clap::value_parser!(u64).range(1..=86_400))]
        seconds: Option<u64>,
        /// Stop after this many rows.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Stops scanning: messages wait in the work queue, those being scanned finish (every stage, or one).
    Pause {
        /// Shown in the status (default: `paused by administrator`).
        #[arg(long)]
        reason: Option<String>,
        /// Only this stage: antispam or antivirus.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Scans again (every stage, or one).
    Resume {
        /// Only this stage: antispam or antivirus.
        #[arg(long)]
        stage: Option<String>,
    },
}

/// An engine whose rules can be updated.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineName {
    Antispam,
    Antivirus,
}

impl EngineName {
    fn as_str(self) -> &'static str {
        match self {
            EngineName::Antispam => "antispam",
            EngineName::Antivirus => "antivirus",
        }
    }
}

/// The logs `sluice log` can show.
const KNOWN_LOGS: [&str; 1] = ["updater"];
/// How often `sluice log --follow` asks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// The header of `workqueue rate`.
pub const RATE_HEADER: &str = "Time      Pending   In  Out";

/// One row of `workqueue rate` under [`RATE_HEADER`]: the time of day (UTC) the row ends at, then the
/// counts right-aligned, a space between columns whatever their width.
pub fn rate_row(r: &api::WorkQueueRate) -> String {
    format!("{:<8}  {:>7} {:>4} {:>4}", clock_of(&r.time), count(r.pending), count(r.in_), count(r.out))
}

pub(super) fn workqueue(out: &Output<'_>, verb: WorkqueueVerb) -> anyhow::Result<ExitCode> {
    match verb {
        WorkqueueVerb::Status => {
            let r = out.call("GET", "/api/v1/workqueue", None)?;
            out.print(&r, |v| {
                write_out(&render_work_queue(&serde_json::from_value(v)?));
                Ok(())
            })
        }
        WorkqueueVerb::Rate { seconds, count } => rate(out, seconds.unwrap_or(10), count),
        WorkqueueVerb::Pause { reason, stage } => {
            let mut body = serde_json::Map::new();
            if let Some(reason) = reason {
                body.insert("reason".into(), reason.into());
            }
            if let Some(stage) = &stage {
                body.insert("stage".into(), stage.as_str().into());
            }
            let r = out.call("POST", "/api/v1/workqueue/pause", Some(&body.into()))?;
            out.print(&r, |v| {
                let what = what(&stage);
                say!("Manually pausing {what}. This will only affect unprocessed messages.");
                write_out(&render_work_queue(&serde_json::from_value(v)?));
                Ok(())
            })
        }
        WorkqueueVerb::Resume { stage } => {
            let mut body = serde_json::Map::new();
            if let Some(stage) = &stage {
                body.insert("stage".into(), stage.as_str().into());
            }
            let r = out.call("POST", "/api/v1/workqueue/resume", Some(&body.into()))?;
            out.print(&r, |v| {
                say!("Manually resuming {}.", what(&stage));
                write_out(&render_work_queue(&serde_json::from_value(v)?));
                Ok(())
            })
        }
    }
}

/// `work queue`, or `the antispam stage of the work queue`.
fn what(stage: &Option<String>) -> String {
    match stage {
        Some(stage) => format!("the {stage} stage of the work queue"),
        None => "work queue".to_owned(),
    }
}

/// `workqueue rate`: a row every `seconds`, on a fixed schedule (a slow answer does not push the next row
/// later), until interrupted or `count` rows.
fn rate(out: &Output<'_>, seconds: u64, count: Option<u64>) -> anyhow::Result<ExitCode> {
    if !out.json {
        say!("{RATE_HEADER}");
    }
    let start = Instant::now();
    for n in 1.. {
        let r = out.call("GET", &format!("/api/v1/workqueue/rate?interval={seconds}&samples=1"), None)?;
        let rows = match r.json()? {
            serde_json::Value::Array(rows) => rows,
            other => vec![other],
        };
        for row in rows {
            if out.json {
                say!("{row}");
            } else {
                say!("{}", rate_row(&serde_json::from_value(row)?));
            }
        }
        if count.is_some_and(|c| n >= c) {
            break;
        }
        let next = start + Duration::from_secs(seconds.saturating_mul(n));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn engines(out: &Output<'_>) -> anyhow::Result<ExitCode> {
    let r = out.call("GET", "/api/v1/engines", None)?;
    out.print(&r, |v| {
        let engines: Vec<api::Engine> = serde_json::from_value(v)?;
        write_out(&engines_table(&engines).render(super::table::terminal_width()));
        Ok(())
    })
}

/// `sluice engines --rules`: the anti-spam rule set's counts, what was skipped and why, and the costliest
/// rules.
pub(super) fn rules(out: &Output<'_>, slowest: u32) -> anyhow::Result<ExitCode> {
    let r = out.call("GET", &format!("/api/v1/engines/antispam/rules?slowest={slowest}"), None)?;
    out.print(&r, |v| {
        let report: api::RuleReport = serde_json::from_value(v)?;
        write_out(&rules_report(&report));
        Ok(())
    })
}

fn rules_report(r: &api::RuleReport) -> String {
    let mut text = format!(
        "Anti-spam rules, version {}\n  Loaded:      {}\n  Active:      {} ({} behind a literal prefilter, {} run on every \
         message, {} backtracking)\n  Not compiled: {}\n  Skipped:     {}\n",
        r.version,
        count(r.loaded),
        count(r.active),
        count(r.prefiltered),
        count(r.always),
        count(r.backtracking),
        count(r.errors),
        count(r.skipped_total),
    );
    for (reason, n) in &r.skipped {
        text.push_str(&format!("    {:>6}  {reason}\n", count(*n)));
    }
    text.push_str(&format!("  Settings ignored: {}\n", count(r.ignored_settings)));
    if r.slowest.is_empty() {
        text.push_str("\nNo message timed yet (one message in 64 is timed rule by rule).\n");
        return text;
    }
    let mut t = Table::new(&["Rule", "Mean us", "Runs", "Total ms", "Runs on"])
        .right(&["Mean us", "Runs", "Total ms"])
        .keep(&["Rule"]);
    for s in &r.slowest {
        t.row(vec![
            s.rule.clone(),
            format!("{:.1}", s.mean_us),
            count(s.runs),
            format!("{:.1}", s.total_us / 1000.0),
            s.woken_by.clone(),
        ]);
    }
    text.push_str("\nCostliest rules (timed on one message in 64):\n");
    text.push_str(&t.render(super::table::terminal_width()));
    text
}

fn engines_table(engines: &[api::Engine]) -> Table {
    let mut t = Table::new(&["Engine", "Kind", "Version", "Rules", "Status", "Last update", "Last error"])
        .right(&["Rules"])
        .keep(&["Engine", "Version"]);
    for e in engines {
        t.row(vec![
            e.engine.clone(),
            e.kind.clone(),
            e.version.clone(),
            count(e.rules),
            e.status.clone(),
            e.last_update.clone().unwrap_or_else(|| "never".into()),
            e.last_error.clone().unwrap_or_default(),
        ]);
    }
    t
}

pub(super) fn update(out: &Output<'_>, engine: EngineName, force: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/engines/{}/update?force={force}", engine.as_str());
    let r = out.call("POST", &path, None)?;
    out.print(&r, |v| {
        let started: api::UpdateStarted = serde_json::from_value(v)?;
        say!("{}", update_started(&started));
        Ok(())
    })
}

/// `antispam: update started (force); see sluice log updater`.
fn update_started(u: &api::UpdateStarted) -> String {
    format!("{}: update started{}; see sluice log updater", u.engine, if u.force { " (force)" } else { "" })
}

/// `sluice log NAME`: the last `tail` lines, then with `follow` what is added, every second, until
/// interrupted.
pub(super) fn log(out: &Output<'_>, name: &str, tail: u32, follow: bool) -> anyhow::Result<ExitCode> {
    if !KNOWN_LOGS.contains(&name) {
        return Err(fail(exit::USAGE, format!("no log named {name:?}; the logs are: {}", KNOWN_LOGS.join(", "))));
    }
    let path = format!("/api/v1/logs/{}", encode(name));
    let r = out.call("GET", &format!("{path}?tail={tail}"), None)?;
    write_out_bytes(&r.body);
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut offset = log_offset(&r)?;
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let r = out.call("GET", &format!("{path}?offset={offset}"), None)?;
        let length = log_offset(&r)?;
        write_out_bytes(&r.body);
        // A log shorter than where we were was rotated or cut: the next answer reads it from the start.
        offset = if length < offset { 0 } else { length };
    }
}

/// The length of the log when the server read it (`X-Log-Offset`): where the next read starts.
fn log_offset(r: &super::client::Response) -> anyhow::Result<u64> {
    r.header("x-log-offset")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| fail(exit::SOFTWARE, "the server's answer has no X-Log-Offset: it cannot be followed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(time: &str, pending: u64, in_: u64, out: u64) -> api::WorkQueueRate {
        api::WorkQueueRate { time: time.into(), pending, in_, out }
    }

    #[test]
    fn rate_rows_line_up_under_the_appliances_header() {
        let row = rate_row(&rate("2026-12-03T10:15:42Z", 0, 0, 0));
        assert_eq!(RATE_HEADER, "Time      Pending   In  Out");
        assert_eq!(row, "10:15:42        0    0    0");
        assert_eq!(row.len(), RATE_HEADER.len());
        assert_eq!(rate_row(&rate("2026-12-03T23:59:59.999Z", 98, 12, 7)), "23:59:59       98   12    7");
        // Wider numbers push the row out but stay apart.
        assert_eq!(
            rate_row(&rate("2026-12-03T00:00:00Z", 12_345_678, 123_456, 99_999)),
            "00:00:00  12,345,678 123,456 99,999"
        );
    }

    #[test]
    fn an_update_says_whether_it_was_forced_and_where_to_look() {
        let u = api::UpdateStarted { engine: "antispam".into(), force: true };
        assert_eq!(update_started(&u), "antispam: update started (force); see sluice log updater");
        let u = api::UpdateStarted { engine: "antivirus".into(), force: false };
        assert_eq!(update_started(&u), "antivirus: update started; see sluice log updater");
    }

    #[test]
    fn engines_show_never_for_the_shipped_rules() {
        let e = api::Engine {
            engine: "antispam".into(),
            kind: "builtin".into(),
            version: "builtin".into(),
            rules: 1200,
            last_update: None,
            last_check: None,
            last_error: None,
            status: "Operational".into(),
        };
        let out = engines_table(&[e]).render(None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Engine    Kind     Version  Rules  Status       Last update  Last error");
        assert_eq!(lines[1], "antispam  builtin  builtin  1,200  Operational  never");
    }

    #[test]
    fn pausing_names_the_stage_or_the_whole_queue() {
        assert_eq!(what(&None), "work queue");
        assert_eq!(what(&Some("antispam".into())), "the antispam stage of the work queue");
    }
}
