use super::*;

fn literal(bytes: &[u8]) -> Token {
    Token::Literal(bytes.to_vec())
}

fn gap(min: usize, max: Option<usize>) -> Token {
    Token::Gap { min, max }
}

fn masked(value: u8, mask: u8) -> ByteMask {
    ByteMask { value, mask }
}

fn signatures(lines: &[&str]) -> BodySignatures {
    let parsed = lines.iter().map(|line| parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"))).collect();
    let (set, error) = BodySignatures::new(parsed);
    assert_eq!(error, None);
    set
}

/// Whether the one signature `line` matches `data` as a part (not `text/html`).
fn matches(line: &str, data: &[u8]) -> bool {
    signatures(&[line]).find_in_part(&Part::new(data, false)).is_some()
}

/// The hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn parses_each_token_kind() {
    let tokens = parse_pattern("4142??43a?44?b45{2}46{-3}47{4-}48{5-6}49[1-2]4A*4b(aa|BBcc|d?)4c").expect("parses");
    assert_eq!(
        tokens,
        vec![
            literal(b"AB"),
            gap(1, Some(1)),
            literal(b"C"),
            Token::Masked(masked(0xa0, 0xf0)),
            literal(b"D"),
            Token::Masked(masked(0x0b, 0x0f)),
            literal(b"E"),
            gap(2, Some(2)),
            literal(b"F"),
            gap(0, Some(3)),
            literal(b"G"),
            gap(4, None),
            literal(b"H"),
            gap(5, Some(6)),
            literal(b"I"),
            gap(1, Some(2)),
            literal(b"J"),
            gap(0, None),
            literal(b"K"),
            Token::Choice(vec![
                vec![masked(0xaa, 0xff)],
                vec![masked(0xbb, 0xff), masked(0xcc, 0xff)],
                vec![masked(0xd0, 0xf0)],
            ]),
            literal(b"L"),
        ]
    );
}

#[test]
fn adjacent_bytes_and_gaps_are_joined() {
    assert_eq!(parse_pattern("41424344").expect("parses"), vec![literal(b"ABCD")]);
    assert_eq!(parse_pattern("41????{2}42").expect("parses"), vec![literal(b"A"), gap(4, Some(4)), literal(b"B")]);
    assert_eq!(parse_pattern("41{2}*{1-3}42").expect("parses"), vec![literal(b"A"), gap(3, None), literal(b"B")]);
}

#[test]
fn malformed_patterns_are_errors() {
    for (pattern, reason) in [
        ("", "no bytes"),
        ("414", "odd number"),
        ("41g2", "unexpected 'g'"),
        ("41(aa|b)42", "bad alternative"),
        ("41(aa|)42", "bad alternative"),
        ("41(aa|bb", "unclosed '('"),
        ("41!(aa|bb)42", "negated alternatives"),
        ("41(B)42", "boundary anchors"),
        ("41(L)42", "boundary anchors"),
        ("{2}*??", "no bytes"),
        ("41{3-2}42", "bad gap {3-2}"),
        ("41{x}42", "bad gap"),
        ("41{-}42", "bad gap"),
        ("41{242", "unclosed '{'"),
        ("41[2]42", "bad gap [2]"),
        ("41[2-]42", "bad gap [2-]"),
    ] {
        let error = parse_pattern(pattern).expect_err(pattern);
        assert!(error.contains(reason), "{pattern}: {error}");
    }
}

#[test]
fn target_types() {
    for (text, target) in [
        ("0", Target::Any),
        ("1", Target::Pe),
        ("3", Target::Html),
        ("4", Target::Mail),
        ("6", Target::Elf),
        ("7", Target::Text),
        ("10", Target::Pdf),
    ] {
        assert_eq!(parse_target(text), Ok(target), "{text}");
    }
    assert_eq!(parse_target("2"), Err("target type 2 (OLE2) is not supported".to_owned()));
    assert_eq!(parse_target("9"), Err("target type 9 (Mach-O) is not supported".to_owned()));
    assert_eq!(parse_target("42"), Err("target type 42 (unknown) is not supported".to_owned()));
    assert!(parse_target("x").is_err());
    assert!(parse_target("-1").is_err());
}

