use super::*;
use mail_parser::{MessageParser, MimeHeaders};

const EICAR_B64: &str = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=";
/// EICAR followed by CRLF, as `echo` on Windows makes it.
const EICAR_CRLF_B64: &str =
    "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCoNCg==";

fn eicar_text() -> &'static str {
    std::str::from_utf8(EICAR).expect("EICAR is ASCII")
}

fn with_attachment(name: &str, encoding: &str, body: &str) -> String {
    format!(
        "From: a@b.test\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         preamble\r\n\
         --XX\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
         --XX\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n\
         --XX--\r\nepilogue\r\n"
    )
}

fn eicar_detection(part: &str) -> Detection {
    Detection { name: "Eicar-Test-Signature".to_owned(), part: part.to_owned() }
}

#[test]
fn eicar_constant_is_the_68_byte_file() {
    assert_eq!(EICAR.len(), 68);
    let hash: [u8; 16] = Md5::digest(EICAR).into();
    assert_eq!(decode_hex("44d88612fea8a8f36de82e1278abb02f"), Some(hash.to_vec()));
}

#[test]
fn builtin_has_the_eicar_hash_signature() {
    let signatures = Signatures::builtin();
    assert_eq!(signatures.md5.len(), 1);
    assert_eq!(signatures.len(), 2);
    assert!(!signatures.is_empty());
}

#[test]
fn eicar_in_base64_attachment() {
    let signatures = Signatures::builtin();
    for body in [EICAR_B64, EICAR_CRLF_B64] {
        let msg = with_attachment("eicar.com", "base64", body);
        assert_eq!(signatures.scan(msg.as_bytes()), Some(eicar_detection("eicar.com")), "{body}");
    }
}

#[test]
fn eicar_in_quoted_printable_part() {
    // '=' must be encoded in quoted-printable; the rest of EICAR is printable ASCII.
    let qp = eicar_text().replace('=', "=3D");
    let msg = with_attachment("eicar.txt", "quoted-printable", &qp);
    assert_eq!(Signatures::builtin().scan(msg.as_bytes()), Some(eicar_detection("eicar.txt")));
}

#[test]
fn eicar_as_text_part_without_name() {
    let msg = format!(
        "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\n{}\r\n--b--\r\n",
        eicar_text()
    );
    assert_eq!(Signatures::builtin().scan(msg.as_bytes()), Some(eicar_detection("part 2")));
}

#[test]
fn eicar_inside_nested_message() {
    let inner = with_attachment("inner.com", "base64", EICAR_B64);
    let msg = format!(
        "Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
         --OUT\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
         --OUT\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--OUT--\r\n"
    );
    assert_eq!(Signatures::builtin().scan(msg.as_bytes()), Some(eicar_detection("inner.com")));
}

#[test]
fn eicar_inside_base64_encoded_nested_message() {
    let inner = format!("Subject: inner\r\n\r\n{}\r\n", eicar_text());
    let encoded = base64(inner.as_bytes());
    let msg = format!(
        "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
         --OUT\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
         --OUT\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--OUT--\r\n"
    );
    let signatures = Signatures::builtin();
    assert!(signatures.scan(msg.as_bytes()).is_some());
    let (stripped, detections) = signatures.strip(msg.as_bytes()).expect("infected");
    assert_eq!(detections.len(), 1);
    let text = String::from_utf8(stripped).expect("ASCII");
    assert!(!text.contains(&encoded));
    assert!(text.contains("Forwarded."));
    assert!(signatures.scan(text.as_bytes()).is_none());
}

#[test]
fn eicar_as_whole_non_mime_body() {
    let signatures = Signatures::builtin();
    let msg = format!("From: a@b.test\r\nSubject: test\r\n\r\n{}\r\n", eicar_text());
    assert_eq!(signatures.scan(msg.as_bytes()), Some(eicar_detection("message")));
    // No headers at all: scanned as raw bytes.
    assert_eq!(signatures.scan(EICAR), Some(eicar_detection("message")));
}

