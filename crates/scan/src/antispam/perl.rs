//! Perl regexes as SpamAssassin writes them, compiled for the regex crate or, when they need
//! look-around or back-references, for `fancy-regex`.
//!
//! SpamAssassin's rules are Perl regexes run over bytes. [`parse_literal`] reads the `/re/flags`
//! or `m{re}flags` literal; [`translate`] rewrites the Perl spellings the regex crate reads
//! differently (`\<` is a literal `<` in Perl but a word boundary in the regex crate, `[[]` is a
//! class holding `[`, a `{` that does not start a repetition is literal, `\Z`, `\h`, octal
//! escapes, `(?#...)` comments); [`Pattern::compile`] builds a byte regex with Unicode off (so
//! `\w`, `\d`, `\s` and case folding are ASCII, `\xe9` is the byte 0xE9 and a `£` written in the rule is
//! its two UTF-8 bytes, as in Perl reading the rule file as bytes),
//! and falls back to `fancy-regex` (Unicode, over text) for the constructs the regex crate lacks.

use std::borrow::Cow;

use regex::bytes::{Regex, RegexBuilder};

use crate::per_thread::PerThread;

/// The flags of a rule's regex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags {
    pub case_insensitive: bool,
    pub multi_line: bool,
    pub dot_all: bool,
    pub extended: bool,
}

/// What [`Pattern::compile`] gives.
#[derive(Debug)]
pub(super) struct Compiled {
    pub pattern: Pattern,
    /// The text literals are extracted from.
    pub skeleton: String,
    /// The plain regex (or a fancy pattern's gate) with its flags inline, when it runs with
    /// Unicode off: a member of a regex set that matches wherever this pattern does.
    pub set_source: Option<String>,
}

/// A compiled rule regex.
#[derive(Debug)]
pub(super) enum Pattern {
    /// The regex crate over bytes, Unicode off: the common case.
    Bytes(PerThread<Regex>),
    /// A regex whose every match starts at a line start (`^` in multi-line mode) and is at most
    /// `max_len` bytes long (`/^\s?\S{1,60}\s?$/`): on text of few long lines (a body's paragraphs),
    /// `anchored` (`\A` before it) tries each line's first `max_len` bytes instead of a search over
    /// all of them.
    Lines { regex: PerThread<Regex>, anchored: PerThread<Regex>, max_len: usize },
    /// A backtracking regex for look-around, back-references and atomic groups; matched
    /// against text (invalid UTF-8 replaced), and only where `gate`, the pattern without those
    /// parts (it matches wherever the pattern does), matches first.
    Fancy { regex: Box<PerThread<fancy_regex::Regex>>, gate: Option<PerThread<Regex>> },
}

