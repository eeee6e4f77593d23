//! `sluice sendmail`: the sendmail command of cron, scripts and web applications. It reads a message (or an
//! SMTP session with `-bs`), settles its envelope, completes its header as sendmail does (`From:`, `Date:`,
//! `Message-ID:` when missing) and writes it into the pickup directory atomically, with the envelope in
//! `X-Sender:`/`X-Receiver:` fields at the top, which the server honours and removes. It does not talk to
//! the server: mail given while the server is stopped is taken when it starts.

mod args;
mod session;

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use args::{Mode, Options};
use sluice_config::Config;
use sluice_queue_db::now_ms;
use sluice_queue_db::time::rfc5322;
use sluice_smtp::Reply;

use crate::fail;
use crate::pickup::header::{self, Section, parse_address_list};
use crate::pickup::{self, Pickup, WriteError, add_unique};

/// Exit codes of sysexits.h.
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_CANTCREAT: u8 = 73;
const EX_TEMPFAIL: u8 = 75;
const EX_NOPERM: u8 = 77;

const HELP: &str = "\
Usage: sluice sendmail [options] [recipient ...]

Submits a message read on standard input through the pickup directory of the sluice server whose
configuration is found as `sluice serve` finds it (--config or -C FILE, $SLUICE_CONFIG,
/etc/sluice/sluice.toml, else the built-in defaults). The message is stored in <data_dir>/pickup
even while the server is stopped; the server takes it when it runs.