#[test]
fn eicar_padding_rules() {
    let mut padded = EICAR.to_vec();
    padded.extend_from_slice(b" \t\r\n\x1a");
    assert!(is_eicar(&padded));
    padded.resize(EICAR_MAX_LEN, b' ');
    assert!(is_eicar(&padded));
    padded.push(b' ');
    assert!(!is_eicar(&padded));
    let mut trailing_text = EICAR.to_vec();
    trailing_text.extend_from_slice(b"\r\nmore");
    assert!(!is_eicar(&trailing_text));
    assert!(!is_eicar(&EICAR[1..]));
}

#[test]
fn clean_mail_is_clean() {
    let signatures = Signatures::builtin();
    let msg = with_attachment("report.pdf", "base64", "JVBERi0xLjQKJcfsj6IK");
    assert_eq!(signatures.scan(msg.as_bytes()), None);
    assert_eq!(signatures.strip(msg.as_bytes()), None);
    assert_eq!(signatures.scan(b"Subject: hi\r\n\r\nhello\r\n"), None);
}

fn hdb(lines: &str) -> (Signatures, Vec<SignatureError>) {
    Signatures::compile(&[SourceFile { name: "local.hdb".to_owned(), bytes: lines.as_bytes().to_vec() }])
}

fn md5_hex(bytes: &[u8]) -> String {
    let hash: [u8; 16] = Md5::digest(bytes).into();
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hdb_signature_finds_its_content_in_base64_attachment() {
    let content = b"\x7fELF not really a virus, but a signature says so \x00\x01\x02";
    let (signatures, errors) = hdb(&format!("# local\n\n{}:{}:Test.Local-1\n", md5_hex(content), content.len()));
    assert_eq!(errors, vec![]);
    assert_eq!(signatures.len(), 3);
    let msg = with_attachment("payload.bin", "base64", &base64(content));
    let found = signatures.scan(msg.as_bytes());
    assert_eq!(found, Some(Detection { name: "Test.Local-1".to_owned(), part: "payload.bin".to_owned() }));
    // EICAR is still detected by compiled signatures.
    assert!(signatures.scan(with_attachment("e.com", "base64", EICAR_B64).as_bytes()).is_some());
    // A size that does not match means no detection.
    let (wrong_size, _) = hdb(&format!("{}:{}:Test.Local-1\n", md5_hex(content), content.len() + 1));
    assert_eq!(wrong_size.scan(msg.as_bytes()), None);
}

#[test]
fn hsb_sha256_and_sha1_signatures_with_any_size_and_flevel() {
    let content = b"some attachment bytes";
    let sha256 = crate::manifest::sha256_hex(content);
    let sha1: String = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, b"other bytes")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = SourceFile {
        name: "local.HSB".to_owned(),
        bytes: format!("{}:*:Test.Sha256:73\n{sha1}:11:Test.Sha1:51:255\n", sha256.to_uppercase()).into_bytes(),
    };
    let (signatures, errors) = Signatures::compile(&[file]);
    assert_eq!(errors, vec![]);
    let msg = with_attachment("a.bin", "base64", &base64(content));
    assert_eq!(signatures.scan(msg.as_bytes()).map(|d| d.name), Some("Test.Sha256".to_owned()));
    let msg = with_attachment("b.bin", "base64", &base64(b"other bytes"));
    assert_eq!(signatures.scan(msg.as_bytes()).map(|d| d.name), Some("Test.Sha1".to_owned()));
}

#[test]
fn malformed_lines_and_unknown_files_are_errors() {
    let good = format!("{}:68:Good", md5_hex(b"x"));
    let (signatures, errors) = hdb(&format!(
        "{good}\nnot a signature\nzz88612fea8a8f36de82e1278abb02f:68:Bad\n44d8:68:Short\n\
         44d88612fea8a8f36de82e1278abb02f:abc:BadSize\n44d88612fea8a8f36de82e1278abb02f:68:\n\
         44d88612fea8a8f36de82e1278abb02f:68:Name:x\n44d88612fea8a8f36de82e1278abb02f:68:N:1:2:3\n"
    ));
    assert_eq!(signatures.len(), 3);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(errors[0].to_string(), "local.hdb:2: expected hash:size:name");

    let ldb = SourceFile { name: "main.ldb".to_owned(), bytes: b"Sig;Engine:51-255,Target:0;0;4141".to_vec() };
    let none = SourceFile { name: "README".to_owned(), bytes: Vec::new() };
    let (signatures, errors) = Signatures::compile(&[ldb, none]);
    assert_eq!(signatures.len(), Signatures::builtin().len());
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].to_string(), "main.ldb: unknown signature file type");
}