impl Pattern {
    /// Compiles `source` (the text between the delimiters) with `flags`. `line_targets` makes
    /// `^` and `$` match at every line, for rules run over SpamAssassin's arrays of lines
    /// (body paragraphs, raw body lines, URIs).
    ///
    /// Returns the pattern and the text its literals are extracted from (the translated pattern,
    /// with look-around and back-references removed for a fancy pattern).
    pub(super) fn compile(source: &str, flags: Flags, line_targets: bool) -> Result<Compiled, String> {
        let translated = translate(source)?;
        let flags = Flags { multi_line: flags.multi_line || line_targets, ..flags };
        // SpamAssassin reads its rule files as bytes: a `£` in a rule is the two bytes of its UTF-8,
        // matched as bytes, and `[\xc3][\xa4]` beside it (the replace tags) is two bytes too.
        let bytes_source = bytes_of_characters(&translated.pattern);
        match bytes_regex(&bytes_source, flags, false) {
            Ok(regex) => {
                let set_source = Some(format!("{}{bytes_source}", inline_flags(flags)));
                return Ok(Compiled {
                    pattern: by_lines(regex, &bytes_source, flags),
                    skeleton: bytes_source.into_owned(),
                    set_source,
                });
            }
            Err(error) if !translated.needs_backtracking => {
                // A Unicode class (`\p{L}`) needs Unicode mode; anything else is a real error.
                return bytes_regex(&translated.pattern, flags, true)
                    .map(|regex| Compiled {
                        pattern: Pattern::Bytes(PerThread::new(regex)),
                        skeleton: translated.pattern.clone(),
                        set_source: None,
                    })
                    .map_err(|_| regex_reason(&error));
            }
            Err(_) => {}
        }
        let inline = inline_flags(flags);
        let fancy_source = format!("{inline}{}", translated.pattern);
        let fancy = fancy_regex::RegexBuilder::new(&fancy_source)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| format!("regex does not compile: {e}"))?;
        let (gate, set_source) = match bytes_regex(&translated.skeleton, flags, false) {
            Ok(gate) => (Some(PerThread::new(gate)), Some(format!("{}{}", inline_flags(flags), translated.skeleton))),
            Err(_) => (bytes_regex(&translated.skeleton, flags, true).ok().map(PerThread::new), None),
        };
        let pattern = Pattern::Fancy { regex: Box::new(PerThread::new(fancy)), gate };
        Ok(Compiled { pattern, skeleton: translated.skeleton, set_source })
    }

    /// Whether the pattern matches somewhere in `haystack`. A fancy pattern that runs out of
    /// its backtracking budget does not match.
    pub(super) fn is_match(&self, haystack: &[u8]) -> bool {
        match self {
            Pattern::Bytes(regex) => regex.is_match(haystack),
            Pattern::Lines { regex, anchored, max_len } => {
                if !by_line(haystack, *max_len) {
                    return regex.is_match(haystack);
                }
                line_starts(haystack).any(|start| anchored.is_match(line_window(haystack, start, *max_len)))
            }
            Pattern::Fancy { regex, gate } => {
                // No match of the pattern starts before the gate's leftmost match: every match
                // of the pattern is one of the gate's.
                let start = match gate {
                    Some(gate) => match gate.find(haystack) {
                        Some(found) => found.start(),
                        None => return false,
                    },
                    None => 0,
                };
                match std::str::from_utf8(haystack) {
                    Ok(text) => {
                        let start = (0..=start).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                        matches!(regex.find_from_pos(text, start), Ok(Some(_)))
                    }
                    Err(_) => regex.is_match(&String::from_utf8_lossy(haystack)).unwrap_or(false),
                }
            }
        }
    }

    /// How many non-overlapping matches `haystack` holds, counting up to `max`.
    pub(super) fn count(&self, haystack: &[u8], max: usize) -> usize {
        match self {
            Pattern::Bytes(regex) => regex.find_iter(haystack).take(max).count(),
            Pattern::Lines { regex, max_len, .. } if !by_line(haystack, *max_len) => {
                regex.find_iter(haystack).take(max).count()
            }
            Pattern::Lines { anchored, max_len, .. } => {
                // As `find_iter` counts: matches do not overlap, and an empty match right where the last
                // one ended is not one.
                let mut count = 0;
                let mut last_end = None;
                for start in line_starts(haystack) {
                    if count == max {
                        break;
                    }
                    if last_end.is_some_and(|end| start < end) {
                        continue;
                    }
                    if let Some(found) = anchored.find(line_window(haystack, start, *max_len)) {
                        if found.is_empty() && last_end == Some(start) {
                            continue;
                        }
                        count += 1;
                        last_end = Some(start + found.end());
                    }
                }
                count
            }
            Pattern::Fancy { gate: Some(gate), .. } if !gate.is_match(haystack) => 0,
            Pattern::Fancy { regex, .. } => {
                let text = String::from_utf8_lossy(haystack);
                regex.find_iter(&text).take(max).take_while(Result::is_ok).count()
            }
        }
    }

    /// Whether this is the backtracking engine.
    pub(super) fn is_fancy(&self) -> bool {
        matches!(self, Pattern::Fancy { .. })
    }
}

