//! The built-in antispam engine: a documented subset of SpamAssassin's rule language.
//!
//! # Supported rules
//!
//! Rule files are read line by line. Blank lines are ignored, and a `#` at the start of a line or
//! after whitespace starts a comment (write `\#` for a literal `#` in a regex, as SpamAssassin
//! requires). The supported lines are:
//!
//! ```text
//! header NAME Header-Name =~ /regex/flags [if-unset: TEXT]
//! header NAME Header-Name !~ /regex/flags [if-unset: TEXT]
//! header NAME exists:Header-Name
//! body   NAME /regex/flags
//! score  NAME n            (or four values n n n n: the first one is used)
//! describe NAME text
//! ```
//!
//! - Rule names are `[A-Za-z0-9_]+`. A later definition of a name replaces the earlier one.
//! - Regexes are written `/.../`, or `m` followed by any punctuation delimiter (`m{...}`,
//!   `m!...!`, `m#...#`); the flags `i`, `m`, `s` and `x` become the regex crate's inline flags,
//!   `g` and `o` are accepted and mean nothing here. Regexes use the `regex` crate's syntax: a
//!   Perl construct it lacks (look-around, backreferences, `\Z`) makes the rule a [`RuleError`].
//! - Header names are case-insensitive. The value tested is every occurrence of the header,
//!   unfolded and RFC 2047-decoded, joined with `"\n"` (without a trailing newline). `ALL` tests
//!   every header as `Name: value` lines; `ToCc` tests `To` and `Cc` together. An absent header
//!   is the `if-unset` text, or the empty string. `=~` hits when the regex matches, `!~` when it
//!   does not. Header modifiers (`From:addr`, `Subject:raw`) are not supported yet: such a rule
//!   is skipped.
//! - Body rules test the decoded text of the message: the Subject line, then each `text/*` part
//!   decoded from base64 or quoted-printable and converted from its charset, HTML rendered to
//!   text, parts of nested messages included. Only the first
//!   [`BODY_TEXT_LIMIT`](crate::mime::BODY_TEXT_LIMIT) bytes (256 KiB) of that text are tested.
//!   The text is tested as one string, not paragraph by paragraph as SpamAssassin does, so `^`
//!   and `$` without the `m` flag anchor at the ends of the whole text.
//! - A rule without a `score` line scores 1.0, as in SpamAssassin. A score of 0 disables a rule,
//!   and so does a name starting with `__` (SpamAssassin's sub-rules, which only `meta` rules
//!   use). A `score` or `describe` line for a name no rule defines is ignored, wherever the
//!   definition appears.
//! - A rule hits at most once per message; the message's score is the sum of the scores of the
//!   rules that hit, rounded to three decimals.
//!
//! Every other line (`rawbody`, `uri`, `full`, `meta`, `tflags`, `if`/`endif`, `ifplugin`,
//! `eval:` tests, ...) is skipped without an error and counted in [`RuleSet::skipped`]. A broken
//! rule is reported as a [`RuleError`] and skipped; the rules around it still load.
//!
//! # GTUBE
//!
//! A message whose raw bytes or decoded text contain [`GTUBE`] scores an extra 1000 points, hits
//! `GTUBE` and gets SCL 9.
//!
//! # Spam confidence level
//!
//! [`scl_of`] maps a score to Exchange's spam confidence level, 0 to 9: `floor(score * 1.4)`,
//! clamped. SpamAssassin's required score of 5.0 ([`REQUIRED_SCORE`]) is SCL 7, the level at
//! which mail is usually treated as spam.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::SourceFile;
use crate::mime::{self, Decoded};

/// The Generic Test for Unsolicited Bulk Email: a message containing it is spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// SpamAssassin's default required score: a message scoring this much is spam (SCL 7).
pub const REQUIRED_SCORE: f64 = 5.0;

/// The score a GTUBE message gets on top of its rules.
const GTUBE_SCORE: f64 = 1000.0;

