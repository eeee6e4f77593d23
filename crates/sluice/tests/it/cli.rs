//! The administrator's commands, run as an administrator types them against a running server: tables,
//! `--json`, actions by identity and by filter, `mailq`, and each failure as one line on standard error with
//! its exit code.

use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

/// Mail for remote.test goes to a smart host on `port` (nothing listens there: it stays queued).
fn config(port: u16) -> String {
    format!(
        "[transport]\nqueue_glitch_retry_interval = \"60s\"\ntransient_failure_retry_interval = \"60s\"\n\n\
         [[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"remote.test\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
    )
}

fn send(s: &Server, from: &str, subject: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let body = format!("Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nHello.\r\n");
    let r = c.mail(from, &["bob@remote.test"], &body);
    assert!(r.starts_with("250"), "{r}");
}

/// `sluice ARGS --api <the server>`, without the test's own SLUICE_* variables.
fn sluice(s: &Server, args: &[&str]) -> Output {
    sluice_env(s, args, &[])
}

fn sluice_env(s: &Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).arg("--api").arg(format!("http://127.0.0.1:{}", s.admin));
    c.env_remove("SLUICE_API").env_remove("SLUICE_TOKEN").env_remove("SLUICE_CONFIG").env("COLUMNS", "100");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Succeeded, and what it printed.
fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}{}", o.status.code(), stdout(&o), stderr(&o));
    stdout(&o)
}

/// Failed with `code` and one line on standard error.
fn fails(o: Output, code: i32) -> String {
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{}{err}", stdout(&o));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("sluice: "), "{err}");
    err
}

fn queued(s: &Server, n: usize) {
    let ok = wait_until(Duration::from_secs(15), || {
        // The queue exists once the first message is scanned and routed.
        let (status, body) = s.get("/api/v1/messages?queue=mx%5C16");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        status == 200 && v["items"].as_array().is_some_and(|i| i.len() == n)
    });
    assert!(ok, "{n} messages never queued in mx\\16");
}

#[test]
fn queues_and_messages_are_listed_shown_and_acted_on_from_the_command_line() {
    let s = Server::start(&config(free_port()));
    for (from, subject) in [("a@one.test", "first"), ("b@two.test", "second"), ("c@one.test", "third")] {
        send(&s, from, subject);
    }
    queued(&s, 3);

    // A table with a header, columns aligned: the header's columns start where the row's values do.
    let out = ok(sluice(&s, &["queue", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Identity") && lines[0].contains("MessageCount"), "{out}");
    let row = lines.iter().find(|l| l.starts_with("mx\\16 ")).unwrap_or_else(|| panic!("{out}"));
    // A smart host's queue is named by the smart host.
    let col = lines[0].find("NextHopDomain").unwrap();
    assert_eq!(&row[col..col + "127.0.0.1:".len()], "127.0.0.1:", "{out}");
    // --json is the API's answer, as it came.
    let v: serde_json::Value = serde_json::from_str(&ok(sluice(&s, &["queue", "list", "--json"]))).unwrap();
    assert!(v["items"].as_array().unwrap().iter().any(|q| q["identity"] == "mx\\16" && q["message_count"] == 3));
    assert!(
        ok(sluice(&s, &["queue", "show", "mx\\16"]))
            .lines()
            .any(|l| l.starts_with("message_count") && l.ends_with(" 3"))
    );

    // Messages by filter, sorted; one shown in full.
    let out =
        ok(sluice(&s, &["message", "list", "--filter", "FromAddress -like '*@one.test'", "--sort", "-FromAddress"]));
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].contains("c@one.test") && rows[1].contains("a@one.test"), "{out}");
    let identity = rows[1].split_whitespace().next().unwrap().to_owned();
    let shown = ok(sluice(&s, &["message", "show", &identity]));
    assert!(shown.contains("a@one.test") && shown.contains("bob@remote.test") && shown.contains("first"), "{shown}");

    // Suspend by filter: exactly the two, named.
    let out = ok(sluice(&s, &["message", "suspend", "--filter", "FromAddress -like '*@one.test'"]));
    assert!(out.starts_with("suspend: 2 matched, 2 changed"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(sluice(&s, &["message", "list", "--filter", "Status -eq Suspended", "--json"])))
            .unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    // A suspended copy can be exported.
    let file = s.dir.path().join("first.eml");
    ok(sluice(&s, &["message", "export", &identity, "-o", file.to_str().unwrap()]));
    assert!(std::fs::read_to_string(&file).unwrap().contains("Subject: first"));

    // Postfix-style mailq: the three messages, the suspended ones marked.
    let out = ok(sluice(&s, &["mailq"]));
    assert!(out.starts_with("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"), "{out}");
    assert!(out.trim_end().ends_with("in 3 Requests."), "{out}");
    assert_eq!(out.lines().filter(|l| l.trim() == "bob@remote.test").count(), 3, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains('!') && l.contains("@one.test")).count(), 2, "{out}");

    // Removal by filter is not done without a terminal to ask on, unless --yes.
    let err = fails(sluice(&s, &["message", "remove", "--filter", "Status -eq Suspended", "--no-ndr"]), 64);
    assert!(err.contains("--yes"), "{err}");
    queued(&s, 3);
    let out = ok(sluice(&s, &["message", "remove", "--filter", "Status -eq Suspended", "--no-ndr", "--yes"]));
    assert!(out.starts_with("remove: 2 matched, 2 changed"), "{out}");
    queued(&s, 1);

    // Queue actions; the digest.
    let out = ok(sluice(&s, &["queue", "suspend", "mx\\16"]));
    assert_eq!(out.trim(), "mx\\16: Suspended");
    ok(sluice(&s, &["queue", "resume", "--filter", "Status -eq Suspended"]));
    // Resuming a queue that is not suspended is refused.
    let err = fails(sluice(&s, &["queue", "resume", "mx\\16"]), 65);
    assert!(err.contains("HTTP 409"), "{err}");
    let out = ok(sluice(&s, &["queue", "digest", "--threshold", "1"]));
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("127.0.0.1:")), "{out}");
}

