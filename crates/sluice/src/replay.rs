//! The replay directory (`<data_dir>/replay`): `.eml` files written by `sluice db export` or
//! `sluice db salvage` are submitted again with the envelope of their `X-Sender:` and `X-Receiver:`
//! headers, which are removed. A file is deleted only after its submission committed; a file that cannot
//! be read as one is renamed `.bad`, with the reason in `.bad.txt` beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_queue_db::{Envelope, EnvelopeParts, Recipient, now_ms};
use sluice_transport::Transport;
use sluice_transport::pressure::Level;
use tokio_util::sync::CancellationToken;

/// Watches `dir` until `shutdown`.
pub async fn run(dir: PathBuf, transport: Transport, shutdown: CancellationToken) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "the replay directory cannot be created; it is not watched");
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
        // Like pickup, replay waits while back pressure refuses mail.
        if transport.back_pressure() > Level::Normal {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        for path in files {
            if shutdown.is_cancelled() {
                return;
            }
            replay_one(&path, &transport).await;
        }
    }
}

async fn replay_one(path: &Path, transport: &Transport) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return tracing::warn!(file = %path.display(), error = %e, "cannot read a replay file"),
    };
    let (envelope, body) = match parse(&bytes) {
        Ok(parsed) => parsed,
        Err(why) => return set_aside(path, &why),
    };
    let mid = transport.allocate_mid();
    let rcpts = envelope.recipient_count();
    match transport.submit(mid, envelope, body).await {
        Ok(()) => {
            tracing::info!(file = %path.display(), mid, recipients = rcpts, "replayed");
            if let Err(e) = std::fs::remove_file(path) {
                tracing::error!(file = %path.display(), error = %e, "replayed, but cannot remove the file: it will be replayed again");
            }
        }
        // Left in place: tried again on the next pass.
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "replay not stored; will retry"),
    }
}

fn set_aside(path: &Path, why: &str) {
    tracing::warn!(file = %path.display(), reason = why, "bad replay file set aside");
    let bad = path.with_extension("eml.bad");
    let _ = std::fs::rename(path, &bad);
    let _ = std::fs::write(path.with_extension("eml.bad.txt"), format!("{why}\n"));
}

/// Splits the leading `X-Sender:`/`X-Receiver:` headers from the message.
fn parse(bytes: &[u8]) -> Result<(Envelope, Vec<u8>), String> {
    let mut from = None;
    let mut recipients = Vec::new();
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
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
            if from.replace(value).is_some() {
                return Err("more than one X-Sender header".to_owned());
            }
        } else if name.eq_ignore_ascii_case("X-Receiver") {
            if !value.contains('@') {
                return Err(format!("bad recipient {value:?}"));
            }
            recipients.push(Recipient { address: value, notify: None, orcpt: None });
        }
        at += end;
    }
    let from = from.ok_or("no X-Sender header at the top")?;
    if recipients.is_empty() {
        return Err("no X-Receiver header at the top".to_owned());
    }
    let body = bytes[at..].to_vec();
    let envelope = Envelope::from(EnvelopeParts {
        smtputf8: !from.is_ascii() || recipients.iter().any(|r| !r.address.is_ascii()),
        body_8bit: !body.is_ascii(),
        from,
        recipients,
        source_name: "Replay".to_owned(),
        received_at_ms: now_ms(),
        ..EnvelopeParts::default()
    });
    Ok((envelope, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_headers_are_taken_and_removed() {
        let (env, body) =
            parse(b"X-Sender: <a@example.test>\r\nX-Receiver: <b@remote.test>\r\nX-Receiver: <c@remote.test>\r\nSubject: s\r\n\r\nhi\r\n").unwrap();
        assert_eq!(env.from_address(), "a@example.test");
        assert_eq!(env.recipients().map(|r| r.address).collect::<Vec<_>>(), ["b@remote.test", "c@remote.test"]);
        assert_eq!(env.source_name(), "Replay");
        assert_eq!(body, b"Subject: s\r\n\r\nhi\r\n");
        let (null, _) = parse(b"X-Sender: <>\r\nX-Receiver: <b@remote.test>\r\n\r\nx").unwrap();
        assert_eq!(null.from_address(), "");
        // The message's own headers, with spaces and brackets, are left alone.
        let (_, body) =
            parse(b"X-Sender: <a@x.test>\r\nX-Receiver: <b@x.test>\r\nReceived: from c.test ([127.0.0.1])\r\n\r\nx")
                .unwrap();
        assert!(body.starts_with(b"Received: from c.test ([127.0.0.1])"));
    }

    #[test]
    fn files_without_an_envelope_are_refused() {
        for bad in [
            &b"Subject: s\r\n\r\nhi"[..],
            b"X-Sender: <a@x.test>\r\nSubject: s\r\n\r\n",
            b"X-Receiver: <b@x.test>\r\n\r\n",
            b"X-Sender: <a b@x>\r\nX-Receiver: <b@x.test>\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
