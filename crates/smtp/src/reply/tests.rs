use super::*;
use proptest::prelude::*;

#[test]
fn enhanced_code_parsing() {
    type Case = (&'static str, Option<(u8, u16, u16)>);
    let cases: &[Case] = &[
        ("5.7.1", Some((5, 7, 1))),
        ("2.0.0", Some((2, 0, 0))),
        ("4.999.999", Some((4, 999, 999))),
        ("2.01.0", Some((2, 1, 0))),
        ("3.0.0", None),
        ("5.7", None),
        ("5.7.", None),
        ("5..1", None),
        ("5.1000.1", None),
        ("5.7.1 ", None),
        ("55.7.1", None),
        ("", None),
    ];
    for (text, want) in cases {
        let want = want.map(|(c, s, d)| EnhancedCode::new(c, s, d));
        assert_eq!(EnhancedCode::parse(text), want, "{text:?}");
    }
    assert_eq!(EnhancedCode::new(5, 7, 1).to_string(), "5.7.1");
    // The parser is usable in constants.
    const RELAY: Option<EnhancedCode> = EnhancedCode::parse("5.7.1");
    assert_eq!(RELAY, Some(EnhancedCode::new(5, 7, 1)));
}

#[test]
fn new_drops_a_bad_or_mismatched_enhanced_code() {
    assert_eq!(Reply::new(550, "5.7.1", "x").enhanced, Some(EnhancedCode::new(5, 7, 1)));
    assert_eq!(Reply::new(550, "", "x").enhanced, None);
    assert_eq!(Reply::new(550, "5.7", "x").enhanced, None);
    assert_eq!(Reply::new(250, "5.7.1", "x").enhanced, None);
    assert_eq!(Reply::new(354, "", "Go ahead").render(), "354 Go ahead\r\n");
}

#[test]
fn parse_for_agrees_with_new_and_works_in_constants() {
    const RELAY: Option<EnhancedCode> = EnhancedCode::parse_for(550, "5.7.1");
    assert_eq!(RELAY, Some(EnhancedCode::new(5, 7, 1)));
    for (code, text) in [(550, "5.7.1"), (250, "5.7.1"), (250, "2.0.0"), (550, "5.7"), (550, ""), (354, "3.0.0")] {
        assert_eq!(EnhancedCode::parse_for(code, text), Reply::new(code, text, "x").enhanced, "{code} {text:?}");
    }
}

#[test]
fn render_table() {
    let cases: &[(Reply, &str)] = &[
        (Reply::new(250, "2.1.0", "Ok"), "250 2.1.0 Ok\r\n"),
        (Reply::plain(220, "mx.example ESMTP"), "220 mx.example ESMTP\r\n"),
        (Reply::plain(250, "mx\nPIPELINING\nSIZE 10"), "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n"),
        (Reply::new(550, "5.7.1", "first\nlast"), "550-5.7.1 first\r\n550 5.7.1 last\r\n"),
        (Reply::plain(250, ""), "250\r\n"),
        (Reply::new(250, "2.0.0", ""), "250 2.0.0\r\n"),
        (Reply::plain(250, "a\n\nb"), "250-a\r\n250-\r\n250 b\r\n"),
        // Text can never break out of its line.
        (Reply::plain(250, "a\r\nb"), "250-a\r\n250 b\r\n"),
        (Reply::plain(250, "a\rb\x00c"), "250 a b c\r\n"),
    ];
    for (reply, want) in cases {
        assert_eq!(reply.render(), *want, "{reply:?}");
    }
}

#[test]
fn classes() {
    let r = |code| Reply::plain(code, "");
    assert!(r(250).is_positive() && r(250).is_positive_completion() && !r(250).is_intermediate());
    assert!(r(354).is_positive() && r(354).is_intermediate() && !r(354).is_positive_completion());
    assert!(r(451).is_transient() && !r(451).is_permanent() && !r(451).is_positive());
    assert!(r(550).is_permanent() && !r(550).is_transient());
}

#[test]
fn display_is_one_line() {
    assert_eq!(Reply::new(550, "5.1.1", "User unknown\nreally").to_string(), "550 5.1.1 User unknown really");
    assert_eq!(Reply::plain(221, "Bye").to_string(), "221 Bye");
}

#[test]
fn parse_table() {
    type Want = Result<Option<(u16, Option<(u8, u16, u16)>, &'static str, usize)>, ReplyError>;
    let cases: &[(&[u8], Want)] = &[
        (b"250 2.1.0 Ok\r\n", Ok(Some((250, Some((2, 1, 0)), "Ok", 14)))),
        (b"250 Ok\r\nNEXT", Ok(Some((250, None, "Ok", 8)))),
        (b"220\r\n", Ok(Some((220, None, "", 5)))),
        (b"250 2.0.0\r\n", Ok(Some((250, Some((2, 0, 0)), "", 11)))),
        (b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\nrest", Ok(Some((250, None, "mx\nPIPELINING\nSIZE 100", 38)))),
        (b"550-5.7.1 first\r\n550 5.7.1 last\r\n", Ok(Some((550, Some((5, 7, 1)), "first\nlast", 33)))),
        // Only lines that carry the same code lose it.
        (b"550-5.7.1 first\r\n550 second\r\n", Ok(Some((550, Some((5, 7, 1)), "first\nsecond", 29)))),
        (b"550-5.7.1 first\r\n550 5.1.1 other\r\n", Ok(Some((550, Some((5, 7, 1)), "first\n5.1.1 other", 34)))),
        // The class must match the code's first digit, and the code must stand alone.
        (b"250 5.7.1 odd\r\n", Ok(Some((250, None, "5.7.1 odd", 15)))),
        (b"250 2.1.0x\r\n", Ok(Some((250, None, "2.1.0x", 12)))),
        (b"250 2.1.0 Ok\n", Ok(Some((250, Some((2, 1, 0)), "Ok", 13)))),
        // Incomplete input.
        (b"", Ok(None)),
        (b"250", Ok(None)),
        (b"250 Ok\r", Ok(None)),
        (b"250-mx\r\n250-PIPE", Ok(None)),
        (b"250-mx\r\n", Ok(None)),
        // Errors.
        (b"hello\r\n", Err(ReplyError::BadCode { line: 1 })),
        (b"25\r\n", Err(ReplyError::BadCode { line: 1 })),
        (b"650 x\r\n", Err(ReplyError::BadCode { line: 1 })),
        (b"260 x\r\n", Err(ReplyError::BadCode { line: 1 })),
        (b"250_x\r\n", Err(ReplyError::BadSeparator { line: 1 })),
        (b"250-a\r\n251 b\r\n", Err(ReplyError::MixedCodes { line: 2, expected: 250, found: 251 })),
        (b"250-a\r\nxyz\r\n", Err(ReplyError::BadCode { line: 2 })),
    ];
    for (input, want) in cases {
        let got = parse_reply(input)
            .map(|o| o.map(|(r, used)| (r.code, r.enhanced.map(|e| (e.class, e.subject, e.detail)), r.text, used)));
        let want = want.clone().map(|o| o.map(|(c, e, t, u)| (c, e, t.to_string(), u)));
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn parse_is_bounded() {
    let long = vec![b'2'; MAX_REPLY_LINE + 10];
    assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
    let mut long_line = b"250 ".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', MAX_REPLY_LINE));
    long_line.extend_from_slice(b"\r\n");
    assert_eq!(parse_reply(&long_line), Err(ReplyError::LineTooLong));
    let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
    assert_eq!(parse_reply(many.as_bytes()), Err(ReplyError::TooManyLines));
}

#[test]
fn ehlo_keywords() {
    let (reply, _) = parse_reply(
        b"250-mx.example Hello client\r\n250-PIPELINING\r\n250-size 35882577\r\n250-AUTH PLAIN LOGIN\r\n\
          250-AUTH=LOGIN\r\n250-\r\n250 8BITMIME\r\n",
    )
    .unwrap()
    .unwrap();
    let want: Vec<(String, String)> =
        [("PIPELINING", ""), ("SIZE", "35882577"), ("AUTH", "PLAIN LOGIN"), ("AUTH=LOGIN", ""), ("8BITMIME", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(parse_ehlo_keywords(&reply), want);
    assert_eq!(parse_ehlo_keywords(&Reply::plain(250, "mx.example")), vec![]);
}

/// Reply text whose lines cannot be mistaken for an enhanced code: printable, starting with a letter.
fn text_line() -> impl Strategy<Value = String> {
    "([A-Za-z][ -~]{0,30})?"
}

fn reply() -> impl Strategy<Value = Reply> {
    let code = (2u16..=5, 0u16..=5, 0u16..=9).prop_map(|(a, b, c)| a * 100 + b * 10 + c);
    let enhanced = proptest::option::of((0u16..=999, 0u16..=999));
    let text = proptest::collection::vec(text_line(), 1..5).prop_map(|lines| lines.join("\n"));
    (code, enhanced, text).prop_map(|(code, enhanced, text)| {
        // Enhanced codes only exist for classes 2, 4 and 5.
        let class = u8::try_from(code / 100).unwrap_or_default();
        let enhanced = enhanced.filter(|_| class != 3).map(|(s, d)| EnhancedCode::new(class, s, d));
        Reply { code, enhanced, text }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_of_render_is_identity(reply in reply(), trailing in "[A-Z0-9 ]{0,8}") {
        let wire = reply.render();
        let mut input = wire.clone().into_bytes();
        input.extend_from_slice(trailing.as_bytes());
        prop_assert_eq!(parse_reply(&input), Ok(Some((reply, wire.len()))));
    }

    #[test]
    fn every_proper_prefix_needs_more(reply in reply()) {
        let wire = reply.render();
        for end in 0..wire.len() {
            prop_assert_eq!(parse_reply(&wire.as_bytes()[..end]), Ok(None));
        }
    }

    #[test]
    fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_reply(&input);
    }
}
