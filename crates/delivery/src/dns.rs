//! DNS for delivery: which hosts take mail for a domain (RFC 5321 5.1: MX records by preference, equal
//! preferences in random order, else the domain's own address; RFC 7505: a null MX takes no mail), the
//! addresses of a host, and opening a session with the first of them that answers.
//!
//! One resolver for everything: `[dns] servers` when given, else the system's `/etc/resolv.conf`. Smart hosts
//! given by name resolve through it too; address literals need no lookup.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use sluice_smtp::Reply;
use sluice_transport::{DeliveryError, reply_line};

use crate::client::{ClientConnection, SessionSpec};

/// How long one query waits for its answer, per attempt: a next hop whose DNS does not answer in seconds is
/// tried again later rather than holding a worker.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per query.
const QUERY_ATTEMPTS: usize = 2;

/// `[dns]` as delivery takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// The servers to ask (UDP, then TCP for a truncated answer); empty: the system's `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
}

/// The resolver delivery uses. Cloning shares it (and its cache).
#[derive(Debug, Clone)]
pub struct Dns {
    /// The resolver, or why there is none (the system's configuration could not be read): every lookup then
    /// fails, transiently, with that reason, and address literals still work.
    resolver: Result<TokioResolver, Arc<str>>,
}

/// The hosts that take mail for a domain, most preferred first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanges {
    /// Host names, without the final dot.
    pub hosts: Vec<String>,
    /// The domain has no MX records: its own name is the one host (RFC 5321 5.1, the implicit MX).
    pub implicit: bool,
}

/// Why a host has no address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAddress {
    /// DNS says so: the name does not exist, or has no A or AAAA record.
    None(String),
    /// DNS gave no answer to rely on.
    Failed(String),
}

impl Dns {
    /// The resolver of `settings`. It cannot fail: when the system's configuration cannot be read, the
    /// reason is logged and every lookup fails with it, so that a server without `/etc/resolv.conf` still
    /// delivers to address literals and smart hosts given as addresses.
    pub fn new(settings: &DnsSettings) -> Dns {
        let resolver = build(settings).map_err(|e| {
            let why: Arc<str> = format!("no DNS resolver: {e}").into();
            tracing::warn!(error = %why, "DNS lookups will fail; set [dns] servers");
            why
        });
        Dns { resolver }
    }

    fn resolver(&self, name: &str) -> Result<&TokioResolver, DeliveryError> {
        self.resolver.as_ref().map_err(|why| DeliveryError::Dns { domain: name.to_owned(), why: why.to_string() })
    }

