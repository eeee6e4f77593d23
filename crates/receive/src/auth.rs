//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms against a connector's `users`,
//! whose passwords are argon2 PHC hashes; failures are counted per client address. The exchange with the
//! client (the AUTH verb and its challenges) comes first, the decoders and checks it uses after it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use sluice_config::User;

use crate::conn::Next;
use crate::replies;
use crate::session::{Flow, Session};

impl Session {
    /// AUTH is offered when users are configured, once the connection is encrypted or when the client is
    /// on loopback, and not again after it succeeded.
    pub(crate) fn auth_offered(&self) -> bool {
        self.policy.connector.auth != sluice_config::AuthMode::Off
            && !self.policy.connector.users.is_empty()
            && self.user.is_none()
            && allowed_on(self.tls.is_some(), self.peer.ip())
    }

    /// AUTH PLAIN and LOGIN (RFC 4954), against the connector's users; failures are rate-limited per client
    /// address (`auth_failures_per_minute`) and logged.
    pub(crate) async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<Flow> {
        let connector = &self.policy.connector;
        if connector.auth == sluice_config::AuthMode::Off || connector.users.is_empty() {
            self.reply(replies::NO_AUTH);
            return Ok(self.flow_after_error());
        }
        if !self.esmtp {
            self.reply(replies::EHLO_FIRST);
            return Ok(Flow::Continue);
        }
        if self.user.is_some() {
            self.reply(replies::ALREADY_AUTHENTICATED);
            return Ok(Flow::Continue);
        }
        if self.tx.is_some() {
            self.reply(replies::AUTH_IN_TRANSACTION);
            return Ok(Flow::Continue);
        }
        if !self.auth_offered() {
            self.reply(replies::ENCRYPTION_REQUIRED);
            return Ok(Flow::Continue);
        }
        let limit = connector.auth_failures_per_minute;
        if self.shared.auth_failures.blocked(self.peer.ip(), limit) {
            tracing::warn!(icid = self.icid(), peer = %self.peer, "AUTH refused: too many failures from this address");
            self.reply(replies::AUTH_LOCKED_OUT);
            return Ok(Flow::Continue);
        }
        let initial = match initial.as_deref() {
            Some("=") => Some(Vec::new()),
            Some(text) => match base64_decode(text.as_bytes()) {
                Some(d) => Some(d),
                None => {
                    self.reply(replies::INITIAL_NOT_BASE64);
                    return Ok(Flow::Continue);
                }
            },
            None => None,
        };
        let credentials = match mechanism {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => Some(r),
                    None => self.challenge("").await?,
                };
                match response {
                    None => return Ok(Flow::Continue),
                    Some(r) => parse_plain(&r),
                }
            }
            "LOGIN" => {
                let name = match initial {
                    Some(r) => Some(r),
                    None => self.challenge("VXNlcm5hbWU6").await?,
                };
                let Some(name) = name else { return Ok(Flow::Continue) };
                let Some(password) = self.challenge("UGFzc3dvcmQ6").await? else { return Ok(Flow::Continue) };
                match (String::from_utf8(name), String::from_utf8(password)) {
                    (Ok(n), Ok(p)) if !n.is_empty() => Some((n, p)),
                    _ => None,
                }
            }
            _ => {
                self.reply(replies::UNKNOWN_MECHANISM);
                return Ok(Flow::Continue);
            }
        };
        let policy = self.policy.clone();
        let (name, ok) = match credentials {
            Some((name, password)) => {
                let n = name.clone();
                // The semaphore is never closed; should it be, the session ends.
                let Ok(_slot) = self.shared.verifications.acquire().await else { return Ok(Flow::Close) };
                let ok = tokio::task::spawn_blocking(move || verify(&policy.connector.users, &n, &password))
                    .await
                    .unwrap_or(false);
                (name, ok)
            }
            None => (String::new(), false),
        };
        if ok {
            tracing::info!(icid = self.icid(), peer = %self.peer, user = %sluice_smtp::printable(&name), "authenticated");
            self.user = Some(name);
            self.reply(replies::AUTHENTICATED);
            return Ok(Flow::Continue);
        }
        tracing::warn!(icid = self.icid(), peer = %self.peer, user = %sluice_smtp::printable(&name), mechanism, "authentication failed");
        self.shared.auth_failures.record(self.peer.ip());
        self.reply(replies::BAD_CREDENTIALS);
        Ok(self.flow_after_error())
    }

    /// Sends `334 <challenge>` and reads the client's base64 answer. `None` when the client cancelled
    /// (`*`), sent something that is not base64 (both answered here), or went away.
    async fn challenge(&mut self, challenge: &str) -> std::io::Result<Option<Vec<u8>>> {
        // Written as is: `334 ` with an empty challenge keeps its space, which a rendered reply would drop.
        self.conn.reply_raw(format!("334 {challenge}\r\n").as_bytes());
        match self.conn.next_line(self.tx.is_some()).await? {
            None => Ok(None),
            Some(Next::Line(line)) => {
                if line == b"*" {
                    self.reply(replies::AUTH_CANCELLED);
                    return Ok(None);
                }
                Ok(match base64_decode(&line) {
                    Some(d) => Some(d),
                    None => {
                        self.reply(replies::RESPONSE_NOT_BASE64);
                        None
                    }
                })
            }
            Some(Next::TooLong | Next::BareLf) => {
                self.conn.skip_line(self.tx.is_some()).await?;
                self.reply(replies::BAD_RESPONSE_LINE);
                Ok(None)
            }
        }
    }
}

