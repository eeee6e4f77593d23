//! DATA framing on send: dot-stuffing (RFC 5321 4.5.2) and the end-of-data line.
//!
//! Every message sluice sends is CRLF-canonical, whatever it was given: a bare CR or a bare LF is written as CRLF
//! (the same rule as [`crate::DataDecoder`]), so that no next hop can be led into a different view of where a
//! line, or the data, ends. Each line that starts with a dot on the wire gets a second one. A line longer than
//! RFC 5321's 998 octets is folded, as Postfix does (`smtp_line_length_limit`): CRLF and a space are inserted
//! after 998 octets, which keeps a header line a valid folded header and does least harm to a MIME body.
//! Other octets, NUL included, are passed through: refusing content is the receiving side's job.

/// The longest line sent, CRLF excluded (RFC 5321 4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// Where the stuffer is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a wire line (also before the first octet).
    LineStart,
    /// Inside a line.
    Mid,
    /// A CR waits for its LF.
    Cr,
}

/// Dot-stuffs a message given in pieces (as it streams out of the queue).
#[derive(Debug, Clone)]
pub struct DotStuffer {
    state: State,
    /// Octets in the current wire line so far.
    col: usize,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a message.
    pub fn new() -> Self {
        DotStuffer { state: State::LineStart, col: 0 }
    }

    /// Appends the stuffed form of the next piece of the message to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64 + 2);
        let mut i = 0;
        while i < chunk.len() {
            if self.state == State::Mid {
                // Fast path: inside a line, everything up to the next CR or LF is copied as it is, up to
                // the longest line; past it the line is folded.
                let run = memchr::memchr2(b'\r', b'\n', &chunk[i..]).unwrap_or(chunk.len() - i);
                let take = run.min(MAX_LINE - self.col);
                out.extend_from_slice(&chunk[i..i + take]);
                i += take;
                self.col += take;
                if take < run {
                    out.extend_from_slice(b"\r\n ");
                    self.col = 1;
                    continue;
                }
                if i == chunk.len() {
                    break;
                }
            }
            let b = chunk[i];
            i += 1;
            if self.state == State::Cr {
                out.extend_from_slice(b"\r\n");
                self.state = State::LineStart;
                self.col = 0;
                if b == b'\n' {
                    continue;
                }
                // A bare CR, now CRLF: `b` starts a new wire line.
            }
            match b {
                b'\r' => self.state = State::Cr,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                    self.col = 0;
                }
                b'.' if self.state == State::LineStart => {
                    out.extend_from_slice(b"..");
                    self.state = State::Mid;
                    self.col = 2;
                }
                other => {
                    out.push(other);
                    self.state = State::Mid;
                    self.col += 1;
                }
            }
        }
    }

    /// Ends the message: completes its last line with CRLF if needed and appends the end of data, `.<CRLF>`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.state != State::LineStart {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Dot-stuffs a whole message and appends the end of data: the bytes to send after a `354`. A CRLF is added
/// first when the message does not end with one; an empty message gives just `.<CRLF>`.
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    let mut stuffer = DotStuffer::new();
    stuffer.feed(body, out);
    stuffer.finish(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"no end", b"no end\r\n.\r\n"),
            (b".a\r\nb\r\n..\r\n", b"..a\r\nb\r\n...\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a.b\r\n.", b"a.b\r\n..\r\n.\r\n"),
            // Bare newlines are made CRLF, and a dot after one is stuffed like any line start.
            (b"a\n.b\n", b"a\r\n..b\r\n.\r\n"),
            (b"a\r.b\r", b"a\r\n..b\r\n.\r\n"),
            (b"a\r\r\n.", b"a\r\n\r\n..\r\n.\r\n"),
            (b"\x00.\r\n", b"\x00.\r\n.\r\n"),
        ];
        for (body, want) in cases {
            let mut out = Vec::new();
            dot_stuff(body, &mut out);
            assert_eq!(out, *want, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn long_lines_are_folded_with_crlf_and_a_space() {
        let mut body = b"Subject: ".to_vec();
        body.extend(std::iter::repeat_n(b'x', 2500));
        body.extend_from_slice(b"\r\n\r\n.");
        body.extend(std::iter::repeat_n(b'y', 1200));
        body.extend_from_slice(b"\r\n");
        body.extend(std::iter::repeat_n(b'z', 998));
        body.extend_from_slice(b"\r\n");
        let mut out = Vec::new();
        dot_stuff(&body, &mut out);
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE), "{:?}", lines.iter().map(|l| l.len()).collect::<Vec<_>>());
        // The header: 998, 998 and the rest, each continuation starting with a space.
        assert_eq!(lines[0].len(), 998);
        assert!(lines[1].starts_with(b" x") && lines[2].starts_with(b" x"));
        // The stuffed dot counts; a line of exactly 998 stays whole.
        assert!(lines[4].starts_with(b"..y") && lines[4].len() == 998 && lines[5].starts_with(b" y"));
        assert!(lines.iter().any(|l| l.len() == 998 && l.iter().all(|b| *b == b'z')));
        // Taking the inserted CRLF-space out gives the message back.
        let unfolded: Vec<u8> = String::from_utf8(out.clone()).unwrap().replace("\r\n ", "").into_bytes();
        assert_eq!(unfolded.len(), body.len() + 1 + 3, "one stuffed dot and the end of data");
    }

    #[test]
    fn pieces_do_not_matter() {
        let mut body = b"a\r\n.b\r\r\n\n.\r.\n..\r".to_vec();
        body.extend(std::iter::repeat_n(b'q', 2100));
        body.extend_from_slice(b"\r\n");
        let body = &body[..];
        let mut whole = Vec::new();
        dot_stuff(body, &mut whole);
        for split in 0..=body.len() {
            let mut stuffer = DotStuffer::new();
            let mut out = Vec::new();
            stuffer.feed(&body[..split], &mut out);
            stuffer.feed(&body[split..], &mut out);
            stuffer.finish(&mut out);
            assert_eq!(out, whole, "split {split}");
        }
    }
}