    /// The hosts that take mail for `domain`, most preferred first, equal preferences shuffled.
    ///
    /// A domain that does not exist, or publishes a null MX, takes no mail: [`DeliveryError::NoRoute`]
    /// (`550 5.1.2`, `556 5.1.10`). A failed lookup is [`DeliveryError::Dns`], tried again later.
    pub async fn exchanges(&self, domain: &str) -> Result<Exchanges, DeliveryError> {
        let name = fqdn(domain).ok_or_else(|| no_route(domain, 550, "5.1.2", "is not a valid domain name"))?;
        let lookup = match self.resolver(domain)?.mx_lookup(name).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_nx_domain() => return Err(no_route(domain, 550, "5.1.2", "does not exist (NXDOMAIN)")),
            Err(e) if e.is_no_records_found() => return Ok(implicit(domain)),
            Err(e) => return Err(lookup_failed(domain, &e)),
        };
        let mut mx: Vec<(u16, Name)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                _ => None,
            })
            .collect();
        if mx.is_empty() {
            return Ok(implicit(domain));
        }
        // RFC 7505 3: a null MX is the domain's only MX; one beside real ones is a mistake and is skipped.
        mx.retain(|(_, exchange)| !exchange.is_root());
        if mx.is_empty() {
            return Err(no_route(domain, 556, "5.1.10", "accepts no mail (null MX)"));
        }
        mx.sort_by_key(|(preference, _)| *preference);
        shuffle_equal_preferences(&mut mx, &mut Shuffle::seeded());
        let mut hosts: Vec<String> = Vec::with_capacity(mx.len());
        for (_, exchange) in mx {
            let host = host_name(&exchange);
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Ok(Exchanges { hosts, implicit: false })
    }

    /// The addresses of `host` (A, then AAAA).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, NoAddress> {
        let name = fqdn(host).ok_or_else(|| NoAddress::None("not a valid host name".into()))?;
        let resolver = self.resolver.as_ref().map_err(|why| NoAddress::Failed(why.to_string()))?;
        match resolver.lookup_ip(name).await {
            Ok(ips) => {
                let ips: Vec<IpAddr> = ips.iter().collect();
                if ips.is_empty() { Err(NoAddress::None("no A or AAAA record".into())) } else { Ok(ips) }
            }
            Err(e) if e.is_nx_domain() => Err(NoAddress::None("NXDOMAIN".into())),
            Err(e) if e.is_no_records_found() => Err(NoAddress::None("no A or AAAA record".into())),
            Err(e) => Err(NoAddress::Failed(e.to_string())),
        }
    }

    /// Opens a session with a host that takes mail for `domain`, on `port`: every address of every host,
    /// in order of preference, until one greets and answers EHLO. A domain literal (`[192.0.2.1]`,
    /// `[IPv6:2001:db8::1]`) is connected to directly.
    ///
    /// When none does, the error names every host and address tried, with what each said.
    pub async fn connect_domain(
        &self,
        domain: &str,
        port: u16,
        spec: &SessionSpec<'_>,
    ) -> Result<ClientConnection, DeliveryError> {
        if domain.starts_with('[') {
            let ip = domain_literal(domain)
                .ok_or_else(|| no_route(domain, 550, "5.1.3", "is not a valid address literal"))?;
            let addr = SocketAddr::new(ip, port);
            return ClientConnection::connect_to(addr, &ip.to_string(), &format!("{domain}:{port}"), spec).await;
        }
        let exchanges = self.exchanges(domain).await?;
        let mut tried = Vec::new();
        let mut connected = false;
        for host in &exchanges.hosts {
            let ips = match self.addresses(host).await {
                Ok(ips) => ips,
                // Without MX records the domain's own address is its one host; without that, no host.
                Err(NoAddress::None(_)) if exchanges.implicit => {
                    return Err(no_route(domain, 550, "5.1.2", "has no MX record and no address"));
                }
                Err(NoAddress::Failed(why)) if exchanges.implicit => {
                    return Err(DeliveryError::Dns { domain: domain.to_owned(), why });
                }
                Err(NoAddress::None(why)) => {
                    tried.push(format!("{host}: no address ({why})"));
                    continue;
                }
                Err(NoAddress::Failed(why)) => {
                    tried.push(format!("{host}: address lookup failed ({why})"));
                    continue;
                }
            };
            for ip in ips {
                connected = true;
                let peer = format!("{host}[{ip}]:{port}");
                match ClientConnection::connect_to(SocketAddr::new(ip, port), host, &peer, spec).await {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::debug!(peer = %peer, error = %reply_line(&e.reply()), "next hop failed");
                        tried.push(attempt_text(&e));
                    }
                }
            }
        }
        Err(DeliveryError::HostsFailed { domain: domain.to_owned(), tried, connected })
    }

    /// Opens a session with a host given as configured (`host:port`, `[addr]:port`, `host`: port 25): an
    /// address is connected to directly, a name through this resolver, each of its addresses in turn.
    pub async fn connect_host(
        &self,
        host_port: &str,
        spec: &SessionSpec<'_>,
    ) -> Result<ClientConnection, DeliveryError> {
        let (host, port) = split_host(host_port);
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match self.addresses(&host).await {
                Ok(ips) => ips,
                Err(NoAddress::None(why) | NoAddress::Failed(why)) => {
                    return Err(DeliveryError::Dns { domain: host, why });
                }
            },
        };
        let mut last = DeliveryError::NoNextHop;
        for ip in ips {
            match ClientConnection::connect_to(SocketAddr::new(ip, port), &host, host_port, spec).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Tries each host (`host:port` as configured) in order; the first that greets and answers EHLO wins,
    /// else the last failure is the attempt's.
    pub async fn connect_any(
        &self,
        hosts: &[String],
        spec: &SessionSpec<'_>,
    ) -> Result<ClientConnection, DeliveryError> {
        let mut last = DeliveryError::NoNextHop;
        for host in hosts {
            match self.connect_host(host, spec).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(host = %host, error = %reply_line(&e.reply()), "next hop failed");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// The resolver of `settings`: short timeouts, two attempts, UDP with TCP when an answer is truncated or UDP
/// fails, A before AAAA.
fn build(settings: &DnsSettings) -> Result<TokioResolver, NetError> {
    let mut builder = if settings.servers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers = settings
            .servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
            .with_options(ResolverOpts::default())
    };
    let options = builder.options_mut();
    options.timeout = QUERY_TIMEOUT;
    options.attempts = QUERY_ATTEMPTS;
    options.try_tcp_on_error = true;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build()
}

/// `name` as an absolute domain name, so that no search domain is appended; `None` if it is not one.
fn fqdn(name: &str) -> Option<Name> {
    let mut name = Name::from_utf8(name.trim_end_matches('.')).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A host name as it is shown and used for SNI: ASCII, without the final dot.
fn host_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_owned()
}

/// The implicit MX: the domain itself.
fn implicit(domain: &str) -> Exchanges {
    Exchanges { hosts: vec![domain.trim_end_matches('.').to_owned()], implicit: true }
}

/// The permanent failure of a domain that takes no mail.
fn no_route(domain: &str, code: u16, enhanced: &'static str, what: &str) -> DeliveryError {
    DeliveryError::NoRoute { domain: domain.to_owned(), reply: Reply::new(code, enhanced, format!("{domain} {what}")) }
}

fn lookup_failed(domain: &str, e: &NetError) -> DeliveryError {
    DeliveryError::Dns { domain: domain.to_owned(), why: e.to_string() }
}

/// How one failed address is named in the attempt's error: the next hop's own reply with its code when it
/// refused the session, else what went wrong (which names the peer).
fn attempt_text(e: &DeliveryError) -> String {
    match e {
        DeliveryError::Refused { .. } | DeliveryError::Closing(_) => reply_line(&e.reply()),
        _ => e.to_string(),
    }
}

/// The address of a domain literal (RFC 5321 4.1.3): `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn domain_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => inner[5..].parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// `host:port`, `[addr]:port`, `[addr]` or `host` (port 25).
pub(crate) fn split_host(spec: &str) -> (String, u16) {
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h.to_owned(), p.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest.to_owned(), None),
        }
    } else {
        match spec.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
            _ => (spec.to_owned(), None),
        }
    };
    (host, port.unwrap_or(25))
}

/// A small xorshift generator for the order of equal preferences: spreading load needs no more.
struct Shuffle(u64);

impl Shuffle {
    /// Seeded from std's per-process random keys (a new `RandomState` hashes differently each time).
    fn seeded() -> Shuffle {
        Shuffle(RandomState::new().hash_one(0u64) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Shuffles each run of equal preferences in a list sorted by preference (RFC 5321 5.1: hosts of equal
/// preference are tried in random order, to spread the load).
fn shuffle_equal_preferences<T>(sorted: &mut [(u16, T)], rng: &mut Shuffle) {
    let mut start = 0;
    while start < sorted.len() {
        let preference = sorted[start].0;
        let end = start + sorted[start..].iter().take_while(|(p, _)| *p == preference).count();
        // Fisher–Yates over the run.
        for i in (start + 1..end).rev() {
            let j = start + rng.below(i - start + 1);
            sorted.swap(i, j);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests;
