use super::*;

/// Decodes quoted-printable as a reader would (RFC 2045 6.7), to check that conversion keeps the content.
fn decode_qp(encoded: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).unwrap() as u8;
    let mut out = Vec::new();
    let mut i = 0;
    while i < encoded.len() {
        match encoded[i] {
            b'=' if encoded[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' => {
                out.push(hex(encoded[i + 1]) << 4 | hex(encoded[i + 2]));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Every line is 7-bit and at most 76 characters: what a 7-bit next hop takes and QP promises.
fn assert_seven_bit_lines(message: &[u8]) {
    assert!(message.is_ascii(), "{}", String::from_utf8_lossy(message));
    for line in message.split(|&b| b == b'\n') {
        assert!(line.len() <= 77, "line too long: {:?}", String::from_utf8_lossy(line));
    }
}

fn convert(message: &str) -> Result<String, Unconvertible> {
    to_seven_bit(message.as_bytes(), false).map(|out| String::from_utf8(out).unwrap())
}

const LONG_FRENCH: &str = "Très cher ami, voilà une ligne bien plus longue que soixante-seize caractères, \
    avec des accents à chaque détour: é è ê ë à â ç ô ù û ü ÿ œ æ — fin.";

#[test]
fn a_single_8bit_part_becomes_quoted_printable_and_keeps_its_content() {
    let body = format!("Grüße aus Köln\r\n{LONG_FRENCH}\r\nend = \t\r\n");
    let message = format!(
        "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\nSubject: hi\r\n\r\n{body}"
    );
    let out = convert(&message).unwrap();
    assert_seven_bit_lines(out.as_bytes());
    let (header, encoded) = out.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        header,
        "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\nSubject: hi"
    );
    assert!(encoded.starts_with("Gr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n"), "{encoded}");
    // White space at the end of a line is encoded, `=` always.
    assert!(encoded.ends_with("end =3D =09\r\n"), "{encoded}");
    assert_eq!(decode_qp(encoded.as_bytes()), body.as_bytes());
}

#[test]
fn a_part_without_a_transfer_encoding_gets_one() {
    let out = convert("MIME-Version: 1.0\r\nSubject: x\r\n\r\ncaf\u{e9}\r\n").unwrap();
    assert_eq!(
        out,
        "MIME-Version: 1.0\r\nSubject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"
    );
}

#[test]
fn multipart_alternative_converts_only_its_8bit_parts() {
    let message = "MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
        \r\n\
        preamble\r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        na\u{ef}ve\r\n\
        --b1\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        <p>na=C3=AFve</p>\r\n\
        --b1--\r\n\
        epilogue\r\n";
    let out = convert(message).unwrap();
    assert_seven_bit_lines(out.as_bytes());
    let want = "MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
        \r\n\
        preamble\r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        na=C3=AFve\r\n\
        --b1\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        <p>na=C3=AFve</p>\r\n\
        --b1--\r\n\
        epilogue\r\n";
    assert_eq!(out, want);
}

#[test]
fn nested_multiparts_are_converted_and_encoded_parts_kept_byte_for_byte() {
    let base64_part = "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n";
    let message = format!(
        "MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed;\r\n boundary=outer (a comment)\r\n\
         \r\n\
         --outer\r\n\
         Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
         \r\n\
         --inner\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\n\
         Content-Transfer-Encoding: 8BIT\r\n\
         \r\n\
         \u{0}\r\n\
         --inner--\r\n\
         \r\n\
         --outer\r\n\
         {base64_part}\
         --outer--\r\n"
    )
    // A Latin-1 octet, as a real iso-8859-1 part has it (not UTF-8).
    .into_bytes();
    let message: Vec<u8> = message.iter().map(|&b| if b == 0 { 0xe9 } else { b }).collect();
    let out = String::from_utf8(to_seven_bit(&message, false).unwrap()).unwrap();
    assert_seven_bit_lines(out.as_bytes());
    assert!(out.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--inner--\r\n"), "{out}");
    assert!(out.contains(&format!("--outer\r\n{base64_part}--outer--\r\n")), "{out}");
    assert!(!out.contains("8BIT"), "{out}");
}

#[test]
fn a_7bit_message_is_sent_as_it_is() {
    let message = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\nplain ASCII\r\n";
    assert_eq!(convert(message).unwrap(), message);
}

#[test]
fn what_cannot_be_converted_is_refused() {
    let cases: &[(&str, Unconvertible)] = &[
        ("Subject: caf\u{e9}\r\nMIME-Version: 1.0\r\n\r\nx\r\n", Unconvertible::EightBitHeader),
        ("Subject: x\r\n\r\ncaf\u{e9}\r\n", Unconvertible::NotMime),
        (
            "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\ncaf\u{e9}\r\n",
            Unconvertible::EnclosedMessage("message/rfc822".into()),
        ),
        (
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\ncaf\u{e9}\r\n--b--\r\n",
            Unconvertible::EnclosedMessage("message/rfc822".into()),
        ),
        (
            "MIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\n\
             Subject: x\r\n\r\ncaf\u{e9}\r\n--b--\r\n",
            Unconvertible::EnclosedMessage("message/rfc822".into()),
        ),
        (
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain; name=\"r\u{e9}sum\u{e9}.txt\"\r\n\r\ncaf\u{e9}\r\n--b--\r\n",
            Unconvertible::EightBitHeader,
        ),
        (
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\ncaf\u{e9}\r\n",
            Unconvertible::Encoding("binary".into()),
        ),
        (
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\ncaf\u{e9}\r\n",
            Unconvertible::Encoding("base64".into()),
        ),
        ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\ncaf\u{e9}\r\n", Unconvertible::NoBoundary),
        (
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npr\u{e9}ambule\r\n--b\r\n\r\nx\r\n--b--\r\n",
            Unconvertible::OutsideParts,
        ),
    ];
    for (message, want) in cases {
        assert_eq!(convert(message).as_ref(), Err(want), "{message}");
    }
}

#[test]
fn with_smtputf8_header_fields_keep_their_8bit_octets() {
    let message = "Subject: caf\u{e9}\r\nMIME-Version: 1.0\r\n\r\ncaf\u{e9}\r\n";
    let out = String::from_utf8(to_seven_bit(message.as_bytes(), true).unwrap()).unwrap();
    assert_eq!(
        out,
        "Subject: caf\u{e9}\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"
    );
}

#[test]
fn message_global_is_encoded_like_a_leaf() {
    let out =
        convert("MIME-Version: 1.0\r\nContent-Type: message/global\r\n\r\nSubject: caf\u{e9}\r\n\r\nx\r\n").unwrap();
    assert!(out.contains("quoted-printable\r\n\r\nSubject: caf=C3=A9\r\n"), "{out}");
}

#[test]
fn quoted_printable_breaks_long_lines_and_round_trips() {
    for body in [
        "x".repeat(200),
        "é".repeat(100),
        format!("{}=\r\n", "a".repeat(74)),
        format!("{} \r\n", "a".repeat(75)),
        "bare\rcr and bare\nlf\r\n".to_owned(),
        String::new(),
        "\r\n\r\n".to_owned(),
    ] {
        let mut out = Vec::new();
        quoted_printable(body.as_bytes(), &mut out);
        for line in out.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.len() <= 76, "{:?}", String::from_utf8_lossy(line));
            assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"), "{:?}", String::from_utf8_lossy(line));
        }
        assert!(out.is_ascii());
        assert_eq!(decode_qp(&out), body.as_bytes(), "{}", String::from_utf8_lossy(&out));
    }
}
