//! Delivery agents: how a copy leaves sluice. SMTP to the hosts DNS names for a domain (MX) or to smart hosts
//! (and LMTP to mailbox servers) with connection reuse, and Maildir for local mailbox stores. The transport
//! decides when; this crate only knows how.

mod client;
mod dns;
mod maildir;

use std::sync::Arc;

use sluice_transport::{BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, Target};

pub use client::{ClientConnection, Protocol, SessionSpec};
pub use dns::{Dns, DnsSettings, Exchanges, NoAddress};
pub use maildir::{MaildirConnection, safe_local_part};

/// The delivery agent of a sluice server.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Our name in EHLO and `Received:`.
    pub hostname: Arc<str>,
    /// The resolver for MX routing and for next hops given by name.
    dns: Dns,
}

impl Agent {
    /// An agent that says `hostname` and resolves names as `dns` says.
    pub fn new(hostname: &str, dns: &DnsSettings) -> Agent {
        Agent { hostname: hostname.into(), dns: Dns::new(dns) }
    }
}

impl DeliveryAgent for Agent {
    fn connect<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Box<dyn DeliveryConnection>, DeliveryError>> {
        Box::pin(async move {
            match target {
                Target::SmartHosts { hosts, session } => {
                    let spec = SessionSpec { helo: &self.hostname, protocol: Protocol::Smtp, session: Some(session) };
                    let c = self.dns.connect_any(hosts, &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Dns { domain, port, session } => {
                    let spec = SessionSpec { helo: &self.hostname, protocol: Protocol::Smtp, session: Some(session) };
                    let c = self.dns.connect_domain(domain, *port, &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Lmtp { address } => {
                    let spec = SessionSpec { helo: &self.hostname, protocol: Protocol::Lmtp, session: None };
                    let c = self.dns.connect_host(address, &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Maildir { template, delimiter } => {
                    Ok(Box::new(MaildirConnection::new(template.clone(), delimiter.clone(), self.hostname.clone()))
                        as Box<dyn DeliveryConnection>)
                }
            }
        })
    }
}
