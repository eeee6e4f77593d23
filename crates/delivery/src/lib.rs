//! Delivery agents: how a copy leaves sluice. SMTP to smart hosts (and LMTP to mailbox servers) with
//! connection reuse, and Maildir for local mailbox stores. The transport decides when; this crate only knows
//! how.

mod client;
mod downgrade;
mod maildir;
mod tls;

use std::sync::Arc;

use sluice_transport::{BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, SendSession, Target};

pub use client::{ClientConnection, Protocol, SessionSpec};
pub use maildir::{MaildirConnection, safe_local_part};
pub use tls::ClientTls;

/// The delivery agent of a sluice server.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Our name in EHLO and `Received:`.
    pub hostname: Arc<str>,
    /// The TLS client configurations every SMTP connection uses: [`ClientTls::native`] in service.
    pub tls: ClientTls,
}

impl Agent {
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
                    let c = ClientConnection::connect_any(hosts, &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Lmtp { address } => {
                    let spec = self.session_spec(Protocol::Lmtp, None);
                    let c = ClientConnection::connect_any(std::slice::from_ref(address), &spec).await?;
                    Ok(Box::new(c) as Box<dyn DeliveryConnection>)
                }
                Target::Maildir { template, delimiter } => {
                    Ok(Box::new(MaildirConnection::new(template.clone(), delimiter.clone(), self.hostname.clone()))
                        as Box<dyn DeliveryConnection>)
                }
                Target::Dns { domain, .. } => Err(DeliveryError::NoMxRouting { domain: domain.clone() }),
            }
        })
    }
}