#[test]
fn offsets() {
    assert_eq!(parse_offset("*"), Ok(Offset::Any));
    assert_eq!(parse_offset("0"), Ok(Offset::Start { at: 0, shift: 0 }));
    assert_eq!(parse_offset("12,5"), Ok(Offset::Start { at: 12, shift: 5 }));
    assert_eq!(parse_offset("EOF-10"), Ok(Offset::FromEnd { back: 10, shift: 0 }));
    assert_eq!(parse_offset("EOF-10,3"), Ok(Offset::FromEnd { back: 10, shift: 3 }));
    for pe in ["EP+0", "EP-10", "EP+4,8", "S2+4", "SL+0", "SE1"] {
        assert_eq!(parse_offset(pe), Err(format!("offset {pe:?} needs PE parsing: not supported")));
    }
    for bad in ["", "-1", "EOF+1", "EOF-", "1,", "1,x", "*,2", "1,2,3"] {
        assert!(parse_offset(bad).is_err(), "{bad}");
    }

    assert_eq!(Offset::Any.starts(10), Some((0, 10)));
    assert_eq!(Offset::Start { at: 4, shift: 100 }.starts(10), Some((4, 10)));
    assert_eq!(Offset::Start { at: 11, shift: 0 }.starts(10), None);
    assert_eq!(Offset::FromEnd { back: 3, shift: 1 }.starts(10), Some((7, 8)));
    assert_eq!(Offset::FromEnd { back: 11, shift: 0 }.starts(10), None);
}

#[test]
fn line_fields() {
    let signature = parse_line("Test.Sig-1:0:*:41424344:51:255").expect("parses");
    assert_eq!(signature.name(), "Test.Sig-1");
    assert_eq!(signature.target, Target::Any);
    assert_eq!(signature.offset, Offset::Any);
    assert!(parse_line("Test.Sig-1:0:*:41424344:73").is_ok());
    assert_eq!(parse_line("Test:0:*").expect_err("3 fields"), "expected name:target:offset:hexsignature");
    assert!(parse_line("Test:0:*:4142:1:2:3").is_err());
    assert_eq!(parse_line(":0:*:4142").expect_err("no name"), "empty signature name");
    assert_eq!(parse_line("N:0:*:4142:x").expect_err("flevel"), "functionality level is not a number");
    assert_eq!(parse_line("N:0:EP+0:4142").expect_err("pe"), "offset \"EP+0\" needs PE parsing: not supported");
    assert_eq!(parse_line("N:5:*:4142").expect_err("graphics"), "target type 5 (graphics) is not supported");
}

#[test]
fn segments_and_anchor() {
    let signature = parse_line("N:0:*:41{1-3}424344454647*4849{2}4a4b").expect("parses");
    assert_eq!(signature.segments.len(), 2);
    assert_eq!(signature.segments[0].min_len, 1 + 1 + 6);
    assert_eq!(signature.segments[1].skip, 0);
    assert_eq!(signature.segments[1].min_len, 6);
    assert_eq!(signature.anchor, Some(Anchor { bytes: b"BCDEFG".to_vec(), segment: 0, min_before: 2, max_before: 4 }));

    // The anchor can be in a later segment, after a `{n-}` gap.
    let signature = parse_line("N:0:*:4142{3-}(00|01)4344454647").expect("parses");
    assert_eq!(signature.segments[1].skip, 3);
    assert_eq!(signature.anchor, Some(Anchor { bytes: b"CDEFG".to_vec(), segment: 1, min_before: 1, max_before: 1 }));

    // Equal lengths: the run with fewer common bytes wins.
    let signature = parse_line("N:0:*:0000??4142??ffff").expect("parses");
    assert_eq!(signature.anchor.map(|a| a.bytes), Some(b"AB".to_vec()));

    // A long run gives its rarest window of MAX_ANCHOR bytes.
    let mut run = vec![0u8; 40];
    run.extend(b"rare bytes here");
    let signature = parse_line(&format!("N:0:*:{}", hex(&run))).expect("parses");
    let anchor = signature.anchor.expect("anchored");
    assert_eq!(anchor.bytes.len(), MAX_ANCHOR);
    assert!(anchor.bytes.ends_with(b"rare bytes here"), "{:?}", anchor.bytes);
    assert_eq!(anchor.min_before, run.len() - MAX_ANCHOR);

    // No fixed run of two bytes: no anchor.
    assert_eq!(parse_line("N:0:*:41??42a?43(4445|46)").expect("parses").anchor, None);
}

