//! Receive connectors: SMTP listeners, each with its own policy. A session reads commands in
//! order, answers pipelined commands in one write, and answers `250` to DATA only after the message is
//! durable in the queue database.

mod auth;
pub use auth::Failures as AuthFailures;
mod bdat;
mod conn;
mod data;
mod ehlo;
mod mail;
mod message;
mod rcpt;
mod replies;
mod session;
mod spool;
mod starttls;
mod tls;

pub use tls::acceptor as tls_acceptor;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sluice_config::{Config, ReceiveConnector};
use sluice_transport::Transport;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a session needs to know of its connector.
#[derive(Debug, Clone)]
pub struct Policy {
    pub connector: ReceiveConnector,
    /// Our name in the banner, EHLO and `Received:`.
    pub hostname: String,
    /// The accepted domains, for recipient validation (`mailboxes`, `recipient_delimiter`).
    pub accepted_domains: Vec<sluice_config::AcceptedDomain>,
    /// Where message data past its header section is spooled while it arrives (`<data_dir>/spool`).
    pub spool_dir: std::path::PathBuf,
    /// The mailbox stores, to tell which local parts of a domain without `mailboxes` exist.
    pub mailbox_stores: Vec<sluice_config::MailboxStore>,
}

impl Policy {
    /// The policy of `connector` under `config`.
    fn of(config: &Config, connector: ReceiveConnector) -> Policy {
        Policy {
            connector,
            hostname: config.server.hostname.clone(),
            accepted_domains: config.accepted_domains.clone(),
            spool_dir: config.server.data_dir.join("spool"),
            mailbox_stores: config.mailbox_stores.clone(),
        }
    }

    /// The accepted domain `domain` (any case, a final dot ignored).
    fn accepted_domain(&self, domain: &str) -> Option<&sluice_config::AcceptedDomain> {
        self.accepted_domains.iter().find(|d| d.domain.eq_ignore_ascii_case(domain.trim_end_matches('.')))
    }

    /// The accepted domain `domain`, and `local` split at its recipient delimiter: the mailbox, and the
    /// `+tag` (delimiter included).
    fn accepted_local<'l>(
        &self,
        domain: &str,
        local: &'l str,
    ) -> Option<(&sluice_config::AcceptedDomain, &'l str, &'l str)> {
        let d = self.accepted_domain(domain)?;
        let (base, tag) = split_tag(d, local);
        Some((d, base, tag))
    }

    /// The local part `local` of `domain` is delivered as, when the domain lists its mailboxes: the mailbox
    /// it matches (comparison ignores case; the part after the recipient delimiter is ignored and kept),
    /// spelled as configured, so that `BOB@example` reaches the mailbox of `bob`; an alias as it was given.
    /// `Some(None)` for an unknown one, `None` when the domain has no list.
    pub fn known_mailbox(&self, domain: &str, local: &str) -> Option<Option<String>> {
        let (d, base, tag) = self.accepted_local(domain, local)?;
        let list = d.mailboxes.as_ref()?;
        if let Some(mailbox) = list.iter().find(|m| m.eq_ignore_ascii_case(base)) {
            return Some(Some(format!("{mailbox}{tag}")));
        }
        Some(alias_or_postmaster(d, local))
    }
}

impl Policy {
    /// What a client outside `relay_networks` (and not authenticated) may reach of a domain without
    /// `mailboxes`: with `catch_all`, any local part; otherwise one that exists, an alias, `postmaster`, or
    /// a Maildir folder already there (as given or in lower case, `+tag` kept). `None`: no such mailbox. Domains with `mailboxes` are `known_mailbox`'s.
    pub fn reachable_mailbox(&self, domain: &str, local: &str) -> Option<String> {
        let Some(d) = self.accepted_domain(domain) else {
            return Some(local.to_owned());
        };
        if d.mailboxes.is_some() || d.catch_all {
            return Some(local.to_owned());
        }
        if let Some(known) = alias_or_postmaster(d, local) {
            return Some(known);
        }
        // A folder as the client spelled the local part, or in lower case (one or two lookups per RCPT, no
        // directory scan).
        let (base, tag) = split_tag(d, local);
        let store = self.mailbox_stores.iter().find(|s| s.name == d.mailbox_store)?;
        let sluice_config::MailboxStoreKind::Maildir(template) = &store.kind else { return None };
        let lower = base.to_ascii_lowercase();
        [base, lower.as_str()]
            .into_iter()
            .find(|name| template.path_for(&d.domain, name).is_dir())
            .map(|name| format!("{name}{tag}"))
    }

    /// The targets of `local@domain` when it is an alias of an accepted domain (`+tag` and case ignored).
    /// Aliases expand one level: a target is delivered as it is, never expanded again, so no alias can loop.
    pub fn alias_targets(&self, domain: &str, local: &str) -> Option<&[String]> {
        let (d, base, _) = self.accepted_local(domain, local)?;
        d.aliases.iter().find(|(a, _)| a.eq_ignore_ascii_case(base)).map(|(_, t)| t.as_slice())
    }
}

/// The current policy of every connector, updated on reload; sessions read it when they start.
#[derive(Clone)]
pub struct Policies {
    senders: Arc<HashMap<String, watch::Sender<Arc<Policy>>>>,
}

