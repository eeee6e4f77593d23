//! A small authoritative DNS responder for tests: it serves a zone given in code over UDP and TCP on a
//! loopback port, so that MX routing can be tested without real DNS.
//!
//! A name with records of the asked type gets them (`NOERROR`, authoritative); a name with records of
//! other types only gets an empty answer (`NODATA`); a name marked [`Zone::nxdomain`] gets `NXDOMAIN`, one
//! marked [`Zone::servfail`] gets `SERVFAIL`; every other name gets `REFUSED`, so that a test that forgot a
//! name sees a transient failure rather than a silent "does not exist". Over UDP, a name marked
//! [`Zone::truncated`] gets a truncated answer, to be asked again over TCP.
//!
//! The server runs on a thread of its own with its own runtime, so that both async unit tests and plain
//! threads (the binary's end-to-end tests) can use it. It stops when the [`TestDns`] is dropped.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The time to live of every record served.
const TTL: u32 = 60;

/// The records and the negative answers the server gives, by name (case-insensitive, with or without the
/// final dot).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    records: HashMap<String, Vec<RData>>,
    nxdomain: HashSet<String>,
    servfail: HashSet<String>,
    truncated: HashSet<String>,
}

/// A name as the zone keys it: lower-case, without the final dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A name as it goes into a record: fully qualified.
fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_utf8(name).map_err(|e| format!("{name}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

impl Zone {
    /// An empty zone: every name is refused.
    pub fn new() -> Zone {
        Zone::default()
    }

    /// An MX record of `domain`. An `exchange` of `"."` makes it a null MX (RFC 7505, with preference 0).
    ///
    /// # Panics
    /// When `exchange` is not a domain name (a test's mistake).
    pub fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Zone {
        let exchange = if exchange == "." { Name::root() } else { fqdn(exchange).expect("a valid exchange name") };
        self.records.entry(key(domain)).or_default().push(RData::MX(MX::new(preference, exchange)));
        self
    }

    /// An A record.
    pub fn a(mut self, name: &str, address: Ipv4Addr) -> Zone {
        self.records.entry(key(name)).or_default().push(RData::A(A(address)));
        self
    }

    /// An AAAA record.
    pub fn aaaa(mut self, name: &str, address: Ipv6Addr) -> Zone {
        self.records.entry(key(name)).or_default().push(RData::AAAA(AAAA(address)));
        self
    }

    /// `name` exists and has no records: every query for it gets an empty answer (`NODATA`).
    pub fn empty(mut self, name: &str) -> Zone {
        self.records.entry(key(name)).or_default();
        self
    }

    /// `name` does not exist.
    pub fn nxdomain(mut self, name: &str) -> Zone {
        self.nxdomain.insert(key(name));
        self
    }

    /// Queries for `name` fail with `SERVFAIL`.
    pub fn servfail(mut self, name: &str) -> Zone {
        self.servfail.insert(key(name));
        self
    }

    /// Answers for `name` over UDP come truncated (the TC bit, no records), so that a client must ask again
    /// over TCP.
    pub fn truncated(mut self, name: &str) -> Zone {
        self.truncated.insert(key(name));
        self
    }

    /// Adds one record written as on the command line of `sluice-testdns`:
    /// `MX:domain:preference:exchange`, `A:name:address`, `AAAA:name:address` (the address after the
    /// second colon, so it may hold colons), `NXDOMAIN:name` or `SERVFAIL:name`.
    pub fn add_spec(self, spec: &str) -> Result<Zone, String> {
        let (kind, rest) = spec.split_once(':').ok_or_else(|| format!("{spec}: expected KIND:..."))?;
        let bad = |what: &str| format!("{spec}: {what}");
        match kind.to_ascii_uppercase().as_str() {
            "MX" => {
                let mut parts = rest.splitn(3, ':');
                let (Some(domain), Some(preference), Some(exchange)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad("expected MX:domain:preference:exchange"));
                };
                let preference = preference.parse().map_err(|_| bad("bad preference"))?;
                if exchange != "." {
                    fqdn(exchange)?;
                }
                Ok(self.mx(domain, preference, exchange))
            }
            "A" => {
                let (name, address) = rest.split_once(':').ok_or_else(|| bad("expected A:name:address"))?;
                Ok(self.a(name, address.parse().map_err(|_| bad("bad IPv4 address"))?))
            }
            "AAAA" => {
                let (name, address) = rest.split_once(':').ok_or_else(|| bad("expected AAAA:name:address"))?;
                Ok(self.aaaa(name, address.parse().map_err(|_| bad("bad IPv6 address"))?))
            }
            "NXDOMAIN" => Ok(self.nxdomain(rest)),
            "SERVFAIL" => Ok(self.servfail(rest)),
            _ => Err(bad("unknown kind (MX, A, AAAA, NXDOMAIN, SERVFAIL)")),
        }
    }

    /// The answer to one query: the response code and the records.
    fn answer(&self, name: &Name, record_type: RecordType) -> (ResponseCode, Vec<Record>) {
        let k = key(&name.to_utf8());
        if self.servfail.contains(&k) {
            return (ResponseCode::ServFail, Vec::new());
        }
        if self.nxdomain.contains(&k) {
            return (ResponseCode::NXDomain, Vec::new());
        }
        let Some(rdatas) = self.records.get(&k) else {
            return (ResponseCode::Refused, Vec::new());
        };
        let records = rdatas
            .iter()
            .filter(|r| r.record_type() == record_type)
            .map(|r| Record::from_rdata(name.clone(), TTL, r.clone()))
            .collect();
        (ResponseCode::NoError, records)
    }

    /// The response to a request in wire form, received over UDP or TCP; `None` for bytes that are not a
    /// query.
    fn respond(&self, request: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        if request.edns.is_some() {
            response.set_edns(Edns::new());
        }
        let code = match request.queries.first() {
            Some(query) => {
                let (code, records) = self.answer(&query.name, query.query_type);
                response.add_query(query.clone());
                if udp && self.truncated.contains(&key(&query.name.to_utf8())) {
                    response.metadata.truncation = true;
                } else {
                    response.add_answers(records);
                }
                code
            }
            None => ResponseCode::FormErr,
        };
        response.metadata.response_code = code;
        response.to_vec().ok()
    }
}

/// A running test DNS server on `127.0.0.1`, UDP and TCP on the same port. Dropping it stops it.
pub struct TestDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestDns {
    /// Binds `127.0.0.1:0` (UDP, then TCP on the same port) and serves `zone` on a thread of its own.
    pub fn start(zone: Zone) -> io::Result<TestDns> {
        TestDns::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), zone)
    }

    /// Like [`TestDns::start`], on `addr` (port 0: any free one).
    pub fn start_on(addr: SocketAddr, zone: Zone) -> io::Result<TestDns> {
        // The same port for both: a free UDP port whose TCP twin is taken is tried again.
        let (udp, tcp) = bind_pair(addr)?;
        let addr = udp.local_addr()?;
        let queries = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let counted = queries.clone();
        std::thread::Builder::new().name(format!("testdns {addr}")).spawn(move || {
            runtime.block_on(async move {
                let (Ok(udp), Ok(tcp)) = (tokio::net::UdpSocket::from_std(udp), tokio::net::TcpListener::from_std(tcp))
                else {
                    return;
                };
                let zone = Arc::new(zone);
                tokio::select! {
                    _ = stopped => {}
                    _ = serve_udp(udp, zone.clone(), counted.clone()) => {}
                    _ = serve_tcp(tcp, zone, counted) => {}
                }
            });
        })?;
        Ok(TestDns { addr, queries, stop: Some(stop) })
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries it has answered.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A UDP socket and a TCP listener on the same address, both non-blocking.
fn bind_pair(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind(addr)?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

async fn serve_udp(socket: tokio::net::UdpSocket, zone: Arc<Zone>, queries: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        if let Some(response) = zone.respond(&buf[..n], true) {
            queries.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&response, from).await;
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, zone: Arc<Zone>, queries: Arc<AtomicUsize>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let (zone, queries) = (zone.clone(), queries.clone());
        tokio::spawn(async move {
            // RFC 1035 4.2.2: each message is preceded by its length in two octets.
            loop {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut request).await.is_err() {
                    return;
                }
                let Some(response) = zone.respond(&request, false) else { return };
                queries.fetch_add(1, Ordering::Relaxed);
                let Ok(len) = u16::try_from(response.len()) else { return };
                let mut out = len.to_be_bytes().to_vec();
                out.extend_from_slice(&response);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, record_type: RecordType, tcp: bool, server: &TestDns) -> Message {
        let mut q = Message::query();
        q.add_query(hickory_proto::op::Query::query(fqdn(name).unwrap(), record_type));
        let wire = q.to_vec().unwrap();
        let bytes = if tcp {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
            let mut out = (wire.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&wire);
            s.write_all(&out).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            body
        } else {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            s.send_to(&wire, server.addr()).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        let response = Message::from_vec(&bytes).unwrap();
        assert_eq!(response.metadata.id, q.metadata.id);
        response
    }

    #[test]
    fn each_kind_of_name_gets_its_answer_over_udp_and_tcp() {
        let zone = Zone::new()
            .mx("two.test", 10, "mx1.two.test")
            .mx("two.test", 20, "mx2.two.test")
            .a("mx1.two.test", Ipv4Addr::new(127, 0, 0, 2))
            .add_spec("AAAA:mx1.two.test:::1")
            .unwrap()
            .nxdomain("gone.test")
            .servfail("broken.test")
            .truncated("big.test")
            .a("big.test", Ipv4Addr::LOCALHOST);
        let server = TestDns::start(zone).unwrap();
        for tcp in [false, true] {
            let r = query("Two.Test", RecordType::MX, tcp, &server);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            let mut mx: Vec<(u16, String)> = r
                .answers
                .iter()
                .map(|a| match &a.data {
                    RData::MX(mx) => (mx.preference, mx.exchange.to_utf8()),
                    other => panic!("{other:?}"),
                })
                .collect();
            mx.sort();
            assert_eq!(mx, [(10, "mx1.two.test.".to_owned()), (20, "mx2.two.test.".to_owned())]);
            let r = query("mx1.two.test", RecordType::AAAA, tcp, &server);
            assert_eq!(r.answers.len(), 1, "{r:?}");
            assert!(matches!(r.answers[0].data, RData::AAAA(AAAA(a)) if a == Ipv6Addr::LOCALHOST));
            let r = query("mx1.two.test", RecordType::MX, tcp, &server);
            assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
            assert_eq!(query("gone.test", RecordType::MX, tcp, &server).metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(
                query("broken.test", RecordType::A, tcp, &server).metadata.response_code,
                ResponseCode::ServFail
            );
            assert_eq!(
                query("unknown.test", RecordType::A, tcp, &server).metadata.response_code,
                ResponseCode::Refused
            );
            let r = query("big.test", RecordType::A, tcp, &server);
            assert_eq!((r.metadata.truncation, r.answers.len()), (!tcp, usize::from(tcp)), "{r:?}");
        }
        assert_eq!(server.queries(), 14);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for spec in ["MX:a.test:x:mx.test", "MX:a.test:10", "A:a.test:::1", "TXT:a.test:x", "nothing"] {
            assert!(Zone::new().add_spec(spec).is_err(), "{spec}");
        }
        assert!(Zone::new().add_spec("MX:a.test:0:.").is_ok());
    }
}
