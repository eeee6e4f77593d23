//! The web queue viewer through the binary, over raw HTTP: sign-in, a filter, escaping, a bulk action with its
//! preview, and the refusals. `tests/viewer/browser.sh` drives the same pages in headless Chromium.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Server, free_port, http, wait_until};

const TOKEN: &str = "viewer-s3cret";

/// An answer: status, headers (lowercase names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn request(s: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", s.admin)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nHost: 127.0.0.1:{}\r\n", s.admin);
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

fn form_post(s: &Server, path: &str, cookie: &str, origin: Option<&str>, body: &str) -> Answer {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie)];
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    request(s, "POST", path, &headers, body)
}

fn statuses(s: &Server) -> Vec<(String, String)> {
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = http(s.admin, "GET", "/api/v1/messages", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from_address"].as_str().unwrap().to_owned(), m["status"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn the_viewer_signs_in_filters_escapes_and_acts_in_bulk_after_a_preview() {
    let dead = free_port();
    // `token` goes into the harness's `[admin]`; the next hop never answers, so the messages wait in Retry.
    let s = Server::start(&format!(
        "token = \"{TOKEN}\"\n\n[transport]\nqueue_glitch_retry_interval = \"60s\"\n\
         transient_failure_retry_interval = \"60s\"\n\n[[send_connectors]]\nname = \"Partner\"\n\
         address_spaces = [\"remote.test\"]\nsmart_hosts = [\"127.0.0.1:{dead}\"]\n"
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for (from, subject) in [("alice@client.test", "report"), ("spammer@bad.test", "<script>alert(1)</script>")] {
        for _ in 0..2 {
            let r = c.mail(from, &["bob@remote.test"], &format!("Subject: {subject}\r\n\r\nHello.\r\n"));
            assert!(r.starts_with("250"), "{r}");
        }
    }
    assert!(wait_until(Duration::from_secs(10), || statuses(&s).iter().filter(|(_, st)| st == "Retry").count() == 4));

    // Without the session, pages lead to the sign-in form and posts are refused; the security headers are there.
    let a = request(&s, "GET", "/messages", &[], "");
    assert_eq!((a.status, a.header("location")), (303, Some("/login")));
    assert_eq!(a.header("content-security-policy").map(|c| c.starts_with("default-src 'self'")), Some(true));
    let origin = format!("http://127.0.0.1:{}", s.admin);
    let a = form_post(&s, "/login", "", Some(&origin), "token=wrong");
    assert_eq!(a.status, 401, "{}", a.body);
    let a = form_post(&s, "/login", "", Some(&origin), &format!("token={TOKEN}"));
    assert_eq!(a.status, 303, "{}", a.body);
    let set = a.header("set-cookie").unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains(TOKEN), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    // The cookie is the viewer's, not a bearer token for the API.
    let a = request(&s, "GET", "/api/v1/messages", &[("Cookie", &cookie)], "");
    assert_eq!(a.status, 401);

    // A filter by sender: exactly the spammer's two messages, their subject as text.
    let a = request(&s, "GET", "/messages?sender=spammer%40bad.test", &[("Cookie", &cookie)], "");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("2 messages match"), "{}", a.body);
    assert_eq!(a.body.matches("data-identity=").count(), 2, "{}", a.body);
    assert!(
        a.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !a.body.contains("<script>alert"),
        "{}",
        a.body
    );

    // One message's page: its headers as stored (escaped), its recipients, its events, its queue's next retry.
    let first = a.body.split("data-identity=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    let path = format!("/messages/{}", first.replace('\\', "%5C"));
    let a = request(&s, "GET", &path, &[("Cookie", &cookie)], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let headers = a.body.split("<pre id=\"headers\">").nth(1).unwrap_or_else(|| panic!("{}", a.body));
    let headers = headers.split("</pre>").next().unwrap();
    assert!(headers.starts_with("Received: from "), "{headers}");
    assert!(
        headers.contains("Subject: &lt;script&gt;alert(1)&lt;/script&gt;") && !headers.contains("Hello."),
        "{headers}"
    );
    assert!(
        a.body.contains("bob@remote.test") && a.body.contains("RECEIVE") && a.body.contains("next retry: "),
        "{}",
        a.body
    );

    // The digest: the queues grouped by status, the four copies in the youngest age bucket.
    let a = request(&s, "GET", "/queues?group_by=status", &[("Cookie", &cookie)], "");
    let row = a.body.split("<tr>").find(|r| r.contains("<td>Retry</td>")).unwrap_or_else(|| panic!("{}", a.body));
    let counts: Vec<&str> = row.split("<td class=\"count\">").skip(1).map(|c| c.split('<').next().unwrap()).collect();
    assert_eq!(counts, ["4", "4", "0", "0", "0", "0"], "{row}");

    // A bulk suspend: refused from another site, previewed, then done on confirmation.
    let bulk = "sender=spammer%40bad.test&action=suspend";
    let a = form_post(&s, "/messages/bulk", &cookie, Some("http://evil.test"), &format!("{bulk}&confirm=1"));
    assert_eq!(a.status, 403, "{}", a.body);
    let a = form_post(&s, "/messages/bulk", &cookie, None, &format!("{bulk}&confirm=1"));
    assert_eq!(a.status, 403, "no Origin: {}", a.body);
    let a = form_post(&s, "/messages/bulk", &cookie, Some(&origin), bulk);
    assert_eq!(a.status, 200);
    assert!(a.body.contains("2 messages match"), "{}", a.body);
    assert!(statuses(&s).iter().all(|(_, st)| st != "Suspended"), "the preview changed something");
    let a = form_post(&s, "/messages/bulk", &cookie, Some(&origin), &format!("{bulk}&confirm=1"));
    assert!(a.body.contains("Suspended: 2 of 2 messages."), "{}", a.body);
    let mut now = statuses(&s);
    now.sort();
    let expected: Vec<(String, String)> = [
        ("alice@client.test", "Retry"),
        ("alice@client.test", "Retry"),
        ("spammer@bad.test", "Suspended"),
        ("spammer@bad.test", "Suspended"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(now, expected);

    // The other pages answer with what the API says.
    let a = request(&s, "GET", "/", &[("Cookie", &cookie)], "");
    assert!(a.body.contains("<dd id=\"queued\">4</dd>"), "{}", a.body);
    assert!(a.body.contains("<dd id=\"work-queue\">Operational, "), "{}", a.body);
    let a = request(&s, "GET", "/quarantine", &[("Cookie", &cookie)], "");
    assert!(a.body.contains("No message is quarantined."), "{}", a.body);
    let window = "start_time=2026-12-01T00%3A00%3A00Z&end_time=2026-12-02T00%3A00%3A00Z&sender=a%40b.test";
    let a = form_post(&s, "/resubmit", &cookie, Some(&origin), window);
    assert!(a.body.contains("Resubmit request 1 added: 0 messages match."), "{}", a.body);
    let a = request(&s, "GET", "/resubmit", &[("Cookie", &cookie)], "");
    assert!(a.body.contains("a@b.test") && a.body.contains("admin API 127.0.0.1:"), "{}", a.body);
    let a = form_post(&s, "/resubmit", &cookie, Some(&origin), "start_time=yesterday&end_time=now");
    assert_eq!(a.status, 400, "{}", a.body);

    // A bulk action without a filter or a queue would be every message: refused.
    let a = form_post(&s, "/messages/bulk", &cookie, Some(&origin), "action=remove&confirm=1");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(statuses(&s).len(), 4);

    // A suspended message exports as it was stored; a queue is suspended and resumed from its row.
    let suspended = suspended_identity(&s);
    let a =
        request(&s, "GET", &format!("/messages/{}/export", suspended.replace('\\', "%5C")), &[("Cookie", &cookie)], "");
    assert_eq!((a.status, a.header("content-type")), (200, Some("message/rfc822")), "{}", a.body);
    assert!(a.body.contains("Subject: <script>alert(1)</script>"), "{}", a.body);
    let queue = suspended.rsplit_once('\\').unwrap().0.to_owned();
    let queue_status = || {
        let bearer = format!("Bearer {TOKEN}");
        let path = format!("/api/v1/queues/{}", queue.replace('\\', "%5C"));
        let (_, body) = http(s.admin, "GET", &path, &[("Authorization", &bearer)], "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"].as_str().unwrap().to_owned()
    };
    for (action, after) in [("suspend", "Suspended"), ("resume", "Retry")] {
        let body = format!("identity={}&action={action}", queue.replace('\\', "%5C"));
        let a = form_post(&s, "/queues/action", &cookie, Some(&origin), &body);
        assert!(a.body.contains("of 1 queue changed."), "{action}: {}", a.body);
        assert_eq!(queue_status(), after, "{action}");
    }
    // Releasing what the quarantine does not hold is a 404 page, not a crash.
    let a = form_post(&s, "/quarantine/action", &cookie, Some(&origin), "mid=999&action=release");
    assert_eq!(a.status, 404, "{}", a.body);
}

/// The identity of a suspended copy, through the API.
fn suspended_identity(s: &Server) -> String {
    let bearer = format!("Bearer {TOKEN}");
    let (_, body) = http(
        s.admin,
        "GET",
        "/api/v1/messages?filter=Status%20-eq%20%27Suspended%27",
        &[("Authorization", &bearer)],
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["items"][0]["identity"].as_str().unwrap().to_owned()
}