#[test]
fn wildcards_match_what_they_say() {
    // `??`: exactly one byte.
    assert!(matches("N:0:*:4142??4344", b"..ABxCD.."));
    assert!(!matches("N:0:*:4142??4344", b"..ABCD.."));
    assert!(!matches("N:0:*:4142??4344", b"..ABxyCD.."));
    // Nibbles.
    assert!(matches("N:0:*:41426?4344", b"ABfCD"));
    assert!(!matches("N:0:*:41426?4344", b"ABFCD"));
    assert!(matches("N:0:*:4142?64344", b"ABVCD"));
    assert!(!matches("N:0:*:4142?64344", b"ABWCD"));
    // Bounded gaps.
    for (n, expected) in [(1, false), (2, true), (3, true), (4, true), (5, false)] {
        let data = format!("xxAB{}CDxx", "-".repeat(n));
        assert_eq!(matches("N:0:*:4142{2-4}4344", data.as_bytes()), expected, "{n}");
    }
    assert!(matches("N:0:*:4142{-2}4344", b"ABCD"));
    assert!(!matches("N:0:*:4142{-2}4344", b"AB...CD"));
    assert!(matches("N:0:*:4142{3-}4344", b"AB...CD"));
    assert!(!matches("N:0:*:4142{3-}4344", b"AB..CD"));
    assert!(matches("N:0:*:4142[1-2]43", b"AB.C"));
    // `*`, with the parts in order.
    assert!(matches("N:0:*:4142*4344", b"AB and much later CD"));
    assert!(!matches("N:0:*:4142*4344", b"CD and only then AB"));
    // Alternatives of different lengths.
    for (data, expected) in
        [(&b"AB\xaaCD"[..], true), (b"AB\xbb\xccCD", true), (b"AB\xd7CD", true), (b"AB\xbbCD", false)]
    {
        assert_eq!(matches("N:0:*:4142(aa|bbcc|d?)4344", data), expected, "{data:?}");
    }
    // Case-insensitive hex.
    assert!(matches("N:0:*:6C6f", b"hello"));
}

#[test]
fn offset_constraints() {
    let data = b"MAGIC then some bytes TAIL";
    assert!(matches(&format!("N:0:0:{}", hex(b"MAGIC")), data));
    assert!(!matches(&format!("N:0:1:{}", hex(b"MAGIC")), data));
    assert!(!matches(&format!("N:0:0:{}", hex(b"then")), data));
    assert!(matches(&format!("N:0:6:{}", hex(b"then")), data));
    assert!(matches(&format!("N:0:4,2:{}", hex(b"then")), data));
    assert!(matches(&format!("N:0:6,2:{}", hex(b"then")), data));
    assert!(!matches(&format!("N:0:2,3:{}", hex(b"then")), data));
    assert!(!matches(&format!("N:0:7,10:{}", hex(b"then")), data));
    assert!(matches(&format!("N:0:EOF-4:{}", hex(b"TAIL")), data));
    assert!(!matches(&format!("N:0:EOF-5:{}", hex(b"TAIL")), data));
    assert!(matches(&format!("N:0:EOF-6,2:{}", hex(b"TAIL")), data));
    assert!(!matches(&format!("N:0:EOF-100:{}", hex(b"TAIL")), data));
    // The offset is where the whole signature starts, not its anchor.
    assert!(matches(&format!("N:0:0:4d??{}", hex(b"GIC then")), data));
    assert!(!matches(&format!("N:0:1:4d??{}", hex(b"GIC then")), data));
    // With an unanchored signature too.
    assert!(matches("N:0:EOF-4:54??49??", data));
    assert!(!matches("N:0:EOF-5:54??49??", data));
}

