use super::*;
use crate::params::{BodyType, Notify, Orcpt, Ret};
use crate::xtext::XText;
use proptest::prelude::*;

fn addr(text: &str) -> Address {
    Address::parse(text, true).unwrap()
}

fn mail(from: &str, params: MailParams) -> Command {
    let from = if from.is_empty() { ReversePath::Null } else { ReversePath::Address(addr(from)) };
    Command::Mail { from, params }
}

fn rcpt(to: &str, params: RcptParams) -> Command {
    let to = if to.eq_ignore_ascii_case("postmaster") {
        parse_path_prefix(format!("<{to}>").as_bytes(), AddressRole::Recipient, false).map(|(p, _)| p)
    } else {
        Ok(ReversePath::Address(addr(to)))
    };
    match to {
        Ok(ReversePath::Address(to)) => Command::Rcpt { to, params },
        other => panic!("test address {other:?}"),
    }
}

fn xtext(encoded: &str) -> XText {
    XText::decode(encoded).unwrap()
}

#[test]
fn valid_commands() {
    let cases: Vec<(&[u8], bool, Command)> = vec![
        (b"EHLO client.example", false, Command::Ehlo("client.example".into())),
        (b"ehlo [192.0.2.1]", false, Command::Ehlo("[192.0.2.1]".into())),
        (b"EHLO [IPv6:2001:db8::1]", false, Command::Ehlo("[IPv6:2001:db8::1]".into())),
        (b"HELO client.example.", false, Command::Helo("client.example.".into())),
        (b"HeLo client", false, Command::Helo("client".into())),
        (b"EHLO client.example  ", false, Command::Ehlo("client.example".into())),
        (b"QUIT", false, Command::Quit),
        (b"quit ", false, Command::Quit),
        (b"data", false, Command::Data),
        (b"RSET", false, Command::Rset),
        (b"STARTTLS", false, Command::StartTls),
        (b"NOOP", false, Command::Noop),
        (b"NOOP anything at all", false, Command::Noop),
        (b"HELP", false, Command::Help),
        (b"HELP MAIL", false, Command::Help),
        (b"VRFY postmaster", false, Command::Vrfy("postmaster".into())),
        (b"EXPN staff list", false, Command::Expn("staff list".into())),
        ("VRFY j\u{f6}rg".as_bytes(), true, Command::Vrfy("j\u{f6}rg".into())),
        (b"BDAT 100", false, Command::Bdat { size: 100, last: false }),
        (b"BDAT 0 last", false, Command::Bdat { size: 0, last: true }),
        (b"BDAT 18446744073709551615 LAST", false, Command::Bdat { size: u64::MAX, last: true }),
        (b"AUTH plain", false, Command::Auth { mechanism: "PLAIN".into(), initial: None }),
        (
            b"AUTH PLAIN AHVzZXIAcGFzcw==",
            false,
            Command::Auth { mechanism: "PLAIN".into(), initial: Some("AHVzZXIAcGFzcw==".into()) },
        ),
        (b"AUTH EXTERNAL =", false, Command::Auth { mechanism: "EXTERNAL".into(), initial: Some("=".into()) }),
        (b"AUTH SCRAM-SHA-256", false, Command::Auth { mechanism: "SCRAM-SHA-256".into(), initial: None }),
        // MAIL.
        (b"MAIL FROM:<a@b.example>", false, mail("a@b.example", MailParams::default())),
        (b"mail from:<a@b.example>", false, mail("a@b.example", MailParams::default())),
        (b"MAIL FROM: <a@b.example>", false, mail("a@b.example", MailParams::default())),
        (b"MAIL FROM:<>", false, mail("", MailParams::default())),
        (b"MAIL FROM:<> ", false, mail("", MailParams::default())),
        (b"MAIL FROM:<@relay.example:a@b.example>", false, mail("a@b.example", MailParams::default())),
        (
            b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8bitmime RET=hdrs ENVID=x+2By AUTH=<>",
            false,
            mail(
                "a@b.example",
                MailParams {
                    size: Some(1000),
                    body: Some(BodyType::EightBitMime),
                    ret: Some(Ret::Hdrs),
                    envid: Some(xtext("x+2By")),
                    auth: Some(xtext("<>")),
                    ..MailParams::default()
                },
            ),
        ),
        (
            b"MAIL FROM:<a@b.example>  body=7BIT   size=0",
            false,
            mail("a@b.example", MailParams { size: Some(0), body: Some(BodyType::SevenBit), ..MailParams::default() }),
        ),
        (
            b"MAIL FROM:<a@b.example> BODY=BINARYMIME RET=FULL",
            false,
            mail(
                "a@b.example",
                MailParams { body: Some(BodyType::BinaryMime), ret: Some(Ret::Full), ..MailParams::default() },
            ),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=99999999999999999999",
            false,
            mail("a@b.example", MailParams { size: Some(u64::MAX), ..MailParams::default() }),
        ),
        (
            b"MAIL FROM:<a@b.example> SMTPUTF8",
            false,
            mail("a@b.example", MailParams { smtputf8: true, ..MailParams::default() }),
        ),
        (
            "MAIL FROM:<\u{fc}@b.example> SMTPUTF8".as_bytes(),
            true,
            mail("\u{fc}@b.example", MailParams { smtputf8: true, ..MailParams::default() }),
        ),
        // RCPT, with the relay tricks: each is an ordinary mailbox at accepted.test.
        (b"RCPT TO:<c@d.example>", false, rcpt("c@d.example", RcptParams::default())),
        (b"rcpt to: <c@d.example>", false, rcpt("c@d.example", RcptParams::default())),
        (
            b"RCPT TO:<user%other.example@accepted.test>",
            false,
            rcpt("user%other.example@accepted.test", RcptParams::default()),
        ),
        (
            b"RCPT TO:<other.example!user@accepted.test>",
            false,
            rcpt("other.example!user@accepted.test", RcptParams::default()),
        ),
        (b"RCPT TO:<@relay.example:user@accepted.test>", false, rcpt("user@accepted.test", RcptParams::default())),
        (
            b"RCPT TO:<\"user@other.example\"@accepted.test>",
            false,
            rcpt("\"user@other.example\"@accepted.test", RcptParams::default()),
        ),
        (b"RCPT TO:<user@[127.0.0.1]>", false, rcpt("user@[127.0.0.1]", RcptParams::default())),
        (b"RCPT TO:<Postmaster>", false, rcpt("Postmaster", RcptParams::default())),
        ("RCPT TO:<\u{fc}@d.example>".as_bytes(), true, rcpt("\u{fc}@d.example", RcptParams::default())),
        (
            b"RCPT TO:<c@d.example> NOTIFY=success,Failure ORCPT=rfc822;c+40d.example",
            false,
            rcpt(
                "c@d.example",
                RcptParams {
                    notify: Some(Notify { success: true, failure: true, delay: false }),
                    orcpt: Some(Orcpt { addr_type: "rfc822".into(), address: xtext("c+40d.example") }),
                },
            ),
        ),
        (
            b"RCPT TO:<c@d.example> NOTIFY=NEVER",
            false,
            rcpt("c@d.example", RcptParams { notify: Some(Notify::NEVER), ..RcptParams::default() }),
        ),
        (
            b"RCPT TO:<c@d.example> NOTIFY=DELAY",
            false,
            rcpt(
                "c@d.example",
                RcptParams { notify: Some(Notify { delay: true, ..Notify::NEVER }), ..RcptParams::default() },
            ),
        ),
    ];
    for (line, smtputf8, want) in cases {
        assert_eq!(parse_command(line, smtputf8), Ok(want), "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn invalid_commands() {
    use AddressError as A;
    use CommandError::*;
    let long_local = format!("RCPT TO:<{}@example.com>", "x".repeat(65));
    let cases: Vec<(&[u8], bool, CommandError)> = vec![
        (b"", false, Unrecognized),
        (b"FOO", false, Unrecognized),
        (b"MAILFROM:<a@b.example>", false, Unrecognized),
        (b" MAIL FROM:<a@b.example>", false, Unrecognized),
        (b"M\xc3\xa4IL", false, Unrecognized),
        // NUL, CR or LF anywhere.
        (b"NOOP\rMAIL FROM:<a@b.example>", false, InvalidCharacter),
        (b"NOOP\nQUIT", false, InvalidCharacter),
        (b"MAIL FROM:<a@b.example>\x00", false, InvalidCharacter),
        (b"RCPT TO:<c@d.example>\r", false, InvalidCharacter),
        // Arguments where there should be none, and none where one is needed.
        (b"QUIT now", false, Syntax("this command takes no arguments")),
        (b"DATA x", false, Syntax("this command takes no arguments")),
        (b"STARTTLS x", false, Syntax("this command takes no arguments")),
        (b"EHLO", false, Syntax("EHLO and HELO take one domain name or address literal")),
        (b"EHLO two words", false, Syntax("EHLO and HELO take one domain name or address literal")),
        (b"HELO caf\xc3\xa9", false, Syntax("EHLO and HELO take one domain name or address literal")),
        (b"VRFY", false, Syntax("an argument is required")),
        (b"VRFY \xc3\xa4", false, NonAscii),
        (b"VRFY \xff", true, Syntax("the argument is not UTF-8")),
        (b"BDAT", false, Syntax("expected BDAT <size> [LAST]")),
        (b"BDAT -1", false, Syntax("expected BDAT <size> [LAST]")),
        (b"BDAT 10 FIRST", false, Syntax("expected BDAT <size> [LAST]")),
        (b"BDAT 10 LAST x", false, Syntax("expected BDAT <size> [LAST]")),
        (b"BDAT 18446744073709551616", false, Syntax("expected BDAT <size> [LAST]")),
        (b"AUTH", false, Syntax("expected AUTH <mechanism> [initial-response]")),
        (b"AUTH PLAIN a b", false, Syntax("expected AUTH <mechanism> [initial-response]")),
        (b"AUTH PLAIN a!b", false, Syntax("the initial response must be base64")),
        (b"AUTH THIS-MECHANISM-IS-TOO-LONG", false, Syntax("expected AUTH <mechanism> [initial-response]")),
        // MAIL and RCPT framing.
        (b"MAIL", false, Syntax("expected MAIL FROM:<address>")),
        (b"MAIL TO:<a@b.example>", false, Syntax("expected MAIL FROM:<address>")),
        (b"MAIL FROM :<a@b.example>", false, Syntax("expected MAIL FROM:<address>")),
        (b"RCPT FROM:<a@b.example>", false, Syntax("expected RCPT TO:<address>")),
        (b"MAIL FROM:a@b.example", false, Sender(A::Brackets)),
        (b"MAIL FROM:<a@b.example>SIZE=1", false, Syntax("unexpected text after the address")),
        (b"RCPT TO:<x@y.example>junk", false, Syntax("unexpected text after the address")),
        (b"MAIL FROM:<a@b.example.>", false, Sender(A::TrailingDot)),
        (b"MAIL FROM:<postmaster>", false, Sender(A::MissingDomain)),
        (b"RCPT TO:<x@y.example.>", false, Recipient(A::TrailingDot)),
        (b"RCPT TO:<>", false, Recipient(A::NullNotAllowed)),
        (b"RCPT TO:<a..b@y.example>", false, Recipient(A::LocalPart)),
        (b"RCPT TO:<x@[300.0.0.1]>", false, Recipient(A::AddressLiteral)),
        (long_local.as_bytes(), false, Recipient(A::LocalPartTooLong)),
        // 8-bit without SMTPUTF8: RCPT needs the transaction's, MAIL its own parameter.
        (b"RCPT TO:<\xc3\xbc@y.example>", false, Recipient(A::NonAscii)),
        (b"MAIL FROM:<\xc3\xbc@y.example>", true, Sender(A::NonAscii)),
        (b"MAIL FROM:<\xc3\xbc@y.example> SMTPUTF8", false, Sender(A::NonAscii)),
        (b"RCPT TO:<\xff@y.example>", true, Recipient(A::InvalidUtf8)),
        // Parameters.
        (b"MAIL FROM:<a@b.example> FOO=1", false, UnknownParameter("FOO".into())),
        (b"MAIL FROM:<a@b.example> notify=NEVER", false, UnknownParameter("NOTIFY".into())),
        (b"RCPT TO:<c@d.example> SIZE=1", false, UnknownParameter("SIZE".into())),
        (b"MAIL FROM:<a@b.example> SIZE=1 size=2", false, DuplicateParameter("SIZE".into())),
        (b"RCPT TO:<c@d.example> NOTIFY=NEVER NOTIFY=NEVER", false, DuplicateParameter("NOTIFY".into())),
        (b"MAIL FROM:<a@b.example> SIZE=", false, Syntax("bad parameter syntax")),
        (b"MAIL FROM:<a@b.example> =1", false, Syntax("bad parameter syntax")),
        (b"MAIL FROM:<a@b.example> SI_ZE=1", false, Syntax("bad parameter syntax")),
        (b"MAIL FROM:<a@b.example> ENVID=a=b", false, Syntax("bad parameter syntax")),
        (b"MAIL FROM:<a@b.example> ENVID=\xc3\xa4", false, Syntax("bad parameter syntax")),
        (
            b"MAIL FROM:<a@b.example> SIZE=12x",
            false,
            InvalidParameter { keyword: "SIZE", reason: "expected a number of octets" },
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=999999999999999999999",
            false,
            InvalidParameter { keyword: "SIZE", reason: "expected a number of octets" },
        ),
        (b"MAIL FROM:<a@b.example> SIZE", false, InvalidParameter { keyword: "SIZE", reason: "needs a value" }),
        (
            b"MAIL FROM:<a@b.example> BODY=9BIT",
            false,
            InvalidParameter { keyword: "BODY", reason: "expected 7BIT, 8BITMIME or BINARYMIME" },
        ),
        (
            b"MAIL FROM:<a@b.example> SMTPUTF8=yes",
            false,
            InvalidParameter { keyword: "SMTPUTF8", reason: "takes no value" },
        ),
        (
            b"MAIL FROM:<a@b.example> RET=ALL",
            false,
            InvalidParameter { keyword: "RET", reason: "expected FULL or HDRS" },
        ),
        (b"MAIL FROM:<a@b.example> ENVID=a+zz", false, InvalidParameter { keyword: "ENVID", reason: "bad xtext" }),
        (b"MAIL FROM:<a@b.example> ENVID=a+0A", false, InvalidParameter { keyword: "ENVID", reason: "bad xtext" }),
        (
            b"RCPT TO:<c@d.example> NOTIFY=NEVER,SUCCESS",
            false,
            InvalidParameter { keyword: "NOTIFY", reason: "NEVER cannot be combined" },
        ),
        (
            b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,SUCCESS",
            false,
            InvalidParameter { keyword: "NOTIFY", reason: "repeated keyword" },
        ),
        (
            b"RCPT TO:<c@d.example> NOTIFY=SOMETIMES",
            false,
            InvalidParameter { keyword: "NOTIFY", reason: "expected NEVER or SUCCESS, FAILURE, DELAY" },
        ),
        (
            b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,",
            false,
            InvalidParameter { keyword: "NOTIFY", reason: "expected NEVER or SUCCESS, FAILURE, DELAY" },
        ),
        (
            b"RCPT TO:<c@d.example> ORCPT=c@d.example",
            false,
            InvalidParameter { keyword: "ORCPT", reason: "expected addr-type;address" },
        ),
        (
            b"RCPT TO:<c@d.example> ORCPT=;c@d.example",
            false,
            InvalidParameter { keyword: "ORCPT", reason: "bad address type" },
        ),
        (b"RCPT TO:<c@d.example> ORCPT=rfc822;", false, InvalidParameter { keyword: "ORCPT", reason: "bad xtext" }),
    ];
    for (line, smtputf8, want) in cases {
        assert_eq!(parse_command(line, smtputf8), Err(want), "{:?}", String::from_utf8_lossy(line));
    }
    let envid = format!("MAIL FROM:<a@b.example> ENVID={}", "x".repeat(101));
    assert_eq!(
        parse_command(envid.as_bytes(), false),
        Err(InvalidParameter { keyword: "ENVID", reason: "longer than 100 characters" })
    );
}

#[test]
fn error_replies() {
    let reply = |line: &[u8], smtputf8: bool| parse_command(line, smtputf8).map(|_| ()).unwrap_err().reply().render();
    let cases: &[(&[u8], bool, &str)] = &[
        (b"FOO", false, "500 5.5.1 Command unrecognized\r\n"),
        (b"NOOP\rQUIT", false, "500 5.5.2 Syntax error: NUL, bare CR or bare LF in command line\r\n"),
        (b"QUIT now", false, "501 5.5.4 Syntax error: this command takes no arguments\r\n"),
        (b"MAIL FROM:<a@b.example> FOO=1", false, "555 5.5.4 Unsupported parameter FOO\r\n"),
        (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", false, "501 5.5.4 Duplicate parameter SIZE\r\n"),
        (b"MAIL FROM:<a@b.example> RET=ALL", false, "501 5.5.4 Invalid RET parameter: expected FULL or HDRS\r\n"),
        (b"MAIL FROM:<a@b.example.>", false, "553 5.1.7 Bad sender address syntax: the domain ends with a dot\r\n"),
        (b"RCPT TO:<x@y.example.>", false, "501 5.1.3 Bad recipient address syntax: the domain ends with a dot\r\n"),
        (b"RCPT TO:<\xc3\xbc@y.example>", false, "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"),
        (b"VRFY \xc3\xbc", false, "553 5.6.7 Non-ASCII argument requires SMTPUTF8\r\n"),
    ];
    for (line, smtputf8, want) in cases {
        assert_eq!(reply(line, *smtputf8), *want, "{:?}", String::from_utf8_lossy(line));
    }
    let long = CommandError::UnknownParameter("X".repeat(500)).reply();
    assert!(long.text.len() < 100);
}

#[test]
fn render_table() {
    let cases: Vec<(Command, &str)> = vec![
        (Command::Ehlo("client.example".into()), "EHLO client.example\r\n"),
        (Command::Quit, "QUIT\r\n"),
        (Command::Bdat { size: 42, last: true }, "BDAT 42 LAST\r\n"),
        (Command::Bdat { size: 42, last: false }, "BDAT 42\r\n"),
        (Command::Auth { mechanism: "PLAIN".into(), initial: Some("=".into()) }, "AUTH PLAIN =\r\n"),
        (mail("", MailParams::default()), "MAIL FROM:<>\r\n"),
        (
            mail(
                "\"john doe\"@b.example",
                MailParams {
                    size: Some(7),
                    body: Some(BodyType::EightBitMime),
                    smtputf8: true,
                    ret: Some(Ret::Full),
                    envid: Some(xtext("id+2B1")),
                    auth: Some(xtext("<>")),
                },
            ),
            "MAIL FROM:<\"john doe\"@b.example> SIZE=7 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=id+2B1 AUTH=<>\r\n",
        ),
        (
            rcpt(
                "c@d.example",
                RcptParams {
                    notify: Some(Notify { success: true, failure: false, delay: true }),
                    orcpt: Some(Orcpt { addr_type: "rfc822".into(), address: xtext("c+40d.example") }),
                },
            ),
            "RCPT TO:<c@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+40d.example\r\n",
        ),
        (
            rcpt("c@d.example", RcptParams { notify: Some(Notify::NEVER), orcpt: None }),
            "RCPT TO:<c@d.example> NOTIFY=NEVER\r\n",
        ),
        (rcpt("postmaster", RcptParams::default()), "RCPT TO:<postmaster>\r\n"),
    ];
    for (command, want) in cases {
        assert_eq!(command.render(), want);
    }
}

#[test]
fn param_helpers() {
    let Ok(Command::Rcpt { params, .. }) =
        parse_command(b"RCPT TO:<c@d.example> NOTIFY=failure,success ORCPT=rfc822;c+40d.example", false)
    else {
        panic!("RCPT did not parse");
    };
    assert_eq!(params.notify_string().as_deref(), Some("SUCCESS,FAILURE"));
    assert_eq!(params.orcpt_string().as_deref(), Some("rfc822;c@d.example"));
    assert_eq!(params.orcpt.map(|o| o.to_string()).as_deref(), Some("rfc822;c+40d.example"));
    let Ok(Command::Mail { params, .. }) = parse_command(b"MAIL FROM:<> BODY=8BITMIME", false) else {
        panic!("MAIL did not parse");
    };
    assert!(params.body_8bit());
    assert!(!MailParams::default().body_8bit());
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        4 => crate::address::tests::address_text(false).prop_map(|t| addr(&t)),
        1 => crate::address::tests::address_text(true).prop_map(|t| addr(&t)),
    ]
}

fn opt_xtext() -> impl Strategy<Value = Option<XText>> {
    proptest::option::of("[ -~]{1,30}").prop_map(|value| value.and_then(|v| XText::encode(&v).ok()))
}

fn mail_params() -> impl Strategy<Value = MailParams> {
    let body = proptest::option::of(prop_oneof![
        Just(BodyType::SevenBit),
        Just(BodyType::EightBitMime),
        Just(BodyType::BinaryMime)
    ]);
    let ret = proptest::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Hdrs)]);
    (proptest::option::of(any::<u64>()), body, any::<bool>(), ret, opt_xtext(), opt_xtext())
        .prop_map(|(size, body, smtputf8, ret, envid, auth)| MailParams { size, body, smtputf8, ret, envid, auth })
}