#[test]
fn failures_are_one_line_and_an_exit_code() {
    let s = Server::start("");
    // No such message, a filter that does not parse, a bad argument.
    let err = fails(sluice(&s, &["message", "show", "mx\\16\\999999"]), 66);
    assert!(err.contains("HTTP 404"), "{err}");
    let err = fails(sluice(&s, &["message", "list", "--filter", "Status -eq 'Bogus'"]), 64);
    assert!(err.contains("Bogus") && err.contains("11"), "the token and its position: {err}");
    fails(sluice(&s, &["message", "suspend"]), 64);
    // Nothing listening.
    let o = Command::new(BIN)
        .args(["status", "--api", &format!("http://127.0.0.1:{}", free_port())])
        .env_remove("SLUICE_API")
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    let err = fails(o, 69);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    // clap's own usage errors exit 2, as clap's do.
    assert_eq!(sluice(&s, &["queue", "frobnicate"]).status.code(), Some(2));
}

#[test]
fn with_a_token_the_commands_need_it_from_the_flag_the_environment_or_the_configuration() {
    let mut s = Server::start("");
    s.restart_with_token("s3cret");
    let err = fails(sluice(&s, &["status"]), 77);
    assert!(err.contains("HTTP 401"), "{err}");
    fails(sluice(&s, &["status", "--token", "wrong"]), 77);
    assert!(ok(sluice(&s, &["status", "--token", "s3cret"])).starts_with("Status as of:"));
    assert!(ok(sluice_env(&s, &["status"], &[("SLUICE_TOKEN", "s3cret")])).starts_with("Status as of:"));
    // Without --api: the address and the token come from the server's configuration file.
    let o = Command::new(BIN)
        .args(["queue", "list", "--config"])
        .arg(s.config_path())
        .env_remove("SLUICE_API")
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(ok(o).starts_with("Identity"));
}