#[test]
fn strip_replaces_only_the_infected_part() {
    let msg = with_attachment("eicar.com", "base64", EICAR_CRLF_B64);
    let (stripped, detections) = Signatures::builtin().strip(msg.as_bytes()).expect("infected");
    assert_eq!(detections, vec![eicar_detection("eicar.com")]);
    let text = String::from_utf8(stripped.clone()).expect("ASCII");
    assert!(text.contains("The attachment eicar.com was removed: it contained Eicar-Test-Signature."));
    assert!(!text.contains(EICAR_CRLF_B64));
    // Everything before the infected part, and the closing boundary after it, is untouched.
    let cut = msg.find("Content-Type: application/octet-stream").expect("part");
    assert!(text.starts_with(&msg[..cut]));
    assert!(text.ends_with("\r\n--XX--\r\nepilogue\r\n"));

    let parsed = MessageParser::default().parse(&stripped).expect("still parses");
    assert_eq!(parsed.body_text(0).as_deref(), Some("See the attachment."));
    let replaced = parsed.part(2).expect("replacement part");
    assert!(replaced.is_content_type("text", "plain"));
    assert_eq!(
        replaced.text_contents(),
        Some("The attachment eicar.com was removed: it contained Eicar-Test-Signature.")
    );
    assert_eq!(Signatures::builtin().scan(&stripped), None);
}

#[test]
fn strip_two_infected_parts() {
    let msg = format!(
        "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nkeep me\r\n\
         --b\r\nContent-Type: application/x; name=one.com\r\nContent-Transfer-Encoding: base64\r\n\r\n{EICAR_B64}\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nmiddle\r\n\
         --b\r\nContent-Type: application/x; name=two.com\r\nContent-Transfer-Encoding: base64\r\n\r\n{EICAR_B64}\r\n--b--\r\n"
    );
    let (stripped, detections) = Signatures::builtin().strip(msg.as_bytes()).expect("infected");
    assert_eq!(detections, vec![eicar_detection("one.com"), eicar_detection("two.com")]);
    let parsed = MessageParser::default().parse(&stripped).expect("parses");
    let texts: Vec<String> = parsed.parts.iter().filter_map(|p| p.text_contents().map(str::to_owned)).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[0], "keep me");
    assert_eq!(texts[2], "middle");
    assert!(texts[3].contains("two.com"));
}

#[test]
fn strip_whole_body_of_single_part_message() {
    let msg = format!(
        "From: a@b.test\r\nSubject: test\r\nContent-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{EICAR_B64}\r\n"
    );
    let (stripped, detections) = Signatures::builtin().strip(msg.as_bytes()).expect("infected");
    assert_eq!(detections, vec![eicar_detection("message")]);
    let text = String::from_utf8(stripped).expect("ASCII");
    assert_eq!(
        text,
        "From: a@b.test\r\nSubject: test\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n\
         The attachment message was removed: it contained Eicar-Test-Signature.\r\n"
    );
}

#[test]
fn strip_keeps_bare_lf_line_endings() {
    let msg = format!("Subject: t\n\n{}\n", eicar_text());
    let (stripped, _) = Signatures::builtin().strip(msg.as_bytes()).expect("infected");
    assert!(!stripped.contains(&b'\r'));
    assert!(MessageParser::default().parse(&stripped).is_some());
}

fn ndb(lines: &str) -> Signatures {
    let (signatures, errors) =
        Signatures::compile(&[SourceFile { name: "local.ndb".to_owned(), bytes: lines.as_bytes().to_vec() }]);
    assert_eq!(errors, vec![], "{lines}");
    signatures
}

/// The hex digits of `bytes`, for writing body signatures.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A body signature using `??`, `{2-4}`, `*` and `(aa|bb)`.
fn wildcard_ndb() -> String {
    format!("Test.Ndb-Wild:0:*:{}??{}{{2-4}}{}*{}(aa|bb)\n", hex(b"MALW"), hex(b"ARE-"), hex(b"--"), hex(b"SIGEND"))
}