/// The score of a rule that has no `score` line.
const DEFAULT_SCORE: f64 = 1.0;

/// The default rules shipped in the binary.
const DEFAULT_RULES: &str = include_str!("../rules/default.cf");

/// Finds GTUBE in raw bytes; a literal regex searches with `memchr`'s fast substring search.
static GTUBE_FINDER: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    // An escaped literal always compiles.
    regex::bytes::Regex::new(&regex::escape(GTUBE)).expect("an escaped literal compiles")
});

/// A compiled set of antispam rules. Cheap to share: put it in an `Arc`.
#[derive(Debug)]
pub struct RuleSet {
    /// Rules in definition order; the order of [`SpamVerdict::hits`].
    rules: Vec<Rule>,
    body: BodyMatcher,
    skipped: usize,
}

/// The verdict of [`RuleSet::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpamVerdict {
    /// The sum of the scores of the rules that hit (plus 1000 for GTUBE).
    pub score: f64,
    /// The spam confidence level, 0 to 9: see [`scl_of`].
    pub scl: u8,
    /// Whether the message contains [`GTUBE`].
    pub gtube: bool,
    /// The names of the rules that hit, in rule order (`GTUBE` first when it hit).
    pub hits: Vec<String>,
}

/// A rule that did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule file's name.
    pub file: String,
    /// The line number in the file, from 1.
    pub line: usize,
    /// The rule's name, when the line got that far.
    pub rule: Option<String>,
    /// What is wrong, in one line.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "{}:{}: rule {}: {}", self.file, self.line, rule, self.reason),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.reason),
        }
    }
}

impl std::error::Error for RuleError {}

/// Maps a score to a spam confidence level: `floor(score * 1.4)` clamped to `0..=9`; NaN is 0.
pub fn scl_of(score: f64) -> u8 {
    if score.is_nan() {
        return 0;
    }
    // Multiplying by 14 first keeps 5.0 exactly at 7: 5.0 * 1.4 is 6.999... in binary.
    let level = (score * 14.0 / 10.0).floor();
    level.clamp(0.0, 9.0) as u8
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    name: String,
    score: f64,
    description: Option<String>,
    test: Test,
}

impl Rule {
    /// Whether the rule takes part in scoring: SpamAssassin does not run rules scored 0, and
    /// `__` rules exist only for `meta` rules.
    fn is_enabled(&self) -> bool {
        self.score != 0.0 && !self.name.starts_with("__")
    }
}

#[derive(Debug)]
enum Test {
    Header(HeaderTest),
    /// A body regex: its pattern while loading, then its index in the [`BodyMatcher`].
    Body {
        pattern: String,
        index: usize,
    },
}

#[derive(Debug)]
struct HeaderTest {
    target: HeaderTarget,
    op: HeaderOp,
    if_unset: Option<String>,
}

#[derive(Debug)]
enum HeaderTarget {
    /// A header by its lowercase name.
    Named(String),
    /// Every header, as `Name: value` lines.
    All,
    /// `To` and `Cc` together.
    ToCc,
}

#[derive(Debug)]
enum HeaderOp {
    Matches { regex: Regex, negate: bool },
    Exists,
}

impl HeaderTest {
    fn hits(&self, decoded: &Decoded<'_>) -> bool {
        let value = self.value(decoded);
        match &self.op {
            HeaderOp::Exists => value.is_some(),
            HeaderOp::Matches { regex, negate } => {
                let text = value.or_else(|| self.if_unset.as_deref().map(Cow::Borrowed));
                regex.is_match(text.as_deref().unwrap_or("")) != *negate
            }
        }
    }

    fn value<'d>(&self, decoded: &'d Decoded<'_>) -> Option<Cow<'d, str>> {
        match &self.target {
            HeaderTarget::Named(name) => decoded.header(name).map(Cow::Borrowed),
            HeaderTarget::All => Some(Cow::Borrowed(decoded.all_headers())),
            HeaderTarget::ToCc => match (decoded.header("to"), decoded.header("cc")) {
                (Some(to), Some(cc)) => Some(Cow::Owned(format!("{to}\n{cc}"))),
                (Some(one), None) | (None, Some(one)) => Some(Cow::Borrowed(one)),
                (None, None) => None,
            },
        }
    }
}