/// What one anchored search costs beside its bytes, in bytes of an unanchored search: with more
/// lines than that makes worthwhile, [`Pattern::Lines`] searches the whole text at once.
const LINE_COST: usize = 64;

/// Whether [`Pattern::Lines`] is cheaper line by line than over all of `haystack`: few lines.
fn by_line(haystack: &[u8], max_len: usize) -> bool {
    let lines = memchr::memchr_iter(b'\n', haystack).count() + 1;
    lines * (LINE_COST + max_len.min(haystack.len() / lines)) < haystack.len()
}

fn line_starts(haystack: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(memchr::memchr_iter(b'\n', haystack).map(|at| at + 1))
}

/// Where a match starting at line start `start` can be: it ends by `start + max_len`, and one byte
/// more gives `$` and `\b` there the text after it. Before `start` is a newline or nothing, as `\A`
/// assumes.
fn line_window(haystack: &[u8], start: usize, max_len: usize) -> &[u8] {
    &haystack[start..(start + max_len + 1).min(haystack.len())]
}

/// The longest match [`Pattern::Lines`] tries line by line.
const MAX_LINE_MATCH: usize = 4096;

/// `regex` as [`Pattern::Lines`] when every match of `source` starts at a line start and is short,
/// else as [`Pattern::Bytes`].
fn by_lines(regex: Regex, source: &str, flags: Flags) -> Pattern {
    let Some(hir) = super::prefilter::hir_of(source, flags) else { return Pattern::Bytes(PerThread::new(regex)) };
    let properties = hir.properties();
    let max_len = properties.maximum_len().filter(|&len| len <= MAX_LINE_MATCH);
    let line_start = properties.look_set_prefix().contains(regex_syntax::hir::Look::StartLF);
    // In `x` mode a comment could run to the end of the source: the group closes on the next line.
    let close = if flags.extended { "\n)" } else { ")" };
    match (max_len, line_start) {
        (Some(max_len), true) => match bytes_regex(&format!("\\A(?:{source}{close}"), flags, false) {
            Ok(anchored) => {
                Pattern::Lines { regex: PerThread::new(regex), anchored: PerThread::new(anchored), max_len }
            }
            Err(_) => Pattern::Bytes(PerThread::new(regex)),
        },
        _ => Pattern::Bytes(PerThread::new(regex)),
    }
}

/// The most backtracking steps a fancy pattern may take on one haystack: a pathological rule
/// gives up (no match) instead of stalling the work queue.
const BACKTRACK_LIMIT: usize = 200_000;

/// `pattern` with each non-ASCII character spelled as the `\xHH` escapes of its UTF-8 bytes, as Perl
/// reads a rule file's bytes: inside a class each byte is a member, and `/i` folds ASCII letters only.
/// (The translated pattern holds non-ASCII characters only as plain literals, never after a backslash.)
fn bytes_of_characters(pattern: &str) -> Cow<'_, str> {
    if pattern.is_ascii() {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() * 2);
    for c in pattern.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
    }
    Cow::Owned(out)
}

fn bytes_regex(pattern: &str, flags: Flags, unicode: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(unicode)
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .ignore_whitespace(flags.extended)
        .size_limit(4 << 20)
        .dfa_size_limit(8 << 20)
        .build()
}

fn inline_flags(flags: Flags) -> String {
    let mut inline = String::new();
    for (on, flag) in
        [(flags.case_insensitive, 'i'), (flags.multi_line, 'm'), (flags.dot_all, 's'), (flags.extended, 'x')]
    {
        if on {
            inline.push(flag);
        }
    }
    if inline.is_empty() { inline } else { format!("(?{inline})") }
}

