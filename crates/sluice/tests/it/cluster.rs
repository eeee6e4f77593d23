//! A cluster node's behaviour that needs no peer engine: the endpoints on a single server, the fallback
//! share and its alert when Redis cannot be reached, a shadow copy that cannot be written (refused with
//! `451 4.4.0`, or accepted unshadowed with an alert, as `reject_on_shadow_failure` says), and drain. The
//! three-node tests with a real redis-server and PostgreSQL are `tests/cluster/cluster.sh`.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// A node whose Redis (and PostgreSQL, with `postgres`) listen on ports where nothing answers.
fn node(sink: &Sink, extra: &str) -> Server {
    let (redis, pg) = (free_port(), free_port());
    Server::start(&format!(
        "[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n\
         [cluster]\nnode = \"mx1\"\nredis = \"redis://127.0.0.1:{redis}/0\"\nheartbeat_interval = \"1s\"\n{}",
        sink.port,
        extra.replace("{pg}", &pg.to_string())
    ))
}

fn alerts(s: &Server) -> Vec<String> {
    let v = s.get_json("/api/v1/alerts?result_size=1000");
    v["items"].as_array().unwrap().iter().map(|a| a["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_single_server_says_it_is_not_a_cluster_node() {
    let s = Server::start("");
    for path in ["/api/v1/cluster/status", "/api/v1/cluster/nodes", "/api/v1/cluster/digest"] {
        let (status, body) = s.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("[cluster] is not configured"), "{body}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "status", "--api", &format!("http://127.0.0.1:{}", s.admin)])
        .env_remove("SLUICE_API")
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(66), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a cluster node"), "{o:?}");
    assert!(s.get_json("/api/v1/status").get("cluster").is_none(), "no cluster object on a single server");
}

#[test]
fn without_redis_a_node_delivers_at_its_share_of_the_limit_and_says_so() {
    let sink = Sink::start();
    let s = node(&sink, "");
    let mut c = s.smtp();
    c.read();
    c.cmd("EHLO test");
    for i in 0..3 {
        let r = c.mail("a@test", &["b@example.com"], &format!("Subject: fallback {i}\r\n\r\nhi\r\n"));
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(wait_until(Duration::from_secs(30), || sink.count() == 3), "delivered at the fallback share");
    assert!(alerts(&s).iter().any(|a| a.contains("Redis is unreachable")), "{:?}", alerts(&s));
    let status = s.get_json("/api/v1/cluster/status");
    assert_eq!(status["limits"], "fallback", "{status}");
    assert_eq!(status["node"], "mx1");
    assert_eq!(s.get_json("/api/v1/status")["cluster"]["node"], "mx1", "shown in the status");
    let (code, body) = s.get("/api/v1/cluster/nodes");
    assert_eq!(code, 503, "the nodes come from Redis: {body}");
}

#[test]
fn a_shadow_copy_that_cannot_be_written_refuses_the_message_when_so_configured() {
    let sink = Sink::start();
    let s = node(&sink, "postgres = \"postgres://sluice@127.0.0.1:{pg}/sluice\"\nreject_on_shadow_failure = true\n");
    let mut c = s.smtp();
    c.read();
    c.cmd("EHLO test");
    let r = c.mail("a@test", &["b@example.com"], "Subject: unshadowed\r\n\r\nhi\r\n");
    assert!(r.starts_with("451 4.4.0"), "{r}");
    assert_eq!(s.queued(), 0, "the local copy was taken back");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count(), 0, "and never delivered");
}

#[test]
fn a_shadow_copy_that_cannot_be_written_is_counted_and_alerted_by_default() {
    let sink = Sink::start();
    let s = node(&sink, "postgres = \"postgres://sluice@127.0.0.1:{pg}/sluice\"\n");
    let mut c = s.smtp();
    c.read();
    c.cmd("EHLO test");
    let r = c.mail("a@test", &["b@example.com"], "Subject: unshadowed\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(30), || sink.count() == 1), "delivered");
    assert!(alerts(&s).iter().any(|a| a.contains("without a shadow copy")), "{:?}", alerts(&s));
    assert_eq!(s.get_json("/api/v1/cluster/status")["unshadowed_since_start"], 1);
}

#[test]
fn drain_refuses_new_sessions_and_delivers_what_is_queued() {
    let sink = Sink::start();
    sink.stop();
    let s = node(
        &sink,
        "[transport]\nqueue_glitch_retry_interval = \"1s\"\ntransient_failure_retry_interval = \"1s\"\n\
         outbound_connection_failure_retry_interval = \"1s\"\n",
    );
    let mut c = s.smtp();
    c.read();
    c.cmd("EHLO test");
    let r = c.mail("a@test", &["b@example.com"], "Subject: drained\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    drop(c);
    let (code, body) =
        http(s.admin, "POST", "/api/v1/cluster/drain", &[("Content-Type", "application/json")], r#"{"deadline":"1h"}"#);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("draining: 1 left"), "{body}");
    let (code, body) = s.get("/api/v1/health");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let mut greeting = String::new();
    let mut raw = std::io::BufReader::new(std::net::TcpStream::connect(("127.0.0.1", s.smtp)).unwrap());
    std::io::BufRead::read_line(&mut raw, &mut greeting).unwrap();
    assert!(greeting.starts_with("421 4.3.2"), "new sessions are refused: {greeting}");
    let (code, body) = http(
        s.admin,
        "POST",
        "/api/v1/cluster/drain",
        &[("Content-Type", "application/json")],
        r#"{"deadline":"soon"}"#,
    );
    assert_eq!(code, 400, "{body}");
    // The next hop comes back: the node delivers what it holds.
    std::thread::sleep(Duration::from_millis(300));
    let sink = Sink::start_on(sink.port);
    assert!(wait_until(Duration::from_secs(30), || sink.count() == 1), "delivered while draining");
    assert!(wait_until(Duration::from_secs(10), || s.get_json("/api/v1/cluster/status")["state"] == "draining: 0 left"));
}
