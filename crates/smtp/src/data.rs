//! DATA framing on receive (RFC 5321 4.1.1.4, 4.5.2): finding the end of the data and undoing dot-stuffing, in
//! a way that makes SMTP smuggling impossible.
//!
//! The one rule: the data ends at the first occurrence of the wire bytes `CR LF . CR LF`, where the CRLF of the
//! DATA command counts as the first CRLF (so a `.` line right after the 354 is an empty message). The decoder is
//! a byte-at-a-time automaton for exactly that pattern (the states are the prefixes of `CR LF . CR LF` matched so
//! far), so its answer cannot depend on how the bytes are split across reads. Nothing else ends the data:
//! `<LF>.<LF>`, `<LF>.<CRLF>`, `<CR>.<CR>`, `<CR>.<LF>`, `<CRLF>.<LF>`, `<LF>.<CR>` are message content.
//!
//! The output is always CRLF-canonical, whatever the policy:
//! - a bare LF or a bare CR (one not part of a CR LF pair on the wire) is written as CRLF. With
//!   [`BareNewlines::Reject`] it is also recorded as a violation, and the session refuses the message after the
//!   end of data (`550 5.6.0`); with [`BareNewlines::Normalize`] the normalized message is kept. A line that
//!   started after a bare CR or LF is not a line start on the wire, so a dot there is neither a terminator nor
//!   stuffing: it is kept;
//! - a NUL is a violation under both policies and is never written out;
//! - dot-unstuffing follows RFC 5321 4.5.2 to the letter: when a line (after a real CRLF) starts with a dot and
//!   has other characters, the first dot is removed. A line that is only a dot followed by a bare CR or LF keeps
//!   its dot.
//!
//! The decoder also runs a [`HeaderScanner`] over its output, for the header-size and hop-count limits.

use crate::headers::HeaderScanner;
use crate::reply::Reply;

/// What to do with a bare CR or LF in message data (the `bare_newlines` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BareNewlines {
    /// Refuse the message after the end of data (the default).
    Reject,
    /// Store it with each bare CR or LF turned into CRLF.
    Normalize,
}

/// Why message data must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DataViolation {
    /// A CR not followed by LF (only a violation under [`BareNewlines::Reject`]).
    #[error("bare CR in message data")]
    BareCr,
    /// A LF not preceded by CR (only a violation under [`BareNewlines::Reject`]).
    #[error("bare LF in message data")]
    BareLf,
    /// A NUL octet (a violation under both policies).
    #[error("NUL in message data")]
    Nul,
}

impl DataViolation {
    /// The reply that refuses the message after the end of data: `550 5.6.0`.
    pub fn reply(&self) -> Reply {
        match self {
            DataViolation::BareCr | DataViolation::BareLf => Reply::new(550, "5.6.0", "Bare CR or LF in message data"),
            DataViolation::Nul => Reply::new(550, "5.6.0", "NUL character in message data"),
        }
    }
}

/// The result of [`DataDecoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataStatus {
    /// All the input was data; the message goes on.
    NeedMore,
    /// The data ended: `consumed` octets of this input were data, the final `.<CRLF>` included; the rest
    /// belongs to the commands that follow (PIPELINING).
    Done {
        /// Octets of the input used.
        consumed: usize,
    },
}

/// How much of `CR LF . CR LF` the last octets matched, seen from a line's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing matched: inside a line.
    Mid,
    /// `CR` matched: a CR waits for its LF.
    Cr,
    /// `CR LF` matched: at the start of a line (also the initial state).
    LineStart,
    /// `CR LF .` matched: a line that starts with a dot.
    Dot,
    /// `CR LF . CR` matched: one LF away from the end.
    DotCr,
    /// The whole pattern matched.
    Done,
}

/// Decodes the message data that follows a `354`, in pieces split anywhere.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    policy: BareNewlines,
    state: State,
    violation: Option<DataViolation>,
    bare_newlines: u64,
    output_bytes: u64,
    headers: HeaderScanner,
}

impl DataDecoder {
    /// A decoder at the start of the data (just after the DATA command's CRLF).
    pub fn new(policy: BareNewlines) -> Self {
        DataDecoder {
            policy,
            state: State::LineStart,
            violation: None,
            bare_newlines: 0,
            output_bytes: 0,
            headers: HeaderScanner::new(),
        }
    }

    /// Decodes the next bytes from the wire, appending the message to `out` (earlier content of `out` is left
    /// alone). With `NeedMore` every byte of `input` was used. Once done, further calls use nothing and return
    /// `Done { consumed: 0 }`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        if self.state == State::Done {
            return DataStatus::Done { consumed: 0 };
        }
        let start = out.len();
        out.reserve(input.len());
        let mut status = DataStatus::NeedMore;
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Fast path: copy a run of ordinary octets at once.
                let run = memchr::memchr3(b'\r', b'\n', 0, &input[i..]).unwrap_or(input.len() - i);
                out.extend_from_slice(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            self.step(b, out);
            if self.state == State::Done {
                status = DataStatus::Done { consumed: i };
                break;
            }
        }
        self.output_bytes += (out.len() - start) as u64;
        self.headers.feed(&out[start..]);
        status
    }

    /// One octet through the automaton.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::LineStart if b == b'.' => self.state = State::Dot,
            State::Dot => match b {
                b'\r' => self.state = State::DotCr,
                b'\n' => {
                    // `<CRLF>.<LF>`: not an end. The line is a lone dot, kept.
                    self.bare(DataViolation::BareLf);
                    out.extend_from_slice(b".\r\n");
                    self.state = State::Mid;
                }
                // RFC 5321 4.5.2: a leading dot with more on the line is removed.
                other => self.ordinary(other, out),
            },
            State::DotCr if b == b'\n' => self.state = State::Done,
            State::DotCr => {
                // `<CRLF>.<CR>` and something else: the CR was bare, the line a lone dot.
                self.bare(DataViolation::BareCr);
                out.extend_from_slice(b".\r\n");
                self.ordinary(b, out);
            }
            State::Cr if b == b'\n' => {
                out.extend_from_slice(b"\r\n");
                self.state = State::LineStart;
            }
            State::Cr => {
                self.bare(DataViolation::BareCr);
                out.extend_from_slice(b"\r\n");
                self.ordinary(b, out);
            }
            State::LineStart | State::Mid => self.ordinary(b, out),
            State::Done => {}
        }
    }

    /// An octet inside a line (also after a bare CR was settled).
    fn ordinary(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = match b {
            b'\r' => State::Cr,
            b'\n' => {
                self.bare(DataViolation::BareLf);
                out.extend_from_slice(b"\r\n");
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
        };
    }

    fn bare(&mut self, violation: DataViolation) {
        self.bare_newlines += 1;
        if self.policy == BareNewlines::Reject {
            self.violation.get_or_insert(violation);
        }
    }

    /// The first violation seen, if any: the message must then be refused with [`DataViolation::reply`].
    pub fn violation(&self) -> Option<DataViolation> {
        self.violation
    }

    /// The end of data has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bare CRs and LFs seen so far (under either policy), for logs.
    pub fn bare_newlines(&self) -> u64 {
        self.bare_newlines
    }

    /// Octets of decoded message written so far.
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// Octets of the decoded header section so far (see [`HeaderScanner::header_bytes`]).
    pub fn header_bytes(&self) -> u64 {
        self.headers.header_bytes()
    }

    /// `Received:` fields in the decoded header section so far.
    pub fn count_received_headers(&self) -> usize {
        self.headers.count_received_headers()
    }
}

#[cfg(test)]
mod tests;