/// Parses a Perl regex literal (`/re/flags` or `m{re}flags`) at the start of `text`: the
/// source between the delimiters, its flags, and the text after it.
pub(super) fn parse_literal(text: &str) -> Result<(&str, Flags, &str), String> {
    let text = text.trim_start();
    let (open, start) = match text.chars().next() {
        Some('/') => ('/', 1),
        Some('m') => match text[1..].chars().next() {
            Some(c) if c.is_ascii_punctuation() => (c, 1 + c.len_utf8()),
            _ => return Err("expected a regex: /.../ or m{...}".to_owned()),
        },
        _ => return Err("expected a regex: /.../ or m{...}".to_owned()),
    };
    let close = closing_delimiter(open);
    let end = find_close(&text[start..], open, close).ok_or("unterminated regex")? + start;
    let source = &text[start..end];
    let after = &text[end + close.len_utf8()..];
    let flag_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
    let flags = parse_flags(&after[..flag_len])?;
    Ok((source, flags, &after[flag_len..]))
}

fn closing_delimiter(open: char) -> char {
    match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        other => other,
    }
}

/// The offset of the delimiter closing a regex in `text`, skipping escaped characters and
/// nested pairs of bracketing delimiters.
fn find_close(text: &str, open: char, close: char) -> Option<usize> {
    let mut escaped = false;
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == close {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
        } else if c == open && open != close {
            depth += 1;
        }
    }
    None
}

fn parse_flags(text: &str) -> Result<Flags, String> {
    let mut flags = Flags::default();
    for flag in text.chars() {
        match flag {
            'i' => flags.case_insensitive = true,
            'm' => flags.multi_line = true,
            's' => flags.dot_all = true,
            'x' => flags.extended = true,
            // g (global), o (compile once), a/u/l/d (charset semantics) change nothing here.
            'g' | 'o' | 'a' | 'u' | 'l' | 'd' => {}
            other => return Err(format!("unsupported regex flag {other:?}")),
        }
    }
    Ok(flags)
}

/// A Perl regex rewritten for the regex crate.
#[derive(Debug, PartialEq)]
pub(super) struct Translated {
    /// The pattern in the regex crate's syntax (with look-around kept when there is some).
    pub pattern: String,
    /// The pattern with look-around taken out and each back-reference replaced by its group's
    /// pattern: it matches wherever the pattern does, so its required literals are the pattern's.
    pub skeleton: String,
    /// Whether the pattern uses look-around, back-references or atomic groups.
    pub needs_backtracking: bool,
}