/// Binary content that the signature of [`wildcard_ndb`] matches when `gap` is 2 to 4 bytes and
/// `last` is 0xaa or 0xbb.
fn wildcard_content(gap: &[u8], last: u8) -> Vec<u8> {
    let mut content = b"\x00\x01\x02 some binary prefix MALW\x7fARE-".to_vec();
    content.extend_from_slice(gap);
    content.extend_from_slice(b"-- then a long stretch \x00\xff of filler SIGEND");
    content.push(last);
    content.extend_from_slice(b" and a trailer");
    content
}

fn nested(inner: &str) -> String {
    format!(
        "Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
         --OUT\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
         --OUT\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--OUT--\r\n"
    )
}

#[test]
fn ndb_wildcards_find_a_pattern_in_a_base64_attachment() {
    let signatures = ndb(&wildcard_ndb());
    assert_eq!(signatures.len(), Signatures::builtin().len() + 1);
    let detection = Detection { name: "Test.Ndb-Wild".to_owned(), part: "payload.bin".to_owned() };
    for (gap, last) in [(&b"xy"[..], 0xaa), (b"xyz", 0xbb), (b"wxyz", 0xaa)] {
        let msg = with_attachment("payload.bin", "base64", &base64(&wildcard_content(gap, last)));
        assert_eq!(signatures.scan(msg.as_bytes()), Some(detection.clone()), "{gap:?} {last:x}");
    }
    // Without the pattern (the gap too short or too long, the wrong last byte) the message is clean.
    for (gap, last) in [(&b"x"[..], 0xaa), (b"vwxyz", 0xaa), (b"xyz", 0xcc)] {
        let msg = with_attachment("payload.bin", "base64", &base64(&wildcard_content(gap, last)));
        assert_eq!(signatures.scan(msg.as_bytes()), None, "{gap:?} {last:x}");
        assert_eq!(signatures.strip(msg.as_bytes()), None);
    }
    assert_eq!(signatures.scan(with_attachment("report.pdf", "base64", "JVBERi0xLjQKJcfsj6IK").as_bytes()), None);
}

#[test]
fn ndb_finds_a_pattern_in_a_nested_message_attachment() {
    let signatures = ndb(&wildcard_ndb());
    let inner = with_attachment("inner.bin", "base64", &base64(&wildcard_content(b"xyz", 0xbb)));
    let found = signatures.scan(nested(&inner).as_bytes());
    assert_eq!(found, Some(Detection { name: "Test.Ndb-Wild".to_owned(), part: "inner.bin".to_owned() }));
    let clean = with_attachment("inner.bin", "base64", &base64(&wildcard_content(b"xyz", 0xcc)));
    assert_eq!(signatures.scan(nested(&clean).as_bytes()), None);
}

#[test]
fn ndb_offsets_accept_and_reject() {
    let content = b"HEAD of the file, a MIDDLE, and its TAIL";
    let msg = with_attachment("f.bin", "base64", &base64(content));
    let middle = content.windows(6).position(|w| w == b"MIDDLE").expect("in content");
    let tail = content.len() - 4;
    for (offset, pattern, expected) in [
        ("0".to_owned(), &b"HEAD"[..], true),
        ("1".to_owned(), b"HEAD", false),
        (middle.to_string(), b"MIDDLE", true),
        ((middle + 1).to_string(), b"MIDDLE", false),
        (format!("{},3", middle - 3), b"MIDDLE", true),
        (format!("{},2", middle - 3), b"MIDDLE", false),
        (format!("{},5", middle + 1), b"MIDDLE", false),
        ("EOF-4".to_owned(), b"TAIL", true),
        ("EOF-5".to_owned(), b"TAIL", false),
        ("EOF-3".to_owned(), b"TAIL", false),
        (format!("EOF-{},2", content.len() - tail + 2), b"TAIL", true),
        ("*".to_owned(), b"TAIL", true),
    ] {
        let signatures = ndb(&format!("Test.Offset:0:{offset}:{}", hex(pattern)));
        assert_eq!(signatures.scan(msg.as_bytes()).is_some(), expected, "{offset} {pattern:?}");
    }
}

