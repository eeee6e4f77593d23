//! Alerts delivered as they are raised: by e-mail (`[alerts] email_to` through `smtp_host`) and to a webhook
//! (`webhook_url`, the alert's JSON).
//!
//! The mail is handed straight to the configured SMTP server by a small client here, not queued in sluice:
//! the alerts that matter most (a queue database that cannot commit, a full disk, a paused work queue) are
//! raised when sluice's own queue may be what is failing. Each alert is delivered by its own task, retried
//! with a backoff, at most [`MAX_IN_FLIGHT`] at once: a slow or dead mail server or webhook delays neither
//! the alerts after it nor anything else. An alert that cannot be delivered after the last try is logged
//! and dropped; it stays in `alerts.log` and the API.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sluice_api_types::Alert;
use sluice_config::{AlertsConfig, HostPort};
use sluice_smtp::{Reply, dot_stuff, parse_reply};
use sluice_transport::Alerts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Deliveries in progress at once (mail and webhook each count); more alerts wait for one to end.
const MAX_IN_FLIGHT: usize = 16;
/// Each step of an SMTP session (connecting, each reply) has this long.
const SMTP_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// A webhook request, connecting included, has this long.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a delivery in progress may go on once the server is stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The longest SMTP reply read.
const MAX_REPLY: usize = 64 * 1024;

/// The waits between the tries of one delivery: as many tries as waits, plus one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub delays: Vec<Duration>,
}

impl Retry {
    /// Mail: 5 s, 30 s, 2 min (four tries).
    pub fn email() -> Retry {
        Retry { delays: [5, 30, 120].map(Duration::from_secs).to_vec() }
    }

    /// The webhook: 1 s, 5 s, 30 s (four tries).
    pub fn webhook() -> Retry {
        Retry { delays: [1, 5, 30].map(Duration::from_secs).to_vec() }
    }

    fn tries(&self) -> usize {
        self.delays.len() + 1
    }
}

/// Where alerts go, and how hard to try.
#[derive(Debug, Clone)]
pub struct Notifier {
    email: Option<Email>,
    webhook: Option<Webhook>,
}

#[derive(Debug, Clone)]
struct Email {
    smtp: HostPort,
    to: Vec<String>,
    /// This server's host name: EHLO, the sender's domain, the Message-ID's right side.
    hostname: String,
    retry: Retry,
    step_timeout: Duration,
}

#[derive(Debug, Clone)]
struct Webhook {
    url: String,
    retry: Retry,
    timeout: Duration,
}

/// Subscribes to `alerts` now (every alert raised after this returns is delivered) and delivers them, as
/// `config` says, on `tasks` until `shutdown`. Nothing is spawned when neither mail (`email_to` and
/// `smtp_host`) nor a webhook is configured.
pub fn spawn(alerts: &Alerts, config: &AlertsConfig, hostname: &str, tasks: &TaskTracker, shutdown: CancellationToken) {
    let notifier = Notifier::new(config, hostname, Retry::email(), Retry::webhook());
    if notifier.email.is_none() && notifier.webhook.is_none() {
        return;
    }
    tasks.spawn(notifier.run(alerts.subscribe(), tasks.clone(), shutdown));
}

impl Notifier {
    fn new(config: &AlertsConfig, hostname: &str, email_retry: Retry, webhook_retry: Retry) -> Notifier {
        let email = match (&config.smtp_host, config.email_to.is_empty()) {
            (Some(smtp), false) => Some(Email {
                smtp: smtp.clone(),
                to: config.email_to.clone(),
                hostname: hostname.to_owned(),
                retry: email_retry,
                step_timeout: SMTP_STEP_TIMEOUT,
            }),
            _ => None,
        };
        let webhook = config.webhook_url.as_ref().map(|url| Webhook {
            url: url.clone(),
            retry: webhook_retry,
            timeout: WEBHOOK_TIMEOUT,
        });
        Notifier { email, webhook }
    }