/// Rewrites Perl spellings into the regex crate's. See the module documentation.
pub(super) fn translate(source: &str) -> Result<Translated, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 8);
    let mut skeleton = String::with_capacity(source.len());
    let mut backtracking = false;
    // Each open group: whether it is a look-around (left out of the skeleton).
    let mut groups: Vec<bool> = Vec::new();
    // Each open group that captures: its number, and where its text starts in the skeleton; and the
    // skeleton text of each closed one, which stands in for a back-reference to it there (a match of
    // `\1` is a match of group 1's pattern, so the skeleton still matches wherever the pattern does).
    let mut captures: Vec<Option<(usize, usize)>> = Vec::new();
    // Group 0 is the whole match: never referred to.
    let mut captured: Vec<Option<String>> = vec![None];
    let mut hidden = 0usize;
    let mut i = 0;
    let mut in_class = false;
    let mut class_start;
    while i < chars.len() {
        let c = chars[i];
        let mut piece: Cow<'static, str> = Cow::Owned(c.to_string());
        let mut skeleton_piece: Option<Cow<'static, str>> = None;
        let mut closed: Option<(usize, usize)> = None;
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else { return Err("trailing backslash".to_owned()) };
            i += 1;
            let octal = chars[i..].iter().take(3).take_while(|d| d.is_digit(8)).count() == 3;
            piece = match next {
                '0'..='3' if octal => {
                    let digits: String = chars[i..i + 3].iter().collect();
                    i += 2;
                    let value = u32::from_str_radix(&digits, 8).unwrap_or(0);
                    Cow::Owned(format!("\\x{value:02X}"))
                }
                '1'..='9' if !in_class => {
                    backtracking = true;
                    let group = next as usize - '0' as usize;
                    // A named group copied twice would not compile: such a back-reference stays out.
                    let text = captured
                        .get(group)
                        .cloned()
                        .flatten()
                        .filter(|text| !text.contains("(?<") && !text.contains("(?P<"))
                        .unwrap_or_default();
                    skeleton_piece = Some(Cow::Owned(format!("(?:{text})")));
                    Cow::Owned(format!("\\{next}"))
                }
                '0' => {
                    let digits: String = chars[i + 1..].iter().take(2).take_while(|d| d.is_digit(8)).collect();
                    i += digits.len();
                    let value = u32::from_str_radix(if digits.is_empty() { "0" } else { &digits }, 8).unwrap_or(0);
                    Cow::Owned(format!("\\x{value:02X}"))
                }
                'Z' if !in_class => Cow::Borrowed("(?:\\n?\\z)"),
                'z' | 'A' | 'b' | 'B' if !in_class => Cow::Owned(format!("\\{next}")),
                'b' => Cow::Borrowed("\\x08"),
                'h' => Cow::Borrowed(if in_class { "\\t " } else { "[\\t ]" }),
                'H' if !in_class => Cow::Borrowed("[^\\t ]"),
                'e' => Cow::Borrowed("\\x1B"),
                'G' | 'K' | 'R' | 'X' | 'C' | 'c' | 'N' | 'Q' | 'E' | 'l' | 'u' | 'L' | 'U' | 'g' | 'k' => {
                    return Err(format!("\\{next} is not supported"));
                }
                'x' | 'p' | 'P' if chars.get(i + 1) == Some(&'{') => {
                    let end = (i + 1..chars.len()).find(|&j| chars[j] == '}').ok_or("unterminated \\x{...}")?;
                    let braced: String = chars[i + 1..=end].iter().collect();
                    i = end;
                    Cow::Owned(format!("\\{next}{braced}"))
                }
                'x' | 'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'n' | 'r' | 't' | 'f' | 'v' | 'a' | 'p' | 'P' => {
                    Cow::Owned(format!("\\{next}"))
                }
                c if c.is_ascii_alphanumeric() => return Err(format!("\\{c} is not supported")),
                c => escaped_literal(c),
            };
        } else if in_class {
            match c {
                ']' => in_class = false,
                '[' if chars.get(i + 1) == Some(&':') => {
                    // A POSIX class, [:alpha:], copied whole.
                    let end = (i + 2..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
                        .ok_or("unterminated [: class")?;
                    piece = Cow::Owned(chars[i..=end + 1].iter().collect());
                    i = end + 1;
                }
                '[' | '&' | '~' => piece = escaped_literal(c),
                '-' if chars.get(i + 1) == Some(&'-') => piece = Cow::Borrowed("\\-"),
                _ => {}
            }
        } else {
            match c {
                '[' => {
                    in_class = true;
                    // A ] right after [ or [^ is a literal in the class.
                    class_start = i + 1;
                    if chars.get(i + 1) == Some(&'^') {
                        piece = Cow::Borrowed("[^");
                        i += 1;
                        class_start = i + 1;
                    }
                    if chars.get(class_start) == Some(&']') {
                        piece = Cow::Owned(format!("{piece}\\]"));
                        i = class_start;
                    }
                }
                '(' if chars.get(i + 1) == Some(&'?') => {
                    let rest: String = chars[i + 2..chars.len().min(i + 5)].iter().collect();
                    if rest.starts_with('#') {
                        let end = (i..chars.len()).find(|&j| chars[j] == ')').ok_or("unterminated (?# comment")?;
                        i = end + 1;
                        continue;
                    }
                    let look = ["=", "!", "<=", "<!"].iter().find(|p| rest.starts_with(**p));
                    let named = !rest.starts_with("<=")
                        && !rest.starts_with("<!")
                        && (rest.starts_with('<') || rest.starts_with("P<") || rest.starts_with('\''));
                    if named {
                        captured.push(None);
                    }
                    captures.push(named.then(|| (captured.len() - 1, skeleton.len())));
                    if let Some(look) = look {
                        backtracking = true;
                        groups.push(true);
                        hidden += 1;
                        piece = Cow::Owned(format!("(?{look}"));
                        i += 1 + look.len();
                    } else if rest.starts_with('>') {
                        backtracking = true;
                        groups.push(false);
                        piece = Cow::Borrowed("(?>");
                        skeleton_piece = Some(Cow::Borrowed("(?:"));
                        i += 2;
                    } else {
                        groups.push(false);
                    }
                }
                '(' => {
                    groups.push(false);
                    captured.push(None);
                    captures.push(Some((captured.len() - 1, skeleton.len())));
                }
                ')' if groups.pop() == Some(true) => {
                    captures.pop();
                    hidden -= 1;
                    out.push(')');
                    i += 1;
                    continue;
                }
                ')' => closed = captures.pop().flatten(),
                '{' if !starts_repetition(&chars[i..]) => piece = Cow::Borrowed("\\{"),
                '}' if !closes_repetition(&out) => piece = Cow::Borrowed("\\}"),
                '+' if is_possessive(&chars, i) => {
                    backtracking = true;
                    skeleton_piece = Some(Cow::Borrowed(""));
                }
                _ => {}
            }
        }
        if hidden == 0 {
            skeleton.push_str(skeleton_piece.as_deref().unwrap_or(&piece));
        }
        if let Some((group, start)) = closed {
            captured[group] = Some(skeleton[start..].to_owned());
        }
        out.push_str(&piece);
        i += 1;
    }
    if in_class {
        return Err("unterminated character class".to_owned());
    }
    Ok(Translated { pattern: out, skeleton, needs_backtracking: backtracking })
}

