//! Client-supplied text on its way into a log line, an alert or a header field: one line, nothing a
//! terminal or a log watcher would take for more than text.

use std::borrow::Cow;

/// `s` with every character that could end a line, move a terminal's cursor, change its colours or reorder
/// what it shows written as an escape: control characters (C0 with CR, LF, ESC and NUL; DEL; C1) as
/// `\xNN` or `\u{NNNN}`, the Unicode line and paragraph separators and bidirectional controls as
/// `\u{NNNN}`, and the backslash itself as `\\`, so that an escape in the input cannot pass for one of
/// these. Borrowed unchanged when there is nothing to escape (the usual case).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && needs_escape(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(printable("bob@example.test"), Cow::Borrowed(_)));
        assert!(matches!(printable("Grüße"), Cow::Borrowed(_)));
    }

    #[test]
    fn nothing_can_start_a_line_or_reach_the_terminal() {
        let forged = "evil\r\n2026-12-02T00:00:00Z  INFO sluice::serve: FAKE\x1b[31mRED\0\u{9b}\u{2028}\u{202e}";
        let p = printable(forged);
        assert_eq!(
            p,
            "evil\\x0d\\x0a2026-12-02T00:00:00Z  INFO sluice::serve: FAKE\\x1b[31mRED\\x00\\u{009b}\\u{2028}\\u{202e}"
        );
        assert!(!p.chars().any(|c| c.is_control()));
    }

    #[test]
    fn a_backslash_cannot_pass_for_an_escape() {
        assert_eq!(printable("a\\x0d"), "a\\\\x0d");
        assert_ne!(printable("a\\x0d"), printable("a\r"));
    }
}