/// All body regexes, run in one pass where the regex crate allows.
#[derive(Debug)]
enum BodyMatcher {
    /// One automaton for every body rule.
    Set(RegexSet),
    /// One regex each, when the set grows past the regex crate's size limit.
    Each(Vec<Regex>),
}

impl BodyMatcher {
    fn new(patterns: &[&str]) -> BodyMatcher {
        match RegexSet::new(patterns) {
            Ok(set) => BodyMatcher::Set(set),
            // Every pattern compiled on its own, so only the set's size can fail here.
            Err(_) => BodyMatcher::Each(patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            BodyMatcher::Set(set) => set.is_empty(),
            BodyMatcher::Each(each) => each.is_empty(),
        }
    }

    /// Which patterns match `text`, by index.
    fn matches(&self, text: &str) -> Vec<bool> {
        match self {
            BodyMatcher::Set(set) => {
                let found = set.matches(text);
                (0..set.len()).map(|i| found.matched(i)).collect()
            }
            BodyMatcher::Each(each) => each.iter().map(|r| r.is_match(text)).collect(),
        }
    }
}

impl RuleSet {
    /// The small default rule set shipped in the binary (`rules/default.cf`).
    pub fn builtin() -> RuleSet {
        let file = SourceFile { name: "default.cf".to_owned(), bytes: DEFAULT_RULES.as_bytes().to_vec() };
        // The shipped rules compile without errors: a unit test proves it.
        RuleSet::compile(&[file]).0
    }

    /// Compiles rule files in order. Every rule that compiles is loaded; each broken one is
    /// reported and skipped. The built-in default rules are not included.
    pub fn compile(files: &[SourceFile]) -> (RuleSet, Vec<RuleError>) {
        let mut loader = Loader::default();
        for file in files {
            let text = String::from_utf8_lossy(&file.bytes);
            for (index, line) in text.lines().enumerate() {
                loader.line(&file.name, index + 1, line);
            }
        }
        loader.finish()
    }

    /// The number of rules loaded, disabled ones included.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The number of lines skipped because they use a part of the rule language this engine
    /// does not support yet.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The `describe` text of rule `name`.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.rules.iter().find(|r| r.name == name)?.description.as_deref()
    }

    /// The score of rule `name`.
    pub fn score(&self, name: &str) -> Option<f64> {
        self.rules.iter().find(|r| r.name == name).map(|r| r.score)
    }

    /// Scores a raw message.
    pub fn check(&self, message: &[u8]) -> SpamVerdict {
        self.check_decoded(&mime::decode(message))
    }

    /// Scores a message already decoded, so that other engines can share the decoding.
    pub fn check_decoded(&self, decoded: &Decoded<'_>) -> SpamVerdict {
        let mut verdict = SpamVerdict { score: 0.0, scl: 0, gtube: false, hits: Vec::new() };
        if contains_gtube(decoded) {
            verdict.gtube = true;
            verdict.score += GTUBE_SCORE;
            verdict.hits.push("GTUBE".to_owned());
        }
        let body_hits = if self.body.is_empty() { Vec::new() } else { self.body.matches(decoded.body_text()) };
        for rule in self.rules.iter().filter(|r| r.is_enabled()) {
            let hit = match &rule.test {
                Test::Header(test) => test.hits(decoded),
                Test::Body { index, .. } => body_hits.get(*index).copied().unwrap_or(false),
            };
            if hit {
                verdict.score += rule.score;
                verdict.hits.push(rule.name.clone());
            }
        }
        verdict.score = (verdict.score * 1000.0).round() / 1000.0;
        verdict.scl = if verdict.gtube { 9 } else { scl_of(verdict.score) };
        verdict
    }
}