/// A literal character that was escaped in Perl: kept escaped when the regex crate treats it
/// as special, bare otherwise (Perl's `\<`, `\>`, `\_`, `\/`, `\@` are plain characters).
fn escaped_literal(c: char) -> Cow<'static, str> {
    if regex_syntax::is_meta_character(c) || c == ' ' || c == '#' {
        Cow::Owned(format!("\\{c}"))
    } else if c.is_ascii() {
        Cow::Owned(c.to_string())
    } else {
        Cow::Owned(regex_syntax::escape(&c.to_string()))
    }
}

/// Whether `chars` (starting at a `{`) is a repetition `{n}`, `{n,}` or `{n,m}`; Perl reads any
/// other `{` as a literal.
fn starts_repetition(chars: &[char]) -> bool {
    let Some(end) = chars.iter().position(|&c| c == '}') else { return false };
    let inner: String = chars[1..end].iter().collect();
    let mut parts = inner.splitn(2, ',');
    let low = parts.next().unwrap_or_default();
    let high = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(low) && high.is_none_or(|h| h.is_empty() || digits(h))
}

/// Whether the `}` about to be written closes a repetition the output already opened.
fn closes_repetition(out: &str) -> bool {
    let Some(open) = out.rfind('{') else { return false };
    if open > 0 && out[..open].ends_with('\\') {
        return false;
    }
    let inner = &out[open + 1..];
    !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit() || b == b',')
}

/// Whether the `+` at `i` makes the quantifier before it possessive (`a++`, `a*+`, `a?+`,
/// `a{2}+`).
fn is_possessive(chars: &[char], i: usize) -> bool {
    if i == 0 {
        return false;
    }
    let before = chars[i - 1];
    let escaped = i >= 2 && chars[i - 2] == '\\';
    matches!(before, '+' | '*' | '?' | '}') && !escaped
}