#[test]
fn ndb_mail_target_matches_the_raw_message() {
    let msg = with_attachment("a.bin", "base64", &base64(b"decoded attachment bytes"))
        .replace("Subject: files", "Subject: files\r\nX-Campaign: spring-sale-42");
    let header = hex(b"X-Campaign: spring-sale");
    let signatures = ndb(&format!("Test.Mail:4:*:{header}\n"));
    assert_eq!(
        signatures.scan(msg.as_bytes()),
        Some(Detection { name: "Test.Mail".to_owned(), part: "message".to_owned() })
    );
    // The header is in no part: target type 0 does not see it.
    assert_eq!(ndb(&format!("Test.Any:0:*:{header}\n")).scan(msg.as_bytes()), None);
    // The raw message holds the base64 text, not the decoded bytes.
    let encoded = hex(base64(b"decoded attachment bytes").as_bytes());
    assert!(ndb(&format!("Test.Mail:4:*:{encoded}\n")).scan(msg.as_bytes()).is_some());
    assert_eq!(ndb(&format!("Test.Mail:4:*:{}\n", hex(b"decoded attachment"))).scan(msg.as_bytes()), None);
    assert!(ndb(&format!("Test.Any:0:*:{}\n", hex(b"decoded attachment"))).scan(msg.as_bytes()).is_some());
    // Offsets count in the raw message.
    assert!(ndb(&format!("Test.Mail:4:0:{}\n", hex(b"From: a@b.test"))).scan(msg.as_bytes()).is_some());
    assert_eq!(ndb(&format!("Test.Mail:4:1:{}\n", hex(b"From: a@b.test"))).scan(msg.as_bytes()), None);

    // Stripping removes the whole body and keeps the other header fields.
    let (stripped, detections) = signatures.strip(msg.as_bytes()).expect("infected");
    assert_eq!(detections, vec![Detection { name: "Test.Mail".to_owned(), part: "message".to_owned() }]);
    let text = String::from_utf8(stripped).expect("ASCII");
    assert!(text.contains("X-Campaign: spring-sale-42\r\n"), "{text}");
    assert!(text.contains("The attachment message was removed: it contained Test.Mail."), "{text}");
    assert!(!text.contains("See the attachment."), "{text}");
}

#[test]
fn ndb_pe_target_matches_only_parts_starting_with_mz() {
    let signatures = ndb(&format!("Test.Pe:1:*:{}\n", hex(b"evil code")));
    let pe = with_attachment("setup.exe", "base64", &base64(b"MZ\x90\x00\x03\x00 header ... evil code ..."));
    assert_eq!(
        signatures.scan(pe.as_bytes()),
        Some(Detection { name: "Test.Pe".to_owned(), part: "setup.exe".to_owned() })
    );
    let not_pe = with_attachment("setup.exe", "base64", &base64(b"\x00MZ\x90\x00\x03\x00 header ... evil code ..."));
    assert_eq!(signatures.scan(not_pe.as_bytes()), None);
    let text = with_attachment("notes.txt", "7bit", "some evil code in text");
    assert_eq!(signatures.scan(text.as_bytes()), None);
}

#[test]
fn ndb_html_and_text_targets() {
    let html_part = |content_type: &str, body: &str| {
        format!(
            "Subject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
             --b\r\nContent-Type: {content_type}\r\n\r\n{body}\r\n--b--\r\n"
        )
    };
    let signatures = ndb(&format!("Test.Html:3:*:{}\n", hex(b"evil()")));
    let found = Some(Detection { name: "Test.Html".to_owned(), part: "part 2".to_owned() });
    assert_eq!(signatures.scan(html_part("text/html", "<p onclick=evil()>x</p>").as_bytes()), found);
    assert_eq!(signatures.scan(html_part("text/plain", "<p onclick=evil()>x</p>").as_bytes()), None);
    let sniffed = html_part("application/octet-stream", "  <!doctype html><HTML><p onclick=evil()>x</p>");
    assert_eq!(signatures.scan(sniffed.as_bytes()), found);

    let signatures = ndb(&format!("Test.Text:7:*:{}\n", hex(b"evil()")));
    assert!(signatures.scan(html_part("text/plain", "call evil() now").as_bytes()).is_some());
    let binary = with_attachment("b.bin", "base64", &base64(b"\x00\x01 call evil() now"));
    assert_eq!(signatures.scan(binary.as_bytes()), None);
}

