//! Every example in the README's table of commands, run as printed (by `sh`, the binary first on `PATH`,
//! `SLUICE_API` naming the server) against a server in the state the README describes: named `mx`, message
//! 1 in its first delivery queue `mx\16`, whose next hop, remote.test, refuses connections.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use sluice_testdns::{TestDns, Zone};

use crate::harness::*;

/// The last cell of each row of the README's table "From Exchange and ESA to sluice" that is a command.
fn examples(readme: &str) -> Vec<String> {
    let section = readme.split("## From Exchange and ESA to sluice").nth(1).expect("the table's section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.trim_end().trim_end_matches('|').rsplit('|').next())
        .map(|cell| cell.trim().trim_matches('`').to_owned())
        .filter(|cell| cell.starts_with("sluice "))
        .collect()
}

#[test]
fn every_example_of_the_readme_table_runs_as_printed() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 20, "{examples:?}");

    let dns = TestDns::start(Zone::new().a("remote.test", Ipv4Addr::LOCALHOST)).unwrap();
    let s = Server::start(&format!(
        "[dns]\nservers = [\"{}\"]\n\n[transport]\nqueue_glitch_retry_interval = \"60s\"\n\n\
         [[send_connectors]]\nname = \"Internet\"\naddress_spaces = [\"remote.test\"]\nport = {}\n",
        dns.addr(),
        free_port()
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("alice@example.com", &["bob@remote.test"], "Subject: hello\r\n\r\nHello.\r\n");
    assert!(r.starts_with("250"), "{r}");
    let queued = wait_until(Duration::from_secs(15), || {
        // The queue exists once the message is scanned and routed.
        let v: serde_json::Value = serde_json::from_str(&s.get("/api/v1/messages?queue=mx%5C16").1).unwrap_or_default();
        v["items"].as_array().is_some_and(|i| i.len() == 1 && i[0]["identity"] == "mx\\16\\1")
    });
    assert!(queued, "{}", s.get_json("/api/v1/messages"));

    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let cwd = tempfile::tempdir().unwrap();
    for example in &examples {
        let o = Command::new("sh")
            .args(["-c", example])
            .current_dir(cwd.path())
            .env("PATH", &path)
            .env("SLUICE_API", format!("http://127.0.0.1:{}", s.admin))
            .env_remove("SLUICE_TOKEN")
            .env_remove("SLUICE_CONFIG")
            .output()
            .unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{example}: exit {:?}\n{out}{err}", o.status.code());
        assert!(!format!("{out}{err}").trim().is_empty(), "{example} printed nothing");
    }
    let exported = std::fs::read_to_string(cwd.path().join("message.eml")).unwrap();
    assert!(exported.contains("Subject: hello"), "{exported}");
}
