//! What the replay and pickup directories share: a directory watched for `.eml` files, each read into an
//! envelope and a message by the directory's own parser and submitted; the file is deleted only after the
//! submission committed, and a file the parser refuses is renamed `.bad` with the reason in `.bad.txt`
//! beside it. Also the `X-Sender:`/`X-Receiver:` envelope headers that `sluice db export` and
//! `sluice sendmail` write at the top of a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_queue_db::{Envelope, Recipient};
use sluice_transport::Transport;
use sluice_transport::pressure::Level;
use tokio_util::sync::CancellationToken;

/// How a directory reads one of its files: the envelope and the message to store, or why the file is bad.
pub type Parse = dyn Fn(&[u8]) -> Result<(Envelope, Vec<u8>), String> + Send + Sync;

/// Watches `dir` (which exists) until `shutdown`, once a second; `kind` names the directory in logs.
pub async fn watch(
    kind: &'static str,
    dir: PathBuf,
    parse: Box<Parse>,
    transport: Transport,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
        // Local intake waits while back pressure refuses mail, as SMTP clients are refused.
        if transport.back_pressure() > Level::Normal {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_submitted(p)).collect();
        files.sort();
        for path in files {
            if shutdown.is_cancelled() {
                return;
            }
            submit_one(kind, &path, &*parse, &transport).await;
        }
    }
}

/// A `.eml` file, unless its name starts with a dot: writers create a hidden or `.tmp` file and rename it
/// into place when it is complete.
fn is_submitted(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    !name.starts_with('.') && name.ends_with(".eml")
}

async fn submit_one(kind: &str, path: &Path, parse: &Parse, transport: &Transport) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // A file another user wrote for their own eyes only would be refused again every second.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return set_aside(kind, path, &format!("the server cannot read the file: {e}"));
        }
        Err(e) => return tracing::warn!(kind, file = %path.display(), error = %e, "cannot read a dropped file"),
    };
    let (envelope, body) = match parse(&bytes) {
        Ok(parsed) => parsed,
        Err(why) => return set_aside(kind, path, &why),
    };
    let mid = transport.allocate_mid();
    let rcpts = envelope.recipient_count();
    match transport.submit(mid, envelope, body).await {
        Ok(()) => {
            tracing::info!(kind, file = %path.display(), mid, recipients = rcpts, "submitted from a directory");
            if let Err(e) = std::fs::remove_file(path) {
                tracing::error!(kind, file = %path.display(), error = %e, "submitted, but cannot remove the file: it will be submitted again");
            }
        }
        // Left in place: tried again on the next pass.
        Err(e) => tracing::warn!(kind, file = %path.display(), error = %e, "not stored; will retry"),
    }
}

fn set_aside(kind: &str, path: &Path, why: &str) {
    tracing::warn!(kind, file = %path.display(), reason = why, "bad file set aside");
    let bad = path.with_extension("eml.bad");
    if let Err(e) = std::fs::rename(path, &bad) {
        // Left in place it would be refused again every second; say so once per pass.
        return tracing::error!(kind, file = %path.display(), error = %e, "cannot rename a bad file");
    }
    let _ = std::fs::write(path.with_extension("eml.bad.txt"), format!("{why}\n"));
}

/// The envelope of the `X-Sender:`/`X-Receiver:` header fields at the top of a file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvelopeHeaders {
    /// The `X-Sender:` address (empty for `<>`), if there was one.
    pub from: Option<String>,
    pub recipients: Vec<Recipient>,
    /// Where the message after them starts.
    pub end: usize,
}

/// Reads the `X-Sender:`/`X-Receiver:` fields at the top of `bytes` (none is not an error).
pub fn envelope_headers(bytes: &[u8]) -> Result<EnvelopeHeaders, String> {
    let mut found = EnvelopeHeaders::default();
    loop {
        let rest = &bytes[found.end..];
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + 2)
            .or_else(|| rest.iter().position(|b| *b == b'\n').map(|p| p + 1));
        let Some(end) = end else { break };
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| "an envelope header is not UTF-8".to_owned())?;
        let Some((name, value)) = line.split_once(':') else { break };
        let envelope_header = name.eq_ignore_ascii_case("X-Sender") || name.eq_ignore_ascii_case("X-Receiver");
        if !envelope_header {
            break;
        }
        let value = value.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
        if value.contains(['\r', '\n', ' ', '<', '>']) {
            return Err(format!("bad address in {}: {value:?}", name.trim()));
        }
        if name.eq_ignore_ascii_case("X-Sender") {
            if found.from.replace(value).is_some() {
                return Err("more than one X-Sender header".to_owned());
            }
        } else {
            if !value.contains('@') {
                return Err(format!("bad recipient {value:?}"));
            }
            found.recipients.push(Recipient { address: value, notify: None, orcpt: None });
        }
        found.end += end;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_eml_files_are_submitted() {
        for (name, taken) in [
            ("1.eml", true),
            (".1.eml", false),
            (".sendmail.tmp", false),
            ("1.eml.tmp", false),
            ("1.eml.bad", false),
            ("1.eml.bad.txt", false),
            ("notes.txt", false),
        ] {
            assert_eq!(is_submitted(Path::new("/d").join(name).as_path()), taken, "{name}");
        }
    }
}