#[test]
fn anchor_in_a_later_segment() {
    let line = format!("N:0:*:{}*{}", hex(b"AB"), hex(b"the anchor"));
    assert!(matches(&line, b"..AB.. the anchor .."));
    assert!(!matches(&line, b".. the anchor ..AB.."));
    assert!(!matches(&line, b"..A.B.. the anchor .."));
    // The offset constrains the first segment.
    let line = format!("N:0:2:{}*{}", hex(b"AB"), hex(b"the anchor"));
    assert!(matches(&line, b"..AB.. the anchor .."));
    assert!(!matches(&line, b"...AB.. the anchor .."));
}

#[test]
fn later_anchor_occurrence_matches() {
    // The first occurrences of the anchor are not followed by what the signature needs.
    let line = format!("N:0:*:{}{{1-2}}5a5a", hex(b"anchor"));
    assert!(matches(&line, b"anchor...ZZ anchor..YZ anchor.ZZ"));
    assert!(!matches(&line, b"anchor...ZZ anchor..YZ anchorZZ"));
    // A segment that can end early or late: the early end leaves room for the rest.
    let line = format!("N:0:*:{}(41|414141)*4142", hex(b"anchor"));
    assert!(matches(&line, b"anchorAAAB"));
    // Greedy across several `*`.
    let line = "N:0:*:4142*4344*4546";
    assert!(matches(line, b"AB CD AB EF"));
    assert!(matches(line, b"AB EF AB CD EF"));
    assert!(!matches(line, b"AB EF CD"));
}

#[test]
fn target_type_tests() {
    assert!(matches("N:1:*:41424344", b"MZ..ABCD"));
    assert!(!matches("N:1:*:41424344", b"ZM..ABCD"));
    assert!(matches("N:6:*:41424344", b"\x7fELF..ABCD"));
    assert!(!matches("N:6:*:41424344", b"ELF..ABCD"));
    assert!(matches("N:10:*:41424344", b"%PDF-1.4 ABCD"));
    assert!(!matches("N:10:*:41424344", b" %PDF-1.4 ABCD"));
    assert!(matches("N:7:*:41424344", b"plain text ABCD"));
    assert!(!matches("N:7:*:41424344", b"binary\x00 ABCD"));
    assert!(matches("N:3:*:41424344", b" \r\n<!DOCTYPE html>\n<HTML><body>ABCD"));
    assert!(matches("N:3:*:41424344", b"\xef\xbb\xbf<html>ABCD"));
    assert!(!matches("N:3:*:41424344", b"<p>ABCD</p>"));
    assert!(!matches("N:3:*:41424344", b"text <html> ABCD"));
    let html_part = signatures(&["N:3:*:41424344"]);
    assert!(html_part.find_in_part(&Part::new(b"<p>ABCD</p>", true)).is_some());
    // Mail signatures are not matched against parts, nor part signatures against the message.
    let set = signatures(&["Part:0:*:41424344", "Mail:4:*:45464748"]);
    assert_eq!(set.find_in_part(&Part::new(b"ABCD EFGH", false)), Some("Part"));
    assert_eq!(set.find_in_part(&Part::new(b"EFGH", false)), None);
    assert_eq!(set.find_in_mail(b"ABCD EFGH"), Some("Mail"));
    assert_eq!(set.find_in_mail(b"ABCD"), None);
}

