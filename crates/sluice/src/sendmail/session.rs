//! `sluice sendmail -bs`: SMTP on standard input and output, for programs that submit mail by speaking SMTP
//! to a sendmail they start. Small and strict: EHLO, HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP and
//! QUIT; everything else is refused with a 5xx. Lines may end in CRLF or LF. Each message accepted is handed
//! to `submit`, which answers with what the client is told.

use std::io::{BufRead, Write};

use sluice_smtp::{Command, Reply, ReversePath, parse_command};

/// Longest command line taken, CRLF included (RFC 5321 4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;
/// Recipients per message (RFC 5321 4.5.3.1.8 asks for at least 100).
const MAX_RECIPIENTS: usize = 1000;

/// Stores one message: the envelope sender (empty for `<>`), the recipients, the message (lines ending in LF
/// or CRLF). `Ok` names what was stored; `Err` is the reply that refuses it.
pub type Submit<'a> = dyn FnMut(&str, &[String], Vec<u8>) -> Result<String, Reply> + 'a;

/// Runs one session until QUIT or the end of the input.
pub fn run(
    input: &mut impl BufRead,
    output: &mut impl Write,
    hostname: &str,
    max_message_size: Option<u64>,
    submit: &mut Submit<'_>,
) -> std::io::Result<()> {
    let mut greeted = false;
    let mut tx: Option<(String, Vec<String>)> = None;
    send(output, &Reply::new(220, "", format!("{hostname} ESMTP sluice sendmail")))?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.len() > MAX_COMMAND_LINE {
            send(output, &Reply::new(500, "5.5.6", "Line too long"))?;
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let reply = match parse_command(text, true) {
            Err(e) => e.reply(),
            Ok(Command::Ehlo(_)) => {
                greeted = true;
                tx = None;
                Reply::plain(250, format!("{hostname}\nPIPELINING\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES"))
            }
            Ok(Command::Helo(_)) => {
                greeted = true;
                tx = None;
                Reply::plain(250, hostname)
            }
            Ok(Command::Mail { .. }) if !greeted => Reply::new(503, "5.5.1", "EHLO or HELO first"),
            Ok(Command::Mail { .. }) if tx.is_some() => Reply::new(503, "5.5.1", "Nested MAIL command"),
            Ok(Command::Mail { from, .. }) => {
                let from = match from {
                    ReversePath::Null => String::new(),
                    ReversePath::Address(a) => a.to_string(),
                };
                tx = Some((from, Vec::new()));
                Reply::new(250, "2.1.0", "Ok")
            }
            Ok(Command::Rcpt { to, .. }) => match &mut tx {
                None => Reply::new(503, "5.5.1", "MAIL first"),
                Some((_, rcpts)) if rcpts.len() >= MAX_RECIPIENTS => Reply::new(452, "4.5.3", "Too many recipients"),
                Some((_, rcpts)) => {
                    let address =
                        if to.is_postmaster_only() { format!("postmaster@{hostname}") } else { to.to_string() };
                    if !rcpts.contains(&address) {
                        rcpts.push(address);
                    }
                    Reply::new(250, "2.1.5", "Ok")
                }
            },
            Ok(Command::Data) if tx.is_none() => Reply::new(503, "5.5.1", "MAIL first"),
            Ok(Command::Data) if tx.as_ref().is_some_and(|(_, rcpts)| rcpts.is_empty()) => {
                Reply::new(554, "5.5.1", "No valid recipients")
            }
            Ok(Command::Data) => {
                // The transaction ends with its data, whatever becomes of it.
                let (from, rcpts) = tx.take().unwrap_or_default();
                send(output, &Reply::plain(354, "End data with <CR><LF>.<CR><LF>"))?;
                let Some(message) = read_data(input, max_message_size)? else {
                    // The input ended inside the message: nothing is stored.
                    return Ok(());
                };
                match message {
                    Data::TooBig => Reply::new(552, "5.3.4", "Message size exceeds fixed limit"),
                    Data::Message(m) => match submit(&from, &rcpts, m) {
                        Ok(id) => Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
                        Err(reply) => reply,
                    },
                }
            }
            Ok(Command::Rset) => {
                tx = None;
                Reply::new(250, "2.0.0", "Ok")
            }
            Ok(Command::Noop) => Reply::new(250, "2.0.0", "Ok"),
            Ok(Command::Quit) => {
                send(output, &Reply::new(221, "2.0.0", "Bye"))?;
                return Ok(());
            }
            Ok(_) => Reply::new(502, "5.5.1", "Command not implemented"),
        };
        send(output, &reply)?;
    }
}

