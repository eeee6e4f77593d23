//! Command lines on the wire: only CRLF ends one (RFC 5321 2.3.8).
//!
//! A LF without a CR before it is refused (`500 5.5.2`) rather than taken as a line end: a server that accepts
//! bare LF in commands while others do not is one half of an SMTP smuggling pair, and nothing legitimate sends
//! it. The session discards the offending line through its LF and goes on. A CR inside a line is left for
//! [`crate::parse_command`] to refuse.

use crate::reply::Reply;

/// What [`find_line`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineStatus {
    /// A whole line: its length without the CRLF, and the octets to consume (line and CRLF).
    Line {
        /// Length of the line, CRLF excluded.
        len_without_crlf: usize,
        /// Length of the line with its CRLF.
        consumed: usize,
    },
    /// No line end yet, and not too long so far: read more.
    NeedMore,
    /// The line is longer than the limit (`500 5.5.2 Line too long`); the session discards input through the
    /// next CRLF (see [`discard_line`]).
    TooLong,
    /// A LF without a CR before it is in the first line (`500 5.5.2`): it ends nothing, and the session
    /// discards the whole line through its CRLF, so that nothing after the bare LF runs as a command.
    BareLf,
}

impl LineStatus {
    /// The reply for a line that cannot be read, `None` for `Line` and `NeedMore`.
    pub fn error_reply(&self) -> Option<Reply> {
        match self {
            LineStatus::TooLong => Some(Reply::new(500, "5.5.2", "Line too long")),
            LineStatus::BareLf => Some(Reply::new(500, "5.5.2", "Command lines must end with CRLF")),
            LineStatus::Line { .. } | LineStatus::NeedMore => None,
        }
    }
}

/// Finds the first command line in `buf`. `max_len` is the longest line accepted, in octets, CRLF excluded.
///
/// Only the first `max_len + 2` octets are examined, so the cost does not grow with what a client piles up.
pub fn find_line(buf: &[u8], max_len: usize) -> LineStatus {
    let window = &buf[..buf.len().min(max_len.saturating_add(2))];
    match window.iter().position(|b| *b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => {
            LineStatus::Line { len_without_crlf: lf - 1, consumed: lf + 1 }
        }
        Some(lf) if lf > max_len => LineStatus::TooLong,
        Some(_) => LineStatus::BareLf,
        // The window is full and holds no line end: whatever comes next, the line is too long.
        None if window.len() > max_len.saturating_add(1) => LineStatus::TooLong,
        // A window of max_len + 1 octets ending in CR can still end properly.
        None if window.len() > max_len && window.last() != Some(&b'\r') => LineStatus::TooLong,
        None => LineStatus::NeedMore,
    }
}

/// The octets to drop to get past the current (bad or over-long) line: through its first CRLF, if `buf` has
/// one; a bare LF or CR ends nothing. Without one, the whole buffer belongs to that line and can be dropped,
/// but for a last CR, which the next read may complete into the line's CRLF.
pub fn discard_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|cr| cr + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let mut exact = vec![b'x'; 10];
        exact.extend_from_slice(b"\r\n");
        let mut over = vec![b'x'; 11];
        over.extend_from_slice(b"\r\n");
        let cases: &[(&[u8], LineStatus)] = &[
            (b"NOOP\r\nQUIT\r\n", LineStatus::Line { len_without_crlf: 4, consumed: 6 }),
            (b"\r\n", LineStatus::Line { len_without_crlf: 0, consumed: 2 }),
            (b"", LineStatus::NeedMore),
            (b"NOOP", LineStatus::NeedMore),
            (b"NOOP\r", LineStatus::NeedMore),
            (b"NOOP\nQUIT\r\n", LineStatus::BareLf),
            (b"\n", LineStatus::BareLf),
            (b"NO\rOP\r\n", LineStatus::Line { len_without_crlf: 5, consumed: 7 }),
            (&exact, LineStatus::Line { len_without_crlf: 10, consumed: 12 }),
            (&exact[..11], LineStatus::NeedMore),
            (&exact[..10], LineStatus::NeedMore),
            (&over, LineStatus::TooLong),
            (&over[..11], LineStatus::TooLong),
            (&over[..12], LineStatus::TooLong),
            (b"xxxxxxxxxxxxxxxxxxxxxxx\n", LineStatus::TooLong),
        ];
        for (buf, want) in cases {
            assert_eq!(find_line(buf, 10), *want, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn error_replies() {
        assert_eq!(
            LineStatus::TooLong.error_reply().map(|r| r.render()).as_deref(),
            Some("500 5.5.2 Line too long\r\n")
        );
        assert_eq!(LineStatus::BareLf.error_reply().map(|r| r.code), Some(500));
        assert_eq!(LineStatus::NeedMore.error_reply(), None);
    }

    #[test]
    fn discarding() {
        assert_eq!(discard_line(b"junk\nNOOP\r\nQUIT\r\n"), Some(11), "a bare LF ends nothing");
        assert_eq!(discard_line(b"junk\rNOOP\r\n"), Some(11), "nor does a bare CR");
        assert_eq!(discard_line(b"junk\n"), None);
        assert_eq!(discard_line(b"junk"), None);
    }
}