fn rcpt_params() -> impl Strategy<Value = RcptParams> {
    let notify = proptest::option::of(any::<(bool, bool, bool)>())
        .prop_map(|n| n.map(|(success, failure, delay)| Notify { success, failure, delay }));
    let orcpt = proptest::option::of(("rfc822|utf-8|x-[a-z]{1,5}", crate::address::tests::address_text(false)))
        .prop_map(|o| o.and_then(|(t, a)| XText::encode(&a).ok().map(|address| Orcpt { addr_type: t, address })));
    (notify, orcpt).prop_map(|(notify, orcpt)| RcptParams { notify, orcpt })
}

fn command() -> impl Strategy<Value = Command> {
    // A domain name or an IPv4 address literal: what EHLO and HELO take.
    let helo = "([a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\\.){0,3}[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?|\\[192\\.0\\.2\\.[1-9]\\]";
    let text = "[!-~]([ -~]{0,20}[!-~])?";
    prop_oneof![
        helo.prop_map(Command::Ehlo),
        helo.prop_map(Command::Helo),
        (proptest::option::of(address()), mail_params()).prop_map(|(from, mut params)| {
            // A UTF-8 reverse path is only valid with SMTPUTF8.
            if from.as_ref().is_some_and(|a| !a.is_ascii()) {
                params.smtputf8 = true;
            }
            Command::Mail { from: from.map_or(ReversePath::Null, ReversePath::Address), params }
        }),
        (address(), rcpt_params()).prop_map(|(to, params)| Command::Rcpt { to, params }),
        Just(Command::Data),
        (any::<u64>(), any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
        Just(Command::Rset),
        Just(Command::Noop),
        Just(Command::Quit),
        text.prop_map(Command::Vrfy),
        text.prop_map(Command::Expn),
        Just(Command::Help),
        Just(Command::StartTls),
        ("[A-Z0-9_-]{1,20}", proptest::option::of("[A-Za-z0-9+/]{1,40}={0,2}|="))
            .prop_map(|(mechanism, initial)| Command::Auth { mechanism, initial }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_of_render_is_identity(command in command()) {
        let wire = command.render();
        let line = wire.strip_suffix("\r\n").map(str::as_bytes);
        prop_assert_eq!(line.map(|l| parse_command(l, true)), Some(Ok(command)));
    }

    #[test]
    fn never_panics(line in proptest::collection::vec(any::<u8>(), 0..80), smtputf8 in any::<bool>()) {
        if let Err(e) = parse_command(&line, smtputf8) {
            let reply = e.reply();
            prop_assert!(reply.is_permanent());
            prop_assert!(reply.enhanced.is_some());
        }
    }

    #[test]
    fn never_panics_on_command_like_lines(
        verb in "MAIL FROM:|RCPT TO:|EHLO |BDAT |AUTH |VRFY ",
        rest in proptest::collection::vec(prop_oneof![
            Just(b'<'), Just(b'>'), Just(b'@'), Just(b'"'), Just(b'\\'), Just(b'.'), Just(b' '), Just(b'='),
            Just(b'['), Just(b']'), Just(b':'), Just(b','), Just(b'a'), Just(0xc3), Just(0xbc),
        ], 0..40),
        smtputf8 in any::<bool>(),
    ) {
        let mut line = verb.into_bytes();
        line.extend_from_slice(&rest);
        if let Err(e) = parse_command(&line, smtputf8) {
            prop_assert!(e.reply().is_permanent());
        }
    }
}

#[test]
fn ehlo_takes_a_domain_or_an_address_literal_only() {
    let long = format!("EHLO {}", "a".repeat(600));
    for bad in
        ["EHLO [255.255.255.256]", "EHLO [192.0.2.1", "EHLO !!!", "EHLO a..b", "HELO -bad-.example", long.as_str()]
    {
        let e = parse_command(bad.as_bytes(), false).unwrap_err();
        assert_eq!(e, CommandError::HeloName, "{bad}");
        assert_eq!(e.reply().render().get(..9), Some("501 5.5.2"), "{bad}");
    }
}
