//! The replay directory (`<data_dir>/replay`): `.eml` files written by `sluice db export` or
//! `sluice db salvage` are submitted again with the envelope of their `X-Sender:` and `X-Receiver:`
//! headers, which are removed. The watching, and what becomes of a file, is `drop_dir`'s.

use std::path::PathBuf;

use sluice_queue_db::{Envelope, EnvelopeParts, now_ms};
use sluice_transport::Transport;
use tokio_util::sync::CancellationToken;

use crate::drop_dir;

/// Watches `dir` until `shutdown`.
pub async fn run(dir: PathBuf, transport: Transport, shutdown: CancellationToken) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "the replay directory cannot be created; it is not watched");
        return;
    }
    drop_dir::watch("replay", dir, Box::new(parse), transport, shutdown).await;
}

/// Splits the leading `X-Sender:`/`X-Receiver:` headers from the message.
fn parse(bytes: &[u8]) -> Result<(Envelope, Vec<u8>), String> {
    let headers = drop_dir::envelope_headers(bytes)?;
    let from = headers.from.ok_or("no X-Sender header at the top")?;
    let recipients = headers.recipients;
    if recipients.is_empty() {
        return Err("no X-Receiver header at the top".to_owned());
    }
    let body = bytes[headers.end..].to_vec();
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
