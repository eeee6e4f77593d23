//! SpamAssassin rule directories and ClamAV body signatures from outside: `[antispam] rules_dir` loaded by the
//! server beside the shipped set (its verdicts on relayed mail, its counts in `sluice engines --rules` and the
//! updater log), and `sluice scan` over message files.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::relay::relay_config;

/// A small rule directory in SpamAssassin's layout: ReplaceTags, a meta over sub-rules, a uri rule, an
/// eval test sluice lacks, a plugin block sluice does not run, and a rule that does not compile.
fn write_rules(dir: &Path) {
    std::fs::write(
        dir.join("20_local.cf"),
        "replace_tag V (?:v|\\\\/)\nreplace_tag I (?:i|1|l)\n\
         body __FUZZY_VIAGRA /<V><I>agra/i\nreplace_rules __FUZZY_VIAGRA\n\
         uri __SHOP_URI m{^https?://shop\\.spam\\.test/}i\n\
         header __BULK_SUBJ Subject =~ /\\bbuy now\\b/i\n\
         meta LOCAL_PILL_SPAM __FUZZY_VIAGRA && (__SHOP_URI || __BULK_SUBJ)\n\
         score LOCAL_PILL_SPAM 6.0\ndescribe LOCAL_PILL_SPAM Obfuscated drug name with a shop link\n\
         header LOCAL_EVAL eval:check_for_missing_to_header()\n\
         ifplugin Mail::SpamAssassin::Plugin::NotInSluice\nbody LOCAL_IN_PLUGIN /pill/\nendif\n\
         body LOCAL_BROKEN /(unclosed/\n",
    )
    .unwrap();
    // Only `.cf` files load: SpamAssassin's other files in such a directory are not rules.
    std::fs::write(dir.join("README"), "body NOT_LOADED /x/\n").unwrap();
}

