//! Quarantined messages from the command line: list them, release them to delivery, delete them.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_api_types as api;

use super::table::Table;
use super::{Output, query, say};

#[derive(Subcommand, Debug)]
pub enum QuarantineVerb {
    /// The quarantined messages, as a table (MID, Quarantined, Stage, Verdict, From, Subject).
    List {
        /// At most this many (default 1000).
        #[arg(long)]
        result_size: Option<u32>,
        /// Where the previous page ended (its `next`).
        #[arg(long)]
        bookmark: Option<String>,
    },
    /// Sends messages on to delivery, unscanned by the stage that held them.
    Release {
        #[arg(required = true, value_name = "MID")]
        mids: Vec<u64>,
    },
    /// Deletes messages from the quarantine.
    Delete {
        #[arg(required = true, value_name = "MID")]
        mids: Vec<u64>,
    },
}

pub(super) fn quarantine(out: &Output<'_>, verb: QuarantineVerb) -> anyhow::Result<ExitCode> {
    match verb {
        QuarantineVerb::List { result_size, bookmark } => {
            let q = query(&[("result_size", result_size.map(|n| n.to_string())), ("bookmark", bookmark)]);
            let r = out.call("GET", &format!("/api/v1/quarantine{q}"), None)?;
            out.print(&r, |v| {
                let list: api::List<api::Quarantined> = serde_json::from_value(v)?;
                list_table(&list.items).print();
                super::show::more(&list.next);
                Ok(())
            })
        }
        QuarantineVerb::Release { mids } => each(out, &mids, "POST", "/release", "released"),
        QuarantineVerb::Delete { mids } => each(out, &mids, "DELETE", "", "deleted"),
    }
}

fn list_table(items: &[api::Quarantined]) -> Table {
    let mut t =
        Table::new(&["MID", "Quarantined", "Stage", "Verdict", "From", "Subject"]).right(&["MID"]).keep(&["MID"]);
    for q in items {
        let from = if q.from_address.is_empty() { "<>".to_owned() } else { q.from_address.clone() };
        t.row(vec![
            q.mid.to_string(),
            q.quarantined_at.clone(),
            q.stage.clone(),
            q.verdict.clone(),
            from,
            q.subject.clone(),
        ]);
    }
    t
}

/// One request per message, every one tried: a line for each done (`released 12`, or its JSON), the
/// failures on standard error, and the exit code of the first failure when any failed.
fn each(out: &Output<'_>, mids: &[u64], method: &str, suffix: &str, done: &str) -> anyhow::Result<ExitCode> {
    let mut first_failure = None;
    for mid in mids {
        match out.call(method, &format!("/api/v1/quarantine/{mid}{suffix}"), None) {
            Ok(r) if out.json => say!("{}", String::from_utf8_lossy(&r.body).trim_end()),
            Ok(_) => say!("{done} {mid}"),
            Err(e) => {
                eprintln!("sluice: MID {mid}: {e:#}");
                let code = e.downcast_ref::<crate::Failure>().map_or(1, |f| f.code);
                first_failure.get_or_insert(code);
            }
        }
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_who_sent_what_and_why_it_is_held() {
        let q = api::Quarantined {
            mid: 12,
            quarantined_at: "2026-12-03T10:15:42Z".into(),
            expires_at: "2027-01-02T10:15:42Z".into(),
            stage: "antivirus".into(),
            verdict: "virus Eicar-Test-Signature".into(),
            scl: -1,
            from_address: String::new(),
            recipients: vec!["bob@example.com".into()],
            subject: "test".into(),
            internet_message_id: "<x@y>".into(),
            size: 68,
        };
        let out = list_table(&[q]).render(None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "MID  Quarantined           Stage      Verdict                     From  Subject");
        assert_eq!(lines[1], " 12  2026-12-03T10:15:42Z  antivirus  virus Eicar-Test-Signature  <>    test");
    }
}