Options:
  -t             also send to the addresses of the To:, Cc: and Bcc: fields (Bcc: is removed)
  -f ADDR, -r ADDR
                 the envelope sender (default: the invoking user at the server's hostname); -f '<>'
                 is the null sender
  -F NAME        the full name of the From: field written when the message has none
  -i, -oi        a line with a lone '.' does not end the message (without them it does)
  -bm            read a message and submit it (the default)
  -bs            speak SMTP on standard input and output; each accepted message is submitted
  -bp            list the queue (runs `sluice mailq`)
  -C FILE, --config FILE
                 the configuration file
  Accepted and ignored, as in Postfix: -oX (other sendmail options, e.g. -odi -oem -om), -v,
  -B TYPE, -h N, -L LABEL, -N DSN, -O OPTION, -R RETURN, -V ENVID, -X FILE, -A X, -p PROTOCOL,
  -G, -U, -m, -n, -x.

Addresses without a domain are qualified with the server's hostname. Missing From:, Date: and
Message-ID: fields are added.

Exit status (sysexits.h): 0 submitted; 64 usage (bad option, no recipient); 65 bad input (an
invalid address, a bare CR or NUL, a message over the size limit); 73 the file cannot be created;
75 temporary failure (configuration unreadable, input or disk error: try again); 77 no permission
to write into the pickup directory.
";

/// Runs `sluice sendmail` with the arguments after `sendmail`.
pub fn run(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let options = args::parse(arguments).map_err(|e| fail(EX_USAGE, format!("sendmail: {e} (see --help)")))?;
    match options.mode {
        Mode::Help => {
            print!("{HELP}");
            return Ok(ExitCode::SUCCESS);
        }
        Mode::ListQueue => return list_queue(&options),
        Mode::Submit | Mode::Smtp => {}
    }
    let loaded = Config::discover(options.config.as_deref())
        .map_err(|e| fail(EX_TEMPFAIL, format!("sendmail: the configuration cannot be used: {e}")))?;
    let pickup = Pickup::new(&loaded.config);
    let uid = real_uid();
    let local = Local {
        hostname: &pickup.hostname,
        user: format!("{}@{}", login_name(uid.as_deref()), pickup.hostname),
        uid,
        full_name: options.full_name.as_deref(),
    };
    match options.mode {
        Mode::Smtp => smtp_session(&pickup, &local),
        _ => submit_stdin(&options, &pickup, &local),
    }
}

/// `-bp`: `sluice mailq`, with the same configuration; its exit code is ours.
fn list_queue(options: &Options) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().map_err(|e| fail(EX_TEMPFAIL, format!("sendmail: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command.arg("mailq");
    if let Some(config) = &options.config {
        command.arg("--config").arg(config);
    }
    let status = command.status().map_err(|e| fail(EX_TEMPFAIL, format!("sendmail: running mailq: {e}")))?;
    Ok(ExitCode::from(status.code().map_or(EX_TEMPFAIL, |c| c as u8)))
}

/// The default mode: one message on standard input.
fn submit_stdin(options: &Options, pickup: &Pickup, local: &Local) -> anyhow::Result<ExitCode> {
    let input = read_message(&mut std::io::stdin().lock(), options.ignore_dots)
        .map_err(|e| fail(EX_TEMPFAIL, format!("sendmail: reading the message: {e}")))?;
    let data_error = |e: String| fail(EX_DATAERR, format!("sendmail: {e}"));
    let input = pickup::to_crlf(&input).map_err(data_error)?;
    let message = Message::split(&input).map_err(data_error)?;
    let from = match &options.from {
        Some(given) => sender(given, &pickup.hostname).map_err(data_error)?,
        None => local.user.clone(),
    };
    let mut recipients = Vec::new();
    for arg in &options.recipients {
        add_unique(&mut recipients, parse_address_list(arg, &pickup.hostname).map_err(data_error)?);
    }
    if options.extract_recipients {
        for name in ["To", "Cc", "Bcc"] {
            for value in message.section.values(name) {
                let list =
                    parse_address_list(value, &pickup.hostname).map_err(|e| data_error(format!("{name}: {e}")))?;
                add_unique(&mut recipients, list);
            }
        }
    }
    if recipients.is_empty() {
        return Err(fail(EX_USAGE, "sendmail: no recipients (name them as arguments, or use -t)"));
    }
    let file = message.pickup_file(&from, &recipients, local);
    // The server reads the file with the same parser: what it would set aside is refused here, where the
    // caller still learns of it.
    pickup::parse(&file, pickup).map_err(data_error)?;
    store(&pickup.dir, &file).map_err(|(code, e)| fail(code, format!("sendmail: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// `-bs`: SMTP on standard input and output.
fn smtp_session(pickup: &Pickup, local: &Local) -> anyhow::Result<ExitCode> {
    let mut submit = |from: &str, recipients: &[String], data: Vec<u8>| -> Result<String, Reply> {
        let crlf = pickup::to_crlf(&data).map_err(|e| Reply::new(554, "5.6.0", format!("Bad message: {e}")))?;
        let message = Message::split(&crlf).map_err(|e| Reply::new(554, "5.6.0", format!("Bad message: {e}")))?;
        let file = message.pickup_file(from, recipients, local);
        pickup::parse(&file, pickup).map_err(|e| Reply::new(554, "5.6.0", format!("Bad message: {e}")))?;
        let path = store(&pickup.dir, &file)
            .map_err(|(_, e)| Reply::new(451, "4.3.0", format!("Cannot store the message: {e}")))?;
        Ok(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    };
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    session::run(&mut stdin.lock(), &mut stdout.lock(), &pickup.hostname, pickup.max_message_size, &mut submit)
        .map_err(|e| fail(EX_TEMPFAIL, format!("sendmail: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Reads the message: to the end of the input, or (without `-i`) to a line with a lone `.`.
fn read_message(input: &mut impl BufRead, ignore_dots: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let start = out.len();
        if input.read_until(b'\n', &mut out)? == 0 {
            return Ok(out);
        }
        if !ignore_dots && matches!(&out[start..], b".\n" | b".\r\n" | b".") {
            out.truncate(start);
            return Ok(out);
        }
    }
}

/// The envelope sender of `-f`: `<>` or an empty value is the null sender, else one address.
fn sender(given: &str, hostname: &str) -> Result<String, String> {
    let given = given.trim();
    if given.is_empty() || given == "<>" {
        return Ok(String::new());
    }
    match parse_address_list(given, hostname).map_err(|e| format!("-f: {e}"))?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("-f: one address expected, not {given:?}")),
    }
}

/// Who runs sendmail, and what the files it writes say about it.
struct Local<'a> {
    /// The server's hostname: qualifies addresses, names the server in `Received:` and `Message-ID:`.
    hostname: &'a str,
    /// The invoking user's address (the default sender).
    user: String,
    /// The real user ID, for the `Received:` field.
    uid: Option<String>,
    /// `-F`.
    full_name: Option<&'a str>,
}

/// A message given to sendmail, in CRLF, cut where its header ends.
struct Message<'a> {
    /// The header section, each field ending in CRLF, without the empty line.
    head: Vec<u8>,
    /// Everything after the header section and its empty line.
    body: &'a [u8],
    section: Section,
}

impl<'a> Message<'a> {
    /// Cuts `crlf` (a CRLF message) as sendmail does: the header ends at the empty line, or before the
    /// first line that is not a field (which starts the body).
    fn split(crlf: &'a [u8]) -> Result<Message<'a>, String> {
        let (end, blank) = header::lenient_end(crlf);
        let mut head = crlf[..if blank { end - 2 } else { end }].to_vec();
        if !head.is_empty() && !head.ends_with(b"\r\n") {
            head.extend_from_slice(b"\r\n");
        }
        let section = Section::parse(&head)?;
        Ok(Message { head, body: &crlf[end..], section })
    }

    /// The pickup file: the envelope fields, a `Received:` field naming the user ID that ran sendmail, then
    /// the message with `From:` (the sender, else the user; with `-F`'s name), `Date:` and `Message-ID:`
    /// added when missing. The `Received:` field also ends the envelope fields, so that a message whose own
    /// header starts with `X-Sender:` or `X-Receiver:` keeps them as message fields.
    fn pickup_file(&self, from: &str, recipients: &[String], local: &Local) -> Vec<u8> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let hostname = local.hostname;
        let mut file = format!("X-Sender: <{from}>\r\n");
        for r in recipients {
            file.push_str(&format!("X-Receiver: <{r}>\r\n"));
        }
        let now = now_ms();
        let uid = local.uid.as_deref().map(|uid| format!(", from userid {uid}")).unwrap_or_default();
        file.push_str(&format!("Received: by {hostname} (sluice sendmail{uid}); {}\r\n", rfc5322(now)));
        let author = if from.is_empty() { &local.user } else { from };
        if !self.section.has("from") {
            match local.full_name {
                Some(name) => file.push_str(&format!("From: {} <{author}>\r\n", quote(name))),
                None => file.push_str(&format!("From: {author}\r\n")),
            }
        }
        if !self.section.has("date") {
            file.push_str(&format!("Date: {}\r\n", rfc5322(now)));
        }
        if !self.section.has("message-id") {
            let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            file.push_str(&format!("Message-ID: <{now}.{}.{n}@{hostname}>\r\n", std::process::id()));
        }
        let mut file = file.into_bytes();
        file.extend_from_slice(&self.head);
        file.extend_from_slice(b"\r\n");
        file.extend_from_slice(self.body);
        file
    }
}

/// `name` as a quoted string (RFC 5322 3.2.4), on one line.
fn quote(name: &str) -> String {
    let mut s = String::from('"');
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Writes the file into the pickup directory (created if missing); the error carries its exit code.
fn store(dir: &Path, file: &[u8]) -> Result<std::path::PathBuf, (u8, String)> {
    let create_code = |e: &std::io::Error| match e.kind() {
        std::io::ErrorKind::PermissionDenied => EX_NOPERM,
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => EX_TEMPFAIL,
        _ => EX_CANTCREAT,
    };
    if !dir.is_dir() {
        // Before the server's first start; its data directory may be missing too.
        dir.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| pickup::create_dir(dir))
            .map_err(|e| (create_code(&e), format!("cannot create the pickup directory {}: {e}", dir.display())))?;
    }
    pickup::write(dir, file).map_err(|e| match &e {
        WriteError::Create { source, .. } => (create_code(source), e.to_string()),
        WriteError::Write { .. } => (EX_TEMPFAIL, e.to_string()),
    })
}

/// The real user ID of this process, from /proc.
fn real_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned())
}

/// The invoking user's login name: the real user ID's name in /etc/passwd, else `$USER` or `$LOGNAME`
/// (users known only to NSS), else `nobody`.
fn login_name(uid: Option<&str>) -> String {
    let from_passwd = || -> Option<String> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid?).then(|| name.to_owned())
        })
    };
    from_passwd()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "nobody".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pickup() -> Pickup {
        Pickup { dir: "/nonexistent".into(), hostname: "mx.test".into(), max_message_size: None }
    }

    fn local(full_name: Option<&str>) -> Local<'_> {
        Local { hostname: "mx.test", user: "u@mx.test".into(), uid: Some("1000".into()), full_name }
    }

    #[test]
    fn a_lone_dot_ends_the_input_unless_dots_are_ignored() {
        let input = b"Subject: s\n\nline\n.\nafter\n";
        assert_eq!(read_message(&mut &input[..], false).unwrap(), b"Subject: s\n\nline\n");
        assert_eq!(read_message(&mut &input[..], true).unwrap(), input);
        assert_eq!(read_message(&mut &b"a\r\n.\r\nb"[..], false).unwrap(), b"a\r\n");
        assert_eq!(read_message(&mut &b"a\n..\nb"[..], false).unwrap(), b"a\n..\nb");
    }

    #[test]
    fn the_file_carries_the_envelope_and_a_completed_header() {
        let crlf = pickup::to_crlf(b"To: t@x.test\nSubject: s\n\nbody\n").unwrap();
        let m = Message::split(&crlf).unwrap();
        let file = m.pickup_file("me@mx.test", &["t@x.test".into()], &local(Some("Cron \"D\"")));
        let text = String::from_utf8(file.clone()).unwrap();
        let (envelope, rest) = text.split_at(text.find("Received: ").unwrap());
        assert_eq!(envelope, "X-Sender: <me@mx.test>\r\nX-Receiver: <t@x.test>\r\n");
        assert!(rest.starts_with("Received: by mx.test (sluice sendmail, from userid 1000); "), "{rest}");
        assert!(rest.contains("\r\nFrom: \"Cron \\\"D\\\"\" <me@mx.test>\r\nDate: "), "{rest}");
        assert!(rest.contains("\r\nMessage-ID: <"), "{rest}");
        assert!(rest.ends_with("@mx.test>\r\nTo: t@x.test\r\nSubject: s\r\n\r\nbody\r\n"), "{rest}");
        let (env, _) = pickup::parse(&file, &pickup()).unwrap();
        assert_eq!(env.from_address(), "me@mx.test");
    }

    #[test]
    fn a_message_without_a_header_gets_one_and_present_fields_are_kept() {
        let crlf = pickup::to_crlf(b"just text\nmore\n").unwrap();
        let m = Message::split(&crlf).unwrap();
        let file = String::from_utf8(m.pickup_file("", &["t@x.test".into()], &local(None))).unwrap();
        assert!(file.starts_with("X-Sender: <>\r\nX-Receiver: <t@x.test>\r\nReceived: "), "{file}");
        assert!(file.contains("\r\nFrom: u@mx.test\r\n"), "the user is the author of a null-sender message: {file}");
        assert!(file.ends_with(">\r\n\r\njust text\r\nmore\r\n"), "{file}");
        let crlf = pickup::to_crlf(b"From: a@x.test\nDate: x\nMessage-ID: <m@x>\nTo: t@x.test").unwrap();
        let m = Message::split(&crlf).unwrap();
        let file = String::from_utf8(m.pickup_file("a@x.test", &["t@x.test".into()], &local(None))).unwrap();
        let rest = &file[file.find("\r\nFrom: ").unwrap()..];
        assert_eq!(rest, "\r\nFrom: a@x.test\r\nDate: x\r\nMessage-ID: <m@x>\r\nTo: t@x.test\r\n\r\n");
    }

    #[test]
    fn envelope_fields_of_the_message_itself_stay_message_fields() {
        let crlf = pickup::to_crlf(b"X-Sender: eudora\nX-Receiver: <other@x.test>\nTo: t@x.test\n\nx\n").unwrap();
        let m = Message::split(&crlf).unwrap();
        let file = m.pickup_file("a@x.test", &["t@x.test".into()], &local(None));
        let (env, stored) = pickup::parse(&file, &pickup()).unwrap();
        assert_eq!(env.recipients().map(|r| r.address).collect::<Vec<_>>(), ["t@x.test"]);
        assert!(String::from_utf8(stored).unwrap().contains("\r\nX-Sender: eudora\r\nX-Receiver: <other@x.test>\r\n"));
    }

    #[test]
    fn the_sender_flag_takes_one_address_or_the_null_sender() {
        assert_eq!(sender("a@x.test", "mx.test").unwrap(), "a@x.test");
        assert_eq!(sender("<a@x.test>", "mx.test").unwrap(), "a@x.test");
        assert_eq!(sender("root", "mx.test").unwrap(), "root@mx.test");
        assert_eq!(sender("<>", "mx.test").unwrap(), "");
        assert_eq!(sender("", "mx.test").unwrap(), "");
        assert!(sender("a@x.test, b@x.test", "mx.test").is_err());
        assert!(sender("a b@x.test", "mx.test").is_err());
    }
}