#[test]
fn rules_dir_loads_beside_the_shipped_rules_and_is_reported() {
    let rules = tempfile::tempdir().unwrap();
    write_rules(rules.path());
    let sink = Sink::start();
    let config = format!("{}\n[antispam]\nrules_dir = \"{}\"\n", relay_config(sink.port), rules.path().display());
    let s = Server::start(&config);
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let spam = "From: x@spam.test\r\nTo: b@remote.test\r\nSubject: Buy now\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <s@spam.test>\r\n\r\nCheap V1agra today\r\n";
    assert!(c.mail("x@spam.test", &["b@remote.test"], spam).starts_with("250"));
    let clean = "From: a@example.test\r\nTo: b@remote.test\r\nSubject: minutes\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <c@example.test>\r\n\r\nThe minutes are attached.\r\n";
    assert!(c.mail("a@example.test", &["b@remote.test"], clean).starts_with("250"));
    let quarantined = || s.get_json("/api/v1/quarantine")["items"].as_array().unwrap().len();
    assert!(wait_until(Duration::from_secs(20), || quarantined() == 1 && sink.count() == 1), "{}", s.log());
    let item = &s.get_json("/api/v1/quarantine")["items"][0];
    assert!(item.to_string().contains("LOCAL_PILL_SPAM"), "{item}");

    let report = s.get_json("/api/v1/engines/antispam/rules");
    // The 14 shipped rules and the 4 of the directory that load (three sub-rules and the meta).
    assert_eq!(report["loaded"], 14 + 4, "{report}");
    assert_eq!(report["errors"], 1, "{report}");
    assert_eq!(report["skipped"]["eval: test (code in a Perl plugin)"], 1, "{report}");
    assert_eq!(report["skipped"]["inside an if/ifplugin block that is false here"], 1, "{report}");
    assert_eq!(report["skipped_total"], 2, "{report}");

    let out = Command::new(BIN)
        .args(["engines", "--rules", "--api", &format!("http://127.0.0.1:{}", s.admin)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Loaded:") && text.contains("eval: test") && text.contains("Not compiled: 1"), "{text}");

    let log = std::fs::read_to_string(s.data().join("logs/updater.log")).unwrap();
    assert!(log.contains("antispam rules_dir: skipped 20_local.cf:14: rule LOCAL_BROKEN"), "{log}");
    assert!(log.contains("antispam loaded 18 rules with rules_dir (1 files)"), "{log}");
}

#[test]
fn a_rules_dir_that_cannot_be_read_stops_the_server_at_start() {
    let mut s = Server::unstarted("[antispam]\nrules_dir = \"/nonexistent/sluice-rules\"\n");
    let status = s.spawn_or_exit().expect("the server must not start");
    assert!(!status.success());
    assert!(s.log().contains("antispam.rules_dir /nonexistent/sluice-rules"), "{}", s.log());
}

/// base64 of `MZ` + `\x90\x00` + `PAYLOAD-1234-abcd-XY` + 40 bytes: a "PE" file the .ndb signature below
/// matches with its wildcards.
fn pe_attachment() -> String {
    let mut bytes = b"MZ\x90\x00junkPAYLOAD-1234-abcd-XYtrailer".to_vec();
    bytes.extend(std::iter::repeat_n(b'.', 40));
    crate::tls::b64(&bytes)
}

#[test]
fn sluice_scan_reports_rules_and_body_signatures_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write_rules(&rules);
    let sigs = dir.path().join("sigs");
    std::fs::create_dir(&sigs).unwrap();
    // PAYLOAD-, four digits, any 1-3 bytes, then "abcd" or "ABCD", "-XY": wildcards and alternatives.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let ndb = format!(
        "Test.Ndb.Wildcards:1:*:{}????????{{1-3}}({}|{}){}\n",
        hex("PAYLOAD-"),
        hex("abcd"),
        hex("ABCD"),
        hex("-XY")
    );
    std::fs::write(sigs.join("local.ndb"), ndb).unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    let attachment = |subject: &str| {
        format!(
            "From: a@example.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"tool.exe\"\r\n\r\n{}\r\n--B--\r\n",
            pe_attachment()
        )
    };
    std::fs::write(mail.join("1-attachment.eml"), attachment("one")).unwrap();
    let nested = format!(
        "From: b@example.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"O\"\r\n\r\n--O\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n--O\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--O--\r\n",
        attachment("inner")
    );
    std::fs::write(mail.join("2-nested.eml"), nested).unwrap();
    std::fs::write(
        mail.join("3-spam.eml"),
        "From x@y Mon Jul 22 19:00:00 2002\nSubject: buy now\n\nV1agra at http://shop.spam.test/x\n",
    )
    .unwrap();
    std::fs::write(mail.join("4-clean.eml"), "Subject: hi\n\nnothing to see\n").unwrap();
    let out = Command::new(BIN)
        .arg("scan")
        .arg("--rules")
        .arg(&rules)
        .arg("--signatures")
        .arg(&sigs)
        .arg("--json")
        .arg(&mail)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["virus"], "Test.Ndb.Wildcards", "{lines:?}");
    assert_eq!(lines[1]["virus"], "Test.Ndb.Wildcards", "inside the nested message: {lines:?}");
    assert_eq!(lines[2]["hits"], serde_json::json!(["LOCAL_PILL_SPAM"]), "{lines:?}");
    assert_eq!((lines[2]["spam"].as_bool(), lines[2]["scl"].as_u64()), (Some(true), Some(8)), "{lines:?}");
    assert_eq!((lines[3]["virus"].is_null(), lines[3]["score"].as_f64()), (true, Some(0.0)), "{lines:?}");
    assert!(stderr.contains("rule skipped: 20_local.cf:14: rule LOCAL_BROKEN"), "{stderr}");
    assert!(stderr.contains("4 messages scanned"), "{stderr}");

    // --slowest: the first message is among the timed ones, so the test rule that hit it is listed with its run.
    let out = Command::new(BIN)
        .args(["scan", "--slowest", "5", "--rules"])
        .arg(&rules)
        .arg("--signatures")
        .arg(&sigs)
        .arg(mail.join("3-spam.eml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the costliest rules (one message in 64 timed):"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.trim_start().starts_with("__FUZZY_VIAGRA") && l.contains(" in      1 runs")),
        "{stderr}"
    );

    let missing =
        Command::new(BIN).args(["scan", "--rules"]).arg(&rules).arg(dir.path().join("nope.eml")).output().unwrap();
    assert_eq!(missing.status.code(), Some(66), "{}", String::from_utf8_lossy(&missing.stderr));
}
