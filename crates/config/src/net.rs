//! Network values of the configuration: CIDR blocks (`relay_networks`), `host:port` pairs (`smart_hosts`,
//! `lmtp`, scanner and alert addresses) and socket addresses with a default port (`[dns] servers`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// SMTP, for smart hosts and `[alerts] smtp_host` given without a port.
pub(crate) const SMTP_PORT: u16 = 25;
/// LMTP, for a mailbox store's `lmtp` given without a port.
pub(crate) const LMTP_PORT: u16 = 24;
/// DNS, for `[dns] servers` given as bare addresses.
pub(crate) const DNS_PORT: u16 = 53;
/// SpamAssassin's spamd.
pub(crate) const SPAMD_PORT: u16 = 783;
/// ClamAV's clamd.
pub(crate) const CLAMD_PORT: u16 = 3310;

/// An IP network in CIDR notation, e.g. `127.0.0.0/8` or `::1/128`.
///
/// `addr` is stored with its host bits cleared, so two spellings of one network compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl IpNet {
    /// Builds a network, clearing host bits; `None` when the prefix is too long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return None;
                }
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix)))
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return None;
                }
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix)))
            }
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` lies in this network.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, as seen on a dual-stack socket) is treated as the IPv4
    /// address it carries, and an IPv4-mapped network likewise matches plain IPv4 addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (unmap(self.addr, self.prefix), unmap(ip, 128)) {
            ((IpAddr::V4(net), prefix), (IpAddr::V4(ip), _)) => {
                u32::from(ip) & mask32(prefix) == u32::from(net) & mask32(prefix)
            }
            ((IpAddr::V6(net), prefix), (IpAddr::V6(ip), _)) => {
                u128::from(ip) & mask128(prefix) == u128::from(net) & mask128(prefix)
            }
            _ => false,
        }
    }
}

/// Turns an IPv4-mapped IPv6 address (and a prefix of at least 96 bits) into its IPv4 form.
fn unmap(addr: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match addr {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (addr, prefix),
        },
        _ => (addr, prefix),
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    /// Parses `addr/prefix`, or a bare address meaning a single host (`/32` or `/128`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid network {text:?}: expected an address or CIDR block, e.g. \"10.0.0.0/8\"");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => {
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?))
            }
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        IpNet::new(addr, prefix.unwrap_or(max)).ok_or_else(bad)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A host and port, as in `smart_hosts = ["relay.example.test:2526", "[10.0.0.1]"]` or `lmtp = "127.0.0.1:24"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// A host name (lower-cased) or an IP address in text form, without brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// Written as an address literal in brackets (`[10.0.0.1]`): connect to that address, no DNS lookup.
    pub literal: bool,
}

impl HostPort {
    /// Parses `host`, `host:port`, `[ip]`, `[ip]:port`, or a bare IPv6 address; `default_port` fills a missing
    /// port.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid host {text:?}: {why}");
        let parse_port = |port: &str| {
            port.parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))
        };
        if let Some(rest) = text.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
            let ip: IpAddr = inner.parse().map_err(|_| bad("brackets must hold an IP address"))?;
            let port = match after {
                "" => default_port,
                _ => parse_port(after.strip_prefix(':').ok_or_else(|| bad("expected ':' after ']'"))?)?,
            };
            return Ok(HostPort { host: ip.to_string(), port, literal: true });
        }
        // A bare IPv6 address has colons of its own and no port.
        if let Ok(ip) = text.parse::<Ipv6Addr>() {
            return Ok(HostPort { host: ip.to_string(), port: default_port, literal: false });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None => (text, default_port),
        };
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(HostPort { host: ip.to_string(), port, literal: false });
        }
        if !is_host_name(host) {
            return Err(bad("expected a host name or an IP address"));
        }
        Ok(HostPort { host: host.to_ascii_lowercase(), port, literal: false })
    }

    /// The IP address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Renders the value in its configured form, so that [`HostPort::parse`] with the same `default_port`
    /// gives it back: brackets for address literals, the port only when it is not the default
    /// (`relay.test`, `[10.0.0.1]`, `relay.test:2526`). This is also the form of a smart-host NextHopDomain.
    pub fn render(&self, default_port: u16) -> String {
        let ipv6 = self.host.contains(':');
        let host = if self.literal || (ipv6 && self.port != default_port) {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port { host } else { format!("{host}:{}", self.port) }
    }
}

