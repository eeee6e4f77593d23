use super::*;
use crate::dot_stuff::dot_stuff;
use proptest::prelude::*;

use BareNewlines::{Normalize, Reject};
use DataViolation::{BareCr, BareLf, Nul};

type Outcome = (Vec<u8>, DataStatus, Option<DataViolation>);

/// Feeds `input` in the pieces given by the cut points; the status's `consumed` is made absolute.
fn decode_in_pieces(policy: BareNewlines, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = DataDecoder::new(policy);
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        let cut = cut.clamp(start, input.len());
        if let DataStatus::Done { consumed } = decoder.feed(&input[start..cut], &mut out) {
            assert!(decoder.is_done());
            assert_eq!(decoder.output_bytes(), out.len() as u64);
            return (out, DataStatus::Done { consumed: start + consumed }, decoder.violation());
        }
        start = cut;
    }
    (out, DataStatus::NeedMore, decoder.violation())
}

fn decode(policy: BareNewlines, input: &[u8]) -> Outcome {
    decode_in_pieces(policy, input, &[])
}

fn byte_by_byte(policy: BareNewlines, input: &[u8]) -> Outcome {
    let cuts: Vec<usize> = (0..input.len()).collect();
    decode_in_pieces(policy, input, &cuts)
}

/// An independent statement of the rules, for complete messages: the data ends at the first `CRLF.CRLF` of
/// CRLF + input; the message is split into wire lines at each real CRLF; a leading dot is removed from a line
/// with more on it (unless what follows is a bare CR or LF); bare CR and LF become CRLF; NUL is dropped.
fn reference(policy: BareNewlines, input: &[u8]) -> Option<Outcome> {
    let mut wire = b"\r\n".to_vec();
    wire.extend_from_slice(input);
    let end = wire.windows(5).position(|w| w == b"\r\n.\r\n")?;
    let message = &wire[2..end + 2];
    let mut out = Vec::new();
    let mut violation = None;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = message;
    while let Some(crlf) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..crlf]);
        rest = &rest[crlf + 2..];
    }
    for line in lines {
        let line = match line {
            [b'.', next, ..] if !matches!(next, b'\r' | b'\n') => &line[1..],
            _ => line,
        };
        for &b in line {
            match b {
                b'\r' | b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    if policy == Reject {
                        violation.get_or_insert(if b == b'\r' { BareCr } else { BareLf });
                    }
                }
                0 => {
                    violation.get_or_insert(Nul);
                }
                other => out.push(other),
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    Some((out, DataStatus::Done { consumed: end + 3 }, violation))
}

#[test]
fn table() {
    let done = |consumed| DataStatus::Done { consumed };
    type Case<'a> = (BareNewlines, &'a [u8], &'a [u8], DataStatus, Option<DataViolation>);
    let cases: &[Case] = &[
        (Reject, b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", b"Subject: x\r\n\r\nhello\r\n", done(24), None),
        // The DATA line's CRLF counts: a first line of "." is an empty message.
        (Reject, b".\r\nQUIT\r\n", b"", done(3), None),
        (Reject, b"\r\n.\r\n", b"\r\n", done(5), None),
        // Dot-unstuffing (RFC 5321 4.5.2: a leading dot with more on the line is removed).
        (Reject, b"..leading\r\n...\r\n.x\r\n..\r\n.\r\n", b".leading\r\n..\r\nx\r\n.\r\n", done(27), None),
        (Reject, b"a.\r\n.b.\r\n.\r\n", b"a.\r\nb.\r\n", done(12), None),
        // Incomplete.
        (Reject, b"", b"", DataStatus::NeedMore, None),
        (Reject, b"abc\r\n.\r", b"abc\r\n", DataStatus::NeedMore, None),
        (Reject, b"abc\r\n.", b"abc\r\n", DataStatus::NeedMore, None),
        (Reject, b"abc\r", b"abc", DataStatus::NeedMore, None),
        // Bare newlines: always written as CRLF; a violation only under Reject.
        (Reject, b"a\nb\r\n.\r\n", b"a\r\nb\r\n", done(8), Some(BareLf)),
        (Normalize, b"a\nb\r\n.\r\n", b"a\r\nb\r\n", done(8), None),
        (Reject, b"a\rb\r\n.\r\n", b"a\r\nb\r\n", done(8), Some(BareCr)),
        (Normalize, b"a\rb\r\n.\r\n", b"a\r\nb\r\n", done(8), None),
        (Normalize, b"a\r\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", done(10), None),
        // A dot after a bare newline is content, neither stuffing nor a terminator.
        (Normalize, b"a\n..\r\n.\r\n", b"a\r\n..\r\n", done(9), None),
        (Normalize, b"\r\n.\nx\r\n.\r\n", b"\r\n.\r\nx\r\n", done(10), None),
        // NUL: a violation under both policies, never written.
        (Reject, b"a\x00b\r\n.\r\n", b"ab\r\n", done(8), Some(Nul)),
        (Normalize, b"a\x00b\r\n.\r\n", b"ab\r\n", done(8), Some(Nul)),
        (Normalize, b".\x00\r\n.\r\n", b"\r\n", done(7), Some(Nul)),
        // The first violation is the one reported.
        (Reject, b"a\x00\n\r\n.\r\n", b"a\r\n\r\n", done(8), Some(Nul)),
        (Reject, b"a\r\x00\r\n.\r\n", b"a\r\n\r\n", done(8), Some(BareCr)),
        // A bare CR right before a real CRLF.CRLF: the wire holds the terminator, so the data ends there.
        (Reject, b"x\r\r\n.\r\nQUIT\r\n", b"x\r\n\r\n", done(7), Some(BareCr)),
        (Normalize, b"x\r\r\n.\r\nQUIT\r\n", b"x\r\n\r\n", done(7), None),
        // Long lines are kept as they are.
        (Reject, &[b'x'; 3000], &[b'x'; 3000], DataStatus::NeedMore, None),
    ];
    for (policy, input, want_out, want_status, want_violation) in cases {
        let want = (want_out.to_vec(), *want_status, *want_violation);
        assert_eq!(decode(*policy, input), want, "{policy:?} {:?}", String::from_utf8_lossy(input));
        assert_eq!(byte_by_byte(*policy, input), want, "{policy:?} {:?} byte by byte", String::from_utf8_lossy(input));
        if let DataStatus::Done { .. } = want_status {
            assert_eq!(
                reference(*policy, input),
                Some(want),
                "{policy:?} {:?} reference",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn feeding_after_done_consumes_nothing() {
    let mut decoder = DataDecoder::new(Reject);
    let mut out = Vec::new();
    assert_eq!(decoder.feed(b"a\r\n.\r\nQUIT\r\n", &mut out), DataStatus::Done { consumed: 6 });
    assert_eq!(decoder.feed(b"QUIT\r\n", &mut out), DataStatus::Done { consumed: 0 });
    assert_eq!(out, b"a\r\n");
}

/// The smuggling sequences of the SMTP smuggling research (and a few more), none of which may end the data.
const SMUGGLING: &[&[u8]] = &[
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r.\n",
    b"\r\n.\n",
    b"\n.\r",
    b"\r\n.\r",
    b"\r\n.\r\r\n",
    b"\n\r.\r\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
    b"\r\n .\r\n",
    b"\r\n..\r\n",
];

const FIRST: &[u8] = b"first message body";
const SMUGGLED: &[u8] = b"MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n.\r\n";
const NEXT: &[u8] = b"QUIT\r\n";

#[test]
fn no_smuggling_sequence_ends_the_data() {
    for variant in SMUGGLING {
        let mut input = FIRST.to_vec();
        input.extend_from_slice(variant);
        input.extend_from_slice(SMUGGLED);
        let real_end = input.len();
        input.extend_from_slice(NEXT);
        // The variant sits between letters, so its CRs and LFs are bare exactly when it is not canonical.
        let bare = !is_crlf_canonical(variant);
        let nul = variant.contains(&0);
        for policy in [Reject, Normalize] {
            let whole = decode(policy, &input);
            let label = format!("{policy:?} {:?}", String::from_utf8_lossy(variant));
            assert_eq!(whole.1, DataStatus::Done { consumed: real_end }, "{label}");
            assert_eq!(Some(whole.clone()), reference(policy, &input), "{label}");
            // The would-be commands are message content.
            assert!(whole.0.windows(8).any(|w| w == b"smuggled"), "{label}");
            match (policy, nul, bare) {
                (_, true, _) => assert_eq!(whole.2, Some(Nul), "{label}"),
                (Reject, false, true) => assert!(matches!(whole.2, Some(BareCr | BareLf)), "{label}"),
                _ => assert_eq!(whole.2, None, "{label}"),
            }
            // No read boundary changes anything: split once at every point, and byte by byte.
            for split in 0..=input.len() {
                assert_eq!(decode_in_pieces(policy, &input, &[split]), whole, "{label} split at {split}");
            }
            assert_eq!(byte_by_byte(policy, &input), whole, "{label} byte by byte");
            // And until the real end arrives, the decoder wants more.
            assert_eq!(decode(policy, &input[..real_end - 1]).1, DataStatus::NeedMore, "{label}");
        }
    }
}

#[test]
fn normalized_output_is_crlf_canonical_and_safe_to_resend() {
    for variant in SMUGGLING {
        let mut input = FIRST.to_vec();
        input.extend_from_slice(variant);
        input.extend_from_slice(SMUGGLED);
        let (out, _, _) = decode(Normalize, &input);
        assert!(is_crlf_canonical(&out), "{:?}", String::from_utf8_lossy(variant));
        // Sent on, the message arrives whole: the stuffing protects its dot lines.
        let mut wire = Vec::new();
        dot_stuff(&out, &mut wire);
        assert_eq!(decode(Reject, &wire), (out, DataStatus::Done { consumed: wire.len() }, None));
    }
}

#[test]
fn header_tracking() {
    let mut decoder = DataDecoder::new(Reject);
    let mut out = Vec::new();
    let input = b"Received: a\r\nReceived: b\r\n\tcontinued\r\nSubject: x\r\n\r\nReceived: in body\r\n.\r\n";
    for byte in input.chunks(1) {
        decoder.feed(byte, &mut out);
    }
    assert!(decoder.is_done());
    assert_eq!(decoder.count_received_headers(), 2);
    assert_eq!(decoder.header_bytes(), 50);
    // A dot-stuffed header line counts after unstuffing.
    let mut decoder = DataDecoder::new(Reject);
    decoder.feed(b"..Received: x\r\nReceived: y\r\n\r\n.\r\n", &mut Vec::new());
    assert_eq!(decoder.count_received_headers(), 1);
}

#[test]
fn violation_replies() {
    assert_eq!(BareLf.reply().render(), "550 5.6.0 Bare CR or LF in message data\r\n");
    assert_eq!(BareCr.reply().render(), "550 5.6.0 Bare CR or LF in message data\r\n");
    assert_eq!(Nul.reply().render(), "550 5.6.0 NUL character in message data\r\n");
}

#[test]
fn counts_bare_newlines_under_both_policies() {
    for policy in [Reject, Normalize] {
        let mut decoder = DataDecoder::new(policy);
        decoder.feed(b"a\nb\rc\r\n.\n\r\n.\r\n", &mut Vec::new());
        assert_eq!(decoder.bare_newlines(), 3, "{policy:?}");
    }
}

fn is_crlf_canonical(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

/// Octets that matter to the framing, weighted toward the troublesome ones.
fn wire_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'\r'),
        4 => Just(b'\n'),
        4 => Just(b'.'),
        3 => Just(b'a'),
        1 => Just(0u8),
        1 => Just(b' '),
        1 => Just(0xffu8),
    ];
    proptest::collection::vec(byte, 0..max)
}

/// CRLF-canonical bodies without NUL: lines of text that may start with dots.
fn canonical_body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec("\\.{0,3}[ -~]{0,12}", 0..12)
        .prop_map(|lines| lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pieces_do_not_matter(
        input in wire_bytes(80),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        normalize in any::<bool>(),
    ) {
        let policy = if normalize { Normalize } else { Reject };
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        points.sort_unstable();
        let whole = decode(policy, &input);
        prop_assert_eq!(decode_in_pieces(policy, &input, &points), whole.clone());
        prop_assert_eq!(byte_by_byte(policy, &input), whole.clone());
        match reference(policy, &input) {
            Some(want) => prop_assert_eq!(whole, want),
            None => prop_assert_eq!(whole.1, DataStatus::NeedMore),
        }
    }

    #[test]
    fn decode_of_dot_stuff_is_identity(body in canonical_body(), trailing in wire_bytes(10)) {
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        let consumed = wire.len();
        wire.extend_from_slice(&trailing);
        prop_assert_eq!(decode(Reject, &wire), (body, DataStatus::Done { consumed }, None));
    }

    #[test]
    fn decode_of_dot_stuff_canonicalizes_anything(body in wire_bytes(60)) {
        // Any body without NUL survives a send and a receive, as its CRLF-canonical form.
        let body: Vec<u8> = body.into_iter().filter(|b| *b != 0).collect();
        let mut canonical = Vec::new();
        let mut bytes = body.iter().peekable();
        while let Some(&b) = bytes.next() {
            match b {
                b'\r' => {
                    if bytes.peek() == Some(&&b'\n') {
                        bytes.next();
                    }
                    canonical.extend_from_slice(b"\r\n");
                }
                b'\n' => canonical.extend_from_slice(b"\r\n"),
                other => canonical.push(other),
            }
        }
        if !canonical.is_empty() && !canonical.ends_with(b"\r\n") {
            canonical.extend_from_slice(b"\r\n");
        }
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        prop_assert!(is_crlf_canonical(&wire));
        prop_assert_eq!(decode(Reject, &wire), (canonical, DataStatus::Done { consumed: wire.len() }, None));
    }
}