#[test]
fn unanchored_signatures_are_checked() {
    let set = signatures(&["N:0:*:41??427?43"]);
    let (found, stats) = set.scan_part(&Part::new(b"....AxBzC....", false));
    assert_eq!(found, Some("N"));
    assert_eq!(stats.candidates, 1);
    assert!(set.find_in_part(&Part::new(b"....AxB.C....", false)).is_none());
}

/// A part of `len` pseudo-random bytes from a fixed seed.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn many_signatures_verify_only_anchored_candidates() {
    let lines: Vec<String> = (0..5000)
        .map(|n| {
            format!(
                "Gen.Sig-{n}:0:*:{}{{2-4}}{}*{}",
                hex(format!("gen-sig-{n:05}-").as_bytes()),
                hex(b"XY"),
                hex(b"end")
            )
        })
        .collect();
    let parsed: Vec<BodySignature> = lines.iter().map(|line| parse_line(line).expect("parses")).collect();
    let (set, error) = BodySignatures::new(parsed);
    assert_eq!(error, None);
    assert_eq!(set.len(), 5000);

    let mut part = noise(1 << 20);
    let (found, stats) = set.scan_part(&Part::new(&part, false));
    assert_eq!(found, None);
    assert_eq!(stats.candidates, 0);
    assert_eq!(stats.steps, 0);

    // Three anchors occur; only the third signature's pattern is complete.
    part[1000..1014].copy_from_slice(b"gen-sig-00017-");
    part[300_000..300_014].copy_from_slice(b"gen-sig-04999-");
    part[300_014..300_019].copy_from_slice(b"..XZ!");
    part[600_000..600_014].copy_from_slice(b"gen-sig-02500-");
    part[600_014..600_018].copy_from_slice(b"..XY");
    part[900_000..900_003].copy_from_slice(b"end");
    let (found, stats) = set.scan_part(&Part::new(&part, false));
    assert_eq!(found, Some("Gen.Sig-2500"));
    assert_eq!(stats.candidates, 3);
    assert!(!stats.exhausted);
}

#[test]
fn hostile_signatures_cost_bounded_work() {
    let part = vec![b'A'; 1 << 20];
    let budget = (part.len() as u64) * STEPS_PER_BYTE + MIN_STEPS;
    // Every position is an anchor occurrence and the last segment is searched for in vain: linear,
    // thanks to the memory of where following up failed.
    let set = signatures(&["N:0:*:4141*4141*42"]);
    let (found, stats) = set.scan_part(&Part::new(&part, false));
    assert_eq!(found, None);
    assert!(!stats.exhausted);
    assert!(stats.steps < 8 * part.len() as u64, "{stats:?}");
    // A wide gap before the anchor: each occurrence brings one new start to try, not 2,000.
    let set = signatures(&["N:0:*:42{0-2000}4141"]);
    let (found, stats) = set.scan_part(&Part::new(&part, false));
    assert_eq!(found, None);
    assert!(!stats.exhausted);
    assert!(stats.steps < 8 * part.len() as u64, "{stats:?}");
    // A wide gap before a byte that never comes, tried after every occurrence of the anchor: the
    // budget runs out and the part is given up.
    let set = signatures(&["N:0:*:4141{0-100000}42"]);
    let (found, stats) = set.scan_part(&Part::new(&part, false));
    assert_eq!(found, None);
    assert!(stats.exhausted);
    assert!(stats.steps <= budget + 200_000, "{stats:?}");
    // The same with no anchor at all.
    let set = signatures(&["N:0:*:41{0-100000}a?"]);
    let (_, stats) = set.scan_part(&Part::new(&part, false));
    assert!(stats.exhausted);
    assert!(stats.steps <= budget + 200_000, "{stats:?}");
}