#[test]
fn strip_replaces_a_part_matched_by_an_ndb_signature() {
    let signatures = ndb(&wildcard_ndb());
    let encoded = base64(&wildcard_content(b"xyz", 0xaa));
    let msg = with_attachment("payload.bin", "base64", &encoded);
    let (stripped, detections) = signatures.strip(msg.as_bytes()).expect("infected");
    assert_eq!(detections, vec![Detection { name: "Test.Ndb-Wild".to_owned(), part: "payload.bin".to_owned() }]);
    let text = String::from_utf8(stripped.clone()).expect("ASCII");
    assert!(text.contains("The attachment payload.bin was removed: it contained Test.Ndb-Wild."));
    assert!(!text.contains(&encoded));
    let cut = msg.find("Content-Type: application/octet-stream").expect("part");
    assert!(text.starts_with(&msg[..cut]));
    assert!(text.ends_with("\r\n--XX--\r\nepilogue\r\n"));
    let parsed = MessageParser::default().parse(&stripped).expect("still parses");
    assert_eq!(parsed.body_text(0).as_deref(), Some("See the attachment."));
    assert_eq!(signatures.scan(&stripped), None);
}

#[test]
fn ndb_lines_load_around_errors_reported_by_line() {
    let file = format!(
        "# local body signatures\n\
         Test.One:0:*:{one}\n\
         Test.Short:0:*\n\
         Test.Ole:2:*:{one}\n\
         Test.Entry:1:EP+0:{one}\n\
         \n\
         Test.Two:0:*:{two}:51:255\n\
         Test.BadHex:0:*:41zz\n\
         Test.Negated:0:*:4142!(43|44)\n\
         Test.Gap:0:*:4142{{5-2}}43\n\
         Test.Three:7:0,10:{three}\n",
        one = hex(b"first one"),
        two = hex(b"second one"),
        three = hex(b"third one"),
    );
    let (signatures, errors) =
        Signatures::compile(&[SourceFile { name: "local.ndu".to_owned(), bytes: file.into_bytes() }]);
    let found: Vec<(usize, String)> = errors.iter().map(|e| (e.line, e.reason.clone())).collect();
    assert_eq!(
        found,
        vec![
            (3, "expected name:target:offset:hexsignature".to_owned()),
            (4, "target type 2 (OLE2) is not supported".to_owned()),
            (5, "offset \"EP+0\" needs PE parsing: not supported".to_owned()),
            (8, "unexpected 'z' at character 3".to_owned()),
            (9, "negated alternatives !(..) are not supported".to_owned()),
            (10, "bad gap {5-2}".to_owned()),
        ]
    );
    assert_eq!(errors[0].to_string(), "local.ndu:3: expected name:target:offset:hexsignature");
    assert_eq!(signatures.len(), Signatures::builtin().len() + 3);
    for (content, name) in
        [(&b"the first one"[..], "Test.One"), (b"a second one", "Test.Two"), (b"the third one", "Test.Three")]
    {
        let msg = with_attachment("f.txt", "base64", &base64(content));
        assert_eq!(signatures.scan(msg.as_bytes()).map(|d| d.name), Some(name.to_owned()));
    }
    // EICAR and hash signatures still work next to body signatures.
    let hdb =
        SourceFile { name: "local.hdb".to_owned(), bytes: format!("{}:5:Test.Hash\n", md5_hex(b"hello")).into_bytes() };
    let body = SourceFile {
        name: "local.ndb".to_owned(),
        bytes: format!("Test.Body:0:*:{}\n", hex(b"first one")).into_bytes(),
    };
    let (both, errors) = Signatures::compile(&[hdb, body]);
    assert_eq!(errors, vec![]);
    assert_eq!(both.len(), Signatures::builtin().len() + 2);
    assert!(both.scan(with_attachment("e.com", "base64", EICAR_B64).as_bytes()).is_some());
    assert_eq!(
        both.scan(with_attachment("h.txt", "base64", &base64(b"hello")).as_bytes()).map(|d| d.name),
        Some("Test.Hash".to_owned())
    );
}

#[test]
fn signatures_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Signatures>();
}

/// Standard base64 with padding, for building test messages.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn test_base64_helper() {
    assert_eq!(base64(EICAR), EICAR_B64);
    let mut crlf = EICAR.to_vec();
    crlf.extend_from_slice(b"\r\n");
    assert_eq!(base64(&crlf), EICAR_CRLF_B64);
}