    /// Takes each alert as it comes and starts its deliveries.
    async fn run(self, mut alerts: broadcast::Receiver<Alert>, tasks: TaskTracker, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let email = self.email.map(Arc::new);
        let webhook = self.webhook.map(Arc::new);
        loop {
            let alert = tokio::select! {
                () = shutdown.cancelled() => return,
                received = alerts.recv() => match received {
                    Ok(alert) => alert,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "alerts came faster than they could be sent: {missed} were not sent");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Some(email) = &email {
                let Some(slot) = take_slot(&slots, &shutdown).await else { return };
                let (email, alert, shutdown) = (email.clone(), alert.clone(), shutdown.clone());
                tasks.spawn(async move {
                    email.deliver(&alert, &shutdown).await;
                    drop(slot);
                });
            }
            if let Some(webhook) = &webhook {
                let Some(slot) = take_slot(&slots, &shutdown).await else { return };
                let (webhook, shutdown) = (webhook.clone(), shutdown.clone());
                tasks.spawn(async move {
                    webhook.deliver(&alert, &shutdown).await;
                    drop(slot);
                });
            }
        }
    }
}

async fn take_slot(slots: &Arc<Semaphore>, shutdown: &CancellationToken) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        slot = slots.clone().acquire_owned() => slot.ok(),
    }
}

/// `work` unless the server is stopping: then it has [`SHUTDOWN_GRACE`] more, and `None` after that.
async fn unless_stopping<T>(shutdown: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => None,
    }
}

/// Waits `delay` before another try; false when the server stops meanwhile.
async fn wait_to_retry(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

impl Webhook {
    async fn deliver(&self, alert: &Alert, shutdown: &CancellationToken) {
        let body = match serde_json::to_vec(alert) {
            Ok(body) => body,
            // Plain strings and numbers always serialize; kept as a log line rather than a panic.
            Err(e) => return tracing::warn!(alert = alert.id, error = %e, "alert not serialized for the webhook"),
        };
        let tries = self.retry.tries();
        for attempt in 1..=tries {
            let Some(result) = unless_stopping(shutdown, crate::http::post_json(&self.url, &body, self.timeout)).await
            else {
                return tracing::warn!(alert = alert.id, "alert not posted to the webhook: the server is stopping");
            };
            let error = match result {
                Ok(status) if (200..300).contains(&status) => {
                    return tracing::debug!(alert = alert.id, status, attempt, "alert posted to the webhook");
                }
                Ok(status) => format!("the webhook answered {status}"),
                Err(e) => e.to_string(),
            };
            let Some(delay) = self.retry.delays.get(attempt - 1).copied() else {
                return tracing::warn!(alert = alert.id, attempt, %error, "alert not posted to the webhook; giving up");
            };
            tracing::warn!(alert = alert.id, attempt, %error, retry_in = ?delay, "alert not posted to the webhook");
            if !wait_to_retry(delay, shutdown).await {
                return tracing::warn!(alert = alert.id, "alert not posted to the webhook: the server is stopping");
            }
        }
    }
}

/// Why one SMTP attempt failed: worth another try, or not.
#[derive(Debug)]
enum SmtpError {
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpError::Transient(e) | SmtpError::Permanent(e) => f.write_str(e),
        }
    }
}

/// What became of the recipients of one attempt.
#[derive(Debug, Default)]
struct Outcome {
    delivered: Vec<String>,
    /// 5xx: never tried again.
    rejected: Vec<(String, String)>,
    /// 4xx: tried again.
    deferred: Vec<String>,
}