/// Decodes standard base64 (RFC 4648 section 4, padding optional); `None` for anything else.
pub(crate) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = match text.iter().position(|c| *c == b'=') {
        Some(p) if text[p..].iter().all(|c| *c == b'=') && text.len().is_multiple_of(4) && text.len() - p <= 2 => {
            &text[..p]
        }
        Some(_) => return None,
        None => text,
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The user name and password of a PLAIN response (`authzid NUL authcid NUL passwd`). An authorization
/// identity other than the user's own is refused: nobody may act for someone else.
pub(crate) fn parse_plain(decoded: &[u8]) -> Option<(String, String)> {
    let mut parts = decoded.split(|b| *b == 0);
    let (authz, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some((String::from_utf8(user.to_vec()).ok()?, String::from_utf8(password.to_vec()).ok()?))
}

/// Password checks that may run at once on a connector.
pub(crate) const CONCURRENT_VERIFICATIONS: usize = 4;

/// Whether `password` is `name`'s. Blocking (argon2 is slow on purpose): call from a blocking thread. An
/// unknown name costs one verification as well, so that timing does not tell which names exist.
pub(crate) fn verify(users: &[User], name: &str, password: &str) -> bool {
    let user = users.iter().find(|u| u.name == name);
    let Some(hash) = user.or(users.first()).map(|u| u.password_hash.as_str()) else { return false };
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!(user = name, "the password hash of this user is not a PHC string; login refused");
        return false;
    };
    let ok = argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    ok && user.is_some()
}

/// Whether a password may be sent on this connection: only encrypted, or from loopback, where
/// nobody can listen in between.
pub(crate) fn allowed_on(encrypted: bool, peer: IpAddr) -> bool {
    encrypted || peer.is_loopback() || peer.to_canonical().is_loopback()
}

/// Failed logins per client address over the last minute, shared by every connector's sessions: an address
/// locked out on one connector is locked out on all of them.
#[derive(Default)]
pub struct Failures {
    by_ip: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Failures {
    /// Whether `ip` has used up its `limit` failures of the last minute.
    pub(crate) fn blocked(&self, ip: IpAddr, limit: u32) -> bool {
        let mut map = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(&ip) else { return false };
        times.retain(|t| t.elapsed() < WINDOW);
        if times.is_empty() {
            map.remove(&ip);
            return false;
        }
        times.len() >= limit.max(1) as usize
    }

    pub(crate) fn record(&self, ip: IpAddr) {
        let mut map = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        // Addresses whose failures are all old go, so that the map cannot grow without bound.
        if map.len() > 10_000 {
            map.retain(|_, times| times.iter().any(|t| t.elapsed() < WINDOW));
        }
        map.entry(ip).or_default().push(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_and_refuses_bad_text() {
        assert_eq!(base64_decode(b"AGFsaWNlAHNlY3JldA==").unwrap(), b"\0alice\0secret");
        assert_eq!(base64_decode(b"YQ").unwrap(), b"a");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert_eq!(base64_decode(b"VXNlcm5hbWU6").unwrap(), b"Username:");
        for bad in [&b"Y"[..], b"YQ=a", b"Y===", b"a b=", b"YQ="] {
            assert!(base64_decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn plain_takes_the_users_own_identity_only() {
        assert_eq!(parse_plain(b"\0alice\0pw"), Some(("alice".into(), "pw".into())));
        assert_eq!(parse_plain(b"alice\0alice\0pw"), Some(("alice".into(), "pw".into())));
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"\0alice"), None);
        assert_eq!(parse_plain(b"\0alice\0pw\0x"), None);
    }

    #[test]
    fn passwords_travel_only_encrypted_or_on_loopback() {
        for (encrypted, peer, allowed) in [
            (false, "192.0.2.1", false),
            (true, "192.0.2.1", true),
            (false, "127.0.0.1", true),
            (false, "127.3.4.5", true),
            (false, "::1", true),
            (false, "::ffff:127.0.0.1", true),
            (false, "::ffff:192.0.2.1", false),
            (false, "2001:db8::1", false),
        ] {
            assert_eq!(allowed_on(encrypted, peer.parse().unwrap()), allowed, "{peer} encrypted={encrypted}");
        }
    }

    #[test]
    fn failures_block_after_the_limit() {
        let f = Failures::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!f.blocked(ip, 2));
        f.record(ip);
        assert!(!f.blocked(ip, 2));
        f.record(ip);
        assert!(f.blocked(ip, 2));
        assert!(!f.blocked("192.0.2.8".parse().unwrap(), 2));
    }
}
