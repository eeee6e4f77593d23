use proptest::prelude::*;

use super::*;

const STATUSES: &[&str] = &["Active", "Ready", "Retry", "Suspended"];

const PROPS: &[Property] = &[
    Property { name: "MessageCount", kind: Kind::Int },
    Property { name: "Status", kind: Kind::Enum(STATUSES) },
    Property { name: "FromAddress", kind: Kind::Str },
    Property { name: "Size", kind: Kind::Size },
    Property { name: "MessageLatency", kind: Kind::Duration },
    Property { name: "DateReceived", kind: Kind::Time },
    Property { name: "Recipients", kind: Kind::List },
    Property { name: "LastError", kind: Kind::Str },
    Property { name: "Velocity", kind: Kind::Rate },
];

/// Times in these tests are written as their milliseconds.
fn time(s: &str) -> Option<i64> {
    s.parse().ok()
}

fn time_text(ms: i64) -> String {
    ms.to_string()
}

fn p(text: &str) -> Result<Filter, FilterError> {
    parse(text, PROPS, time)
}

struct Obj<'a> {
    count: i64,
    status: &'a str,
    from: &'a str,
    size: i64,
    latency: i64,
    received: i64,
    recipients: Vec<&'a str>,
    last_error: Option<&'a str>,
    /// Thousandths of a message per second.
    velocity: i64,
}

impl<'a> Obj<'a> {
    fn get(&self, i: usize) -> Value<'a> {
        match i {
            0 => Value::Number(self.count),
            1 => Value::Text(self.status),
            2 => Value::Text(self.from),
            3 => Value::Number(self.size),
            4 => Value::Number(self.latency),
            5 => Value::Number(self.received),
            6 => Value::List(self.recipients.clone()),
            7 => self.last_error.map_or(Value::Missing, Value::Text),
            _ => Value::Number(self.velocity),
        }
    }
}

fn obj() -> Obj<'static> {
    Obj {
        count: 150,
        status: "Retry",
        from: "Alice@Example.com",
        size: 2 * 1024 * 1024,
        latency: 300_000,
        received: 1_000,
        recipients: vec!["bob@remote.test", "carol@remote.test"],
        last_error: None,
        velocity: -2_500,
    }
}

fn matches(text: &str) -> bool {
    let o = obj();
    p(text).unwrap_or_else(|e| panic!("{text}: {e}")).matches(&|i| o.get(i))
}

#[test]
fn the_examples_of_the_documentation_match_as_exchange_would() {
    assert!(matches("MessageCount -gt 100 -and Status -eq 'Retry'"));
    assert!(matches("message_count -gt 100 -and status -eq retry"), "names and enum values ignore case and _");
    assert!(matches("FromAddress -like '*@example.com' -or (Size -gt 1MB -and MessageCount -ge 7)"));
    assert!(!matches("FromAddress -notlike '*@EXAMPLE.COM'"));
    assert!(!matches("FromAddress -ne 'ALICE@Example.com'"));
    assert!(matches("-not (Status -eq 'Ready') -and Size -le 2MB -and Size -gt 2047KB"));
    assert!(matches("MessageLatency -eq 00:05:00 -and MessageLatency -lt 1h -and MessageLatency -ge 5m"));
    assert!(matches("DateReceived -lt 2000 -and DateReceived -ge '1000'"));
    assert!(matches("Recipients -contains 'CAROL@remote.test' -and Recipients -notcontains 'dave@remote.test'"));
    assert!(matches("Recipients -like 'bob@*'"));
    assert!(matches("LastError -ne 'x' -and -not (LastError -like '*')"), "a missing value matches only negations");
    assert!(matches("FromAddress -contains 'example'"));
}

#[test]
fn and_binds_tighter_than_or() {
    // false -and false -or true: (false and false) or true.
    assert!(matches("MessageCount -lt 0 -and Status -eq Ready -or Size -gt 0"));
    // true -or false -and false: true or (false and false).
    assert!(matches("Size -gt 0 -or MessageCount -lt 0 -and Status -eq Ready"));
    assert!(!matches("(Size -gt 0 -or MessageCount -lt 0) -and Status -eq Ready"));
}

