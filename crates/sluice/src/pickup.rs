//! The pickup directory (`<data_dir>/pickup`): local programs submit mail by moving a `.eml` file into it,
//! directly or through `sluice sendmail`. The envelope comes from `X-Sender:`/`X-Receiver:` fields at the
//! top of the file when it has an `X-Receiver:` there (what `sluice sendmail` writes; they are removed), and
//! otherwise from the message's own header: the sender from `Sender:`, else `From:`, the recipients from
//! `To:`, `Cc:` and `Bcc:`. `Bcc:` is removed either way. Lines may end in LF or CRLF; the message is stored
//! with CRLF. The watching, and what becomes of a file, is `drop_dir`'s; the file format is also in
//! docs/operations.md, "Local submission".

pub mod header;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_config::Config;
use sluice_queue_db::time::rfc5322;
use sluice_queue_db::{Envelope, EnvelopeParts, Priority, Recipient, now_ms};
use sluice_smtp::Address;
use sluice_transport::Transport;
use tokio_util::sync::CancellationToken;

use crate::drop_dir;
use header::{Section, parse_address_list};

/// The directory's mode when sluice creates it: the server's user and group only (the group is the one of
/// the programs allowed to submit; docs/operations.md says how to set it up).
pub const DIR_MODE: u32 = 0o770;

/// What reading a pickup file needs from the configuration (read at start).
#[derive(Debug, Clone)]
pub struct Pickup {
    pub dir: PathBuf,
    /// Qualifies addresses without a domain (`root`) and names this server in the `Received:` field.
    pub hostname: String,
    /// The largest `max_message_size` of the receive connectors: a message no connector would take is
    /// refused here too. `None` without receive connectors.
    pub max_message_size: Option<u64>,
}

impl Pickup {
    pub fn new(config: &Config) -> Pickup {
        Pickup {
            dir: config.pickup_dir(),
            hostname: config.server.hostname.clone(),
            max_message_size: config.receive_connectors.iter().map(|c| c.max_message_size).max(),
        }
    }
}

/// Watches the pickup directory until `shutdown`.
pub async fn run(pickup: Pickup, transport: Transport, shutdown: CancellationToken) {
    if let Err(e) = create_dir(&pickup.dir) {
        tracing::error!(dir = %pickup.dir.display(), error = %e, "the pickup directory cannot be created; it is not watched");
        return;
    }
    let dir = pickup.dir.clone();
    drop_dir::watch("pickup", dir, Box::new(move |bytes| parse(bytes, &pickup)), transport, shutdown).await;
}

/// Creates `dir` with [`DIR_MODE`] (whatever the umask) unless it exists; an existing directory's mode is
/// the administrator's and is left alone.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// `bytes` with every line ending in CRLF (a bare LF becomes CRLF). A bare CR or a NUL is refused.
pub fn to_crlf(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' if i == 0 || bytes[i - 1] != b'\r' => out.extend_from_slice(b"\r\n"),
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => return Err(format!("a bare CR at offset {i}")),
            0 => return Err(format!("a NUL at offset {i}")),
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// Reads a pickup file into the envelope and the message to store.
pub fn parse(bytes: &[u8], pickup: &Pickup) -> Result<(Envelope, Vec<u8>), String> {
    if let Some(max) = pickup.max_message_size
        && bytes.len() as u64 > max
    {
        return Err(format!("the message is larger than the maximum message size ({} > {max} bytes)", bytes.len()));
    }
    let text = to_crlf(bytes)?;
    let envelope = drop_dir::envelope_headers(&text)?;
    let (from, recipients, message) = if envelope.recipients.is_empty() {
        // No envelope at the top: the whole file is the message, its header names the envelope.
        let section = Section::parse(&text)?;
        let (from, recipients) = envelope_from_header(&section, &pickup.hostname)?;
        (from, recipients, &text[..])
    } else {
        let from = envelope.from.ok_or("X-Receiver without X-Sender at the top")?;
        let addresses = envelope.recipients.into_iter().map(|r| r.address).collect();
        (from, addresses, &text[envelope.end..])
    };
    if !from.is_empty() {
        Address::parse(&from, true).map_err(|e| format!("bad sender {from:?}: {e}"))?;
    }
    for r in &recipients {
        Address::parse(r, true).map_err(|e| format!("bad recipient {r:?}: {e}"))?;
    }
    let section = Section::parse(message)?;
    let mut stored =
        format!("Received: by {} (sluice pickup); {}\r\n", pickup.hostname, rfc5322(now_ms())).into_bytes();
    let mut at = 0;
    for field in section.fields.iter().filter(|f| f.name.eq_ignore_ascii_case("bcc")) {
        stored.extend_from_slice(&message[at..field.range.start]);
        at = field.range.end;
    }
    stored.extend_from_slice(&message[at..]);
    let first = |name| section.values(name).next().map(|v| v.trim().to_owned());
    let priority = section.fields.iter().find_map(|f| Priority::from_header(&f.name, &f.value));
    let envelope = Envelope::from(EnvelopeParts {
        smtputf8: !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii()),
        body_8bit: !stored.is_ascii(),
        from,
        recipients: recipients.into_iter().map(|address| Recipient { address, notify: None, orcpt: None }).collect(),
        source_name: "Pickup".to_owned(),
        received_at_ms: now_ms(),
        internet_message_id: first("message-id"),
        subject: first("subject").map(|s| s.chars().take(255).collect()),
        priority: priority.unwrap_or_default(),
        originating: true,
        ..EnvelopeParts::default()
    });
    Ok((envelope, stored))
}