impl Email {
    async fn deliver(&self, alert: &Alert, shutdown: &CancellationToken) {
        let message = compose(alert, &self.hostname, &self.to, sluice_queue_db::time::now_ms());
        let mut pending = self.to.clone();
        let tries = self.retry.tries();
        for attempt in 1..=tries {
            let Some(result) = unless_stopping(shutdown, self.attempt(&pending, &message)).await else {
                return tracing::warn!(alert = alert.id, "alert mail not sent: the server is stopping");
            };
            let error = match result {
                Ok(outcome) => {
                    for (rcpt, reply) in &outcome.rejected {
                        tracing::warn!(alert = alert.id, recipient = %rcpt, %reply, "alert mail refused for a recipient");
                    }
                    if !outcome.delivered.is_empty() {
                        tracing::debug!(alert = alert.id, recipients = ?outcome.delivered, attempt, "alert mail sent");
                    }
                    if outcome.deferred.is_empty() {
                        return;
                    }
                    let error = format!("deferred for {}", outcome.deferred.join(", "));
                    pending = outcome.deferred;
                    error
                }
                Err(SmtpError::Permanent(error)) => {
                    return tracing::warn!(alert = alert.id, attempt, %error, "alert mail refused; not tried again");
                }
                Err(SmtpError::Transient(error)) => error,
            };
            let Some(delay) = self.retry.delays.get(attempt - 1).copied() else {
                return tracing::warn!(alert = alert.id, attempt, %error, "alert mail not sent; giving up");
            };
            tracing::warn!(alert = alert.id, attempt, %error, retry_in = ?delay, "alert mail not sent");
            if !wait_to_retry(delay, shutdown).await {
                return tracing::warn!(alert = alert.id, "alert mail not sent: the server is stopping");
            }
        }
    }

    /// One SMTP session: the message to each of `recipients` the server accepts.
    async fn attempt(&self, recipients: &[String], message: &[u8]) -> Result<Outcome, SmtpError> {
        let mut s = Session::connect(&self.smtp, self.step_timeout).await?;
        let greeting = s.read().await?;
        s.expect(greeting, "the greeting")?;
        let ehlo = s.command(&format!("EHLO {}", self.hostname)).await?;
        if !ehlo.is_positive_completion() {
            let helo = s.command(&format!("HELO {}", self.hostname)).await?;
            s.expect(helo, "HELO")?;
        }
        let mail = s.command(&format!("MAIL FROM:<sluice@{}>", self.hostname)).await?;
        s.expect(mail, "MAIL FROM")?;
        let mut outcome = Outcome::default();
        for rcpt in recipients {
            let reply = s.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if reply.is_positive_completion() {
                outcome.delivered.push(rcpt.clone());
            } else if reply.is_permanent() {
                outcome.rejected.push((rcpt.clone(), one_line(&reply)));
            } else {
                outcome.deferred.push(rcpt.clone());
            }
        }
        if outcome.delivered.is_empty() {
            let _ = s.command("RSET").await;
            s.quit().await;
            return Ok(outcome);
        }
        let data = s.command("DATA").await?;
        if !data.is_intermediate() {
            let error = format!("DATA answered {}", one_line(&data));
            s.expect(data, "DATA")?;
            return Err(SmtpError::Transient(error));
        }
        let mut wire = Vec::with_capacity(message.len() + 64);
        dot_stuff(message, &mut wire);
        s.send(&wire).await?;
        let end = s.read().await?;
        s.expect(end, "the end of the data")?;
        s.quit().await;
        Ok(outcome)
    }
}

/// A reply on one line, for logs.
fn one_line(r: &Reply) -> String {
    format!("{} {}", r.code, r.text.replace('\n', " / ")).chars().filter(|c| !c.is_control()).take(300).collect()
}

/// An SMTP client session: one step at a time, each with its timeout.
struct Session {
    stream: TcpStream,
    peer: String,
    buf: Vec<u8>,
    step: Duration,
}

