//! `sluice status` and `sluice workqueue status` in the appliance's layout: `Label:` padded to a fixed
//! column and the value after it, then sections (`Counters:`, `Gauges:`, ...) whose rows are grouped under
//! indented headings and whose numbers line up under their column's heading.

use sluice_api_types as api;

use super::ctime::{count, ctime, ctime_of, span};
use super::table::Table;

/// Where the values of the `Label:` lines, and the first column of a section, start (as the appliance's).
const LABEL_WIDTH: usize = 31;
/// Spaces between the columns of a section.
const GAP: usize = 8;

/// `Label:` and its value, the value at [`LABEL_WIDTH`].
fn field(out: &mut String, label: &str, value: &str) {
    let label = format!("{label}:");
    out.push_str(&format!("{label:<LABEL_WIDTH$}{value}").replace(|c: char| c.is_control(), " "));
    out.push('\n');
}

/// A line of a section: a heading that groups the rows after it, or a row of numbers (`None` leaves a
/// column empty, as the current ids have only a lifetime).
enum Line {
    Group(&'static str),
    Row { indent: usize, label: &'static str, values: Vec<Option<u64>> },
}

fn row(label: &'static str, values: &[u64]) -> Line {
    Line::Row { indent: 4, label, values: values.iter().copied().map(Some).collect() }
}

fn counter(label: &'static str, c: &api::CounterColumns) -> Line {
    row(label, &[c.reset, c.uptime, c.lifetime])
}

/// A section: its title, the headings of its number columns, and its lines.
struct Section {
    title: &'static str,
    columns: Vec<&'static str>,
    lines: Vec<Line>,
}

impl Section {
    /// The section; every column is right-aligned, its heading included, and as wide as its widest value.
    fn render(&self, out: &mut String) {
        let label_width = self
            .lines
            .iter()
            .map(|l| match l {
                Line::Row { indent, label, .. } => indent + label.len() + 2,
                Line::Group(_) => 0,
            })
            .max()
            .unwrap_or(0)
            .max(LABEL_WIDTH);
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
        for line in &self.lines {
            if let Line::Row { values, .. } = line {
                for (w, v) in widths.iter_mut().zip(values) {
                    *w = (*w).max(v.map_or(0, |v| count(v).len()));
                }
            }
        }
        let cells = |values: Vec<String>| -> String {
            let mut text = String::new();
            for (i, (value, w)) in values.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str(&" ".repeat(GAP));
                }
                text.push_str(&format!("{value:>w$}"));
            }
            text
        };
        let title = format!("{}:", self.title);
        let header = cells(self.columns.iter().map(|c| c.to_string()).collect());
        out.push_str(format!("{title:<label_width$}{header}").trim_end());
        out.push('\n');
        for line in &self.lines {
            match line {
                Line::Group(name) => out.push_str(&format!("  {name}\n")),
                Line::Row { indent, label, values } => {
                    let label = format!("{:indent$}{label}", "");
                    let values = cells(values.iter().map(|v| v.map(count).unwrap_or_default()).collect());
                    out.push_str(format!("{label:<label_width$}{values}").trim_end());
                    out.push('\n');
                }
            }
        }
    }
}