fn send(output: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    output.write_all(reply.render().as_bytes())?;
    output.flush()
}

/// What DATA read.
enum Data {
    Message(Vec<u8>),
    /// Read to its end and dropped: larger than the limit.
    TooBig,
}

/// Reads message data up to the line with a lone `.`, undoing dot-stuffing. `None` when the input ends
/// before that line.
fn read_data(input: &mut impl BufRead, max: Option<u64>) -> std::io::Result<Option<Data>> {
    let mut message = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(if too_big { Data::TooBig } else { Data::Message(message) }));
        }
        if too_big {
            continue;
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(unstuffed);
        if max.is_some_and(|max| message.len() as u64 > max) {
            too_big = true;
            message = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Stored = Vec<(String, Vec<String>, Vec<u8>)>;

    /// The replies to `input` and the messages submitted.
    fn session(input: &str, max: Option<u64>) -> (Vec<String>, Stored) {
        let mut stored = Vec::new();
        let mut out = Vec::new();
        let mut submit = |from: &str, rcpts: &[String], m: Vec<u8>| {
            if m.starts_with(b"Subject: refuse") {
                return Err(Reply::new(554, "5.6.0", "refused"));
            }
            stored.push((from.to_owned(), rcpts.to_vec(), m));
            Ok(format!("m{}", stored.len()))
        };
        run(&mut input.as_bytes(), &mut out, "mx.test", max, &mut submit).unwrap();
        let text = String::from_utf8(out).unwrap();
        let codes = text.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| l[..3].to_owned()).collect();
        (codes, stored)
    }

    #[test]
    fn a_session_stores_each_message_with_its_envelope() {
        let (codes, stored) = session(
            "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\nSubject: one\r\n\r\n..dot\r\n.\r\n\
             MAIL FROM:<>\nRCPT TO:<c@x.test>\nDATA\nSubject: two\n.\nQUIT\n",
            None,
        );
        assert_eq!(codes, ["220", "250", "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"]);
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].0, "a@x.test");
        assert_eq!(stored[0].1, ["b@x.test", "postmaster@mx.test"]);
        assert_eq!(stored[0].2, b"Subject: one\r\n\r\n.dot\r\n");
        assert_eq!((stored[1].0.as_str(), stored[1].2.as_slice()), ("", &b"Subject: two\n"[..]));
    }

    #[test]
    fn bad_commands_and_sequences_get_5xx() {
        let (codes, stored) = session(
            "MAIL FROM:<a@x.test>\r\nHELO c\r\nRCPT TO:<b@x.test>\r\nDATA\r\nMAIL FROM:<a b>\r\nMAIL FROM:<a@x.test>\r\n\
             MAIL FROM:<a@x.test>\r\nDATA\r\nRCPT TO:<b@x.test>\r\nRSET\r\nDATA\r\nSTARTTLS\r\nVRFY a\r\nBOGUS\r\nNOOP\r\n",
            None,
        );
        assert_eq!(
            codes,
            [
                "220", "503", "250", "503", "503", "553", "250", "503", "554", "250", "250", "503", "502", "502",
                "500", "250"
            ]
        );
        assert!(stored.is_empty());
    }

    #[test]
    fn oversized_refused_and_unfinished_messages_are_not_stored() {
        let big = format!(
            "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n{}\r\n.\r\nQUIT\r\n",
            "x".repeat(100)
        );
        let (codes, stored) = session(&big, Some(50));
        assert_eq!(codes, ["220", "250", "250", "250", "354", "552", "221"]);
        assert!(stored.is_empty());
        let refused = "HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: refuse\r\n.\r\n";
        assert_eq!(session(refused, None).0, ["220", "250", "250", "250", "354", "554"]);
        let cut = "HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: cut\r\n";
        let (codes, stored) = session(cut, None);
        assert_eq!(codes, ["220", "250", "250", "250", "354"]);
        assert!(stored.is_empty());
    }
}