impl Session {
    async fn connect(host: &HostPort, step: Duration) -> Result<Session, SmtpError> {
        let peer = if host.host.contains(':') {
            format!("[{}]:{}", host.host, host.port)
        } else {
            format!("{}:{}", host.host, host.port)
        };
        let transient = |what: String| SmtpError::Transient(format!("{peer}: {what}"));
        let addrs: Vec<SocketAddr> = match host.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, host.port)],
            Err(_) if host.literal => return Err(SmtpError::Permanent(format!("{peer}: not an IP address"))),
            Err(_) => {
                match tokio::time::timeout(step, tokio::net::lookup_host((host.host.as_str(), host.port))).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => return Err(transient(format!("cannot resolve: {e}"))),
                    Err(_) => return Err(transient("no address within the timeout".into())),
                }
            }
        };
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::time::timeout(step, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(Session { stream, peer, buf: Vec::new(), step }),
                Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
                Err(_) => last = format!("no connection to {addr} within {step:?}"),
            }
        }
        Err(transient(last))
    }

    /// One reply, multi-line ones whole.
    async fn read(&mut self) -> Result<Reply, SmtpError> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) if self.buf.len() > MAX_REPLY => {
                    return Err(SmtpError::Transient(format!("{}: a reply is too long", self.peer)));
                }
                Ok(None) => {}
                Err(e) => return Err(SmtpError::Transient(format!("{}: {e}", self.peer))),
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout(self.step, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(SmtpError::Transient(format!("{}: the connection was closed", self.peer))),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(SmtpError::Transient(format!("{}: {e}", self.peer))),
                Err(_) => return Err(SmtpError::Transient(format!("{}: no reply within {:?}", self.peer, self.step))),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        match tokio::time::timeout(self.step, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SmtpError::Transient(format!("{}: {e}", self.peer))),
            Err(_) => Err(SmtpError::Transient(format!("{}: cannot write within {:?}", self.peer, self.step))),
        }
    }

    async fn command(&mut self, line: &str) -> Result<Reply, SmtpError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read().await
    }

    /// `reply` when it is a 2xx; else the failure it means (5xx: permanent).
    fn expect(&self, reply: Reply, what: &str) -> Result<Reply, SmtpError> {
        if reply.is_positive_completion() {
            return Ok(reply);
        }
        let error = format!("{}: {what} answered {}", self.peer, one_line(&reply));
        Err(if reply.is_permanent() { SmtpError::Permanent(error) } else { SmtpError::Transient(error) })
    }

    async fn quit(&mut self) {
        let _ = self.command("QUIT").await;
    }
}

/// The alert as a mail in the appliance's style, CRLF line ends (dot-stuffing is the session's).
fn compose(alert: &Alert, hostname: &str, to: &[String], now_ms: i64) -> Vec<u8> {
    let clean = |s: &str| s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
    let subject = format!("[{}] {}: {}: {}", alert.severity, alert.server, alert.class, clean(&alert.text));
    let mut m = String::new();
    m.push_str(&format!("From: \"sluice on {hostname}\" <sluice@{hostname}>\r\n"));
    m.push_str(&format!("To: {}\r\n", to.join(",\r\n ")));
    m.push_str(&format!("Date: {}\r\n", sluice_queue_db::time::rfc5322(now_ms)));
    m.push_str(&format!("Message-ID: <alert-{}.{}@{hostname}>\r\n", alert.id, now_ms.div_euclid(1000)));
    m.push_str(&format!("Subject: {}\r\n", header_text(&subject, "Subject: ".len())));
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str(&format!("X-Sluice-Alert: {}/{}\r\n", clean(&alert.class), clean(&alert.severity)));
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n");
    m.push_str("\r\n");
    let mut body = format!("The {} message is:\n\n{}\n\n", alert.severity, alert.text);
    if alert.suppressed > 0 {
        body.push_str(&format!("Repeats suppressed since it was last sent: {}\n\n", alert.suppressed));
    }
    body.push_str(&format!(
        "Version: {}\nSerial Number / server: {}\nTimestamp: {}\n",
        alert.version, alert.server, alert.time
    ));
    // Every line end as CRLF, whatever the alert's text held.
    for line in body.replace("\r\n", "\n").replace('\r', "\n").split_inclusive('\n') {
        m.push_str(line.strip_suffix('\n').unwrap_or(line));
        m.push_str("\r\n");
    }
    m.into_bytes()
}