#[test]
fn errors_name_the_token_and_its_position() {
    let cases = [
        ("Status -eq 'Bogus'", 11, "'Bogus'", "not one of Active, Ready, Retry, Suspended"),
        ("Colour -eq 'red'", 0, "Colour", "unknown property"),
        ("Size -gt 10XB", 9, "10XB", "not a size"),
        ("MessageCount -gt 100 -and", 25, "", "expected a property name"),
        ("MessageCount 100", 13, "100", "expected an operator"),
        ("MessageCount -gt 100 Status", 21, "Status", "expected -and"),
        ("(MessageCount -gt 1", 19, "", "expected )"),
        ("FromAddress -eq 'open", 16, "'open", "not closed"),
        ("MessageCount -like '1*'", 19, "'1*'", "applies to text"),
        ("DateReceived -gt yesterday", 17, "yesterday", "RFC 3339"),
        ("MessageLatency -gt 00:61:00", 19, "00:61:00", "duration"),
        ("", 0, "", "empty"),
    ];
    for (text, position, token, what) in cases {
        let e = p(text).expect_err(text);
        assert_eq!((e.position, e.token.as_str()), (position, token), "{text}: {e}");
        assert!(e.what.contains(what), "{text}: {e}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for text in
        ["(".repeat(100_000), "-not ".repeat(100_000), format!("{}Size -gt 1{}", "(".repeat(60), ")".repeat(60))]
    {
        match p(&text) {
            Err(e) => assert!(e.what.contains("nested deeper than 64"), "{e}"),
            Ok(_) => assert!(text.starts_with("((") && text.len() < 200, "a deep filter parsed"),
        }
    }
}

#[test]
fn sizes_and_durations_read_their_units() {
    assert_eq!(size("10KB"), Some(10 * 1024));
    assert_eq!(size("1.5mb"), Some(3 * 512 * 1024));
    assert_eq!(size("7"), Some(7));
    assert_eq!(size("-1KB"), None);
    assert_eq!(size("1e30TB"), None);
    assert_eq!(duration("1.02:03:04"), Some(((26 * 60 + 3) * 60 + 4) * 1000));
    assert_eq!(duration("90s"), Some(90_000));
    assert_eq!(duration("2d"), Some(172_800_000));
    assert_eq!(duration("5"), None);
    assert_eq!(rate("-2.5"), Some(-2_500));
    assert_eq!(rate("0.0004"), Some(0));
    assert_eq!(rate("1e300"), None);
    assert_eq!(rate("x"), None);
    assert!(matches("Velocity -lt 0 -and Velocity -ge -2.5 -and Velocity -ne -2.4"));
}

#[test]
fn the_wildcard_matches_runs_of_any_length_and_nothing_else() {
    assert!(like("*", ""));
    assert!(like("a*b*c", "aXXbYYc"));
    assert!(like("a*b*c", "abc"));
    assert!(!like("a*b*c", "acb"));
    assert!(like("*@EXAMPLE.com", "x@example.COM"));
    assert!(!like("abc", "abcd"));
    // A pathological pattern stays fast.
    assert!(!like(&"*a".repeat(50), &"a".repeat(49)));
    // Beyond ASCII, letters compare by their lower case too.
    assert!(like("*@ÉCOLE.fr", "zoé@école.FR"));
    assert!(like("*É*", "café"));
    assert!(!like("é*", "e-mail"));
    assert!(!like(&"*é".repeat(50), &"é".repeat(49)));
}

fn literal_for(kind: Kind) -> BoxedStrategy<Literal> {
    match kind {
        Kind::Str | Kind::List => "[a-zA-Z0-9@.*' _-]{0,12}".prop_map(Literal::Text).boxed(),
        Kind::Enum(names) => proptest::sample::select(names).prop_map(|n| Literal::Text(n.to_owned())).boxed(),
        Kind::Rate => (-1_000_000_000i64..1_000_000_000).prop_map(Literal::Number).boxed(),
        _ => (0i64..i64::MAX / 2).prop_map(Literal::Number).boxed(),
    }
}

fn compare() -> impl Strategy<Value = Filter> {
    (0..PROPS.len(), 0..OPS.len()).prop_flat_map(|(property, op)| {
        let kind = PROPS[property].kind;
        let textual_only = matches!(kind, Kind::Str | Kind::List);
        // Text operators only on text properties; the others on any.
        let op = if !textual_only && op >= 6 { OPS[op % 6].1 } else { OPS[op].1 };
        literal_for(kind).prop_map(move |value| Filter::Compare { property, op, value })
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    compare().prop_recursive(4, 32, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
        ]
    })
}

proptest! {
    /// Rendering a filter and parsing it back gives the same filter.
    #[test]
    fn render_then_parse_is_the_identity(f in filter()) {
        let text = f.render(PROPS, time_text);
        prop_assert_eq!(p(&text), Ok(f), "{}", text);
    }

    /// Any text is a filter or an error, never a panic.
    #[test]
    fn any_text_parses_or_fails_cleanly(text in "\\PC{0,40}") {
        let _ = p(&text);
    }
}
