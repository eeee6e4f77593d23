//! DATA framing on send: dot-stuffing (RFC 5321 4.5.2) and the end-of-data line.
//!
//! Every message sluice sends is CRLF-canonical, whatever it was given: a bare CR or a bare LF is written as CRLF
//! (the same rule as [`crate::DataDecoder`]), so that no next hop can be led into a different view of where a
//! line, or the data, ends. Each line that starts with a dot on the wire gets a second one. Other octets, NUL
//! included, are passed through: refusing content is the receiving side's job.

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
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a message.
    pub fn new() -> Self {
        DotStuffer { state: State::LineStart }
    }

    /// Appends the stuffed form of the next piece of the message to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64 + 2);
        let mut i = 0;
        while i < chunk.len() {
            if self.state == State::Mid {
                // Fast path: inside a line, everything up to the next CR or LF is copied as it is.
                let run = memchr::memchr2(b'\r', b'\n', &chunk[i..]).unwrap_or(chunk.len() - i);
                out.extend_from_slice(&chunk[i..i + run]);
                i += run;
                if i == chunk.len() {
                    break;
                }
            }
            let b = chunk[i];
            i += 1;
            if self.state == State::Cr {
                out.extend_from_slice(b"\r\n");
                self.state = State::LineStart;
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
                }
                b'.' if self.state == State::LineStart => {
                    out.extend_from_slice(b"..");
                    self.state = State::Mid;
                }
                other => {
                    out.push(other);
                    self.state = State::Mid;
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
    fn pieces_do_not_matter() {
        let body = b"a\r\n.b\r\r\n\n.\r.\n..\r";
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
