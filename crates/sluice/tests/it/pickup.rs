//! Local submission: `sluice sendmail` writing into the pickup directory, with the server running or not,
//! and files dropped into `<data_dir>/pickup` by hand.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Runs `sluice sendmail --config <the server's> args...` with `input` on standard input.
fn sendmail(s: &Server, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("sendmail")
        .arg("--config")
        .arg(s.config_path())
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A usage error exits before reading its input: a broken pipe then is expected.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// `sendmail` that must succeed.
fn sendmail_ok(s: &Server, args: &[&str], input: &[u8]) {
    let out = sendmail(s, args, input);
    assert!(out.status.success(), "sendmail {args:?}: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// The messages in `local@localhost`'s Maildir.
fn mailbox(s: &Server, local: &str) -> Vec<String> {
    maildir_new(&s.data(), "localhost", local).iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// Waits for `count` messages in `local@localhost`'s Maildir and returns them.
fn wait_for_mail(s: &Server, local: &str, count: usize) -> Vec<String> {
    let arrived = wait_until(Duration::from_secs(20), || mailbox(s, local).len() >= count);
    assert!(arrived, "{local} has {} messages, not {count}: {}", mailbox(s, local).len(), s.log());
    mailbox(s, local)
}

fn pickup_dir(s: &Server) -> PathBuf {
    s.data().join("pickup")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Drops `contents` into the pickup directory as `name`, the way a careful writer does (hidden, renamed).
fn drop_file(s: &Server, name: &str, contents: &[u8]) {
    let tmp = pickup_dir(s).join(format!(".{name}.part"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(tmp, pickup_dir(s).join(name)).unwrap();
}

#[test]
fn sendmail_t_is_delivered_to_the_local_maildir_while_the_server_runs() {
    let s = Server::start("");
    let dir = pickup_dir(&s);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o770, "created 0770");
    sendmail_ok(&s, &["-t"], b"To: user@localhost\nSubject: t\n\nhi\n");
    let mail = wait_for_mail(&s, "user", 1);
    let m = &mail[0];
    assert!(m.contains("\r\nSubject: t\r\n\r\nhi\r\n"), "stored with CRLF: {m:?}");
    assert!(m.contains("Received: by mx.test (sluice pickup); "), "{m}");
    assert!(m.contains("\r\nReceived: by mx.test (sluice sendmail, from userid "), "who ran sendmail: {m}");
    for added in ["\r\nFrom: ", "\r\nDate: ", "\r\nMessage-ID: <"] {
        assert!(m.contains(added), "{added:?} added: {m}");
    }
    assert!(m.contains("@mx.test\r\n"), "From: is the invoking user at the server's hostname: {m}");
    assert!(!m.contains("X-Sender") && !m.contains("X-Receiver"), "the envelope fields are removed: {m}");
    assert!(wait_until(Duration::from_secs(5), || names(&dir).is_empty()), "{:?}", names(&dir));
    let received = wait_until(Duration::from_secs(5), || {
        tracking_events(&s.data())
            .iter()
            .any(|e| e["event_id"] == "RECEIVE" && e["source"] == "Pickup" && e["recipients"][0] == "user@localhost")
    });
    assert!(received, "a RECEIVE event with source Pickup");
}

#[test]
fn sendmail_while_the_server_is_stopped_is_delivered_when_it_starts() {
    // A server that has never run: no data directory yet.
    let mut s = Server::unstarted("");
    assert!(!s.data().exists());
    sendmail_ok(&s, &["-t"], b"To: user@localhost\nSubject: early\n\nwritten before the server ran\n");
    assert_eq!(names(&pickup_dir(&s)).len(), 1, "one complete file waits, no temporary file is left");
    assert!(names(&pickup_dir(&s))[0].ends_with(".eml"));
    s.spawn();
    let mail = wait_for_mail(&s, "user", 1);
    assert!(mail[0].contains("\r\nSubject: early\r\n"), "{}", mail[0]);
    // And once more with a server that ran and stopped.
    assert!(s.signal_and_wait("TERM").success());
    sendmail_ok(&s, &["user@localhost"], b"Subject: while stopped\n\nx\n");
    s.spawn();
    let mail = wait_for_mail(&s, "user", 2);
    assert!(mail.iter().any(|m| m.contains("\r\nSubject: while stopped\r\n")));
}

#[test]
fn sendmail_refuses_bad_use_and_bad_input_with_sysexits_codes() {
    let s = Server::start("");
    let cases: &[(&[&str], &[u8], i32, &str)] = &[
        (&[], b"Subject: nobody\n\nx\n", 64, "no recipients"),
        (&["-t"], b"Subject: nobody\n\nx\n", 64, "no recipients"),
        (&["-Z", "user@localhost"], b"x\n", 64, "unknown or unsupported option -Z"),
        (&["-f"], b"x\n", 64, "needs a value"),
        (&["bad address@localhost"], b"x\n", 65, "bad address"),
        (&["-t"], b"To: a b@localhost\n\nx\n", 65, "To:"),
        (&["-f", "a b@x.test", "user@localhost"], b"x\n", 65, "-f"),
        (&["user@localhost"], b"Subject: cr\n\nbare\rCR\n", 65, "bare CR"),
    ];
    for (args, input, code, says) in cases {
        let out = sendmail(&s, args, input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.starts_with("sluice: sendmail: ") && stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    assert!(names(&pickup_dir(&s)).is_empty(), "nothing was written: {:?}", names(&pickup_dir(&s)));
    // A configuration that cannot be read is a temporary failure.
    let out = Command::new(BIN)
        .args(["sendmail", "--config", "/nonexistent/sluice.toml", "user@localhost"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
    let help = Command::new(BIN).args(["sendmail", "--help"]).output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("77 no permission"));
}

#[test]
fn sendmail_f_and_full_name_set_the_sender_and_the_generated_from() {
    let s = Server::start("");
    sendmail_ok(
        &s,
        &["-odi", "-oem", "-fsender@example.test", "-F", "Cron Daemon", "-v", "user@localhost"],
        b"Subject: cron\n\nout\n",
    );
    let mail = wait_for_mail(&s, "user", 1);
    assert!(mail[0].contains("\r\nFrom: \"Cron Daemon\" <sender@example.test>\r\n"), "{}", mail[0]);
    let sender = wait_until(Duration::from_secs(5), || {
        tracking_events(&s.data()).iter().any(|e| e["event_id"] == "RECEIVE" && e["sender"] == "sender@example.test")
    });
    assert!(sender, "the envelope sender is -f's");
    // A From: already there is kept as it is.
    sendmail_ok(
        &s,
        &["-f", "sender@example.test", "user@localhost"],
        b"From: Boss <boss@example.test>\nSubject: own\n\nx\n",
    );
    let mail = wait_for_mail(&s, "user", 2);
    let own = mail.iter().find(|m| m.contains("Subject: own")).unwrap();
    assert!(own.contains("\r\nFrom: Boss <boss@example.test>\r\n") && own.matches("\r\nFrom: ").count() == 1, "{own}");
}

#[test]
fn a_lone_dot_ends_the_message_unless_i_or_oi_is_given() {
    let s = Server::start("");
    let input = b"Subject: dots\n\nbefore\n..kept as is\n.\nafter\n";
    sendmail_ok(&s, &["user@localhost"], input);
    sendmail_ok(&s, &["-i", "dash-i@localhost"], input);
    sendmail_ok(&s, &["-oi", "dash-oi@localhost"], input);
    let plain = wait_for_mail(&s, "user", 1);
    assert!(plain[0].ends_with("\r\nbefore\r\n..kept as is\r\n"), "{:?}", plain[0]);
    for local in ["dash-i", "dash-oi"] {
        let m = wait_for_mail(&s, local, 1);
        assert!(m[0].ends_with("\r\nbefore\r\n..kept as is\r\n.\r\nafter\r\n"), "{local}: {:?}", m[0]);
    }
}

#[test]
fn bcc_recipients_get_the_message_without_the_bcc_field() {
    let s = Server::start("");
    sendmail_ok(
        &s,
        &["-t", "arg@localhost"],
        b"To: \"User, The\" <user@localhost>\nCc: team: cc@localhost;\nBcc: hidden@localhost,\n  (second) other@localhost\nSubject: blind\n\nx\n",
    );
    for local in ["arg", "user", "cc", "hidden", "other"] {
        let m = wait_for_mail(&s, local, 1);
        // What sluice stored starts at its Received: field (the Maildir store adds two fields above it).
        let stored = &m[0][m[0].find("Received: ").unwrap()..];
        assert!(!stored.contains("Bcc") && !stored.contains("hidden@"), "{local}: {stored}");
        assert!(m[0].contains("\r\nTo: \"User, The\" <user@localhost>\r\n"), "{local}: {}", m[0]);
    }
}

#[test]
fn sendmail_bs_speaks_smtp_and_delivers_each_message() {
    let s = Server::start("");
    let mut child = Command::new(BIN)
        .args(["sendmail", "-bs", "--config"])
        .arg(s.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(output.read_line(&mut line).unwrap() > 0, "sendmail -bs ended early after {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    };
    let mut cmd = |line: &str, expect: &str| {
        input.write_all(line.as_bytes()).unwrap();
        let r = reply();
        assert!(r.starts_with(expect), "{line:?} -> {r:?}");
    };
    cmd("", "220 mx.test");
    cmd("MAIL FROM:<a@example.test>\r\n", "503");
    cmd("EHLO client.test\r\n", "250");
    cmd("BOGUS\r\n", "500");
    cmd("MAIL FROM:<a@example.test>\r\n", "250");
    cmd("RCPT TO:<user@localhost>\r\n", "250");
    cmd("DATA\r\n", "354");
    cmd("Subject: bs one\r\n\r\n..stuffed\r\n.\r\n", "250 2.0.0 Ok: queued as ");
    cmd("MAIL FROM:<>\r\n", "250");
    cmd("RCPT TO:<user@localhost>\r\n", "250");
    cmd("RSET\r\n", "250");
    cmd("DATA\r\n", "503");
    cmd("MAIL FROM:<b@example.test>\n", "250");
    cmd("RCPT TO:<user@localhost>\n", "250");
    cmd("DATA\n", "354");
    cmd("Subject: bs two\n\nlf lines\n.\n", "250");
    cmd("QUIT\r\n", "221");
    assert!(child.wait().unwrap().success());
    let mail = wait_for_mail(&s, "user", 2);
    let one = mail.iter().find(|m| m.contains("Subject: bs one")).unwrap();
    assert!(one.ends_with("\r\n\r\n.stuffed\r\n"), "dot-unstuffed: {one:?}");
    let two = mail.iter().find(|m| m.contains("Subject: bs two")).unwrap();
    assert!(two.ends_with("\r\n\r\nlf lines\r\n"), "{two:?}");
    let senders = wait_until(Duration::from_secs(5), || {
        let events = tracking_events(&s.data());
        let sent = |who: &str| events.iter().any(|e| e["event_id"] == "RECEIVE" && e["sender"] == who);
        sent("a@example.test") && sent("b@example.test")
    });
    assert!(senders, "each message has its MAIL FROM as envelope sender");
}

#[test]
fn a_malformed_file_is_set_aside_with_its_reason_and_the_server_keeps_going() {
    let s = Server::start("");
    let dir = pickup_dir(&s);
    std::fs::write(dir.join(".hidden.eml"), b"From: a@example.test\nTo: user@localhost\n\nx\n").unwrap();
    std::fs::write(dir.join("writing.tmp"), b"From: a@example.test\nTo: user@localhost\n\nx\n").unwrap();
    drop_file(&s, "norcpt.eml", b"From: a@example.test\nSubject: nobody\n\nx\n");
    drop_file(&s, "garbage.eml", b"this is not a header\n\nx\n");
    let bad = wait_until(Duration::from_secs(10), || {
        ["norcpt", "garbage"].iter().all(|n| dir.join(format!("{n}.eml.bad.txt")).exists())
    });
    assert!(bad, "{:?}", names(&dir));
    assert!(dir.join("norcpt.eml.bad").exists() && !dir.join("norcpt.eml").exists());
    assert!(std::fs::read_to_string(dir.join("norcpt.eml.bad.txt")).unwrap().contains("no recipients"));
    assert!(std::fs::read_to_string(dir.join("garbage.eml.bad.txt")).unwrap().contains("unparsable header"));
    // A message a user wrote by hand (CRLF, no envelope fields) is taken from its header; the server goes on.
    drop_file(
        &s,
        "by-hand.eml",
        b"From: Alice <alice@example.test>\r\nTo: user@localhost\r\nSubject: by hand\r\n\r\nhello\r\n",
    );
    let mail = wait_for_mail(&s, "user", 1);
    assert!(mail[0].contains("\r\nSubject: by hand\r\n"));
    let sender = wait_until(Duration::from_secs(5), || {
        tracking_events(&s.data()).iter().any(|e| e["event_id"] == "RECEIVE" && e["sender"] == "alice@example.test")
    });
    assert!(sender, "the sender comes from From:");
    assert!(wait_until(Duration::from_secs(5), || !dir.join("by-hand.eml").exists()));
    // Hidden and temporary files are never taken.
    assert!(dir.join(".hidden.eml").exists() && dir.join("writing.tmp").exists(), "{:?}", names(&dir));
    assert_eq!(mailbox(&s, "user").len(), 1);
}

#[test]
fn a_pickup_file_is_removed_only_once_its_message_is_queued() {
    // The next hop is down: what was taken stays queued, so the queue counts what pickup committed.
    let relay = crate::relay::relay_config(free_port());
    let high = "[back_pressure]\ncheck_interval = \"100ms\"\ndisk_free_normal = \"1000TB\"\ndisk_free_medium = \"1000TB\"\ndisk_free_high = \"1000TB\"\n";
    let mut s = Server::start(&format!("{relay}\n{high}"));
    let dir = pickup_dir(&s);
    // Under back pressure pickup waits: the file stays and nothing is queued.
    let refused = wait_until(Duration::from_secs(10), || {
        let mut c = s.smtp();
        c.cmd("EHLO client.test");
        c.cmd("MAIL FROM:<a@example.test>").starts_with("452")
    });
    assert!(refused, "back pressure is High");
    sendmail_ok(&s, &["b@remote.test"], b"Subject: waits\n\nx\n");
    assert!(holds_for(Duration::from_secs(3), || names(&dir).len() == 1 && s.queued() == 0), "{:?}", names(&dir));
    // Pressure gone; more files come. Whenever a file is gone, its message is in the queue.
    for i in 0..20 {
        sendmail_ok(&s, &["b@remote.test"], format!("Subject: m{i}\n\nx\n").as_bytes());
    }
    s.extra = format!("{relay}\n[back_pressure]\ncheck_interval = \"100ms\"\n");
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    let all_taken = wait_until(Duration::from_secs(20), || {
        let left = names(&dir).len() as u64;
        let queued = s.queued();
        assert!(queued >= 21 - left, "{left} files left but only {queued} messages queued");
        left == 0
    });
    assert!(all_taken, "{:?}", names(&dir));
    assert_eq!(s.queued(), 21);
}
