use super::*;
use proptest::prelude::*;

/// Local part, domain, quoted, literal.
type Parsed = (&'static str, &'static str, bool, bool);

fn recipient(input: &str, smtputf8: bool) -> Result<Parsed, AddressError> {
    parse_forward_path(input.as_bytes(), smtputf8).map(|a| {
        // Leak in tests only, to compare against static expectations.
        let local: &'static str = Box::leak(a.local().to_string().into_boxed_str());
        let domain: &'static str = Box::leak(a.domain().to_string().into_boxed_str());
        (local, domain, a.is_quoted(), a.is_address_literal())
    })
}

#[test]
fn forward_paths() {
    use AddressError::*;
    let long_local = format!("<{}@example.com>", "x".repeat(65));
    let max_local = format!("<{}@example.com>", "x".repeat(64));
    let long_label = format!("<u@{}.com>", "x".repeat(64));
    let long_domain = format!("<u@{}com>", "abcdefghi.".repeat(26));
    let long_path =
        format!("<@{}:u@example.com>", ["a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(60)].join("."));
    let cases: Vec<(&str, bool, Result<Parsed, AddressError>)> = vec![
        ("<User@Example.COM>", false, Ok(("User", "Example.COM", false, false))),
        // Relay tricks: the final mailbox alone counts, and its domain is the one after the last '@'.
        ("<user%other.example@accepted.test>", false, Ok(("user%other.example", "accepted.test", false, false))),
        ("<other.example!user@accepted.test>", false, Ok(("other.example!user", "accepted.test", false, false))),
        ("<@relay.example:user@accepted.test>", false, Ok(("user", "accepted.test", false, false))),
        ("<@a.example,@b.example:user@accepted.test>", false, Ok(("user", "accepted.test", false, false))),
        ("<\"user@other.example\"@accepted.test>", false, Ok(("user@other.example", "accepted.test", true, false))),
        ("<\"john doe\"@example.com>", false, Ok(("john doe", "example.com", true, false))),
        ("<\"a\\\"b\\\\c\"@example.com>", false, Ok(("a\"b\\c", "example.com", true, false))),
        ("<\"\"@example.com>", false, Ok(("", "example.com", true, false))),
        ("<a.b-c+tag@sub.example-1.com>", false, Ok(("a.b-c+tag", "sub.example-1.com", false, false))),
        ("<user@localhost>", false, Ok(("user", "localhost", false, false))),
        ("<user@[127.0.0.1]>", false, Ok(("user", "[127.0.0.1]", false, true))),
        ("<user@[IPv6:::1]>", false, Ok(("user", "[IPv6:::1]", false, true))),
        ("<user@[ipv6:2001:db8::1]>", false, Ok(("user", "[ipv6:2001:db8::1]", false, true))),
        ("<postmaster>", false, Ok(("postmaster", "", false, false))),
        ("<PostMaster>", false, Ok(("PostMaster", "", false, false))),
        ("<postmaster@example.com>", false, Ok(("postmaster", "example.com", false, false))),
        (max_local.as_str(), false, Ok((Box::leak("x".repeat(64).into_boxed_str()), "example.com", false, false))),
        ("<\u{fc}ser@ex\u{e4}mple.com>", true, Ok(("\u{fc}ser", "ex\u{e4}mple.com", false, false))),
        ("<\"j\u{f6}rg\"@example.com>", true, Ok(("j\u{f6}rg", "example.com", true, false))),
        // Syntax errors.
        ("<user@example.com.>", false, Err(TrailingDot)),
        ("<@relay.example.:user@accepted.test>", false, Err(SourceRoute)),
        ("<user@example..com>", false, Err(Domain)),
        ("<user@.example.com>", false, Err(Domain)),
        ("<user@-bad.com>", false, Err(Domain)),
        ("<user@bad-.com>", false, Err(Domain)),
        ("<user@exa_mple.com>", false, Err(TrailingJunk)),
        ("<user@exa mple.com>", false, Err(TrailingJunk)),
        ("<user@>", false, Err(Domain)),
        ("<user>", false, Err(MissingDomain)),
        ("<@example.com>", false, Err(SourceRoute)),
        ("<@example.com:>", false, Err(LocalPart)),
        ("<a..b@example.com>", false, Err(LocalPart)),
        ("<.a@example.com>", false, Err(LocalPart)),
        ("<a.@example.com>", false, Err(LocalPart)),
        ("<a b@example.com>", false, Err(LocalPart)),
        ("<a\"b@example.com>", false, Err(LocalPart)),
        ("<\"unterminated@example.com>", false, Err(LocalPart)),
        ("<\"a\"b@example.com>", false, Err(LocalPart)),
        ("<user@[999.1.1.1]>", false, Err(AddressLiteral)),
        ("<user@[127.0.0.1>", false, Err(AddressLiteral)),
        ("<user@[IPv6:::1:]>", false, Err(AddressLiteral)),
        ("<user@[::1]>", false, Err(AddressLiteral)),
        ("<user@[tag:content]>", false, Err(AddressLiteral)),
        ("user@example.com", false, Err(Brackets)),
        ("<user@example.com", false, Err(Brackets)),
        ("<user@example.com> ", false, Err(TrailingJunk)),
        ("<>", false, Err(NullNotAllowed)),
        ("<@relay.example:postmaster>", false, Err(MissingDomain)),
        ("<\"postmaster\">", false, Err(MissingDomain)),
        // Limits.
        (long_local.as_str(), false, Err(LocalPartTooLong)),
        (long_label.as_str(), false, Err(LabelTooLong)),
        (long_domain.as_str(), false, Err(DomainTooLong)),
        (long_path.as_str(), false, Err(PathTooLong)),
        // 8-bit without SMTPUTF8, and bad UTF-8 with it.
        ("<\u{fc}ser@example.com>", false, Err(NonAscii)),
        ("<user@ex\u{e4}mple.com>", false, Err(NonAscii)),
        ("<\"j\u{f6}rg\"@example.com>", false, Err(NonAscii)),
        ("<user@[\u{e4}]>", true, Err(AddressLiteral)),
    ];
    for (input, smtputf8, want) in cases {
        assert_eq!(recipient(input, smtputf8), want, "{input:?} smtputf8={smtputf8}");
    }
    assert_eq!(parse_forward_path(b"<\xc3@example.com>", true), Err(InvalidUtf8));
    assert_eq!(parse_forward_path(b"<\xff@example.com>", true), Err(InvalidUtf8));
    assert_eq!(parse_forward_path(b"<\xff@example.com>", false), Err(NonAscii));
    assert_eq!(parse_forward_path(b"<a@exa\xc3mple.com>", true), Err(InvalidUtf8));
}

#[test]
fn reverse_paths() {
    assert_eq!(parse_reverse_path(b"<>", false), Ok(ReversePath::Null));
    let from = parse_reverse_path(b"<a@b.example>", false).unwrap();
    assert_eq!(from.address().map(Address::domain), Some("b.example"));
    assert_eq!(from.to_string(), "<a@b.example>");
    assert_eq!(ReversePath::Null.to_string(), "<>");
    // <postmaster> without a domain is for RCPT only.
    assert_eq!(parse_reverse_path(b"<postmaster>", false), Err(AddressError::MissingDomain));
    assert_eq!(parse_reverse_path(b"<> ", false), Err(AddressError::TrailingJunk));
    assert_eq!(parse_reverse_path(b"< >", false), Err(AddressError::LocalPart));
}

#[test]
fn helpers() {
    let a = Address::parse("Jane.Doe@Example.COM", false).unwrap();
    assert_eq!(a.domain_lower(), "example.com");
    assert!(a.is_ascii());
    assert_eq!(a.address_literal_ip(), None);
    let literal = Address::parse("x@[IPv6:2001:db8::1]", false).unwrap();
    assert_eq!(literal.address_literal_ip(), "2001:db8::1".parse().ok());
    let v4 = Address::parse("x@[192.0.2.1]", false).unwrap();
    assert_eq!(v4.address_literal_ip(), "192.0.2.1".parse().ok());
    assert!(!Address::parse("\u{fc}@example.com", true).unwrap().is_ascii());
    assert_eq!(Address::parse("x@example.com ", false), Err(AddressError::TrailingJunk));
    assert_eq!(Address::parse("x@example.com.", false), Err(AddressError::TrailingDot));
    assert!(parse_forward_path(b"<postmaster>", false).unwrap().is_postmaster_only());
    assert!(!Address::parse("postmaster@example.com", false).unwrap().is_postmaster_only());
}

#[test]
fn display_quotes_when_needed() {
    let cases = [
        ("<user@example.com>", "user@example.com"),
        ("<\"john doe\"@example.com>", "\"john doe\"@example.com"),
        ("<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com"),
        // An unnecessary quoted form stays quoted, so that it renders as it was received.
        ("<\"plain\"@example.com>", "\"plain\"@example.com"),
        ("<\"\\p\"@example.com>", "\"p\"@example.com"),
        ("<@relay.example:user@example.com>", "user@example.com"),
        ("<Postmaster>", "Postmaster"),
        ("<x@[IPv6:::1]>", "x@[IPv6:::1]"),
    ];
    for (input, want) in cases {
        assert_eq!(parse_forward_path(input.as_bytes(), false).unwrap().to_string(), want, "{input}");
    }
}

#[test]
fn domains() {
    assert_eq!(validate_domain("example.com", false), Ok(()));
    assert_eq!(validate_domain("xn--bcher-kva.example", false), Ok(()));
    assert_eq!(validate_domain("b\u{fc}cher.example", false), Err(AddressError::NonAscii));
    assert_eq!(validate_domain("b\u{fc}cher.example", true), Ok(()));
    assert_eq!(validate_domain("example.com.", false), Err(AddressError::TrailingDot));
    assert_eq!(validate_domain("exa_mple.com", false), Err(AddressError::Domain));
    assert_eq!(validate_domain("", false), Err(AddressError::Domain));
}

#[test]
fn error_replies() {
    let sender = AddressError::TrailingDot.reply(AddressRole::Sender);
    assert_eq!(sender.render(), "553 5.1.7 Bad sender address syntax: the domain ends with a dot\r\n");
    let recipient = AddressError::TrailingDot.reply(AddressRole::Recipient);
    assert_eq!(recipient.render(), "501 5.1.3 Bad recipient address syntax: the domain ends with a dot\r\n");
    let utf8 = AddressError::NonAscii.reply(AddressRole::Recipient);
    assert_eq!(utf8.render(), "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
}

/// Wire forms of valid addresses: dot-strings or quoted strings (with escapes) at domains or literals.
pub(crate) fn address_text(smtputf8: bool) -> impl Strategy<Value = String> {
    let atom = if smtputf8 {
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~\u{e4}\u{3b1}-]{1,8}"
    } else {
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,8}"
    };
    let dot_string = proptest::collection::vec(atom, 1..4).prop_map(|atoms| atoms.join("."));
    let quoted = "[ -~]{0,12}".prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")));
    let local = prop_oneof![3 => dot_string, 1 => quoted];
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?";
    let name = proptest::collection::vec(label, 1..4).prop_map(|labels| labels.join("."));
    let literal = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| format!("[{}.{}.{}.{}]", o[0], o[1], o[2], o[3])),
        any::<u128>().prop_map(|a| format!("[IPv6:{}]", std::net::Ipv6Addr::from(a))),
    ];
    let domain = prop_oneof![4 => name, 1 => literal];
    (local, domain).prop_map(|(local, domain)| format!("{local}@{domain}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_of_display_is_identity(text in address_text(true)) {
        let address = Address::parse(&text, true).unwrap();
        prop_assert_eq!(Address::parse(&address.to_string(), true), Ok(address.clone()));
        let path = format!("<{address}>");
        prop_assert_eq!(parse_forward_path(path.as_bytes(), true), Ok(address.clone()));
        prop_assert_eq!(parse_reverse_path(path.as_bytes(), true), Ok(ReversePath::Address(address)));
    }

    #[test]
    fn ascii_addresses_need_no_smtputf8(text in address_text(false)) {
        prop_assert!(Address::parse(&text, false).is_ok());
    }

    #[test]
    fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..80), smtputf8 in any::<bool>()) {
        let _ = parse_forward_path(&input, smtputf8);
        let _ = parse_reverse_path(&input, smtputf8);
    }
}
