//! Test helpers: a running `sluice serve` with its own data directory and ports, a raw SMTP client, and a
//! counting SMTP sink that records the `Subject:` of every message it accepts.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A free port on loopback, bound and released. Tests often use it as a next hop where nothing listens
/// (yet), so it is taken below the kernel's ephemeral range (32768 and up on Linux): a port that the
/// kernel hands to another test's `bind(0)` or to an outgoing connection would let mail meant to wait
/// be delivered somewhere else. Each call takes the next port of a per-process sequence.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A server process under test.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub smtp: u16,
    pub admin: u16,
    pub child: Option<Child>,
    pub extra: String,
    /// Environment variables the process gets besides the test's own.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts `sluice serve` with `extra` appended to a config that sets the data directory and ports.
    pub fn start(extra: &str) -> Server {
        Server::launch(extra, None, &[])
    }

    /// Like `start`, with the data directory at `data` (a symbolic link to it from the usual place), so
    /// that everything the server writes is on that file system.
    pub fn start_with_data(extra: &str, data: &Path) -> Server {
        Server::launch(extra, Some(data), &[])
    }

    /// Like `start`, with `env` in the process's environment.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Server {
        Server::launch(extra, None, env)
    }

    /// A server with its configuration written and no process yet: `spawn` or `spawn_or_exit` starts it.
    pub fn unstarted(extra: &str) -> Server {
        let s = Server {
            dir: tempfile::tempdir().unwrap(),
            smtp: free_port(),
            admin: free_port(),
            child: None,
            extra: extra.to_owned(),
            env: Vec::new(),
        };
        s.write_config();
        s
    }

    fn launch(extra: &str, data: Option<&Path>, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        if let Some(data) = data {
            std::os::unix::fs::symlink(data, dir.path().join("data")).unwrap();
        }
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut s = Server { dir, smtp: free_port(), admin: free_port(), child: None, extra: extra.to_owned(), env };
        s.write_config();
        s.spawn();
        s
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sluice.toml")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn write_config(&self) {
        let text = format!(
            "[server]\nhostname = \"mx.test\"\nname = \"mx\"\ndata_dir = \"data\"\n\n[admin]\nlisten = \"127.0.0.1:{}\"\n\n{}\n",
            self.admin, self.extra
        );
        let text = text.replace("{smtp}", &self.smtp.to_string());
        let text = if text.contains("[[receive_connectors]]") {
            text
        } else {
            format!("{text}\n[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{}\"\n", self.smtp)
        };
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Starts the process and waits until it accepts SMTP.
    pub fn spawn(&mut self) {
        if let Some(status) = self.spawn_or_exit() {
            panic!("sluice exited with {status}: {}", self.log());
        }
    }

    /// Starts the process and waits until it accepts SMTP (`None`) or exits (its status), for a server
    /// that may crash while it starts.
    pub fn spawn_or_exit(&mut self) -> Option<std::process::ExitStatus> {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("serve.log")).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env_remove("SLUICE_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.smtp)).is_ok() && self.get("/api/v1/health").0 == 200 {
                return None;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sluice did not start: {}", self.log());
    }

    /// The process's exit status, if it exited (then it is no longer the server's child).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Puts `token` into the `[admin]` table the harness wrote, then restarts the server on it.
    pub fn restart_with_token(&mut self, token: &str) {
        let cfg = std::fs::read_to_string(self.config_path()).unwrap().replace(
            &format!("listen = \"127.0.0.1:{}\"\n", self.admin),
            &format!("listen = \"127.0.0.1:{}\"\ntoken = \"{token}\"\n", self.admin),
        );
        std::fs::write(self.config_path(), cfg).unwrap();
        self.kill9();
        self.spawn();
    }

    /// Sends a signal and waits for the process to exit; returns its exit status.
    pub fn signal_and_wait(&mut self, sig: &str) -> std::process::ExitStatus {
        let c = self.child.as_mut().unwrap();
        Command::new("kill").args([&format!("-{sig}"), &c.id().to_string()]).status().unwrap();
        if sig == "HUP" {
            return std::process::ExitStatus::default();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "sluice did not stop on SIG{sig}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A GET on the admin API: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.admin, "GET", path, &[], "")
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Sum of `message_count` over all queues.
    pub fn queued(&self) -> u64 {
        let v = self.get_json("/api/v1/queues");
        v["items"].as_array().unwrap().iter().map(|q| q["message_count"].as_u64().unwrap()).sum()
    }

    pub fn smtp(&self) -> Smtp {
        Smtp::connect(SocketAddr::from(([127, 0, 0, 1], self.smtp)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 client: (status, body).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    // Chunked bodies: good enough for small JSON answers.
    let body = if resp.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body
    };
    (status, body)
}

/// A raw SMTP client for transcripts.
pub struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    pub fn connect(addr: SocketAddr) -> Smtp {
        let s = TcpStream::connect(addr).unwrap();
        Smtp::from_stream(s)
    }

    /// A session on `addr` once the server greets with 220: a server with `max_connections` may still be
    /// counting a connection that was just closed (the harness's own readiness probe), and answers 421 then.
    pub fn connect_when_served(addr: SocketAddr) -> Smtp {
        for _ in 0..100 {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut c = Smtp { reader: BufReader::new(s.try_clone().unwrap()), writer: s };
            if c.read().starts_with("220") {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{addr} never greeted with 220");
    }

    pub fn from_stream(s: TcpStream) -> Smtp {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Smtp { reader: BufReader::new(s.try_clone().unwrap()), writer: s };
        let greeting = c.read();
        assert!(greeting.starts_with("220"), "{greeting}");
        c
    }

    /// Reads one (possibly multi-line) reply.
    pub fn read(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    /// Sends one command line and reads the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read()
    }

    /// A whole transaction; returns the reply to the end of data.
    pub fn mail(&mut self, from: &str, to: &[&str], body: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if !r.starts_with("250") {
            return r;
        }
        let mut any = false;
        for t in to {
            any |= self.cmd(&format!("RCPT TO:<{t}>")).starts_with("250");
        }
        if !any {
            self.cmd("RSET");
            return "no recipient accepted".into();
        }
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "{r}");
        self.send(body.as_bytes());
        self.send(b".\r\n");
        self.read()
    }
}

/// A counting SMTP sink that records the `Subject:` of every accepted message.
pub struct Sink {
    pub port: u16,
    pub subjects: Arc<Mutex<HashMap<String, u32>>>,
    /// Every MAIL and RCPT line received, as sent.
    pub commands: Arc<Mutex<Vec<String>>>,
    /// The content of every accepted message, dot-unstuffed.
    pub messages: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let subjects = Arc::new(Mutex::new(HashMap::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (subj, cmds, msgs, st) = (subjects.clone(), commands.clone(), messages.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (subj, cmds, msgs) = (subj.clone(), cmds.clone(), msgs.clone());
                        let st = st.clone();
                        std::thread::spawn(move || sink_session(s, subj, cmds, msgs, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink { port, subjects, commands, messages, stop }
    }

    pub fn count(&self) -> usize {
        self.subjects.lock().unwrap().values().map(|n| *n as usize).sum()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sink_session(
    s: TcpStream,
    subjects: Arc<Mutex<HashMap<String, u32>>>,
    commands: Arc<Mutex<Vec<String>>>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 sink ESMTP\r\n");
    let mut in_data = false;
    let mut subject = String::new();
    let mut content = Vec::new();
    // Kept across read timeouts: a line that arrives in pieces is read whole.
    let mut partial = String::new();
    loop {
        match r.read_line(&mut partial) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
        }
        let line = std::mem::take(&mut partial);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                *subjects.lock().unwrap().entry(std::mem::take(&mut subject)).or_default() += 1;
                messages.lock().unwrap().push(std::mem::take(&mut content));
                let _ = w.write_all(b"250 2.0.0 Ok\r\n");
                continue;
            }
            content.extend_from_slice(line.strip_prefix('.').unwrap_or(&line).as_bytes());
            if subject.is_empty()
                && let Some(s) = line.strip_prefix("Subject: ")
            {
                subject = s.trim_end().to_owned();
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        if verb == "MAIL" || verb == "RCPT" {
            commands.lock().unwrap().push(line.trim_end().to_owned());
        }
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-PIPELINING\r\n250-DSN\r\n250 8BITMIME\r\n",
            "DATA" => {
                in_data = true;
                b"354 go\r\n"
            }
            "RCPT" if line.contains("reject") => b"550 5.1.1 No such user\r\n",
            "RCPT" if line.contains("later") => b"451 4.2.0 Try again later\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n");
                return;
            }
            _ => b"250 Ok\r\n",
        };
        let _ = w.write_all(reply);
    }
}

/// Waits until `f` is true or the time is up; whether it became true. Tests wait for a condition with this
/// instead of sleeping a fixed time and then asserting, which fails on a loaded machine. Give a generous
/// `timeout` (it costs nothing when the condition comes early) and assert on the result with a message.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    f()
}

/// Whether `f` stays true for the whole of `period`: the bounded wait of a test that something does *not*
/// happen (a message not delivered, a mailbox not created). It can show only that nothing happened within
/// `period`, so such a test first waits with [`wait_until`] for something that would have come after it.
pub fn holds_for(period: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if !f() {
            return false;
        }
        std::thread::sleep(POLL);
    }
    f()
}

/// How often [`wait_until`] and [`holds_for`] look.
const POLL: Duration = Duration::from_millis(10);

/// The files in a Maildir's `new/`.
pub fn maildir_new(data: &Path, domain: &str, local: &str) -> Vec<PathBuf> {
    let dir = data.join("mail").join(domain).join(local).join("new");
    std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

/// Every tracking log line written so far, parsed.
pub fn tracking_events(data: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data.join("tracking")).into_iter().flatten() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

/// A self-signed certificate for `name` written to `dir` as `<file>.pem` and `<file>.key`, and a client
/// configuration that trusts it.
pub fn certificate(dir: &Path, name: &str, file: &str) -> Arc<rustls::ClientConfig> {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{file}.pem")), generated.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{file}.key")), generated.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(generated.cert.der().to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
