//! Routing tables: where a recipient goes. Built by the binary from the configuration and swapped whole on
//! reload, so that new routing applies to new work while work in flight keeps the table it started with.

use std::collections::HashMap;
use std::time::Duration;

use crate::queue::{DeliveryType, NextHopSolutionKey};

/// A mailbox store: where mail for accepted domains is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStore {
    pub name: String,
    pub guid: String,
    pub kind: StoreKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A path template with `{domain}` and `{local}`.
    Maildir(String),
    /// `host:port` of an LMTP server.
    Lmtp(String),
}

/// An accepted domain and the store its mail goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedDomain {
    /// Lower-case.
    pub domain: String,
    pub store: String,
    pub recipient_delimiter: String,
}

/// A send connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConnector {
    pub name: String,
    pub guid: String,
    /// `*`, `*.example.com` or `example.com`, lower-case.
    pub address_spaces: Vec<String>,
    /// `host:port` entries as configured; empty for DNS routing.
    pub smart_hosts: Vec<String>,
    /// The port of the hosts DNS routing finds.
    pub port: u16,
    /// How its sessions go.
    pub session: SendSession,
}

/// How a send connector's SMTP sessions go, whatever host they reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSession {
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// Credentials for AUTH (smart hosts only; sent only over TLS).
    pub auth: Option<Credentials>,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
}

impl Default for SendSession {
    fn default() -> SendSession {
        SendSession { tls: TlsPolicy::Opportunistic, auth: None, max_messages_per_connection: 100 }
    }
}

/// A send connector's `tls`: whether and how its sessions use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when the next hop offers it, without certificate checks; plain text when it does not.
    Opportunistic,
    /// STARTTLS with a verified certificate (system roots, SNI, TLS 1.2 or later), or no delivery (`4.7.5`).
    Required,
    /// Never STARTTLS.
    Off,
}

/// A user name and password for AUTH PLAIN or LOGIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// Where a delivery queue's messages are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The connector's smart hosts, tried in order.
    SmartHosts {
        hosts: Vec<String>,
        session: SendSession,
    },
    /// The hosts DNS names for `domain` (MX, else A/AAAA), on `port`.
    Dns {
        domain: String,
        port: u16,
        session: SendSession,
    },
    Maildir {
        template: String,
        delimiter: String,
    },
    Lmtp {
        address: String,
    },
}

impl Target {
    /// Messages sent over one connection before it is closed.
    pub fn max_messages_per_connection(&self) -> usize {
        match self {
            Target::SmartHosts { session, .. } | Target::Dns { session, .. } => session.max_messages_per_connection,
            Target::Maildir { .. } | Target::Lmtp { .. } => usize::MAX,
        }
    }
}

/// Retry, expiry and concurrency settings of `[transport]` that the queues use (docs/operations.md, "Retry,
/// expiry and delay notices").
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Queue-level failures (no connection, or the session failed as a whole) that wait
    /// `queue_glitch_retry_interval`: the first ones after the queue last delivered.
    pub queue_glitch_retry_count: u32,
    pub queue_glitch_retry_interval: Duration,
    /// The queue-level failures after the glitch retries that wait `transient_failure_retry_interval`.
    pub transient_failure_retry_count: u32,
    pub transient_failure_retry_interval: Duration,
    /// What every queue-level failure after those waits.
    pub outbound_connection_failure_retry_interval: Duration,
    /// What a copy waits after a recipient-level transient reply (4xx); its queue is not held.
    pub message_retry_interval: Duration,
    /// A message still queued this long after it was received expires: its recipients fail (`4.4.7`). A
    /// delay notice names the end (`Will-Retry-Until:`).
    pub message_expiration_timeout: Duration,
    /// A message still queued this long after it was received gets its one delay notice; zero sends none.
    pub delay_notification_timeout: Duration,
    /// An empty delivery queue (no copies, no workers), not suspended, is deleted after this long.
    pub queue_max_idle_time: Duration,
    /// A queue in Retry that delivered nothing for this long has its messages categorized again.
    pub max_idle_time_before_resubmit: Duration,
    /// Delivery connections open (or being opened) at once, across every queue.
    pub max_outbound_connections: usize,
    /// Delivery connections per delivery queue.
    pub max_per_domain_outbound_connections: usize,
    /// Messages a minute to one next hop at most; 0: no limit (`throttle.rs`).
    pub max_per_domain_messages_per_minute: u32,
    /// How long an idle delivery connection is kept open for the next message.
    pub connection_idle: Duration,
    /// Crashes (of the process, or panics while it was processed) a message is blamed for before it goes to
    /// Poison (`poison.rs`).
    pub poison_threshold: u32,
    /// The messages a delivery queue needs to be counted in the queue digest (Submission, Unreachable,
    /// Poison and suspended queues count from one).
    pub digest_threshold: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue_glitch_retry_count: 4,
            queue_glitch_retry_interval: Duration::from_secs(60),
            transient_failure_retry_count: 6,
            transient_failure_retry_interval: Duration::from_secs(300),
            outbound_connection_failure_retry_interval: Duration::from_secs(600),
            message_retry_interval: Duration::from_secs(900),
            message_expiration_timeout: Duration::from_secs(2 * 86_400),
            delay_notification_timeout: Duration::from_secs(4 * 3_600),
            queue_max_idle_time: Duration::from_secs(180),
            max_idle_time_before_resubmit: Duration::from_secs(12 * 3_600),
            max_outbound_connections: 1000,
            max_per_domain_outbound_connections: 40,
            max_per_domain_messages_per_minute: 0,
            connection_idle: Duration::from_secs(5),
            poison_threshold: 2,
            digest_threshold: 10,
        }
    }
}