/// The regex crate's error in one line.
pub(super) fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let detail = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map(str::trim)
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim());
    format!("regex does not compile: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> String {
        translate(source).unwrap().pattern
    }

    #[test]
    fn perl_literals_become_plain_characters() {
        assert_eq!(pattern(r"\<a\>\_\/\@"), "<a>_/@");
        assert_eq!(pattern(r"a\.b\$"), r"a\.b\$");
        assert_eq!(pattern(r"[[]x[a&&b]"), r"[\[]x[a\&\&b]");
        assert_eq!(pattern(r"[]a]"), r"[\]a]");
        assert_eq!(pattern(r"[^]a]"), r"[^\]a]");
        assert_eq!(pattern(r"a{b}c{2}d{1,}e{,3}"), r"a\{b\}c{2}d{1,}e\{,3\}");
        assert_eq!(pattern(r"a\Z"), r"a(?:\n?\z)");
        assert_eq!(pattern(r"\012\0"), r"\x0A\x00");
        assert_eq!(pattern(r"[\042\223]{2}"), r"[\x22\x93]{2}");
        assert_eq!(pattern(r"[^]]+ a[^]]"), r"[^\]]+ a[^\]]");
        assert_eq!(pattern(r"a(?#comment)b"), "ab");
        assert_eq!(pattern(r"[\b]\b"), r"[\x08]\b");
        assert_eq!(pattern(r"[[:alpha:]]"), r"[[:alpha:]]");
        assert_eq!(pattern(r"\x{263a}\p{L}"), r"\x{263a}\p{L}");
    }

    #[test]
    fn look_around_is_out_of_the_skeleton() {
        let t = translate(r"foo(?!bar)baz(?<=z)\1x++").unwrap();
        assert!(t.needs_backtracking);
        assert_eq!(t.skeleton, "foobaz(?:)x+");
        assert_eq!(t.pattern, r"foo(?!bar)baz(?<=z)\1x++");
        assert!(!translate("a(?:b)c").unwrap().needs_backtracking);
    }

    #[test]
    fn a_back_reference_is_its_group_in_the_skeleton() {
        let t = translate(r"((a|b)(?!z))x\2y\1(?:c)(?<n>d)\3").unwrap();
        assert_eq!(t.skeleton, r"((a|b))x(?:(a|b))y(?:((a|b)))(?:c)(?<n>d)(?:)");
        // Taking the back-reference out would have asked for "ax" right before "y": not in "axay".
        let flags = Flags { case_insensitive: true, ..Flags::default() };
        let Compiled { pattern: p, skeleton, .. } = Pattern::compile(r"(a)x\1y", flags, false).unwrap();
        assert_eq!(skeleton, "(a)x(?:(a))y");
        assert!(p.is_match(b"AxAy"));
        assert!(!p.is_match(b"axby"));
        // A random-looking local part, in the shape of SpamAssassin's HK_RANDOM_FROM.
        let Compiled { pattern: p, .. } =
            Pattern::compile(r"^(?!mail)[^@]*(?:[aeiouy]{5}|([a-z]{1,2})(?:\1){3})", flags, false).unwrap();
        assert!(p.is_match(b"xyxyxyxy@example.test"));
        assert!(!p.is_match(b"foo@vm"));
        assert!(!p.is_match(b"mailxyxyxyxy@example.test"));
    }

    #[test]
    fn line_anchored_rules_try_each_line_and_agree_with_a_whole_search() {
        let multi = Flags { multi_line: true, ..Flags::default() };
        let long = "x".repeat(600);
        let words = "word ".repeat(120);
        let texts = [
            format!("{long}\nshort\n{long}"),
            format!("{long}\n{long}"),
            format!("{words}\n{long}\nab \n"),
            format!("{long}{long}\nthe end"),
            format!("{long}\n"),
            format!("{long} \n\n{long}"),
            "short".to_owned(),
            String::new(),
            // Long enough for the line by line search with a 998-byte pattern: a match on line two, none.
            format!("{}\n{}", "y".repeat(990), "y".repeat(3000)),
            format!("{}\r\n{}", "y".repeat(997), "y\r".repeat(1500)),
            format!("the end{}", " z".repeat(1000)),
            format!("ab\n\n\n{}\nab \n\nab \n", "q".repeat(2000)),
        ];
        let patterns = [
            r"^\s?\S{1,60}\s?$",
            r"^[^\r\n]{998}",
            r"^the\b",
            r"^ab\s",
            r"^x{600}$",
            r"^$",
            r"^\bx{3}\B",
            r"^\s{0,5}",
            r"^\S{0,9}\n?",
        ];
        for source in patterns {
            let Compiled { pattern, .. } = Pattern::compile(source, multi, false).unwrap();
            assert!(matches!(pattern, Pattern::Lines { .. }), "{source}");
            let whole = bytes_regex(source, multi, false).unwrap();
            for text in &texts {
                let text = text.as_bytes();
                assert_eq!(pattern.is_match(text), whole.is_match(text), "{source} on {text:?}");
                for max in [1, 2, 1000] {
                    let counted = whole.find_iter(text).take(max).count();
                    assert_eq!(pattern.count(text, max), counted, "{source} on {text:?}, up to {max}");
                }
            }
        }
        let Compiled { pattern, .. } = Pattern::compile(r"^a+", multi, false).unwrap();
        assert!(matches!(pattern, Pattern::Bytes(_)), "unbounded");
        let Compiled { pattern, .. } = Pattern::compile(r"(?:^|\s)ab", multi, false).unwrap();
        assert!(matches!(pattern, Pattern::Bytes(_)), "not only at line starts");
    }

    #[test]
    fn byte_semantics() {
        let flags = Flags { case_insensitive: true, ..Flags::default() };
        let Compiled { pattern: p, .. } = Pattern::compile(r"caf\xe9 \w+\b", flags, false).unwrap();
        assert!(p.is_match(b"CAF\xe9 au lait"));
        // A non-ASCII character is its bytes, as Perl reads a rule file: ASCII letters fold, é does not.
        let Compiled { pattern: p, .. } = Pattern::compile("café", flags, false).unwrap();
        assert!(p.is_match("CAFé".as_bytes()));
        assert!(!p.is_match("CAFÉ".as_bytes()));
        assert!(!p.is_fancy());
        // The replace tags spell characters as byte sequences beside non-ASCII literals.
        let Compiled { pattern: p, .. } = Pattern::compile(r"(?:[\xc3][\xa4]|a)\s[\d£]", flags, false).unwrap();
        assert!(p.is_match("\u{e4} 1".as_bytes()));
        assert!(p.is_match("A £".as_bytes()));
        assert!(p.is_match(b"a \xa3"), "a class member is a byte, as in Perl");
        assert!(!p.is_match("\u{c3} 1".as_bytes()), "[\\xc3] is the byte, not the character");
        let Compiled { pattern: p, .. } = Pattern::compile(r"^b", Flags::default(), true).unwrap();
        assert!(p.is_match(b"a\nb"));
        let Compiled { pattern: p, .. } = Pattern::compile(r"\p{Lu}x", Flags::default(), false).unwrap();
        assert!(p.is_match("Éx".as_bytes()));
    }

    #[test]
    fn fancy_patterns_match_and_count() {
        let Compiled { pattern: p, skeleton, .. } =
            Pattern::compile(r"\bfree(?!dom)", Flags::default(), false).unwrap();
        assert!(p.is_fancy());
        assert_eq!(skeleton, r"\bfree");
        assert!(p.is_match(b"get it free now"));
        assert!(!p.is_match(b"freedom"));
        assert_eq!(p.count(b"free free freedom free", 10), 3);
        assert_eq!(p.count(b"free free freedom free", 2), 2);
    }

    #[test]
    fn literal_delimiters_and_flags() {
        let (s, f, rest) = parse_literal(r"m{a\}b}i [x]").unwrap();
        assert_eq!((s, f.case_insensitive, rest), (r"a\}b", true, " [x]"));
        let (s, _, _) = parse_literal(r"m!a/b!").unwrap();
        assert_eq!(s, "a/b");
        assert!(parse_literal("/abc").is_err());
        assert!(parse_literal("/a/q").is_err());
    }
}