#[test]
fn status_counters_alerts_reload_and_resubmit_requests() {
    let s = Server::start("");
    let out = ok(sluice(&s, &["status"]));
    assert!(out.starts_with("Status as of:"), "{out}");
    assert!(out.contains("\nSystem status:                 Online\n"), "{out}");
    assert!(out.contains("\n    Messages Received ") && out.contains("\n    Message ID (MID) "), "{out}");
    let detail = ok(sluice(&s, &["status", "--detail"]));
    assert!(detail.contains("Messages Quarantined") && detail.contains("Rates (Events Per Hour):"), "{detail}");
    let v: serde_json::Value = serde_json::from_str(&ok(sluice(&s, &["status", "--json"]))).unwrap();
    assert!(v["counters"]["messages_received"]["lifetime"].is_u64(), "{v}");
    assert_eq!(ok(sluice(&s, &["counters", "reset"])).trim(), "counters reset");
    assert!(ok(sluice(&s, &["alerts"])).starts_with("Time"));
    assert!(ok(sluice(&s, &["config", "reload"])).starts_with("configuration reloaded"));

    let out = ok(sluice(
        &s,
        &[
            "resubmit",
            "add",
            "--start",
            "2026-01-01T00:00:00Z",
            "--end",
            "2026-01-02T00:00:00Z",
            "--sender",
            "a@x.test",
        ],
    ));
    assert!(out.lines().nth(1).is_some_and(|l| l.contains("sender=a@x.test")), "{out}");
    let id = out.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(ok(sluice(&s, &["resubmit", "list"])).contains("sender=a@x.test"));
    ok(sluice(&s, &["resubmit", "remove", &id]));
    assert!(!ok(sluice(&s, &["resubmit", "list"])).contains("sender=a@x.test"));
    fails(sluice(&s, &["resubmit", "remove", &id]), 66);
    // The server's log went to a file: plain text, no colour codes.
    let log = s.log();
    assert!(log.contains("INFO") && !log.contains('\u{1b}'), "{log}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_same_definitions() {
    let o = Command::new(BIN).args(["completions", "bash"]).output().unwrap();
    let script = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success() && script.contains("mailq") && script.contains("--filter"), "{script}");
    let o = Command::new(BIN).arg("man").output().unwrap();
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success() && page.contains(".TH sluice"), "{page}");
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("77 no token"), "exit codes are documented");
}

#[test]
fn track_prints_a_messages_life_one_line_per_event() {
    let (ok_sink, refusing) = (Sink::start(), Sink::start());
    let s = Server::start(&format!(
        "[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"a.test\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n\n\
         [[send_connectors]]\nname = \"B\"\naddress_spaces = [\"b.test\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n\n\
         [[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"x\"]\n",
        ok_sink.port, refusing.port
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("x@localhost", &["ok@a.test"], "Subject: one\r\n\r\nbody\r\n").starts_with("250"));
    assert!(c.mail("y@localhost", &["reject@b.test"], "Subject: two\r\n\r\nbody\r\n").starts_with("250"));
    let events = |sender: &str| -> Vec<String> {
        let out = ok(sluice(&s, &["track", "--sender", sender]));
        out.lines().map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned()).collect()
    };
    assert!(wait_until(Duration::from_secs(20), || events("x@localhost").last().is_some_and(|e| e == "DELIVER")));
    assert_eq!(events("x@localhost"), ["RECEIVE", "SUBMIT", "SCAN", "ROUTE", "DELIVER"]);
    let out = ok(sluice(&s, &["track", "--sender", "x@localhost", "--event", "DELIVER"]));
    assert!(out.contains("x@localhost -> ok@a.test") && out.contains("reply=250"), "{out}");
    // A 5xx: FAIL, then the notice to the sender.
    assert!(wait_until(Duration::from_secs(20), || events("y@localhost").contains(&"DSN".to_owned())));
    let life = events("y@localhost");
    assert_eq!(life[..4], ["RECEIVE", "SUBMIT", "SCAN", "ROUTE"], "{life:?}");
    let (fail, dsn) = (life.iter().position(|e| e == "FAIL"), life.iter().position(|e| e == "DSN"));
    assert!(fail.is_some_and(|f| dsn.is_some_and(|d| f < d)), "{life:?}");
    let err = fails(sluice(&s, &["track", "--event", "BOGUS"]), 64);
    assert!(err.contains("BOGUS"), "{err}");
}

#[test]
fn sendmail_bp_lists_the_queue_as_mailq_does() {
    let s = Server::start(&config(free_port()));
    send(&s, "a@one.test", "listed");
    queued(&s, 1);
    let o = Command::new(BIN)
        .args(["sendmail", "-bp", "--config"])
        .arg(s.config_path())
        .env_remove("SLUICE_API")
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    let out = ok(o);
    assert!(out.starts_with("-Queue ID-") && out.contains("a@one.test") && out.contains("in 1 Request."), "{out}");
}
