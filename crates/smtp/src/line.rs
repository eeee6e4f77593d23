//! Command lines: only CRLF ends one.

/// What [`find_line`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStatus {
    /// A whole line: its length without the CRLF, and the bytes to consume with the CRLF.
    Line { len_without_crlf: usize, consumed: usize },
    /// No line end yet.
    NeedMore,
    /// Longer than the limit (answered `500 5.5.2 Line too long`).
    TooLong,
    /// A LF without a CR before it: refused (`500 5.5.2`), since a bare LF must never end anything.
    BareLf,
}

/// Finds the first command line in `buf`, at most `max_len` octets before the CRLF.
pub fn find_line(buf: &[u8], max_len: usize) -> LineStatus {
    match buf.iter().position(|b| *b == b'\n') {
        Some(p) if p > 0 && buf[p - 1] == b'\r' => {
            if p - 1 > max_len {
                LineStatus::TooLong
            } else {
                LineStatus::Line { len_without_crlf: p - 1, consumed: p + 1 }
            }
        }
        Some(p) if p > max_len => LineStatus::TooLong,
        Some(_) => LineStatus::BareLf,
        None if buf.len() > max_len + 1 => LineStatus::TooLong,
        None => LineStatus::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(find_line(b"NOOP\r\nQUIT\r\n", 512), LineStatus::Line { len_without_crlf: 4, consumed: 6 });
        assert_eq!(find_line(b"NOOP", 512), LineStatus::NeedMore);
        assert_eq!(find_line(b"NOOP\r", 512), LineStatus::NeedMore);
        assert_eq!(find_line(b"NOOP\nQUIT\r\n", 512), LineStatus::BareLf);
        assert_eq!(find_line(&[b'x'; 600], 512), LineStatus::TooLong);
        let mut long = vec![b'x'; 513];
        long.extend_from_slice(b"\r\n");
        assert_eq!(find_line(&long, 512), LineStatus::TooLong);
    }
}