fn contains_gtube(decoded: &Decoded<'_>) -> bool {
    GTUBE_FINDER.is_match(decoded.raw()) || decoded.body_text().contains(GTUBE)
}

/// The state of compiling rule files.
#[derive(Debug, Default)]
struct Loader {
    rules: Vec<Rule>,
    by_name: HashMap<String, usize>,
    scores: HashMap<String, f64>,
    descriptions: HashMap<String, String>,
    errors: Vec<RuleError>,
    skipped: usize,
}

/// A line that did not compile: the rule's name when known, and why.
type LineError = (Option<String>, String);

impl Loader {
    fn line(&mut self, file: &str, number: usize, line: &str) {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            return;
        }
        let (keyword, rest) = split_word(line);
        let outcome = match keyword.to_ascii_lowercase().as_str() {
            "header" => self.header(rest),
            "body" => self.body(rest),
            "score" => self.score(rest),
            "describe" => self.describe(rest),
            _ => {
                self.skipped += 1;
                Ok(())
            }
        };
        if let Err((rule, reason)) = outcome {
            let file = file.to_owned();
            self.errors.push(RuleError { file, line: number, rule, reason });
        }
    }

    fn header(&mut self, rest: &str) -> Result<(), LineError> {
        let (name, test) = rule_name(rest)?;
        let fail = |reason: &str| (Some(name.to_owned()), reason.to_owned());
        if test.is_empty() {
            return Err(fail("missing header name and test"));
        }
        if test.starts_with("eval:") {
            self.skipped += 1;
            return Ok(());
        }
        if let Some(header) = test.strip_prefix("exists:") {
            let header = header.trim();
            if header.is_empty() || header.contains(char::is_whitespace) {
                return Err(fail("exists: needs one header name"));
            }
            let target = HeaderTarget::Named(header.to_ascii_lowercase());
            let test = HeaderTest { target, op: HeaderOp::Exists, if_unset: None };
            self.add(name, Test::Header(test));
            return Ok(());
        }
        let (header, rest) = split_word(test);
        if header.contains(':') {
            // Header modifiers (:raw, :addr, :name) come with a later widening of the subset.
            self.skipped += 1;
            return Ok(());
        }
        let (op, rest) = split_word(rest);
        let negate = match op {
            "=~" => false,
            "!~" => true,
            _ => return Err(fail("expected =~ or !~ after the header name")),
        };
        let (pattern, rest) = parse_regex(rest).map_err(|r| fail(&r))?;
        let if_unset = parse_if_unset(rest).map_err(|r| fail(&r))?;
        let regex = Regex::new(&pattern).map_err(|e| fail(&regex_reason(&e)))?;
        let target = match header {
            "ALL" => HeaderTarget::All,
            "ToCc" => HeaderTarget::ToCc,
            _ => HeaderTarget::Named(header.to_ascii_lowercase()),
        };
        let op = HeaderOp::Matches { regex, negate };
        self.add(name, Test::Header(HeaderTest { target, op, if_unset }));
        Ok(())
    }

    fn body(&mut self, rest: &str) -> Result<(), LineError> {
        let (name, test) = rule_name(rest)?;
        let fail = |reason: &str| (Some(name.to_owned()), reason.to_owned());
        if test.starts_with("eval:") {
            self.skipped += 1;
            return Ok(());
        }
        let (pattern, rest) = parse_regex(test).map_err(|r| fail(&r))?;
        if !rest.trim().is_empty() {
            return Err(fail("unexpected text after the regex"));
        }
        Regex::new(&pattern).map_err(|e| fail(&regex_reason(&e)))?;
        self.add(name, Test::Body { pattern, index: 0 });
        Ok(())
    }

    fn score(&mut self, rest: &str) -> Result<(), LineError> {
        let (name, values) = rule_name(rest)?;
        let fail = |reason: &str| (Some(name.to_owned()), reason.to_owned());
        let values: Vec<&str> = values.split_whitespace().collect();
        if values.len() != 1 && values.len() != 4 {
            return Err(fail("expected one or four scores"));
        }
        // SpamAssassin writes immutable scores in parentheses; they are scores all the same.
        let first = values[0].trim_start_matches('(').trim_end_matches(')');
        let score: f64 = first.parse().map_err(|_| fail(&format!("score {first:?} is not a number")))?;
        if !score.is_finite() {
            return Err(fail("score is not finite"));
        }
        self.scores.insert(name.to_owned(), score);
        Ok(())
    }

    fn describe(&mut self, rest: &str) -> Result<(), LineError> {
        let (name, text) = rule_name(rest)?;
        self.descriptions.insert(name.to_owned(), text.to_owned());
        Ok(())
    }

    fn add(&mut self, name: &str, test: Test) {
        let rule = Rule { name: name.to_owned(), score: DEFAULT_SCORE, description: None, test };
        match self.by_name.get(name) {
            Some(&index) => self.rules[index] = rule,
            None => {
                self.by_name.insert(name.to_owned(), self.rules.len());
                self.rules.push(rule);
            }
        }
    }

    fn finish(mut self) -> (RuleSet, Vec<RuleError>) {
        let mut patterns = Vec::new();
        for rule in &mut self.rules {
            if let Some(score) = self.scores.get(&rule.name) {
                rule.score = *score;
            }
            rule.description = self.descriptions.remove(&rule.name);
            if let Test::Body { pattern, index } = &mut rule.test
                && rule.score != 0.0
                && !rule.name.starts_with("__")
            {
                *index = patterns.len();
                patterns.push(pattern.as_str());
            }
        }
        let body = BodyMatcher::new(&patterns);
        let set = RuleSet { rules: self.rules, body, skipped: self.skipped };
        (set, self.errors)
    }
}