impl Limits {
    /// How long a queue waits after its `failures`-th queue-level failure in a row (counted from 1): the
    /// first `queue_glitch_retry_count` wait `queue_glitch_retry_interval`, the next
    /// `transient_failure_retry_count` wait `transient_failure_retry_interval`, and every one after them
    /// `outbound_connection_failure_retry_interval`.
    pub fn queue_retry_interval(&self, failures: u32) -> Duration {
        let glitches = self.queue_glitch_retry_count;
        if failures <= glitches {
            self.queue_glitch_retry_interval
        } else if failures - glitches <= self.transient_failure_retry_count {
            self.transient_failure_retry_interval
        } else {
            self.outbound_connection_failure_retry_interval
        }
    }
}

/// The whole routing table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    pub stores: Vec<MailboxStore>,
    pub accepted_domains: Vec<AcceptedDomain>,
    pub send_connectors: Vec<SendConnector>,
    pub limits: Limits,
}

/// The result of routing one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Deliver { key: NextHopSolutionKey, target: Target },
    Unreachable { reason: String },
}

impl Routing {
    /// Is `domain` (any case) one of ours?
    pub fn is_accepted(&self, domain: &str) -> bool {
        self.accepted(domain).is_some()
    }

    fn accepted(&self, domain: &str) -> Option<&AcceptedDomain> {
        let domain = domain.trim_end_matches('.');
        self.accepted_domains.iter().find(|d| d.domain.eq_ignore_ascii_case(domain))
    }

    /// Routes one recipient address.
    pub fn route(&self, address: &str) -> Route {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
        if let Some(accepted) = self.accepted(&domain) {
            let Some(store) = self.stores.iter().find(|s| s.name == accepted.store) else {
                return Route::Unreachable { reason: format!("mailbox store {} is not configured", accepted.store) };
            };
            let target = match &store.kind {
                StoreKind::Maildir(t) => {
                    Target::Maildir { template: t.clone(), delimiter: accepted.recipient_delimiter.clone() }
                }
                StoreKind::Lmtp(a) => Target::Lmtp { address: a.clone() },
            };
            let key = NextHopSolutionKey {
                delivery_type: DeliveryType::SmtpDeliveryToMailbox,
                next_hop_domain: store.name.clone(),
                next_hop_connector: store.guid.clone(),
            };
            return Route::Deliver { key, target };
        }
        let best = self
            .send_connectors
            .iter()
            .filter_map(|c| c.address_spaces.iter().filter_map(|s| specificity(s, &domain)).max().map(|s| (s, c)))
            .max_by_key(|(s, _)| *s);
        let Some((_, c)) = best else {
            return Route::Unreachable { reason: format!("no send connector for domain {domain}") };
        };
        if c.smart_hosts.is_empty() {
            let key = NextHopSolutionKey {
                delivery_type: DeliveryType::DnsConnectorDelivery,
                next_hop_domain: domain.clone(),
                next_hop_connector: c.guid.clone(),
            };
            let target = Target::Dns { domain, port: c.port, session: c.session.clone() };
            Route::Deliver { key, target }
        } else {
            let key = NextHopSolutionKey {
                delivery_type: DeliveryType::SmartHostConnectorDelivery,
                next_hop_domain: c.smart_hosts.join(","),
                next_hop_connector: c.guid.clone(),
            };
            let target = Target::SmartHosts { hosts: c.smart_hosts.clone(), session: c.session.clone() };
            Route::Deliver { key, target }
        }
    }

