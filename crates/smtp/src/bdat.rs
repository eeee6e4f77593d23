//! BDAT (RFC 3030 CHUNKING) message content: no dot-stuffing and no terminator (the chunk sizes frame it), but the
//! same content rules as DATA (see [`crate::DataDecoder`]): a bare CR or LF is a violation under
//! [`BareNewlines::Reject`] and becomes CRLF under [`BareNewlines::Normalize`]; a NUL is always a violation and
//! is dropped; the output is CRLF-canonical either way.
//!
//! The chunks of one message form one stream: a CR that ends a chunk and a LF that starts the next one are a
//! proper CRLF, so the decoder keeps that CR pending across calls and settles it in the next call or in
//! [`BdatDecoder::finish`].

use crate::data::{BareNewlines, DataViolation};
use crate::headers::HeaderScanner;

/// Checks and normalizes the chunks of one BDAT message.
#[derive(Debug, Clone)]
pub struct BdatDecoder {
    policy: BareNewlines,
    pending_cr: bool,
    violation: Option<DataViolation>,
    bare_newlines: u64,
    output_bytes: u64,
    headers: HeaderScanner,
}

impl BdatDecoder {
    /// A decoder at the start of a message.
    pub fn new(policy: BareNewlines) -> Self {
        BdatDecoder {
            policy,
            pending_cr: false,
            violation: None,
            bare_newlines: 0,
            output_bytes: 0,
            headers: HeaderScanner::new(),
        }
    }

    /// Decodes the next chunk (or any piece of one) into `out`. A CR at the end is held until the next call.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(chunk.len() + 1);
        let mut i = 0;
        while i < chunk.len() {
            if !self.pending_cr {
                // Fast path: copy a run of ordinary octets at once.
                let run = chunk[i..].iter().position(|b| matches!(b, b'\r' | b'\n' | 0)).unwrap_or(chunk.len() - i);
                out.extend_from_slice(&chunk[i..i + run]);
                i += run;
                if i == chunk.len() {
                    break;
                }
            }
            let b = chunk[i];
            i += 1;
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                if b == b'\n' {
                    continue;
                }
                self.bare(DataViolation::BareCr);
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    self.bare(DataViolation::BareLf);
                    out.extend_from_slice(b"\r\n");
                }
                0 => {
                    self.violation.get_or_insert(DataViolation::Nul);
                }
                other => out.push(other),
            }
        }
        self.wrote(start, out);
    }

    /// Ends the message (after the `BDAT ... LAST` chunk): a CR still pending was bare.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            let start = out.len();
            self.pending_cr = false;
            self.bare(DataViolation::BareCr);
            out.extend_from_slice(b"\r\n");
            self.wrote(start, out);
        }
    }

    fn wrote(&mut self, start: usize, out: &[u8]) {
        self.output_bytes += (out.len() - start) as u64;
        self.headers.feed(&out[start..]);
    }

    fn bare(&mut self, violation: DataViolation) {
        self.bare_newlines += 1;
        if self.policy == BareNewlines::Reject {
            self.violation.get_or_insert(violation);
        }
    }

    /// The first violation seen, if any: refuse the message with [`DataViolation::reply`].
    pub fn violation(&self) -> Option<DataViolation> {
        self.violation
    }

    /// Bare CRs and LFs seen so far (under either policy), for logs.
    pub fn bare_newlines(&self) -> u64 {
        self.bare_newlines
    }

    /// Octets of message written so far.
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// Octets of the header section so far (see [`HeaderScanner::header_bytes`]).
    pub fn header_bytes(&self) -> u64 {
        self.headers.header_bytes()
    }

    /// `Received:` fields in the header section so far.
    pub fn count_received_headers(&self) -> usize {
        self.headers.count_received_headers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(policy: BareNewlines, chunks: &[&[u8]]) -> (Vec<u8>, Option<DataViolation>) {
        let mut decoder = BdatDecoder::new(policy);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        decoder.finish(&mut out);
        (out, decoder.violation())
    }

    #[test]
    fn table() {
        use BareNewlines::{Normalize, Reject};
        use DataViolation::{BareCr, BareLf, Nul};
        type Case<'a> = (BareNewlines, &'a [&'a [u8]], &'a [u8], Option<DataViolation>);
        let cases: &[Case] = &[
            (Reject, &[b"a\r\nb\r\n"], b"a\r\nb\r\n", None),
            // A CRLF split across two chunks is a CRLF.
            (Reject, &[b"a\r", b"\nb"], b"a\r\nb", None),
            (Reject, &[b"a\r", b"", b"\nb"], b"a\r\nb", None),
            // No dot-stuffing in BDAT: dots are content, and `.CRLF` ends nothing.
            (Reject, &[b"..\r\n.\r\n"], b"..\r\n.\r\n", None),
            (Reject, &[b"a\nb"], b"a\r\nb", Some(BareLf)),
            (Reject, &[b"a\r", b"b"], b"a\r\nb", Some(BareCr)),
            (Reject, &[b"a\r"], b"a\r\n", Some(BareCr)),
            (Reject, &[b"a\r\r\n"], b"a\r\n\r\n", Some(BareCr)),
            (Reject, &[b"a\x00b"], b"ab", Some(Nul)),
            (Normalize, &[b"a\nb\rc\r", b"d\r"], b"a\r\nb\r\nc\r\nd\r\n", None),
            (Normalize, &[b"a\x00\n"], b"a\r\n", Some(Nul)),
        ];
        for (policy, chunks, want_out, want_violation) in cases {
            assert_eq!(decode(*policy, chunks), (want_out.to_vec(), *want_violation), "{chunks:?} {policy:?}");
        }
    }

    #[test]
    fn tracks_headers_across_chunks() {
        let mut decoder = BdatDecoder::new(BareNewlines::Reject);
        let mut out = Vec::new();
        for chunk in [&b"Received: a\r"[..], b"\nRecei", b"ved: b\r\n\r", b"\nReceived: body\r\n"] {
            decoder.feed(chunk, &mut out);
        }
        decoder.finish(&mut out);
        assert_eq!(decoder.count_received_headers(), 2);
        assert_eq!(decoder.header_bytes(), 26);
        assert_eq!(decoder.output_bytes(), out.len() as u64);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn chunking_does_not_matter(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), Just(0u8)], 0..64),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            normalize in any::<bool>(),
        ) {
            let policy = if normalize { BareNewlines::Normalize } else { BareNewlines::Reject };
            let whole = decode(policy, &[&input]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points.into_iter().chain([input.len()]) {
                chunks.push(&input[start..point]);
                start = point;
            }
            prop_assert_eq!(decode(policy, &chunks), whole);
        }
    }
}
