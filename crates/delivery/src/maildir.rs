//! Maildir delivery: one file per recipient, written to `tmp/`, fsynced, renamed into `new/`, and the
//! directory fsynced, so that a delivered message survives a crash and a reader never sees a partial file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_queue_db::BodySource;
use sluice_smtp::Reply;
use sluice_transport::{BoxFuture, DeliveryConnection, DeliveryError, Handoff, Outbound, RecipientOutcome};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub use sluice_smtp::safe_local_part;

/// Delivers into Maildir folders named by a template with `{domain}` and `{local}`.
pub struct MaildirConnection {
    template: String,
    delimiter: String,
    hostname: Arc<str>,
}

impl MaildirConnection {
    pub fn new(template: String, delimiter: String, hostname: Arc<str>) -> MaildirConnection {
        MaildirConnection { template, delimiter, hostname }
    }

    /// The Maildir folder of a recipient, or the reply that refuses it.
    pub fn folder(&self, address: &str) -> Result<PathBuf, Reply> {
        // Routing sends only addresses of an accepted domain here, so a missing domain is not expected.
        let (local, domain) =
            address.rsplit_once('@').ok_or_else(|| Reply::new(550, "5.1.3", format!("no domain in {address}")))?;
        let local = match self.delimiter.chars().next() {
            Some(d) => local.split(d).next().unwrap_or(local),
            None => local,
        };
        let domain = domain.to_ascii_lowercase();
        let domain_ok = !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.contains("..")
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
        if !safe_local_part(local) || !domain_ok {
            return Err(Reply::new(550, "5.1.3", format!("{address} cannot name a mailbox")));
        }
        Ok(PathBuf::from(self.template.replace("{domain}", &domain).replace("{local}", local)))
    }
}

fn deliver_one(folder: &Path, hostname: &str, from: &str, rcpt: &str, body: &BodySource) -> std::io::Result<()> {
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(folder.join(sub))?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let unique = format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hostname.replace(['/', ':'], "_")
    );
    let tmp = folder.join("tmp").join(&unique);
    let new = folder.join("new").join(&unique);
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let mut head = Vec::with_capacity(256);
    write!(head, "Return-Path: <{from}>\r\nDelivered-To: {rcpt}\r\n")?;
    f.write_all(&head)?;
    let mut chunks = body.chunks();
    loop {
        match chunks.next_chunk(256 << 10) {
            Ok(Some(piece)) => f.write_all(&piece)?,
            Ok(None) => break,
            Err(e) => {
                drop(f);
                let _ = fs::remove_file(&tmp);
                return Err(std::io::Error::other(e));
            }
        }
    }
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &new)?;
    File::open(folder.join("new"))?.sync_all()?;
    Ok(())
}

impl DeliveryConnection for MaildirConnection {
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, DeliveryError>> {
        Box::pin(async move {
            let rcpts: Vec<String> = msg.recipients().map(|r| r.address.to_owned()).collect();
            let folders: Vec<Result<PathBuf, Reply>> = rcpts.iter().map(|r| self.folder(r)).collect();
            let hostname = self.hostname.clone();
            let from = msg.envelope.from_address().to_owned();
            // The body is read on the blocking thread, a piece at a time, once per recipient.
            let body = msg.body.clone();
            let outcomes = tokio::task::spawn_blocking(move || {
                folders
                    .into_iter()
                    .zip(rcpts)
                    .map(|(folder, rcpt)| match folder {
                        Err(e) => RecipientOutcome::Permanent(e),
                        Ok(folder) => match deliver_one(&folder, &hostname, &from, &rcpt, &body) {
                            Ok(()) => RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "delivered to Maildir")),
                            Err(e) => RecipientOutcome::Transient(Reply::new(
                                451,
                                "4.3.0",
                                format!("Maildir write failed: {e}"),
                            )),
                        },
                    })
                    .collect()
            })
            .await
            .map_err(DeliveryError::MaildirTask)?;
            Ok(outcomes)
        })
    }

    fn handoff(&self) -> Handoff {
        Handoff::Delivered
    }

    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_parts_that_could_escape_the_store_are_refused() {
        for ok in ["user", "first.last", "a+tag", "x_y-z=1"] {
            assert!(safe_local_part(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a..b", "../etc", "a/b", "a b", "\"q\"", &"x".repeat(65)] {
            assert!(!safe_local_part(bad), "{bad}");
        }
    }

    #[test]
    fn the_folder_drops_the_tag_and_lowercases_the_domain() {
        let c = MaildirConnection::new("/m/{domain}/{local}".into(), "+".into(), "h".into());
        assert_eq!(c.folder("user+news@LocalHost").unwrap(), PathBuf::from("/m/localhost/user"));
        assert!(c.folder("../x@localhost").is_err());
        assert!(c.folder("user@../../etc").is_err());
    }

    #[tokio::test]
    async fn delivery_writes_one_file_per_recipient_into_new() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/{{domain}}/{{local}}", dir.path().display());
        let mut c = MaildirConnection::new(template, "+".into(), "h".into());
        let msg = Outbound {
            mid: 1,
            envelope: Arc::new(sluice_queue_db::Envelope::from(sluice_queue_db::EnvelopeParts {
                from: "a@b.test".into(),
                recipients: ["u1@localhost", "u2+x@localhost", "bad/..@localhost"]
                    .map(|a| sluice_queue_db::Recipient { address: a.into(), notify: None, orcpt: None })
                    .into(),
                ..Default::default()
            })),
            indices: vec![0, 1, 2],
            body: BodySource::memory(b"Subject: hi\r\n\r\nbody\r\n".to_vec()),
        };
        let out = c.deliver(&msg).await.unwrap();
        assert!(matches!(out[0], RecipientOutcome::Delivered(_)));
        assert!(matches!(out[1], RecipientOutcome::Delivered(_)));
        assert!(matches!(out[2], RecipientOutcome::Permanent(_)));
        let files: Vec<_> = fs::read_dir(dir.path().join("localhost/u2/new")).unwrap().collect();
        assert_eq!(files.len(), 1);
        let text = fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(text.starts_with("Return-Path: <a@b.test>\r\nDelivered-To: u2+x@localhost\r\n"), "{text}");
        assert!(fs::read_dir(dir.path().join("localhost/u1/tmp")).unwrap().next().is_none());
    }
}