/// The appliance's `status` (`detail`: `status detail`), as of `now_ms` (the server's answer carries no time
/// of its own: this is the moment it was asked).
pub fn render_status(s: &api::Status, detail: bool, now_ms: i64) -> String {
    let mut out = String::new();
    field(&mut out, "Status as of", &ctime(now_ms));
    let up = match sluice_queue_db::time::parse_rfc3339(&s.up_since) {
        Some(ms) => format!("{} ({})", ctime(ms), span(now_ms.saturating_sub(ms).max(0) as u64 / 1000)),
        None => s.up_since.clone(),
    };
    field(&mut out, "Up since", &up);
    field(&mut out, "Last counter reset", &ctime_of(&s.last_counter_reset));
    field(&mut out, "System status", &s.system_status);
    let oldest = match &s.oldest_message {
        Some(o) => format!("{} (MID {})", span(o.age_seconds), o.mid),
        None => "No Messages".to_owned(),
    };
    field(&mut out, "Oldest Message", &oldest);
    field(&mut out, "Back Pressure", &s.back_pressure.level);
    if let Some(c) = &s.cluster {
        let shadows = if c.postgres.is_some() { "shadow copies on" } else { "no shadow copies" };
        let node = format!("{} ({}; limits {}, {} live nodes, {shadows})", c.node, c.state, c.limits, c.live_nodes);
        field(&mut out, "Cluster Node", &node);
    }

    let c = &s.counters;
    let mut lines = vec![
        Line::Group("Receiving"),
        counter("Messages Received", &c.messages_received),
        counter("Recipients Received", &c.recipients_received),
    ];
    if detail {
        lines.push(counter("Gen. Bounce Recipients", &c.generated_bounce_recipients));
    }
    lines.extend([
        Line::Group("Rejection"),
        counter("Rejected Recipients", &c.rejected_recipients),
        counter("Dropped Messages", &c.dropped_messages),
        Line::Group("Queue"),
        counter("Soft Bounced Events", &c.soft_bounced_events),
        Line::Group("Completion"),
        counter("Completed Recipients", &c.completed_recipients),
    ]);
    if detail {
        let sub = |label, c: &api::CounterColumns| Line::Row {
            indent: 6,
            label,
            values: vec![Some(c.reset), Some(c.uptime), Some(c.lifetime)],
        };
        lines.extend([
            sub("Hard Bounced Recipients", &c.hard_bounced_recipients),
            sub("Delivered Recipients", &c.delivered_recipients),
            sub("Deleted Recipients", &c.deleted_recipients),
            Line::Group("Quarantine"),
            counter("Messages Quarantined", &c.quarantined_messages),
        ]);
    }
    let id = |label, id: u64| Line::Row { indent: 4, label, values: vec![None, None, Some(id)] };
    let ids = &s.current_ids;
    lines.extend([
        Line::Group("Current IDs"),
        id("Message ID (MID)", ids.mid),
        id("Injection Conn. ID (ICID)", ids.icid),
        id("Delivery Conn. ID (DCID)", ids.dcid),
    ]);
    out.push('\n');
    Section { title: "Counters", columns: vec!["Reset", "Uptime", "Lifetime"], lines }.render(&mut out);

    if detail {
        let r = &s.rates;
        let rate = |label, r: &api::Rate| row(label, &[r.one_minute, r.five_minutes, r.fifteen_minutes]);
        let lines = vec![
            Line::Group("Receiving"),
            rate("Messages Received", &r.received),
            Line::Group("Delivery"),
            rate("Recipients Delivered", &r.delivered),
            Line::Group("Completion"),
            rate("Hard Bounced Recipients", &r.bounced),
        ];
        out.push('\n');
        Section { title: "Rates (Events Per Hour)", columns: vec!["1-Minute", "5-Minutes", "15-Minutes"], lines }
            .render(&mut out);
    }

    let g = &s.gauges;
    let lines = vec![
        Line::Group("Connections"),
        row("Current Inbound Conn.", &[g.current_inbound_connections]),
        row("Current Outbound Conn.", &[g.current_outbound_connections]),
        Line::Group("Queue"),
        row("Active Recipients", &[g.active_recipients]),
        row("Messages In Work Queue", &[g.messages_in_work_queue]),
        row("Kilobytes Used", &[g.kilobytes_used]),
        row("Kilobytes Free", &[g.kilobytes_free]),
        Line::Group("Quarantine"),
        row("Messages In Quarantine", &[g.messages_in_quarantine]),
        row("Kilobytes In Quarantine", &[g.kilobytes_in_quarantine]),
    ];
    out.push('\n');
    Section { title: "Gauges", columns: vec!["Current"], lines }.render(&mut out);

    if detail {
        out.push('\n');
        field(&mut out, "Back Pressure", &s.back_pressure.level);
        let mut t = Table::new(&["Resource", "Level", "Value", "Unit", "Medium", "High", "Normal"])
            .right(&["Value", "Medium", "High", "Normal"]);
        for r in &s.back_pressure.resources {
            t.row(vec![
                r.resource.clone(),
                r.level.clone(),
                r.value.map(count).unwrap_or_else(|| "-".into()),
                r.unit.clone(),
                count(r.medium),
                count(r.high),
                count(r.normal),
            ]);
        }
        for line in t.render(None).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The work queue's state in one phrase: `Operational`, or `Paused (antispam: updating rules; antivirus:
/// paused by administrator)`, naming each stage that is paused or offline and why.
pub fn work_queue_state(w: &api::WorkQueue) -> String {
    if w.paused_stages.is_empty() {
        return w.status.clone();
    }
    let why: Vec<String> = w.paused_stages.iter().map(|p| format!("{}: {}", p.stage, p.reason)).collect();
    format!("{} ({})", w.status, why.join("; "))
}

/// The appliance's `workqueue status`.
pub fn render_work_queue(w: &api::WorkQueue) -> String {
    let mut out = String::new();
    field(&mut out, "Status as of", &ctime_of(&w.time));
    field(&mut out, "Status", &work_queue_state(w));
    field(&mut out, "Messages", &count(w.messages));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_queue(status: &str, paused: &[(&str, &str)]) -> api::WorkQueue {
        api::WorkQueue {
            time: "2026-12-03T10:15:42.120Z".into(),
            status: status.into(),
            paused_stages: paused
                .iter()
                .map(|(stage, reason)| api::PausedStage {
                    stage: (*stage).into(),
                    reason: (*reason).into(),
                    since: "2026-12-03T10:00:00Z".into(),
                })
                .collect(),
            messages: 0,
            stages: Vec::new(),
        }
    }

    #[test]
    fn work_queue_status_is_the_appliances_three_lines() {
        assert_eq!(
            render_work_queue(&work_queue("Operational", &[])),
            "Status as of:                  Thu Dec 03 10:15:42 2026 UTC\n\
             Status:                        Operational\n\
             Messages:                      0\n"
        );
        let mut w = work_queue("Paused", &[("antispam", "updating rules")]);
        w.messages = 1234;
        let out = render_work_queue(&w);
        assert!(out.contains("\nStatus:                        Paused (antispam: updating rules)\n"), "{out}");
        assert!(out.ends_with("Messages:                      1,234\n"), "{out}");
    }

    #[test]
    fn the_state_names_every_paused_or_offline_stage_and_why() {
        assert_eq!(work_queue_state(&work_queue("Operational", &[])), "Operational");
        assert_eq!(
            work_queue_state(&work_queue(
                "Paused",
                &[("antispam", "updating rules"), ("antivirus", "paused by administrator")]
            )),
            "Paused (antispam: updating rules; antivirus: paused by administrator)"
        );
        assert_eq!(
            work_queue_state(&work_queue("Offline", &[("antivirus", "clamd: connection refused")])),
            "Offline (antivirus: clamd: connection refused)"
        );
    }

    fn columns(reset: u64) -> api::CounterColumns {
        api::CounterColumns { reset, uptime: reset * 10, lifetime: reset * 1000 }
    }

    fn status() -> api::Status {
        api::Status {
            system_status: "Online".into(),
            up_since: "2014-08-11T09:00:00Z".into(),
            last_counter_reset: "2014-08-11T09:00:00Z".into(),
            oldest_message: None,
            counters: api::StatusCounters {
                messages_received: columns(12),
                recipients_received: columns(15),
                delivered_recipients: columns(7),
                hard_bounced_recipients: columns(1),
                quarantined_messages: columns(2),
                ..Default::default()
            },
            current_ids: api::CurrentIds { mid: 1234, icid: 56, dcid: 7 },
            gauges: api::Gauges { kilobytes_free: 8_388_608, messages_in_work_queue: 3, ..Default::default() },
            rates: api::Rates {
                received: api::Rate { one_minute: 60, five_minutes: 12, fifteen_minutes: 4 },
                ..Default::default()
            },
            back_pressure: api::BackPressureStatus {
                level: "Normal".into(),
                resources: vec![api::BackPressureResource {
                    resource: "queue_database_disk".into(),
                    level: "Normal".into(),
                    value: Some(8_589_934_592),
                    unit: "bytes_free".into(),
                    medium: 2_000_000_000,
                    high: 1_000_000_000,
                    normal: 3_000_000_000,
                }],
            },
            cluster: None,
        }
    }

    /// Mon Aug 18 11:40:01 2014 UTC.
    const NOW: i64 = 1_408_362_001_000;

    #[test]
    fn status_has_the_appliances_sections_and_columns() {
        let out = render_status(&status(), false, NOW);
        let expected = "\
Status as of:                  Mon Aug 18 11:40:01 2014 UTC
Up since:                      Mon Aug 11 09:00:00 2014 UTC (7d 2h 40m 1s)
Last counter reset:            Mon Aug 11 09:00:00 2014 UTC
System status:                 Online
Oldest Message:                No Messages
Back Pressure:                 Normal

Counters:                      Reset        Uptime        Lifetime
  Receiving
    Messages Received             12           120          12,000
    Recipients Received           15           150          15,000
  Rejection
    Rejected Recipients            0             0               0
    Dropped Messages               0             0               0
  Queue
    Soft Bounced Events            0             0               0
  Completion
    Completed Recipients           0             0               0
  Current IDs
    Message ID (MID)                                         1,234
    Injection Conn. ID (ICID)                                   56
    Delivery Conn. ID (DCID)                                     7

Gauges:                          Current
  Connections
    Current Inbound Conn.              0
    Current Outbound Conn.             0
  Queue
    Active Recipients                  0
    Messages In Work Queue             3
    Kilobytes Used                     0
    Kilobytes Free             8,388,608
  Quarantine
    Messages In Quarantine             0
    Kilobytes In Quarantine            0
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn status_detail_adds_the_other_counters_rates_and_back_pressure() {
        let mut s = status();
        s.oldest_message = Some(api::OldestMessage { mid: 42, date_received: "x".into(), age_seconds: 3723 });
        s.system_status = "Work Queue Paused".into();
        let out = render_status(&s, true, NOW);
        for line in [
            "System status:                 Work Queue Paused\n",
            "Oldest Message:                1h 2m 3s (MID 42)\n",
            "    Gen. Bounce Recipients         0             0               0\n",
            "      Hard Bounced Recipients      1            10           1,000\n",
            "      Delivered Recipients         7            70           7,000\n",
            "      Deleted Recipients           0             0               0\n",
            "  Quarantine\n    Messages Quarantined           2            20           2,000\n",
            "Rates (Events Per Hour):       1-Minute        5-Minutes        15-Minutes\n",
            "    Messages Received                60               12                 4\n",
            "  queue_database_disk  Normal  8,589,934,592  bytes_free  2,000,000,000",
        ] {
            assert!(out.contains(line), "{line:?} in\n{out}");
        }
        // Without --detail none of these.
        let brief = render_status(&s, false, NOW);
        for absent in ["Hard Bounced", "Rates", "Messages Quarantined", "queue_database_disk"] {
            assert!(!brief.contains(absent), "{absent} in\n{brief}");
        }
    }
}