impl fmt::Display for HostPort {
    /// `host:port`, with brackets around literals and IPv6 addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.literal || self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether `name` is a plausible DNS host name: dot-separated labels of letters, digits, `-` and `_`.
pub fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses a socket address, allowing a bare IP address (then `default_port`) and `[v6]:port`.
pub fn parse_socket_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("invalid socket address {text:?}: expected \"ip:port\", e.g. \"127.0.0.1:53\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect(text)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect(text)
    }

    #[test]
    fn networks_parse_and_normalise() {
        let cases: &[(&str, &str)] = &[
            ("127.0.0.0/8", "127.0.0.0/8"),
            ("127.1.2.3/8", "127.0.0.0/8"),
            ("10.0.0.1", "10.0.0.1/32"),
            ("::1/128", "::1/128"),
            ("::1", "::1/128"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ];
        for (text, shown) in cases {
            assert_eq!(net(text).to_string(), *shown, "{text}");
        }
        for text in ["", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "host/8", "10.0.0.0/+8"] {
            assert!(text.parse::<IpNet>().is_err(), "{text}");
        }
    }

    #[test]
    fn contains_matches_prefixes() {
        let cases: &[(&str, &str, bool)] = &[
            ("127.0.0.0/8", "127.0.0.1", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("10.1.0.0/16", "10.1.255.255", true),
            ("10.1.0.0/16", "10.2.0.0", false),
            ("0.0.0.0/0", "192.0.2.1", true),
            ("0.0.0.0/0", "::1", false),
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            // IPv4-mapped IPv6 addresses, as accepted on a dual-stack socket, match IPv4 networks.
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("10.0.0.0/8", "::ffff:11.0.0.1", false),
            // ...and an IPv4-mapped network matches plain IPv4 addresses.
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.9.9.9", false),
            ("::/0", "10.0.0.1", false),
        ];
        for (network, addr, expected) in cases {
            assert_eq!(net(network).contains(ip(addr)), *expected, "{network} contains {addr}");
        }
    }

    #[test]
    fn host_ports_parse() {
        let cases: &[(&str, &str, u16, bool)] = &[
            ("relay.example.test", "relay.example.test", 25, false),
            ("Relay.Example.TEST:2526", "relay.example.test", 2526, false),
            ("127.0.0.1:2526", "127.0.0.1", 2526, false),
            ("127.0.0.1", "127.0.0.1", 25, false),
            ("[10.0.0.1]", "10.0.0.1", 25, true),
            ("[10.0.0.1]:2526", "10.0.0.1", 2526, true),
            ("[IPv6:2001:db8::1]", "2001:db8::1", 25, true),
            ("[::1]:587", "::1", 587, true),
            ("::1", "::1", 25, false),
        ];
        for (text, host, port, literal) in cases {
            let parsed = HostPort::parse(text, 25).expect(text);
            assert_eq!(parsed, HostPort { host: (*host).to_owned(), port: *port, literal: *literal }, "{text}");
            assert_eq!(HostPort::parse(&parsed.render(25), 25), Ok(parsed.clone()), "{text}");
        }
        for text in
            ["", ":25", "host:", "host:0", "host:70000", "[host]", "[10.0.0.1", "[10.0.0.1]x", "bad host", "-a.b"]
        {
            assert!(HostPort::parse(text, 25).is_err(), "{text}");
        }
    }

    #[test]
    fn host_port_display_is_connectable_form() {
        assert_eq!(HostPort::parse("[10.0.0.1]", 25).map(|h| h.to_string()), Ok("[10.0.0.1]:25".to_owned()));
        assert_eq!(HostPort::parse("mx.test", 25).map(|h| h.to_string()), Ok("mx.test:25".to_owned()));
        assert_eq!(HostPort::parse("::1", 24).map(|h| h.to_string()), Ok("[::1]:24".to_owned()));
    }

    #[test]
    fn socket_addrs_take_a_default_port() {
        let cases: &[(&str, &str)] = &[
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("127.0.0.1", "127.0.0.1:53"),
            ("::1", "[::1]:53"),
            ("[::1]", "[::1]:53"),
            ("[::1]:5353", "[::1]:5353"),
        ];
        for (text, expected) in cases {
            let addr = parse_socket_addr(text, 53).expect(text);
            assert_eq!(addr.to_string(), *expected);
            assert_eq!(parse_socket_addr(&addr.to_string(), 53), Ok(addr));
        }
        assert!(parse_socket_addr("localhost:53", 53).is_err());
    }
}