/// The sender (`Sender:`, else the first mailbox of `From:`) and the recipients (`To:`, `Cc:`, `Bcc:`,
/// each once) a message's header names.
fn envelope_from_header(section: &Section, hostname: &str) -> Result<(String, Vec<String>), String> {
    let mailboxes = |name: &str| -> Result<Vec<String>, String> {
        let mut all = Vec::new();
        for value in section.values(name) {
            all.extend(parse_address_list(value, hostname).map_err(|e| format!("{name}: {e}"))?);
        }
        Ok(all)
    };
    let from = match mailboxes("Sender")?.into_iter().next() {
        Some(sender) => sender,
        None => mailboxes("From")?.into_iter().next().ok_or("no sender: neither Sender: nor From: names one")?,
    };
    let mut recipients = Vec::new();
    for name in ["To", "Cc", "Bcc"] {
        add_unique(&mut recipients, mailboxes(name)?);
    }
    if recipients.is_empty() {
        return Err("no recipients: To:, Cc: and Bcc: name none".to_owned());
    }
    Ok((from, recipients))
}

/// Appends the addresses of `more` not yet in `list`.
pub fn add_unique(list: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for address in more {
        if !list.contains(&address) {
            list.push(address);
        }
    }
}

/// Why [`write()`] failed: creating the file, or writing it into place.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create a file in {dir}: {source}")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {file}: {source}")]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `contents` into `dir` atomically: a hidden `.tmp` file (which the server ignores), fsynced, renamed
/// to a new `.eml` name, then the directory fsynced. Returns the file's path. Files are made readable by
/// everyone who can enter the directory (mode 0644 before the umask), so that the server can read a file a
/// user wrote; the directory's own mode keeps others out.
pub fn write(dir: &Path, contents: &[u8]) -> Result<PathBuf, WriteError> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let name = format!("{:013}.{}.{}", now_ms(), std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = dir.join(format!("{name}.eml"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|source| WriteError::Create { dir: dir.to_owned(), source })?;
    let written = f
        .write_all(contents)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &file))
        .and_then(|()| std::fs::File::open(dir)?.sync_all());
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::Write { file, source });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pickup() -> Pickup {
        Pickup { dir: PathBuf::from("/nonexistent"), hostname: "mx.test".into(), max_message_size: Some(1000) }
    }

    fn addresses(env: &Envelope) -> Vec<&str> {
        env.recipients().map(|r| r.address).collect()
    }

    #[test]
    fn the_envelope_comes_from_the_header_and_bcc_is_removed() {
        let file = b"From: Alice <alice@example.test>\nTo: b@x.test, \"Doe, J\" <j@x.test>\nCc: undisclosed:;\nBcc: hidden@x.test,\n\tb@x.test\nSubject: hello\nMessage-ID: <1@example.test>\nImportance: high\n\nbody\nBcc: not a header\n";
        let (env, stored) = parse(file, &pickup()).unwrap();
        assert_eq!(env.from_address(), "alice@example.test");
        assert_eq!(addresses(&env), ["b@x.test", "j@x.test", "hidden@x.test"]);
        assert_eq!(env.source_name(), "Pickup");
        assert_eq!(env.subject(), Some("hello"));
        assert_eq!(env.internet_message_id(), Some("<1@example.test>"));
        assert_eq!(env.priority(), Priority::High);
        let stored = String::from_utf8(stored).unwrap();
        assert!(stored.starts_with("Received: by mx.test (sluice pickup); "), "{stored}");
        let (_, rest) = stored.split_once("\r\n").unwrap();
        assert_eq!(
            rest,
            "From: Alice <alice@example.test>\r\nTo: b@x.test, \"Doe, J\" <j@x.test>\r\nCc: undisclosed:;\r\nSubject: hello\r\nMessage-ID: <1@example.test>\r\nImportance: high\r\n\r\nbody\r\nBcc: not a header\r\n"
        );
    }

    #[test]
    fn sender_wins_over_from_and_crlf_files_are_kept() {
        let (env, stored) =
            parse(b"From: a@x.test\r\nSender: s@x.test\r\nTo: b@x.test\r\n\r\nx\r\n", &pickup()).unwrap();
        assert_eq!(env.from_address(), "s@x.test");
        assert!(stored.ends_with(b"\r\nTo: b@x.test\r\n\r\nx\r\n"));
    }

    #[test]
    fn envelope_fields_at_the_top_win_and_are_removed() {
        let file =
            b"X-Sender: <>\r\nX-Receiver: <r@y.test>\r\nFrom: a@x.test\r\nTo: b@x.test\r\nBcc: c@x.test\r\n\r\nx\r\n";
        let (env, stored) = parse(file, &pickup()).unwrap();
        assert_eq!(env.from_address(), "");
        assert_eq!(addresses(&env), ["r@y.test"]);
        let stored = String::from_utf8(stored).unwrap();
        assert!(stored.ends_with("\r\nFrom: a@x.test\r\nTo: b@x.test\r\n\r\nx\r\n"), "{stored}");
        // A message that merely starts with X-Sender: keeps it, and its envelope comes from its header.
        let (env, stored) = parse(b"X-Sender: a@x.test\nFrom: f@x.test\nTo: t@x.test\n\nx\n", &pickup()).unwrap();
        assert_eq!((env.from_address(), addresses(&env)), ("f@x.test", vec!["t@x.test"]));
        assert!(String::from_utf8(stored).unwrap().contains("\r\nX-Sender: a@x.test\r\n"));
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"From: a@x.test\n\nno recipient\n", "no recipients"),
            (b"To: b@x.test\n\nno sender\n", "no sender"),
            (b"From: a@x.test\nTo: b@x.test\nnot a header\n\nx\n", "unparsable header"),
            (b"From: a@x.test\nTo: b@x.test\n\nbare\rCR\n", "bare CR"),
            (b"From: a@x.test\nTo: b c@x.test\n\nx\n", "To:"),
            (b"X-Receiver: <r@y.test>\nFrom: a@x.test\n\nx\n", "without X-Sender"),
            (b"X-Sender: <a@x.test>\nX-Receiver: <r@-y.test>\n\nx\n", "bad recipient"),
        ];
        for (file, reason) in cases {
            let why = parse(file, &pickup()).unwrap_err();
            assert!(why.contains(reason), "{why:?} should say {reason:?}");
        }
        let big = format!("From: a@x.test\nTo: b@x.test\n\n{}\n", "x".repeat(1000));
        assert!(parse(big.as_bytes(), &pickup()).unwrap_err().contains("maximum message size"));
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n\n").unwrap(), b"a\r\nb\r\nc\r\n\r\n");
        assert!(to_crlf(b"a\rb").is_err());
        assert!(to_crlf(b"a\r").is_err());
        assert!(to_crlf(b"a\0b").is_err());
    }

    #[test]
    fn write_puts_a_complete_file_in_place_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), b"X-Sender: <a@x.test>\r\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"X-Sender: <a@x.test>\r\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [path.file_name().unwrap()]);
        assert!(path.to_str().unwrap().ends_with(".eml"));
        let missing = write(&dir.path().join("missing"), b"x").unwrap_err();
        assert!(matches!(missing, WriteError::Create { .. }));
    }

    #[test]
    fn create_dir_sets_the_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("pickup");
        create_dir(&pickup).unwrap();
        assert_eq!(std::fs::metadata(&pickup).unwrap().permissions().mode() & 0o7777, DIR_MODE);
        create_dir(&pickup).unwrap();
    }
}
