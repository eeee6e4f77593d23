//! Delivery agents: how a copy leaves sluice. SMTP to the hosts DNS names for a domain (MX) or to smart hosts
//! (and LMTP to mailbox servers) with connection reuse, and Maildir for local mailbox stores. The transport
//! decides when; this crate only knows how.

mod client;
mod dns;
mod downgrade;
mod maildir;
mod tls;

use std::sync::Arc;

use sluice_transport::{BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, SendSession, Target};

pub use client::{ClientConnection, Protocol, SessionSpec};
pub use dns::{Dns, DnsSettings, Exchanges, NoAddress};
pub use maildir::{MaildirConnection, safe_local_part};
pub use tls::ClientTls;

/// The delivery agent of a sluice server.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Our name in EHLO and `Received:`.
    pub hostname: Arc<str>,
    /// The resolver for MX routing and for next hops given by name.
    dns: Dns,
    /// The TLS client configurations every SMTP connection uses: [`ClientTls::native`] in service.
    tls: ClientTls,
}

impl Agent {
    /// An agent that says `hostname`, resolves names as `dns` says and starts TLS with `tls`.
    pub fn new(hostname: &str, dns: &DnsSettings, tls: ClientTls) -> Agent {
        Agent { hostname: hostname.into(), dns: Dns::new(dns), tls }
    }

    /// How this agent opens a session: its name, `protocol`, a send connector's settings (`None` for LMTP)
    /// and its TLS configurations.
    pub fn session_spec<'a>(&'a self, protocol: Protocol, session: Option<&'a SendSession>) -> SessionSpec<'a> {
        SessionSpec { helo: &self.hostname, protocol, session, tls: &self.tls }
    }
}

impl DeliveryAgent for Agent {
    fn connect<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Box<dyn DeliveryConnection>, DeliveryError>> {
        Box::pin(async move {
            match target {
                Target::SmartHosts { hosts, session } => {
                    let spec = self.session_spec(Protocol::Smtp, Some(session));
                    let c = self.dns.connect_any(hosts, &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Dns { domain, port, session } => {
                    let spec = self.session_spec(Protocol::Smtp, Some(session));
                    let c = self.dns.connect_domain(domain, *port, &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Lmtp { address } => {
                    let spec = self.session_spec(Protocol::Lmtp, None);
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