/// Cuts a comment off `line`: a `#` at the start or after whitespace, unless escaped.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim()),
        None => (text, ""),
    }
}

/// Reads a rule name, checking its syntax.
fn rule_name(rest: &str) -> Result<(&str, &str), LineError> {
    let (name, rest) = split_word(rest);
    if name.is_empty() {
        return Err((None, "missing rule name".to_owned()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err((Some(name.to_owned()), "a rule name is letters, digits and _".to_owned()));
    }
    Ok((name, rest))
}

/// Parses a Perl regex literal (`/re/flags` or `m{re}flags`) at the start of `text` into a
/// pattern for the regex crate (flags inline), and the text after it.
fn parse_regex(text: &str) -> Result<(String, &str), String> {
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
    let body = &text[start..end];
    let after = &text[end + close.len_utf8()..];
    let flag_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
    let inline = inline_flags(&after[..flag_len])?;
    let pattern = if inline.is_empty() { body.to_owned() } else { format!("(?{inline}){body}") };
    Ok((pattern, &after[flag_len..]))
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
        } else if c == open {
            depth += 1;
        }
    }
    None
}

/// Maps Perl regex flags to the regex crate's inline flags.
fn inline_flags(flags: &str) -> Result<String, String> {
    let mut inline = String::new();
    for flag in flags.chars() {
        match flag {
            'i' | 'm' | 's' | 'x' if !inline.contains(flag) => inline.push(flag),
            'i' | 'm' | 's' | 'x' | 'g' | 'o' => {}
            other => return Err(format!("unsupported regex flag {other:?}")),
        }
    }
    Ok(inline)
}

/// Parses the optional `[if-unset: TEXT]` after a header regex.
fn parse_if_unset(rest: &str) -> Result<Option<String>, String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    let inner =
        rest.strip_prefix("[if-unset:").and_then(|r| r.strip_suffix(']')).ok_or("unexpected text after the regex")?;
    Ok(Some(inner.trim().to_owned()))
}

/// The regex crate's error in one line.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let detail = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map(str::trim)
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim());
    format!("regex does not compile: {detail}")
}

#[cfg(test)]
mod tests;
