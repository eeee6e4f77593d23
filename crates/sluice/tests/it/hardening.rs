//! SMTP receive against a hostile client: what public security suites and a mutation fuzzer found, each
//! driven over a raw socket against the binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;
use crate::tls::{b64, hash};

/// A raw connection past its greeting.
fn raw(s: &Server) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 512];
    let n = c.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"220"));
    c
}

/// Everything the server sends until it closes the connection (or 10 s pass).
fn rest(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_user_name_cannot_forge_a_log_line_or_colour_the_terminal() {
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\n\
         auth = \"optional\"\n\
         users = [{{ name = \"alice\", password_hash = \"{}\" }}]\n",
        hash("correct horse")
    ));
    let mut c = s.smtp();
    assert!(c.cmd("EHLO client.test").contains("AUTH PLAIN"));
    let forged = b"\0evil\r\n2026-12-02T00:00:00Z  INFO sluice::serve: FAKE-LOG-LINE\x1b[31mRED\0pw";
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(forged))).starts_with("535"));
    assert!(wait_until(Duration::from_secs(10), || s.log().contains("authentication failed")));
    let log = s.log();
    assert!(!log.lines().any(|l| l.starts_with("2026-12-02T00:00:00Z")), "a forged line:\n{log}");
    let failed = log.lines().find(|l| l.contains("authentication failed")).unwrap();
    assert!(failed.contains("evil\\x0d\\x0a2026-12-02T00:00:00Z"), "{failed}");
    assert!(failed.contains("FAKE-LOG-LINE\\x1b[31mRED"), "{failed}");
    assert!(!log.contains("\x1b[31mRED"), "a terminal escape reached the log");
}

#[test]
fn a_bare_lf_ends_no_command_and_the_whole_line_is_refused() {
    let s = Server::start("");
    let mut c = raw(&s);
    c.write_all(b"NOOP\nMAIL FROM:<x@t.test>\r\nQUIT\r\n").unwrap();
    let said = rest(&mut c);
    assert!(said.starts_with("500 5.5.2"), "{said}");
    assert!(!said.contains("Sender ok") && !said.contains("250 2.1.0"), "a command ran after a bare LF: {said}");
    assert!(said.contains("221"), "the next line is a command again: {said}");
    // The same inside an over-long line, and a bare CR, which was already refused whole.
    let mut c = raw(&s);
    let long = "X".repeat(2000);
    c.write_all(format!("{long}\nMAIL FROM:<x@t.test>\r\nNOOP\rMAIL FROM:<y@t.test>\r\nQUIT\r\n").as_bytes()).unwrap();
    let said = rest(&mut c);
    assert!(!said.contains("250 2.1.0"), "{said}");
    assert_eq!(said.matches("500 5.5.2").count(), 2, "{said}");
}

#[test]
fn after_421_the_connection_is_closed_wherever_the_session_was_waiting() {
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\n\
         connection_inactivity_timeout = \"1s\"\nmax_errors = 1000000\n\
         auth = \"optional\"\n\
         users = [{{ name = \"alice\", password_hash = \"{}\" }}]\n",
        hash("correct horse")
    ));
    // Waiting for an AUTH answer.
    let mut c = raw(&s);
    c.write_all(b"EHLO client.test\r\nAUTH LOGIN\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = c.write_all(b"NOOP\r\n");
    let said = rest(&mut c);
    assert!(said.contains("421 4.4.2"), "{said}");
    assert!(!said.contains("250 2.0.0") && said.matches("421").count() == 1, "answered after 421: {said}");
    // Skipping an over-long line.
    let mut c = raw(&s);
    c.write_all("Y".repeat(3000).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = c.write_all(b"\r\nNOOP\r\n");
    let said = rest(&mut c);
    assert!(said.contains("421 4.4.2"), "{said}");
    assert!(said.matches("421").count() == 1 && !said.contains("250"), "answered after 421: {said}");
}