impl Policies {
    pub fn new(config: &Config) -> Policies {
        let senders = config
            .receive_connectors
            .iter()
            .map(|c| (c.name.clone(), watch::channel(Arc::new(Policy::of(config, c.clone()))).0))
            .collect();
        Policies { senders: Arc::new(senders) }
    }

    /// The policy channel of a connector.
    ///
    /// # Panics
    /// When no connector has that name; the binary only asks for names it took from the same config.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<Arc<Policy>> {
        self.senders.get(name).map(watch::Sender::subscribe).expect("a connector of the configuration")
    }

    /// Applies a reloaded configuration to connectors that still exist (listen addresses need a restart).
    pub fn update(&self, config: &Config) {
        for c in &config.receive_connectors {
            if let Some(tx) = self.senders.get(&c.name) {
                let mut connector = c.clone();
                connector.listen = tx.borrow().connector.listen;
                tx.send_replace(Arc::new(Policy::of(config, connector)));
            }
        }
    }
}

/// One listening receive connector.
pub struct Server {
    pub policy: watch::Receiver<Arc<Policy>>,
    pub transport: Transport,
    pub shutdown: CancellationToken,
    /// From [`tls_acceptor`] for the connector's `tls` (a restart applies a change).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Failed logins per client address, one counter for all connectors.
    pub auth_failures: Arc<AuthFailures>,
}

/// What a connector's sessions share.
pub(crate) struct Shared {
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) auth_failures: Arc<auth::Failures>,
    /// Password checks running at once: argon2 takes about 19 MB and tens of milliseconds each, so a
    /// burst of AUTH attempts waits here instead of taking the machine's memory.
    pub(crate) verifications: Semaphore,
}

impl Server {
    /// Accepts connections until shutdown, then waits for sessions to finish their transaction.
    pub async fn run(self, listener: TcpListener) {
        let max = self.policy.borrow().connector.max_connections.max(1) as usize;
        let slots = Arc::new(Semaphore::new(max));
        let per_ip: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, u32>>> = Arc::default();
        let sessions = TaskTracker::new();
        let shared = Arc::new(Shared {
            tls: self.tls.clone(),
            auth_failures: self.auth_failures.clone(),
            verifications: Semaphore::new(auth::CONCURRENT_VERIFICATIONS),
        });
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = self.shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let policy = self.policy.borrow().clone();
            let transport = self.transport.clone();
            let shutdown = self.shutdown.clone();
            let exempt = policy.connector.relay_networks.iter().any(|n| n.contains(peer.ip()));
            let ip_slot = if exempt {
                Some(None)
            } else {
                IpSlot::take(&per_ip, peer.ip(), policy.connector.max_connections_per_ip).map(Some)
            };
            match (slots.clone().try_acquire_owned(), ip_slot) {
                (Ok(permit), Some(ip_slot)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move {
                        session::run(stream, peer, policy, transport, shutdown, shared).await;
                        drop(ip_slot);
                        drop(permit);
                    });
                }
                (Ok(_), None) => {
                    let reply = counted(&self.transport, replies::TOO_MANY_FROM_ADDRESS);
                    sessions.spawn(refuse(stream, peer, policy, reply));
                }
                (Err(_), _) => {
                    let reply = counted(&self.transport, replies::TOO_MANY_CONNECTIONS);
                    sessions.spawn(refuse(stream, peer, policy, reply));
                }
            }
        }
        drop(listener);
        sessions.close();
        sessions.wait().await;
    }
}

/// A refusal of a whole connection, counted by its code.
fn counted(transport: &Transport, reply: replies::Canned) -> replies::Canned {
    transport.counters().smtp_reply(reply.reply().code);
    reply
}

async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr, policy: Arc<Policy>, reply: replies::Canned) {
    use tokio::io::AsyncWriteExt;
    tracing::info!(%peer, connector = %policy.connector.name, "too many connections; refused");
    let _ = stream.write_all(reply.reply().render().as_bytes()).await;
}

/// One connection counted against its client address; the count drops when the session ends.
struct IpSlot {
    map: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, u32>>>,
    ip: std::net::IpAddr,
}

impl IpSlot {
    fn take(
        map: &Arc<std::sync::Mutex<HashMap<std::net::IpAddr, u32>>>,
        ip: std::net::IpAddr,
        max: u32,
    ) -> Option<IpSlot> {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(IpSlot { map: map.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// What exists in every accepted domain, mailbox list or not: its aliases (as the client spelled them; they
/// expand ignoring case) and, RFC 5321 4.5.1, its postmaster.
fn alias_or_postmaster(d: &sluice_config::AcceptedDomain, local: &str) -> Option<String> {
    let (base, tag) = split_tag(d, local);
    if d.aliases.keys().any(|a| a.eq_ignore_ascii_case(base)) {
        Some(local.to_owned())
    } else {
        base.eq_ignore_ascii_case("postmaster").then(|| format!("postmaster{tag}"))
    }
}

/// A local part split at the domain's recipient delimiter: the mailbox, and the `+tag` (delimiter included).
fn split_tag<'a>(d: &sluice_config::AcceptedDomain, local: &'a str) -> (&'a str, &'a str) {
    match d.recipient_delimiter.and_then(|delim| local.find(delim)) {
        Some(at) => local.split_at(at),
        None => (local, ""),
    }
}
