//! Incremental facts about a message's header section, gathered while its bytes stream past, so that a session
//! can refuse an over-large header (`552 5.3.4`) or a looping message (`554 5.4.6 Too many hops`, counting
//! `Received:` fields) without holding the message.

/// `received` in lower case; a field name is compared case-insensitively (RFC 5322 1.2.2).
const RECEIVED: &[u8] = b"received";

/// Where the scanner is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// At the start of a line.
    LineStart,
    /// A CR at the start of a line: an empty line if LF follows.
    BlankCr,
    /// This many octets of `received` matched at the start of the line.
    Name(usize),
    /// `received` then spaces or tabs (RFC 5322 4.5 obsolete syntax allows them before the colon).
    NameSpace,
    /// Anywhere else in a line.
    Other,
}

/// Scans the start of a message for the end of its header section (the first empty line) and counts
/// `Received:` fields. Feed it the message in pieces of any size.
///
/// A continuation line (starting with a space or tab) never counts as a field. Lines may end with CRLF or a
/// bare LF, so that the scanner also works on messages that are not CRLF-canonical.
#[derive(Debug, Clone)]
pub struct HeaderScanner {
    field: Field,
    complete: bool,
    header_bytes: u64,
    received: usize,
}

impl Default for HeaderScanner {
    fn default() -> Self {
        HeaderScanner::new()
    }
}

impl HeaderScanner {
    /// A scanner at the start of a message.
    pub fn new() -> Self {
        HeaderScanner { field: Field::LineStart, complete: false, header_bytes: 0, received: 0 }
    }

    /// Scans the next bytes of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.complete {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        self.field = match (self.field, b) {
            (Field::LineStart, b'\n') | (Field::BlankCr, b'\n') => {
                // The empty line ends the header section and is not part of it.
                self.complete = true;
                return;
            }
            (Field::LineStart, b'\r') => {
                // Not counted until the next octet tells whether this is the empty line.
                self.field = Field::BlankCr;
                return;
            }
            (Field::BlankCr, other) => {
                // A CR alone at the start of a line: part of the header after all.
                self.header_bytes += 1;
                self.after_first(other)
            }
            (Field::LineStart, other) => self.after_first(other),
            (_, b'\n') => Field::LineStart,
            (Field::Name(matched), other) if matched < RECEIVED.len() => {
                if other.to_ascii_lowercase() == RECEIVED[matched] { Field::Name(matched + 1) } else { Field::Other }
            }
            (Field::Name(_) | Field::NameSpace, b' ' | b'\t') => Field::NameSpace,
            (Field::Name(_) | Field::NameSpace, b':') => {
                self.received += 1;
                Field::Other
            }
            (Field::Name(_) | Field::NameSpace | Field::Other, _) => Field::Other,
        };
        self.header_bytes += 1;
    }

    /// The state after the first octet of a non-empty line (never LF: the caller handles it).
    fn after_first(&self, b: u8) -> Field {
        if b.to_ascii_lowercase() == RECEIVED[0] { Field::Name(1) } else { Field::Other }
    }

    /// The empty line that ends the header section has been seen.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Octets of the header section so far (all of it once complete), line endings included, the empty line
    /// excluded. A message without an empty line is all header.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// `Received:` fields in the header section so far.
    pub fn count_received_headers(&self) -> usize {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(message: &[u8]) -> (bool, u64, usize) {
        let mut scanner = HeaderScanner::new();
        scanner.feed(message);
        (scanner.is_complete(), scanner.header_bytes(), scanner.count_received_headers())
    }

    #[test]
    fn table() {
        type Case<'a> = (&'a [u8], (bool, u64, usize));
        let cases: &[Case] = &[
            (b"", (false, 0, 0)),
            (b"\r\nbody", (true, 0, 0)),
            (b"Subject: x\r\n\r\nReceived: in body\r\n", (true, 12, 0)),
            (b"Received: a\r\nreceived: b\r\nRECEIVED : c\r\nReceived\t:d\r\n\r\n", (true, 53, 4)),
            // Continuation lines and other fields that merely contain the word do not count.
            (b"Received: a\r\n Received: folded\r\nX-Received: no\r\nReceivedX: no\r\n\r\n", (true, 63, 1)),
            (b"Received-SPF: pass\r\nReceive: no\r\nReceived\r\n\r\n", (true, 43, 0)),
            // Bare LF endings work too.
            (b"Received: a\nReceived: b\n\nbody", (true, 24, 2)),
            // No empty line: everything is header.
            (b"Received: a\r\nSubject: b", (false, 23, 1)),
            // A CR alone at the start of a line is not an empty line.
            (b"A: b\r\n\rC: d\r\n\r\n", (true, 13, 0)),
        ];
        for (message, want) in cases {
            assert_eq!(scan(message), *want, "{:?}", String::from_utf8_lossy(message));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn pieces_do_not_matter(
            message in proptest::collection::vec(
                prop_oneof![Just(b"Received:".to_vec()), Just(b"\r\n".to_vec()), Just(b"\n".to_vec()),
                            Just(b" ".to_vec()), Just(b"x".to_vec()), Just(b"rec".to_vec()), Just(b"\r".to_vec())],
                0..30,
            ).prop_map(|parts| parts.concat()),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let whole = scan(&message);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(message.len() + 1)).collect();
            points.sort_unstable();
            let mut scanner = HeaderScanner::new();
            let mut start = 0;
            for point in points.into_iter().chain([message.len()]) {
                scanner.feed(&message[start..point]);
                start = point;
            }
            prop_assert_eq!((scanner.is_complete(), scanner.header_bytes(), scanner.count_received_headers()), whole);
        }
    }
}