/// A header's text: folded at spaces to keep lines near 78 characters when it is ASCII, else as RFC 2047
/// encoded words (UTF-8, base64), one per line. `used` is what the line holds before the text.
fn header_text(text: &str, used: usize) -> String {
    if text.is_ascii() {
        let mut out = String::new();
        let mut width = used;
        for (i, word) in text.split(' ').enumerate() {
            if i > 0 {
                if width + 1 + word.len() > 78 && width > 1 {
                    out.push_str("\r\n");
                    width = 0;
                }
                out.push(' ');
                width += 1;
            }
            out.push_str(word);
            width += word.len();
        }
        return out;
    }
    // 45 bytes of UTF-8 encode to 60 characters: with `=?UTF-8?B?` and `?=` a word is 72 long.
    let mut words = Vec::new();
    let mut piece = String::new();
    for c in text.chars() {
        if piece.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(piece.as_bytes())));
            piece.clear();
        }
        piece.push(c);
    }
    if !piece.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(piece.as_bytes())));
    }
    words.join("\r\n ")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transport::{AlertClass, Severity};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    fn alert(text: &str) -> Alert {
        Alert {
            id: 7,
            time: "2026-12-03T10:15:42Z".into(),
            class: "Anti-Spam".into(),
            severity: "Critical".into(),
            text: text.into(),
            suppressed: 0,
            server: "mx1".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn the_mail_reads_like_the_appliances_alert_mail() {
        // 2026-12-03T10:15:42Z
        let now = 1_796_292_942_000;
        let m = compose(&alert("work queue paused, 98 msgs, antispam"), "mx1.test", &["a@x.test".into()], now);
        let m = String::from_utf8(m).unwrap();
        assert_eq!(
            m,
            "From: \"sluice on mx1.test\" <sluice@mx1.test>\r\n\
             To: a@x.test\r\n\
             Date: Thu, 3 Dec 2026 10:15:42 +0000\r\n\
             Message-ID: <alert-7.1796292942@mx1.test>\r\n\
             Subject: [Critical] mx1: Anti-Spam: work queue paused, 98 msgs, antispam\r\n\
             Auto-Submitted: auto-generated\r\n\
             X-Sluice-Alert: Anti-Spam/Critical\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             The Critical message is:\r\n\
             \r\n\
             work queue paused, 98 msgs, antispam\r\n\
             \r\n\
             Version: 0.1.0\r\n\
             Serial Number / server: mx1\r\n\
             Timestamp: 2026-12-03T10:15:42Z\r\n"
        );
    }

    #[test]
    fn text_cannot_break_the_headers_or_end_the_data() {
        let m = compose(&alert("first\r\n.\r\nQUIT\nBcc: x@evil.test"), "h", &["a@x".into(), "b@x".into()], 0);
        let mut wire = Vec::new();
        dot_stuff(&m, &mut wire);
        let wire = String::from_utf8(wire).unwrap();
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nSubject: [Critical] mx1: Anti-Spam: first  .  QUIT Bcc: x@evil.test\r\n"), "{head}");
        assert!(head.contains("\r\nTo: a@x,\r\n b@x\r\n"), "{head}");
        assert!(!head.contains("\r\nBcc"), "{head}");
        assert!(body.contains("\r\nfirst\r\n..\r\nQUIT\r\nBcc: x@evil.test\r\n"), "{body}");
        assert!(wire.ends_with("\r\n.\r\n") && wire.matches("\r\n.\r\n").count() == 1, "{wire}");
    }

    #[test]
    fn long_subjects_fold_and_others_are_encoded_words() {
        let long = "word ".repeat(30);
        let folded = header_text(long.trim(), 9);
        assert!(folded.split("\r\n").all(|l| l.len() <= 78) && folded.contains("\r\n "), "{folded}");
        assert_eq!(folded.replace("\r\n", ""), long.trim());
        assert_eq!(header_text("Grüße", 9), "=?UTF-8?B?R3LDvMOfZQ==?=");
        let many = header_text(&"é".repeat(40), 9);
        assert_eq!(many.split("\r\n ").count(), 2, "{many}");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    fn config(smtp: Option<u16>, webhook: Option<String>) -> AlertsConfig {
        AlertsConfig {
            work_queue_pause_alert_after: Duration::from_secs(60),
            work_queue_stuck_after: Duration::from_secs(600),
            max_repeat_interval: Duration::from_secs(3600),
            email_to: vec!["ops@example.com".into(), "gone@example.com".into()],
            smtp_host: smtp.map(|port| HostPort { host: "127.0.0.1".into(), port, literal: true }),
            webhook_url: webhook,
        }
    }

    fn quick() -> Retry {
        Retry { delays: vec![Duration::from_millis(10); 3] }
    }

    /// Starts `notifier` on `alerts`; the tracker and the token stop it.
    fn start(notifier: Notifier, alerts: &Alerts) -> (TaskTracker, CancellationToken) {
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        tasks.spawn(notifier.run(alerts.subscribe(), tasks.clone(), shutdown.clone()));
        (tasks, shutdown)
    }

    /// An SMTP server that turns away the first `refuse` connections with a 421 and records the commands
    /// and the data of the others; `gone@` is refused at RCPT.
    async fn smtp_receiver(refuse: usize) -> (u16, mpsc::Receiver<(Vec<String>, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            for n in 0.. {
                let (s, _) = listener.accept().await.unwrap();
                let (r, mut w) = s.into_split();
                if n < refuse {
                    w.write_all(b"421 4.3.2 not now\r\n").await.unwrap();
                    continue;
                }
                w.write_all(b"220-smtp.test ESMTP\r\n220 welcome\r\n").await.unwrap();
                let mut r = BufReader::new(r);
                let (mut commands, mut data) = (Vec::new(), String::new());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap() == 0 {
                        break;
                    }
                    let line = line.trim_end().to_owned();
                    let reply: &[u8] = match line.as_str() {
                        l if l.starts_with("EHLO") => b"250-smtp.test\r\n250 8BITMIME\r\n",
                        l if l.starts_with("RCPT TO:<gone@") => b"550 5.1.1 no such user\r\n",
                        "DATA" => b"354 go ahead\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    commands.push(line.clone());
                    w.write_all(reply).await.unwrap();
                    if line == "DATA" {
                        loop {
                            let mut l = String::new();
                            r.read_line(&mut l).await.unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        w.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                    }
                    if line == "QUIT" {
                        break;
                    }
                }
                tx.send((commands, data)).await.unwrap();
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn an_alert_is_mailed_in_the_appliances_style() {
        let (port, mut received) = smtp_receiver(0).await;
        let alerts = Alerts::in_memory("mx1", "0.1.0", Duration::from_secs(60));
        let notifier = Notifier::new(&config(Some(port), None), "mx1.test", quick(), quick());
        let (tasks, shutdown) = start(notifier, &alerts);
        alerts.raise(AlertClass::AntiSpam, Severity::Critical, "work queue paused, 98 msgs, antispam");
        let (commands, data) = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
        assert_eq!(
            commands,
            [
                "EHLO mx1.test",
                "MAIL FROM:<sluice@mx1.test>",
                "RCPT TO:<ops@example.com>",
                "RCPT TO:<gone@example.com>",
                "DATA",
                "QUIT"
            ]
        );
        assert!(
            data.contains("\r\nSubject: [Critical] mx1: Anti-Spam: work queue paused, 98 msgs, antispam\r\n"),
            "{data}"
        );
        assert!(data.contains("\r\nX-Sluice-Alert: Anti-Spam/Critical\r\n"), "{data}");
        assert!(
            data.contains(
                "\r\n\r\nThe Critical message is:\r\n\r\nwork queue paused, 98 msgs, antispam\r\n\r\n\
                 Version: 0.1.0\r\nSerial Number / server: mx1\r\nTimestamp: 20"
            ),
            "{data}"
        );
        shutdown.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await.expect("the notifier stops at shutdown");
    }

    #[tokio::test]
    async fn a_mail_server_that_is_not_ready_is_tried_again() {
        let (port, mut received) = smtp_receiver(2).await;
        let alerts = Alerts::in_memory("mx1", "0.1.0", Duration::from_secs(60));
        let notifier = Notifier::new(&config(Some(port), None), "mx1.test", quick(), quick());
        let (_tasks, _shutdown) = start(notifier, &alerts);
        alerts.raise(AlertClass::Queue, Severity::Warning, "queue 16 in Retry");
        let (commands, data) = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
        assert!(commands.contains(&"RCPT TO:<ops@example.com>".to_owned()), "{commands:?}");
        assert!(data.contains("Subject: [Warning] mx1: Queue: queue 16 in Retry\r\n"), "{data}");
    }

    /// An HTTP server that answers each request with the next of `statuses` (200 after them) and hands on
    /// each request's head and body.
    async fn http_receiver(statuses: &'static [u16]) -> (String, mpsc::Receiver<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/alerts", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            for n in 0.. {
                let (s, _) = listener.accept().await.unwrap();
                let mut s = BufReader::new(s);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    s.read_line(&mut line).await.unwrap();
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let length: usize =
                    head.lines().find_map(|l| l.strip_prefix("Content-Length: ").map(|v| v.parse().unwrap())).unwrap();
                let mut body = vec![0; length];
                s.read_exact(&mut body).await.unwrap();
                let status = statuses.get(n).copied().unwrap_or(200);
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                s.get_mut().write_all(answer.as_bytes()).await.unwrap();
                tx.send((head, String::from_utf8(body).unwrap())).await.unwrap();
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn an_alert_is_posted_to_the_webhook_as_its_json() {
        let (url, mut received) = http_receiver(&[]).await;
        let alerts = Alerts::in_memory("mx1", "0.1.0", Duration::from_secs(60));
        let notifier = Notifier::new(&config(None, Some(url)), "mx1.test", quick(), quick());
        assert!(notifier.email.is_none(), "no smtp_host: no mail");
        let (_tasks, _shutdown) = start(notifier, &alerts);
        let raised = alerts.raise(AlertClass::System, Severity::Information, "started").unwrap();
        let (head, body) = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
        assert!(head.starts_with("POST /hooks/alerts HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
        assert_eq!(serde_json::from_str::<Alert>(&body).unwrap(), raised);
    }

    #[tokio::test]
    async fn a_webhook_that_fails_gets_the_alert_again() {
        let (url, mut received) = http_receiver(&[500, 503]).await;
        let alerts = Alerts::in_memory("mx1", "0.1.0", Duration::from_secs(60));
        let notifier = Notifier::new(&config(None, Some(url)), "mx1.test", quick(), quick());
        let (_tasks, _shutdown) = start(notifier, &alerts);
        let raised = alerts.raise(AlertClass::Updater, Severity::Warning, "antispam update failed").unwrap();
        for _ in 0..3 {
            let (_, body) = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
            assert_eq!(serde_json::from_str::<Alert>(&body).unwrap(), raised);
        }
        // Delivered on the third: no fourth.
        assert!(tokio::time::timeout(Duration::from_millis(300), received.recv()).await.is_err());
    }

    #[tokio::test]
    async fn with_nothing_configured_nothing_is_spawned() {
        let alerts = Alerts::in_memory("mx1", "0.1.0", Duration::from_secs(60));
        let tasks = TaskTracker::new();
        let mut nothing = config(None, None);
        nothing.email_to.clear();
        spawn(&alerts, &nothing, "mx1.test", &tasks, CancellationToken::new());
        assert!(tasks.is_empty());
        // Addresses without a server to hand them to: no mail either.
        spawn(&alerts, &config(None, None), "mx1.test", &tasks, CancellationToken::new());
        assert!(tasks.is_empty());
    }
}