    /// The target of an existing queue's key under this table, if the connector or store still exists
    /// unchanged.
    pub fn target_for(&self, key: &NextHopSolutionKey) -> Option<Target> {
        match key.delivery_type {
            DeliveryType::SmtpDeliveryToMailbox => {
                let store = self.stores.iter().find(|s| s.guid == key.next_hop_connector)?;
                let delimiter = self
                    .accepted_domains
                    .iter()
                    .find(|d| d.store == store.name)
                    .map_or_else(|| "+".to_owned(), |d| d.recipient_delimiter.clone());
                Some(match &store.kind {
                    StoreKind::Maildir(t) => Target::Maildir { template: t.clone(), delimiter },
                    StoreKind::Lmtp(a) => Target::Lmtp { address: a.clone() },
                })
            }
            DeliveryType::SmartHostConnectorDelivery => {
                let c = self.send_connectors.iter().find(|c| c.guid == key.next_hop_connector)?;
                (c.smart_hosts.join(",") == key.next_hop_domain)
                    .then(|| Target::SmartHosts { hosts: c.smart_hosts.clone(), session: c.session.clone() })
            }
            DeliveryType::DnsConnectorDelivery => {
                let c = self.send_connectors.iter().find(|c| c.guid == key.next_hop_connector)?;
                c.smart_hosts.is_empty().then(|| Target::Dns {
                    domain: key.next_hop_domain.clone(),
                    port: c.port,
                    session: c.session.clone(),
                })
            }
            _ => None,
        }
    }
}

/// How specifically an address space matches a domain: `None` for no match; exact beats wildcards, longer
/// wildcards beat shorter ones, `*` matches everything least specifically.
fn specificity(space: &str, domain: &str) -> Option<usize> {
    let space = space.to_ascii_lowercase();
    if space == "*" {
        return Some(0);
    }
    if let Some(suffix) = space.strip_prefix("*.") {
        let matches = domain == suffix || domain.ends_with(&format!(".{suffix}"));
        return matches.then_some(1 + suffix.len());
    }
    (space == domain).then_some(usize::MAX)
}

/// A map from NextHopSolutionKey to the queue's number.
pub(crate) type KeyIndex = HashMap<NextHopSolutionKey, sluice_queue_db::QueueId>;

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Routing {
        Routing {
            stores: vec![MailboxStore {
                name: "Local Maildir".into(),
                guid: "g-store".into(),
                kind: StoreKind::Maildir("/m/{domain}/{local}".into()),
            }],
            accepted_domains: vec![AcceptedDomain {
                domain: "localhost".into(),
                store: "Local Maildir".into(),
                recipient_delimiter: "+".into(),
            }],
            send_connectors: vec![
                SendConnector {
                    name: "Internet".into(),
                    guid: "g-any".into(),
                    address_spaces: vec!["*".into()],
                    smart_hosts: vec!["127.0.0.1:2526".into()],
                    port: 25,
                    session: SendSession::default(),
                },
                SendConnector {
                    name: "Partner".into(),
                    guid: "g-partner".into(),
                    address_spaces: vec!["*.partner.test".into()],
                    smart_hosts: vec![],
                    port: 25,
                    session: SendSession::default(),
                },
            ],
            limits: Limits::default(),
        }
    }

    #[test]
    fn accepted_domains_route_to_their_store_case_insensitively() {
        let Route::Deliver { key, .. } = table().route("User@LocalHost") else { panic!() };
        assert_eq!(key.delivery_type, DeliveryType::SmtpDeliveryToMailbox);
        assert_eq!(key.next_hop_domain, "Local Maildir");
    }

    #[test]
    fn the_most_specific_address_space_wins() {
        let Route::Deliver { key, .. } = table().route("a@mx.partner.test") else { panic!() };
        assert_eq!(key.delivery_type, DeliveryType::DnsConnectorDelivery);
        assert_eq!(key.next_hop_domain, "mx.partner.test");
        let Route::Deliver { key, .. } = table().route("a@example.org") else { panic!() };
        assert_eq!(key.delivery_type, DeliveryType::SmartHostConnectorDelivery);
        assert_eq!(key.next_hop_domain, "127.0.0.1:2526");
    }

    #[test]
    fn queue_failures_wait_glitch_then_transient_then_connection_failure_intervals() {
        let l = Limits::default();
        let waits: Vec<u64> = (1..=13).map(|n| l.queue_retry_interval(n).as_secs()).collect();
        assert_eq!(waits, [60, 60, 60, 60, 300, 300, 300, 300, 300, 300, 600, 600, 600]);
        let l = Limits { queue_glitch_retry_count: 0, transient_failure_retry_count: 1, ..Limits::default() };
        assert_eq!(l.queue_retry_interval(1).as_secs(), 300);
        assert_eq!(l.queue_retry_interval(2).as_secs(), 600);
    }

    #[test]
    fn without_a_connector_recipients_are_unreachable() {
        let mut t = table();
        t.send_connectors.clear();
        assert!(matches!(t.route("a@example.org"), Route::Unreachable { .. }));
    }
}
