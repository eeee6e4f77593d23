//! DATA framing. Only the wire bytes `<CRLF>.<CRLF>` end the data (the CRLF of the DATA command counts as
//! the first CRLF). A bare CR, a bare LF or a NUL anywhere is a violation: with `Reject` the message is
//! refused after the end of data; with `Normalize` a bare CR or LF becomes CRLF in the stored message. In
//! neither mode does a line that began after a bare CR or LF count as a line start, so `<LF>.<LF>`,
//! `<LF>.<CRLF>`, `<CR>.<CR>`, `<CR>.<LF>`, `<CRLF>.<LF>` and `<LF>.<CR>` never end a message (no SMTP
//! smuggling).

/// What to do with a bare CR or LF in message data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewlines {
    Reject,
    Normalize,
}

/// Why the data must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataViolation {
    BareCr,
    BareLf,
    Nul,
}

/// The result of feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// All input was used; the data goes on.
    NeedMore,
    /// The data ended; `consumed` bytes of this input (with the final `.<CRLF>`) were used, the rest are
    /// the next commands.
    Done { consumed: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after a real CRLF.
    LineStart,
    /// A line that began with a dot.
    Dot,
    /// `.` then CR at a line start.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, after a CR.
    Cr,
}

/// Decodes message data incrementally; input may be split at any byte.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    policy: BareNewlines,
    state: State,
    violation: Option<DataViolation>,
}

impl DataDecoder {
    pub fn new(policy: BareNewlines) -> DataDecoder {
        DataDecoder { policy, state: State::LineStart, violation: None }
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<DataViolation> {
        self.violation
    }

    fn bare(&mut self, v: DataViolation, out: &mut Vec<u8>) {
        self.violation.get_or_insert(v);
        if self.policy == BareNewlines::Normalize {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Decodes `input` into `out` (dot-unstuffed, CRLF line ends).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        out.reserve(input.len());
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::Dot, b'\r') => State::DotCr,
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return DataStatus::Done { consumed: i + 1 };
                }
                // A line that starts with a dot and goes on: the dot is dropped (RFC 5321 4.5.2).
                (State::Dot, other) => self.mid(other, out),
                (State::DotCr, other) => {
                    self.bare(DataViolation::BareCr, out);
                    self.mid(other, out)
                }
                (State::LineStart | State::Mid, other) => self.mid(other, out),
                (State::Cr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    State::LineStart
                }
                (State::Cr, other) => {
                    self.bare(DataViolation::BareCr, out);
                    self.mid(other, out)
                }
            };
        }
        DataStatus::NeedMore
    }

    /// One byte inside a line.
    fn mid(&mut self, b: u8, out: &mut Vec<u8>) -> State {
        match b {
            b'\r' => State::Cr,
            b'\n' => {
                self.bare(DataViolation::BareLf, out);
                State::Mid
            }
            0 => {
                self.violation.get_or_insert(DataViolation::Nul);
                State::Mid
            }
            other => {
                out.push(other);
                State::Mid
            }
        }
    }
}

/// Dot-stuffs a CRLF-canonical message for sending and appends the end of data (`.<CRLF>`); a CRLF is
/// added first when the message does not end with one.
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + 16);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(policy: BareNewlines, input: &[u8]) -> (Vec<u8>, DataStatus, Option<DataViolation>) {
        let mut d = DataDecoder::new(policy);
        let mut out = Vec::new();
        let st = d.feed(input, &mut out);
        (out, st, d.violation())
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        let (out, st, v) = decode_all(BareNewlines::Reject, b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(st, DataStatus::Done { consumed: 24 });
        assert_eq!(v, None);
        // An empty message: the DATA line's CRLF is the first one.
        assert_eq!(decode_all(BareNewlines::Reject, b".\r\n").1, DataStatus::Done { consumed: 3 });
    }

    #[test]
    fn dots_are_unstuffed() {
        let (out, _, _) = decode_all(BareNewlines::Reject, b"..leading\r\n...\r\n.x\r\n.\r\n");
        assert_eq!(out, b".leading\r\n..\r\nx\r\n");
    }

    #[test]
    fn no_smuggling_variant_ends_the_data() {
        let smuggled = b"MAIL FROM:<a@evil.test>\r\nRCPT TO:<v@victim.test>\r\nDATA\r\nsmuggled\r\n";
        for variant in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r",
            b"\r.\n",
            b"\r\n.\n",
            b"\n.\r",
            b"\r\n.\r",
            b"\r\n\x00.\r\n",
            b"\r\n.\x00\r\n",
        ] {
            for policy in [BareNewlines::Reject, BareNewlines::Normalize] {
                let mut input = b"first message".to_vec();
                input.extend_from_slice(variant);
                input.extend_from_slice(smuggled);
                let real_end = input.len();
                input.extend_from_slice(b".\r\n");
                // Split at every point: the result must not depend on how the bytes arrive.
                for split in 0..input.len() {
                    let mut d = DataDecoder::new(policy);
                    let mut out = Vec::new();
                    let first = d.feed(&input[..split], &mut out);
                    let status = match first {
                        DataStatus::Done { consumed } => DataStatus::Done { consumed },
                        DataStatus::NeedMore => match d.feed(&input[split..], &mut out) {
                            DataStatus::Done { consumed } => DataStatus::Done { consumed: split + consumed },
                            s => s,
                        },
                    };
                    assert_eq!(
                        status,
                        DataStatus::Done { consumed: real_end + 3 },
                        "variant {variant:?} policy {policy:?} split {split}"
                    );
                    assert!(d.violation().is_some(), "variant {variant:?} policy {policy:?}");
                }
            }
        }
    }

    #[test]
    fn normalize_turns_bare_lf_into_crlf() {
        let (out, st, v) = decode_all(BareNewlines::Normalize, b"a\nb\r\n.\r\n");
        assert_eq!(out, b"a\r\nb\r\n");
        assert!(matches!(st, DataStatus::Done { .. }));
        assert_eq!(v, Some(DataViolation::BareLf));
    }

    #[test]
    fn dot_stuff_doubles_leading_dots_and_terminates() {
        let mut out = Vec::new();
        dot_stuff(b".a\r\nb\r\n..\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb\r\n...\r\n.\r\n");
        out.clear();
        dot_stuff(b"no end", &mut out);
        assert_eq!(out, b"no end\r\n.\r\n");
    }

    proptest! {
        #[test]
        fn decode_of_dot_stuff_is_identity(lines in proptest::collection::vec("[ -~]{0,20}", 0..20)) {
            let body: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let mut wire = Vec::new();
            dot_stuff(&body, &mut wire);
            let (out, st, v) = decode_all(BareNewlines::Reject, &wire);
            prop_assert_eq!(out, body);
            prop_assert_eq!(st, DataStatus::Done { consumed: wire.len() });
            prop_assert_eq!(v, None);
        }

        #[test]
        fn any_split_gives_the_same_result(input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), Just(0u8)], 0..40), split in 0usize..40) {
            let split = split.min(input.len());
            let whole = decode_all(BareNewlines::Normalize, &input);
            let mut d = DataDecoder::new(BareNewlines::Normalize);
            let mut out = Vec::new();
            let st = match d.feed(&input[..split], &mut out) {
                DataStatus::Done { consumed } => DataStatus::Done { consumed },
                DataStatus::NeedMore => match d.feed(&input[split..], &mut out) {
                    DataStatus::Done { consumed } => DataStatus::Done { consumed: split + consumed },
                    s => s,
                },
            };
            prop_assert_eq!((out, st, d.violation()), whole);
        }
    }
}
